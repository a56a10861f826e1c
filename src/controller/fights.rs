//! Fight detection: a key repaired again and again within a window is
//! something else writing it; stop repairing instead of looping.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct FightDetector {
    threshold: usize,
    window: Duration,
    repairs: Mutex<HashMap<(String, String), VecDeque<Instant>>>,
}

impl FightDetector {
    pub fn new(threshold: usize, window: Duration) -> Self {
        FightDetector {
            threshold: threshold.max(1),
            window,
            repairs: Mutex::new(HashMap::new()),
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
        q.len()
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
}
