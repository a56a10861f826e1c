//! The real clients users point at the operator (kstatus, Argo CD's Lua,
//! promlint, Prometheus' parsers), built from tests/gitops by
//! scripts/gitops-check.sh and cached, and what the README tells users to
//! configure in them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The tool's path; builds it on first use (a few minutes cold).
pub fn tool() -> &'static Path {
    static TOOL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = TOOL.get_or_init(|| {
        super::cluster::run_build_script(&repo().join("scripts/gitops-check.sh")).map_err(|e| {
            format!("{e}: the GitOps client checks need Go >= 1.24 on PATH and the Go module proxy")
        })
    });
    match built {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// Runs the tool with `args`, `stdin` as its input; its JSON answer.
pub fn run(args: &[&str], stdin: &str) -> Value {
    let mut child = Command::new(tool())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gitops-check starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "gitops-check {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("gitops-check prints JSON")
}

pub fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).expect("README.md")
}

/// The Argo CD health scripts of the README's `argocd-cm` snippet, by kind
/// (YAML anchors resolved, as the API server does when it is applied).
pub fn argo_health_scripts() -> Vec<(String, String)> {
    let readme = readme();
    let block = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("resource.customizations.health.imagelabel.io_"))
        .expect("README has the argocd-cm health snippet");
    let doc: Value = serde_saphyr::from_str(block).expect("the snippet is YAML");
    let data = doc["data"].as_object().expect("snippet has data:");
    data.iter()
        .filter_map(|(k, v)| {
            let kind = k.strip_prefix("resource.customizations.health.imagelabel.io_")?;
            Some((kind.to_string(), v.as_str()?.to_string()))
        })
        .collect()
}

/// One row of the README's state table.
#[derive(Debug)]
pub struct StateRow {
    pub state: String,
    pub kstatus: String,
    pub argo: String,
    /// The quoted message in the Argo CD cell, if any.
    pub argo_message: Option<String>,
}

/// The README's table state → conditions → kstatus → Argo CD.
pub fn state_table() -> Vec<StateRow> {
    let readme = readme();
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with("| state | Ready |"));
    let header = lines.next().expect("README has the state table");
    let cols: Vec<&str> = cells(header);
    let at = |name: &str| cols.iter().position(|c| *c == name).unwrap();
    let (k, a) = (at("kstatus"), at("Argo CD"));
    lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let c = cells(l);
            let argo = c[a];
            let (status, message) = match argo.split_once(' ') {
                Some((s, m)) => (s, Some(m.trim_matches('"').to_string())),
                None => (argo, None),
            };
            StateRow {
                state: c[0].to_string(),
                kstatus: c[k].to_string(),
                argo: status.to_string(),
                argo_message: message,
            }
        })
        .collect()
}

fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}
