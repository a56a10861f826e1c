//! The Helm chart: lint, render, schema, and a real install whose
//! ServiceAccount runs the operator (proving the RBAC is sufficient and no wider).

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use imagelabel::provider::Target;
use imagelabel::sim::SeedConfig;
use serde_json::Value;
use support::cluster::{assert_success, binaries};
use support::operator::{Env, Operator};

const NS: &str = "imagelabel-system";

fn chart() -> String {
    format!(
        "{}/deploy/helm/imagelabel-operator",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn helm(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    std::process::Command::new(&binaries().helm)
        .args(args)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("run helm")
}

fn render(extra: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec!["template", "rel", chart.as_str(), "-n", NS];
    args.extend_from_slice(extra);
    let out = helm(&args);
    let text = assert_success("helm template", &out);
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn rules(doc: &Value) -> Vec<(Vec<String>, Vec<String>, Vec<String>)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    doc["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                strings(&r["apiGroups"]),
                strings(&r["resources"]),
                strings(&r["verbs"]),
            )
        })
        .collect()
}

#[test]
fn chart_lints_and_renders_a_hardened_least_privilege_install() {
    assert_success("helm lint", &helm(&["lint", "--strict", &chart()]));
    let docs = render(&[]);

    let deploy = find(&docs, "Deployment")[0];
    let spec = &deploy["spec"]["template"]["spec"];
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        spec["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &spec["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "run");
    assert!(
        args.contains(&"--leader-election=true")
            && args.contains(&"--qps=100")
            && args.contains(&"--concurrency=16"),
        "{args:?}"
    );

    // Exactly the rules the controller needs; Secrets: get only.
    let cluster_role = find(&docs, "ClusterRole")[0];
    let expected = vec![
        (
            vec!["imagelabel.io"],
            vec!["imagelabelsets", "datasetlabelsets"],
            vec!["get", "list", "watch", "patch"],
        ),
        (
            vec!["imagelabel.io"],
            vec!["imagelabelsets/status", "datasetlabelsets/status"],
            vec!["get", "patch"],
        ),
        (
            vec!["imagelabel.io"],
            vec!["imagelabelsets/finalizers", "datasetlabelsets/finalizers"],
            vec!["update"],
        ),
        (
            vec!["events.k8s.io"],
            vec!["events"],
            vec!["create", "patch"],
        ),
        (vec![""], vec!["secrets"], vec!["get"]),
    ];
    let expected: Vec<(Vec<String>, Vec<String>, Vec<String>)> = expected
        .into_iter()
        .map(|(a, r, v)| {
            (
                a.into_iter().map(String::from).collect(),
                r.into_iter().map(String::from).collect(),
                v.into_iter().map(String::from).collect(),
            )
        })
        .collect();
    assert_eq!(rules(cluster_role), expected);
    let roles = find(&docs, "Role");
    assert_eq!(roles.len(), 1);
    assert_eq!(
        roles[0]["metadata"]["namespace"], NS,
        "the Lease rule is namespaced"
    );
    assert_eq!(rules(roles[0])[0].1, vec!["leases".to_string()]);
    assert_eq!(find(&docs, "PodDisruptionBudget").len(), 1);
    assert!(find(&docs, "ServiceMonitor").is_empty(), "off by default");
    assert_eq!(
        find(&docs, "Service")[0]["spec"]["ports"][0]["name"],
        "metrics"
    );

    // Scoped Secrets: no cluster-wide rule, a Role per listed namespace.
    let docs = render(&[
        "--set",
        "rbac.secretNamespaces={ml-platform}",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "replicas=1",
    ]);
    assert!(
        !rules(find(&docs, "ClusterRole")[0])
            .iter()
            .any(|r| r.1.contains(&"secrets".to_string()))
    );
    let secret_role = find(&docs, "Role")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == "ml-platform")
        .expect("a Role in ml-platform");
    assert_eq!(
        rules(secret_role),
        vec![(
            vec![String::new()],
            vec!["secrets".to_string()],
            vec!["get".to_string()]
        )]
    );
    assert_eq!(find(&docs, "ServiceMonitor").len(), 1);
    assert!(
        find(&docs, "PodDisruptionBudget").is_empty(),
        "no PDB for one replica"
    );

    // The chart's CRDs are the generated ones.
    let crds =
        std::fs::read_to_string(PathBuf::from(chart()).join("crds/imagelabel.io.yaml")).unwrap();
    assert!(crds == imagelabel::api::crds_yaml());
}

#[test]
fn bad_values_are_rejected_by_the_schema() {
    for (set, field) in [
        ("replicas=two", "replicas"),
        ("logLevel=loud", "logLevel"),
        ("qps=-1", "qps"),
        ("surprise=1", "surprise"),
        ("endpoints.pai=ftp://x", "pai"),
    ] {
        let flag = if set.starts_with("replicas") || set.starts_with("logLevel") {
            "--set-string"
        } else {
            "--set"
        };
        let chart = chart();
        let out = helm(&["template", "rel", &chart, flag, set]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set} was accepted");
        assert!(stderr.contains(field), "{set}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_operator_as_its_service_account_then_upgrade_and_uninstall() {
    let env = Env::start("ml-platform", SeedConfig::demo()).await;
    env.create_namespace(NS).await;
    env.create_namespace("other").await;
    let chart = chart();
    let install = env.cluster.helm([
        "install",
        "imagelabel-operator",
        &chart,
        "-n",
        NS,
        "--set",
        "rbac.secretNamespaces={ml-platform}",
    ]);
    let notes = assert_success("helm install", &install);
    assert!(
        notes.contains("kubectl wait --for=condition=Ready"),
        "NOTES tell the next steps: {notes}"
    );
    let objects = env.cluster.kubectl_ok([
        "get",
        "deploy,sa,svc,role,rolebinding,pdb",
        "-n",
        NS,
        "-o",
        "name",
    ]);
    for want in [
        "deployment.apps/imagelabel-operator",
        "serviceaccount/imagelabel-operator",
        "service/imagelabel-operator-metrics",
        "poddisruptionbudget.policy/imagelabel-operator",
    ] {
        assert!(objects.contains(want), "{want} missing: {objects}");
    }

    // The operator, out of cluster, with the chart's ServiceAccount token (not admin).
    let kubeconfig = env
        .cluster
        .kubeconfig_for_service_account(NS, "imagelabel-operator")
        .await;
    let _op = Operator::start(
        &env,
        "chart-sa",
        &kubeconfig,
        &[
            "--lease-namespace",
            NS,
            "--lease-name",
            "imagelabel-operator",
            "--watch-namespace=",
        ],
    );
    env.apply(
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: pai-credentials}\nstringData: {accessKeyId: testAK, accessKeySecret: testSecret}\n",
    );
    env.apply(
        "with-secret.yaml",
        "apiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata: {name: with-secret}\nspec:\n  imageId: image-official0pytorch\n  credentialsRef: {name: pai-credentials}\n  labels: {system.team: ml}\n",
    );
    env.apply_examples_and_wait_ready();
    let official = env.labels(&Target::PaiImage {
        image_id: "image-official0pytorch".into(),
        workspace_id: None,
    });
    assert_eq!(
        official.get("system.team").map(String::as_str),
        Some("ml"),
        "credentialsRef Secret was read"
    );
    let events = env.cluster.kubectl_ok([
        "get",
        "events.events.k8s.io",
        "-n",
        "ml-platform",
        "-o",
        "json",
    ]);
    assert!(
        events.contains("LabelsApplied"),
        "events were written with the chart's RBAC"
    );

    // ... and can do nothing else.
    let can = |args: &[&str]| -> String {
        let mut full = vec!["auth", "can-i"];
        full.extend_from_slice(args);
        String::from_utf8_lossy(&env.cluster.kubectl_with(&kubeconfig, &full).stdout)
            .trim()
            .to_string()
    };
    assert_eq!(can(&["get", "secrets", "-n", "ml-platform"]), "yes");
    assert_eq!(
        can(&["get", "secrets", "-n", "other"]),
        "no",
        "no Secrets outside the listed namespaces"
    );
    assert_eq!(
        can(&["list", "secrets", "-n", "ml-platform"]),
        "no",
        "never list Secrets"
    );
    assert_eq!(can(&["get", "configmaps", "-n", "ml-platform"]), "no");
    assert_eq!(can(&["create", "deployments", "-n", NS]), "no");
    assert_eq!(
        can(&["delete", "imagelabelsets", "-n", "ml-platform"]),
        "no"
    );
    assert_eq!(
        can(&["get", "leases", "-n", "other"]),
        "no",
        "leases only in the release namespace"
    );
    env.cluster.kubectl_with(
        &kubeconfig,
        ["create", "secret", "generic", "x", "-n", "other"],
    );
    let denied = env.cluster.kubectl_with(
        &kubeconfig,
        ["get", "secret", "pai-credentials", "-n", "other"],
    );
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("Forbidden"),
        "reading a Secret in another namespace is Forbidden"
    );

    // Upgrade: values change, CRDs and sets stay.
    assert_success(
        "helm upgrade",
        &env.cluster.helm([
            "upgrade",
            "imagelabel-operator",
            &chart,
            "-n",
            NS,
            "--set",
            "replicas=3",
            "--set",
            "qps=50",
            "--set",
            "rbac.secretNamespaces={ml-platform}",
        ]),
    );
    let deploy: Value = serde_json::from_str(&env.cluster.kubectl_ok([
        "get",
        "deploy",
        "imagelabel-operator",
        "-n",
        NS,
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(deploy["spec"]["replicas"], 3);
    assert!(
        deploy["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--qps=50")
    );

    // Uninstall: Helm keeps CRDs, so the sets and their labels stay.
    assert_success(
        "helm uninstall",
        &env.cluster
            .helm(["uninstall", "imagelabel-operator", "-n", NS]),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let crds = env.cluster.kubectl_ok(["get", "crd", "-o", "name"]);
    assert!(
        crds.contains("imagelabelsets.imagelabel.io")
            && crds.contains("datasetlabelsets.imagelabel.io"),
        "CRDs kept: {crds}"
    );
    let sets = env
        .cluster
        .kubectl_ok(["get", "ils", "-n", "ml-platform", "-o", "name"]);
    assert!(sets.contains("xgboost-gpu"), "sets kept: {sets}");
    let gone = env
        .cluster
        .kubectl(["get", "deploy", "imagelabel-operator", "-n", NS]);
    assert!(!gone.status.success(), "the Deployment is removed");
    assert_eq!(official.get("system.team").map(String::as_str), Some("ml"));
}
