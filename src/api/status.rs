//! Status shared by both kinds. Conditions follow the Kubernetes API
//! conventions and kstatus (`Ready`, `Reconciling`, `Stalled`), so
//! `kubectl wait --for=condition=Ready`, Flux and Argo CD read them as is.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
/// True while `status.drift` lists keys (mode Observe): drift stays visible
/// when Ready says the set has done its job.
pub const DRIFTED: &str = "Drifted";

/// Reasons the operator writes into conditions and events.
pub mod reason {
    pub const IN_SYNC: &str = "InSync";
    pub const DRIFT_DETECTED: &str = "DriftDetected";
    pub const PAUSED: &str = "Paused";
    pub const APPLYING: &str = "Applying";
    pub const PROGRESSING: &str = "Progressing";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const NOT_FOUND: &str = "NotFound";
    pub const ACCESS_DENIED: &str = "AccessDenied";
    pub const INVALID_CREDENTIALS: &str = "InvalidCredentials";
    pub const KEY_CONFLICT: &str = "KeyConflict";
    pub const FIGHT_DETECTED: &str = "FightDetected";
    pub const LIMIT_EXCEEDED: &str = "LimitExceeded";
    pub const CLOUD_ERROR: &str = "CloudError";
    pub const BACKING_OFF: &str = "BackingOff";
    pub const DELETING: &str = "Deleting";
    /// A deletion waits for a set that wins a key it leaves to own it.
    pub const HANDING_OVER: &str = "HandingOver";
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
/// What the operator last observed and did; written only by the operator.
pub struct LabelSetStatus {
    /// The spec generation this status describes. The CRD defaults it to 0
    /// so a set the operator has not seen yet is not taken as up to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled` (kstatus) and `Drifted`; see the
    /// README's state table for what each reason means.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Keys this set has applied and may remove. Written before the cloud
    /// write that creates a key, so a crash never leaves a key nobody owns.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub owned_keys: Vec<String>,
    /// Keys whose cloud value differs from what the set wants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftEntry>,
    /// Keys this set declares but another, older set wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<ConflictEntry>,
    /// Keys the operator stopped repairing because something keeps changing them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fights: Vec<FightEntry>,
    /// Number of labels on the target after the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_count: Option<i64>,
    /// When a pass last changed something (RFC 3339): wrote labels,
    /// confirmed a new spec generation in the cloud, or changed any other
    /// status field (drift, conflicts, fights, label count, conditions). A
    /// periodic drift check that finds the cloud as recorded writes nothing,
    /// so it does not move this time; such checks are counted in
    /// `imagelabel_drift_checks_total{result="clean"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// The cloud's RequestId of the last write, for support tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request_id: Option<String>,
    /// The generation whose labels were last confirmed in the cloud; a
    /// difference found at that generation is drift, at a newer one an edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_generation: Option<i64>,
    /// The cloud object `ownedKeys` live on (`provider/region/…/id`), so a
    /// changed target never carries ownership to another object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The `imagelabel.io/reconcile-requested-at` value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
/// One condition, following the Kubernetes API conventions.
pub struct Condition {
    /// `Ready`, `Reconciling`, `Stalled` or `Drifted`.
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// The spec generation the condition was written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// One word for the state, e.g. `InSync`, `Applying`, `KeyConflict`.
    pub reason: String,
    /// What happened and, when a person must act, what to do.
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
/// A key whose cloud value differs from the spec.
pub struct DriftEntry {
    /// The label key.
    pub key: String,
    /// What the set wants; absent when the key should be removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<String>,
    /// What the cloud has; absent when the key is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
/// A key another, older set declares with a different value.
pub struct ConflictEntry {
    /// The label key.
    pub key: String,
    /// The value this set declares.
    pub value: String,
    /// `namespace/name` of the set that wins the key.
    pub winner: String,
    /// The value the winner declares.
    pub winner_value: String,
}

impl From<&crate::plan::Conflict> for ConflictEntry {
    fn from(c: &crate::plan::Conflict) -> Self {
        ConflictEntry {
            key: c.key.clone(),
            value: c.ours.clone(),
            winner: c.winner.name.clone(),
            winner_value: c.theirs.clone(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
/// A key the operator stopped repairing.
pub struct FightEntry {
    /// The label key.
    pub key: String,
    /// The last out-of-band value seen (absent when the key was removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// Repairs made within the fight window before the operator stopped.
    pub repairs: u32,
}

impl LabelSetStatus {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    pub fn is_ready(&self) -> bool {
        self.condition(READY).is_some_and(|c| c.status == "True")
    }

    /// Sets a condition, keeping `lastTransitionTime` when the status did not change.
    pub fn set_condition(&mut self, mut new: Condition) {
        if let Some(old) = self.conditions.iter_mut().find(|c| c.type_ == new.type_) {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        } else {
            self.conditions.push(new);
        }
    }
}

impl Condition {
    pub fn new(
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
        generation: Option<i64>,
    ) -> Self {
        Condition {
            type_: type_.to_string(),
            status: if status { "True" } else { "False" }.to_string(),
            observed_generation: generation,
            last_transition_time: jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_else(|_| jiff::Timestamp::now())
                .to_string(),
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}
