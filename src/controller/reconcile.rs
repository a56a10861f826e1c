//! One reconcile of one set: its slot, the finalizer, then `apply`
//! or `cleanup`; and the backoff of a failed one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use rand::Rng;
use tracing::warn;

use super::apply::apply;
use super::cached::Cached;
use super::claims::prime_index;
use super::cleanup::cleanup;
use super::context::Ctx;
use super::credentials::SecretError;
use super::metrics::{ErrorLabels, Metrics, ReconcileLabels};
use super::resource::LabelSetResource;
use super::spread;
use crate::api::validate::parse_duration;
use crate::engine::SyncError;
use crate::provider::ErrorKind;

pub const FINALIZER: &str = "imagelabel.io/finalizer";
/// Our annotations; the watch caches keep no others.
pub const ANNOTATION_PREFIX: &str = "imagelabel.io/";
pub const PAUSED: &str = "imagelabel.io/paused";
pub const RECONCILE_REQUESTED_AT: &str = "imagelabel.io/reconcile-requested-at";
pub const FIELD_MANAGER: &str = "imagelabel-operator";

/// Why a reconcile failed; each is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A cloud failure worth retrying (throttled, server, network), or one
    /// that stops a deletion without a person to act.
    #[error("{0}")]
    Cloud(#[source] SyncError),
    /// The `credentialsRef` Secret could not be read (not: does not exist).
    #[error("{0}")]
    Secret(#[source] SecretError),
    /// The status write recording ownership ahead of a cloud write was refused.
    #[error("recording ownership: {0}")]
    Ownership(#[source] kube::Error),
    /// A deletion waits for a person (credentials, permissions).
    #[error("{message}")]
    DeletionBlocked {
        reason: &'static str,
        message: String,
    },
    /// A deletion waits for sets that win its keys to own them.
    #[error("{0}")]
    HandingOver(String),
    #[error("finalizer: {0}")]
    Finalizer(#[source] FinalizerError),
}

/// The finalizer could not be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum FinalizerError {
    #[error("failed to add finalizer: {0}")]
    Add(#[source] kube::Error),
    #[error("failed to remove finalizer: {0}")]
    Remove(#[source] kube::Error),
    #[error("object has no name")]
    UnnamedObject,
    #[error("invalid finalizer")]
    Invalid,
}

/// The `error` label values of `imagelabel_reconcile_errors_total`.
pub const ERROR_KINDS: [&str; 13] = [
    "kube",
    "cloud_throttled",
    "cloud_server",
    "cloud_network",
    "cloud_not_found",
    "cloud_access_denied",
    "cloud_unauthenticated",
    "cloud_invalid",
    "limit_exceeded",
    "secret_read",
    "ownership",
    "deletion_blocked",
    "handing_over",
];

impl Error {
    /// The `error` label this error is counted under (one of [`ERROR_KINDS`]
    /// or `finalizer`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Cloud(SyncError::Observe(c) | SyncError::Write(c)) => cloud_kind(c.kind),
            Error::Cloud(SyncError::Limit(_)) => "limit_exceeded",
            Error::Cloud(SyncError::Ownership(_)) | Error::Ownership(_) => "ownership",
            Error::Secret(_) => "secret_read",
            Error::DeletionBlocked { .. } => "deletion_blocked",
            Error::HandingOver(_) => "handing_over",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

fn cloud_kind(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Throttled => "cloud_throttled",
        ErrorKind::Server => "cloud_server",
        ErrorKind::Network => "cloud_network",
        ErrorKind::NotFound => "cloud_not_found",
        ErrorKind::AccessDenied => "cloud_access_denied",
        ErrorKind::Unauthenticated => "cloud_unauthenticated",
        ErrorKind::Invalid => "cloud_invalid",
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as E;
        match e {
            E::ApplyFailed(e) | E::CleanupFailed(e) => e,
            E::AddFinalizer(e) => Error::Finalizer(FinalizerError::Add(e)),
            E::RemoveFinalizer(e) => Error::Finalizer(FinalizerError::Remove(e)),
            E::UnnamedObject => Error::Finalizer(FinalizerError::UnnamedObject),
            E::InvalidFinalizer => Error::Finalizer(FinalizerError::Invalid),
        }
    }
}

/// `Kind/namespace/name`, the set's key in every per-set map.
pub fn set_key<K: LabelSetResource>(obj: &K) -> String {
    key_of(
        K::KIND,
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
    )
}

/// A set key as the per-set maps that never need it back keep it: a hash
/// (8 bytes where the key is ~50 with its allocation, per map and set).
/// Two of 100,000 sets colliding is a one-in-a-billion chance; only maps
/// where that would merge counts or skip a spread use it, never ownership.
pub fn key_hash(key: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// The one place the `Kind/namespace/name` key is spelled.
pub(super) fn key_of(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

/// The entry point the `Controller` calls, with the set as the watch cache
/// keeps it. The set is decoded for the checks below and again once a slot
/// is held: a reconcile waiting for a slot keeps no decoded copy.
pub async fn reconcile<K: LabelSetResource>(
    cached: Arc<Cached<K>>,
    ctx: Arc<Ctx>,
) -> Result<Action, Error> {
    // This pass's result schedules the next one.
    ctx.passes.forget(&cached.key());
    // Not async: nothing it decodes is kept in the waiting future.
    let check = match admit(&cached, &ctx)? {
        Admission::Later(delay) => return Ok(ctx.again(&cached.key(), delay)),
        Admission::Now { check } => check,
    };
    // Drift checks hold at most half the slots, so a change never waits
    // behind a large periodic pass.
    // One budget for both kinds' controllers, which each run their own queue.
    let Some(_slots) = super::context::enter(&ctx.slots, &ctx.check_slots, check).await else {
        // Every check slot is busy: look again shortly rather than hold a
        // place in the runner that a change may need.
        return Ok(ctx.again(&cached.key(), jittered(CHECK_RETRY)));
    };
    let obj = Arc::new(decoded(&cached)?);
    drop(cached);
    // Boxed so that a reconcile waiting for a slot above stays a few hundred
    // bytes: every set of a large cluster waits here at start-up, and the
    // inline pass (finalizer, cloud and API calls) is tens of KB.
    Box::pin(pass(obj, ctx.clone(), check)).await
}

enum Admission {
    /// A settled set's first drift check in this process, spread over the
    /// resync interval.
    Later(Duration),
    /// A pass now; `check`: only a periodic drift check.
    Now { check: bool },
}

fn admit<K: LabelSetResource>(cached: &Cached<K>, ctx: &Ctx) -> Result<Admission, Error> {
    let obj = decoded(cached)?;
    let key = set_key(&obj);
    let check = is_drift_check(&obj, ctx, &key);
    let first = ctx
        .seen
        .lock()
        .expect("seen poisoned")
        .insert(key_hash(&key));
    if first && let Some(delay) = first_check_delay(&obj, ctx, check) {
        tracing::debug!(set = %key, delay_s = delay.as_secs(), "settled; first drift check spread over the resync interval");
        // The gauges a pass would set, from the status, until the first pass.
        if let Some(st) = obj.status() {
            ctx.record_counts(
                &key,
                K::KIND,
                Some((st.owned_keys.len(), st.conflicts.len())),
            );
        }
        return Ok(Admission::Later(delay));
    }
    Ok(Admission::Now { check })
}

/// When a drift check that found every check slot busy looks again: a
/// check takes tens of milliseconds, so slots free up well within this.
const CHECK_RETRY: Duration = Duration::from_millis(500);

/// The CRD's schema makes a set the cache cannot decode a bug; it fails
/// its reconcile (kind `kube`) and backs off rather than stop the process.
fn decoded<K: LabelSetResource>(cached: &Cached<K>) -> Result<K, Error> {
    cached
        .object()
        .map_err(|e| Error::Kube(kube::Error::SerdeError(e)))
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
    .map_err(Error::from);
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
pub fn error_policy<K: LabelSetResource>(
    obj: Arc<Cached<K>>,
    error: &Error,
    ctx: Arc<Ctx>,
) -> Action {
    let key = obj.key();
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
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            kind: K::KIND.into(),
            error: error.kind().into(),
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

pub(super) fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.8..1.2))
}

pub(super) fn resync_of(set_interval: Option<&str>, ctx: &Ctx) -> Duration {
    set_interval
        .and_then(parse_duration)
        .unwrap_or(ctx.config.default_resync)
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
