//! Bringing existing labels under management on a real control plane:
//! `imagelabel export --adopt` against the simulator, `kubectl apply` of
//! the files, and the operator takes every label over without one write.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use imagelabel::provider::Target;
use imagelabel::sim::{DatasetSeed, ImsImageSeed, PaiImageSeed, SeedConfig, VersionSeed};
use support::cluster::assert_success;
use support::operator::{Env, ready, with_test_credentials};

const WAIT: Duration = Duration::from_secs(120);
const PROJECT: &str = "fd73a4a14a4a4dfb9771a8475e5198ea";
const PER_WORKSPACE: usize = 12;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn image_id(ws: &str, i: usize) -> String {
    format!("image-{ws}x{i:03}")
}

/// Labels set by hand before the operator existed, in two workspaces, on
/// datasets and a version, and on IMS images; one more workspace for the
/// set that is exported without adoption.
fn seed() -> SeedConfig {
    let mut seed = SeedConfig::demo();
    for ws in ["7001", "7002", "7003"] {
        let count = if ws == "7003" { 1 } else { PER_WORKSPACE };
        for i in 0..count {
            seed.pai.images.push(PaiImageSeed {
                id: image_id(ws, i),
                name: format!("hand made {i}"),
                workspace_id: Some(ws.into()),
                labels: labels(&[
                    ("system.chipType", if i % 2 == 0 { "GPU" } else { "CPU" }),
                    ("system.framework", "PyTorch 2.3"),
                    ("system.official", "false"),
                ]),
            });
        }
    }
    seed.pai.datasets.push(DatasetSeed {
        id: "d-adopt01".into(),
        name: "adopt".into(),
        workspace_id: Some("7001".into()),
        labels: labels(&[("team", "vision")]),
        versions: vec![VersionSeed {
            name: "v1".into(),
            labels: labels(&[("stage", "raw")]),
        }],
    });
    for i in 0..3 {
        seed.ims.images.push(ImsImageSeed {
            id: format!("00000000-0000-4000-8000-0000000ad00{i}"),
            project_id: PROJECT.into(),
            tags: labels(&[("env", "prod"), ("cost", "ml")]),
        });
    }
    seed
}

fn export(env: &Env, out: &Path, args: &[&str]) {
    let base = env.sim.base_url();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imagelabel"));
    cmd.arg("export")
        .args(args)
        .args(["--namespace", &env.ns, "-o", out.to_str().unwrap()])
        .args(["--pai-endpoint", &base, "--ims-endpoint", &base]);
    let o = with_test_credentials(&mut cmd).output().unwrap();
    assert_success("imagelabel export", &o);
}

fn wait_all_ready(env: &Env) {
    for kind in ["imagelabelsets", "datasetlabelsets"] {
        let out = env.cluster.kubectl([
            "wait",
            "-n",
            &env.ns,
            "--for=condition=Ready",
            kind,
            "--all",
            "--timeout=120s",
        ]);
        assert_success(&format!("wait {kind}"), &out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_sets_adopt_every_label_without_a_write() {
    let seed = seed();
    // The demo seed has IMS images of its own in the project.
    let ims_images = seed
        .ims
        .images
        .iter()
        .filter(|i| i.project_id == PROJECT)
        .count();
    let env = Env::start("adopt", seed).await;
    let _op = env.operator("adopt-op", &[]);
    let adopted = env.cluster.dir().join("adopted");
    export(
        &env,
        &adopted,
        &[
            "--workspace",
            "7001",
            "--workspace",
            "7002",
            "--project",
            PROJECT,
            "--mode",
            "Sync",
            "--adopt",
        ],
    );
    let writes = env.sim.sim().counters().writes;
    assert_success(
        "apply exported",
        &env.cluster
            .kubectl(["apply", "-f", adopted.to_str().unwrap()]),
    );
    wait_all_ready(&env);

    // Every set owns exactly what it declares, and the cloud saw no write.
    let images = env.images().list(&Default::default()).await.unwrap();
    let datasets = env.datasets().list(&Default::default()).await.unwrap();
    assert_eq!(images.items.len(), 2 * PER_WORKSPACE + ims_images);
    assert_eq!(datasets.items.len(), 2, "the dataset and its version");
    for set in &images.items {
        let status = set.status.clone().unwrap_or_default();
        let declared: Vec<&String> = set.spec.labels.keys().collect();
        let owned: Vec<&String> = status.owned_keys.iter().collect();
        assert_eq!(owned, declared, "{:?}", set.metadata.name);
        assert!(!declared.iter().any(|k| *k == "system.official"));
    }
    for set in &datasets.items {
        let status = set.status.clone().unwrap_or_default();
        assert_eq!(status.owned_keys.len(), set.spec.labels.len());
    }
    assert_eq!(
        env.sim.sim().counters().writes,
        writes,
        "adopting {} sets wrote nothing",
        images.items.len() + datasets.items.len()
    );
    let events = env.cluster.kubectl([
        "get",
        "events",
        "-n",
        &env.ns,
        "--field-selector",
        "reason=LabelsAdopted",
        "-o",
        "name",
    ]);
    let count = assert_success("events", &events).lines().count();
    assert_eq!(
        count,
        images.items.len() + datasets.items.len(),
        "one event per set"
    );

    // Adopted keys are owned: dropping one from a spec removes it from the cloud.
    let first = image_id("7001", 0);
    let name = images
        .items
        .iter()
        .find(|s| s.spec.image_id == first)
        .and_then(|s| s.metadata.name.clone())
        .unwrap();
    let target = Target::PaiImage {
        image_id: first.clone(),
        workspace_id: Some("7001".into()),
    };
    let patch = r#"{"spec":{"labels":{"system.framework":null}}}"#;
    assert_success(
        "drop a key",
        &env.cluster.kubectl([
            "patch",
            "-n",
            &env.ns,
            "imagelabelset",
            &name,
            "--type",
            "merge",
            "-p",
            patch,
        ]),
    );
    env.wait_cloud("the dropped key removed", WAIT, |sim| {
        sim.labels_of(&target)
            .is_some_and(|l| !l.contains_key("system.framework"))
    })
    .await;
    assert_eq!(
        env.labels(&target)
            .get("system.official")
            .map(String::as_str),
        Some("false"),
        "a key no set declared stays"
    );

    // Without adoption (today's behaviour) the set owns nothing, and
    // dropping the key leaves it where the person put it.
    let plain = env.cluster.dir().join("plain");
    export(&env, &plain, &["--workspace", "7003", "--mode", "Sync"]);
    assert_success(
        "apply plain",
        &env.cluster
            .kubectl(["apply", "-f", plain.to_str().unwrap()]),
    );
    let lone = image_id("7003", 0);
    let lone_name = format!("hand-made-0-{lone}");
    let status = env.wait_image(&lone_name, "Ready", WAIT, ready).await;
    assert!(status.owned_keys.is_empty(), "{status:?}");
    assert_success(
        "drop a key from the unadopted set",
        &env.cluster.kubectl([
            "patch",
            "-n",
            &env.ns,
            "imagelabelset",
            &lone_name,
            "--type",
            "merge",
            "-p",
            patch,
        ]),
    );
    let generation = env
        .images()
        .get(&lone_name)
        .await
        .unwrap()
        .metadata
        .generation;
    env.wait_image(&lone_name, "the new generation Ready", WAIT, |s| {
        ready(s) && s.observed_generation == generation
    })
    .await;
    let lone_target = Target::PaiImage {
        image_id: lone,
        workspace_id: Some("7003".into()),
    };
    assert_eq!(
        env.labels(&lone_target)
            .get("system.framework")
            .map(String::as_str),
        Some("PyTorch 2.3"),
        "an unadopted key stays"
    );
}
