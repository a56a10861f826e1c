//! The planner: a pure function from what a set declares, what the cloud
//! reports, what the set owns and what other sets on the same object claim,
//! to the keys to add and remove. No I/O, so every rule of the product
//! contract is decided here and property-tested.
//!
//! # Who may touch a key
//!
//! On one cloud object, a *contender* for a key is a live set in `mode: Sync`
//! (paused or not) that declares the key and does not protect it
//! (`ignoreKeys` or a provider-reserved pattern). The oldest contender
//! (creation time, then `namespace/name`) *wins* the key, and so does every
//! contender that declares the same value; a contender with another value
//! reports `KeyConflict` and never writes the key. Sets in `mode: Observe`
//! and sets being deleted are never contenders: they neither keep a key
//! alive nor win it.
//!
//! # Ownership
//!
//! A set *owns* the keys it is answerable for (`status.ownedKeys`), and only
//! owned keys are ever removed (besides `prune: All`). The rules, which keep
//! "a key some set wrote is in the cloud if and only if a live Sync set wins
//! it, or a person left it there on purpose" true after any history:
//!
//! 1. **Write-ahead.** A key is owned before the write that creates or
//!    changes it ([`Plan::owned_before_write`]), so a crash between the two
//!    never leaves a written key nobody owns.
//! 2. **Inheritance.** A Sync set that wins a key another set owns (live,
//!    in Observe, or being deleted) owns it too, even when the cloud already
//!    holds its value and nothing is written. A key nobody owns (set by hand,
//!    by another tool, or left by an `Orphan` deletion) is not taken this
//!    way: it stays the person's.
//! 3. **Hand-over.** A set lets go of an owned key that is still in the
//!    cloud only by removing it, or once a winning contender owns it. While
//!    no winner owns it, the set keeps it (and a deletion waits:
//!    [`Plan::pending_handover`]).
//! 4. **Removal.** `prune: Owned` removes owned keys the spec no longer
//!    declares and `deletionPolicy: Delete` removes every owned key, in
//!    both cases unless a contender declares the key (any value: it takes
//!    the key over). `prune: All` also removes keys nobody owns. Protected
//!    and fight-held keys are never removed.
//! 5. **Left on purpose.** `prune: None`, `deletionPolicy: Orphan`, and the
//!    deletion of a paused or Observe set remove nothing; what an Orphan-like
//!    deletion leaves is nobody's from then on, like a label set by hand.
//! 6. **Adoption.** A live Sync set with `adopt: true` owns a key nobody
//!    owns when it wins the key, may write it (not protected, not
//!    fight-held) and the cloud already holds the declared value
//!    ([`Plan::adopted`]); nothing is written. It is the person saying "this
//!    key is the set's now", so rule 2's "stays the person's" no longer
//!    applies to it: from then on the key is owned like a written one
//!    (write-ahead recorded, removed by `prune: Owned` or a `Delete`
//!    deletion). A key with another value is written as usual, a lost key
//!    is never adopted, and Observe, deleting and non-adopting sets adopt
//!    nothing.

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
    /// Creation time as seconds since the epoch (`i64::MAX` for a set not created yet).
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

/// How another set's declaration counts (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A live Sync set, paused or not: contends for the keys it declares.
    Sync,
    /// A live Observe set: declares, but neither keeps nor wins a key.
    Observe,
    /// Being deleted: its declaration no longer counts, its ownership does
    /// until it is gone (so a winner can inherit its keys).
    Deleting,
}

impl Role {
    pub fn of(mode: Mode, deleting: bool) -> Role {
        match (deleting, mode) {
            (true, _) => Role::Deleting,
            (false, Mode::Sync) => Role::Sync,
            (false, Mode::Observe) => Role::Observe,
        }
    }
}

/// Another set on the same object: what it manages and what it owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub set: SetId,
    /// The labels it declares, less the keys it protects.
    pub labels: Labels,
    /// Its `status.ownedKeys`.
    pub owned: BTreeSet<String>,
    pub role: Role,
}

impl Claim {
    /// A live Sync set that owns nothing yet.
    pub fn sync(set: SetId, labels: Labels) -> Self {
        Claim {
            set,
            labels,
            owned: BTreeSet::new(),
            role: Role::Sync,
        }
    }

    fn contends(&self) -> bool {
        self.role == Role::Sync
    }
}

/// The labels a set manages: what it declares, less what it protects.
pub fn managed(desired: &Labels, protected: &KeyMatcher) -> Labels {
    desired
        .iter()
        .filter(|(k, _)| !protected.matches(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
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
    /// Other sets on the same object (their own entry, if present, is ignored).
    pub claims: &'a [Claim],
    /// Keys the set stopped repairing after a fight (not written, not removed).
    pub held: &'a BTreeSet<String>,
    /// `spec.adopt`: take ownership of declared keys the cloud already holds
    /// with the declared value (rule 6).
    pub adopt: bool,
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
    /// key about to be added (and every key inherited), so a crash mid-write
    /// leaves no unowned key.
    pub owned_before_write: BTreeSet<String>,
    /// Ownership once every write succeeded.
    pub owned_after: BTreeSet<String>,
    /// Keys owned from now on without a write, because the set adopts them
    /// (rule 6); also part of `owned_before_write`.
    pub adopted: BTreeSet<String>,
    /// Deleting with `Delete`: owned keys left in the cloud for a contender
    /// that does not own them yet. The deletion must wait until it does, or
    /// the key would outlive every set answerable for it.
    pub pending_handover: BTreeSet<String>,
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

    /// Every key the plan adds, changes or removes.
    pub fn changed_keys(&self) -> Vec<String> {
        self.add.keys().chain(self.remove.iter()).cloned().collect()
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

/// Which declared keys a set wins and which it loses, by the contender rule
/// of the module docs. The same rule holds for an Observe set, so its report
/// says what it would do in Sync.
fn contest(
    set: &SetId,
    desired: &Labels,
    protected: &KeyMatcher,
    claims: &[Claim],
) -> (Labels, Vec<Conflict>) {
    let mut won = Labels::new();
    let mut conflicts = Vec::new();
    for (key, value) in desired {
        if protected.matches(key) {
            continue;
        }
        match oldest_contender(claims, set, key) {
            Some((winner, theirs)) if winner < set && theirs != value => conflicts.push(Conflict {
                key: key.clone(),
                ours: value.clone(),
                winner: winner.clone(),
                theirs: theirs.clone(),
            }),
            _ => {
                won.insert(key.clone(), value.clone());
            }
        }
    }
    (won, conflicts)
}

/// The oldest other contender declaring `key`, with its value.
fn oldest_contender<'c>(
    claims: &'c [Claim],
    me: &SetId,
    key: &str,
) -> Option<(&'c SetId, &'c String)> {
    claims
        .iter()
        .filter(|c| &c.set != me && c.contends())
        .filter_map(|c| c.labels.get(key).map(|v| (&c.set, v)))
        .min_by(|a, b| a.0.cmp(b.0))
}

/// Keys a Sync set wins that another set owns: it owns them too, without a
/// write (rule 2). Also what a paused or stalled set records, since it needs
/// no cloud call.
pub fn inherited(
    set: &SetId,
    desired: &Labels,
    protected: &KeyMatcher,
    owned: &BTreeSet<String>,
    claims: &[Claim],
) -> BTreeSet<String> {
    let (won, _) = contest(set, desired, protected, claims);
    inherit_from(set, &won, owned, claims)
}

/// [`inherited`] once the contest is decided.
fn inherit_from(
    set: &SetId,
    won: &Labels,
    owned: &BTreeSet<String>,
    claims: &[Claim],
) -> BTreeSet<String> {
    won.keys()
        .filter(|k| !owned.contains(*k) && owned_by_another(claims, set, k))
        .cloned()
        .collect()
}

fn owned_by_another(claims: &[Claim], me: &SetId, key: &str) -> bool {
    claims.iter().any(|c| &c.set != me && c.owned.contains(key))
}

/// What a deletion does before any cloud call (rule 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDeletion {
    /// Remove owned keys, hand the rest over, then let go.
    Clean,
    /// Let go at once and leave every label as it is: `Orphan`, or a set
    /// that was told to change nothing (paused, or in `mode: Observe`).
    Leave,
}

pub fn on_deletion(policy: DeletionPolicy, mode: Mode, paused: bool) -> OnDeletion {
    if policy == DeletionPolicy::Orphan || paused || mode == Mode::Observe {
        OnDeletion::Leave
    } else {
        OnDeletion::Clean
    }
}

/// Decides the plan. See the module docs for the rules.
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
        adopt,
    } = input;
    let set: &SetId = set;
    let live_sync = *mode == Mode::Sync && deleting.is_none();

    let contended = |key: &str| {
        claims
            .iter()
            .any(|c| &c.set != set && c.contends() && c.labels.contains_key(key))
    };
    // Whether a set that wins `key` (counting this one while it contends)
    // other than this one already owns it, so this one may let go (rule 3).
    let winner_owns = |key: &str| {
        let mut winning = oldest_contender(claims, set, key);
        if live_sync
            && !protected.matches(key)
            && let Some(ours) = desired.get(key)
            && winning.is_none_or(|(w, _)| set < w)
        {
            winning = Some((set, ours));
        }
        let Some((_, value)) = winning else {
            return false;
        };
        claims.iter().any(|c| {
            &c.set != set
                && c.contends()
                && c.labels.get(key) == Some(value)
                && c.owned.contains(key)
        })
    };

    let (won, conflicts) = if deleting.is_none() {
        contest(set, desired, protected, claims)
    } else {
        (Labels::new(), Vec::new())
    };
    let lost: BTreeSet<&str> = conflicts.iter().map(|c| c.key.as_str()).collect();
    let writable: Labels = won
        .iter()
        .filter(|(k, _)| !held.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    let add: Labels = writable
        .iter()
        .filter(|(k, v)| observed.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    let removable = |key: &str| -> bool {
        observed.contains_key(key)
            && !protected.matches(key)
            && !held.contains(key)
            && !contended(key)
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

    // Ownership: keep what we win and can still see (or are about to write);
    // let go of a key we do not win only when it is gone from the cloud or
    // a winner owns it (rule 3).
    let keep = |k: &String| {
        if won.contains_key(k) {
            observed.contains_key(k) || writable.contains_key(k) || owned_by_another(claims, set, k)
        } else {
            observed.contains_key(k) && !winner_owns(k)
        }
    };

    if let Some(policy) = deleting {
        let remove = if *mode == Mode::Sync {
            remove
        } else {
            BTreeSet::new()
        };
        let owned_before_write: BTreeSet<String> = owned
            .iter()
            .filter(|k| observed.contains_key(*k))
            .cloned()
            .collect();
        let owned_after: BTreeSet<String> = owned_before_write
            .iter()
            .filter(|k| !remove.contains(*k))
            .cloned()
            .collect();
        let pending_handover = match policy {
            DeletionPolicy::Delete if *mode == Mode::Sync => owned_after
                .iter()
                .filter(|k| contended(k) && !winner_owns(k))
                .cloned()
                .collect(),
            _ => BTreeSet::new(),
        };
        return Plan {
            add,
            remove,
            conflicts,
            drift,
            owned_before_write,
            owned_after,
            adopted: BTreeSet::new(),
            pending_handover,
        };
    }

    if *mode == Mode::Observe {
        // Observe reports the same differences but never writes, and claims
        // nothing new: ownership only ever shrinks, by the same rules.
        let observed_owned: BTreeSet<String> = owned.iter().filter(|k| keep(k)).cloned().collect();
        return Plan {
            add: Labels::new(),
            remove: BTreeSet::new(),
            conflicts,
            drift,
            owned_before_write: observed_owned.clone(),
            owned_after: observed_owned,
            adopted: BTreeSet::new(),
            pending_handover: BTreeSet::new(),
        };
    }

    let mut owned_before_write: BTreeSet<String> =
        owned.iter().filter(|k| keep(k)).cloned().collect();
    owned_before_write.extend(add.keys().cloned());
    owned_before_write.extend(inherit_from(set, &won, owned, claims));
    // Rule 6: what is left unowned among the keys already right.
    let adopted: BTreeSet<String> = if *adopt {
        writable
            .iter()
            .filter(|(k, v)| observed.get(*k) == Some(*v) && !owned_before_write.contains(*k))
            .map(|(k, _)| k.clone())
            .collect()
    } else {
        BTreeSet::new()
    };
    owned_before_write.extend(adopted.iter().cloned());
    let owned_after: BTreeSet<String> = owned_before_write
        .iter()
        .filter(|k| !remove.contains(*k))
        .cloned()
        .collect();

    Plan {
        add,
        remove,
        conflicts,
        drift,
        owned_before_write,
        owned_after,
        adopted,
        pending_handover: BTreeSet::new(),
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
        adopt: bool,
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
                adopt: false,
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
                adopt: self.adopt,
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
    fn an_adopting_set_owns_keys_already_right_without_writing() {
        let mut c = Case::new(
            &[("system.a", "1"), ("system.b", "2"), ("system.c", "3")],
            &[("system.a", "1"), ("system.b", "0")],
            &[],
        );
        c.adopt = true;
        let p = c.run();
        assert_eq!(p.add, labels(&[("system.b", "2"), ("system.c", "3")]));
        assert_eq!(p.adopted, keys(&["system.a"]), "only the key already right");
        assert_eq!(
            p.owned_before_write,
            keys(&["system.a", "system.b", "system.c"]),
            "recorded before any write, like a written key"
        );

        // Once adopted, dropping it from the spec removes it (prune: Owned).
        let mut later = Case::new(&[], &[("system.a", "1")], &["system.a"]);
        later.adopt = true;
        assert_eq!(later.run().remove, keys(&["system.a"]));
    }

    #[test]
    fn adoption_respects_conflicts_protection_fights_and_mode() {
        let mut c = Case::new(
            &[("system.a", "mine"), ("system.b", "1"), ("acs:x", "1")],
            &[("system.a", "mine"), ("system.b", "1"), ("acs:x", "1")],
            &[],
        );
        c.adopt = true;
        c.protected = KeyMatcher::new(["acs:*"]).unwrap();
        c.held = keys(&["system.b"]);
        c.claims = vec![Claim::sync(
            SetId::new(50, "ns/older"),
            labels(&[("system.a", "theirs")]),
        )];
        let p = c.run();
        assert!(p.adopted.is_empty(), "lost, held and protected keys: {p:?}");
        assert!(p.owned_after.is_empty());

        let mut c = Case::new(&[("system.a", "1")], &[("system.a", "1")], &[]);
        c.adopt = true;
        c.mode = Mode::Observe;
        assert!(c.run().owned_after.is_empty(), "observe adopts nothing");
        c.mode = Mode::Sync;
        c.deleting = Some(DeletionPolicy::Delete);
        assert!(c.run().owned_after.is_empty(), "nor does a deletion");
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
        c.claims = vec![Claim::sync(
            SetId::new(50, "ns/older"),
            labels(&[("system.a", "theirs")]),
        )];
        let p = c.run();
        assert_eq!(p.add, labels(&[("system.b", "2")]));
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(p.conflicts[0].winner.name, "ns/older");

        // The older set sees the newer one and simply writes its value.
        let mut c = Case::new(&[("system.a", "theirs")], &[("system.a", "mine")], &[]);
        c.set = SetId::new(50, "ns/older");
        c.claims = vec![Claim::sync(
            SetId::new(100, "ns/me"),
            labels(&[("system.a", "mine")]),
        )];
        let p = c.run();
        assert!(p.conflicts.is_empty());
        assert_eq!(p.add, labels(&[("system.a", "theirs")]));
    }

    #[test]
    fn same_age_sets_are_ordered_by_name() {
        let mut c = Case::new(&[("system.a", "1")], &[], &[]);
        c.set = SetId::new(100, "ns/b");
        c.claims = vec![Claim::sync(
            SetId::new(100, "ns/a"),
            labels(&[("system.a", "2")]),
        )];
        assert_eq!(c.run().conflicts.len(), 1);
    }

    #[test]
    fn losing_a_key_gives_up_its_ownership_without_removing_it() {
        let mut c = Case::new(
            &[("system.a", "mine")],
            &[("system.a", "mine")],
            &["system.a"],
        );
        c.claims = vec![Claim::sync(
            SetId::new(50, "ns/older"),
            labels(&[("system.a", "theirs")]),
        )];
        let p = c.run();
        assert!(p.remove.is_empty());
        assert!(
            p.owned_after.contains("system.a"),
            "kept until the winner owns it: letting go now would leave it nobody's"
        );

        c.claims[0].owned = keys(&["system.a"]);
        let p = c.run();
        assert!(p.remove.is_empty());
        assert!(!p.owned_after.contains("system.a"), "handed over");
    }

    #[test]
    fn delete_removes_owned_keys_except_those_another_set_desires() {
        let mut c = Case::new(
            &[("system.a", "1"), ("system.b", "2")],
            &[("system.a", "1"), ("system.b", "2"), ("x", "3")],
            &["system.a", "system.b"],
        );
        c.deleting = Some(DeletionPolicy::Delete);
        c.claims = vec![Claim::sync(
            SetId::new(200, "ns/other"),
            labels(&[("system.b", "2")]),
        )];
        let p = c.run();
        assert_eq!(p.remove, keys(&["system.a"]));
        assert!(p.add.is_empty());
        assert_eq!(
            p.pending_handover,
            keys(&["system.b"]),
            "left for ns/other, which does not own it yet"
        );
        c.claims[0].owned = keys(&["system.b"]);
        assert!(c.run().pending_handover.is_empty());
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
    fn a_winner_inherits_a_key_another_set_owns_without_writing() {
        let mut c = Case::new(
            &[("system.x", "1"), ("system.y", "2")],
            &[("system.x", "1")],
            &[],
        );
        let mut owner = Claim::sync(SetId::new(50, "ns/a"), labels(&[("system.x", "1")]));
        owner.owned = keys(&["system.x"]);
        c.claims = vec![owner];
        let p = c.run();
        assert_eq!(p.add, labels(&[("system.y", "2")]));
        assert_eq!(p.owned_before_write, keys(&["system.x", "system.y"]));
        assert_eq!(p.owned_after, keys(&["system.x", "system.y"]));
        assert_eq!(
            inherited(&c.set, &c.desired, &c.protected, &c.owned, &c.claims),
            keys(&["system.x"]),
            "the same answer without reading the cloud (paused or stalled sets)"
        );

        // Observe inherits nothing; nor does a Sync set that loses the key.
        c.mode = Mode::Observe;
        assert!(c.run().owned_after.is_empty());
        c.mode = Mode::Sync;
        c.desired = labels(&[("system.x", "other")]);
        c.observed = labels(&[("system.x", "1")]);
        assert!(c.run().owned_after.is_empty());
    }

    #[test]
    fn observe_and_deleting_sets_neither_keep_nor_win_a_key() {
        for role in [Role::Observe, Role::Deleting] {
            // Same value, another value: neither stops the owner's removal.
            for value in ["1", "2"] {
                let mut c = Case::new(&[], &[("system.x", "1")], &["system.x"]);
                c.deleting = Some(DeletionPolicy::Delete);
                let mut other = Claim::sync(SetId::new(1, "ns/b"), labels(&[("system.x", value)]));
                other.role = role;
                c.claims = vec![other.clone()];
                let p = c.run();
                assert_eq!(p.remove, keys(&["system.x"]), "{role:?} {value}");
                assert!(p.pending_handover.is_empty());

                // Nor does an older one win a key from a Sync set.
                let mut c = Case::new(&[("system.x", "9")], &[], &[]);
                c.claims = vec![other];
                let p = c.run();
                assert!(p.conflicts.is_empty(), "{role:?}");
                assert_eq!(p.add, labels(&[("system.x", "9")]));
            }
        }
    }

    #[test]
    fn a_contender_with_the_winning_value_wins_with_the_oldest() {
        // a (oldest) and me say 1, b (older than me) says 2: b loses, I win.
        let mut c = Case::new(&[("system.x", "1")], &[], &[]);
        c.claims = vec![
            Claim::sync(SetId::new(1, "ns/a"), labels(&[("system.x", "1")])),
            Claim::sync(SetId::new(2, "ns/b"), labels(&[("system.x", "2")])),
        ];
        let p = c.run();
        assert!(p.conflicts.is_empty());
        assert_eq!(p.add, labels(&[("system.x", "1")]));
    }

    #[test]
    fn a_protected_declaration_is_no_claim() {
        let mut c = Case::new(&[("system.x", "mine")], &[], &[]);
        c.claims = vec![Claim::sync(SetId::new(1, "ns/older"), Labels::new())];
        let declared_but_ignored = managed(
            &labels(&[("system.x", "theirs")]),
            &KeyMatcher::new(["system.*"]).unwrap(),
        );
        c.claims[0].labels = declared_but_ignored;
        assert!(c.run().conflicts.is_empty());
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
