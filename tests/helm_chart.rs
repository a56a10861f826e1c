//! The Helm chart: lint, render, schema, and a real install whose
//! ServiceAccount runs the operator (proving the RBAC is sufficient and no wider).

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use imagelabel::provider::Target;
use imagelabel::sim::SeedConfig;
use serde_json::Value;
use support::cluster::{assert_success, binaries, yaml_documents};
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
    yaml_documents(&text)
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
            && args.contains(&"--quota-share=0.5")
            && !args.iter().any(|a| a.starts_with("--quota="))
            && args.contains(&"--concurrency=16")
            && args.contains(&"--stalled-recheck=1h")
            && args.contains(&"--secret-poll-interval=30s"),
        "{args:?}"
    );
    // The binary accepts every flag the chart renders.
    use clap::Parser;
    let parsed =
        imagelabel::cli::Cli::try_parse_from(std::iter::once("imagelabel").chain(args.clone()));
    assert!(parsed.is_ok(), "{:?}", parsed.err());
    assert!(!args.iter().any(|a| a.starts_with("--extra-pai-image-keys")));

    // Image label keys the cloud gained reach the operator as one flag.
    let docs = render(&["--set", "extraPaiImageKeys={system.gpuModel,system.vendor}"]);
    let args = find(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string());
    let parsed =
        imagelabel::cli::Cli::try_parse_from(std::iter::once("imagelabel".into()).chain(args));
    match parsed.map(|c| c.command) {
        Ok(imagelabel::cli::Command::Run(run)) => assert_eq!(
            run.cloud.extra_pai_image_keys,
            ["system.gpuModel", "system.vendor"]
        ),
        other => panic!("{other:?}"),
    }

    // Exactly the rules the controller needs; Secrets: get only.
    let cluster_role = find(&docs, "ClusterRole")[0];
    let expected = vec![
        (
            vec!["imagelabel.io"],
            vec!["imagelabelsets", "datasetlabelsets"],
            vec!["list", "watch", "patch"],
        ),
        (
            vec!["imagelabel.io"],
            vec!["imagelabelsets/status", "datasetlabelsets/status"],
            vec!["patch"],
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
    assert_eq!(
        rules(roles[0]),
        vec![
            (
                vec!["coordination.k8s.io".to_string()],
                vec!["leases".to_string()],
                ["get", "patch"].map(String::from).to_vec()
            ),
            (
                vec!["coordination.k8s.io".to_string()],
                vec!["leases".to_string()],
                vec!["create".to_string()]
            )
        ],
        "kube-lease-manager gets, creates and patches its Lease"
    );
    // get/patch reach only the operator's own Lease, the one it is told to use.
    let lease_rules = roles[0]["rules"].as_array().unwrap();
    assert_eq!(
        lease_rules[0]["resourceNames"],
        serde_json::json!(["rel-imagelabel-operator"])
    );
    let lease_arg = format!(
        "--lease-name={}",
        lease_rules[0]["resourceNames"][0].as_str().unwrap()
    );
    let first_args = find(&render(&[]), "Deployment")[0]["spec"]["template"]["spec"]["containers"]
        [0]["args"]
        .clone();
    assert!(
        first_args
            .as_array()
            .unwrap()
            .iter()
            .any(|a| *a == lease_arg),
        "{lease_arg} not in {first_args:?}"
    );
    assert!(
        lease_rules[1]
            .get("resourceNames")
            .is_none_or(Value::is_null),
        "create cannot be limited by name"
    );
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

    // One watched namespace: no cluster-wide grant at all, the same rules as
    // a Role (and binding) in that namespace.
    let docs = render(&["--set", "watchNamespace=team-a"]);
    assert!(find(&docs, "ClusterRole").is_empty(), "no ClusterRole");
    assert!(find(&docs, "ClusterRoleBinding").is_empty());
    let main_role = find(&docs, "Role")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == "team-a")
        .expect("a Role in the watched namespace");
    assert_eq!(rules(main_role), expected);
    let binding = find(&docs, "RoleBinding")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == "team-a")
        .expect("a RoleBinding in the watched namespace");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["roleRef"]["name"], main_role["metadata"]["name"]);

    // Default credentials: the release namespace and the examples' namespace.
    let args =
        find(&render(&[]), "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
            .clone();
    assert!(
        args.as_array()
            .unwrap()
            .iter()
            .any(|a| *a == format!("--default-credentials-namespaces={NS},ml-platform").as_str()),
        "{args:?}"
    );

    // The chart's CRDs are the generated ones.
    let crds =
        std::fs::read_to_string(PathBuf::from(chart()).join("crds/imagelabel.io.yaml")).unwrap();
    assert!(crds == imagelabel::api::crds_yaml());
}

#[test]
fn the_values_users_expect_of_a_chart_render() {
    let values = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        values.path(),
        r#"
fullnameOverride: labels
priorityClassName: system-cluster-critical
revisionHistoryLimit: 2
podLabels: {team: ml}
podAnnotations: {owner: platform}
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway}
extraArgs: ["--fight-threshold=5"]
extraEnv: [{name: HTTPS_PROXY, value: "http://proxy:3128"}]
extraVolumes: [{name: ca, configMap: {name: vpc-ca}}]
extraVolumeMounts: [{name: ca, mountPath: /etc/ssl/vpc, readOnly: true}]
"#,
    )
    .unwrap();
    let docs = render(&["-f", values.path().to_str().unwrap()]);
    // fullnameOverride names every object, the Lease included.
    for d in &docs {
        let name = d["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("labels"), "{} {name}", d["kind"]);
    }
    let deploy = find(&docs, "Deployment")[0];
    assert_eq!(deploy["spec"]["revisionHistoryLimit"], 2);
    let pod = &deploy["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["team"], "ml");
    assert_eq!(pod["metadata"]["annotations"]["owner"], "platform");
    let spec = &pod["spec"];
    assert_eq!(spec["priorityClassName"], "system-cluster-critical");
    assert_eq!(spec["topologySpreadConstraints"][0]["maxSkew"], 1);
    assert_eq!(spec["volumes"][0]["configMap"]["name"], "vpc-ca");
    let c = &spec["containers"][0];
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/etc/ssl/vpc");
    assert!(
        c["args"]
            .as_array()
            .unwrap()
            .contains(&"--fight-threshold=5".into())
    );
    assert!(
        c["args"]
            .as_array()
            .unwrap()
            .contains(&"--lease-name=labels".into())
    );
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "HTTPS_PROXY")
    );
    assert_eq!(c["startupProbe"]["httpGet"]["path"], "/healthz");

    let named = render(&["--set", "nameOverride=tags"]);
    let deploy = find(&named, "Deployment")[0];
    assert_eq!(deploy["metadata"]["name"], "rel-tags");
    assert_eq!(
        deploy["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "tags"
    );

    // Opt-in only.
    assert!(find(&docs, "PrometheusRule").is_empty() && find(&docs, "ConfigMap").is_empty());
    let all = render(&[
        "--set",
        "grafanaDashboard.enabled=true,prometheusRule.enabled=true",
    ]);
    let cm = find(&all, "ConfigMap")[0];
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: Value =
        serde_json::from_str(cm["data"]["imagelabel-operator.json"].as_str().unwrap()).unwrap();
    assert!(dashboard["panels"].as_array().unwrap().len() >= 8);
    assert_eq!(find(&all, "PrometheusRule").len(), 1);
}

#[test]
fn quotas_render_as_flags_the_binary_accepts() {
    let all = render(&[
        "--set",
        "quotaShare=0.25",
        "--set",
        "quotas.AddImageLabels=5",
        "--set",
        "quotas.ListImageTags=2.5",
    ]);
    let deploy = find(&all, "Deployment")[0];
    let args: Vec<&str> = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for want in [
        "--quota-share=0.25",
        "--quota=AddImageLabels=5",
        "--quota=ListImageTags=2.5",
    ] {
        assert!(args.contains(&want), "{want} missing in {args:?}");
    }
    use clap::Parser;
    let parsed =
        imagelabel::cli::Cli::try_parse_from(std::iter::once("imagelabel").chain(args.clone()));
    assert!(parsed.is_ok(), "{:?}", parsed.err());
}

#[test]
fn bad_values_are_rejected_by_the_schema() {
    for (set, field) in [
        ("replicas=two", "replicas"),
        ("logLevel=loud", "logLevel"),
        ("quotaShare=0", "quotaShare"),
        ("quotaShare=1.5", "quotaShare"),
        ("quotas.AddImageLabels=-1", "AddImageLabels"),
        ("surprise=1", "surprise"),
        ("endpoints.pai=ftp://x", "pai"),
        ("extraPaiImageKeys={team}", "extraPaiImageKeys"),
        ("extraArgs={fight-threshold=5}", "extraArgs"),
        ("fullnameOverride=Not_A_Name", "fullnameOverride"),
        ("prometheusRule.for=soon", "for"),
        ("revisionHistoryLimit=-1", "revisionHistoryLimit"),
        ("defaultCredentials.namespaces={Bad_NS}", "namespaces"),
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

const RELEASE: &str = "imagelabel-operator";
const CRDS: [&str; 2] = [
    "imagelabelsets.imagelabel.io",
    "datasetlabelsets.imagelabel.io",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_operator_as_its_service_account_then_upgrade_and_uninstall() {
    // No CRDs in the cluster: `helm install` must create them from the chart's crds/.
    let env = Env::start_without_crds("ml-platform", SeedConfig::demo()).await;
    env.create_namespace(NS).await;
    env.create_namespace("other").await;
    for crd in CRDS {
        let out = env.cluster.kubectl(["get", "crd", crd]);
        assert!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound"),
            "{crd} exists before helm install: {out:?}"
        );
    }
    let chart = chart();

    // Default values: Secrets are readable (get only) in every namespace.
    let install = env.cluster.helm(["install", RELEASE, &chart, "-n", NS]);
    let notes = assert_success("helm install", &install);
    for want in [
        "kubectl wait --for=condition=Ready",
        "--reuse-values --set credentials.existingSecret=imagelabel-credentials",
        "pod-identity.alibabacloud.com/injection=on",
        "Secrets in EVERY namespace",
    ] {
        assert!(notes.contains(want), "NOTES lack {want:?}: {notes}");
    }
    let crds_established = |what: &str| {
        let [a, b] = CRDS.map(|c| format!("crd/{c}"));
        let wait = [
            "wait",
            "--for=condition=Established",
            &a,
            &b,
            "--timeout=60s",
        ];
        assert_success(what, &env.cluster.kubectl(wait));
    };
    crds_established("CRDs from the chart are Established");
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
        "role.rbac.authorization.k8s.io/imagelabel-operator-leader-election",
    ] {
        assert!(objects.contains(want), "{want} missing: {objects}");
    }

    // The operator, out of cluster, with the chart's ServiceAccount token (not admin).
    let kubeconfig = env
        .cluster
        .kubeconfig_for_service_account(NS, "imagelabel-operator")
        .await;
    let can = |args: &[&str]| -> String {
        let mut full = vec!["auth", "can-i"];
        full.extend_from_slice(args);
        String::from_utf8_lossy(&env.cluster.kubectl_with(&kubeconfig, &full).stdout)
            .trim()
            .to_string()
    };
    // 403 for the ServiceAccount itself (kubectl words it "Error from server
    // (Forbidden): ... is forbidden" for reads, "failed to create ... is forbidden" for creates).
    let denied_to_sa =
        format!("is forbidden: User \"system:serviceaccount:{NS}:imagelabel-operator\" cannot");
    let forbidden = |args: &[&str]| {
        let out = env.cluster.kubectl_with(&kubeconfig, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(&denied_to_sa),
            "kubectl {args:?} as the ServiceAccount was not Forbidden: {out:?}"
        );
    };

    // Default secrets mode: get anywhere (credentialsRef in any namespace),
    // but never list or watch, so Secrets cannot be enumerated.
    assert_eq!(can(&["get", "secrets", "-n", "ml-platform"]), "yes");
    assert_eq!(can(&["get", "secrets", "-n", "other"]), "yes");
    for verb in ["list", "watch"] {
        for scope in [["-n", "ml-platform"], ["-n", "other"], ["-A", ""]] {
            let mut args = vec![verb, "secrets"];
            args.extend(scope.iter().filter(|a| !a.is_empty()));
            assert_eq!(can(&args), "no", "{args:?}");
        }
    }
    forbidden(&["get", "secrets", "-n", "other"]);
    forbidden(&["get", "secrets", "-A"]);

    let mut op = Operator::start(
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
    let official = Target::PaiImage {
        image_id: "image-official0pytorch".into(),
        workspace_id: None,
    };
    let xgboost = Target::PaiImage {
        image_id: "image-4c62abc53uor".into(),
        workspace_id: None,
    };
    assert_eq!(
        env.labels(&official).get("system.team").map(String::as_str),
        Some("ml"),
        "credentialsRef Secret was read"
    );
    assert_eq!(
        env.labels(&xgboost)
            .get("system.framework")
            .map(String::as_str),
        Some("XGBoost 2.0.3")
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

    // Deletion runs the finalizer with the same RBAC: the set's own key is
    // removed from the cloud, the finalizer is patched away, other keys stay.
    env.apply(
        "to-delete.yaml",
        "apiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata: {name: to-delete}\nspec:\n  imageId: image-official0pytorch\n  labels: {system.scratch: \"1\"}\n",
    );
    env.wait_image("to-delete", "Ready", Duration::from_secs(60), |s| {
        s.is_ready()
    })
    .await;
    assert_eq!(
        env.labels(&official)
            .get("system.scratch")
            .map(String::as_str),
        Some("1")
    );
    assert_success(
        "kubectl delete to-delete",
        &env.cluster.kubectl([
            "delete",
            "ils",
            "to-delete",
            "-n",
            "ml-platform",
            "--wait",
            "--timeout=60s",
        ]),
    );
    let after_delete = env.labels(&official);
    assert!(
        !after_delete.contains_key("system.scratch")
            && after_delete.get("system.team").map(String::as_str) == Some("ml"),
        "deletionPolicy Delete removed only the deleted set's key: {after_delete:?}"
    );

    // ... and can do nothing else.
    assert_eq!(can(&["list", "imagelabelsets", "-A"]), "yes");
    assert_eq!(
        can(&["get", "imagelabelsets", "-n", "ml-platform"]),
        "no",
        "the controller reads sets from its watch cache, never GETs one"
    );
    assert_eq!(can(&["get", "configmaps", "-n", "ml-platform"]), "no");
    assert_eq!(can(&["create", "deployments", "-n", NS]), "no");
    assert_eq!(
        can(&["delete", "imagelabelsets", "-n", "ml-platform"]),
        "no"
    );
    assert_eq!(
        can(&["update", "imagelabelsets/finalizers", "-n", "ml-platform"]),
        "no"
    );
    assert_eq!(
        can(&["get", "leases", "-n", "other"]),
        "no",
        "leases only in the release namespace"
    );
    assert_eq!(
        can(&["patch", "leases/someone-elses-lease", "-n", NS]),
        "no",
        "only the operator's own Lease"
    );
    assert_eq!(
        can(&["patch", "leases/imagelabel-operator", "-n", NS]),
        "yes"
    );
    forbidden(&["create", "secret", "generic", "x", "-n", "other"]);
    forbidden(&["create", "secret", "generic", "x", "-n", "ml-platform"]);
    forbidden(&["get", "configmaps", "-n", "ml-platform"]);

    // A bad values file is refused by the schema at install and at upgrade,
    // against the live cluster, and leaves no release behind.
    let bad = env.cluster.write_file(
        "bad-values.yaml",
        "replicas: two\nquotaShare: 0\nsurprise: 1\nendpoints: {pai: ftp://x}\nlogLevel: loud\n",
    );
    let bad = bad.to_str().unwrap();
    for (what, args) in [
        (
            "helm install -f bad",
            vec!["install", "bad-values", &chart, "-n", NS, "-f", bad],
        ),
        (
            "helm upgrade -f bad",
            vec!["upgrade", RELEASE, &chart, "-n", NS, "-f", bad],
        ),
    ] {
        let out = env.cluster.helm(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} was accepted: {out:?}");
        assert!(
            stderr.contains("values don't meet the specifications of the schema"),
            "{what}: {stderr}"
        );
        for field in ["replicas", "quotaShare", "surprise", "pai", "logLevel"] {
            assert!(
                stderr.contains(field),
                "{what} does not name {field}: {stderr}"
            );
        }
    }
    let releases = env.cluster.helm(["list", "-a", "-n", NS, "-o", "json"]);
    let releases: Value = serde_json::from_str(&assert_success("helm list", &releases)).unwrap();
    let releases = releases.as_array().unwrap();
    assert_eq!(releases.len(), 1, "only the good release: {releases:?}");
    assert_eq!(releases[0]["name"], RELEASE);
    assert_eq!(
        releases[0]["revision"], "1",
        "the bad upgrade made no revision"
    );

    // Upgrade: values change (Secrets now only in ml-platform); CRDs, sets and labels stay.
    assert_success(
        "helm upgrade",
        &env.cluster.helm([
            "upgrade",
            RELEASE,
            &chart,
            "-n",
            NS,
            "--set",
            "replicas=3",
            "--set",
            "quotaShare=0.25",
            "--set",
            "rbac.secretNamespaces={ml-platform}",
        ]),
    );
    let deploy: Value = serde_json::from_str(
        &env.cluster
            .kubectl_ok(["get", "deploy", RELEASE, "-n", NS, "-o", "json"]),
    )
    .unwrap();
    assert_eq!(deploy["spec"]["replicas"], 3);
    assert!(
        deploy["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--quota-share=0.25")
    );
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
    forbidden(&["get", "secret", "pai-credentials", "-n", "other"]);
    forbidden(&["create", "secret", "generic", "x", "-n", "other"]);

    // The operator still reads the Secret in ml-platform under the narrowed
    // RBAC: a changed value reaches the cloud.
    env.apply(
        "with-secret.yaml",
        "apiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata: {name: with-secret}\nspec:\n  imageId: image-official0pytorch\n  credentialsRef: {name: pai-credentials}\n  labels: {system.team: ml-2}\n",
    );
    env.wait_image(
        "with-secret",
        "Ready at generation 2",
        Duration::from_secs(60),
        |s| s.is_ready() && s.observed_generation == Some(2),
    )
    .await;
    assert_eq!(
        env.labels(&official).get("system.team").map(String::as_str),
        Some("ml-2"),
        "read from the simulator after the upgrade"
    );
    assert_eq!(
        env.labels(&xgboost)
            .get("system.framework")
            .map(String::as_str),
        Some("XGBoost 2.0.3"),
        "read from the simulator after the upgrade"
    );
    let cloud_before_uninstall = env.sim.sim().state_json();

    // Uninstall: Helm keeps CRDs, so the sets and their labels stay. The
    // Deployment's pods would stop with it; stop ours the same way.
    assert_success(
        "helm uninstall",
        &env.cluster.helm(["uninstall", RELEASE, "-n", NS]),
    );
    op.terminate();
    crds_established("CRDs kept and Established after uninstall");
    let sets = env
        .cluster
        .kubectl_ok(["get", "ils,dls", "-n", "ml-platform", "-o", "name"]);
    for want in ["xgboost-gpu", "with-secret", "imagenet"] {
        assert!(sets.contains(want), "sets kept: {sets}");
    }
    for gone in [
        vec!["get", "deploy", RELEASE, "-n", NS],
        vec!["get", "sa", RELEASE, "-n", NS],
        vec!["get", "clusterrole", RELEASE],
    ] {
        let out = env.cluster.kubectl(&gone);
        assert!(
            !out.status.success(),
            "{gone:?} still exists after uninstall"
        );
    }
    assert_eq!(
        env.labels(&official).get("system.team").map(String::as_str),
        Some("ml-2"),
        "read from the simulator after the uninstall"
    );
    assert_eq!(
        env.sim.sim().state_json(),
        cloud_before_uninstall,
        "uninstall changed no label in the cloud"
    );
}
