//! The official Python SDKs (alibabacloud-aiworkspace20210204,
//! alibabacloud-sts20150401, huaweicloudsdkims), unchanged, against the simulator: `tests/sdk/*.py`
//! run by pytest in a cached virtualenv (`scripts/sdk-venv.sh`).
//!
//! Needs python3 with venv and network access to PyPI the first time.
//! `IMAGELABEL_SKIP_SDK_TESTS=1` skips it (say so when you do).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use imagelabel::sim::{CounterSnapshot, SeedConfig, Sim};

const SEED: &str = r#"
credentials:
  mainAccountId: "1357924680135792"
  pai:
    - {accessKeyId: sdkAK, accessKeySecret: sdkSecret}
    - {accessKeyId: STS.sdkTemporary, accessKeySecret: sdkStsSecret, securityToken: sdkStsToken}
  bearerTokens: [sk-sdk-test]
  ims:
    - {ak: sdkHwAK, sk: sdkHwSK, projectId: fd73a4a14a4a4dfb9771a8475e5198ea}
    - {ak: sdkHwSTSAK, sk: sdkHwSTSSK, securityToken: sdkHwToken}
flowControl: {enabled: false}
pai:
  # image-sdk0<kind> and d-sdk0<kind>: one of each per credential kind the
  # label scenarios of test_pai_sdk.py run with.
  # A key the cloud gained after AddImageLabels' documented list.
  extraImageLabelKeys: ["system.team ml/ops"]
  images:
    - {id: image-sdk0test0001, name: sdk-test, workspaceId: "12345", labels: {system.official: "false"}}
    - {id: image-sdk0access-key, name: sdk-ak, workspaceId: "12345", labels: {system.official: "false"}}
    - {id: image-sdk0sts-token, name: sdk-sts, workspaceId: "12345", labels: {system.official: "false"}}
    - {id: image-sdk0bearer, name: sdk-bearer, workspaceId: "12345", labels: {system.official: "false"}}
  datasets:
    - {id: d-sdk0access-key, name: sdk-ak, workspaceId: "12345", labels: {owner: seed}, versions: [{name: "v 1/β"}]}
    - {id: d-sdk0sts-token, name: sdk-sts, workspaceId: "12345", labels: {owner: seed}, versions: [{name: "v 1/β"}]}
    - {id: d-sdk0bearer, name: sdk-bearer, workspaceId: "12345", labels: {owner: seed}, versions: [{name: "v 1/β"}]}
    - {id: d-sdk0rules, name: sdk-rules, workspaceId: "12345", labels: {owner: seed}, versions: [{name: "v 1/β"}]}
ims:
  images:
    - id: 67e17426-359e-49fb-aa12-0bd1756ec240
      projectId: fd73a4a14a4a4dfb9771a8475e5198ea
      tags: {env: prod, owner: ml-platform}
    - id: 0b6a7b0c-0000-4000-8000-00000000rule
      projectId: fd73a4a14a4a4dfb9771a8475e5198ea
      tags: {env: prod}
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
        .env("PAI_ACCOUNT_ID", "1357924680135792")
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
        .env("IMS_RULES_IMAGE_ID", "0b6a7b0c-0000-4000-8000-00000000rule")
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
    let passed = pytest_passed(&stdout);
    assert!(
        out.status.code() != Some(5),
        "pytest collected no tests (exit code 5)"
    );
    assert!(out.status.success(), "pytest exited with {}", out.status);
    assert!(
        passed >= MIN_PYTEST_PASSED,
        "pytest passed {passed} tests, expected at least {MIN_PYTEST_PASSED}"
    );
    check_counters(&counters);
}

/// Tests in tests/sdk/*.py: 9 PAI label scenarios (3 scenarios × 3
/// credential kinds), 7 other PAI tests, 6 IMS tests; the rules of
/// docs/cloud-rules.md: 5 PAI (test_pai_rules.py), 14 IMS (12 refused
/// tags, the edges, deletes; test_ims_rules.py), 7 signing-time
/// (test_signing_rules.py); 4 flow-control and STS GetCallerIdentity
/// (test_flow_control_and_sts.py).
const MIN_PYTEST_PASSED: u64 = 52;

/// The count in pytest's `-q` summary line (`23 passed in 4.2s`); 0 when
/// nothing passed.
fn pytest_passed(stdout: &str) -> u64 {
    stdout
        .lines()
        .rev()
        .find_map(|line| {
            let words: Vec<&str> = line
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|w| !w.is_empty())
                .collect();
            words
                .windows(2)
                .find(|w| w[1] == "passed")
                .and_then(|w| w[0].parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn pytest_summary_is_read() {
    assert_eq!(pytest_passed("....\n22 passed in 1.43s\n"), 22);
    assert_eq!(
        pytest_passed("F.\n1 failed, 21 passed, 2 warnings in 3.10s\n"),
        21
    );
    assert_eq!(pytest_passed("\nno tests ran in 0.01s\n"), 0);
}

/// Credential kinds every PAI label scenario runs with (AccessKey, STS
/// token, bearer).
const KINDS: u64 = 3;

/// Successful calls each PAI label scenario of test_pai_sdk.py makes per
/// credential kind.
const PAI_CALLS_PER_KIND: &[(&str, u64)] = &[
    ("AddImageLabels", 1),
    ("ListImageLabels", 4),
    ("RemoveImageLabels", 3),
    ("CreateDatasetLabels", 1),
    ("GetDataset", 2),
    ("DeleteDatasetLabels", 1),
    ("CreateDatasetVersionLabels", 1),
    ("GetDatasetVersion", 2),
    ("DeleteDatasetVersionLabels", 1),
];

/// The SDK calls reached the simulator: per API at least as many successes
/// as the scenarios make, and the rejected credentials counted as errors
/// with their codes.
fn check_counters(counters: &CounterSnapshot) {
    let mut short = Vec::new();
    let mut at_least = |api: &str, what: &str, got: u64, want: u64| {
        if got < want {
            short.push(format!("{api} {what}: {got} < {want}"));
        }
    };
    for (api, per_kind) in PAI_CALLS_PER_KIND {
        at_least(api, "ok", counters.api(api).ok, per_kind * KINDS);
    }
    for (api, ok) in [
        ("AddImageTag", 1),
        ("BatchAddOrDeleteTags", 2),
        ("DeleteImageTag", 2),
        ("ListImageTags", 1),
    ] {
        at_least(api, "ok", counters.api(api).ok, ok);
    }
    // Failed authentication is counted under the API that was called.
    for (api, code) in [
        ("ListImageLabels", "SignatureDoesNotMatch"),
        (
            "ListImageLabels",
            "InvalidSecurityToken.MismatchWithAccessKey",
        ),
        ("ListImageLabels", "InvalidApiKey"),
        ("ListImageLabels", "InvalidAccessKeyId.NotFound"),
        ("ListImageTags", "APIGW.0301"),
    ] {
        let got = counters.api(api).by_code.get(code).copied().unwrap_or(0);
        at_least(api, code, got, 1);
    }
    assert!(short.is_empty(), "simulator counters too low: {short:#?}");
}
