//! The Dockerfile and scripts/image.sh (which assembles the same image
//! without a container engine, for the node tests) must describe one
//! image: build command, user, entrypoint, CMD, exposed ports and contents.
//! When the Dockerfile changes, this fails until the script follows.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// What the Dockerfile says, in the script's `recipe` vocabulary.
fn dockerfile_recipe() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    // Continuation lines joined, comments dropped.
    let joined = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let instructions: Vec<(String, String)> = joined
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let (op, rest) = l.split_once(char::is_whitespace)?;
            Some((op.to_uppercase(), rest.trim().to_string()))
        })
        .collect();
    let last_from = instructions
        .iter()
        .rposition(|(op, _)| op == "FROM")
        .expect("a FROM");
    let (build, runtime) = instructions.split_at(last_from);
    let mut out = BTreeMap::new();

    let cargo = build
        .iter()
        .filter(|(op, _)| op == "RUN")
        .filter_map(|(_, cmd)| {
            cmd.rsplit("cargo build")
                .next()
                .filter(|_| cmd.contains("cargo build"))
        })
        .next_back()
        .expect("a RUN with cargo build in the build stage");
    let args = cargo
        .split("&&")
        .next()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>();
    out.insert("cargo_build".into(), args.join(" "));
    let strips = build
        .iter()
        .any(|(op, cmd)| op == "RUN" && cmd.split_whitespace().any(|w| w == "strip"));
    out.insert("strip".into(), if strips { "yes" } else { "no" }.into());

    for (op, rest) in runtime {
        match op.as_str() {
            "FROM" => {
                out.insert("base".into(), rest.clone());
            }
            "COPY" => {
                let words: Vec<&str> = rest
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                let src = words[0];
                let src = src.split("/target/").nth(1).unwrap_or(src);
                out.insert("binary".into(), format!("{src} {}", words[1]));
            }
            "USER" => {
                out.insert("user".into(), rest.clone());
            }
            "EXPOSE" => {
                out.insert("expose".into(), rest.clone());
            }
            "ENTRYPOINT" => {
                out.insert("entrypoint".into(), compact_json(rest));
            }
            "CMD" => {
                out.insert("cmd".into(), compact_json(rest));
            }
            _ => {}
        }
    }
    out
}

fn compact_json(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .unwrap_or_else(|e| panic!("{text} is not exec-form JSON: {e}"))
        .to_string()
}

fn script_recipe() -> BTreeMap<String, String> {
    let out = Command::new("bash")
        .args([&repo("scripts/image.sh"), "recipe"])
        .output()
        .expect("run scripts/image.sh recipe");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn dockerfile_and_image_script_describe_the_same_image() {
    let docker = dockerfile_recipe();
    let script = script_recipe();
    for key in [
        "cargo_build",
        "strip",
        "binary",
        "user",
        "entrypoint",
        "cmd",
        "expose",
    ] {
        assert_eq!(
            docker.get(key),
            script.get(key),
            "{key}: the Dockerfile says {:?}, scripts/image.sh says {:?}",
            docker.get(key),
            script.get(key)
        );
    }
    // The script reproduces this base image's contents by hand (see below).
    assert_eq!(
        docker.get("base").map(String::as_str),
        Some("gcr.io/distroless/cc-debian12:nonroot"),
        "the runtime base changed: update what scripts/image.sh puts into the image"
    );
}

/// The assembled image has what distroless cc:nonroot + the Dockerfile's
/// COPY give: the binary, every library it links, CA certificates, the
/// nonroot user, and no shell.
#[test]
fn the_assembled_image_matches_the_dockerfile() {
    let docker = dockerfile_recipe();
    let out = support::node::image_script_command(Path::new(&repo("scripts/image.sh")))
        .arg("build")
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run scripts/image.sh build");
    assert!(out.status.success(), "scripts/image.sh build failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (name, tarball) = stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(n, _)| n.starts_with("docker.io/library/imagelabel-operator:dev-"))
        .expect("the operator image");
    let dir = tempfile::tempdir().unwrap();
    let untar = |archive: &Path, into: &Path| {
        std::fs::create_dir_all(into).unwrap();
        let st = Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(into)
            .status()
            .unwrap();
        assert!(st.success(), "untar {}", archive.display());
    };
    let layout = dir.path().join("layout");
    untar(Path::new(tarball), &layout);
    let read = |p: &Path| -> Value {
        serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .unwrap()
    };
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index = read(&layout.join("index.json"));
    let entry = &index["manifests"][0];
    assert_eq!(entry["annotations"]["io.containerd.image.name"], name);
    let manifest = read(&blob(entry["digest"].as_str().unwrap()));
    let config = read(&blob(manifest["config"]["digest"].as_str().unwrap()));
    let c = &config["config"];
    assert_eq!(c["User"].as_str(), docker.get("user").map(String::as_str));
    assert_eq!(
        Some(c["Entrypoint"].to_string()),
        docker.get("entrypoint").cloned()
    );
    assert_eq!(Some(c["Cmd"].to_string()), docker.get("cmd").cloned());
    let ports: Vec<String> = c["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.trim_end_matches("/tcp").to_string())
        .collect();
    assert_eq!(Some(ports.join(" ")), docker.get("expose").cloned());

    let rootfs = dir.path().join("rootfs");
    untar(
        &blob(manifest["layers"][0]["digest"].as_str().unwrap()),
        &rootfs,
    );
    let binary_dst = docker["binary"]
        .split(' ')
        .nth(1)
        .unwrap()
        .trim_start_matches('/');
    let binary = rootfs.join(binary_dst);
    assert!(binary.is_file(), "no {binary_dst} in the image");
    let ldd = Command::new("ldd").arg(&binary).output().expect("ldd");
    for lib in String::from_utf8_lossy(&ldd.stdout).lines() {
        let words: Vec<&str> = lib.split_whitespace().collect();
        let path = match words.as_slice() {
            [_, "=>", p, ..] if p.starts_with('/') => *p,
            [p, ..] if p.starts_with('/') => *p,
            _ => continue,
        };
        assert!(
            rootfs.join(path.trim_start_matches('/')).exists(),
            "the image lacks {path}, which the binary links"
        );
    }
    assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file());
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:")),
        "{passwd}"
    );
    for shell in ["bin/sh", "bin/bash", "usr/bin/sh", "bin/busybox"] {
        assert!(
            !rootfs.join(shell).exists(),
            "the image has a shell: {shell}"
        );
    }
}
