//! The planner: a pure function from what a set declares, what the cloud
//! reports, what the set owns and what other sets on the same object claim,
//! to the keys to add and remove. No I/O, so every rule of DESIGN.md §2 is
//! decided here and property-tested.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{DeletionPolicy, Mode, Prune};

mod keys;
#[cfg(test)]
mod proptests;

pub use keys::KeyMatcher;

pub type Labels = BTreeMap<String, String>;

/// Orders sets for conflict resolution: the older set wins, then the smaller
/// `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetId {
    /// Creation time as seconds since the epoch (0 for manifests without one, as in the CLI).
    pub created: i64,
    /// `namespace/name`.
    pub name: String,
}

impl SetId {
    pub fn new(created: i64, name: impl Into<String>) -> Self {
        SetId {
            created,
            name: name.into(),
        }
    }
}

/// Another live set on the same object and the labels it declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub set: SetId,
    pub labels: Labels,
}

/// Everything the planner decides from.
#[derive(Clone, Debug)]
pub struct PlanInput<'a> {
    pub set: &'a SetId,
    pub desired: &'a Labels,
    pub observed: &'a Labels,
    pub owned: &'a BTreeSet<String>,
    pub prune: Prune,
    pub mode: Mode,
    /// `Some` when the set is being deleted.
    pub deleting: Option<DeletionPolicy>,
    /// Keys never written or removed (spec.ignoreKeys plus provider-reserved patterns).
    pub protected: &'a KeyMatcher,
    /// Other live sets on the same object.
    pub claims: &'a [Claim],
    /// Keys the set stopped repairing after a fight (not written, not removed).
    pub held: &'a BTreeSet<String>,
}

/// A key this set declares but another, older set wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub key: String,
    pub ours: String,
    pub winner: SetId,
    pub theirs: String,
}

/// A key whose cloud value differs from what the set wants.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Drift {
    pub key: String,
    pub desired: Option<String>,
    pub actual: Option<String>,
}

/// What to do. Empty `add` and `remove` mean the object is converged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Keys to create or overwrite, with their values.
    pub add: Labels,
    /// Keys to remove.
    pub remove: BTreeSet<String>,
    pub conflicts: Vec<Conflict>,
    /// Differences between the cloud and the set's intent; in `Observe` mode
    /// this is all the plan reports.
    pub drift: Vec<Drift>,
    /// Ownership to record *before* any write: current ownership plus every
    /// key about to be added, so a crash mid-write leaves no unowned key.
    pub owned_before_write: BTreeSet<String>,
    /// Ownership once every write succeeded.
    pub owned_after: BTreeSet<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// The adds in calls of at most `per_call` labels.
    pub fn add_batches(&self, per_call: usize) -> Vec<Vec<(String, String)>> {
        let items: Vec<(String, String)> = self
            .add
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        items.chunks(per_call.max(1)).map(<[_]>::to_vec).collect()
    }

    /// The removes in calls of at most `per_call` keys.
    pub fn remove_batches(&self, per_call: usize) -> Vec<Vec<String>> {
        let items: Vec<String> = self.remove.iter().cloned().collect();
        items.chunks(per_call.max(1)).map(<[_]>::to_vec).collect()
    }

    /// The labels the object holds once the plan is applied.
    pub fn result_of(&self, observed: &Labels) -> Labels {
        let mut out = observed.clone();
        for key in &self.remove {
            out.remove(key);
        }
        out.extend(self.add.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }
}

/// Decides the plan. See the module docs and DESIGN.md §2 for the rules.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let PlanInput {
        set,
        desired,
        observed,
        owned,
        prune,
        mode,
        deleting,
        protected,
        claims,
        held,
    } = input;

    // Keys another live set declares: never removed by us, whatever the value.
    let claimed_elsewhere: BTreeSet<&str> = claims
        .iter()
        .filter(|c| &c.set != *set)
        .flat_map(|c| c.labels.keys().map(String::as_str))
        .collect();

    // Which declared keys this set may write: not protected, not held, and
    // not won by an older set that wants another value.
    let mut conflicts = Vec::new();
    let mut writable: Labels = Labels::new();
    if deleting.is_none() {
        for (key, value) in desired.iter() {
            if protected.matches(key) || held.contains(key) {
                continue;
            }
            let winner = claims
                .iter()
                .filter(|c| &c.set != *set && c.set < **set)
                .filter_map(|c| {
                    c.labels
                        .get(key)
                        .filter(|v| *v != value)
                        .map(|v| (&c.set, v))
                })
                .min_by(|a, b| a.0.cmp(b.0));
            match winner {
                Some((winner, theirs)) => conflicts.push(Conflict {
                    key: key.clone(),
                    ours: value.clone(),
                    winner: winner.clone(),
                    theirs: theirs.clone(),
                }),
                None => {
                    writable.insert(key.clone(), value.clone());
                }
            }
        }
    }
    let lost: BTreeSet<&str> = conflicts.iter().map(|c| c.key.as_str()).collect();

    let add: Labels = writable
        .iter()
        .filter(|(k, v)| observed.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    let removable = |key: &str| -> bool {
        observed.contains_key(key)
            && !protected.matches(key)
            && !held.contains(key)
            && !claimed_elsewhere.contains(key)
            && !writable.contains_key(key)
            && !lost.contains(key)
    };
    let remove: BTreeSet<String> = match (deleting, prune) {
        (Some(DeletionPolicy::Orphan), _) => BTreeSet::new(),
        (Some(DeletionPolicy::Delete), _) => {
            owned.iter().filter(|k| removable(k)).cloned().collect()
        }
        (None, Prune::None) => BTreeSet::new(),
        (None, Prune::Owned) => owned
            .iter()
            .filter(|k| !desired.contains_key(*k) && removable(k))
            .cloned()
            .collect(),
        (None, Prune::All) => observed
            .keys()
            .filter(|k| !desired.contains_key(*k) && removable(k))
            .cloned()
            .collect(),
    };

    let mut drift: Vec<Drift> = add
        .iter()
        .map(|(k, v)| Drift {
            key: k.clone(),
            desired: Some(v.clone()),
            actual: observed.get(k).cloned(),
        })
        .collect();
    drift.extend(remove.iter().map(|k| Drift {
        key: k.clone(),
        desired: None,
        actual: observed.get(k).cloned(),
    }));
    drift.sort();

    // Ownership: keep what we still own and can still see (or are about to
    // write); give up keys another set won, and keys gone from the cloud that
    // we no longer want.
    let keep = |k: &String| {
        !lost.contains(k.as_str()) && (observed.contains_key(k) || writable.contains_key(k))
    };
    let mut owned_before_write: BTreeSet<String> =
        owned.iter().filter(|k| keep(k)).cloned().collect();
    if deleting.is_some() {
        owned_before_write = owned
            .iter()
            .filter(|k| observed.contains_key(*k))
            .cloned()
            .collect();
    }
    owned_before_write.extend(add.keys().cloned());
    let owned_after: BTreeSet<String> = owned_before_write
        .iter()
        .filter(|k| !remove.contains(*k))
        .cloned()
        .collect();

    if *mode == Mode::Observe {
        // Observe reports the same differences but never writes, and claims
        // nothing new: ownership only ever shrinks to what is still visible.
        let observed_owned: BTreeSet<String> = owned.iter().filter(|k| keep(k)).cloned().collect();
        return Plan {
            add: Labels::new(),
            remove: BTreeSet::new(),
            conflicts,
            drift,
            owned_before_write: observed_owned.clone(),
            owned_after: observed_owned,
        };
    }

    Plan {
        add,
        remove,
        conflicts,
        drift,
        owned_before_write,
        owned_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn keys(ks: &[&str]) -> BTreeSet<String> {
        ks.iter().map(|k| k.to_string()).collect()
    }

    struct Case {
        set: SetId,
        desired: Labels,
        observed: Labels,
        owned: BTreeSet<String>,
        prune: Prune,
        mode: Mode,
        deleting: Option<DeletionPolicy>,
        protected: KeyMatcher,
        claims: Vec<Claim>,
        held: BTreeSet<String>,
    }

    impl Case {
        fn new(desired: &[(&str, &str)], observed: &[(&str, &str)], owned: &[&str]) -> Self {
            Case {
                set: SetId::new(100, "ns/me"),
                desired: labels(desired),
                observed: labels(observed),
                owned: keys(owned),
                prune: Prune::Owned,
                mode: Mode::Sync,
                deleting: None,
                protected: KeyMatcher::default(),
                claims: vec![],
                held: BTreeSet::new(),
            }
        }
        fn run(&self) -> Plan {
            plan(&PlanInput {
                set: &self.set,
                desired: &self.desired,
                observed: &self.observed,
                owned: &self.owned,
                prune: self.prune,
                mode: self.mode,
                deleting: self.deleting,
                protected: &self.protected,
                claims: &self.claims,
                held: &self.held,
            })
        }
    }

    #[test]
    fn adds_missing_and_changed_keys_and_owns_them_before_writing() {
        let p = Case::new(
            &[("system.a", "1"), ("system.b", "2")],
            &[("system.a", "0"), ("other", "x")],
            &[],
        )
        .run();
        assert_eq!(p.add, labels(&[("system.a", "1"), ("system.b", "2")]));
        assert!(p.remove.is_empty(), "never removes a key it does not own");
        assert_eq!(p.owned_before_write, keys(&["system.a", "system.b"]));
    }

    #[test]
    fn key_already_right_is_not_claimed() {
        let p = Case::new(&[("system.a", "1")], &[("system.a", "1")], &[]).run();
        assert!(p.is_empty());
        assert!(
            p.owned_after.is_empty(),
            "a key someone else set stays theirs"
        );
    }

    #[test]
    fn prune_owned_removes_only_owned_undeclared_keys() {
        let p = Case::new(
            &[("system.a", "1")],
            &[("system.a", "1"), ("system.b", "2"), ("system.c", "3")],
            &["system.a", "system.b"],
        )
        .run();
        assert_eq!(p.remove, keys(&["system.b"]));
        assert_eq!(p.owned_after, keys(&["system.a"]));
    }

    #[test]
    fn prune_all_removes_every_undeclared_key_but_protected_ones() {
        let mut c = Case::new(
            &[("system.a", "1")],
            &[("system.a", "1"), ("system.b", "2"), ("acs:x", "y")],
            &[],
        );
        c.prune = Prune::All;
        c.protected = KeyMatcher::new(["acs:*"]).unwrap();
        assert_eq!(c.run().remove, keys(&["system.b"]));
    }

    #[test]
    fn prune_none_never_removes() {
        let mut c = Case::new(&[], &[("system.a", "1")], &["system.a"]);
        c.prune = Prune::None;
        let p = c.run();
        assert!(p.remove.is_empty());
        assert_eq!(
            p.owned_after,
            keys(&["system.a"]),
            "still ours, for a later prune"
        );
    }

    #[test]
    fn observe_reports_drift_and_writes_nothing() {
        let mut c = Case::new(
            &[("system.a", "1")],
            &[("system.a", "0"), ("system.b", "2")],
            &["system.b"],
        );
        c.mode = Mode::Observe;
        let p = c.run();
        assert!(p.is_empty());
        assert_eq!(
            p.drift,
            vec![
                Drift {
                    key: "system.a".into(),
                    desired: Some("1".into()),
                    actual: Some("0".into())
                },
                Drift {
                    key: "system.b".into(),
                    desired: None,
                    actual: Some("2".into())
                },
            ]
        );
        assert_eq!(
            p.owned_before_write,
            keys(&["system.b"]),
            "observe claims nothing new"
        );
    }

    #[test]
    fn older_set_wins_a_conflicting_key() {
        let mut c = Case::new(
            &[("system.a", "mine"), ("system.b", "2")],
            &[("system.a", "theirs")],
            &[],
        );
        c.claims = vec![Claim {
            set: SetId::new(50, "ns/older"),
            labels: labels(&[("system.a", "theirs")]),
        }];
        let p = c.run();
        assert_eq!(p.add, labels(&[("system.b", "2")]));
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(p.conflicts[0].winner.name, "ns/older");

        // The older set sees the newer one and simply writes its value.
        let mut c = Case::new(&[("system.a", "theirs")], &[("system.a", "mine")], &[]);
        c.set = SetId::new(50, "ns/older");
        c.claims = vec![Claim {
            set: SetId::new(100, "ns/me"),
            labels: labels(&[("system.a", "mine")]),
        }];
        let p = c.run();
        assert!(p.conflicts.is_empty());
        assert_eq!(p.add, labels(&[("system.a", "theirs")]));
    }

    #[test]
    fn same_age_sets_are_ordered_by_name() {
        let mut c = Case::new(&[("system.a", "1")], &[], &[]);
        c.set = SetId::new(100, "ns/b");
        c.claims = vec![Claim {
            set: SetId::new(100, "ns/a"),
            labels: labels(&[("system.a", "2")]),
        }];
        assert_eq!(c.run().conflicts.len(), 1);
    }

    #[test]
    fn losing_a_key_gives_up_its_ownership_without_removing_it() {
        let mut c = Case::new(
            &[("system.a", "mine")],
            &[("system.a", "mine")],
            &["system.a"],
        );
        c.claims = vec![Claim {
            set: SetId::new(50, "ns/older"),
            labels: labels(&[("system.a", "theirs")]),
        }];
        let p = c.run();
        assert!(p.remove.is_empty());
        assert!(!p.owned_after.contains("system.a"));
    }

    #[test]
    fn delete_removes_owned_keys_except_those_another_set_desires() {
        let mut c = Case::new(
            &[("system.a", "1"), ("system.b", "2")],
            &[("system.a", "1"), ("system.b", "2"), ("x", "3")],
            &["system.a", "system.b"],
        );
        c.deleting = Some(DeletionPolicy::Delete);
        c.claims = vec![Claim {
            set: SetId::new(200, "ns/other"),
            labels: labels(&[("system.b", "2")]),
        }];
        let p = c.run();
        assert_eq!(p.remove, keys(&["system.a"]));
        assert!(p.add.is_empty());
    }

    #[test]
    fn orphan_removes_nothing() {
        let mut c = Case::new(&[("system.a", "1")], &[("system.a", "1")], &["system.a"]);
        c.deleting = Some(DeletionPolicy::Orphan);
        assert!(c.run().is_empty());
    }

    #[test]
    fn held_keys_are_neither_repaired_nor_removed() {
        let mut c = Case::new(&[("system.a", "1")], &[("system.a", "9")], &["system.a"]);
        c.held = keys(&["system.a"]);
        let p = c.run();
        assert!(p.is_empty());
        assert_eq!(p.owned_after, keys(&["system.a"]));
    }

    #[test]
    fn batches_respect_the_call_limit() {
        let desired: Vec<(String, String)> = (0..250)
            .map(|i| (format!("system.k{i:03}"), "v".to_string()))
            .collect();
        let mut c = Case::new(&[], &[], &[]);
        c.desired = desired.into_iter().collect();
        let p = c.run();
        let batches = p.add_batches(100);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
    }
}
