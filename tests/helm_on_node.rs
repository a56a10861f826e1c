//! The Helm chart installed on a real node: the operator image (assembled
//! by scripts/image.sh, imported into containerd) runs as two pods on a
//! kubelet, with RRSA through a projected ServiceAccount token that the
//! simulator's STS verifies against the API server's signing key.
//!
//! Skips (with a printed reason) where the machine cannot run pods; see
//! tests/support/node.rs.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use imagelabel::provider::Target;
use imagelabel::sim::{OidcIssuerSeed, SeedConfig, Sim};
use serde_json::Value;

use support::cluster::{SERVICE_ACCOUNT_ISSUER, assert_success};
use support::node::{NODE_IP, Node};
use support::operator::{IMS_SK, PAI_SECRET, apply_examples_and_wait_ready, sum_metric};

const NS: &str = "imagelabel-system";
const RELEASE: &str = "imagelabel-operator";
const SELECTOR: &str = "app.kubernetes.io/instance=imagelabel-operator";
/// Where ACK's pod-identity webhook mounts the token; the test mounts it
/// itself (no webhook here) through the chart's extraVolumes.
const TOKEN_DIR: &str = "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens";
const STS_AUDIENCE: &str = "sts.aliyuncs.com";

fn chart() -> String {
    format!(
        "{}/deploy/helm/imagelabel-operator",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[derive(Debug, Clone)]
struct Pod {
    name: String,
    ip: String,
    ready: bool,
    running: bool,
    deleting: bool,
}

fn pods(node: &Node) -> Vec<Pod> {
    let out = node.kubectl_ok(["get", "pods", "-n", NS, "-l", SELECTOR, "-o", "json"]);
    let list: Value = serde_json::from_str(&out).expect("pod list");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| Pod {
            name: p["metadata"]["name"].as_str().unwrap_or_default().into(),
            ip: p["status"]["podIP"].as_str().unwrap_or_default().into(),
            running: p["status"]["phase"] == "Running",
            ready: p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True"),
            deleting: !p["metadata"]["deletionTimestamp"].is_null(),
        })
        .collect()
}

/// Waits until exactly `n` pods exist, all Running and Ready, none of them
/// in `not`; returns them.
async fn wait_pods(node: &Node, n: usize, not: &BTreeSet<String>, what: &str) -> Vec<Pod> {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let all = pods(node);
        if all.len() == n
            && all
                .iter()
                .all(|p| p.running && p.ready && !p.deleting && !not.contains(&p.name))
        {
            return all;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: want {n} Running and Ready pods (not {not:?}), have {all:#?}\n{}\n{}",
                node.cluster
                    .kubectl(["describe", "pods", "-n", NS])
                    .stdout
                    .iter()
                    .map(|b| *b as char)
                    .collect::<String>(),
                node.logs()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `kubectl get` of one field of the release's Lease spec.
fn lease_field(node: &Node, field: &str) -> std::process::Output {
    node.cluster.kubectl([
        "get",
        "lease",
        RELEASE,
        "-n",
        NS,
        "-o",
        &format!("jsonpath={{.spec.{field}}}"),
    ])
}

/// Empty while there is no Lease yet.
fn lease_holder(node: &Node) -> String {
    let out = lease_field(node, "holderIdentity");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The pods' own view: `imagelabel_leader` from each pod's /metrics, or
/// why a pod did not answer.
async fn leaders(pods: &[Pod]) -> Result<Vec<String>, String> {
    let mut out = vec![];
    for p in pods {
        let text = async {
            reqwest::get(format!("http://{}:8080/metrics", p.ip))
                .await?
                .error_for_status()?
                .text()
                .await
        }
        .await
        .map_err(|e| format!("/metrics of pod {}: {e}", p.name))?;
        if sum_metric(&text, "imagelabel_leader", &[]) == 1.0 {
            out.push(p.name.clone());
        }
    }
    Ok(out)
}

/// Exactly one pod leads, per the Lease and per the pods themselves.
async fn wait_one_leader(node: &Node, pods: &[Pod], what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let holder = lease_holder(node);
        let leading = leaders(pods).await;
        if let Ok(l) = &leading
            && l.len() == 1
            && l[0] == holder
        {
            return holder;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: Lease holder {holder:?}, pods reporting leader: {leading:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_operator_image_on_a_real_node() {
    let Some(node) = Node::start().await else {
        return;
    };
    let cluster = &node.cluster;

    // The simulator on the bridge, where pods can reach it; its STS trusts
    // the API server's ServiceAccount tokens for the release's account.
    let mut seed = SeedConfig::demo();
    let oidc = seed.credentials.oidc.as_mut().expect("demo seed has OIDC");
    oidc.issuer = Some(OidcIssuerSeed {
        issuer: SERVICE_ACCOUNT_ISSUER.into(),
        public_key_pem: std::fs::read_to_string(cluster.dir().join("pki/sa.pub"))
            .expect("service-account public key"),
        audience: STS_AUDIENCE.into(),
        subject: format!("system:serviceaccount:{NS}:{RELEASE}"),
    });
    let (role_arn, provider_arn) = (oidc.role_arn.clone(), oidc.provider_arn.clone());
    let sim = Sim::from_seed(seed)
        .expect("seed")
        .start(SocketAddr::new(NODE_IP.into(), 0))
        .await
        .expect("simulator on the bridge");
    let base = sim.base_url();

    for ns in [NS, "ml-platform"] {
        node.kubectl_ok(["create", "namespace", ns]);
    }
    // Huawei IMS has no RRSA: its keys come from the Secret; Alibaba's
    // come only from STS (the Secret has no accessKeyId).
    node.kubectl_ok([
        "create",
        "secret",
        "generic",
        "imagelabel-credentials",
        "-n",
        NS,
        "--from-literal=ak=hwAK",
        &format!("--from-literal=sk={IMS_SK}"),
    ]);
    let (repository, tag) = node
        .images
        .operator
        .rsplit_once(':')
        .expect("image name with a tag");
    let values = serde_json::json!({
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "endpoints": {"pai": base, "ims": base, "sts": base},
        "credentials": {"existingSecret": "imagelabel-credentials"},
        "leaderElection": {"leaseDuration": "15s"},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}},
        // What ACK's pod-identity webhook would inject.
        "extraEnv": [
            {"name": "ALIBABA_CLOUD_ROLE_ARN", "value": role_arn},
            {"name": "ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "value": provider_arn},
            {"name": "ALIBABA_CLOUD_OIDC_TOKEN_FILE", "value": format!("{TOKEN_DIR}/token")},
        ],
        "extraVolumes": [{
            "name": "rrsa-oidc-token",
            "projected": {"sources": [{"serviceAccountToken": {
                "path": "token", "audience": STS_AUDIENCE, "expirationSeconds": 3600,
            }}]},
        }],
        "extraVolumeMounts": [{"name": "rrsa-oidc-token", "mountPath": TOKEN_DIR, "readOnly": true}],
    });
    let values_file = cluster.write_file("node-values.json", values.to_string());
    let values_file = values_file.to_str().unwrap();

    // Install: two replicas Running and Ready (the kubelet's probes answered).
    let started = Instant::now();
    assert_success(
        "helm install",
        &cluster.helm(["install", RELEASE, &chart(), "-n", NS, "-f", values_file]),
    );
    let first = wait_pods(&node, 2, &BTreeSet::new(), "after helm install").await;
    eprintln!("2 pods Ready {:.1?} after helm install", started.elapsed());
    for p in &first {
        assert!(
            p.ip.starts_with("10.244.0."),
            "pod {} is not on the bridge network: {p:?}",
            p.name
        );
    }
    let leader = wait_one_leader(&node, &first, "after install").await;
    // Pods reach this host only: nothing is routed beyond it.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "0",
        "ip_forward was turned on while pods run"
    );

    // The examples become Ready: PAI through RRSA, IMS through the Secret.
    if let Err((kind, why)) = apply_examples_and_wait_ready(cluster, "120s") {
        panic!(
            "{kind} not Ready: {why}\n{}\n{}",
            node.kubectl_ok(["get", kind, "-n", "ml-platform", "-o", "yaml"]),
            node.kubectl_ok(["logs", "-n", NS, &leader, "--tail=40"]),
        );
    }
    let sts = sim.sim().counters().api("AssumeRoleWithOIDC");
    assert!(
        sts.ok >= 1,
        "the operator never exchanged its projected token at STS: {sts:?}"
    );
    let xgboost = Target::PaiImage {
        image_id: "image-4c62abc53uor".into(),
        workspace_id: None,
    };
    assert_eq!(
        sim.sim()
            .labels_of(&xgboost)
            .expect("seeded image")
            .get("system.chipType")
            .map(String::as_str),
        Some("GPU"),
        "the example's labels reached the cloud"
    );

    // JSON logs, and no secret in them: the Secret's key, the projected
    // token (a JWT starts with eyJ), the demo AccessKey secret.
    let token_prefix = "eyJhbGciOi";
    for p in &first {
        let logs = node.kubectl_ok(["logs", "-n", NS, &p.name]);
        assert!(!logs.trim().is_empty(), "pod {} logged nothing", p.name);
        for line in logs.lines().filter(|l| !l.trim().is_empty()) {
            let parsed: Result<Value, _> = serde_json::from_str(line);
            assert!(
                parsed.is_ok_and(|v| v.is_object()),
                "pod {}: a log line is not a JSON object: {line}",
                p.name
            );
        }
        for secret in [IMS_SK, PAI_SECRET, token_prefix] {
            assert!(
                !logs.contains(secret),
                "pod {} logged a secret ({secret:?})",
                p.name
            );
        }
    }

    // The leader's pod is deleted: the standby takes over, a new pod starts,
    // and the new leader repairs a label changed behind its back.
    let transitions = || {
        assert_success(
            "kubectl get lease (leaseTransitions)",
            &lease_field(&node, "leaseTransitions"),
        )
        .trim()
        .parse::<u64>()
        .unwrap_or(0)
    };
    let transitions_before = transitions();
    let deleted = Instant::now();
    node.kubectl_ok(["delete", "pod", "-n", NS, &leader, "--wait=false"]);
    let gone: BTreeSet<String> = [leader.clone()].into();
    let second = wait_pods(&node, 2, &gone, "after deleting the leader's pod").await;
    // The deleted leader gives the Lease up on SIGTERM; the standby or the
    // replacement (if it is already up) may take it: either is a takeover.
    let new_leader = wait_one_leader(&node, &second, "after deleting the leader").await;
    let standby = if first.iter().any(|p| p.name == new_leader) {
        "the standby"
    } else {
        "the replacement pod"
    };
    eprintln!(
        "leader {leader} deleted; {new_leader} ({standby}) leads {:.1?} later",
        deleted.elapsed()
    );
    assert!(
        transitions() > transitions_before,
        "the Lease never changed hands"
    );
    sim.sim()
        .set_label_out_of_band(&xgboost, "system.chipType", "CPU")
        .expect("change a label");
    node.kubectl_ok([
        "annotate",
        "-n",
        "ml-platform",
        "imagelabelset",
        "xgboost-gpu",
        "imagelabel.io/reconcile-requested-at=after-failover",
        "--overwrite",
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.sim().labels_of(&xgboost).unwrap_or_default()["system.chipType"] != "GPU" {
        assert!(
            Instant::now() < deadline,
            "the new leader did not repair the label"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // helm upgrade rolls both pods.
    let before_upgrade: BTreeSet<String> = second.iter().map(|p| p.name.clone()).collect();
    assert_success(
        "helm upgrade",
        &cluster.helm([
            "upgrade",
            RELEASE,
            &chart(),
            "-n",
            NS,
            "-f",
            values_file,
            "--set",
            "logLevel=debug",
        ]),
    );
    let third = wait_pods(&node, 2, &before_upgrade, "after helm upgrade").await;
    wait_one_leader(&node, &third, "after upgrade").await;
    let args = node.kubectl_ok([
        "get",
        "deploy",
        RELEASE,
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].args}",
    ]);
    assert!(args.contains("--log-level=debug"), "upgraded args: {args}");

    // helm uninstall: the pods go; CRDs, sets and cloud labels stay.
    let cloud_before = sim.sim().state_json();
    assert_success(
        "helm uninstall",
        &cluster.helm(["uninstall", RELEASE, "-n", NS, "--wait", "--timeout=120s"]),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pods(&node).is_empty() {
        assert!(
            Instant::now() < deadline,
            "pods left after helm uninstall: {:?}",
            pods(&node)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for crd in [
        "crd/imagelabelsets.imagelabel.io",
        "crd/datasetlabelsets.imagelabel.io",
    ] {
        node.kubectl_ok(["get", crd]);
    }
    let sets = node.kubectl_ok(["get", "imagelabelsets,datasetlabelsets", "-A", "-o", "name"]);
    assert!(
        sets.contains("xgboost-gpu"),
        "sets went with the release: {sets}"
    );
    assert_eq!(
        sim.sim().state_json(),
        cloud_before,
        "helm uninstall changed cloud labels"
    );

    // The host is as before: no process, mount, rule, link, sysctl, path or
    // cgroup of the node tier remains.
    drop(sim);
    let left = node.teardown();
    assert!(left.is_empty(), "the node left host changes: {left:#?}");
}
