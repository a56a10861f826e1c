//! Which sets declare and own which keys on which cloud object, so the
//! planner can resolve conflicts, never remove a key another live set
//! desires, and hand ownership over (see [`crate::plan`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use crate::plan::{Claim, Labels, Role, SetId};

/// What one set claims on its object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub labels: Labels,
    pub owned: BTreeSet<String>,
    pub role: Role,
}

#[derive(Default)]
struct Inner {
    /// object key → set → its claim.
    by_object: HashMap<String, BTreeMap<SetId, Entry>>,
    /// `Kind/namespace/name` → (object key, set id), to move a set that changed target.
    by_set: HashMap<String, (String, SetId)>,
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
            let unchanged = old_object == object
                && old_id == *id
                && inner.by_object.get(object).and_then(|m| m.get(id)) == Some(entry);
            if unchanged {
                return touched;
            }
            if let Some(m) = inner.by_object.get_mut(&old_object) {
                m.remove(&old_id);
                touched.extend(m.keys().cloned());
                if m.is_empty() {
                    inner.by_object.remove(&old_object);
                }
            }
        }
        let m = inner.by_object.entry(object.to_string()).or_default();
        touched.extend(m.keys().filter(|k| *k != id).cloned());
        m.insert(id.clone(), entry.clone());
        inner
            .by_set
            .insert(set_key.to_string(), (object.to_string(), id.clone()));
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
        let mut others = vec![];
        if let Some(m) = inner.by_object.get_mut(&object) {
            m.remove(&id);
            others.extend(m.keys().cloned());
            if m.is_empty() {
                inner.by_object.remove(&object);
            }
        }
        others
    }

    /// Every indexed set (`Kind/namespace/name`).
    pub fn set_keys(&self) -> Vec<String> {
        let inner = self.inner.lock().expect("claim index poisoned");
        inner.by_set.keys().cloned().collect()
    }

    /// (sets, objects) indexed, for bounds tests.
    pub fn sizes(&self) -> (usize, usize) {
        let inner = self.inner.lock().expect("claim index poisoned");
        (inner.by_set.len(), inner.by_object.len())
    }

    /// Claims of every other set on the object.
    pub fn claims(&self, object: &str, except: &SetId) -> Vec<Claim> {
        let inner = self.inner.lock().expect("claim index poisoned");
        inner
            .by_object
            .get(object)
            .map(|m| {
                m.iter()
                    .filter(|(id, _)| *id != except)
                    .map(|(id, e)| Claim {
                        set: id.clone(),
                        labels: e.labels.clone(),
                        owned: e.owned.clone(),
                        role: e.role,
                    })
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
}
