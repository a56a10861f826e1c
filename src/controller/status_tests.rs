//! Every condition the reconciler writes, from plain data.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;
use crate::api::FightEntry;
use crate::engine::LimitExceeded;
use crate::plan::{Conflict, Drift, Plan, SetId};
use crate::provider::CloudError;

use super::triples as conditions;

fn c(type_: &str, status: &str, reason: &str) -> (String, String, String) {
    (type_.into(), status.into(), reason.into())
}

/// The conditions a verdict writes into an empty status.
fn written(v: &Verdict) -> LabelSetStatus {
    let mut status = LabelSetStatus::default();
    set_conditions(&mut status, Some(7), v);
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(7))
    );
    status
}

fn image_set(mode: Mode) -> ResolvedSet {
    let spec = crate::api::ImageLabelSetSpec {
        image_id: "image-1".into(),
        labels: [
            ("system.framework".to_string(), "1".to_string()),
            ("system.origin".to_string(), "2".to_string()),
        ]
        .into(),
        mode,
        ..Default::default()
    };
    crate::engine::resolve_image(&spec, "cn-shanghai").unwrap()
}

fn report(plan: Plan) -> SyncReport {
    let labels: crate::provider::Labels =
        [("system.framework".to_string(), "1".to_string())].into();
    SyncReport {
        observed: labels.clone(),
        labels_after: labels,
        owned: ["system.framework".to_string()].into(),
        plan,
        ..Default::default()
    }
}

fn cloud(kind: ErrorKind) -> SyncError {
    SyncError::Observe(CloudError::new(kind, "GetImage", "no"))
}

#[test]
fn in_sync_is_ready_with_nothing_in_progress() {
    let mut status = LabelSetStatus::default();
    let result = settle(
        &mut status,
        Some(3),
        &image_set(Mode::Sync),
        &report(Plan::default()),
    );
    assert_eq!(result, "success");
    assert_eq!(
        conditions(&status),
        vec![
            c(READY, "True", reason::IN_SYNC),
            c(RECONCILING, "False", reason::IN_SYNC),
            c(STALLED, "False", reason::IN_SYNC),
            c(DRIFTED, "False", reason::IN_SYNC),
        ]
    );
    assert_eq!(
        status.condition(READY).unwrap().message,
        "2 labels match the spec"
    );
    assert_eq!(status.owned_keys, vec!["system.framework".to_string()]);
    assert_eq!(status.label_count, Some(1));
    assert_eq!(status.synced_generation, Some(3));
    assert_eq!(status.observed_generation, Some(3));
}

#[test]
fn observe_mode_drift_is_ready_and_drifted() {
    let plan = Plan {
        drift: vec![Drift {
            key: "system.origin".into(),
            desired: Some("2".into()),
            actual: None,
        }],
        ..Default::default()
    };
    let mut status = LabelSetStatus::default();
    let result = settle(
        &mut status,
        Some(1),
        &image_set(Mode::Observe),
        &report(plan),
    );
    assert_eq!(result, "success");
    assert_eq!(
        conditions(&status),
        vec![
            c(READY, "True", reason::DRIFT_DETECTED),
            c(RECONCILING, "False", reason::IN_SYNC),
            c(STALLED, "False", reason::IN_SYNC),
            c(DRIFTED, "True", reason::DRIFT_DETECTED),
        ]
    );
    assert_eq!(
        status.condition(READY).unwrap().message,
        "1 keys differ (mode Observe: not changed)"
    );
    assert_eq!(
        status.drift,
        vec![DriftEntry {
            key: "system.origin".into(),
            desired: Some("2".into()),
            actual: None
        }]
    );
}

#[test]
fn a_key_an_older_set_wins_stalls_on_key_conflict() {
    let plan = Plan {
        conflicts: vec![Conflict {
            key: "system.origin".into(),
            ours: "2".into(),
            winner: SetId::new(1, "ns/older"),
            theirs: "9".into(),
        }],
        ..Default::default()
    };
    let mut status = LabelSetStatus::default();
    let result = settle(&mut status, Some(1), &image_set(Mode::Sync), &report(plan));
    assert_eq!(result, "stalled");
    assert_eq!(
        conditions(&status)[..3],
        [
            c(READY, "False", reason::KEY_CONFLICT),
            c(RECONCILING, "False", reason::IN_SYNC),
            c(STALLED, "True", reason::KEY_CONFLICT),
        ]
    );
    let msg = "system.origin is declared by older set ns/older as \"9\"";
    assert_eq!(status.condition(STALLED).unwrap().message, msg);
    assert_eq!(status.conflicts[0].winner, "ns/older");
}

#[test]
fn a_key_changed_out_of_band_too_often_stalls_on_fight_detected() {
    let mut status = LabelSetStatus {
        fights: vec![FightEntry {
            key: "system.framework".into(),
            last_seen: Some("x".into()),
            repairs: 3,
        }],
        ..Default::default()
    };
    let result = settle(
        &mut status,
        Some(1),
        &image_set(Mode::Sync),
        &report(Plan::default()),
    );
    assert_eq!(result, "stalled");
    assert_eq!(
        conditions(&status)[..3],
        [
            c(READY, "False", reason::FIGHT_DETECTED),
            c(RECONCILING, "False", reason::IN_SYNC),
            c(STALLED, "True", reason::FIGHT_DETECTED),
        ]
    );
    assert_eq!(
        status.condition(READY).unwrap().message,
        "system.framework keeps being changed out of band (last seen Some(\"x\"))"
    );
}

#[test]
fn writes_in_progress_are_applying_or_drift_repairs() {
    let applying = written(&in_progress(false, "+a=\"1\"".into()));
    assert_eq!(
        conditions(&applying)[..3],
        [
            c(READY, "False", reason::APPLYING),
            c(RECONCILING, "True", reason::APPLYING),
            c(STALLED, "False", reason::IN_SYNC),
        ]
    );
    assert_eq!(
        applying.condition(READY).unwrap().message,
        "applying label changes"
    );
    assert_eq!(applying.condition(RECONCILING).unwrap().message, "+a=\"1\"");
    let repair = written(&in_progress(true, "a: \"x\" -> \"1\"".into()));
    assert_eq!(
        conditions(&repair)[..3],
        [
            c(READY, "False", reason::DRIFT_DETECTED),
            c(RECONCILING, "True", reason::DRIFT_DETECTED),
            c(STALLED, "False", reason::IN_SYNC),
        ]
    );
    assert_eq!(
        repair.condition(READY).unwrap().message,
        "repairing labels changed out of band"
    );
}

#[test]
fn paused_is_ready_and_counted_as_paused() {
    let v = paused("imagelabel.io/paused");
    assert_eq!(v.result(), "paused");
    let status = written(&v);
    assert_eq!(
        conditions(&status)[..3],
        [
            c(READY, "True", reason::PAUSED),
            c(RECONCILING, "False", reason::IN_SYNC),
            c(STALLED, "False", reason::IN_SYNC),
        ]
    );
    assert_eq!(
        status.condition(READY).unwrap().message,
        "annotation imagelabel.io/paused=true: no cloud calls until it is removed"
    );
}

#[test]
fn an_invalid_spec_or_a_moved_target_stalls_on_invalid_spec() {
    let v = invalid_spec("spec.imageId: required".into());
    assert_eq!(v.result(), "stalled");
    assert_eq!(
        conditions(&written(&v))[..3],
        [
            c(READY, "False", reason::INVALID_SPEC),
            c(RECONCILING, "False", reason::IN_SYNC),
            c(STALLED, "True", reason::INVALID_SPEC),
        ]
    );
    let mut status = LabelSetStatus {
        target: Some("pai/cn-shanghai/image/a".into()),
        ..Default::default()
    };
    assert_eq!(
        target_moved(&status, "pai/cn-shanghai/image/b"),
        None,
        "owns nothing"
    );
    status.owned_keys = vec!["k".into()];
    assert_eq!(target_moved(&status, "pai/cn-shanghai/image/a"), None);
    let msg = target_moved(&status, "pai/cn-shanghai/image/b").unwrap();
    assert!(msg.starts_with("the target changed from pai/cn-shanghai/image/a to pai/cn-shanghai/image/b, but this set owns keys [\"k\"]"), "{msg}");
}

#[test]
fn errors_a_person_must_fix_stall_with_their_reason() {
    for (kind, want) in [
        (ErrorKind::NotFound, reason::NOT_FOUND),
        (ErrorKind::AccessDenied, reason::ACCESS_DENIED),
        (ErrorKind::Unauthenticated, reason::INVALID_CREDENTIALS),
        (ErrorKind::Invalid, reason::CLOUD_ERROR),
    ] {
        let e = cloud(kind);
        assert_eq!(on_failure(&e), OnFailure::Stall(want), "{kind:?}");
        let status = written(&stalled(want, e.to_string()));
        assert_eq!(
            conditions(&status)[..3],
            [
                c(READY, "False", want),
                c(RECONCILING, "False", reason::IN_SYNC),
                c(STALLED, "True", want),
            ]
        );
        assert_eq!(
            status.condition(STALLED).unwrap().message,
            "reading the labels: GetImage failed: no"
        );
    }
    let limit = SyncError::Limit(LimitExceeded("too many".into()));
    assert_eq!(on_failure(&limit), OnFailure::Stall(reason::LIMIT_EXCEEDED));
    assert_eq!(
        stalled(reason::LIMIT_EXCEEDED, limit.to_string()).message,
        "too many"
    );
}

#[test]
fn errors_time_fixes_back_off() {
    for kind in [ErrorKind::Throttled, ErrorKind::Server, ErrorKind::Network] {
        assert_eq!(on_failure(&cloud(kind)), OnFailure::BackOff, "{kind:?}");
    }
    assert_eq!(
        on_failure(&SyncError::Ownership("refused".into())),
        OnFailure::Retry
    );
    let v = backing_off("GetImage failed: slow down".into());
    assert_eq!(v.result(), "error");
    assert_eq!(
        conditions(&written(&v))[..3],
        [
            c(READY, "False", reason::BACKING_OFF),
            c(RECONCILING, "True", reason::BACKING_OFF),
            c(STALLED, "False", reason::IN_SYNC),
        ]
    );
}

#[test]
fn a_blocked_deletion_is_deleting_and_stalled() {
    let v = deletion_blocked(reason::ACCESS_DENIED, "RemoveLabels failed", "p/x");
    let want = "deletion waits: RemoveLabels failed; to delete without touching labels, \
                set spec.deletionPolicy: Orphan or annotation p/x=\"true\"";
    assert_eq!(v.message, want);
    let status = written(&v);
    assert_eq!(
        conditions(&status)[..3],
        [
            c(READY, "False", reason::ACCESS_DENIED),
            c(RECONCILING, "True", reason::DELETING),
            c(STALLED, "True", reason::ACCESS_DENIED),
        ]
    );
    assert_eq!(status.condition(RECONCILING).unwrap().message, want);
    // The event is sent once per reason and message.
    assert!(!stall_is_news(&status, reason::ACCESS_DENIED, want, false));
    assert!(stall_is_news(&status, reason::NOT_FOUND, want, false));
}

#[test]
fn a_deletion_waiting_for_heirs_is_handing_over() {
    let pending: BTreeSet<String> = ["system.framework".to_string()].into();
    let v = handing_over(&["ns/b", "ns/c"], &pending);
    let status = written(&v);
    assert_eq!(
        conditions(&status)[..3],
        [
            c(READY, "False", reason::HANDING_OVER),
            c(RECONCILING, "True", reason::HANDING_OVER),
            c(STALLED, "False", reason::IN_SYNC),
        ]
    );
    assert_eq!(
        v.message,
        "deletion waits for ns/b, ns/c to take over keys {\"system.framework\"} they declare"
    );
}

/// Every reason of `api::status::reason` but one is written by a case
/// above; `Progressing` is defined for clients and never written.
#[test]
fn every_reason_has_a_case() {
    let written: BTreeSet<&str> = [
        reason::IN_SYNC,
        reason::DRIFT_DETECTED,
        reason::PAUSED,
        reason::APPLYING,
        reason::INVALID_SPEC,
        reason::NOT_FOUND,
        reason::ACCESS_DENIED,
        reason::INVALID_CREDENTIALS,
        reason::KEY_CONFLICT,
        reason::FIGHT_DETECTED,
        reason::LIMIT_EXCEEDED,
        reason::CLOUD_ERROR,
        reason::BACKING_OFF,
        reason::DELETING,
        reason::HANDING_OVER,
    ]
    .into();
    assert_eq!(written.len(), 15);
    assert!(!written.contains(reason::PROGRESSING));
}

#[test]
fn long_messages_are_cut_in_conditions() {
    let status = written(&stalled(reason::CLOUD_ERROR, "é".repeat(4000)));
    let m = &status.condition(STALLED).unwrap().message;
    assert!(
        m.len() <= MAX_STATUS_MESSAGE + '…'.len_utf8(),
        "{}",
        m.len()
    );
    assert_eq!(status.condition(READY).unwrap().message, *m);
}

#[test]
fn a_transition_keeps_its_time_while_the_status_stays() {
    let mut status = LabelSetStatus::default();
    set_conditions(&mut status, Some(1), &backing_off("a".into()));
    let before = status
        .condition(READY)
        .unwrap()
        .last_transition_time
        .clone();
    let mut later = status.clone();
    later.conditions[0].last_transition_time = "2000-01-01T00:00:00Z".into();
    set_conditions(&mut later, Some(1), &backing_off("b".into()));
    assert_eq!(
        later.condition(READY).unwrap().last_transition_time,
        "2000-01-01T00:00:00Z"
    );
    assert!(!before.is_empty());
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

#[test]
fn a_refused_cloud_client_names_whose_fault_it_is() {
    use crate::provider::AccessError;
    use crate::provider::credentials::CredentialError;
    let cases = [
        (
            AccessError::from(CredentialError::NotUtf8("sk")),
            reason::INVALID_CREDENTIALS,
        ),
        (
            AccessError::Region {
                region: "cn/shanghai".into(),
                reason: "not a region name".into(),
            },
            reason::INVALID_SPEC,
        ),
        (
            AccessError::Client(CloudError::new(ErrorKind::AccessDenied, "client", "no")),
            reason::ACCESS_DENIED,
        ),
        (
            AccessError::Client(CloudError::new(ErrorKind::Network, "client", "tls")),
            reason::CLOUD_ERROR,
        ),
    ];
    for (e, want) in cases {
        assert_eq!(access_refused(&e), want, "{e}");
    }
}
