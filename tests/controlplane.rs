//! The test control plane itself: a real kube-apiserver accepts our CRDs,
//! serves watches and the status subresource, enforces the CRDs' CEL rules at
//! admission and enforces RBAC for ServiceAccount tokens; kubectl and helm
//! talk to it.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use imagelabel::api::{Condition, ImageLabelSet, ImageLabelSetSpec, LabelSetStatus, Provider};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use support::cluster::{TestCluster, assert_success};

const WAIT: Duration = Duration::from_secs(30);
const PAI_KEY_RULE: &str = "every PAI image label key must start with 'system.'";

async fn create_namespace(client: &kube::Client, name: &str) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

fn pai_spec(labels: &[(&str, &str)]) -> ImageLabelSetSpec {
    ImageLabelSetSpec {
        provider: Provider::Pai,
        image_id: "image-0123456789".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

/// Status applied by one field manager: `apiVersion` and `kind` are required
/// in a server-side apply body, also on the status subresource.
async fn apply_status(
    api: &Api<ImageLabelSet>,
    name: &str,
    manager: &str,
    status: &LabelSetStatus,
) -> ImageLabelSet {
    let body = serde_json::json!({
        "apiVersion": ImageLabelSet::api_version(&()),
        "kind": ImageLabelSet::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap_or_else(|e| panic!("apply status as {manager}: {e}"))
}

async fn next_event(
    events: &mut (impl futures::Stream<Item = Result<Event<ImageLabelSet>, watcher::Error>> + Unpin),
) -> Event<ImageLabelSet> {
    tokio::time::timeout(WAIT, events.try_next())
        .await
        .expect("watch event within the timeout")
        .expect("watch stream error")
        .expect("watch stream ended")
}

#[tokio::test]
async fn crd_lifecycle_with_kubectl_and_helm() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();

    // The binaries carry real versions (ldflags): /version, and Helm's
    // kubeVersion checks and .Capabilities depend on them.
    let version = client.apiserver_version().await.expect("GET /version");
    assert_eq!(version.git_version, "v1.34.4");
    let helm_version = assert_success(
        "helm version",
        &cluster.helm(["version", "--template", "{{.Version}}"]),
    );
    assert_eq!(helm_version.trim(), "v3.19.5");
    let chart = cluster.dir().join("probe-chart");
    std::fs::create_dir_all(chart.join("templates")).expect("chart dir");
    cluster.write_file(
        "probe-chart/Chart.yaml",
        "apiVersion: v2\nname: probe\nversion: 0.1.0\nkubeVersion: \">=1.34.0-0\"\n",
    );
    cluster.write_file(
        "probe-chart/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n  kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}\n",
    );
    let chart_arg = chart.to_str().expect("utf-8 temp path");
    // Offline, helm assumes the Kubernetes version it was built for.
    let rendered = assert_success(
        "helm template",
        &cluster.helm(["template", "probe", chart_arg]),
    );
    assert!(
        rendered.contains("kubeVersion: \"v1.34.0\""),
        "helm template rendered: {rendered}"
    );
    // Installed, it asks the API server.
    assert_success(
        "helm install",
        &cluster.helm([
            "install",
            "probe",
            chart_arg,
            "--namespace",
            "helm-probe",
            "--create-namespace",
        ]),
    );
    let installed = cluster.kubectl_ok([
        "get",
        "configmap",
        "probe",
        "-n",
        "helm-probe",
        "-o",
        "jsonpath={.data.kubeVersion}",
    ]);
    assert_eq!(installed, "v1.34.4");

    // Install the CRDs the way users do.
    let crds = cluster.write_file("crds.yaml", imagelabel::api::crds_yaml());
    let out = cluster.kubectl(["apply", "-f", crds.to_str().expect("utf-8 temp path")]);
    let applied = assert_success("kubectl apply the CRDs", &out);
    // The API server warns about questionable schemas (unknown formats,
    // for example); the generated CRDs should have none.
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        warnings.trim().is_empty(),
        "kubectl apply of the CRDs warned: {warnings}"
    );
    assert!(
        applied.contains(
            "customresourcedefinition.apiextensions.k8s.io/imagelabelsets.imagelabel.io created"
        ),
        "kubectl apply said: {applied}"
    );
    assert!(
        applied.contains(
            "customresourcedefinition.apiextensions.k8s.io/datasetlabelsets.imagelabel.io created"
        ),
        "kubectl apply said: {applied}"
    );
    cluster.kubectl_ok([
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/imagelabelsets.imagelabel.io",
        "crd/datasetlabelsets.imagelabel.io",
    ]);

    let ns = "team-a";
    create_namespace(&client, ns).await;
    let api: Api<ImageLabelSet> = Api::namespaced(client.clone(), ns);

    // Watch from before the object exists, so its creation must arrive as a
    // live event rather than as part of the initial list.
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    loop {
        match next_event(&mut events).await {
            Event::InitDone => break,
            Event::InitApply(o) => {
                panic!("namespace {ns} should start empty, listed {}", o.name_any())
            }
            _ => {}
        }
    }

    let name = "gpu-image";
    let spec = pai_spec(&[("system.chipType", "GPU"), ("system.framework", "pytorch")]);
    let created = api
        .create(
            &PostParams::default(),
            &ImageLabelSet {
                metadata: meta(ns, name),
                spec: spec.clone(),
                status: None,
            },
        )
        .await
        .expect("create a valid ImageLabelSet");
    assert_eq!(created.spec, spec);
    assert_eq!(created.metadata.generation, Some(1));

    match next_event(&mut events).await {
        Event::Apply(o) => {
            assert_eq!(o.name_any(), name);
            assert_eq!(o.spec, spec);
            // The CRD defaults status.observedGeneration to 0, so GitOps
            // tools read a set nobody reconciled yet as in progress.
            let status = o.status.expect("the defaulted status");
            assert_eq!(status.observed_generation, Some(0));
            assert!(status.conditions.is_empty());
        }
        other => panic!("expected the creation as an Apply event, got {other:?}"),
    }

    // Two field managers own one condition each: with conditions a
    // list-map keyed by type, the second apply must not drop the first.
    let ready = LabelSetStatus {
        observed_generation: Some(1),
        conditions: vec![Condition::new(
            "Ready",
            true,
            "InSync",
            "2 labels in sync",
            Some(1),
        )],
        owned_keys: vec!["system.chipType".into(), "system.framework".into()],
        label_count: Some(2),
        ..Default::default()
    };
    let after_first = apply_status(&api, name, "imagelabel-test", &ready).await;
    assert_eq!(
        after_first.status.as_ref(),
        Some(&ready),
        "status as applied"
    );
    assert_eq!(
        after_first.spec, spec,
        "a status patch must not touch the spec"
    );
    assert_eq!(
        after_first.metadata.generation,
        Some(1),
        "status writes do not bump the generation"
    );

    let reconciling = LabelSetStatus {
        conditions: vec![Condition::new(
            "Reconciling",
            false,
            "InSync",
            "nothing to do",
            Some(1),
        )],
        ..Default::default()
    };
    apply_status(&api, name, "another-manager", &reconciling).await;
    let fetched = api.get_status(name).await.expect("get status");
    let status = fetched.status.expect("status is stored");
    let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Ready", "Reconciling"], "conditions merged by type");
    assert_eq!(status.condition("Ready"), ready.condition("Ready"));
    assert_eq!(status.owned_keys, ready.owned_keys);
    assert_eq!(status.label_count, Some(2));

    // The watch sees status changes too (the operator relies on it to
    // notice its own writes and skip them).
    let watched = loop {
        match next_event(&mut events).await {
            Event::Apply(o) if o.status.as_ref().is_some_and(|s| s.conditions.len() == 2) => {
                break o;
            }
            Event::Apply(_) => continue,
            other => panic!("expected status updates as Apply events, got {other:?}"),
        }
    };
    assert_eq!(watched.name_any(), name);

    // CEL rule of the CRD, enforced by the API server at admission.
    let bad = ImageLabelSet {
        metadata: meta(ns, "bad-key"),
        spec: pai_spec(&[("chipType", "GPU")]),
        status: None,
    };
    match api.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "rejected as Invalid: {status:?}");
            assert!(
                status.message.contains(PAI_KEY_RULE),
                "the rule's message reaches the client: {}",
                status.message
            );
            assert!(
                status.message.contains("spec.labels"),
                "the rule's field path is reported: {}",
                status.message
            );
        }
        Ok(o) => panic!(
            "API server accepted a PAI label key without 'system.': {:?}",
            o.spec
        ),
        Err(e) => panic!("unexpected error: {e}"),
    }
    // An update that breaks the rule is rejected the same way.
    let mut broken = api.get(name).await.expect("get");
    broken.spec.labels.insert("team".into(), "ml".into());
    let err = api
        .replace(name, &PostParams::default(), &broken)
        .await
        .expect_err("update breaking a CEL rule");
    assert!(
        err.to_string().contains(PAI_KEY_RULE),
        "update rejected with the rule: {err}"
    );

    // Same through kubectl, with a manifest a user would write.
    let manifest = cluster.write_file(
        "bad.yaml",
        format!(
            "apiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata:\n  name: bad-manifest\n  namespace: {ns}\nspec:\n  provider: pai\n  imageId: image-1\n  labels:\n    chipType: GPU\n"
        ),
    );
    let out = cluster.kubectl(["apply", "-f", manifest.to_str().expect("utf-8 temp path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "kubectl apply of an invalid set succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(PAI_KEY_RULE),
        "kubectl shows the rule message: {stderr}"
    );

    let names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|o| o.name_any())
        .collect();
    assert_eq!(names, [name], "only the valid set was stored");
}

#[tokio::test]
async fn service_account_token_gets_exactly_its_role() {
    let cluster = TestCluster::start().await;
    let admin = cluster.client();
    let (ns, other_ns, sa) = ("apps", "elsewhere", "reader");
    create_namespace(&admin, ns).await;
    create_namespace(&admin, other_ns).await;

    let pp = PostParams::default();
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create(
            &pp,
            &ServiceAccount {
                metadata: meta(ns, sa),
                ..Default::default()
            },
        )
        .await
        .expect("create serviceaccount");
    let role = Role {
        metadata: meta(ns, "configmap-reader"),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(&pp, &role)
        .await
        .expect("create role");
    let binding = RoleBinding {
        metadata: meta(ns, "reader-reads-configmaps"),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "configmap-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: sa.into(),
            namespace: Some(ns.into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&pp, &binding)
        .await
        .expect("create rolebinding");

    let data = Some(BTreeMap::from([("k".to_string(), "v".to_string())]));
    for namespace in [ns, other_ns] {
        Api::<ConfigMap>::namespaced(admin.clone(), namespace)
            .create(
                &pp,
                &ConfigMap {
                    metadata: meta(namespace, "settings"),
                    data: data.clone(),
                    ..Default::default()
                },
            )
            .await
            .expect("create configmap");
    }
    Api::<Secret>::namespaced(admin.clone(), ns)
        .create(
            &pp,
            &Secret {
                metadata: meta(ns, "creds"),
                ..Default::default()
            },
        )
        .await
        .expect("create secret");

    let kubeconfig = cluster.kubeconfig_for_service_account(ns, sa).await;
    let client = cluster.client_for(&kubeconfig).await;

    // Allowed by the Role.
    let own: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    assert_eq!(
        own.get("settings")
            .await
            .expect("get configmap in own namespace")
            .data,
        data
    );
    let listed = own
        .list(&ListParams::default())
        .await
        .expect("list configmaps in own namespace");
    assert_eq!(
        listed
            .items
            .iter()
            .map(|c| c.name_any())
            .collect::<Vec<_>>(),
        ["settings"]
    );

    // Everything else is 403.
    let expect_forbidden = |what: &str, result: Result<(), kube::Error>| match result {
        Err(kube::Error::Api(s)) if s.is_forbidden() => {
            assert!(
                s.message
                    .contains(&format!("system:serviceaccount:{ns}:{sa}")),
                "{what}: denied as the ServiceAccount: {}",
                s.message
            )
        }
        Err(e) => panic!("{what}: expected 403 Forbidden, got {e}"),
        Ok(()) => panic!("{what}: allowed, but the Role does not grant it"),
    };
    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), other_ns);
    expect_forbidden(
        "get configmap in another namespace",
        elsewhere.get("settings").await.map(drop),
    );
    expect_forbidden(
        "list configmaps in another namespace",
        elsewhere.list(&ListParams::default()).await.map(drop),
    );
    expect_forbidden(
        "list configmaps cluster-wide",
        Api::<ConfigMap>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map(drop),
    );
    expect_forbidden(
        "get secret",
        Api::<Secret>::namespaced(client.clone(), ns)
            .get("creds")
            .await
            .map(drop),
    );
    expect_forbidden(
        "delete configmap",
        own.delete("settings", &DeleteParams::default())
            .await
            .map(drop),
    );
    let patch = serde_json::json!({ "data": { "k": "changed" } });
    expect_forbidden(
        "patch configmap",
        own.patch("settings", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop),
    );
    expect_forbidden(
        "create configmap",
        own.create(
            &pp,
            &ConfigMap {
                metadata: meta(ns, "new"),
                ..Default::default()
            },
        )
        .await
        .map(drop),
    );
    let untouched = Api::<ConfigMap>::namespaced(admin.clone(), ns)
        .get("settings")
        .await
        .expect("admin get");
    assert_eq!(untouched.data, data, "denied writes changed nothing");

    // kubectl with the same kubeconfig authenticates as the ServiceAccount.
    let whoami = assert_success(
        "kubectl auth whoami",
        &cluster.kubectl_with(
            &kubeconfig,
            [
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
        ),
    );
    assert_eq!(whoami, format!("system:serviceaccount:{ns}:{sa}"));
    let names = assert_success(
        "kubectl get configmaps",
        &cluster.kubectl_with(&kubeconfig, ["get", "configmaps", "-o", "name"]),
    );
    assert_eq!(
        names.trim(),
        "configmap/settings",
        "the kubeconfig defaults to the account's namespace"
    );
    let out = cluster.kubectl_with(&kubeconfig, ["get", "secrets", "-n", ns]);
    assert!(
        !out.status.success(),
        "kubectl get secrets as {sa} succeeded"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Forbidden") || stderr.contains("forbidden"),
        "kubectl reports 403: {stderr}"
    );
    let can_i = cluster.kubectl_with(
        &kubeconfig,
        ["auth", "can-i", "delete", "configmaps", "-n", ns],
    );
    assert_eq!(String::from_utf8_lossy(&can_i.stdout).trim(), "no");
}

#[tokio::test]
async fn apiserver_restart_keeps_state_clients_and_tokens() {
    let cluster = TestCluster::start().await;
    let admin = cluster.client();
    let ns = "restart";
    create_namespace(&admin, ns).await;
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: meta(ns, "op"),
                ..Default::default()
            },
        )
        .await
        .expect("create serviceaccount");
    let kubeconfig = cluster.kubeconfig_for_service_account(ns, "op").await;

    cluster.restart_apiserver().await;
    // etcd kept the data; the admin client reconnects on its own.
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .get("op")
        .await
        .expect("serviceaccount survives the restart");

    // Crash-style stop: while it is down, requests fail; afterwards they work.
    cluster.kill_apiserver();
    let down = tokio::time::timeout(WAIT, Api::<Namespace>::all(admin.clone()).get(ns))
        .await
        .expect("a request to a dead server fails fast");
    assert!(
        down.is_err(),
        "request succeeded while kube-apiserver was down"
    );
    cluster.start_apiserver().await;
    Api::<Namespace>::all(admin.clone())
        .get(ns)
        .await
        .expect("namespace after the second start");

    // The token issued before the restarts still verifies: same signing key.
    let whoami = assert_success(
        "kubectl auth whoami",
        &cluster.kubectl_with(
            &kubeconfig,
            [
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
        ),
    );
    assert_eq!(whoami, format!("system:serviceaccount:{ns}:op"));
}
