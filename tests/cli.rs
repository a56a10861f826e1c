//! The `imagelabel` binary end to end: `imagelabel sim` as a separate
//! process, `plan` / `apply` against it, exit codes, output, counters.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_imagelabel");

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `imagelabel sim` on a free port, killed on drop.
struct SimProcess {
    child: Child,
    base: String,
}

impl SimProcess {
    fn start(seed: Option<&Path>) -> SimProcess {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(BIN);
        cmd.args(["sim", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(s) = seed {
            cmd.arg("--seed").arg(s);
        }
        let child = cmd.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "imagelabel sim did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        SimProcess { child, base }
    }

    /// A tiny HTTP/1.0 GET of an admin endpoint (no HTTP client needed in a test).
    fn get(&self, path: &str) -> Value {
        use std::io::{Read, Write};
        let addr = self.base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    }

    fn writes(&self) -> u64 {
        self.get("/_sim/counters")["writes"].as_u64().unwrap()
    }

    fn reads(&self) -> u64 {
        self.get("/_sim/counters")["reads"].as_u64().unwrap()
    }

    fn image_labels(&self, id: &str) -> Value {
        let state = self.get("/_sim/state");
        find_labels(&state, id).unwrap_or_else(|| panic!("no {id} in {state:#}"))
    }

    /// Tags of an IMS image (`imsImages.<project>.<image>` in the state JSON).
    fn ims_tags(&self, image: &str) -> Value {
        let state = self.get("/_sim/state");
        state["imsImages"][IMS_PROJECT][image].clone()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "testSecret")])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .args([
                "--pai-endpoint",
                &self.base,
                "--ims-endpoint",
                &self.base,
                "--sts-endpoint",
                &self.base,
            ])
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "testAK")
            .env("HUAWEICLOUD_SDK_AK", "hwAK")
            .env("HUAWEICLOUD_SDK_SK", "hwSK")
            .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
            .env_remove("DASHSCOPE_API_KEY")
            .env_remove("ALIBABA_CLOUD_ROLE_ARN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds the labels (or tags) object of an image id anywhere in the state JSON.
fn find_labels(v: &Value, id: &str) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.get("id").and_then(Value::as_str) == Some(id) {
                return m.get("labels").or_else(|| m.get("tags")).cloned();
            }
            if let Some(inner) = m.get(id)
                && let Some(l) = inner.get("labels").or_else(|| inner.get("tags"))
            {
                return Some(l.clone());
            }
            m.values().find_map(|x| find_labels(x, id))
        }
        Value::Array(a) => a.iter().find_map(|x| find_labels(x, id)),
        _ => None,
    }
}

const IMS_IMAGE: &str = "67e17426-359e-49fb-aa12-0bd1756ec240";
const IMS_PROJECT: &str = "fd73a4a14a4a4dfb9771a8475e5198ea";

/// `spec.labels` of a one-document manifest, as JSON strings.
fn manifest_labels(path: &Path) -> serde_json::Map<String, Value> {
    let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["spec"]["labels"]
        .as_object()
        .unwrap_or_else(|| panic!("{}: no spec.labels", path.display()))
        .clone()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn plan_apply_and_replan_against_imagelabel_sim() {
    let sim = SimProcess::start(None);
    let examples = repo("examples");
    let ex = examples.to_str().unwrap();

    let plan = sim.run(&["plan", "-f", ex]);
    let (out, err) = text(&plan);
    assert_eq!(code(&plan), 2, "plan with changes exits 2: {out}{err}");
    assert!(
        out.contains("~ system.framework: \"XGBoost 1.6.0\" -> \"XGBoost 2.0.3\""),
        "{out}"
    );
    assert_eq!(sim.writes(), 0, "plan writes nothing");

    let json = sim.run(&["plan", "-f", ex, "-o", "json"]);
    let v: Value = serde_json::from_slice(&json.stdout).expect("-o json is JSON");
    let sets = v["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 5);
    let xgb = sets
        .iter()
        .find(|s| s["name"] == "ml-platform/xgboost-gpu")
        .unwrap();
    assert_eq!(xgb["add"]["system.supported.dlc"], "true");
    assert_eq!(xgb["change"]["system.pythonVersion"]["to"], "3.11");
    let ims = sets
        .iter()
        .find(|s| s["name"] == "ml-platform/ubuntu-cuda")
        .unwrap_or_else(|| panic!("no IMS set in {v:#}"));
    assert_eq!(
        ims["add"],
        serde_json::json!({"cuda": "12.4", "team": "ml-platform"}),
        "the IMS tags to add: {ims:#}"
    );

    let apply = sim.run(&["apply", "-f", ex]);
    let (out, err) = text(&apply);
    assert_eq!(code(&apply), 0, "{out}{err}");
    assert!(out.contains("RequestId"), "{out}");
    let labels = sim.image_labels("image-4c62abc53uor");
    assert_eq!(labels["system.framework"], "XGBoost 2.0.3");
    // The IMS image now holds exactly the manifest's tags, plus the seed's
    // `owner` tag, which no set owns (prune Owned leaves it).
    let mut expected = manifest_labels(&repo("examples/ims-image.yaml"));
    expected.insert("owner".into(), "ml-platform".into());
    assert_eq!(sim.ims_tags(IMS_IMAGE), Value::Object(expected));

    // Converged: no changes, exit 0, read calls only.
    let (reads, writes) = (sim.reads(), sim.writes());
    let again = sim.run(&["plan", "-f", ex]);
    let (out, _) = text(&again);
    assert_eq!(code(&again), 0, "{out}");
    assert!(out.contains("0 of 5 sets with changes"), "{out}");
    assert_eq!(sim.writes(), writes, "a converged plan makes no write call");
    assert_eq!(sim.reads() - reads, 5, "one read per set");
}

#[test]
fn invalid_manifests_fail_whole_naming_file_and_field() {
    let sim = SimProcess::start(None);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo("examples/pai-image-xgboost.yaml"),
        dir.path().join("a-good.yaml"),
    )
    .unwrap();
    std::fs::copy(
        repo("tests/manifests/invalid/non-system-key.yaml"),
        dir.path().join("b-bad.yaml"),
    )
    .unwrap();
    for verb in ["plan", "apply"] {
        let o = sim.run(&[verb, "-f", dir.path().to_str().unwrap()]);
        let (_, err) = text(&o);
        assert_eq!(code(&o), 1, "{verb}: {err}");
        assert!(
            err.contains("b-bad.yaml")
                && err.contains("spec.labels[\"team\"]")
                && err.contains("system."),
            "{err}"
        );
    }
    // -o json says the same on stdout, one entry per problem.
    let o = sim.run(&["plan", "-o", "json", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    let invalid = v["invalid"].as_array().expect("invalid list");
    assert_eq!(invalid.len(), 1, "{v}");
    assert!(
        invalid[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("b-bad.yaml")
    );
    assert_eq!(invalid[0]["field"], "spec.labels[\"team\"]");
    assert_eq!(
        sim.writes() + sim.reads(),
        0,
        "nothing called for a manifest set that failed validation"
    );

    // Each file names the field its error must name (tests/manifests/invalid/README.md).
    let invalid = repo("tests/manifests/invalid");
    let mut expected = Vec::new();
    for entry in std::fs::read_dir(&invalid).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if let Some(field) = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect-field: "))
        {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            expected.push((file, field.to_string()));
        }
    }
    assert!(expected.len() >= 11, "{expected:?}");
    for verb in ["plan", "apply"] {
        let o = sim.run(&[verb, "-f", invalid.to_str().unwrap()]);
        let (_, err) = text(&o);
        assert_eq!(code(&o), 1, "{verb}: {err}");
        for (file, field) in &expected {
            assert!(
                err.lines()
                    .any(|l| l.contains(file.as_str()) && l.contains(field.as_str())),
                "{verb}: {file}/{field} not named in: {err}"
            );
        }
    }
    assert_eq!(
        sim.writes() + sim.reads(),
        0,
        "no cloud call for the invalid manifests (IMS ones included)"
    );
}

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), body).unwrap();
}

const HEAD: &str = "apiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata: {name: NAME, namespace: ci}\nspec:\n  imageId: IMAGE\n";

fn set(name: &str, image: &str, labels: &str, extra: &str) -> String {
    format!(
        "{}{extra}  labels: {labels}\n",
        HEAD.replace("NAME", name).replace("IMAGE", image)
    )
}

/// A temp dir for a state file, with a manifest directory `m` in it.
fn state_and_manifests() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    std::fs::create_dir(&m).unwrap();
    (dir, m)
}

#[test]
fn state_file_gives_ownership_so_prune_owned_removes_only_our_keys() {
    let sim = SimProcess::start(None);
    let (dir, m) = state_and_manifests();
    let state = dir.path().join("state.json");
    let (st, mp) = (state.to_str().unwrap(), m.to_str().unwrap());
    // image-4c62abc53uor already has system.chipType=GPU (not ours).
    write(
        &m,
        "s.yaml",
        &set(
            "s",
            "image-4c62abc53uor",
            "{system.chipType: GPU, system.dsw.tag: \"1\"}",
            "",
        ),
    );
    assert_eq!(code(&sim.run(&["apply", "-f", mp, "--state", st])), 0);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(
        saved["owned"]["ImageLabelSet/ci/s"],
        serde_json::json!(["system.dsw.tag"])
    );

    write(&m, "s.yaml", &set("s", "image-4c62abc53uor", "{}", ""));
    let o = sim.run(&["apply", "-f", mp, "--state", st]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let labels = sim.image_labels("image-4c62abc53uor");
    assert!(
        labels.get("system.dsw.tag").is_none(),
        "our key removed: {labels}"
    );
    assert_eq!(
        labels["system.chipType"], "GPU",
        "a key we never wrote stays"
    );
}

/// A key the cloud gained after our list is refused until the operator is
/// told about it, with zero cloud calls either way it is refused.
#[test]
fn extra_pai_image_keys_extends_the_documented_list() {
    let sim = SimProcess::start(None);
    let dir = tempfile::tempdir().unwrap();
    let labels = "{system.chipType: GPU, system.gpuModel: A10}";
    write(
        dir.path(),
        "s.yaml",
        &set("s", "image-4c62abc53uor", labels, ""),
    );
    let mp = dir.path().to_str().unwrap();
    let o = sim.run(&["plan", "-f", mp]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 1, "{err}");
    assert!(err.contains("spec.labels[\"system.gpuModel\"]"), "{err}");
    assert_eq!(sim.writes() + sim.reads(), 0);
    for args in [
        &[
            "plan",
            "-f",
            mp,
            "--extra-pai-image-keys",
            "system.vendor,system.gpuModel",
        ][..],
        &["plan", "-f", mp, "--extra-pai-image-keys=system.gpuModel"][..],
    ] {
        let o = sim.run(args);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 2, "{args:?}: {out}{err}");
        assert!(out.contains("system.gpuModel"), "{out}");
    }
    let o = sim.run_with(
        &["plan", "-f", mp],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "testSecret"),
            ("IMAGELABEL_EXTRA_PAI_IMAGE_KEYS", "system.gpuModel"),
        ],
    );
    assert_eq!(code(&o), 2, "{:?}", text(&o));
}

#[test]
fn conflicts_resolve_deterministically_and_ims_cap_is_checked_before_writing() {
    let sim = SimProcess::start(None);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yaml",
        &set("a", "image-9f1e2d3c4b5a", "{system.source: team-a}", ""),
    );
    write(
        dir.path(),
        "b.yaml",
        &set("b", "image-9f1e2d3c4b5a", "{system.source: team-b}", ""),
    );
    let o = sim.run(&["apply", "-f", dir.path().to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(
        out.contains(
            "! system.source: wants \"team-b\", but ImageLabelSet/ci/a (older) declares \"team-a\""
        ),
        "{out}"
    );
    assert_eq!(
        sim.image_labels("image-9f1e2d3c4b5a")["system.source"],
        "team-a"
    );

    let ims = dir.path().join("ims");
    std::fs::create_dir(&ims).unwrap();
    let many: Vec<String> = (0..9).map(|i| format!("k{i}: v")).collect();
    let body = format!(
        "apiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata: {{name: full, namespace: ci}}\nspec:\n  provider: huaweicloud-ims\n  imageId: {IMS_IMAGE}\n  projectId: {IMS_PROJECT}\n  labels: {{{}}}\n",
        many.join(", ")
    );
    write(&ims, "full.yaml", &body);
    let writes = sim.writes();
    let o = sim.run(&["apply", "-f", ims.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "{out}{err}");
    assert!(
        out.contains("at most 10") && out.contains("11 labels"),
        "{out}"
    );
    assert_eq!(sim.writes(), writes, "no write for a plan past the cap");
}

#[test]
fn wrong_credentials_fail_clearly_without_showing_the_secret() {
    let sim = SimProcess::start(None);
    let o = sim.run_with(
        &[
            "apply",
            "-f",
            repo("examples/pai-image-xgboost.yaml").to_str().unwrap(),
        ],
        &[("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "Sup3rWrongSecret")],
    );
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1);
    assert!(out.contains("SignatureDoesNotMatch"), "{out}{err}");
    assert!(!out.contains("Sup3rWrongSecret") && !err.contains("Sup3rWrongSecret"));
}

#[test]
fn crd_and_demo_commands() {
    let o = Command::new(BIN).arg("crd").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        std::fs::read_to_string(repo("crds/imagelabel.io.yaml")).unwrap()
    );
    let o = Command::new(BIN).arg("demo").output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(
        out.contains("Applied: 5 of 5 sets with changes")
            && out.contains("Plan: 0 of 5 sets with changes")
            && out.contains("0 write calls"),
        "{out}"
    );
    // The final labels, after the apply: a changed PAI label and an added IMS tag.
    let (_, after) = out
        .split_once("== Labels in the cloud after")
        .unwrap_or_else(|| panic!("no final labels printed: {out}"));
    let line = |key: &str| {
        after
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key} ")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    assert_eq!(
        line("system.framework").as_deref(),
        Some("system.framework = XGBoost 2.0.3 [declared]"),
        "{after}"
    );
    assert_eq!(
        line("cuda").as_deref(),
        Some("cuda = 12.4 [declared]"),
        "{after}"
    );
}

#[test]
fn adoption_is_recorded_in_the_state_file_without_a_write() {
    let sim = SimProcess::start(None);
    let (dir, m) = state_and_manifests();
    let state = dir.path().join("state.json");
    let (st, mp) = (state.to_str().unwrap(), m.to_str().unwrap());
    // image-4c62abc53uor already has system.chipType=GPU, set by someone else.
    let declared = "{system.chipType: GPU}";
    write(
        &m,
        "s.yaml",
        &set("s", "image-4c62abc53uor", declared, "  adopt: true\n"),
    );
    let plan = sim.run(&["plan", "-f", mp, "-o", "json"]);
    assert_eq!(
        code(&plan),
        0,
        "adoption alone is no change: {:?}",
        text(&plan)
    );
    let v: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(
        v["sets"][0]["adopted"],
        serde_json::json!(["system.chipType"])
    );

    let writes = sim.writes();
    let o = sim.run(&["apply", "-f", mp, "--state", st]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    assert_eq!(sim.writes(), writes, "adopting writes nothing");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(
        saved["owned"]["ImageLabelSet/ci/s"],
        serde_json::json!(["system.chipType"])
    );

    // Owned now: dropping it from the spec removes it.
    write(
        &m,
        "s.yaml",
        &set("s", "image-4c62abc53uor", "{}", "  adopt: true\n"),
    );
    let o = sim.run(&["apply", "-f", mp, "--state", st]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let labels = sim.image_labels("image-4c62abc53uor");
    assert!(labels.get("system.chipType").is_none(), "{labels}");
}

#[test]
fn plan_as_markdown_for_a_pull_request_comment() {
    let sim = SimProcess::start(None);
    let ex = repo("examples");
    let o = sim.run(&["plan", "-f", ex.to_str().unwrap(), "-o", "markdown"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 2, "same exit code as the table: {out}{err}");
    let header = "| set | target | action | key | from | to |";
    assert!(out.starts_with("### imagelabel plan: "), "{out}");
    assert!(out.contains(header), "{out}");
    // The same change the table shows as `~ system.framework: ... -> ...`.
    assert!(
        out.lines().any(|l| l.contains("`ml-platform/xgboost-gpu`")
            && l.contains("| change | system.framework | \"XGBoost 1.6.0\" | \"XGBoost 2.0.3\" |")),
        "{out}"
    );
    // Every row has as many cells as the header, whatever the values hold.
    let cells = |l: &str| l.replace("\\|", "").matches('|').count();
    for l in out.lines().filter(|l| l.starts_with('|')) {
        assert_eq!(cells(l), cells(header), "{l}");
    }

    assert_eq!(code(&sim.run(&["apply", "-f", ex.to_str().unwrap()])), 0);
    let o = sim.run(&["plan", "-f", ex.to_str().unwrap(), "-o", "markdown"]);
    let (out, _) = text(&o);
    assert_eq!(code(&o), 0);
    assert!(out.contains("No changes"), "{out}");
    assert!(!out.contains(header), "{out}");
}

/// A cloud as people leave it: PAI images in two workspaces (1001 and
/// 2002, as many as `images` says) with hand-set labels (some the cloud's own, which no set may
/// claim), datasets with versions, and IMS images.
fn busy_seed(images: [usize; 2]) -> String {
    let mut s = String::from(
        "credentials:\n  pai: [{accessKeyId: testAK, accessKeySecret: testSecret}]\n  ims: [{ak: hwAK, sk: hwSK}]\nflowControl: {enabled: false}\npai:\n  images:\n",
    );
    let chips = ["GPU", "CPU", "PPU"];
    for (ws, count) in ["1001", "2002"].into_iter().zip(images) {
        for i in 0..count {
            let mut labels = format!("system.chipType: {}", chips[i % 3]);
            if i % 4 == 0 {
                labels.push_str(&format!(", system.framework: \"PyTorch 2.{i}\""));
            }
            if i % 5 == 0 {
                labels.push_str(", system.official: \"false\", acs:owner: platform");
            }
            if i % 7 == 0 {
                labels = "system.official: \"true\"".into();
            }
            s.push_str(&format!(
                "    - {{id: image-{ws}x{i:04}, name: \"Team Image {i}\", workspaceId: \"{ws}\", labels: {{{labels}}}}}\n"
            ));
        }
    }
    s.push_str("  datasets:\n");
    for i in 0..6 {
        let ws = if i % 2 == 0 { "1001" } else { "2002" };
        s.push_str(&format!(
            "    - {{id: d-{i:03}, name: data{i}, workspaceId: \"{ws}\", labels: {{team: t{i}, aliyun.x: y}}, versions: [{{name: v1, labels: {{stage: raw}}}}, {{name: v2}}]}}\n"
        ));
    }
    s.push_str("ims:\n  images:\n");
    for i in 0..12 {
        s.push_str(&format!(
            "    - {{id: 00000000-0000-4000-8000-{i:012}, projectId: {IMS_PROJECT}, tags: {{env: e{}, _sys_x: y}}}}\n",
            i % 3
        ));
    }
    s
}

fn ok_calls(sim: &SimProcess, api: &str) -> u64 {
    sim.get("/_sim/counters")["apis"][api]["ok"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn export_then_plan_finds_nothing_to_change_and_is_stable() {
    // 200 is a whole number of pages: the reported total, not an empty
    // page, must end the listing.
    const PER_WORKSPACE: [usize; 2] = [150, 200];
    const PAGE: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.yaml");
    std::fs::write(&seed, busy_seed(PER_WORKSPACE)).unwrap();
    let sim = SimProcess::start(Some(&seed));
    // Both workspaces and the IMS project; `extra` picks mode and output.
    let export = |extra: &[&str]| {
        let mut args = vec![
            "export",
            "--workspace",
            "1001",
            "--workspace",
            "2002",
            "--project",
            IMS_PROJECT,
            "--namespace",
            "ml",
        ];
        args.extend_from_slice(extra);
        let o = sim.run(&args);
        assert_eq!(code(&o), 0, "{:?}", text(&o));
        o
    };
    let first = dir.path().join("first");
    export(&["-o", first.to_str().unwrap(), "--mode", "Sync", "--adopt"]);
    // ⌈images ÷ 100⌉ ListImages calls per workspace, never more: 2 + 2.
    assert_eq!(
        ok_calls(&sim, "ListImages") as usize,
        PER_WORKSPACE
            .iter()
            .map(|n| n.div_ceil(PAGE))
            .sum::<usize>()
    );
    assert_eq!(
        ok_calls(&sim, "ListCloudImages"),
        1,
        "12 IMS images fit one page"
    );
    assert_eq!(sim.writes(), 0, "export only reads");

    let mut files: Vec<String> = std::fs::read_dir(&first)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            format!("ims-cn-shanghai-project-{IMS_PROJECT}.yaml"),
            "pai-cn-shanghai-workspace-1001.yaml".into(),
            "pai-cn-shanghai-workspace-2002.yaml".into(),
        ]
    );
    let all: String = files
        .iter()
        .map(|f| std::fs::read_to_string(first.join(f)).unwrap())
        .collect();
    for reserved in ["system.official", "acs:owner", "aliyun.x", "_sys_x"] {
        assert!(!all.contains(reserved), "{reserved} exported");
    }

    // The exported sets describe the cloud exactly: nothing to plan, and
    // applying them with adoption writes nothing but owns every key.
    let plan = sim.run(&["plan", "-f", first.to_str().unwrap(), "-o", "json"]);
    assert_eq!(code(&plan), 0, "{:?}", text(&plan));
    let v: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let sets = v["sets"].as_array().unwrap();
    // Every image but the 1-in-7 holding only the cloud's own label, 6
    // datasets and their 6 labelled versions, 12 IMS images.
    let pai_images: usize = PER_WORKSPACE.iter().map(|n| n - n.div_ceil(7)).sum();
    assert_eq!(sets.len(), pai_images + 6 + 6 + 12);
    let state = dir.path().join("state.json");
    let writes = sim.writes();
    let apply = sim.run(&[
        "apply",
        "-f",
        first.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code(&apply), 0, "{:?}", text(&apply));
    assert_eq!(sim.writes(), writes, "adoption writes nothing");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let owned = saved["owned"].as_object().unwrap();
    assert_eq!(owned.len(), sets.len(), "every set owns what it adopted");
    assert!(
        !owned.keys().any(|k| k.contains("1001x0000")),
        "image 0 holds only the cloud's system.official: no set"
    );
    assert_eq!(
        saved["owned"]["ImageLabelSet/ml/team-image-4-image-1001x0004"],
        serde_json::json!(["system.chipType", "system.framework"])
    );

    // On stdout the files form one stream that plans the same.
    let o = export(&[]);
    let stream = dir.path().join("stream.yaml");
    std::fs::write(&stream, &o.stdout).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        all.replace("mode: Sync\n  adopt: true", "mode: Observe")
    );
    let replan = sim.run(&["plan", "-f", stream.to_str().unwrap()]);
    let (out, _) = text(&replan);
    assert_eq!(code(&replan), 0, "{out}");
    assert!(
        out.contains(&format!("0 of {} sets with changes", sets.len())),
        "{out}"
    );

    let second = dir.path().join("second");
    export(&["-o", second.to_str().unwrap(), "--mode", "Sync", "--adopt"]);
    for f in &files {
        assert_eq!(
            std::fs::read(first.join(f)).unwrap(),
            std::fs::read(second.join(f)).unwrap(),
            "{f} differs between two exports"
        );
    }
}

#[test]
fn export_refuses_filters_the_cloud_would_refuse() {
    let sim = SimProcess::start(None);
    for (args, field) in [
        (
            &["--workspace", "1", "--label", "team=x"][..],
            "--label team=x",
        ),
        (
            &["--workspace", "1", "--label", "system.chipType=a,b"][..],
            "--label",
        ),
        (&["--project", "p", "--tag", "a=b=c"][..], "--tag a=b=c"),
        (
            &["--workspace", "1", "--namespace", "Bad_NS"][..],
            "--namespace",
        ),
        (&[][..], "--workspace"),
    ] {
        let mut all = vec!["export"];
        all.extend_from_slice(args);
        let o = sim.run(&all);
        let (_, err) = text(&o);
        assert_ne!(code(&o), 0, "{args:?}");
        assert!(err.contains(field), "{args:?}: {err}");
    }
    assert_eq!(sim.reads() + sim.writes(), 0, "nothing sent");
}

#[test]
fn oversized_input_fails_fast_with_a_clear_error() {
    let o = Command::new(BIN)
        .args(["plan", "-f", "/dev/zero"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "{out}{err}");
    assert!(
        err.contains("/dev/zero") && err.contains("limit for a manifest file"),
        "{out}{err}"
    );
}

/// `apply` runs objects concurrently; the outcome must be the one of a
/// sequential run: the same plan per set (conflicts between sets on one
/// object included), the same labels in the cloud, the same state file.
#[test]
fn concurrent_apply_equals_sequential() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.yaml");
    std::fs::write(&seed, busy_seed([60, 0])).unwrap();
    let m = dir.path().join("m");
    std::fs::create_dir(&m).unwrap();
    let mut docs = String::new();
    for i in 0..60 {
        let image = format!("image-1001x{i:04}");
        docs.push_str("---\n");
        docs.push_str(&set(
            &format!("s{i:02}"),
            &image,
            &format!("{{system.source: s{i}, system.dsw.tag: \"{}\"}}", i % 3),
            "",
        ));
        // Every fifth object is also claimed by a later set, which loses
        // system.source to the older one and adds a key of its own.
        if i % 5 == 0 {
            docs.push_str("---\n");
            docs.push_str(&set(
                &format!("t{i:02}"),
                &image,
                "{system.source: other, system.dsw.stage: x}",
                "",
            ));
        }
    }
    write(&m, "sets.yaml", &docs);
    let mut outcomes = Vec::new();
    for concurrency in ["1", "16"] {
        let sim = SimProcess::start(Some(&seed));
        let state = dir.path().join(format!("state-{concurrency}.json"));
        let o = sim.run(&[
            "apply",
            "-f",
            m.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "-o",
            "json",
            "--concurrency",
            concurrency,
        ]);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 0, "--concurrency {concurrency}: {out}{err}");
        let mut sets: Value = serde_json::from_str(&out).unwrap();
        for s in sets["sets"].as_array_mut().unwrap() {
            s.as_object_mut().unwrap().remove("requestId");
        }
        let labels: Vec<Value> = (0..60)
            .map(|i| sim.image_labels(&format!("image-1001x{i:04}")))
            .collect();
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        outcomes.push((sets, labels, saved));
    }
    let (seq, par) = (&outcomes[0], &outcomes[1]);
    assert_eq!(seq.0, par.0, "per-set results differ");
    assert_eq!(seq.1, par.1, "cloud labels differ");
    assert_eq!(seq.2, par.2, "state files differ");
    assert_eq!(
        seq.1[5]["system.source"], "s5",
        "the older set keeps the key: {}",
        seq.1[5]
    );
    assert_eq!(seq.1[5]["system.dsw.stage"], "x");
}
