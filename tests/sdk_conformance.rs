//! The official Python SDKs (alibabacloud-aiworkspace20210204,
//! huaweicloudsdkims), unchanged, against the simulator: `tests/sdk/*.py`
//! run by pytest in a cached virtualenv (`scripts/sdk-venv.sh`).
//!
//! Needs python3 with venv and network access to PyPI the first time.
//! `IMAGELABEL_SKIP_SDK_TESTS=1` skips it (say so when you do).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use imagelabel::sim::{SeedConfig, Sim};

const SEED: &str = r#"
credentials:
  pai:
    - {accessKeyId: sdkAK, accessKeySecret: sdkSecret}
    - {accessKeyId: STS.sdkTemporary, accessKeySecret: sdkStsSecret, securityToken: sdkStsToken}
  bearerTokens: [sk-sdk-test]
  ims:
    - {ak: sdkHwAK, sk: sdkHwSK, projectId: fd73a4a14a4a4dfb9771a8475e5198ea}
    - {ak: sdkHwSTSAK, sk: sdkHwSTSSK, securityToken: sdkHwToken}
qps: 0
pai:
  images:
    - {id: image-sdk0test0001, name: sdk-test, workspaceId: "12345", labels: {system.official: "false"}}
  datasets:
    - id: d-sdk0test0001
      name: sdk-dataset
      workspaceId: "12345"
      labels: {owner: seed}
      versions: [{name: "v 1/β"}]
ims:
  images:
    - id: 67e17426-359e-49fb-aa12-0bd1756ec240
      projectId: fd73a4a14a4a4dfb9771a8475e5198ea
      tags: {env: prod, owner: ml-platform}
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/sdk-venv.sh` and returns the venv's python.
fn sdk_python(root: &Path) -> PathBuf {
    let out = Command::new("bash")
        .arg(root.join("scripts/sdk-venv.sh"))
        .output()
        .expect("run scripts/sdk-venv.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/sdk-venv.sh failed ({}):\n{stderr}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let python = stdout
        .lines()
        .last()
        .expect("sdk-venv.sh prints the python path last")
        .trim()
        .to_string();
    assert!(
        Path::new(&python).exists(),
        "sdk-venv.sh printed {python:?}, which does not exist\n{stderr}"
    );
    PathBuf::from(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdks_work_against_the_simulator() {
    if std::env::var("IMAGELABEL_SKIP_SDK_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: IMAGELABEL_SKIP_SDK_TESTS=1");
        return;
    }
    let root = root();
    let python = tokio::task::spawn_blocking({
        let root = root.clone();
        move || sdk_python(&root)
    })
    .await
    .unwrap();

    let sim = Sim::from_seed(SeedConfig::from_yaml(SEED).unwrap()).unwrap();
    let handle = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();

    let mut cmd = tokio::process::Command::new(&python);
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/sdk"])
        .current_dir(&root)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // The SDKs must reach the loopback simulator directly.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("IMAGELABEL_SIM_URL", handle.base_url())
        .env("PAI_AK", "sdkAK")
        .env("PAI_SECRET", "sdkSecret")
        .env("PAI_STS_AK", "STS.sdkTemporary")
        .env("PAI_STS_SECRET", "sdkStsSecret")
        .env("PAI_STS_TOKEN", "sdkStsToken")
        .env("PAI_BEARER", "sk-sdk-test")
        .env("IMS_AK", "sdkHwAK")
        .env("IMS_SK", "sdkHwSK")
        .env("IMS_STS_AK", "sdkHwSTSAK")
        .env("IMS_STS_SK", "sdkHwSTSSK")
        .env("IMS_STS_TOKEN", "sdkHwToken")
        .env("IMS_PROJECT_ID", "fd73a4a14a4a4dfb9771a8475e5198ea")
        .env("IMS_IMAGE_ID", "67e17426-359e-49fb-aa12-0bd1756ec240")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("pytest finished within 5 minutes")
        .expect("start pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- pytest stdout ---\n{stdout}\n--- pytest stderr ---\n{stderr}");
    let counters = handle.counters();
    println!(
        "--- simulator counters ---\n{}",
        serde_json::to_string_pretty(&counters).unwrap()
    );
    handle.shutdown().await;
    assert!(out.status.success(), "pytest exited with {}", out.status);
    // The SDKs really called the simulator.
    assert!(
        counters.api("AddImageLabels").ok > 0 && counters.api("ListImageTags").ok > 0,
        "{counters:?}"
    );
}
