//! What a reconcile writes into a set's status, decided from plain data: no
//! API server, no cloud, no clock but the conditions' transition times.
//!
//! Every `Ready` / `Reconciling` / `Stalled` reason the operator writes is
//! chosen here; the I/O around it (apply, cleanup) only says which case it is in.

use crate::api::status::reason;
use crate::api::{
    Condition, ConflictEntry, DRIFTED, DriftEntry, LabelSetStatus, Mode, READY, RECONCILING,
    STALLED,
};
use crate::engine::{ResolvedSet, SyncError, SyncReport};
use crate::provider::{AccessError, ErrorKind};

/// Longest condition message (bytes, before the ellipsis).
pub const MAX_STATUS_MESSAGE: usize = 1024;
/// Longest event note (bytes, before the ellipsis).
pub const MAX_EVENT_NOTE: usize = 1000;

/// The three kstatus conditions of one outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub ready: bool,
    /// The reason `Ready` gives.
    pub reason: &'static str,
    pub message: String,
    /// `Reconciling=True` with this reason and message; `None`: False.
    pub reconciling: Option<(&'static str, String)>,
    /// `Stalled=True` with this reason and message; `None`: False.
    pub stalled: Option<(&'static str, String)>,
}

impl Verdict {
    fn not_ready(reason: &'static str, message: String) -> Self {
        Verdict {
            ready: false,
            reason,
            message,
            reconciling: None,
            stalled: None,
        }
    }

    /// The result label of `imagelabel_reconciles_total` this outcome counts as.
    pub fn result(&self) -> &'static str {
        match (self.ready, &self.stalled) {
            (_, Some(_)) => "stalled",
            (true, None) if self.reason == reason::PAUSED => "paused",
            (true, None) => "success",
            (false, None) => "error",
        }
    }
}

/// Annotation `imagelabel.io/paused=true`. Ready=True: pausing is a
/// deliberate, settled state, so kstatus (Flux `wait: true`) reports Current
/// instead of waiting until its timeout; the reason says Paused and Argo
/// CD's check shows Suspended.
pub fn paused(annotation: &str) -> Verdict {
    Verdict {
        ready: true,
        ..Verdict::not_ready(
            reason::PAUSED,
            format!("annotation {annotation}=true: no cloud calls until it is removed"),
        )
    }
}

/// A spec the operator will not act on; waits for the next edit.
pub fn invalid_spec(message: String) -> Verdict {
    stalled(reason::INVALID_SPEC, message)
}

/// Needs a person: spec, permission, credentials, the object's label cap.
pub fn stalled(reason: &'static str, message: String) -> Verdict {
    Verdict {
        stalled: Some((reason, message.clone())),
        ..Verdict::not_ready(reason, message)
    }
}

/// Why no cloud client could be built, as the reason a person reads: a bad
/// region is the spec's (or the operator's default region's) fault, not the
/// credentials'.
pub fn access_refused(e: &AccessError) -> &'static str {
    match e {
        AccessError::Credentials(_) => reason::INVALID_CREDENTIALS,
        AccessError::Region { .. } => reason::INVALID_SPEC,
        AccessError::Client(e) => stall_reason(e.kind).unwrap_or(reason::CLOUD_ERROR),
    }
}

/// A transient failure; the error policy retries with backoff.
pub fn backing_off(message: String) -> Verdict {
    Verdict {
        reconciling: Some((reason::BACKING_OFF, message.clone())),
        ..Verdict::not_ready(reason::BACKING_OFF, message)
    }
}

/// Labels about to be written: an edit (`Applying`) or a repair of keys
/// changed out of band (`DriftDetected`). `changes` lists them.
pub fn in_progress(repairing: bool, changes: String) -> Verdict {
    let (why, what) = if repairing {
        (
            reason::DRIFT_DETECTED,
            "repairing labels changed out of band",
        )
    } else {
        (reason::APPLYING, "applying label changes")
    };
    Verdict {
        reconciling: Some((why, changes)),
        ..Verdict::not_ready(why, what.into())
    }
}

/// Deletion cannot finish until a person acts; the message says how to let go.
pub fn deletion_blocked(reason: &'static str, message: &str, paused_annotation: &str) -> Verdict {
    let message = format!(
        "deletion waits: {message}; to delete without touching labels, set spec.deletionPolicy: Orphan \
         or annotation {paused_annotation}=\"true\""
    );
    Verdict {
        reconciling: Some((reason::DELETING, message.clone())),
        stalled: Some((reason, message.clone())),
        ..Verdict::not_ready(reason, message)
    }
}

/// Deletion leaves keys to sets that win them and do not own them yet.
pub fn handing_over(heirs: &[&str], pending: &std::collections::BTreeSet<String>) -> Verdict {
    let message = format!(
        "deletion waits for {} to take over keys {pending:?} they declare",
        heirs.join(", ")
    );
    Verdict {
        reconciling: Some((reason::HANDING_OVER, message.clone())),
        ..Verdict::not_ready(reason::HANDING_OVER, message)
    }
}

/// The target named by the spec differs from the one the owned keys live
/// on. The schema forbids this; an old CRD or a bypassed webhook may not.
pub fn target_moved(status: &LabelSetStatus, now: &str) -> Option<String> {
    let was = status.target.as_deref()?;
    (was != now && !status.owned_keys.is_empty()).then(|| {
        format!(
            "the target changed from {was} to {now}, but this set owns keys {:?} on {was}: \
             the target is immutable; restore it, or delete this set and create a new one",
            status.owned_keys
        )
    })
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

/// What a failed pass does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// Stall with this reason until what the set depends on changes.
    Stall(&'static str),
    /// Say `BackingOff` and retry with backoff.
    BackOff,
    /// Retry with backoff without a status write (the status write failed).
    Retry,
}

pub fn on_failure(e: &SyncError) -> OnFailure {
    match e {
        SyncError::Limit(_) => OnFailure::Stall(reason::LIMIT_EXCEEDED),
        SyncError::Ownership(_) => OnFailure::Retry,
        SyncError::Observe(c) | SyncError::Write(c) => {
            stall_reason(c.kind).map_or(OnFailure::BackOff, OnFailure::Stall)
        }
    }
}

/// Whether a stall is news (worth an event): a new reason or message, or
/// (with `require_true`) the set was not stalled before.
pub fn stall_is_news(
    status: &LabelSetStatus,
    reason: &str,
    message: &str,
    require_true: bool,
) -> bool {
    status.condition(STALLED).is_none_or(|c| {
        c.reason != reason || c.message != message || (require_true && c.status != "True")
    })
}

/// Writes a verdict's conditions (and `Drifted`, from `status.drift`).
pub fn set_conditions(status: &mut LabelSetStatus, g: Option<i64>, v: &Verdict) {
    // Messages carry cloud error text of any length; a status past the
    // API server's size limit would fail every later patch.
    let cut = |m: &str| truncate(m, MAX_STATUS_MESSAGE);
    status.set_condition(Condition::new(READY, v.ready, v.reason, cut(&v.message), g));
    for (type_, set) in [(RECONCILING, &v.reconciling), (STALLED, &v.stalled)] {
        status.set_condition(match set {
            Some((r, m)) => Condition::new(type_, true, r, cut(m), g),
            None => Condition::new(type_, false, reason::IN_SYNC, "", g),
        });
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

/// The status a successful pass leaves (all but `lastSyncTime`), and the
/// reconcile result it counts as.
pub fn settle(
    status: &mut LabelSetStatus,
    generation: Option<i64>,
    set: &ResolvedSet,
    report: &SyncReport,
) -> &'static str {
    record_pass(status, generation, set, report);
    let verdict = settled(status, set.desired.len());
    set_conditions(status, generation, &verdict);
    status.observed_generation = generation;
    verdict.result()
}

/// The fields of a pass's outcome besides the conditions.
fn record_pass(
    status: &mut LabelSetStatus,
    generation: Option<i64>,
    set: &ResolvedSet,
    report: &SyncReport,
) {
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
}

/// The conditions of a completed pass, from its conflicts, fights and drift.
pub fn settled(status: &LabelSetStatus, desired: usize) -> Verdict {
    if !status.conflicts.is_empty() {
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
        return stalled(reason::KEY_CONFLICT, msg);
    }
    if !status.fights.is_empty() {
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
        return stalled(reason::FIGHT_DETECTED, msg);
    }
    let (reason, message) = if status.drift.is_empty() {
        (reason::IN_SYNC, format!("{desired} labels match the spec"))
    } else {
        // Observe has done its job: Ready=True (kstatus Current, Argo CD
        // Healthy) with the reason and the Drifted condition saying what differs.
        (
            reason::DRIFT_DETECTED,
            format!(
                "{} keys differ (mode Observe: not changed)",
                status.drift.len()
            ),
        )
    };
    Verdict {
        ready: true,
        ..Verdict::not_ready(reason, message)
    }
}

/// A status without `lastSyncTime`, hashed: two statuses a pass may not
/// tell apart.
pub fn status_hash(status: &LabelSetStatus) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut s = status.clone();
    s.last_sync_time = None;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&s).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Whether `new` says nothing `old` does not, apart from `lastSyncTime`.
pub fn same_status(old: &LabelSetStatus, new: &LabelSetStatus) -> bool {
    let mut a = old.clone();
    let mut b = new.clone();
    a.last_sync_time = None;
    b.last_sync_time = None;
    a == b
}

/// The label changes of a plan, as `+k="v"`, `k: "old" -> "new"`, `-k`.
pub fn describe(report: &SyncReport) -> String {
    let mut parts: Vec<String> = report
        .writes()
        .map(|(k, before, v)| match before {
            Some(old) => format!("{k}: {old:?} -> {v:?}"),
            None => format!("+{k}={v:?}"),
        })
        .collect();
    parts.extend(report.plan.remove.iter().map(|k| format!("-{k}")));
    parts.join(", ")
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `(type, status, reason)` of each condition, in order.
#[cfg(test)]
pub fn triples(status: &LabelSetStatus) -> Vec<(String, String, String)> {
    status
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect()
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
