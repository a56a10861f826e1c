//! A reconcile of a live set: pause, validation, credentials, plan, fight
//! holds, write-ahead ownership, writes, status and events. The decisions
//! are in [`super::status`] and [`super::holds`]; this is the I/O around them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{info, warn};

use super::claims::{index_claim, wake_others};
use super::context::Ctx;
use super::credentials::{SecretError, SecretRead, provider_for, secret_data};
use super::events::EventType;
use super::holds;
use super::metrics::{Metrics, ReconcileLabels};
use super::reconcile::{Error, PAUSED, RECONCILE_REQUESTED_AT, jittered, resync_of, set_key};
use super::resource::LabelSetResource;
use super::status::{self, OnFailure, Verdict, describe, settle};
use super::status_writer::{StatusWriter, count, event};
use super::workspace_check::{Batch, batch_of, quiet_from_snapshot};
use crate::api::Mode;
use crate::api::status::reason;
use crate::engine::{
    ResolvedSet, SyncError, SyncReport, SyncRequest, carry_out, observe_and_plan, plan_for,
};
use crate::plan;
use crate::provider::LabelProvider;

pub fn is_paused<K: LabelSetResource>(obj: &K) -> bool {
    obj.annotations().get(PAUSED).map(String::as_str) == Some("true")
}

pub async fn apply<K: LabelSetResource>(
    obj: Arc<K>,
    ctx: &Ctx,
    check: bool,
) -> Result<Action, Error> {
    let mut w = StatusWriter::new(&*obj, ctx);
    if is_paused(&*obj) {
        return paused(w).await;
    }
    let set = match resolve_target(&mut w) {
        Ok(set) => set,
        Err(msg) => return invalid_spec(w, msg).await,
    };
    claim(&mut w, &set).await?;
    match access(&mut w, &set).await {
        Access::Ready(provider, secret) => {
            sync(w, &set, provider.as_ref(), secret.as_ref(), check).await
        }
        Access::Held(after) => Ok(w.ctx.again(&set_key(&*obj), after)),
        Access::Refused(why, msg) => stall(w, why, msg, &set).await,
        Access::Unreadable(e) => backing_off(w, Error::Secret(e)).await,
    }
}

/// Paused: keys won from other sets are still taken over (no cloud call).
async fn paused<K: LabelSetResource>(mut w: StatusWriter<'_, K>) -> Result<Action, Error> {
    if let Ok(set) = w.obj.resolve(&w.ctx.config.default_region) {
        inherit(&mut w, &set);
    }
    let verdict = status::paused(PAUSED);
    w.conditions(&verdict);
    w.write().await?;
    count::<K>(w.ctx, verdict.result());
    Ok(Action::await_change())
}

/// The validated spec, with `status.target` set; `Err`: why the spec cannot be acted on.
fn resolve_target<K: LabelSetResource>(w: &mut StatusWriter<'_, K>) -> Result<ResolvedSet, String> {
    let set = w
        .obj
        .resolve(&w.ctx.config.default_region)
        .map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
    let object = set.target_key();
    if let Some(msg) = status::target_moved(&w.status, &object) {
        return Err(msg);
    }
    w.status.target = Some(object);
    Ok(set)
}

/// Indexes the set's claim, takes over keys it wins, and forgets fight
/// history on a spec change or an explicit resume.
async fn claim<K: LabelSetResource>(
    w: &mut StatusWriter<'_, K>,
    set: &ResolvedSet,
) -> Result<(), Error> {
    let (obj, ctx) = (w.obj, w.ctx);
    wake_others::<K>(index_claim(obj, ctx), ctx);
    if inherit(w, set) {
        // Recorded now: a stalled set may return below without a status write.
        w.write().await?;
    }
    let resume = obj.annotations().get(RECONCILE_REQUESTED_AT).cloned();
    let reset = holds::fights_reset(
        w.status.observed_generation,
        w.generation,
        w.status.last_handled_reconcile_at.as_ref(),
        resume.as_ref(),
    );
    if reset {
        ctx.fights.reset(&set_key(obj));
        w.status.fights.clear();
    }
    w.status.last_handled_reconcile_at = resume;
    Ok(())
}

enum Access {
    Ready(Arc<dyn LabelProvider>, Option<SecretRead>),
    /// Stalled on exactly this before: no cloud call until the requeue.
    Held(Duration),
    /// No usable credentials or client, with the reason: a person has to act.
    Refused(&'static str, String),
    /// The API server did not answer the Secret read.
    Unreadable(SecretError),
}

/// The set's credentials and cloud client, unless a stall holds it: a
/// terminal error is not retried until what it depends on changes.
async fn access<K: LabelSetResource>(w: &mut StatusWriter<'_, K>, set: &ResolvedSet) -> Access {
    let (obj, ctx) = (w.obj, w.ctx);
    let key = set_key(obj);
    let (secret, version) = match secret_data(obj, set, ctx).await {
        Ok(s) => {
            let version = s.as_ref().map(|s| s.version.clone());
            (Ok(s), version)
        }
        Err(SecretError::Stall(msg)) => (Err(msg), Some(holds::UNREADABLE_SECRET.to_string())),
        Err(e) => return Access::Unreadable(e),
    };
    let resume = obj.annotations().get(RECONCILE_REQUESTED_AT);
    let fingerprint = holds::stall_fingerprint(obj.meta().generation, resume, version.as_deref());
    if let Some(left) = ctx.stall_hold(&key, &fingerprint) {
        tracing::debug!(set = %key, "stalled; spec and Secret unchanged, no cloud call");
        return Access::Held(held_requeue(set, left, ctx));
    }
    w.stall_fingerprint = Some(fingerprint);
    let secret = match secret {
        Ok(s) => s,
        Err(msg) => return Access::Refused(reason::INVALID_CREDENTIALS, msg),
    };
    match provider_for(set, secret.as_ref(), ctx) {
        Ok(p) => Access::Ready(p, secret),
        Err(e) => Access::Refused(status::access_refused(&e), e.to_string()),
    }
}

/// When a held stall looks again.
fn held_requeue(set: &ResolvedSet, left: Duration, ctx: &Ctx) -> Duration {
    let poll = set
        .policy
        .credentials_ref
        .is_some()
        .then(|| jittered(ctx.config.secret_poll));
    holds::held_requeue(left, poll)
}

/// Observes, plans and writes the labels, then the status.
async fn sync<K: LabelSetResource>(
    mut w: StatusWriter<'_, K>,
    set: &ResolvedSet,
    provider: &dyn LabelProvider,
    secret: Option<&SecretRead>,
    check: bool,
) -> Result<Action, Error> {
    let (obj, ctx) = (w.obj, w.ctx);
    let resync = resync_of(set.policy.resync_interval.as_deref(), ctx);
    let id = obj.set_id();
    let owned: BTreeSet<String> = w.status.owned_keys.iter().cloned().collect();
    let held: BTreeSet<String> = w.status.fights.iter().map(|f| f.key.clone()).collect();
    let claims = ctx.index.claims(&set.object_key(), &id);
    let req = SyncRequest {
        set,
        id: &id,
        owned: &owned,
        claims: &claims,
        held: &held,
        deleting: None,
        dry_run: false,
    };
    let batch = batch_of(obj, set, secret);
    if check
        && let Some(batch) = &batch
        && let Some(requeue) = quiet_from_snapshot(&w, set, &req, provider, batch, resync).await
    {
        return Ok(requeue);
    }
    // A drift check reads on the smaller share of the cloud budget, so
    // changes never queue behind a large periodic pass.
    let observed = if check {
        crate::provider::limiter::as_check(observe_and_plan(provider, &req)).await
    } else {
        observe_and_plan(provider, &req).await
    };
    let mut report = match observed {
        Ok(r) => r,
        Err((_, e)) => return failed(w, e, set).await,
    };
    let now = Instant::now();
    let drifted = drifted_keys(&w, set, &report);
    hold_fights(&mut w, &req, &drifted, &mut report, now).await;
    if set.policy.mode == Mode::Sync && !report.plan.is_empty() {
        w.conditions(&status::in_progress(!drifted.is_empty(), describe(&report)));
        // Written before the cloud calls, not only with a write-ahead of
        // ownership: a repair or an edit of owned keys would otherwise never
        // show as in progress, and a crash mid-way would leave "InSync".
        w.write().await?;
    }
    let report = match write_labels(&mut w, set, provider, report, batch.as_ref()).await? {
        Ok(r) => r,
        Err(e) => return failed(w, e, set).await,
    };
    let repaired = record_repairs::<K>(ctx, &set_key(obj), &drifted, &report, now);
    let wrote_status = finish(w, set, &report, repaired).await?;
    after_pass(ctx, obj, set, &report, check.then_some(wrote_status)).await;
    Ok(ctx.again(&set_key(obj), jittered(resync)))
}

/// Counts a drift check (`wrote`: whether it found something to write)
/// and says which keys were adopted, once they are recorded in status.
async fn after_pass<K: LabelSetResource>(
    ctx: &Ctx,
    obj: &K,
    set: &ResolvedSet,
    report: &SyncReport,
    check: Option<bool>,
) {
    if let Some(wrote) = check {
        let result = if wrote { "drift" } else { "clean" };
        ctx.metrics
            .drift_checks
            .get_or_create(&ReconcileLabels {
                kind: K::KIND.into(),
                result: result.into(),
            })
            .inc();
    }
    if !report.plan.adopted.is_empty() {
        let keys: Vec<&str> = report.plan.adopted.iter().map(String::as_str).collect();
        let msg = format!(
            "adopted {} on {} (already had the declared values; nothing written)",
            keys.join(", "),
            set.target
        );
        event(ctx, obj, EventType::Normal, "LabelsAdopted", msg).await;
    }
}

/// Drift: keys the cloud changed since a spec generation already synced.
fn drifted_keys<K: LabelSetResource>(
    w: &StatusWriter<'_, K>,
    set: &ResolvedSet,
    report: &SyncReport,
) -> Vec<String> {
    let was_synced = w.generation.is_some() && w.status.synced_generation == w.generation;
    if was_synced && set.policy.mode == Mode::Sync {
        report.plan.changed_keys()
    } else {
        vec![]
    }
}

/// Stops repairing drifted keys something else keeps changing: re-plans
/// without them, records them in status and says so.
async fn hold_fights<K: LabelSetResource>(
    w: &mut StatusWriter<'_, K>,
    req: &SyncRequest<'_>,
    drifted: &[String],
    report: &mut SyncReport,
    now: Instant,
) {
    let (obj, ctx) = (w.obj, w.ctx);
    let key = set_key(obj);
    let fights = holds::new_fights(drifted, &report.observed, ctx.config.fight_threshold, |k| {
        ctx.fights.is_fighting(&key, k, now)
    });
    if fights.is_empty() {
        return;
    }
    let mut held = req.held.clone();
    held.extend(fights.iter().map(|f| f.key.clone()));
    report.plan = plan_for(
        &SyncRequest {
            held: &held,
            ..*req
        },
        &report.observed,
    );
    ctx.metrics
        .fights_detected
        .get_or_create(&Metrics::kind(K::KIND))
        .inc_by(fights.len() as u64);
    for f in &fights {
        let note = holds::fight_note(f, ctx.config.fight_window, RECONCILE_REQUESTED_AT);
        event(ctx, obj, EventType::Warning, reason::FIGHT_DETECTED, note).await;
    }
    w.status.fights.extend(fights);
}

/// Records ownership ahead of the writes, then writes. The outer `Err`: the
/// status write recording ownership was refused (nothing was written).
async fn write_labels<K: LabelSetResource>(
    w: &mut StatusWriter<'_, K>,
    set: &ResolvedSet,
    provider: &dyn LabelProvider,
    report: SyncReport,
    batch: Option<&Batch>,
) -> Result<Result<SyncReport, SyncError>, Error> {
    let (obj, ctx) = (w.obj, w.ctx);
    let mut refused = None;
    let (writer, refusal) = (&mut *w, &mut refused);
    let outcome = carry_out(provider, set, report, |ahead| async move {
        writer.status.owned_keys = ahead.into_iter().collect();
        writer.write().await.map_err(|e| {
            let msg = e.to_string();
            *refusal = Some(e);
            msg
        })
    })
    .await;
    let wrote = match &outcome {
        Ok(r) | Err((r, _)) => r.applied.as_ref().is_some_and(|a| a.calls > 0),
    };
    if wrote && let Some(batch) = batch {
        // A snapshot taken before this write no longer answers for the object.
        ctx.snapshots.written(&batch.key, &batch.id);
    }
    let (r, e) = match outcome {
        Ok(r) => return Ok(Ok(r)),
        Err((_, SyncError::Ownership(_))) if refused.is_some() => {
            return Err(Error::Ownership(refused.expect("checked")));
        }
        Err(failed) => failed,
    };
    // Whatever got written is owned; keep that record.
    w.status.owned_keys = r.owned.iter().cloned().collect();
    if let Some(a) = r.applied.as_ref().filter(|a| a.calls > 0)
        && (!a.added.is_empty() || !a.removed.is_empty())
    {
        let mut done: Vec<String> = a.added.iter().map(|(k, v)| format!("+{k}={v:?}")).collect();
        done.extend(a.removed.iter().map(|k| format!("-{k}")));
        let rid = a.last_request_id.clone().unwrap_or_default();
        let note = format!(
            "{} on {} (RequestId {rid}) before: {e}",
            done.join(", "),
            set.target
        );
        event(ctx, obj, EventType::Warning, "LabelsPartiallyApplied", note).await;
    }
    Ok(Err(e))
}

/// Counts drifted keys the pass wrote back, toward fight detection.
/// Returns whether it repaired any.
fn record_repairs<K: LabelSetResource>(
    ctx: &Ctx,
    key: &str,
    drifted: &[String],
    report: &SyncReport,
    now: Instant,
) -> bool {
    let repaired: Vec<&String> = drifted
        .iter()
        .filter(|k| report.plan.add.contains_key(*k) || report.plan.remove.contains(*k))
        .collect();
    for k in &repaired {
        ctx.fights.record(key, k, now);
    }
    if !repaired.is_empty() {
        ctx.metrics
            .drift_repaired
            .get_or_create(&Metrics::kind(K::KIND))
            .inc_by(repaired.len() as u64);
    }
    !repaired.is_empty()
}

/// Writes the outcome of a successful pass, unless it found nothing new: a
/// pass that changed no label and leaves the status as it was writes
/// nothing (`lastSyncTime` stays). Returns whether it wrote.
async fn finish<K: LabelSetResource>(
    mut w: StatusWriter<'_, K>,
    set: &ResolvedSet,
    report: &SyncReport,
    repaired: bool,
) -> Result<bool, Error> {
    let (obj, ctx) = (w.obj, w.ctx);
    let key = set_key(obj);
    let result = settle(&mut w.status, w.generation, set, report);
    let quiet = report.applied.is_none() && w.unchanged(&w.status);
    if !quiet {
        w.status.last_sync_time = Some(
            jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_else(|_| jiff::Timestamp::now())
                .to_string(),
        );
        w.write().await?;
    }
    let counts = (report.owned.len(), report.plan.conflicts.len());
    ctx.record_counts(&key, K::KIND, Some(counts));
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
        let note = format!("{what} on {} (RequestId {rid})", set.target);
        event(ctx, obj, EventType::Normal, reason_, note).await;
    }
    Ok(!quiet)
}

/// Stalled on a spec the operator will not act on; waits for the next edit.
async fn invalid_spec<K: LabelSetResource>(
    mut w: StatusWriter<'_, K>,
    msg: String,
) -> Result<Action, Error> {
    let (obj, ctx) = (w.obj, w.ctx);
    wake_others::<K>(ctx.index.remove(&set_key(obj)), ctx);
    let verdict = status::invalid_spec(msg.clone());
    w.conditions(&verdict);
    w.write().await?;
    event(ctx, obj, EventType::Warning, reason::INVALID_SPEC, msg).await;
    count::<K>(ctx, verdict.result());
    Ok(Action::await_change())
}

/// A transient failure: say so in status and let the error policy back off.
async fn backing_off<K: LabelSetResource>(
    mut w: StatusWriter<'_, K>,
    error: Error,
) -> Result<Action, Error> {
    w.conditions(&status::backing_off(error.to_string()));
    w.write().await?;
    Err(error)
}

async fn stall<K: LabelSetResource>(
    mut w: StatusWriter<'_, K>,
    reason_: &'static str,
    msg: String,
    set: &ResolvedSet,
) -> Result<Action, Error> {
    let (obj, ctx) = (w.obj, w.ctx);
    warn!(set = %set_key(obj), reason = reason_, message = %msg, "stalled");
    let news = status::stall_is_news(&w.status, reason_, &msg, true);
    let verdict: Verdict = status::stalled(reason_, msg.clone());
    w.conditions(&verdict);
    w.write().await?;
    if news {
        event(ctx, obj, EventType::Warning, reason_, msg).await;
    }
    count::<K>(ctx, verdict.result());
    // Needs a person: no cloud call until the spec or Secret changes (or the
    // slow recheck is due), whatever the resync interval.
    let fingerprint = w.stall_fingerprint.take().unwrap_or_default();
    ctx.mark_stalled(&set_key(obj), fingerprint);
    let left = ctx.config.stalled_recheck;
    Ok(ctx.again(&set_key(obj), held_requeue(set, left, ctx)))
}

async fn failed<K: LabelSetResource>(
    w: StatusWriter<'_, K>,
    e: SyncError,
    set: &ResolvedSet,
) -> Result<Action, Error> {
    match status::on_failure(&e) {
        OnFailure::Stall(r) => stall(w, r, e.to_string(), set).await,
        OnFailure::BackOff => backing_off(w, Error::Cloud(e)).await,
        OnFailure::Retry => Err(Error::Cloud(e)),
    }
}

/// Records the keys this set wins that another set owns (plan rule 2).
/// Needs no cloud call, so paused and stalled sets take keys over too, and a
/// deletion waiting to hand a key over is never stuck behind them.
fn inherit<K: LabelSetResource>(w: &mut StatusWriter<'_, K>, set: &ResolvedSet) -> bool {
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
    let claims = w.ctx.index.claims(&object, &id);
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
