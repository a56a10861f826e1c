//! A reconcile of a set being deleted: remove the keys it owns (or leave
//! them, as its deletion policy says), hand keys over to the sets that win
//! them, then let the finalizer go.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::runtime::controller::Action;
use tracing::warn;

use super::apply::is_paused;
use super::claims::{index_claim, owned_keys_of, wake_others};
use super::context::Ctx;
use super::credentials::{SecretError, provider_for, secret_data};
use super::events::EventType;
use super::reconcile::{Error, PAUSED, set_key};
use super::resource::LabelSetResource;
use super::status::{self, OnFailure};
use super::status_writer::{StatusWriter, event};
use crate::api::DeletionPolicy;
use crate::api::status::reason;
use crate::engine::{ResolvedSet, SyncError, SyncRequest, carry_out, observe_and_plan};
use crate::plan::{self, OnDeletion, Role};
use crate::provider::ErrorKind;

pub async fn cleanup<K: LabelSetResource>(obj: Arc<K>, ctx: &Ctx) -> Result<Action, Error> {
    let obj = &*obj;
    let key = set_key(obj);
    // Indexed as deleting (no longer a contender) until the cleanup is done.
    wake_others::<K>(index_claim(obj, ctx), ctx);
    super::sweep::forget_state::<K>(ctx, &key);
    let owned = owned_keys_of(obj, ctx);
    let set = match target_in_place(obj, ctx) {
        Ok(set) => set,
        Err(why) => {
            if !owned.is_empty() {
                let note = format!("{why}: owned keys {owned:?} left in place");
                event(ctx, obj, EventType::Warning, reason::INVALID_SPEC, note).await;
            }
            return Ok(release(obj, ctx));
        }
    };
    let paused = is_paused(obj);
    if plan::on_deletion(set.policy.deletion_policy, set.policy.mode, paused) == OnDeletion::Leave {
        if paused {
            let note = "deleted while paused: labels left in place".to_string();
            event(ctx, obj, EventType::Normal, reason::PAUSED, note).await;
        }
        return Ok(release(obj, ctx));
    }
    let owned: BTreeSet<String> = owned.into_iter().collect();
    if owned.is_empty() {
        return Ok(release(obj, ctx));
    }
    remove_owned(obj, ctx, &set, &owned).await
}

/// The set's spec, unless it no longer names where its keys are: then
/// the set must not touch either object, and lets go saying why.
fn target_in_place<K: LabelSetResource>(obj: &K, ctx: &Ctx) -> Result<ResolvedSet, String> {
    let set = obj.resolve(&ctx.config.default_region).map_err(|errors| {
        let why = errors.iter().map(ToString::to_string).collect::<Vec<_>>();
        format!("deleted with an invalid spec ({})", why.join("; "))
    })?;
    match obj.status().and_then(|s| s.target.as_deref()) {
        Some(was) if was != set.target_key() => Err(format!(
            "owned keys live on {was} but the spec names {}",
            set.target_key()
        )),
        _ => Ok(set),
    }
}

/// Cleanup is done: forget the set and wake the sets it shared keys with.
fn release<K: LabelSetResource>(obj: &K, ctx: &Ctx) -> Action {
    ctx.forget_owned(obj.meta().uid.as_deref());
    wake_others::<K>(ctx.index.remove(&set_key(obj)), ctx);
    Action::await_change()
}

/// Removes the owned keys no other set takes over.
async fn remove_owned<K: LabelSetResource>(
    obj: &K,
    ctx: &Ctx,
    set: &ResolvedSet,
    owned: &BTreeSet<String>,
) -> Result<Action, Error> {
    let secret = match secret_data(obj, set, ctx).await {
        Ok(s) => s,
        Err(SecretError::Stall(m)) => {
            return Err(blocked(ctx, obj, reason::INVALID_CREDENTIALS, m).await);
        }
        Err(e) => return Err(Error::Secret(e)),
    };
    let provider = match provider_for(set, secret.as_ref(), ctx) {
        Ok(p) => p,
        Err(e) => {
            let why = status::access_refused(&e);
            return Err(blocked(ctx, obj, why, e.to_string()).await);
        }
    };
    let id = obj.set_id();
    let claims = ctx.index.claims(&set.object_key(), &id);
    let held = BTreeSet::new();
    let req = SyncRequest {
        set,
        id: &id,
        owned,
        claims: &claims,
        held: &held,
        deleting: Some(DeletionPolicy::Delete),
        dry_run: false,
    };
    let report = match observe_and_plan(provider.as_ref(), &req).await {
        Ok(r) => r,
        Err((_, SyncError::Observe(e))) if e.kind == ErrorKind::NotFound => {
            return Ok(release(obj, ctx));
        }
        Err((_, e)) => return Err(failed(ctx, obj, e).await),
    };
    let report = match carry_out(provider.as_ref(), set, report, |_| async { Ok(()) }).await {
        Ok(r) => r,
        Err((_, e)) => return Err(failed(ctx, obj, e).await),
    };
    let pending = &report.plan.pending_handover;
    if !pending.is_empty() {
        return Err(handing_over(ctx, obj, &claims, pending).await);
    }
    if !report.plan.remove.is_empty() {
        let rid = report
            .applied
            .as_ref()
            .and_then(|a| a.last_request_id.clone())
            .unwrap_or_default();
        let note = format!(
            "removed owned keys {:?} from {} on deletion (RequestId {rid})",
            report.plan.remove, set.target
        );
        event(ctx, obj, EventType::Normal, "LabelsRemoved", note).await;
    }
    Ok(release(obj, ctx))
}

/// Deletion cannot finish yet: say why on the resource, and how to let go.
async fn blocked<K: LabelSetResource>(
    ctx: &Ctx,
    obj: &K,
    reason_: &'static str,
    msg: String,
) -> Error {
    let verdict = status::deletion_blocked(reason_, &msg, PAUSED);
    let mut w = StatusWriter::new(obj, ctx);
    let news = status::stall_is_news(&w.status, reason_, &verdict.message, false);
    w.conditions(&verdict);
    if let Err(e) = w.write().await {
        warn!(set = %set_key(obj), error = %e, "could not write status while deleting");
    }
    if news {
        let note = verdict.message.clone();
        event(ctx, obj, EventType::Warning, reason_, note).await;
    }
    Error::DeletionBlocked {
        reason: reason_,
        message: verdict.message,
    }
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
    let verdict = status::handing_over(&names, pending);
    wake_others::<K>(heirs, ctx);
    let mut w = StatusWriter::new(obj, ctx);
    w.conditions(&verdict);
    if let Err(e) = w.write().await {
        warn!(set = %set_key(obj), error = %e, "could not write status while deleting");
    }
    Error::HandingOver(verdict.message)
}

/// A cloud failure while deleting: terminal ones block visibly, others retry.
async fn failed<K: LabelSetResource>(ctx: &Ctx, obj: &K, e: SyncError) -> Error {
    match (&e, status::on_failure(&e)) {
        (SyncError::Observe(_) | SyncError::Write(_), OnFailure::Stall(r)) => {
            blocked(ctx, obj, r, e.to_string()).await
        }
        _ => Error::Cloud(e),
    }
}
