//! Writes a set's status, publishes its events and counts its reconciles.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tracing::warn;

use super::claims::owned_keys_of;
use super::context::Ctx;
use super::events::EventType;
use super::metrics::ReconcileLabels;
use super::reconcile::{FIELD_MANAGER, set_key};
use super::resource::LabelSetResource;
use super::status::{self, MAX_EVENT_NOTE, Verdict};
use crate::api::LabelSetStatus;

/// A set's status as a pass builds it, and what writing it needs.
pub struct StatusWriter<'a, K: LabelSetResource> {
    pub obj: &'a K,
    pub ctx: &'a Ctx,
    pub generation: Option<i64>,
    pub status: LabelSetStatus,
    /// What a stall now would be stalled on (see [`Ctx::stall_hold`]).
    pub stall_fingerprint: Option<String>,
}

impl<'a, K: LabelSetResource> StatusWriter<'a, K> {
    pub fn new(obj: &'a K, ctx: &'a Ctx) -> Self {
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

    pub fn conditions(&mut self, verdict: &Verdict) {
        status::set_conditions(&mut self.status, self.generation, verdict);
    }

    /// Server-side apply of the whole status; the operator owns every field in it.
    pub async fn write(&mut self) -> Result<(), kube::Error> {
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
        if let Some(uid) = self.obj.meta().uid.as_deref() {
            let hash = status::status_hash(&self.status);
            self.ctx
                .written
                .remember(uid, &self.status.owned_keys, hash);
        }
        Ok(())
    }

    /// Whether a settled status says nothing new: equal to the set's status
    /// as the watch has it and to what this process last wrote (the watch may lag).
    pub fn unchanged(&self, status: &LabelSetStatus) -> bool {
        let Some(current) = self.obj.status() else {
            return false;
        };
        if !status::same_status(current, status) {
            return false;
        }
        let hash = status::status_hash(status);
        self.obj
            .meta()
            .uid
            .as_deref()
            .is_none_or(|uid| self.ctx.written.status(uid).is_none_or(|h| h == hash))
    }
}

/// Publishes an event about a set; a failure is logged, never fatal.
pub async fn event<K: LabelSetResource>(
    ctx: &Ctx,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let note = status::truncate(&note, MAX_EVENT_NOTE);
    let regarding = obj.object_ref(&());
    if let Err(e) = ctx
        .events
        .publish(type_, reason, "Reconcile", note, &regarding)
        .await
    {
        warn!(set = %set_key(obj), error = %e, "could not publish event");
    }
}

/// Counts a reconcile of kind `K` with `result` (success, stalled, paused, error).
pub fn count<K: LabelSetResource>(ctx: &Ctx, result: &str) {
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind: K::KIND.into(),
            result: result.into(),
        })
        .inc();
}
