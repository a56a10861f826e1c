//! Which sets declare and own which keys on which cloud object, so the
//! planner can resolve conflicts, never remove a key another live set
//! desires, and hand ownership over (see [`crate::plan`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use internment::ArcIntern;

use crate::plan::{Claim, Labels, Role, SetId};

/// What one set claims on its object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub labels: Labels,
    pub owned: BTreeSet<String>,
    pub role: Role,
}

/// A shared string: label keys and common values repeat across thousands
/// of sets, and each is kept once.
type Shared = ArcIntern<str>;

/// An [`Entry`] as the index keeps it: one sorted slice of shared strings.
/// A map per entry cost ~2 KB a set at 10,000 sets (a B-tree node holds 11
/// pairs however few there are); this is a few hundred bytes.
#[derive(Debug)]
struct Stored {
    /// Label keys and values in turn (sorted by key), then the owned keys
    /// (sorted): one allocation for both.
    strings: Box<[Shared]>,
    /// How many of `strings` are label keys and values.
    label_strings: usize,
    role: Role,
}

impl Stored {
    fn new(e: &Entry) -> Self {
        let labels = e.labels.iter().flat_map(|(k, v)| [k, v]);
        Stored {
            strings: labels
                .chain(&e.owned)
                .map(|s| Shared::from(s.as_str()))
                .collect(),
            label_strings: 2 * e.labels.len(),
            role: e.role,
        }
    }

    fn labels(&self) -> impl Iterator<Item = (&Shared, &Shared)> {
        self.strings[..self.label_strings]
            .chunks_exact(2)
            .map(|kv| (&kv[0], &kv[1]))
    }

    fn owned(&self) -> &[Shared] {
        &self.strings[self.label_strings..]
    }

    /// Equal to `e`: both sides are sorted by key.
    fn same_as(&self, e: &Entry) -> bool {
        self.role == e.role
            && self.label_strings == 2 * e.labels.len()
            && self.owned().len() == e.owned.len()
            && self
                .labels()
                .zip(&e.labels)
                .all(|((k, v), (ek, ev))| **k == **ek && **v == **ev)
            && self.owned().iter().zip(&e.owned).all(|(k, ek)| **k == **ek)
    }

    fn claim(&self, set: &SetId) -> Claim {
        Claim {
            set: set.clone(),
            labels: self
                .labels()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            owned: self.owned().iter().map(|k| k.to_string()).collect(),
            role: self.role,
        }
    }
}

/// The sets on one object, ordered by [`SetId`]; almost always one.
type OnObject = Vec<(SetId, Stored)>;

#[derive(Default)]
struct Inner {
    /// object key → its sets' claims.
    by_object: HashMap<Arc<str>, OnObject>,
    /// `Kind/namespace/name` → (object key, set id), to move a set that
    /// changed target. The object key is the one `by_object` holds.
    by_set: HashMap<Box<str>, (Arc<str>, SetId)>,
}

impl Inner {
    fn take(&mut self, object: &str, id: &SetId) -> Vec<SetId> {
        let Some(on) = self.by_object.get_mut(object) else {
            return vec![];
        };
        on.retain(|(i, _)| i != id);
        let others = on.iter().map(|(i, _)| i.clone()).collect();
        if on.is_empty() {
            self.by_object.remove(object);
        }
        others
    }
}

/// The claim index shared by all reconciles of one kind.
#[derive(Default)]
pub struct ClaimIndex {
    inner: Mutex<Inner>,
}

impl ClaimIndex {
    /// Records what a set declares and owns. Returns the other sets on the
    /// object(s) it touched when its claim changed, so they can be reconciled
    /// again (a new owner or a deletion may hand a key over to them).
    pub fn upsert(&self, set_key: &str, object: &str, id: &SetId, entry: &Entry) -> Vec<SetId> {
        let mut inner = self.inner.lock().expect("claim index poisoned");
        let mut touched = Vec::new();
        if let Some((old_object, old_id)) = inner.by_set.get(set_key).cloned() {
            let unchanged = *old_object == *object
                && old_id == *id
                && inner.by_object.get(object).is_some_and(|on| {
                    on.iter()
                        .any(|(i, stored)| i == id && stored.same_as(entry))
                });
            if unchanged {
                return touched;
            }
            touched.extend(inner.take(&old_object, &old_id));
        }
        let object: Arc<str> = match inner.by_object.get_key_value(object) {
            Some((k, _)) => k.clone(),
            None => object.into(),
        };
        let on = inner.by_object.entry(object.clone()).or_default();
        touched.extend(on.iter().map(|(i, _)| i).filter(|i| *i != id).cloned());
        on.retain(|(i, _)| i != id);
        let at = on.partition_point(|(i, _)| i < id);
        on.insert(at, (id.clone(), Stored::new(entry)));
        on.shrink_to_fit();
        inner.by_set.insert(set_key.into(), (object, id.clone()));
        touched.sort();
        touched.dedup();
        touched
    }

    /// Forgets a set (deleted). Returns the other sets on its object.
    pub fn remove(&self, set_key: &str) -> Vec<SetId> {
        let mut inner = self.inner.lock().expect("claim index poisoned");
        let Some((object, id)) = inner.by_set.remove(set_key) else {
            return vec![];
        };
        inner.take(&object, &id)
    }

    /// Every indexed set (`Kind/namespace/name`).
    pub fn set_keys(&self) -> Vec<String> {
        let inner = self.inner.lock().expect("claim index poisoned");
        inner.by_set.keys().map(|k| k.to_string()).collect()
    }

    /// (sets, objects) indexed, for bounds tests.
    pub fn sizes(&self) -> (usize, usize) {
        let inner = self.inner.lock().expect("claim index poisoned");
        (inner.by_set.len(), inner.by_object.len())
    }

    /// Claims of every other set on the object, oldest first.
    pub fn claims(&self, object: &str, except: &SetId) -> Vec<Claim> {
        let inner = self.inner.lock().expect("claim index poisoned");
        inner
            .by_object
            .get(object)
            .map(|on| {
                on.iter()
                    .filter(|(id, _)| id != except)
                    .map(|(id, stored)| stored.claim(id))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(k: &str, v: &str) -> Entry {
        Entry {
            labels: [(k.to_string(), v.to_string())].into(),
            owned: BTreeSet::new(),
            role: Role::Sync,
        }
    }

    #[test]
    fn tracks_claims_and_moves() {
        let idx = ClaimIndex::default();
        let a = SetId::new(1, "ns/a");
        let b = SetId::new(2, "ns/b");
        assert!(idx.upsert("I/ns/a", "obj1", &a, &l("k", "1")).is_empty());
        assert_eq!(
            idx.upsert("I/ns/b", "obj1", &b, &l("k", "2")),
            vec![a.clone()]
        );
        assert_eq!(idx.claims("obj1", &b).len(), 1);
        assert!(
            idx.upsert("I/ns/b", "obj1", &b, &l("k", "2")).is_empty(),
            "unchanged claim wakes nobody"
        );
        // b moves to another object: a must be told.
        assert_eq!(
            idx.upsert("I/ns/b", "obj2", &b, &l("k", "2")),
            vec![a.clone()]
        );
        assert!(idx.claims("obj1", &a).is_empty());
        // A change of ownership or role wakes the others too.
        let mut owning = l("k", "2");
        owning.owned.insert("k".into());
        assert_eq!(idx.upsert("I/ns/a", "obj2", &a, &owning), vec![b.clone()]);
        owning.role = Role::Deleting;
        assert_eq!(idx.upsert("I/ns/a", "obj2", &a, &owning), vec![b.clone()]);
        assert_eq!(idx.claims("obj2", &b)[0].role, Role::Deleting);
        assert_eq!(idx.remove("I/ns/a"), vec![b.clone()]);
        assert_eq!(idx.remove("I/ns/b"), Vec::<SetId>::new());
    }

    /// The compact index answers as a plain map of maps would, under any
    /// sequence of upserts, moves and removals.
    mod against_a_model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        #[derive(Clone, Debug)]
        enum Op {
            Upsert {
                set: u8,
                object: u8,
                created: i64,
                entry: Entry,
            },
            Remove {
                set: u8,
            },
        }

        fn entry() -> impl Strategy<Value = Entry> {
            (
                proptest::collection::btree_map("[ab]", "[01]", 0..3),
                proptest::collection::btree_set("[ab]", 0..3),
                prop_oneof![Just(Role::Sync), Just(Role::Observe), Just(Role::Deleting)],
            )
                .prop_map(|(labels, owned, role)| Entry {
                    labels,
                    owned,
                    role,
                })
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                3 => (0u8..5, 0u8..3, 0i64..3, entry())
                    .prop_map(|(set, object, created, entry)| Op::Upsert { set, object, created, entry }),
                1 => (0u8..5).prop_map(|set| Op::Remove { set }),
            ]
        }

        /// object → set id → entry, and set key → (object, id).
        #[derive(Default)]
        struct Model {
            by_object: BTreeMap<String, BTreeMap<SetId, Entry>>,
            by_set: BTreeMap<String, (String, SetId)>,
        }

        impl Model {
            fn drop_from(&mut self, object: &str, id: &SetId) -> Vec<SetId> {
                let m = self.by_object.entry(object.to_string()).or_default();
                m.remove(id);
                let others = m.keys().cloned().collect();
                if m.is_empty() {
                    self.by_object.remove(object);
                }
                others
            }

            fn upsert(&mut self, key: &str, object: &str, id: &SetId, e: &Entry) -> Vec<SetId> {
                let mut touched = vec![];
                if let Some((o, i)) = self.by_set.get(key).cloned() {
                    if o == object
                        && i == *id
                        && self.by_object.get(object).and_then(|m| m.get(id)) == Some(e)
                    {
                        return touched;
                    }
                    touched = self.drop_from(&o, &i);
                }
                let m = self.by_object.entry(object.to_string()).or_default();
                touched.extend(m.keys().filter(|k| *k != id).cloned());
                m.insert(id.clone(), e.clone());
                self.by_set
                    .insert(key.to_string(), (object.to_string(), id.clone()));
                touched.sort();
                touched.dedup();
                touched
            }

            fn remove(&mut self, key: &str) -> Vec<SetId> {
                match self.by_set.remove(key) {
                    Some((o, i)) => self.drop_from(&o, &i),
                    None => vec![],
                }
            }
        }

        proptest! {
            #[test]
            fn same_answers_as_a_map_of_maps(ops in proptest::collection::vec(op(), 1..40)) {
                let idx = ClaimIndex::default();
                let mut model = Model::default();
                for op in ops {
                    match op {
                        Op::Upsert { set, object, created, entry } => {
                            let key = format!("I/ns/s{set}");
                            let id = SetId::new(created, format!("ns/s{set}"));
                            let object = format!("obj{object}");
                            prop_assert_eq!(
                                idx.upsert(&key, &object, &id, &entry),
                                model.upsert(&key, &object, &id, &entry)
                            );
                        }
                        Op::Remove { set } => {
                            let key = format!("I/ns/s{set}");
                            prop_assert_eq!(idx.remove(&key), model.remove(&key));
                        }
                    }
                    for object in 0..3 {
                        let object = format!("obj{object}");
                        let nobody = SetId::new(-1, "none");
                        let want: Vec<Claim> = model.by_object.get(&object).map(|m| {
                            m.iter().map(|(id, e)| Claim {
                                set: id.clone(),
                                labels: e.labels.clone(),
                                owned: e.owned.clone(),
                                role: e.role,
                            }).collect()
                        }).unwrap_or_default();
                        prop_assert_eq!(idx.claims(&object, &nobody), want);
                    }
                    prop_assert_eq!(idx.sizes(), (model.by_set.len(), model.by_object.len()));
                }
            }
        }
    }
}
