//! When a set holds back instead of calling the cloud: a stall waits for
//! what it depends on to change, a fight stops repairing a key something
//! else keeps changing. Plain data in, decisions out.

use std::time::{Duration, Instant};

use crate::api::FightEntry;
use crate::provider::Labels;

/// What a stall depends on: the spec generation, the resume annotation and
/// the version of the `credentialsRef` Secret (`None`: no Secret).
pub fn stall_fingerprint(
    generation: Option<i64>,
    resume: Option<&String>,
    secret_version: Option<&str>,
) -> String {
    format!(
        "{generation:?}|{resume:?}|{}",
        secret_version.unwrap_or("-")
    )
}

/// The fingerprint of a stall on an unreadable Secret.
pub const UNREADABLE_SECRET: &str = "unreadable";

/// Time left before a set stalled `since` on `stalled_on` looks again, if
/// it is still stalled on exactly `fingerprint`; `None`: go ahead.
pub fn hold_left(
    stalled_on: &str,
    since: Instant,
    fingerprint: &str,
    recheck: Duration,
    now: Instant,
) -> Option<Duration> {
    if stalled_on != fingerprint {
        return None;
    }
    recheck.checked_sub(now.saturating_duration_since(since))
}

/// When a held stall looks again: within `secret_poll` when the set reads a
/// Secret (a fixed Secret is noticed without a cloud call), otherwise when
/// the recheck is due.
pub fn held_requeue(left: Duration, secret_poll: Option<Duration>) -> Duration {
    secret_poll.map_or(left, |poll| left.min(poll))
}

/// Whether fight history is forgotten: a new spec generation, or a new
/// value of the resume annotation.
pub fn fights_reset(
    observed_generation: Option<i64>,
    generation: Option<i64>,
    last_handled: Option<&String>,
    resume: Option<&String>,
) -> bool {
    observed_generation != generation || last_handled != resume
}

/// The drifted keys a set stops repairing: those `is_fighting` says were
/// repaired too often, with the value last seen.
pub fn new_fights(
    drifted: &[String],
    observed: &Labels,
    threshold: usize,
    mut is_fighting: impl FnMut(&str) -> bool,
) -> Vec<FightEntry> {
    drifted
        .iter()
        .filter(|k| is_fighting(k))
        .map(|k| FightEntry {
            key: k.clone(),
            last_seen: observed.get(k).cloned(),
            repairs: threshold as u32,
        })
        .collect()
}

/// The event note of a new fight.
pub fn fight_note(f: &FightEntry, window: Duration, resume_annotation: &str) -> String {
    format!(
        "key {} was changed out of band {} times within {window:?}; last value seen {:?}; no longer repaired until the spec changes or annotation {resume_annotation} is set",
        f.key, f.repairs, f.last_seen
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_holds_until_its_fingerprint_changes_or_the_recheck_is_due() {
        let since = Instant::now();
        let fp = stall_fingerprint(Some(3), None, Some("41"));
        assert_eq!(fp, "Some(3)|None|41");
        let hour = Duration::from_secs(3600);
        let later = since + Duration::from_secs(600);
        assert_eq!(
            hold_left(&fp, since, &fp, hour, later),
            Some(Duration::from_secs(3000))
        );
        let edited = stall_fingerprint(Some(4), None, Some("41"));
        assert_eq!(hold_left(&fp, since, &edited, hour, later), None);
        let new_secret = stall_fingerprint(Some(3), None, Some("42"));
        assert_eq!(hold_left(&fp, since, &new_secret, hour, later), None);
        let resumed = stall_fingerprint(Some(3), Some(&"now".to_string()), Some("41"));
        assert_eq!(hold_left(&fp, since, &resumed, hour, later), None);
        assert_eq!(
            hold_left(&fp, since, &fp, hour, since + hour + Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn a_set_with_a_secret_looks_again_within_the_poll() {
        let left = Duration::from_secs(3000);
        let poll = Duration::from_secs(30);
        assert_eq!(held_requeue(left, Some(poll)), poll);
        assert_eq!(held_requeue(left, None), left);
        assert_eq!(
            held_requeue(Duration::from_secs(5), Some(poll)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn fights_are_the_drifted_keys_repaired_too_often() {
        let observed: Labels = [("a".to_string(), "x".to_string())].into();
        let drifted = vec!["a".to_string(), "b".to_string()];
        let fights = new_fights(&drifted, &observed, 3, |k| k == "a" || k == "b");
        assert_eq!(
            fights,
            vec![
                FightEntry {
                    key: "a".into(),
                    last_seen: Some("x".into()),
                    repairs: 3
                },
                FightEntry {
                    key: "b".into(),
                    last_seen: None,
                    repairs: 3
                },
            ]
        );
        assert!(new_fights(&drifted, &observed, 3, |_| false).is_empty());
        let note = fight_note(&fights[0], Duration::from_secs(60), "r");
        assert_eq!(
            note,
            "key a was changed out of band 3 times within 60s; last value seen Some(\"x\"); no longer repaired until the spec changes or annotation r is set"
        );
    }

    #[test]
    fn a_new_generation_or_resume_forgets_fights() {
        let r = Some("t1".to_string());
        assert!(!fights_reset(Some(2), Some(2), r.as_ref(), r.as_ref()));
        assert!(fights_reset(Some(1), Some(2), r.as_ref(), r.as_ref()));
        assert!(fights_reset(Some(2), Some(2), None, r.as_ref()));
    }
}
