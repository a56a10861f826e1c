//! Fight detection: a key repaired again and again within a window is
//! something else writing it; stop repairing instead of looping.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct FightDetector {
    threshold: usize,
    window: Duration,
    repairs: Mutex<HashMap<(String, String), VecDeque<Instant>>>,
    /// Size past which `record` drops keys with no repair left in the window.
    soft_cap: Mutex<usize>,
}

/// The map is swept when it doubles past its size after the last sweep,
/// never below this: amortised O(1) per repair, bounded by the keys
/// repaired within one window.
const MIN_SWEEP_AT: usize = 1024;

impl FightDetector {
    pub fn new(threshold: usize, window: Duration) -> Self {
        FightDetector {
            threshold: threshold.max(1),
            window,
            repairs: Mutex::new(HashMap::new()),
            soft_cap: Mutex::new(MIN_SWEEP_AT),
        }
    }

    fn prune(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
        while q.front().is_some_and(|t| now.duration_since(*t) > window) {
            q.pop_front();
        }
    }

    /// Whether the key already had `threshold` repairs within the window.
    pub fn is_fighting(&self, set: &str, key: &str, now: Instant) -> bool {
        let mut map = self.repairs.lock().expect("fight detector poisoned");
        match map.get_mut(&(set.to_string(), key.to_string())) {
            Some(q) => {
                Self::prune(q, now, self.window);
                q.len() >= self.threshold
            }
            None => false,
        }
    }

    /// Records one repair; returns the repairs within the window.
    pub fn record(&self, set: &str, key: &str, now: Instant) -> usize {
        let mut map = self.repairs.lock().expect("fight detector poisoned");
        let q = map.entry((set.to_string(), key.to_string())).or_default();
        Self::prune(q, now, self.window);
        q.push_back(now);
        let n = q.len();
        let mut cap = self.soft_cap.lock().expect("fight detector poisoned");
        if map.len() > *cap {
            Self::sweep_map(&mut map, now, self.window);
            *cap = (map.len() * 2).max(MIN_SWEEP_AT);
        }
        n
    }

    fn sweep_map(
        map: &mut HashMap<(String, String), VecDeque<Instant>>,
        now: Instant,
        window: Duration,
    ) {
        map.retain(|_, q| {
            Self::prune(q, now, window);
            !q.is_empty()
        });
    }

    /// Drops keys with no repair within the window at `now`.
    pub fn sweep(&self, now: Instant) {
        let mut map = self.repairs.lock().expect("fight detector poisoned");
        Self::sweep_map(&mut map, now, self.window);
    }

    /// Keeps the history of the sets `live` says still exist.
    pub fn retain_sets(&self, live: impl Fn(&str) -> bool) {
        self.repairs
            .lock()
            .expect("fight detector poisoned")
            .retain(|(s, _), _| live(s));
    }

    /// (set, key) pairs remembered.
    pub fn len(&self) -> usize {
        self.repairs.lock().expect("fight detector poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets a set's history (spec changed, resume requested, deleted).
    pub fn reset(&self, set: &str) {
        self.repairs
            .lock()
            .expect("fight detector poisoned")
            .retain(|(s, _), _| s != set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_repairs_in_the_window_is_a_fight() {
        let d = FightDetector::new(3, Duration::from_secs(3600));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(!d.is_fighting("s", "k", t0));
            assert_eq!(
                d.record("s", "k", t0 + Duration::from_secs(i)),
                i as usize + 1
            );
        }
        assert!(d.is_fighting("s", "k", t0 + Duration::from_secs(10)));
        assert!(!d.is_fighting("s", "other", t0));
        assert!(
            !d.is_fighting("s", "k", t0 + Duration::from_secs(3700)),
            "old repairs age out"
        );
        d.record("s", "k", t0);
        d.reset("s");
        assert!(!d.is_fighting("s", "k", t0));
    }

    #[test]
    fn churn_of_10000_keys_shrinks_back() {
        let window = Duration::from_secs(60);
        let d = FightDetector::new(3, window);
        let t0 = Instant::now();
        for i in 0..10_000 {
            d.record(&format!("ns/set{i}"), "k", t0);
        }
        // Repairs a window later sweep the expired ones as the map grows.
        let t1 = t0 + window + Duration::from_secs(1);
        for i in 0..10_000 {
            d.record("ns/live", &format!("k{i}"), t1);
        }
        assert!(d.len() <= 10_000 + MIN_SWEEP_AT, "{} entries", d.len());
        d.sweep(t1 + window + Duration::from_secs(1));
        assert_eq!(d.len(), 0, "nothing repaired within the window is kept");
        d.record("ns/a", "k", t1);
        d.retain_sets(|s| s != "ns/a");
        assert!(d.is_empty());
    }
}
