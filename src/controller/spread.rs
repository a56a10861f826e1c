//! Which reconciles are periodic drift checks, and when a restarted
//! operator runs each set's first one.
//!
//! A set is *settled* when its status says the current generation is synced
//! (`status.syncedGeneration == metadata.generation`), Ready is True (not
//! paused), nothing stalls it, its resume annotation was handled, it is not
//! being deleted, no failure is being backed off, and no other set woke it
//! (a claim changed). A reconcile of a settled set only looks for drift: it
//! is a drift check. Everything else is a change and goes first.
//!
//! After a restart every settled set would otherwise be checked at once (the
//! watch lists them all). Instead the first check of a settled set in this
//! process is put off: until `lastSyncTime + interval` when that is still
//! ahead, else to an offset in `[0, interval)` from a hash of the set's uid,
//! which spreads N sets evenly over one interval.

use std::time::Duration;

use crate::api::{LabelSetStatus, READY, STALLED, reason};

/// What the settled test reads about one set.
#[derive(Clone, Debug, Default)]
pub struct SetState<'a> {
    pub generation: Option<i64>,
    pub status: Option<&'a LabelSetStatus>,
    /// The `imagelabel.io/reconcile-requested-at` annotation.
    pub resume: Option<&'a str>,
    pub paused: bool,
    pub deleting: bool,
    /// A failure is being backed off (the error policy's count).
    pub failing: bool,
    /// Another set's claim changed and asked this one to look again.
    pub woken: bool,
}

/// Whether a reconcile of this set is only a periodic drift check.
pub fn is_drift_check(s: &SetState<'_>) -> bool {
    let Some(st) = s.status else {
        return false;
    };
    let ready = st
        .condition(READY)
        .is_some_and(|c| c.status == "True" && c.reason != reason::PAUSED);
    let stalled = st.condition(STALLED).is_some_and(|c| c.status == "True");
    s.generation.is_some()
        && st.synced_generation == s.generation
        && st.observed_generation == s.generation
        && ready
        && !stalled
        && st.last_handled_reconcile_at.as_deref() == s.resume
        && !s.paused
        && !s.deleting
        && !s.failing
        && !s.woken
}

/// A stable offset in `[0, interval)` for `uid` (FNV-1a, then a 64-bit mix,
/// so uids that differ in one character land far apart).
pub fn hash_offset(uid: &str, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uid.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64 finaliser
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let nanos = interval.as_nanos().max(1);
    Duration::from_nanos((u128::from(h) % nanos) as u64)
}

/// How long the first reconcile of a set in this process waits before it
/// calls the cloud; `None` to go now (a change, or not settled).
/// `since_last_sync` is the age of `status.lastSyncTime` (`None` if absent
/// or unreadable).
pub fn first_check_delay(
    state: &SetState<'_>,
    uid: &str,
    interval: Duration,
    since_last_sync: Option<Duration>,
) -> Option<Duration> {
    if !is_drift_check(state) {
        return None;
    }
    match since_last_sync {
        Some(age) if age < interval => Some(interval - age),
        _ => Some(hash_offset(uid, interval)),
    }
}

/// The age of an RFC 3339 `lastSyncTime`.
pub fn age_of(last_sync_time: Option<&str>) -> Option<Duration> {
    let t: jiff::Timestamp = last_sync_time?.parse().ok()?;
    let age = jiff::Timestamp::now().duration_since(t);
    Duration::try_from(age).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Condition;

    fn synced(generation: i64) -> LabelSetStatus {
        let mut st = LabelSetStatus {
            observed_generation: Some(generation),
            synced_generation: Some(generation),
            ..Default::default()
        };
        st.set_condition(Condition::new(
            READY,
            true,
            reason::IN_SYNC,
            "",
            Some(generation),
        ));
        st.set_condition(Condition::new(
            STALLED,
            false,
            reason::IN_SYNC,
            "",
            Some(generation),
        ));
        st
    }

    fn state(st: &LabelSetStatus) -> SetState<'_> {
        SetState {
            generation: Some(3),
            status: Some(st),
            ..Default::default()
        }
    }

    #[test]
    fn offsets_spread_evenly_over_the_interval() {
        let interval = Duration::from_secs(600);
        let n = 10_000;
        let mut bins = [0usize; 10];
        for i in 0..n {
            let uid = format!("3f2a9c1e-0000-4000-8000-{i:012}");
            let d = hash_offset(&uid, interval);
            assert!(d < interval);
            bins[(d.as_secs() / 60) as usize] += 1;
        }
        let expected = n / 10;
        for (i, b) in bins.iter().enumerate() {
            assert!(
                b.abs_diff(expected) * 5 <= expected,
                "bin {i} holds {b}, expected {expected} ± 20%: {bins:?}"
            );
        }
        assert_eq!(
            hash_offset("same", interval),
            hash_offset("same", interval),
            "stable per uid"
        );
    }

    #[test]
    fn settled_sets_wait_and_others_go_now() {
        let interval = Duration::from_secs(600);
        let st = synced(3);
        let s = state(&st);
        assert!(is_drift_check(&s));
        // Synced 100 s ago: first check when its interval ends.
        assert_eq!(
            first_check_delay(&s, "u", interval, Some(Duration::from_secs(100))),
            Some(Duration::from_secs(500))
        );
        // Synced long ago: somewhere in one interval.
        let d = first_check_delay(&s, "u", interval, Some(Duration::from_secs(5000))).unwrap();
        assert!(d < interval);
        assert_eq!(d, hash_offset("u", interval));

        // A pending spec change goes now.
        let pending = SetState {
            generation: Some(4),
            ..s.clone()
        };
        assert_eq!(first_check_delay(&pending, "u", interval, None), None);
        // A set never synced goes now.
        assert_eq!(
            first_check_delay(
                &SetState {
                    status: None,
                    ..s.clone()
                },
                "u",
                interval,
                None
            ),
            None
        );
        // Failing, woken, deleting, paused, or asked to resume: now.
        for changed in [
            SetState {
                failing: true,
                ..s.clone()
            },
            SetState {
                woken: true,
                ..s.clone()
            },
            SetState {
                deleting: true,
                ..s.clone()
            },
            SetState {
                paused: true,
                ..s.clone()
            },
            SetState {
                resume: Some("2026-01-01T00:00:00Z"),
                ..s.clone()
            },
        ] {
            assert_eq!(first_check_delay(&changed, "u", interval, None), None);
        }
        // Stalled or not Ready (e.g. a conflict, a backoff): now.
        let mut stalled = synced(3);
        stalled.set_condition(Condition::new(
            STALLED,
            true,
            reason::KEY_CONFLICT,
            "x",
            Some(3),
        ));
        assert_eq!(
            first_check_delay(&state(&stalled), "u", interval, None),
            None
        );
        let mut backing_off = synced(3);
        backing_off.set_condition(Condition::new(
            READY,
            false,
            reason::BACKING_OFF,
            "x",
            Some(3),
        ));
        assert_eq!(
            first_check_delay(&state(&backing_off), "u", interval, None),
            None
        );
        let mut paused = synced(3);
        paused.set_condition(Condition::new(READY, true, reason::PAUSED, "x", Some(3)));
        assert_eq!(
            first_check_delay(&state(&paused), "u", interval, None),
            None
        );
    }

    #[test]
    fn ages_parse() {
        let t = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(30)).to_string();
        let age = age_of(Some(&t)).unwrap();
        assert!(age >= Duration::from_secs(29) && age < Duration::from_secs(40));
        assert_eq!(age_of(Some("garbage")), None);
        assert_eq!(age_of(None), None);
    }
}
