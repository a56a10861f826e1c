//! The reconciler against a mocked API server (tower-test) and an
//! in-memory cloud: each test scripts the requests it expects, in order,
//! and checks what the reconcile sent.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::BoxFuture;
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

use super::*;
use crate::api::status::reason;
use crate::api::{ImageLabelSet, ImageLabelSetSpec, LabelSetStatus, SecretRef};
use crate::controller::context::{CloudAccess, test_ctx};
use crate::engine::ResolvedSet;
use crate::provider::{CallLimits, CloudError, LabelProvider, Labels, Target, WriteOutcome};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const SET_PATH: &str = "/apis/imagelabel.io/v1alpha1/namespaces/ns/imagelabelsets/s";
const SECRET_PATH: &str = "/api/v1/namespaces/ns/secrets/creds";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";

/// A request the test expects, and the answer it gets.
struct Step {
    method: &'static str,
    path: String,
    status: u16,
    answer: Value,
}

fn step(method: &'static str, path: &str, status: u16, answer: Value) -> Step {
    Step {
        method,
        path: path.into(),
        status,
        answer,
    }
}

/// A request the reconcile sent: method, path and query, JSON body.
#[derive(Debug)]
struct Sent {
    method: String,
    uri: String,
    body: Value,
}

/// Answers the scripted requests in order; panics on any other.
fn api_server(mut handle: Handle, script: Vec<Step>) -> tokio::task::JoinHandle<Vec<Sent>> {
    tokio::spawn(async move {
        let mut sent = Vec::new();
        for s in script {
            let (req, reply) = handle
                .next_request()
                .await
                .expect("the reconcile ended early");
            let (method, uri) = (req.method().to_string(), req.uri().to_string());
            assert_eq!(
                (method.as_str(), req.uri().path()),
                (s.method, s.path.as_str()),
                "request {} of the script: {method} {uri}",
                sent.len() + 1
            );
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let answer = Body::from(serde_json::to_vec(&s.answer).unwrap());
            reply.send_response(Response::builder().status(s.status).body(answer).unwrap());
            sent.push(Sent { method, uri, body });
        }
        sent
    })
}

/// One in-memory cloud object; fails every call with `fail` when set.
struct MemCloud {
    labels: Mutex<Labels>,
    fail: Option<ErrorKind>,
    calls: Mutex<Vec<String>>,
}

impl MemCloud {
    fn new(labels: &[(&str, &str)], fail: Option<ErrorKind>) -> Arc<Self> {
        Arc::new(MemCloud {
            labels: Mutex::new(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            fail,
            calls: Mutex::default(),
        })
    }

    fn call(&self, what: String) -> Result<WriteOutcome, CloudError> {
        self.calls.lock().unwrap().push(what);
        match self.fail {
            Some(kind) => Err(CloudError::new(kind, "Test", "refused")),
            None => Ok(WriteOutcome {
                request_id: Some("req-1".into()),
            }),
        }
    }

    fn labels(&self) -> Labels {
        self.labels.lock().unwrap().clone()
    }
}

impl LabelProvider for MemCloud {
    fn limits(&self, _: &Target) -> CallLimits {
        CallLimits {
            add_per_call: 10,
            remove_per_call: 10,
            max_labels_on_object: None,
        }
    }
    fn observe<'a>(&'a self, _: &'a Target) -> BoxFuture<'a, Result<Labels, CloudError>> {
        Box::pin(async move {
            self.call("observe".into())?;
            Ok(self.labels())
        })
    }
    fn add<'a>(
        &'a self,
        _: &'a Target,
        labels: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        Box::pin(async move {
            let out = self.call(format!("add {labels:?}"))?;
            self.labels.lock().unwrap().extend(labels.iter().cloned());
            Ok(out)
        })
    }
    fn remove<'a>(
        &'a self,
        _: &'a Target,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        Box::pin(async move {
            let out = self.call(format!("remove {keys:?}"))?;
            let mut l = self.labels.lock().unwrap();
            keys.iter().for_each(|k| {
                l.remove(k);
            });
            Ok(out)
        })
    }
}

struct Clouds(Arc<MemCloud>);

impl CloudAccess for Clouds {
    fn provider_for(
        &self,
        _: &ResolvedSet,
        secret: Option<&BTreeMap<String, Vec<u8>>>,
    ) -> Result<Arc<dyn LabelProvider>, crate::provider::AccessError> {
        assert_eq!(
            secret.and_then(|s| s.get("accessKeyId")).map(Vec::as_slice),
            Some(&b"ak"[..]),
            "the Secret's data reaches the cloud client"
        );
        Ok(self.0.clone())
    }
}

/// A context on a mocked API server and `cloud`.
fn harness(cloud: &Arc<MemCloud>) -> (Arc<Ctx>, Handle) {
    harness_with(Arc::new(Clouds(cloud.clone())))
}

/// A context on a mocked API server and `clouds`. The store's writer is
/// dropped, so nothing waits for a first list.
fn harness_with(clouds: Arc<dyn CloudAccess>) -> (Arc<Ctx>, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (store, _writer) = kube::runtime::reflector::store();
    let ctx = test_ctx(client, clouds, store);
    (Arc::new(ctx), handle)
}

/// Set `ns/s` on `image-1`, declaring `labels`, with the finalizer.
fn image_set(labels: &[(&str, &str)]) -> ImageLabelSet {
    let spec = ImageLabelSetSpec {
        image_id: "image-1".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        credentials_ref: Some(SecretRef {
            name: "creds".into(),
        }),
        ..Default::default()
    };
    let mut set = ImageLabelSet::new("s", spec);
    set.metadata.namespace = Some("ns".into());
    set.metadata.uid = Some("uid-1".into());
    set.metadata.generation = Some(2);
    set.metadata.finalizers = Some(vec![FINALIZER.into()]);
    set
}

fn as_json(set: &ImageLabelSet) -> Value {
    serde_json::to_value(set).unwrap()
}

fn secret() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "ns", "resourceVersion": "41"},
        "data": {"accessKeyId": "YWs=", "accessKeySecret": "c2s="}
    })
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
           "message": "secrets \"creds\" not found", "reason": "NotFound", "code": 404})
}

/// `(type, status, reason)` of the conditions of a status patch.
fn conditions(patch: &Value) -> Vec<(String, String, String)> {
    let status: LabelSetStatus = serde_json::from_value(patch["status"].clone()).unwrap();
    crate::controller::status::triples(&status)
}

fn status_path() -> String {
    format!("{SET_PATH}/status")
}

/// `(status, reason)` of one condition.
type Cond<'a> = (&'a str, &'a str);

/// A status patch is a forced server-side apply by the operator, with
/// these `Ready`, `Reconciling` and `Stalled` conditions.
fn assert_status_patch(sent: &Sent, ready: Cond, reconciling: Cond, stalled: Cond) {
    assert_eq!(sent.method, "PATCH");
    let forced =
        sent.uri.contains("fieldManager=imagelabel-operator") && sent.uri.contains("force=true");
    assert!(forced, "{}", sent.uri);
    assert_eq!(sent.body["kind"], "ImageLabelSet");
    let want = [
        ("Ready", ready),
        ("Reconciling", reconciling),
        ("Stalled", stalled),
    ]
    .map(|(t, (s, r))| (t.to_string(), s.to_string(), r.to_string()));
    assert_eq!(conditions(&sent.body)[..3], want);
    assert_eq!(sent.body["status"]["observedGeneration"], 2);
}

fn assert_event(sent: &Sent, type_: &str, reason_: &str) {
    assert_eq!(
        (sent.method.as_str(), sent.body["type"].as_str()),
        ("POST", Some(type_))
    );
    assert_eq!(sent.body["reason"], reason_);
    assert_eq!(sent.body["regarding"]["name"], "s");
    assert_eq!(sent.body["reportingController"], "test");
}

fn counted(ctx: &Ctx, line: &str) -> bool {
    ctx.metrics.encode().lines().any(|l| l == line)
}

/// What one reconcile returned and sent.
struct Run {
    result: Result<Action, Error>,
    ctx: Arc<Ctx>,
    sent: Vec<Sent>,
}

/// Reconciles `set` once against `cloud` and an API server answering `script`.
async fn run(set: &ImageLabelSet, cloud: &Arc<MemCloud>, script: Vec<Step>) -> Run {
    let (ctx, handle) = harness(cloud);
    let server = api_server(handle, script);
    let result = reconcile(Arc::new(Cached::of(set)), ctx.clone()).await;
    let sent = server
        .await
        .expect("the API server saw an unexpected request");
    Run { result, ctx, sent }
}

fn get_secret() -> Step {
    step("GET", SECRET_PATH, 200, secret())
}

fn no_secret() -> Step {
    step("GET", SECRET_PATH, 404, not_found())
}

fn patch_status(set: &ImageLabelSet) -> Step {
    step("PATCH", &status_path(), 200, as_json(set))
}

fn post_event() -> Step {
    step("POST", EVENTS_PATH, 201, json!({}))
}

const TRUE: &str = "True";
const FALSE: &str = "False";

#[tokio::test]
async fn a_new_set_gets_the_finalizer_first() {
    let cloud = MemCloud::new(&[], None);
    let mut set = image_set(&[("system.framework", "1")]);
    set.metadata.finalizers = None;
    let r = run(
        &set,
        &cloud,
        vec![step("PATCH", SET_PATH, 200, as_json(&set))],
    )
    .await;
    assert_eq!(r.result.unwrap(), Action::await_change());
    assert_eq!(
        r.sent[0].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}
        ])
    );
    assert!(cloud.calls.lock().unwrap().is_empty(), "no cloud call");
}

#[tokio::test]
async fn a_paused_set_is_ready_paused_without_cloud_calls() {
    let cloud = MemCloud::new(&[], None);
    let mut set = image_set(&[("system.framework", "1")]);
    set.metadata.annotations = Some([(PAUSED.to_string(), "true".to_string())].into());
    let r = run(&set, &cloud, vec![patch_status(&set)]).await;
    assert_eq!(r.result.unwrap(), Action::await_change());
    let in_sync = (FALSE, reason::IN_SYNC);
    assert_status_patch(&r.sent[0], (TRUE, reason::PAUSED), in_sync, in_sync);
    assert!(cloud.calls.lock().unwrap().is_empty());
    assert!(counted(
        &r.ctx,
        "imagelabel_reconciles_total{kind=\"ImageLabelSet\",result=\"paused\"} 1"
    ));
}

#[tokio::test]
async fn an_invalid_spec_stalls_and_says_so() {
    let cloud = MemCloud::new(&[], None);
    let mut set = image_set(&[("system.framework", "1")]);
    set.spec.image_id = String::new();
    let r = run(&set, &cloud, vec![patch_status(&set), post_event()]).await;
    assert_eq!(r.result.unwrap(), Action::await_change());
    let why = reason::INVALID_SPEC;
    assert_status_patch(
        &r.sent[0],
        (FALSE, why),
        (FALSE, reason::IN_SYNC),
        (TRUE, why),
    );
    let msg = r.sent[0].body["status"]["conditions"][2]["message"]
        .as_str()
        .unwrap();
    assert!(msg.contains("spec.imageId"), "{msg}");
    assert_event(&r.sent[1], "Warning", why);
    assert!(counted(
        &r.ctx,
        "imagelabel_reconciles_total{kind=\"ImageLabelSet\",result=\"stalled\"} 1"
    ));
}

#[tokio::test]
async fn missing_labels_are_applied_with_ownership_recorded_first() {
    let cloud = MemCloud::new(&[("other", "x")], None);
    let set = image_set(&[("system.framework", "1")]);
    let patch = || patch_status(&set);
    let script = vec![get_secret(), patch(), patch(), patch(), post_event()];
    let r = run(&set, &cloud, script).await;
    r.result.unwrap();
    let (sent, in_sync) = (&r.sent, (FALSE, reason::IN_SYNC));
    // In progress, before any cloud call.
    let applying = reason::APPLYING;
    assert_status_patch(&sent[1], (FALSE, applying), (TRUE, applying), in_sync);
    assert_eq!(sent[1].body["status"]["ownedKeys"], json!([]));
    // Write-ahead: the key is owned before it is written.
    assert_eq!(
        sent[2].body["status"]["ownedKeys"],
        json!(["system.framework"])
    );
    // Settled.
    assert_status_patch(&sent[3], (TRUE, reason::IN_SYNC), in_sync, in_sync);
    let status = &sent[3].body["status"];
    assert_eq!(status["ownedKeys"], json!(["system.framework"]));
    assert_eq!(status["labelCount"], 2);
    assert_eq!(status["syncedGeneration"], 2);
    assert_eq!(status["lastRequestId"], "req-1");
    assert_eq!(status["target"], "pai/cn-shanghai/image/image-1");
    assert_event(&sent[4], "Normal", "LabelsApplied");
    let note = "+system.framework=\"1\" on image image-1 (RequestId req-1)";
    assert_eq!(sent[4].body["note"], note);
    assert_eq!(
        cloud.labels().get("system.framework").map(String::as_str),
        Some("1")
    );
    let calls = vec!["observe", "add [(\"system.framework\", \"1\")]"];
    assert_eq!(*cloud.calls.lock().unwrap(), calls);
    assert!(counted(
        &r.ctx,
        "imagelabel_reconciles_total{kind=\"ImageLabelSet\",result=\"success\"} 1"
    ));
}

#[tokio::test]
async fn a_set_matching_the_cloud_is_in_sync_without_writes() {
    let cloud = MemCloud::new(&[("system.framework", "1")], None);
    let set = image_set(&[("system.framework", "1")]);
    let r = run(&set, &cloud, vec![get_secret(), patch_status(&set)]).await;
    r.result.unwrap();
    let in_sync = (FALSE, reason::IN_SYNC);
    assert_status_patch(&r.sent[1], (TRUE, reason::IN_SYNC), in_sync, in_sync);
    // Already there before the set: not owned (spec.policy.adopt is off).
    assert_eq!(r.sent[1].body["status"]["ownedKeys"], json!([]));
    assert_eq!(r.sent[1].body["status"]["labelCount"], 1);
    assert_eq!(*cloud.calls.lock().unwrap(), vec!["observe"]);
}

#[tokio::test]
async fn a_missing_secret_stalls_once_then_holds_without_calls() {
    let cloud = MemCloud::new(&[], None);
    let set = image_set(&[("system.framework", "1")]);
    // The second reconcile reads the Secret again, and holds.
    let script = vec![no_secret(), patch_status(&set), post_event(), no_secret()];
    let (ctx, handle) = harness(&cloud);
    let server = api_server(handle, script);
    let waited = tokio::time::timeout(
        Duration::from_secs(5),
        reconcile(Arc::new(Cached::of(&set)), ctx.clone()),
    );
    let action = waited.await.expect("the check does not wait").unwrap();
    // The next look waits in the pass schedule, not in the controller.
    assert_eq!(action, Action::await_change());
    let key = set_key(&set);
    assert!(
        ctx.passes.due_in(&key).is_some(),
        "a stall with a Secret polls it"
    );
    let held = reconcile(Arc::new(Cached::of(&set)), ctx.clone())
        .await
        .unwrap();
    assert_eq!(held, Action::await_change());
    assert!(ctx.passes.due_in(&key).is_some(), "held, looks again");
    let sent = server
        .await
        .expect("the API server saw an unexpected request");
    let why = reason::INVALID_CREDENTIALS;
    assert_status_patch(
        &sent[1],
        (FALSE, why),
        (FALSE, reason::IN_SYNC),
        (TRUE, why),
    );
    let msg = sent[1].body["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap();
    assert!(
        msg.starts_with("Secret ns/creds (spec.credentialsRef) not found"),
        "{msg}"
    );
    assert_event(&sent[2], "Warning", why);
    assert!(cloud.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_image_stalls_on_not_found() {
    let cloud = MemCloud::new(&[], Some(ErrorKind::NotFound));
    let set = image_set(&[("system.framework", "1")]);
    let r = run(
        &set,
        &cloud,
        vec![get_secret(), patch_status(&set), post_event()],
    )
    .await;
    r.result.unwrap();
    let why = reason::NOT_FOUND;
    assert_status_patch(
        &r.sent[1],
        (FALSE, why),
        (FALSE, reason::IN_SYNC),
        (TRUE, why),
    );
    let msg = &r.sent[1].body["status"]["conditions"][2]["message"];
    assert_eq!(msg, "reading the labels: Test failed: refused");
    assert_event(&r.sent[2], "Warning", why);
}

#[tokio::test]
async fn a_throttled_cloud_backs_off_and_counts_the_error_kind() {
    let cloud = MemCloud::new(&[], Some(ErrorKind::Throttled));
    let set = image_set(&[("system.framework", "1")]);
    let r = run(&set, &cloud, vec![get_secret(), patch_status(&set)]).await;
    let err = r.result.unwrap_err();
    let throttled = |e: &Error| matches!(e, Error::Cloud(SyncError::Observe(c)) if c.kind == ErrorKind::Throttled);
    assert!(throttled(&err), "{err:?}");
    assert_eq!(err.kind(), "cloud_throttled");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the cloud error is kept"
    );
    let why = reason::BACKING_OFF;
    assert_status_patch(
        &r.sent[1],
        (FALSE, why),
        (TRUE, why),
        (FALSE, reason::IN_SYNC),
    );
    error_policy(Arc::new(Cached::of(&set)), &err, r.ctx.clone());
    let errors = "imagelabel_reconcile_errors_total{kind=\"ImageLabelSet\",error=";
    assert!(counted(&r.ctx, &format!("{errors}\"cloud_throttled\"}} 1")));
    assert!(counted(&r.ctx, &format!("{errors}\"kube\"}} 0")));
    assert!(counted(
        &r.ctx,
        "imagelabel_reconciles_total{kind=\"ImageLabelSet\",result=\"error\"} 1"
    ));
}

#[tokio::test]
async fn a_refused_ownership_record_writes_no_label() {
    let cloud = MemCloud::new(&[], None);
    let set = image_set(&[("system.framework", "1")]);
    let unavailable = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": "the server is shutting down", "reason": "ServiceUnavailable", "code": 503});
    let refused = step("PATCH", &status_path(), 503, unavailable);
    let r = run(
        &set,
        &cloud,
        vec![get_secret(), patch_status(&set), refused],
    )
    .await;
    let err = r.result.unwrap_err();
    assert!(
        matches!(err, Error::Ownership(kube::Error::Api(ref e)) if e.code == 503),
        "{err:?}"
    );
    assert_eq!(err.kind(), "ownership");
    assert_eq!(*cloud.calls.lock().unwrap(), vec!["observe"], "no write");
}

/// A set being deleted with `status.ownedKeys`.
fn deleting(owned: &[&str]) -> ImageLabelSet {
    let mut set = image_set(&[("system.framework", "1")]);
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    set.metadata.deletion_timestamp = Some(now);
    set.status = Some(LabelSetStatus {
        owned_keys: owned.iter().map(|k| k.to_string()).collect(),
        target: Some("pai/cn-shanghai/image/image-1".into()),
        ..Default::default()
    });
    set
}

#[tokio::test]
async fn deletion_removes_owned_keys_then_the_finalizer() {
    let cloud = MemCloud::new(&[("system.framework", "1"), ("other", "x")], None);
    let set = deleting(&["system.framework"]);
    let unfinalize = step("PATCH", SET_PATH, 200, as_json(&set));
    let r = run(&set, &cloud, vec![get_secret(), post_event(), unfinalize]).await;
    assert_eq!(r.result.unwrap(), Action::await_change());
    assert_event(&r.sent[1], "Normal", "LabelsRemoved");
    assert_eq!(
        r.sent[2].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ])
    );
    let left = Labels::from([("other".to_string(), "x".to_string())]);
    assert_eq!(cloud.labels(), left);
}

#[tokio::test]
async fn a_deletion_without_credentials_is_blocked_and_deleting() {
    let cloud = MemCloud::new(&[("system.framework", "1")], None);
    let set = deleting(&["system.framework"]);
    let r = run(
        &set,
        &cloud,
        vec![no_secret(), patch_status(&set), post_event()],
    )
    .await;
    let err = r.result.unwrap_err();
    let why = reason::INVALID_CREDENTIALS;
    assert!(
        matches!(err, Error::DeletionBlocked { reason, .. } if reason == why),
        "{err:?}"
    );
    assert_eq!(err.kind(), "deletion_blocked");
    assert_status_patch(
        &r.sent[1],
        (FALSE, why),
        (TRUE, reason::DELETING),
        (TRUE, why),
    );
    assert_event(&r.sent[2], "Warning", why);
    assert_eq!(cloud.labels().len(), 1, "nothing removed");
}

#[test]
fn every_error_kind_is_a_metric_label() {
    let cloud_kinds = ErrorKind::ALL
        .map(|k| Error::Cloud(SyncError::Observe(CloudError::new(k, "T", "m"))).kind());
    for k in cloud_kinds {
        assert!(ERROR_KINDS.contains(&k), "{k}");
    }
    let text = crate::controller::metrics::Metrics::default().encode();
    for k in ERROR_KINDS.iter().chain(&["finalizer"]) {
        let line = format!(
            "imagelabel_reconcile_errors_total{{kind=\"DatasetLabelSet\",error=\"{k}\"}} 0"
        );
        assert!(text.contains(&line), "{line}");
    }
    let finalizer: Error = kube::runtime::finalizer::Error::<Error>::UnnamedObject.into();
    assert_eq!(finalizer.kind(), "finalizer");
    assert_eq!(finalizer.to_string(), "finalizer: object has no name");
}

/// At start-up every set of the cluster is a reconcile waiting for a
/// slot at once; 10,000 of them must not cost more than a few MiB.
#[tokio::test]
async fn a_reconcile_waiting_for_a_slot_is_small() {
    let (store, _writer) = kube::runtime::reflector::store();
    let ctx = Arc::new(super::super::context::offline_ctx(store));
    let mut set = crate::api::ImageLabelSet::new("s", Default::default());
    set.metadata.namespace = Some("ns".into());
    let waiting = reconcile(Arc::new(Cached::of(&set)), ctx.clone());
    let set = Arc::new(set);
    let size = std::mem::size_of_val(&waiting);
    let inline = std::mem::size_of_val(&pass(set, ctx, false));
    println!("waiting reconcile: {size} bytes; the pass it boxes: {inline} bytes");
    assert!(size <= 1024, "a waiting reconcile is {size} bytes");
    assert!(
        inline >= 4 * size,
        "boxing the pass saves little: {inline} bytes"
    );
}

#[test]
fn backoff_grows_and_caps() {
    let base = Duration::from_secs(1);
    let cap = Duration::from_secs(300);
    assert!(backoff_delay(base, cap, 1) <= Duration::from_millis(1200));
    assert!(backoff_delay(base, cap, 5) >= Duration::from_millis(12_800));
    assert!(backoff_delay(base, cap, 40) <= cap);
}

/// Refuses every client with a bad region.
struct BadRegion;

impl CloudAccess for BadRegion {
    fn provider_for(
        &self,
        set: &ResolvedSet,
        _: Option<&BTreeMap<String, Vec<u8>>>,
    ) -> Result<Arc<dyn LabelProvider>, crate::provider::AccessError> {
        Err(crate::provider::AccessError::Region {
            region: set.region.clone(),
            reason: "not served".into(),
        })
    }
}

#[tokio::test]
async fn a_bad_region_stalls_as_invalid_spec_not_invalid_credentials() {
    let set = image_set(&[("system.framework", "1")]);
    let (ctx, handle) = harness_with(Arc::new(BadRegion));
    let server = api_server(handle, vec![get_secret(), patch_status(&set), post_event()]);
    reconcile(Arc::new(Cached::of(&set)), ctx).await.unwrap();
    let sent = server
        .await
        .expect("the API server saw an unexpected request");
    let why = reason::INVALID_SPEC;
    assert_status_patch(
        &sent[1],
        (FALSE, why),
        (FALSE, reason::IN_SYNC),
        (TRUE, why),
    );
    let msg = sent[1].body["status"]["conditions"][2]["message"]
        .as_str()
        .unwrap();
    assert!(msg.contains("not served"), "{msg}");
    assert_event(&sent[2], "Warning", why);
}

/// A drift check that finds every check slot busy is requeued at once,
/// without a call, instead of waiting in the controller's bounded runner.
#[tokio::test]
async fn a_drift_check_finding_no_check_slot_is_requeued_without_calls() {
    let cloud = MemCloud::new(&[("system.framework", "1")], None);
    let (ctx, handle) = harness(&cloud);
    let server = api_server(handle, vec![]);
    let mut set = image_set(&[("system.framework", "1")]);
    let ready = crate::api::status::Condition {
        type_: crate::api::status::READY.into(),
        status: TRUE.into(),
        reason: reason::IN_SYNC.into(),
        ..Default::default()
    };
    set.status = Some(LabelSetStatus {
        observed_generation: Some(2),
        synced_generation: Some(2),
        conditions: vec![ready],
        ..Default::default()
    });
    // Reconciled before by this process, so not a first, spread check.
    ctx.seen.lock().unwrap().insert(key_hash(&set_key(&set)));
    let held = ctx.check_slots.try_acquire().expect("the one check slot");
    let waited = tokio::time::timeout(
        Duration::from_secs(5),
        reconcile(Arc::new(Cached::of(&set)), ctx.clone()),
    );
    let action = waited.await.expect("the check does not wait").unwrap();
    assert_eq!(action, Action::await_change(), "not held in the runner");
    let retry = ctx.passes.due_in(&set_key(&set)).expect("looks again");
    assert!(retry <= Duration::from_secs(1), "{retry:?}");
    assert!(cloud.calls.lock().unwrap().is_empty(), "no cloud call");
    assert_eq!(ctx.slots.available_permits(), 1, "no reconcile slot taken");
    drop(held);
    drop(ctx);
    assert!(server.await.unwrap().is_empty(), "no API call");
}
