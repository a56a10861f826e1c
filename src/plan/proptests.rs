//! Invariants of the planner over arbitrary states.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

const KEYS: &[&str] = &[
    "system.a",
    "system.b",
    "system.c",
    "system.d",
    "system.dsw.os",
    "acs:x",
];
const VALUES: &[&str] = &["1", "2", "3"];

fn labels_strategy() -> impl Strategy<Value = Labels> {
    proptest::collection::btree_map(
        proptest::sample::select(KEYS).prop_map(String::from),
        proptest::sample::select(VALUES).prop_map(String::from),
        0..KEYS.len(),
    )
}

fn keys_strategy() -> impl Strategy<Value = BTreeSet<String>> {
    proptest::collection::btree_set(
        proptest::sample::select(KEYS).prop_map(String::from),
        0..KEYS.len(),
    )
}

fn prune_strategy() -> impl Strategy<Value = Prune> {
    prop_oneof![Just(Prune::Owned), Just(Prune::All), Just(Prune::None)]
}

fn role_strategy() -> impl Strategy<Value = Role> {
    prop_oneof![3 => Just(Role::Sync), 1 => Just(Role::Observe), 1 => Just(Role::Deleting)]
}

fn deleting_strategy() -> impl Strategy<Value = Option<DeletionPolicy>> {
    prop_oneof![3 => Just(None), 1 => Just(Some(DeletionPolicy::Delete)), 1 => Just(Some(DeletionPolicy::Orphan))]
}

#[derive(Debug, Clone)]
struct State {
    desired: Labels,
    observed: Labels,
    owned: BTreeSet<String>,
    prune: Prune,
    deleting: Option<DeletionPolicy>,
    claims: Vec<Claim>,
    held: BTreeSet<String>,
    protect_dsw: bool,
    adopt: bool,
}

fn state_strategy() -> impl Strategy<Value = State> {
    (
        labels_strategy(),
        labels_strategy(),
        keys_strategy(),
        prune_strategy(),
        deleting_strategy(),
        proptest::collection::vec(
            (
                0i64..200,
                labels_strategy(),
                keys_strategy(),
                role_strategy(),
            ),
            0..3,
        ),
        keys_strategy(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(desired, observed, owned, prune, deleting, claims, held, protect_dsw, adopt)| State {
                desired,
                observed,
                owned,
                prune,
                deleting,
                claims: claims
                    .into_iter()
                    .enumerate()
                    .map(|(i, (created, labels, owned, role))| Claim {
                        set: SetId::new(created, format!("ns/other{i}")),
                        labels,
                        owned,
                        role,
                    })
                    .collect(),
                held,
                protect_dsw,
                adopt,
            },
        )
}

fn protected(s: &State) -> KeyMatcher {
    if s.protect_dsw {
        KeyMatcher::new(["system.dsw.*", "acs:*"]).unwrap()
    } else {
        KeyMatcher::new(["acs:*"]).unwrap()
    }
}

fn run(s: &State, mode: Mode) -> Plan {
    let me = SetId::new(100, "ns/me");
    let protected = protected(s);
    plan(&PlanInput {
        set: &me,
        desired: &s.desired,
        observed: &s.observed,
        owned: &s.owned,
        prune: s.prune,
        mode,
        deleting: s.deleting,
        protected: &protected,
        claims: &s.claims,
        held: &s.held,
        adopt: s.adopt,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// After the plan, every key the set may write holds its desired value.
    #[test]
    fn applying_the_plan_yields_the_desired_labels(s in state_strategy()) {
        let s = State { deleting: None, ..s };
        let p = run(&s, Mode::Sync);
        let result = p.result_of(&s.observed);
        let protected = protected(&s);
        let lost: BTreeSet<&str> = p.conflicts.iter().map(|c| c.key.as_str()).collect();
        for (k, v) in &s.desired {
            if protected.matches(k) || s.held.contains(k) || lost.contains(k.as_str()) {
                continue;
            }
            prop_assert_eq!(result.get(k), Some(v), "key {}", k);
        }
    }

    /// A key neither desired nor owned is never removed unless prune is All.
    #[test]
    fn unowned_keys_survive_unless_prune_all(s in state_strategy()) {
        let p = run(&s, Mode::Sync);
        for k in &p.remove {
            let owned = s.owned.contains(k);
            prop_assert!(owned || (s.prune == Prune::All && s.deleting.is_none()), "removed {} neither owned nor under prune All", k);
            prop_assert!(s.observed.contains_key(k), "removes only keys that exist");
        }
    }

    /// Protected keys, held keys and keys other sets declare are never touched.
    #[test]
    fn protected_held_and_claimed_keys_are_never_removed(s in state_strategy()) {
        let p = run(&s, Mode::Sync);
        let protected = protected(&s);
        for k in &p.remove {
            prop_assert!(!protected.matches(k));
            prop_assert!(!s.held.contains(k));
            prop_assert!(!s.claims.iter().any(|c| c.role == Role::Sync && c.labels.contains_key(k)));
        }
        for k in p.add.keys() {
            prop_assert!(!protected.matches(k));
            prop_assert!(!s.held.contains(k));
        }
    }

    /// Planning again on the state the plan produces yields nothing to do.
    #[test]
    fn a_converged_state_plans_nothing(s in state_strategy()) {
        let p = run(&s, Mode::Sync);
        let after = State { observed: p.result_of(&s.observed), owned: p.owned_after.clone(), ..s.clone() };
        let again = run(&after, Mode::Sync);
        prop_assert!(again.is_empty(), "second plan not empty: {:?}", again);
        prop_assert!(again.drift.is_empty(), "drift after converging: {:?}", again.drift);
        // Re-planning neither claims nor gives up a key.
        prop_assert_eq!(&again.owned_before_write, &p.owned_after);
        prop_assert_eq!(&again.owned_after, &p.owned_after, "ownership moved on a converged state");
    }

    /// No plan adds and removes the same key.
    #[test]
    fn never_adds_and_removes_one_key(s in state_strategy()) {
        let p = run(&s, Mode::Sync);
        prop_assert!(p.add.keys().all(|k| !p.remove.contains(k)));
    }

    /// Every key added is owned before the write; ownership never includes a
    /// key another older set won.
    #[test]
    fn write_ahead_ownership(s in state_strategy()) {
        let p = run(&s, Mode::Sync);
        for k in p.add.keys() {
            prop_assert!(p.owned_before_write.contains(k));
            prop_assert!(p.owned_after.contains(k));
        }
        for c in &p.conflicts {
            // A lost key stays ours only while it is in the cloud and no
            // winner owns it (hand-over), and was ours to begin with.
            if p.owned_after.contains(&c.key) {
                prop_assert!(s.owned.contains(&c.key) && s.observed.contains_key(&c.key));
                let winner_owns = s.claims.iter().any(|o| o.role == Role::Sync
                    && o.labels.get(&c.key) == Some(&c.theirs) && o.owned.contains(&c.key));
                prop_assert!(!winner_owns, "kept {} although a winner owns it", c.key);
            }
            prop_assert!(c.winner < SetId::new(100, "ns/me"));
        }
        for k in &p.remove {
            prop_assert!(!p.owned_after.contains(k));
        }
    }

    /// Observe mode never writes, claims nothing new, and reports exactly
    /// the changes Sync would make: each drift entry is a key whose value
    /// applying the Sync plan changes, from the observed value to the new
    /// one, and every declared key the set may write that differs is there.
    #[test]
    fn observe_writes_nothing_and_reports_the_sync_plan(s in state_strategy()) {
        let observe = run(&s, Mode::Observe);
        let sync = run(&s, Mode::Sync);
        prop_assert!(observe.is_empty());
        let claimed: Vec<_> = observe.owned_after.difference(&s.owned).collect();
        prop_assert!(claimed.is_empty(), "observe claimed {:?}", claimed);
        prop_assert_eq!(&observe.owned_before_write, &observe.owned_after);
        prop_assert_eq!(&observe.conflicts, &sync.conflicts);

        // The drift, derived from the labels before and after Sync's plan
        // rather than from the plan's own fields.
        let after = sync.result_of(&s.observed);
        let changed: BTreeSet<&String> = s.observed.keys().chain(after.keys())
            .filter(|k| s.observed.get(*k) != after.get(*k))
            .collect();
        let drift = |k: &String, desired: Option<&String>| Drift {
            key: k.clone(),
            desired: desired.cloned(),
            actual: s.observed.get(k).cloned(),
        };
        let expected: Vec<Drift> = changed.into_iter().map(|k| drift(k, after.get(k))).collect();
        prop_assert_eq!(&observe.drift, &expected);
        prop_assert_eq!(observe.drift.is_empty(), sync.is_empty(), "drift reported iff Sync has work");

        // Every declared, writable key whose cloud value differs is reported.
        let protected = protected(&s);
        let lost: BTreeSet<&str> = observe.conflicts.iter().map(|c| c.key.as_str()).collect();
        if s.deleting.is_none() {
            for (k, v) in &s.desired {
                let may_write = !protected.matches(k) && !s.held.contains(k) && !lost.contains(k.as_str());
                if may_write && s.observed.get(k) != Some(v) {
                    let want = drift(k, Some(v));
                    prop_assert!(observe.drift.contains(&want), "missing drift {:?}", want);
                }
            }
        }
    }

    /// Two sets never both write one key with different values.
    #[test]
    fn two_sets_never_fight(a in labels_strategy(), b in labels_strategy(), observed in labels_strategy(), ta in 0i64..3, tb in 0i64..3) {
        let sa = SetId::new(ta, "ns/a");
        let sb = SetId::new(tb, "ns/b");
        let none = KeyMatcher::default();
        let empty = BTreeSet::new();
        let claim_a = [Claim::sync(sa.clone(), a.clone())];
        let claim_b = [Claim::sync(sb.clone(), b.clone())];
        let mk = |set: &SetId, desired: &Labels, claims: &[Claim]| plan(&PlanInput {
            set, desired, observed: &observed, owned: &empty, prune: Prune::Owned, mode: Mode::Sync,
            deleting: None, protected: &none, claims, held: &empty, adopt: false,
        });
        let pa = mk(&sa, &a, &claim_b);
        let pb = mk(&sb, &b, &claim_a);
        for (k, va) in &pa.add {
            if let Some(vb) = pb.add.get(k) {
                prop_assert_eq!(va, vb, "both write {} with different values", k);
            }
        }
    }

    /// Nothing is let go of while it is still in the cloud unless it is
    /// removed or a winning Sync set owns it (hand-over); a deletion that
    /// leaves an owned key for a contender waits for it.
    #[test]
    fn ownership_of_a_visible_key_ends_only_by_removal_or_hand_over(s in state_strategy()) {
        let p = run(&s, Mode::Sync);
        for k in s.owned.iter().filter(|k| s.observed.contains_key(*k)) {
            if p.owned_after.contains(k) || p.remove.contains(k) || p.pending_handover.contains(k) {
                continue;
            }
            let handed = s.claims.iter().any(|c| c.role == Role::Sync && c.owned.contains(k)
                && c.labels.contains_key(k));
            prop_assert!(handed, "let go of {} with no owner left: {:?}", k, p);
        }
        if s.deleting == Some(DeletionPolicy::Delete) {
            for k in &p.pending_handover {
                prop_assert!(p.owned_after.contains(k));
                prop_assert!(s.claims.iter().any(|c| c.role == Role::Sync && c.labels.contains_key(k)));
            }
        } else {
            prop_assert!(p.pending_handover.is_empty());
        }
    }

    /// Only keys some other set owns are taken without a write, and only by
    /// a live Sync set that wins them; a key nobody owns is taken without a
    /// write only by adoption.
    #[test]
    fn inheritance_needs_an_owner_and_a_win(s in state_strategy()) {
        let p = run(&s, Mode::Sync);
        let lost: BTreeSet<&str> = p.conflicts.iter().map(|c| c.key.as_str()).collect();
        for k in p.owned_after.iter().filter(|k| !s.owned.contains(*k) && !p.add.contains_key(*k)) {
            prop_assert!(s.deleting.is_none());
            prop_assert!(s.desired.contains_key(k) && !lost.contains(k.as_str()));
            let from_owner = s.claims.iter().any(|c| c.owned.contains(k));
            prop_assert!(from_owner || p.adopted.contains(k), "took {} from nobody", k);
        }
    }

    /// Adoption takes exactly the declared keys that are already right, won,
    /// writable and nobody's, writes none of them, and records them ahead.
    #[test]
    fn adoption_takes_exactly_the_unowned_keys_already_right(s in state_strategy()) {
        let p = run(&s, Mode::Sync);
        if !s.adopt || s.deleting.is_some() {
            prop_assert!(p.adopted.is_empty());
            return Ok(());
        }
        let protected = protected(&s);
        let lost: BTreeSet<&str> = p.conflicts.iter().map(|c| c.key.as_str()).collect();
        let owned_elsewhere = |k: &String| s.claims.iter().any(|c| c.owned.contains(k));
        let expected: BTreeSet<String> = s.desired.iter()
            .filter(|(k, v)| s.observed.get(*k) == Some(*v))
            .filter(|(k, _)| !protected.matches(k) && !s.held.contains(*k) && !lost.contains(k.as_str()))
            .filter(|(k, _)| !s.owned.contains(*k) && !owned_elsewhere(k))
            .map(|(k, _)| k.clone())
            .collect();
        prop_assert_eq!(&p.adopted, &expected);
        for k in &p.adopted {
            prop_assert!(!p.add.contains_key(k) && !p.remove.contains(k));
            prop_assert!(p.owned_before_write.contains(k) && p.owned_after.contains(k));
        }
        // Without adoption the same state writes the same, and only ownership differs.
        let plain = run(&State { adopt: false, ..s.clone() }, Mode::Sync);
        prop_assert_eq!(&plain.add, &p.add);
        prop_assert_eq!(&plain.remove, &p.remove);
        let diff: BTreeSet<String> = p.owned_after.difference(&plain.owned_after).cloned().collect();
        prop_assert_eq!(diff, expected);
    }

    /// An adopted key is answerable like a written one: once the spec drops
    /// it, `prune: Owned` removes it.
    #[test]
    fn an_adopted_key_dropped_from_the_spec_is_removed(s in state_strategy()) {
        let s = State { deleting: None, prune: Prune::Owned, adopt: true, ..s };
        let p = run(&s, Mode::Sync);
        let after = State { observed: p.result_of(&s.observed), owned: p.owned_after.clone(), ..s.clone() };
        for k in &p.adopted {
            let mut dropped = after.clone();
            dropped.desired.remove(k);
            let contended = s.claims.iter().any(|c| c.role == Role::Sync && c.labels.contains_key(k));
            if !contended {
                prop_assert!(run(&dropped, Mode::Sync).remove.contains(k), "{} not removed", k);
            }
        }
    }
}
