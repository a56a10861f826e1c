//! What GitOps tools and Prometheus make of the operator, with their own
//! code: real sets brought into every state of the README's state table on a
//! real API server, then kstatus `status.Compute` and the README's Argo CD
//! health script (gopher-lua, run as Argo CD runs it) judge the objects the
//! API server returned; the answers must be the table's. `/metrics` must
//! pass Prometheus' OpenMetrics parser, the 0.0.4 parser and promlint, with
//! every documented family present before its first event.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use imagelabel::api::{DatasetLabelSet, ImageLabelSet};
use imagelabel::provider::Target;
use imagelabel::sim::{FaultConfig, ImsCredential, ImsImageSeed, PaiImageSeed, SeedConfig};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use support::cluster::{assert_success, yaml_documents};
use support::gitops;
use support::operator::Env;

const WAIT: Duration = Duration::from_secs(90);
const NS: &str = "gitops";
const PROJECT: &str = "fd73a4a14a4a4dfb9771a8475e5198ea";
const OTHER_PROJECT: &str = "0a1b2c3d4e5f40718293a4b5c6d7e8f9";

/// Every version of every set the API server sent, in order.
#[derive(Clone, Default)]
struct History(Arc<Mutex<Vec<Value>>>);

impl History {
    fn record(&self, env: &Env) {
        for ar in [
            ApiResource::erase::<ImageLabelSet>(&()),
            ApiResource::erase::<DatasetLabelSet>(&()),
        ] {
            let api: Api<DynamicObject> = Api::namespaced_with(env.cluster.client(), NS, &ar);
            let seen = self.clone();
            tokio::spawn(async move {
                // Backoff: once the cluster is gone at the end of the test,
                // errors must not spin this task (and hold up runtime shutdown).
                let mut events = watcher(api, watcher::Config::default())
                    .default_backoff()
                    .boxed();
                while let Some(e) = events.next().await {
                    if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = e {
                        let mut v = serde_json::to_value(&o).unwrap();
                        v["kind"] = ar.kind.clone().into();
                        v["apiVersion"] = ar.api_version.clone().into();
                        seen.0.lock().unwrap().push(v);
                    }
                }
            });
        }
    }

    /// The last recorded version of `name` for which `check` holds; waits for one.
    async fn find(&self, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        self.find_since(0, name, what, check).await
    }

    fn mark(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// As [`History::find`], among the versions recorded after `mark`.
    async fn find_since(
        &self,
        mark: usize,
        name: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = {
                let all = self.0.lock().unwrap();
                all.iter()
                    .skip(mark)
                    .rev()
                    .find(|o| o["metadata"]["name"] == name && check(o))
                    .cloned()
            };
            if let Some(o) = found {
                return o;
            }
            if Instant::now() > deadline {
                let versions: Vec<Value> = self
                    .0
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|o| o["metadata"]["name"] == name)
                    .map(|o| o["status"].clone())
                    .collect();
                panic!(
                    "{name}: no version showing {what} within {WAIT:?}; statuses seen: {versions:#?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn condition<'a>(o: &'a Value, type_: &str) -> Option<&'a Value> {
    o["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// The object's status describes its spec and `type_` is True with `reason`.
fn shows(type_: &'static str, reason: &'static str) -> impl Fn(&Value) -> bool {
    move |o| {
        o["status"]["observedGeneration"] == o["metadata"]["generation"]
            && condition(o, type_).is_some_and(|c| c["status"] == "True" && c["reason"] == reason)
    }
}

fn deleting(o: &Value) -> bool {
    o["metadata"]["deletionTimestamp"].is_string()
}

fn pai_image(id: &str, labels: &[(&str, &str)]) -> PaiImageSeed {
    PaiImageSeed {
        id: id.into(),
        name: id.into(),
        workspace_id: None,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn seed() -> SeedConfig {
    let mut seed = SeedConfig::demo();
    seed.pai.images = [
        "image-new",
        "image-sync",
        "image-observe",
        "image-paused",
        "image-shared",
        "image-fight",
        "image-storm",
        "image-keep",
        "image-handover",
    ]
    .iter()
    .map(|id| pai_image(id, &[("system.a", "cloud")]))
    .collect();
    seed.ims.images = vec![ImsImageSeed {
        id: "11111111-0000-4000-8000-000000000001".into(),
        project_id: PROJECT.into(),
        tags: (0..8).map(|i| (format!("t{i}"), "x".to_string())).collect(),
    }];
    // A key pair confined to one project: 403 anywhere else.
    seed.credentials.ims.push(ImsCredential {
        ak: "hwNarrowAK".into(),
        sk: "hwNarrowSK".into(),
        security_token: None,
        project_id: Some(PROJECT.into()),
        account_id: None,
    });
    seed
}

fn image_set(name: &str, image: &str, labels: &[(&str, &str)], extra: &str) -> String {
    let mut s = format!(
        "apiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata:\n  name: {name}\nspec:\n  imageId: {image}\n{extra}  labels:\n"
    );
    for (k, v) in labels {
        s.push_str(&format!("    {k}: {v:?}\n"));
    }
    s
}

fn ims(project: &str) -> String {
    format!("  provider: huaweicloud-ims\n  projectId: {project}\n  region: cn-north-4\n")
}

fn kubectl(env: &Env, what: &str, args: &[&str]) {
    let mut all = vec!["-n", NS];
    all.extend_from_slice(args);
    assert_success(what, &env.cluster.kubectl(all));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitops_clients_see_every_documented_state_as_the_readme_says() {
    // Built first: a missing Go fails here with a clear message, before a cluster starts.
    gitops::tool();
    let env = Env::start(NS, seed()).await;
    let history = History::default();
    history.record(&env);
    let mut captured: Vec<(&str, Value)> = Vec::new();

    // Before any operator runs, as Flux sees a set it has just applied.
    env.apply(
        "new.yaml",
        &image_set("new", "image-new", &[("system.a", "1")], ""),
    );
    let new = history
        .find("new", "the API server's default status", |o| {
            o["status"].is_object() && condition(o, "Ready").is_none()
        })
        .await;
    captured.push(("new", new));

    let op = env.operator(
        "op",
        &["--fight-threshold", "1", "--secret-poll-interval", "1s"],
    );
    // Before any drift, fight or error: the families must already be there.
    check_metrics(&op).await;

    let in_sync = history
        .find("new", "InSync", shows("Ready", "InSync"))
        .await;
    captured.push(("`InSync`", in_sync));
    let applying = history
        .find("new", "Applying", shows("Reconciling", "Applying"))
        .await;
    captured.push(("`Applying`", applying));

    env.apply(
        "observe.yaml",
        &image_set(
            "observe",
            "image-observe",
            &[("system.a", "mine")],
            "  mode: Observe\n",
        ),
    );
    let observe = history
        .find("observe", "Observe drift", |o| {
            shows("Ready", "DriftDetected")(o) && shows("Drifted", "DriftDetected")(o)
        })
        .await;
    captured.push(("`DriftDetected`, mode Observe", observe));

    env.apply(
        "paused.yaml",
        &image_set("paused", "image-paused", &[("system.a", "1")], ""),
    );
    kubectl(
        &env,
        "pause",
        &["annotate", "ils", "paused", "imagelabel.io/paused=true"],
    );
    let paused = history
        .find("paused", "Paused", shows("Ready", "Paused"))
        .await;
    captured.push(("`Paused`", paused));

    // The older set wins system.a; the younger stalls on it.
    env.apply(
        "older.yaml",
        &image_set("older", "image-shared", &[("system.a", "old")], ""),
    );
    history
        .find("older", "InSync", shows("Ready", "InSync"))
        .await;
    env.apply(
        "younger.yaml",
        &image_set("younger", "image-shared", &[("system.a", "new")], ""),
    );
    let conflict = history
        .find("younger", "KeyConflict", shows("Stalled", "KeyConflict"))
        .await;
    captured.push(("`KeyConflict`", conflict));

    env.apply(
        "unknown.yaml",
        &image_set("unknown", "image-missing", &[("system.a", "1")], ""),
    );
    let not_found = history
        .find("unknown", "NotFound", shows("Stalled", "NotFound"))
        .await;
    captured.push(("`NotFound`", not_found));

    // A key the schema lets through (system.*) but AddImageLabels does not list.
    env.apply(
        "invalid.yaml",
        &image_set("invalid", "image-new", &[("system.unlisted", "1")], ""),
    );
    let invalid = history
        .find("invalid", "InvalidSpec", shows("Stalled", "InvalidSpec"))
        .await;
    captured.push(("`InvalidSpec`", invalid));

    env.apply(
        "nocreds.yaml",
        &image_set(
            "nocreds",
            "image-new",
            &[("system.a", "1")],
            "  credentialsRef: {name: absent}\n",
        ),
    );
    let no_creds = history
        .find(
            "nocreds",
            "InvalidCredentials",
            shows("Stalled", "InvalidCredentials"),
        )
        .await;
    captured.push(("`InvalidCredentials`", no_creds));

    env.apply(
        "narrow-secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: narrow}\nstringData: {ak: hwNarrowAK, sk: hwNarrowSK}\n",
    );
    env.apply(
        "denied.yaml",
        &image_set(
            "denied",
            "11111111-0000-4000-8000-000000000009",
            &[("env", "prod")],
            &format!("{}  credentialsRef: {{name: narrow}}\n", ims(OTHER_PROJECT)),
        ),
    );
    let denied = history
        .find("denied", "AccessDenied", shows("Stalled", "AccessDenied"))
        .await;
    captured.push(("`AccessDenied`", denied));

    // 8 tags in the cloud + 3 new ones: past IMS's 10.
    env.apply(
        "full.yaml",
        &image_set(
            "full",
            "11111111-0000-4000-8000-000000000001",
            &[("n1", "x"), ("n2", "x"), ("n3", "x")],
            &ims(PROJECT),
        ),
    );
    let limit = history
        .find("full", "LimitExceeded", shows("Stalled", "LimitExceeded"))
        .await;
    captured.push(("`LimitExceeded`", limit));

    // --fight-threshold 1: the first out-of-band change is repaired, the second is a fight.
    env.apply(
        "fight.yaml",
        &image_set(
            "fight",
            "image-fight",
            &[("system.a", "1")],
            "  resyncInterval: 10s\n",
        ),
    );
    history
        .find("fight", "InSync", shows("Ready", "InSync"))
        .await;
    let target = Target::PaiImage {
        image_id: "image-fight".into(),
        workspace_id: None,
    };
    // Marked before the change: a quiet drift check writes nothing, so the
    // repair's InSync may be the last version and arrive with the repair's.
    let before_change = history.mark();
    env.sim
        .sim()
        .set_label_out_of_band(&target, "system.a", "theirs")
        .unwrap();
    let repairing = history
        .find_since(
            before_change,
            "fight",
            "a drift repair",
            shows("Reconciling", "DriftDetected"),
        )
        .await;
    captured.push(("`DriftDetected`, mode Sync", repairing));
    history
        .find_since(
            before_change,
            "fight",
            "InSync after the repair",
            shows("Ready", "InSync"),
        )
        .await;
    env.wait_cloud("the repair", WAIT, |s| {
        s.labels_of(&target)
            .and_then(|l| l.get("system.a").cloned())
            .as_deref()
            == Some("1")
    })
    .await;
    env.sim
        .sim()
        .set_label_out_of_band(&target, "system.a", "theirs")
        .unwrap();
    let fight = history
        .find("fight", "FightDetected", shows("Stalled", "FightDetected"))
        .await;
    captured.push(("`FightDetected`", fight));

    // Deletion blocked: the Secret it needs to remove its keys is gone.
    env.apply(
        "keep-secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: keep}\nstringData: {accessKeyId: testAK, accessKeySecret: testSecret}\n",
    );
    env.apply(
        "keep.yaml",
        &image_set(
            "keep",
            "image-keep",
            &[("system.a", "1")],
            "  credentialsRef: {name: keep}\n",
        ),
    );
    history
        .find("keep", "InSync", shows("Ready", "InSync"))
        .await;
    kubectl(&env, "delete secret", &["delete", "secret", "keep"]);
    kubectl(
        &env,
        "delete keep",
        &["delete", "ils", "keep", "--wait=false"],
    );
    let blocked = history
        .find("keep", "a blocked deletion", |o| {
            deleting(o) && shows("Stalled", "InvalidCredentials")(o)
        })
        .await;
    captured.push(("deleting", blocked));
    kubectl(
        &env,
        "let go",
        &[
            "patch",
            "ils",
            "keep",
            "--type=merge",
            "-p",
            r#"{"spec":{"deletionPolicy":"Orphan"}}"#,
        ],
    );

    // Deleting the owner of a key another set declares hands the key over.
    // The HandingOver status lasts only until the other set reconciles, so
    // it is judged when the watch caught it; the tools' answer for any
    // deleting set is decided by deletionTimestamp, as the blocked deletion
    // above shows every run.
    env.apply(
        "heir-a.yaml",
        &image_set("owner", "image-handover", &[("system.a", "1")], ""),
    );
    history
        .find("owner", "InSync", shows("Ready", "InSync"))
        .await;
    env.apply(
        "heir-b.yaml",
        &image_set("heir", "image-handover", &[("system.a", "1")], ""),
    );
    history
        .find("heir", "InSync", shows("Ready", "InSync"))
        .await;
    kubectl(
        &env,
        "delete owner",
        &["delete", "ils", "owner", "--timeout=60s"],
    );
    let handing = history
        .0
        .lock()
        .unwrap()
        .iter()
        .find(|o| {
            o["metadata"]["name"] == "owner"
                && deleting(o)
                && shows("Reconciling", "HandingOver")(o)
        })
        .cloned();
    eprintln!(
        "HandingOver status caught by the watch: {}",
        handing.is_some()
    );
    if let Some(o) = handing {
        captured.push(("deleting", o));
    }

    // Throttling: every call answered 429 until the faults are lifted.
    env.sim
        .sim()
        .set_faults(FaultConfig {
            throttle_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
    env.apply(
        "storm.yaml",
        &image_set("storm", "image-storm", &[("system.a", "1")], ""),
    );
    let storm = history
        .find("storm", "BackingOff", shows("Reconciling", "BackingOff"))
        .await;
    captured.push(("`BackingOff`", storm));
    env.sim.sim().set_faults(FaultConfig::default()).unwrap();

    judge(&captured);
    // After drift repairs, fights and errors: still clean.
    check_metrics(&op).await;
}

/// Alert rules and dashboard queries of the chart, all opt-ins on, checked
/// with Prometheus' parser against what a fresh operator exports; and every
/// object the chart renders passes the API server's own validation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_dashboard_and_alerts_query_exported_metrics_and_every_object_passes_a_dry_run() {
    gitops::tool();
    let env = Env::start(NS, SeedConfig::demo()).await;
    let op = env.operator("op", &[]);
    let docs = render_chart(&env);

    let mut exprs: Vec<String> = Vec::new();
    for d in &docs {
        if d["kind"] == "PrometheusRule" {
            for g in d["spec"]["groups"].as_array().unwrap() {
                for r in g["rules"].as_array().unwrap() {
                    exprs.push(r["expr"].as_str().unwrap().to_string());
                }
            }
        }
        if d["kind"] == "ConfigMap" && d["metadata"]["labels"]["grafana_dashboard"] == "1" {
            let json = d["data"].as_object().unwrap().values().next().unwrap();
            let dash: Value = serde_json::from_str(json.as_str().unwrap()).unwrap();
            for p in dash["panels"].as_array().unwrap() {
                for t in p["targets"].as_array().unwrap() {
                    // Grafana substitutes its range variable before Prometheus sees it.
                    exprs.push(
                        t["expr"]
                            .as_str()
                            .unwrap()
                            .replace("$__rate_interval", "5m"),
                    );
                }
            }
        }
    }
    assert!(exprs.len() >= 15, "rules and dashboard queries: {exprs:?}");
    let parsed = gitops::run(&["promql"], &serde_json::to_string(&exprs).unwrap());
    let (_, exported) = metric_names(&op).await;
    for q in parsed.as_array().unwrap() {
        let names = q["metrics"].as_array().unwrap();
        assert!(!names.is_empty(), "{q}");
        for n in names {
            assert!(
                exported.contains(n.as_str().unwrap()),
                "{} queries {n}, which the operator does not export ({exported:?})",
                q["expr"]
            );
        }
    }

    // Server-side dry run: schema, defaults and admission as a real install.
    env.create_namespace("imagelabel-system").await;
    let crds = env
        .cluster
        .write_file("monitoring-crds.yaml", MONITORING_CRDS);
    assert_success(
        "monitoring CRDs",
        &env.cluster.kubectl(["apply", "-f", crds.to_str().unwrap()]),
    );
    assert_success(
        "monitoring CRDs established",
        &env.cluster.kubectl([
            "wait",
            "--for=condition=Established",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
            "--timeout=60s",
        ]),
    );
    for d in &docs {
        let file = env
            .cluster
            .write_file("object.json", serde_json::to_string(d).unwrap());
        let out = env.cluster.kubectl([
            "apply",
            "--server-side",
            "--dry-run=server",
            "-f",
            file.to_str().unwrap(),
        ]);
        assert_success(
            &format!("dry run of {} {}", d["kind"], d["metadata"]["name"]),
            &out,
        );
    }
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for k in [
        "Deployment",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(k), "{k} not rendered: {kinds:?}");
    }
}

/// Minimal Prometheus Operator CRDs: enough for the API server to accept
/// (and validate the envelope of) the chart's monitoring objects.
const MONITORING_CRDS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, plural: servicemonitors, singular: servicemonitor, listKind: ServiceMonitorList}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, properties: {spec: {type: object, x-kubernetes-preserve-unknown-fields: true}}}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: prometheusrules.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: PrometheusRule, plural: prometheusrules, singular: prometheusrule, listKind: PrometheusRuleList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [groups]
              properties:
                groups:
                  type: array
                  items:
                    type: object
                    required: [name, rules]
                    properties:
                      name: {type: string}
                      rules:
                        type: array
                        items:
                          type: object
                          required: [expr]
                          properties:
                            alert: {type: string}
                            record: {type: string}
                            expr: {type: string}
                            for: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                            labels: {type: object, additionalProperties: {type: string}}
                            annotations: {type: object, additionalProperties: {type: string}}
"#;

/// The chart rendered with every optional object and the common extras on.
fn render_chart(env: &Env) -> Vec<Value> {
    let values = env.cluster.write_file(
        "values.yaml",
        r#"
metrics: {serviceMonitor: {enabled: true}}
grafanaDashboard: {enabled: true, folder: Operators}
prometheusRule: {enabled: true}
rbac: {secretNamespaces: [gitops]}
priorityClassName: system-cluster-critical
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app.kubernetes.io/name: imagelabel-operator}}}
extraArgs: ["--fight-threshold=5"]
extraEnv: [{name: HTTPS_PROXY, value: "http://proxy:3128"}]
extraVolumes: [{name: ca, configMap: {name: vpc-ca}}]
extraVolumeMounts: [{name: ca, mountPath: /etc/ssl/vpc, readOnly: true}]
"#,
    );
    let chart = format!(
        "{}/deploy/helm/imagelabel-operator",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = env.cluster.helm([
        "template",
        "rel",
        &chart,
        "-n",
        "imagelabel-system",
        "-f",
        values.to_str().unwrap(),
    ]);
    let text = assert_success("helm template", &out);
    yaml_documents(&text)
}

/// Runs both clients on the captured objects and compares with the README.
fn judge(captured: &[(&str, Value)]) {
    let table = gitops::state_table();
    let scripts = gitops::argo_health_scripts();
    let kinds: BTreeSet<&str> = scripts.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["DatasetLabelSet", "ImageLabelSet"]),
        "the README's argocd-cm snippet configures both kinds"
    );
    assert!(
        scripts.windows(2).all(|w| w[0].1 == w[1].1),
        "both kinds get the same script"
    );
    let objects: Vec<&Value> = captured.iter().map(|(_, o)| o).collect();
    let dir = tempfile::tempdir().unwrap();
    let lua = dir.path().join("health.lua");
    std::fs::write(&lua, &scripts[0].1).unwrap();
    let answers = gitops::run(
        &["health", lua.to_str().unwrap()],
        &serde_json::to_string(&objects).unwrap(),
    );
    let answers = answers.as_array().unwrap();
    let mut covered = BTreeSet::new();
    for ((state, obj), answer) in captured.iter().zip(answers) {
        let row = table
            .iter()
            .position(|r| r.state.starts_with(state) || r.state.contains(state))
            .unwrap_or_else(|| panic!("no row for {state} in the README's state table"));
        covered.insert(row);
        let row = &table[row];
        let name = &obj["metadata"]["name"];
        assert_eq!(
            answer["kstatus"], row.kstatus,
            "{state} ({name}): kstatus said {answer}; status was {:#}",
            obj["status"]
        );
        assert_eq!(
            answer["argo"], row.argo,
            "{state} ({name}): Argo CD said {answer}; status was {:#}",
            obj["status"]
        );
        if let Some(m) = &row.argo_message {
            assert_eq!(answer["argoMessage"], m.as_str(), "{state}: {answer}");
        }
        // A person reading Argo CD sees why, not just a colour.
        if row.argo == "Degraded" || row.argo == "Suspended" {
            assert!(
                answer["argoMessage"].as_str().is_some_and(|m| m.len() > 10),
                "{state}: {answer}"
            );
        }
    }
    let missed: Vec<&str> = table
        .iter()
        .enumerate()
        .filter(|(i, _)| !covered.contains(i))
        .map(|(_, r)| r.state.as_str())
        .collect();
    assert!(missed.is_empty(), "README states not exercised: {missed:?}");
    // Every reason of the Stalled row is exercised, not just one of them.
    for row in table.iter().filter(|r| r.kstatus == "Failed") {
        for reason in row.state.split('`').skip(1).step_by(2) {
            let tested = captured
                .iter()
                .any(|(s, _)| s.contains(&format!("`{reason}`")));
            assert!(tested, "README state {reason} is not exercised");
        }
    }
}

/// Checks `/metrics` in both formats with the real parsers and promlint;
/// returns the 0.0.4 family names and the OpenMetrics sample names.
async fn metric_names(op: &support::operator::Operator) -> (BTreeSet<String>, BTreeSet<String>) {
    let url = format!("http://127.0.0.1:{}/metrics", op.metrics_port);
    let get = |accept: &'static str| {
        let url = url.clone();
        async move {
            // The operator binds its port a moment after it starts.
            let deadline = Instant::now() + Duration::from_secs(30);
            let r = loop {
                match reqwest::Client::new()
                    .get(&url)
                    .header("accept", accept)
                    .send()
                    .await
                {
                    Ok(r) => break r,
                    Err(e) if Instant::now() > deadline => panic!("GET {url}: {e}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            let ct = r.headers()["content-type"].to_str().unwrap().to_string();
            (ct, r.text().await.unwrap())
        }
    };
    let (om_type, om) = get("application/openmetrics-text;version=1.0.0,text/plain;q=0.5").await;
    let (text_type, text) = get("text/plain;version=0.0.4").await;
    assert!(
        om_type.starts_with("application/openmetrics-text"),
        "{om_type}"
    );
    assert!(
        text_type.starts_with("text/plain; version=0.0.4"),
        "{text_type}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (om_file, text_file) = (dir.path().join("om"), dir.path().join("text"));
    std::fs::write(&om_file, &om).unwrap();
    std::fs::write(&text_file, &text).unwrap();
    let answer = gitops::run(
        &[
            "metrics",
            om_file.to_str().unwrap(),
            text_file.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(
        answer["promlintProblems"],
        Value::Array(vec![]),
        "promlint on the 0.0.4 text:\n{text}"
    );
    let strings = |key: &str| -> BTreeSet<String> {
        answer[key]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    (strings("families"), strings("openMetricsSamples"))
}

/// Every documented family is there, with samples, from the start.
async fn check_metrics(op: &support::operator::Operator) {
    let (families, samples) = metric_names(op).await;
    for name in documented_metrics() {
        assert!(
            families.contains(name.as_str()),
            "0.0.4: no family {name}: {families:?}"
        );
        let has_sample = samples.iter().any(|s| {
            *s == name
                || s.strip_prefix(name.as_str())
                    .is_some_and(|r| r.starts_with('_'))
        });
        assert!(
            has_sample,
            "OpenMetrics: {name} has no sample yet: {samples:?}"
        );
    }
}

/// The metric names of the README's metrics table.
fn documented_metrics() -> Vec<String> {
    let readme = gitops::readme();
    let names: Vec<String> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| metric | labels |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('`').nth(1).map(str::to_string))
        .collect();
    assert!(names.len() >= 10, "README metrics table: {names:?}");
    names
}
