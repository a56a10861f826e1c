//! One reconcile of one set: finalizer, pause, validation, credentials,
//! plan, write-ahead ownership, writes, status, events.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::events::EventType;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use rand::Rng;
use serde_json::json;
use tracing::{info, warn};

use super::context::{Ctx, Metered};
use super::index::Entry;
use super::metrics::{Metrics, ReconcileLabels};
use super::resource::LabelSetResource;
use super::spread;
use crate::api::status::reason;
use crate::api::validate::parse_duration;
use crate::api::{
    Condition, ConflictEntry, DRIFTED, DeletionPolicy, DriftEntry, FightEntry, LabelSetStatus,
    Mode, READY, RECONCILING, STALLED,
};
use crate::engine::{
    ResolvedSet, SyncError, SyncReport, SyncRequest, carry_out, observe_and_plan, plan_for,
};
use crate::plan::{self, OnDeletion, Role};
use crate::provider::{ErrorKind, LabelProvider};

pub const FINALIZER: &str = "imagelabel.io/finalizer";
/// Our annotations; the watch caches keep no others.
pub const ANNOTATION_PREFIX: &str = "imagelabel.io/";
pub const PAUSED: &str = "imagelabel.io/paused";
pub const RECONCILE_REQUESTED_AT: &str = "imagelabel.io/reconcile-requested-at";
pub const FIELD_MANAGER: &str = "imagelabel-operator";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A cloud failure worth retrying with backoff.
    #[error("{0}")]
    Transient(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// `Kind/namespace/name`, the set's key in every per-set map.
pub fn set_key<K: LabelSetResource>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::KIND,
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// The entry point the `Controller` calls.
pub async fn reconcile<K: LabelSetResource>(obj: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = set_key(&*obj);
    let check = is_drift_check(&*obj, &ctx, &key);
    let first = ctx.seen.lock().expect("seen poisoned").insert(key.clone());
    if first && let Some(delay) = first_check_delay(&*obj, &ctx, check) {
        tracing::debug!(set = %key, delay_s = delay.as_secs(), "settled; first drift check spread over the resync interval");
        // The gauges a pass would set, from the status, until the first pass.
        if let Some(st) = obj.status() {
            ctx.record_counts(
                &key,
                K::KIND,
                Some((st.owned_keys.len(), st.conflicts.len())),
            );
        }
        return Ok(Action::requeue(delay));
    }
    // Drift checks hold at most half the slots, so a change never waits
    // behind a large periodic pass.
    // One budget for both kinds' controllers, which each run their own queue.
    let _slots = super::context::enter(&ctx.slots, &ctx.check_slots, check).await;
    // Boxed so that a reconcile waiting for a slot above stays a few hundred
    // bytes: every set of a large cluster waits here at start-up, and the
    // inline pass (finalizer, cloud and API calls) is tens of KB.
    Box::pin(pass(obj, ctx.clone(), check)).await
}

/// One pass over a set, holding its slot.
async fn pass<K: LabelSetResource>(
    obj: Arc<K>,
    ctx: Arc<Ctx>,
    check: bool,
) -> Result<Action, Error> {
    let started = Instant::now();
    prime_index(&ctx).await;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let result = finalizer(&api, FINALIZER, obj.clone(), |event| async {
        match event {
            Finalizer::Apply(o) => apply(o, &ctx, check).await,
            Finalizer::Cleanup(o) => cleanup(o, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics
        .reconcile_duration
        .get_or_create(&Metrics::kind(K::KIND))
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures
            .lock()
            .expect("failures poisoned")
            .remove(&set_key(&*obj));
    }
    result
}

/// Whether this reconcile is only a periodic drift check (see
/// [`super::spread`]). Takes the set's woken mark.
fn is_drift_check<K: LabelSetResource>(obj: &K, ctx: &Ctx, key: &str) -> bool {
    let woken = ctx.woken.lock().expect("woken poisoned").remove(key);
    let failing = ctx
        .failures
        .lock()
        .expect("failures poisoned")
        .contains_key(key);
    let annotations = obj.annotations();
    spread::is_drift_check(&spread::SetState {
        generation: obj.meta().generation,
        status: obj.status(),
        resume: annotations.get(RECONCILE_REQUESTED_AT).map(String::as_str),
        paused: annotations.get(PAUSED).map(String::as_str) == Some("true"),
        deleting: obj.meta().deletion_timestamp.is_some(),
        failing,
        woken,
    })
}

/// How long the first reconcile of a settled set in this process waits.
fn first_check_delay<K: LabelSetResource>(obj: &K, ctx: &Ctx, check: bool) -> Option<Duration> {
    if !check {
        return None;
    }
    let set = obj.resolve(&ctx.config.default_region).ok()?;
    let interval = resync_of(set.policy.resync_interval.as_deref(), ctx);
    let since = spread::age_of(obj.status().and_then(|s| s.last_sync_time.as_deref()));
    let uid = obj.meta().uid.clone().unwrap_or_else(|| set_key(obj));
    // Already known to be a drift check: only the timing is left.
    Some(match since {
        Some(age) if age < interval => interval - age,
        _ => spread::hash_offset(&uid, interval),
    })
}

/// Exponential backoff per set, jittered, capped; reset by a success.
pub fn error_policy<K: LabelSetResource>(obj: Arc<K>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let key = set_key(&*obj);
    let n = {
        let mut f = ctx.failures.lock().expect("failures poisoned");
        let n = f.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind: K::KIND.into(),
            result: "error".into(),
        })
        .inc();
    let delay = backoff_delay(ctx.config.backoff_base, ctx.config.backoff_cap, n);
    warn!(set = %key, attempt = n, retry_in_ms = delay.as_millis() as u64, error = %error, "reconcile failed; backing off");
    Action::requeue(delay)
}

/// `base * 2^(n-1)`, capped, with ±20% jitter so many failing sets do not retry in step.
pub fn backoff_delay(base: Duration, cap: Duration, n: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << n.saturating_sub(1).min(20));
    let d = exp.min(cap);
    d.mul_f64(rand::rng().random_range(0.8..1.2)).min(cap)
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.8..1.2))
}

/// Fills the claim index from the watch caches once, before the first plan,
/// so a set never writes a key an older, not yet reconciled set declares.
async fn prime_index(ctx: &Ctx) {
    ctx.primed
        .get_or_init(|| async {
            let _ = ctx.image_store.wait_until_ready().await;
            let _ = ctx.dataset_store.wait_until_ready().await;
            for o in ctx.image_store.state() {
                index_claim(&*o, ctx);
            }
            for o in ctx.dataset_store.state() {
                index_claim(&*o, ctx);
            }
        })
        .await;
}

/// The keys a set owns: what this process last wrote, else its status.
fn owned_keys_of<K: LabelSetResource>(obj: &K, ctx: &Ctx) -> Vec<String> {
    ctx.owned_keys(
        obj.meta().uid.as_deref(),
        obj.status().map_or(&[][..], |s| &s.owned_keys[..]),
    )
}

/// Indexes what a set manages and owns. A set being deleted stays in the
/// index, as a non-contender, until its cleanup is done: a winner must be
/// able to inherit the keys it leaves behind.
pub(super) fn index_claim<K: LabelSetResource>(obj: &K, ctx: &Ctx) -> Vec<crate::plan::SetId> {
    match obj.resolve(&ctx.config.default_region) {
        Ok(set) => {
            let entry = Entry {
                labels: plan::managed(&set.desired, &set.protected),
                owned: owned_keys_of(obj, ctx).into_iter().collect(),
                role: Role::of(set.policy.mode, obj.meta().deletion_timestamp.is_some()),
            };
            ctx.index
                .upsert(&set_key(obj), &set.object_key(), &obj.set_id(), &entry)
        }
        Err(_) => ctx.index.remove(&set_key(obj)),
    }
}

/// Asks for the other sets on an object to be reconciled again; their next
/// reconcile is a change, not a drift check.
pub(super) fn wake_others<K: LabelSetResource>(ids: Vec<crate::plan::SetId>, ctx: &Ctx) {
    {
        let mut woken = ctx.woken.lock().expect("woken poisoned");
        for id in &ids {
            woken.insert(format!("{}/{}", K::KIND, id.name));
        }
    }
    wake_unmarked::<K>(ids, ctx);
}

/// As [`wake_others`], without making their next reconcile a change.
pub(super) fn wake_unmarked<K: LabelSetResource>(ids: Vec<crate::plan::SetId>, ctx: &Ctx) {
    for id in ids {
        if let Some((ns, name)) = id.name.split_once('/') {
            K::wake(ctx, ObjectRef::new(name).within(ns));
        }
    }
}

/// Everything a status write needs besides the conditions.
struct StatusWriter<'a, K: LabelSetResource> {
    obj: &'a K,
    ctx: &'a Ctx,
    generation: Option<i64>,
    status: LabelSetStatus,
    /// What a stall now would be stalled on (see [`Ctx::stall_hold`]).
    stall_fingerprint: Option<String>,
}

impl<'a, K: LabelSetResource> StatusWriter<'a, K> {
    fn new(obj: &'a K, ctx: &'a Ctx) -> Self {
        let mut status = obj.status().cloned().unwrap_or_default();
        status.owned_keys = owned_keys_of(obj, ctx);
        StatusWriter {
            obj,
            ctx,
            generation: obj.meta().generation,
            status,
            stall_fingerprint: None,
        }
    }

    fn conditions(
        &mut self,
        ready: (bool, &str, String),
        reconciling: Option<(&str, String)>,
        stalled: Option<(&str, String)>,
    ) {
        set_conditions(
            &mut self.status,
            self.generation,
            ready,
            reconciling,
            stalled,
        );
    }

    /// Server-side apply of the whole status; the operator owns every field in it.
    async fn write(&mut self) -> Result<(), kube::Error> {
        self.status.observed_generation = self.generation;
        let api: Api<K> = Api::namespaced(
            self.ctx.client.clone(),
            &self.obj.namespace().unwrap_or_default(),
        );
        let body = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": self.status,
        });
        api.patch_status(
            &self.obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
        // Only what the API server took: ownership remembered from a refused
        // write would let the next pass skip its write-ahead record, and a
        // crash then leaves a written key nobody owns (the model test found it).
        self.ctx
            .remember_owned(self.obj.meta().uid.as_deref(), &self.status.owned_keys);
        if let Some(uid) = self.obj.meta().uid.as_deref() {
            self.ctx
                .written_status
                .lock()
                .expect("written status poisoned")
                .insert(uid.to_string(), status_hash(&self.status));
        }
        Ok(())
    }
}

/// A status without `lastSyncTime`, hashed: two statuses a pass may not
/// tell apart.
fn status_hash(status: &LabelSetStatus) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut s = status.clone();
    s.last_sync_time = None;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&s).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Whether `new` says nothing `old` does not, apart from `lastSyncTime`.
fn same_status(old: &LabelSetStatus, new: &LabelSetStatus) -> bool {
    let mut a = old.clone();
    let mut b = new.clone();
    a.last_sync_time = None;
    b.last_sync_time = None;
    a == b
}

fn set_conditions(
    status: &mut LabelSetStatus,
    g: Option<i64>,
    ready: (bool, &str, String),
    reconciling: Option<(&str, String)>,
    stalled: Option<(&str, String)>,
) {
    // Messages carry cloud error text of any length; a status past the
    // API server's size limit would fail every later patch.
    let ready = (ready.0, ready.1, truncate(&ready.2, MAX_STATUS_MESSAGE));
    let reconciling = reconciling.map(|(r, m)| (r, truncate(&m, MAX_STATUS_MESSAGE)));
    let stalled = stalled.map(|(r, m)| (r, truncate(&m, MAX_STATUS_MESSAGE)));
    status.set_condition(Condition::new(READY, ready.0, ready.1, ready.2, g));
    match reconciling {
        Some((r, m)) => status.set_condition(Condition::new(RECONCILING, true, r, m, g)),
        None => status.set_condition(Condition::new(RECONCILING, false, reason::IN_SYNC, "", g)),
    }
    match stalled {
        Some((r, m)) => status.set_condition(Condition::new(STALLED, true, r, m, g)),
        None => status.set_condition(Condition::new(STALLED, false, reason::IN_SYNC, "", g)),
    }
    // Its own condition, so drift stays visible where Ready says the
    // set is done (Observe) without holding GitOps health checks.
    let drifted = match status.drift.len() {
        0 => Condition::new(DRIFTED, false, reason::IN_SYNC, "", g),
        n => Condition::new(
            DRIFTED,
            true,
            reason::DRIFT_DETECTED,
            format!("{n} keys differ from the spec (see status.drift)"),
            g,
        ),
    };
    status.set_condition(drifted);
}

async fn event<K: LabelSetResource>(
    ctx: &Ctx,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let note = truncate(&note, 1000);
    let regarding = obj.object_ref(&());
    if let Err(e) = ctx
        .events
        .publish(type_, reason, "Reconcile", note, &regarding)
        .await
    {
        warn!(set = %set_key(obj), error = %e, "could not publish event");
    }
}

/// Longest condition message (bytes, before the ellipsis); events get 1000.
const MAX_STATUS_MESSAGE: usize = 1024;

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn count<K: LabelSetResource>(ctx: &Ctx, result: &str) {
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind: K::KIND.into(),
            result: result.into(),
        })
        .inc();
}

fn resync_of(set_interval: Option<&str>, ctx: &Ctx) -> Duration {
    set_interval
        .and_then(parse_duration)
        .unwrap_or(ctx.config.default_resync)
}

/// The data of a `credentialsRef` Secret and its resourceVersion.
struct SecretRead {
    data: BTreeMap<String, Vec<u8>>,
    version: String,
}

enum SecretError {
    /// Missing or forbidden: a person has to act.
    Stall(String),
    /// The API server did not answer; try again with backoff.
    Transient(String),
}

impl SecretError {
    fn message(self) -> String {
        match self {
            SecretError::Stall(m) | SecretError::Transient(m) => m,
        }
    }
}

/// Reads the `credentialsRef` Secret, in the set's own namespace only.
async fn secret_data<K: LabelSetResource>(
    obj: &K,
    set: &ResolvedSet,
    ctx: &Ctx,
) -> Result<Option<SecretRead>, SecretError> {
    let ns = obj.namespace().unwrap_or_default();
    let Some(r) = &set.policy.credentials_ref else {
        // Checked before any cloud client exists: a refused set costs no call.
        if !ctx.config.default_credentials.allows(&ns) {
            return Err(SecretError::Stall(
                crate::controller::tenancy::DefaultCredentialsNamespaces::refusal(&ns),
            ));
        }
        return Ok(None);
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    match api.get_opt(&r.name).await {
        Ok(Some(s)) => Ok(Some(SecretRead {
            version: s.resource_version().unwrap_or_default(),
            data: s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect(),
        })),
        Ok(None) => Err(SecretError::Stall(format!(
            "Secret {ns}/{} (spec.credentialsRef) not found; create it with accessKeyId/accessKeySecret (pai) or ak/sk (huaweicloud-ims)",
            r.name
        ))),
        Err(kube::Error::Api(e)) if e.code == 403 => Err(SecretError::Stall(format!(
            "the operator may not read Secret {ns}/{}: {}",
            r.name, e.message
        ))),
        Err(e) => Err(SecretError::Transient(format!(
            "reading Secret {ns}/{}: {e}",
            r.name
        ))),
    }
}

/// What a stall depends on: the spec, the resume annotation and the Secret.
fn stall_fingerprint<K: LabelSetResource>(obj: &K, secret_version: Option<&str>) -> String {
    format!(
        "{:?}|{:?}|{}",
        obj.meta().generation,
        obj.annotations().get(RECONCILE_REQUESTED_AT),
        secret_version.unwrap_or("-")
    )
}

/// When a held stall looks again: soon enough to notice a fixed Secret,
/// otherwise when the recheck is due.
fn held_requeue(set: &ResolvedSet, left: Duration, ctx: &Ctx) -> Duration {
    if set.policy.credentials_ref.is_some() {
        left.min(jittered(ctx.config.secret_poll))
    } else {
        left
    }
}

fn provider_for(
    set: &ResolvedSet,
    secret: Option<&SecretRead>,
    ctx: &Ctx,
) -> Result<Arc<dyn LabelProvider>, String> {
    let inner = ctx
        .clouds
        .provider_for(set, secret.map(|s| &s.data))
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(Metered {
        inner,
        provider: set.provider.as_str(),
        metrics: ctx.metrics.clone(),
    }))
}

/// Whether a cloud error needs a person (spec, permission, credentials) rather than time.
fn stall_reason(kind: ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::NotFound => Some(reason::NOT_FOUND),
        ErrorKind::AccessDenied => Some(reason::ACCESS_DENIED),
        ErrorKind::Unauthenticated => Some(reason::INVALID_CREDENTIALS),
        ErrorKind::Invalid => Some(reason::CLOUD_ERROR),
        ErrorKind::Throttled | ErrorKind::Server | ErrorKind::Network => None,
    }
}

async fn apply<K: LabelSetResource>(obj: Arc<K>, ctx: &Ctx, check: bool) -> Result<Action, Error> {
    let key = set_key(&*obj);
    let mut w = StatusWriter::new(&*obj, ctx);
    let annotations = obj.annotations();

    if annotations.get(PAUSED).map(String::as_str) == Some("true") {
        if let Ok(set) = obj.resolve(&ctx.config.default_region) {
            inherit(&mut w, &set, ctx);
        }
        // Ready=True: pausing is a deliberate, settled state, so kstatus
        // (Flux `wait: true`) reports Current instead of waiting until its
        // timeout; the reason says Paused and Argo CD's check shows Suspended.
        w.conditions(
            (
                true,
                reason::PAUSED,
                format!("annotation {PAUSED}=true: no cloud calls until it is removed"),
            ),
            None,
            None,
        );
        w.write().await?;
        count::<K>(ctx, "paused");
        return Ok(Action::await_change());
    }

    let set = match obj.resolve(&ctx.config.default_region) {
        Ok(s) => s,
        Err(errors) => {
            let msg = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return invalid_spec(w, ctx, &*obj, msg).await;
        }
    };
    let object = set.target_key();
    if let Some(was) = w.status.target.clone()
        && was != object
        && !w.status.owned_keys.is_empty()
    {
        // The schema forbids this; an old CRD or a bypassed webhook may not.
        let msg = format!(
            "the target changed from {was} to {object}, but this set owns keys {:?} on {was}: \
             the target is immutable; restore it, or delete this set and create a new one",
            w.status.owned_keys
        );
        return invalid_spec(w, ctx, &*obj, msg).await;
    }
    w.status.target = Some(object);
    wake_others::<K>(index_claim(&*obj, ctx), ctx);
    if inherit(&mut w, &set, ctx) {
        // Recorded now: a stalled set may return below without a status write.
        w.write().await?;
    }
    let resync = resync_of(set.policy.resync_interval.as_deref(), ctx);
    let id = obj.set_id();

    // A spec change or an explicit resume (annotation) forgets fight history.
    let resume = annotations.get(RECONCILE_REQUESTED_AT).cloned();
    if w.status.observed_generation != w.generation || w.status.last_handled_reconcile_at != resume
    {
        ctx.fights.reset(&key);
        w.status.fights.clear();
    }
    w.status.last_handled_reconcile_at = resume;

    let secret = match secret_data(&*obj, &set, ctx).await {
        Ok(s) => s,
        Err(SecretError::Transient(msg)) => return backing_off(w, msg).await,
        Err(SecretError::Stall(msg)) => {
            let fp = stall_fingerprint(&*obj, Some("unreadable"));
            if let Some(left) = ctx.stall_hold(&key, &fp) {
                return Ok(Action::requeue(held_requeue(&set, left, ctx)));
            }
            w.stall_fingerprint = Some(fp);
            return stall(w, ctx, &*obj, reason::INVALID_CREDENTIALS, msg, &set).await;
        }
    };
    // A terminal error is not retried until what it depends on changes.
    let fp = stall_fingerprint(&*obj, secret.as_ref().map(|s| s.version.as_str()));
    if let Some(left) = ctx.stall_hold(&key, &fp) {
        tracing::debug!(set = %key, "stalled; spec and Secret unchanged, no cloud call");
        return Ok(Action::requeue(held_requeue(&set, left, ctx)));
    }
    w.stall_fingerprint = Some(fp);
    let provider = match provider_for(&set, secret.as_ref(), ctx) {
        Ok(p) => p,
        Err(msg) => return stall(w, ctx, &*obj, reason::INVALID_CREDENTIALS, msg, &set).await,
    };

    let owned: BTreeSet<String> = w.status.owned_keys.iter().cloned().collect();
    let held: BTreeSet<String> = w.status.fights.iter().map(|f| f.key.clone()).collect();
    let claims = ctx.index.claims(&set.object_key(), &id);
    let req = SyncRequest {
        set: &set,
        id: &id,
        owned: &owned,
        claims: &claims,
        held: &held,
        deleting: None,
        dry_run: false,
    };
    let batch = batch_of(&*obj, &set, secret.as_ref());
    if check
        && let Some(batch) = &batch
        && let Some(requeue) =
            quiet_from_snapshot(&w, &set, &req, provider.as_ref(), batch, resync).await
    {
        return Ok(requeue);
    }
    // A drift check reads on the smaller share of the cloud budget, so
    // changes never queue behind a large periodic pass.
    let observed = if check {
        crate::provider::limiter::as_check(observe_and_plan(provider.as_ref(), &req)).await
    } else {
        observe_and_plan(provider.as_ref(), &req).await
    };
    let mut report = match observed {
        Ok(r) => r,
        Err((_, e)) => return failed(w, ctx, &*obj, e, &set).await,
    };

    // Drift: the cloud differs from a spec generation we already synced.
    let was_synced = w.generation.is_some() && w.status.synced_generation == w.generation;
    let drifted: Vec<String> = if was_synced && set.policy.mode == Mode::Sync {
        report.plan.changed_keys()
    } else {
        vec![]
    };
    let now = Instant::now();
    let mut new_fights = Vec::new();
    let mut more_held = held.clone();
    for k in &drifted {
        if ctx.fights.is_fighting(&key, k, now) {
            more_held.insert(k.clone());
            new_fights.push(FightEntry {
                key: k.clone(),
                last_seen: report.observed.get(k).cloned(),
                repairs: ctx.config.fight_threshold as u32,
            });
        }
    }
    if !new_fights.is_empty() {
        let req = SyncRequest {
            held: &more_held,
            ..req
        };
        report.plan = plan_for(&req, &report.observed);
        ctx.metrics
            .fights_detected
            .get_or_create(&Metrics::kind(K::KIND))
            .inc_by(new_fights.len() as u64);
        for f in &new_fights {
            event(
                ctx,
                &*obj,
                EventType::Warning,
                reason::FIGHT_DETECTED,
                format!(
                    "key {} was changed out of band {} times within {:?}; last value seen {:?}; no longer repaired until the spec changes or annotation {RECONCILE_REQUESTED_AT} is set",
                    f.key, f.repairs, ctx.config.fight_window, f.last_seen
                ),
            )
            .await;
        }
        w.status.fights.extend(new_fights);
    }

    if set.policy.mode == Mode::Sync && !report.plan.is_empty() {
        let (why, what) = if drifted.is_empty() {
            (reason::APPLYING, "applying label changes")
        } else {
            (
                reason::DRIFT_DETECTED,
                "repairing labels changed out of band",
            )
        };
        w.conditions(
            (false, why, what.into()),
            Some((why, describe(&report))),
            None,
        );
        // Written before the cloud calls, not only with a write-ahead of
        // ownership: a repair or an edit of owned keys would otherwise never
        // show as in progress, and a crash mid-way would leave "InSync".
        w.write().await?;
    }
    let writer = &mut w;
    let outcome = carry_out(provider.as_ref(), &set, report, |ahead| async move {
        writer.status.owned_keys = ahead.into_iter().collect();
        writer.write().await.map_err(|e| e.to_string())
    })
    .await;
    let wrote = match &outcome {
        Ok(r) | Err((r, _)) => r.applied.as_ref().is_some_and(|a| a.calls > 0),
    };
    if wrote && let Some(batch) = &batch {
        // A snapshot taken before this write no longer answers for the object.
        ctx.snapshots.written(&batch.key, &batch.id);
    }
    let report = match outcome {
        Ok(r) => r,
        Err((r, e)) => {
            // Whatever got written is owned; keep that record.
            w.status.owned_keys = r.owned.iter().cloned().collect();
            if let Some(a) = r.applied.as_ref().filter(|a| a.calls > 0)
                && (!a.added.is_empty() || !a.removed.is_empty())
            {
                let mut done: Vec<String> =
                    a.added.iter().map(|(k, v)| format!("+{k}={v:?}")).collect();
                done.extend(a.removed.iter().map(|k| format!("-{k}")));
                let rid = a.last_request_id.clone().unwrap_or_default();
                event(
                    ctx,
                    &*obj,
                    EventType::Warning,
                    "LabelsPartiallyApplied",
                    format!(
                        "{} on {} (RequestId {rid}) before: {e}",
                        done.join(", "),
                        set.target
                    ),
                )
                .await;
            }
            return failed(w, ctx, &*obj, e, &set).await;
        }
    };

    let repaired: Vec<&String> = drifted
        .iter()
        .filter(|k| report.plan.add.contains_key(*k) || report.plan.remove.contains(*k))
        .collect();
    for k in &repaired {
        ctx.fights.record(&key, k, now);
    }
    if !repaired.is_empty() {
        ctx.metrics
            .drift_repaired
            .get_or_create(&Metrics::kind(K::KIND))
            .inc_by(repaired.len() as u64);
    }
    let wrote_status = finish(w, ctx, &*obj, &set, &report, !repaired.is_empty()).await?;
    if check {
        let result = if wrote_status { "drift" } else { "clean" };
        ctx.metrics
            .drift_checks
            .get_or_create(&ReconcileLabels {
                kind: K::KIND.into(),
                result: result.into(),
            })
            .inc();
    }
    // Said once the keys are recorded in status.ownedKeys.
    if !report.plan.adopted.is_empty() {
        let keys: Vec<&str> = report.plan.adopted.iter().map(String::as_str).collect();
        let msg = format!(
            "adopted {} on {} (already had the declared values; nothing written)",
            keys.join(", "),
            set.target
        );
        event(ctx, &*obj, EventType::Normal, "LabelsAdopted", msg).await;
    }
    Ok(Action::requeue(jittered(resync)))
}

/// What a workspace snapshot lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    /// ListImages (`Verbose=true`).
    Images,
    /// ListDatasets (labels come with each dataset).
    Datasets,
}

/// Where a set's drift check may be answered from: the snapshot key
/// (listing, namespace, credentials as Secret name and version or the
/// operator's own, where requests go, workspace), the workspace, and the
/// object's ID in the listing.
struct Batch {
    key: String,
    workspace: String,
    listing: Listing,
    id: String,
}

/// PAI image sets with a `workspaceId`, and PAI dataset sets (not dataset
/// versions) with a `workspaceId`.
fn batch_of<K: LabelSetResource>(
    obj: &K,
    set: &ResolvedSet,
    secret: Option<&SecretRead>,
) -> Option<Batch> {
    use crate::provider::Target;
    let (listing, id, ws) = match &set.target {
        Target::PaiImage {
            image_id,
            workspace_id: Some(ws),
        } => (Listing::Images, image_id.clone(), ws.clone()),
        Target::PaiDataset { dataset_id } => (
            Listing::Datasets,
            dataset_id.clone(),
            obj.spec_view().workspace_id()?.to_string(),
        ),
        _ => return None,
    };
    let ns = obj.namespace().unwrap_or_default();
    let creds = match (&set.policy.credentials_ref, secret) {
        (Some(r), Some(s)) => format!("{}@{}", r.name, s.version),
        _ => "-".to_string(),
    };
    let place = crate::provider::location::location(set.provider, &set.region);
    Some(Batch {
        key: format!("{listing:?}|{ns}|{creds}|{place}|{ws}"),
        workspace: ws,
        listing,
        id,
    })
}

/// Sets that share a batch's listing, namespace, credentials name, region
/// and workspace, from the watch caches.
fn sets_on_workspace(ctx: &Ctx, ns: &str, set: &ResolvedSet, batch: &Batch) -> usize {
    let cred = set.policy.credentials_ref.as_ref().map(|r| r.name.as_str());
    let ws = Some(batch.workspace.as_str());
    let same = |spec: &dyn crate::api::LabelSetSpec, o_ns: Option<String>, c: Option<&str>| {
        spec.provider() == crate::api::Provider::Pai
            && spec.workspace_id() == ws
            && o_ns.as_deref() == Some(ns)
            && c == cred
            && spec.region().unwrap_or(&ctx.config.default_region) == set.region
    };
    match batch.listing {
        Listing::Images => ctx
            .image_store
            .state()
            .iter()
            .filter(|o| {
                same(
                    &o.spec,
                    o.namespace(),
                    o.spec.credentials_ref.as_ref().map(|r| r.name.as_str()),
                )
            })
            .count(),
        Listing::Datasets => ctx
            .dataset_store
            .state()
            .iter()
            .filter(|o| {
                o.spec.version.is_none()
                    && same(
                        &o.spec,
                        o.namespace(),
                        o.spec.credentials_ref.as_ref().map(|r| r.name.as_str()),
                    )
            })
            .count(),
    }
}

/// A drift check answered from a workspace snapshot: when the snapshot
/// holds the object, the plan from its labels is empty and the status would
/// not change, the check is done (no per-object read, no write) and the
/// next one is due at the workspace's next pass
/// ([`crate::controller::snapshots::next_pass`]), so all sets of the
/// workspace come due together. `None`: read the object as usual.
async fn quiet_from_snapshot<K: LabelSetResource>(
    w: &StatusWriter<'_, K>,
    set: &ResolvedSet,
    req: &SyncRequest<'_>,
    provider: &dyn LabelProvider,
    batch: &Batch,
    resync: Duration,
) -> Option<Action> {
    let (obj, ctx) = (w.obj, w.ctx);
    let ws = batch.workspace.as_str();
    let listing = batch.listing;
    let page = move |n: u32, size: u32| match listing {
        Listing::Images => provider.list_workspace_images(ws, n, size),
        Listing::Datasets => provider.list_workspace_datasets(ws, n, size),
    };
    // The provider cannot list: nothing to batch.
    drop(page(1, 1)?);
    let ns = obj.namespace().unwrap_or_default();
    let read = move |n: u32| page(n, crate::provider::pai::list::PAGE_SIZE).expect("checked above");
    let answer = crate::provider::limiter::as_check(ctx.snapshots.answer(
        &batch.key,
        &batch.id,
        resync / 2,
        || sets_on_workspace(ctx, &ns, set, batch),
        &read,
        |pages| {
            ctx.metrics.snapshot_pages.inc_by(u64::from(pages));
        },
    ))
    .await?;
    let report = SyncReport {
        plan: plan_for(req, &answer.labels),
        labels_after: answer.labels.clone(),
        observed: answer.labels,
        owned: req.owned.clone(),
        applied: None,
    };
    if !report.plan.is_empty() {
        return None;
    }
    let report = SyncReport {
        owned: report.plan.owned_after.clone(),
        ..report
    };
    let mut status = w.status.clone();
    settle(&mut status, w.generation, set, &report);
    if !unchanged(obj, ctx, &status) {
        return None;
    }
    ctx.metrics.snapshot_answers.inc();
    ctx.metrics
        .drift_checks
        .get_or_create(&ReconcileLabels {
            kind: K::KIND.into(),
            result: "clean".into(),
        })
        .inc();
    count::<K>(ctx, "success");
    // A little jitter so a pass's checks do not all start in one instant.
    let due = crate::controller::snapshots::next_pass(answer.epoch, Instant::now(), resync)
        + resync.mul_f64(rand::rng().random_range(0.0..0.02));
    let wait = due
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    tracing::debug!(set = %set_key(obj), next_check_s = wait.as_secs_f64(), "drift check answered from a workspace snapshot");
    Some(Action::requeue(wait))
}

/// Records the keys this set wins that another set owns (plan rule 2).
/// Needs no cloud call, so paused and stalled sets take keys over too, and a
/// deletion waiting to hand a key over is never stuck behind them.
fn inherit<K: LabelSetResource>(w: &mut StatusWriter<'_, K>, set: &ResolvedSet, ctx: &Ctx) -> bool {
    let object = set.object_key();
    if set.policy.mode != Mode::Sync
        || w.status
            .target
            .as_ref()
            .is_some_and(|t| *t != set.target_key())
    {
        return false;
    }
    let id = w.obj.set_id();
    let owned: BTreeSet<String> = w.status.owned_keys.iter().cloned().collect();
    let claims = ctx.index.claims(&object, &id);
    let new = plan::inherited(&id, &set.desired, &set.protected, &owned, &claims);
    if new.is_empty() {
        return false;
    }
    info!(set = %set_key(w.obj), keys = ?new, "owning keys another set owns and this one wins");
    w.status.owned_keys = owned
        .into_iter()
        .chain(new)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    true
}

fn describe(report: &SyncReport) -> String {
    let mut parts = Vec::new();
    for (k, v) in &report.plan.add {
        match report.observed.get(k) {
            Some(old) => parts.push(format!("{k}: {old:?} -> {v:?}")),
            None => parts.push(format!("+{k}={v:?}")),
        }
    }
    parts.extend(report.plan.remove.iter().map(|k| format!("-{k}")));
    parts.join(", ")
}

/// The status a successful pass leaves (all but `lastSyncTime`), and the
/// reconcile result it counts as.
fn settle(
    status: &mut LabelSetStatus,
    generation: Option<i64>,
    set: &ResolvedSet,
    report: &SyncReport,
) -> &'static str {
    let plan = &report.plan;
    status.owned_keys = report.owned.iter().cloned().collect();
    status.conflicts = plan
        .conflicts
        .iter()
        .map(|c| ConflictEntry {
            key: c.key.clone(),
            value: c.ours.clone(),
            winner: c.winner.name.clone(),
            winner_value: c.theirs.clone(),
        })
        .collect();
    status.drift = if set.policy.mode == Mode::Observe {
        plan.drift
            .iter()
            .map(|d| DriftEntry {
                key: d.key.clone(),
                desired: d.desired.clone(),
                actual: d.actual.clone(),
            })
            .collect()
    } else {
        vec![]
    };
    status.label_count = Some(report.labels_after.len() as i64);
    status.synced_generation = generation;
    if let Some(id) = report
        .applied
        .as_ref()
        .and_then(|a| a.last_request_id.clone())
    {
        status.last_request_id = Some(id);
    }

    let (ready, stalled, result) = if !status.conflicts.is_empty() {
        let msg = status
            .conflicts
            .iter()
            .map(|c| {
                format!(
                    "{} is declared by older set {} as {:?}",
                    c.key, c.winner, c.winner_value
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        (
            (false, reason::KEY_CONFLICT, msg.clone()),
            Some((reason::KEY_CONFLICT, msg)),
            "stalled",
        )
    } else if !status.fights.is_empty() {
        let msg = status
            .fights
            .iter()
            .map(|f| {
                format!(
                    "{} keeps being changed out of band (last seen {:?})",
                    f.key, f.last_seen
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        (
            (false, reason::FIGHT_DETECTED, msg.clone()),
            Some((reason::FIGHT_DETECTED, msg)),
            "stalled",
        )
    } else if !status.drift.is_empty() {
        // Observe has done its job: Ready=True (kstatus Current, Argo CD
        // Healthy) with the reason and the Drifted condition saying what differs.
        (
            (
                true,
                reason::DRIFT_DETECTED,
                format!(
                    "{} keys differ (mode Observe: not changed)",
                    status.drift.len()
                ),
            ),
            None,
            "success",
        )
    } else {
        (
            (
                true,
                reason::IN_SYNC,
                format!("{} labels match the spec", set.desired.len()),
            ),
            None,
            "success",
        )
    };
    set_conditions(status, generation, ready, None, stalled);
    status.observed_generation = generation;
    result
}

/// Whether a settled status says nothing new: equal to the set's status as
/// the watch has it and to what this process last wrote (the watch may lag).
fn unchanged<K: LabelSetResource>(obj: &K, ctx: &Ctx, status: &LabelSetStatus) -> bool {
    let Some(current) = obj.status() else {
        return false;
    };
    if !same_status(current, status) {
        return false;
    }
    let hash = status_hash(status);
    obj.meta().uid.as_deref().is_none_or(|uid| {
        ctx.written_status
            .lock()
            .expect("written status poisoned")
            .get(uid)
            .is_none_or(|h| *h == hash)
    })
}

/// Writes the outcome of a successful pass, unless it found nothing new: a
/// pass that changed no label and leaves the status as it was writes
/// nothing (`lastSyncTime` stays). Returns whether it wrote.
async fn finish<K: LabelSetResource>(
    mut w: StatusWriter<'_, K>,
    ctx: &Ctx,
    obj: &K,
    set: &ResolvedSet,
    report: &SyncReport,
    repaired: bool,
) -> Result<bool, Error> {
    let key = set_key(obj);
    let plan = &report.plan;
    let result = settle(&mut w.status, w.generation, set, report);
    let quiet = report.applied.is_none() && unchanged(obj, ctx, &w.status);
    if !quiet {
        w.status.last_sync_time = Some(
            jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_else(|_| jiff::Timestamp::now())
                .to_string(),
        );
        w.write().await?;
    }

    ctx.record_counts(
        &key,
        K::KIND,
        Some((report.owned.len(), plan.conflicts.len())),
    );
    count::<K>(ctx, result);

    if let Some(applied) = &report.applied {
        let what = describe(report);
        let rid = applied.last_request_id.clone().unwrap_or_default();
        let reason_ = if repaired {
            "DriftRepaired"
        } else {
            "LabelsApplied"
        };
        info!(set = %key, target = %set.target, changes = %what, request_id = %rid, "labels applied");
        event(
            ctx,
            obj,
            EventType::Normal,
            reason_,
            format!("{what} on {} (RequestId {rid})", set.target),
        )
        .await;
    }
    Ok(!quiet)
}

/// Stalled on a spec the operator will not act on; waits for the next edit.
async fn invalid_spec<K: LabelSetResource>(
    mut w: StatusWriter<'_, K>,
    ctx: &Ctx,
    obj: &K,
    msg: String,
) -> Result<Action, Error> {
    wake_others::<K>(ctx.index.remove(&set_key(obj)), ctx);
    w.conditions(
        (false, reason::INVALID_SPEC, msg.clone()),
        None,
        Some((reason::INVALID_SPEC, msg.clone())),
    );
    w.write().await?;
    event(ctx, obj, EventType::Warning, reason::INVALID_SPEC, msg).await;
    count::<K>(ctx, "stalled");
    Ok(Action::await_change())
}

/// A transient failure: say so in status and let the error policy back off.
async fn backing_off<K: LabelSetResource>(
    mut w: StatusWriter<'_, K>,
    msg: String,
) -> Result<Action, Error> {
    w.conditions(
        (false, reason::BACKING_OFF, msg.clone()),
        Some((reason::BACKING_OFF, msg.clone())),
        None,
    );
    w.write().await?;
    Err(Error::Transient(msg))
}

async fn stall<K: LabelSetResource>(
    mut w: StatusWriter<'_, K>,
    ctx: &Ctx,
    obj: &K,
    reason_: &str,
    msg: String,
    set: &ResolvedSet,
) -> Result<Action, Error> {
    warn!(set = %set_key(obj), reason = reason_, message = %msg, "stalled");
    let changed = w
        .status
        .condition(STALLED)
        .is_none_or(|c| c.reason != reason_ || c.message != msg || c.status != "True");
    w.conditions(
        (false, reason_, msg.clone()),
        None,
        Some((reason_, msg.clone())),
    );
    w.write().await?;
    if changed {
        event(ctx, obj, EventType::Warning, reason_, msg).await;
    }
    count::<K>(ctx, "stalled");
    // Needs a person: no cloud call until the spec or Secret changes (or the
    // slow recheck is due), whatever the resync interval.
    let fingerprint = w.stall_fingerprint.take().unwrap_or_default();
    ctx.mark_stalled(&set_key(obj), fingerprint);
    let left = ctx.config.stalled_recheck;
    Ok(Action::requeue(held_requeue(set, left, ctx)))
}

async fn failed<K: LabelSetResource>(
    w: StatusWriter<'_, K>,
    ctx: &Ctx,
    obj: &K,
    e: SyncError,
    set: &ResolvedSet,
) -> Result<Action, Error> {
    match &e {
        SyncError::Limit(l) => stall(w, ctx, obj, reason::LIMIT_EXCEEDED, l.0.clone(), set).await,
        SyncError::Ownership(m) => Err(Error::Transient(format!("recording ownership: {m}"))),
        SyncError::Observe(c) | SyncError::Write(c) => match stall_reason(c.kind) {
            Some(r) => stall(w, ctx, obj, r, e.to_string(), set).await,
            None => backing_off(w, e.to_string()).await,
        },
    }
}

/// Deletion cannot finish yet: say why on the resource, and how to let go.
async fn cleanup_blocked<K: LabelSetResource>(
    ctx: &Ctx,
    obj: &K,
    reason_: &str,
    msg: String,
) -> Error {
    let msg = format!(
        "deletion waits: {msg}; to delete without touching labels, set spec.deletionPolicy: Orphan \
         or annotation {PAUSED}=\"true\""
    );
    let mut w = StatusWriter::new(obj, ctx);
    let changed = w
        .status
        .condition(STALLED)
        .is_none_or(|c| c.reason != reason_ || c.message != msg);
    w.conditions(
        (false, reason_, msg.clone()),
        Some((reason::DELETING, msg.clone())),
        Some((reason_, msg.clone())),
    );
    if let Err(e) = w.write().await {
        warn!(set = %set_key(obj), error = %e, "could not write status while deleting");
    }
    if changed {
        event(ctx, obj, EventType::Warning, reason_, msg.clone()).await;
    }
    Error::Transient(msg)
}

async fn cleanup<K: LabelSetResource>(obj: Arc<K>, ctx: &Ctx) -> Result<Action, Error> {
    let key = set_key(&*obj);
    // Indexed as deleting (no longer a contender) until the cleanup is done.
    wake_others::<K>(index_claim(&*obj, ctx), ctx);
    super::sweep::forget_state::<K>(ctx, &key);
    let release = || {
        ctx.forget_owned(obj.meta().uid.as_deref());
        wake_others::<K>(ctx.index.remove(&key), ctx);
        Ok(Action::await_change())
    };
    // A set whose spec no longer names where its keys are must not touch
    // either object: it lets go and says what it left behind.
    let (set, left_in_place) = match obj.resolve(&ctx.config.default_region) {
        Err(errors) => {
            let why = errors.iter().map(ToString::to_string).collect::<Vec<_>>();
            (
                None,
                Some(format!("deleted with an invalid spec ({})", why.join("; "))),
            )
        }
        Ok(set) => {
            let moved = obj
                .status()
                .and_then(|s| s.target.clone())
                .filter(|was| *was != set.target_key())
                .map(|was| {
                    format!(
                        "owned keys live on {was} but the spec names {}",
                        set.target_key()
                    )
                });
            (Some(set), moved)
        }
    };
    let owned = owned_keys_of(&*obj, ctx);
    let Some(set) = set.filter(|_| left_in_place.is_none()) else {
        if let Some(why) = left_in_place
            && !owned.is_empty()
        {
            let note = format!("{why}: owned keys {owned:?} left in place");
            event(ctx, &*obj, EventType::Warning, reason::INVALID_SPEC, note).await;
        }
        return release();
    };
    let paused = obj.annotations().get(PAUSED).map(String::as_str) == Some("true");
    if plan::on_deletion(set.policy.deletion_policy, set.policy.mode, paused) == OnDeletion::Leave {
        if paused {
            event(
                ctx,
                &*obj,
                EventType::Normal,
                reason::PAUSED,
                "deleted while paused: labels left in place".into(),
            )
            .await;
        }
        return release();
    }
    let owned: BTreeSet<String> = owned.into_iter().collect();
    if owned.is_empty() {
        return release();
    }
    let secret = match secret_data(&*obj, &set, ctx).await {
        Ok(s) => s,
        Err(SecretError::Stall(m)) => {
            return Err(cleanup_blocked(ctx, &*obj, reason::INVALID_CREDENTIALS, m).await);
        }
        Err(e) => return Err(Error::Transient(e.message())),
    };
    let provider = match provider_for(&set, secret.as_ref(), ctx) {
        Ok(p) => p,
        Err(m) => return Err(cleanup_blocked(ctx, &*obj, reason::INVALID_CREDENTIALS, m).await),
    };
    let id = obj.set_id();
    let claims = ctx.index.claims(&set.object_key(), &id);
    let held = BTreeSet::new();
    let req = SyncRequest {
        set: &set,
        id: &id,
        owned: &owned,
        claims: &claims,
        held: &held,
        deleting: Some(DeletionPolicy::Delete),
        dry_run: false,
    };
    let report = match observe_and_plan(provider.as_ref(), &req).await {
        Ok(r) => r,
        Err((_, SyncError::Observe(e))) if e.kind == ErrorKind::NotFound => return release(),
        Err((_, e)) => return Err(cleanup_failed(ctx, &*obj, e).await),
    };
    let report = match carry_out(provider.as_ref(), &set, report, |_| async { Ok(()) }).await {
        Ok(r) => r,
        Err((_, e)) => return Err(cleanup_failed(ctx, &*obj, e).await),
    };
    let pending = &report.plan.pending_handover;
    if !pending.is_empty() {
        return Err(handing_over(ctx, &*obj, &claims, pending).await);
    }
    if !report.plan.remove.is_empty() {
        let rid = report
            .applied
            .as_ref()
            .and_then(|a| a.last_request_id.clone())
            .unwrap_or_default();
        event(
            ctx,
            &*obj,
            EventType::Normal,
            "LabelsRemoved",
            format!(
                "removed owned keys {:?} from {} on deletion (RequestId {rid})",
                report.plan.remove, set.target
            ),
        )
        .await;
    }
    release()
}

/// Deletion leaves keys for contenders that do not own them yet: wake them
/// (they take the keys over without a cloud call) and look again when their
/// status changes. Until then this set stays, so the keys stay answered for.
async fn handing_over<K: LabelSetResource>(
    ctx: &Ctx,
    obj: &K,
    claims: &[plan::Claim],
    pending: &BTreeSet<String>,
) -> Error {
    let heirs: Vec<plan::SetId> = claims
        .iter()
        .filter(|c| c.role == Role::Sync && pending.iter().any(|k| c.labels.contains_key(k)))
        .map(|c| c.set.clone())
        .collect();
    let names: Vec<&str> = heirs.iter().map(|h| h.name.as_str()).collect();
    let msg = format!(
        "deletion waits for {} to take over keys {pending:?} they declare",
        names.join(", ")
    );
    wake_others::<K>(heirs, ctx);
    let mut w = StatusWriter::new(obj, ctx);
    w.conditions(
        (false, reason::HANDING_OVER, msg.clone()),
        Some((reason::HANDING_OVER, msg.clone())),
        None,
    );
    if let Err(e) = w.write().await {
        warn!(set = %set_key(obj), error = %e, "could not write status while deleting");
    }
    Error::Transient(msg)
}

/// A cloud failure while deleting: terminal ones block visibly, others retry.
async fn cleanup_failed<K: LabelSetResource>(ctx: &Ctx, obj: &K, e: SyncError) -> Error {
    let reason_ = match &e {
        SyncError::Observe(c) | SyncError::Write(c) => stall_reason(c.kind),
        SyncError::Limit(_) | SyncError::Ownership(_) => None,
    };
    match reason_ {
        Some(r) => cleanup_blocked(ctx, obj, r, e.to_string()).await,
        None => Error::Transient(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At start-up every set of the cluster is a reconcile waiting for a
    /// slot at once; 10,000 of them must not cost more than a few MiB.
    #[tokio::test]
    async fn a_reconcile_waiting_for_a_slot_is_small() {
        let (store, _writer) = kube::runtime::reflector::store();
        let ctx = Arc::new(super::super::context::offline_ctx(store));
        let mut set = crate::api::ImageLabelSet::new("s", Default::default());
        set.metadata.namespace = Some("ns".into());
        let set = Arc::new(set);
        let waiting = reconcile(set.clone(), ctx.clone());
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

    /// A second pass over an unchanged cloud leaves a status equal to the
    /// first but for `lastSyncTime`: the pass writes nothing.
    #[test]
    fn a_steady_pass_settles_on_the_same_status() {
        let spec = crate::api::ImageLabelSetSpec {
            image_id: "image-1".into(),
            labels: [("system.framework".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let set = crate::engine::resolve_image(&spec, "cn-shanghai").unwrap();
        let labels: crate::provider::Labels = [
            ("system.framework".to_string(), "1".to_string()),
            ("other".to_string(), "x".to_string()),
        ]
        .into();
        let report = SyncReport {
            observed: labels.clone(),
            labels_after: labels,
            owned: ["system.framework".to_string()].into(),
            ..Default::default()
        };
        let report = SyncReport {
            plan: crate::plan::Plan {
                owned_after: report.owned.clone(),
                ..Default::default()
            },
            ..report
        };
        let mut first = LabelSetStatus::default();
        settle(&mut first, Some(2), &set, &report);
        first.last_sync_time = Some("2026-01-01T00:00:00Z".into());
        let mut second = first.clone();
        std::thread::sleep(Duration::from_millis(1100));
        settle(&mut second, Some(2), &set, &report);
        assert!(same_status(&first, &second), "{first:?}\n{second:?}");
        assert_eq!(status_hash(&first), status_hash(&second));

        // One more unmanaged label on the image: the count changes, so it writes.
        let mut more = report.clone();
        more.labels_after.insert("new".into(), "y".into());
        let mut third = first.clone();
        settle(&mut third, Some(2), &set, &more);
        assert!(!same_status(&first, &third));
        // A new generation confirmed: writes.
        let mut fourth = first.clone();
        settle(&mut fourth, Some(3), &set, &report);
        assert!(!same_status(&first, &fourth));
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("ααα", 3), "α…");
        assert_eq!(truncate("abc", 3), "abc");
        let huge = "é".repeat(1 << 20);
        let t = truncate(&huge, MAX_STATUS_MESSAGE);
        assert!(
            t.len() <= MAX_STATUS_MESSAGE + '…'.len_utf8(),
            "{}",
            t.len()
        );
        assert!(t.ends_with('…'));
    }
}
