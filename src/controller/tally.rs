//! Per-set counts summed per kind (owned keys, conflicting keys), for the
//! gauges: kept as running totals, since summing 10,000 entries on every
//! reconcile made a restart's first pass quadratic.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::reconcile::key_hash;

#[derive(Default)]
struct Inner {
    /// By [`key_hash`] of the set key.
    per_set: HashMap<u64, (&'static str, usize)>,
    totals: HashMap<&'static str, usize>,
}

impl Inner {
    fn take(&mut self, set: u64) {
        if let Some((kind, old)) = self.per_set.remove(&set)
            && let Some(t) = self.totals.get_mut(kind)
        {
            *t -= old;
        }
    }
}

#[derive(Default)]
pub struct Tally(Mutex<Inner>);

impl Tally {
    /// Sets (or with `None` forgets) the count of `set`; returns `kind`'s total.
    pub fn set(&self, set: &str, kind: &'static str, count: Option<usize>) -> usize {
        let set = key_hash(set);
        let mut inner = self.0.lock().expect("tally poisoned");
        inner.take(set);
        if let Some(c) = count {
            inner.per_set.insert(set, (kind, c));
            *inner.totals.entry(kind).or_default() += c;
        }
        inner.totals.get(kind).copied().unwrap_or_default()
    }

    /// Forgets every set not in `live` (by [`key_hash`]).
    pub fn retain(&self, live: &HashSet<u64>) {
        let mut inner = self.0.lock().expect("tally poisoned");
        let gone: Vec<u64> = inner
            .per_set
            .keys()
            .filter(|k| !live.contains(k))
            .copied()
            .collect();
        for k in gone {
            inner.take(k);
        }
    }

    pub fn total(&self, kind: &str) -> usize {
        let inner = self.0.lock().expect("tally poisoned");
        inner.totals.get(kind).copied().unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("tally poisoned").per_set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The running totals equal a fresh sum after any sequence of sets,
        /// forgets and retains.
        #[test]
        fn totals_equal_the_sum(ops in proptest::collection::vec((0u8..6, 0u8..2, proptest::option::of(0usize..5), any::<bool>()), 1..60)) {
            let t = Tally::default();
            let mut model: HashMap<String, (&'static str, usize)> = HashMap::new();
            for (set, kind, count, retain) in ops {
                let kind = ["ImageLabelSet", "DatasetLabelSet"][usize::from(kind)];
                let set = format!("s{set}");
                if retain {
                    let live: HashSet<u64> = (0u8..6)
                        .map(|i| format!("s{i}"))
                        .filter(|k| *k != set)
                        .map(|k| key_hash(&k))
                        .collect();
                    t.retain(&live);
                    model.remove(&set);
                } else {
                    let total = t.set(&set, kind, count);
                    match count {
                        Some(c) => { model.insert(set.clone(), (kind, c)); }
                        None => { model.remove(&set); }
                    }
                    let want: usize = model.values().filter(|(k, _)| *k == kind).map(|(_, c)| c).sum();
                    prop_assert_eq!(total, want);
                }
                for kind in ["ImageLabelSet", "DatasetLabelSet"] {
                    let want: usize = model.values().filter(|(k, _)| *k == kind).map(|(_, c)| c).sum();
                    prop_assert_eq!(t.total(kind), want);
                }
                prop_assert_eq!(t.len(), model.len());
            }
        }
    }
}
