//! Which watch events start a reconcile: a set's spec (generation), our
//! annotations, finalizers or deletion changed. Our own status writes come
//! back through the watch and must not.
//!
//! kube-runtime's `predicate_filter` does the same but keys its memory by
//! three owned strings per set (name, namespace, uid: ~200 B a set with the
//! table, 2 MB of the heap at 10,000 sets under heaptrack). This keeps two
//! hashes and a time per set, with the same rules: an entry not seen for
//! `TTL` counts as new, and the table is swept once per `TTL`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use kube::Resource;

use super::reconcile;

/// As kube-runtime's default: long enough that a quiet set does not
/// retrigger, short enough that deleted sets' entries go.
const TTL: Duration = Duration::from_secs(3600);

/// The trigger hash of each set the watch has handed on.
pub struct Triggers {
    /// hash of (namespace, name, uid) → (trigger hash, last seen).
    seen: HashMap<u64, (u64, Instant)>,
    swept: Instant,
}

impl Default for Triggers {
    fn default() -> Self {
        Triggers {
            seen: HashMap::new(),
            swept: Instant::now(),
        }
    }
}

impl Triggers {
    /// Whether `obj` should start a reconcile, remembering what it was.
    pub fn changed<K: Resource>(&mut self, obj: &K) -> bool {
        self.changed_at(obj, Instant::now())
    }

    fn changed_at<K: Resource>(&mut self, obj: &K, now: Instant) -> bool {
        if now.duration_since(self.swept) >= TTL {
            self.seen
                .retain(|_, (_, last)| now.duration_since(*last) < TTL);
            self.swept = now;
        }
        let meta = obj.meta();
        // The uid is part of the identity: a set deleted and created again
        // under its name is new, whatever its generation.
        let id = hash_of(&(&meta.namespace, &meta.name, &meta.uid));
        let trigger = trigger_hash(obj);
        match self.seen.insert(id, (trigger, now)) {
            Some((before, last)) => before != trigger || now.duration_since(last) >= TTL,
            None => true,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

fn hash_of(t: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

/// What re-triggers: the spec (generation), our annotations, finalizers and
/// deletion. Status writes do not.
fn trigger_hash<K: Resource>(obj: &K) -> u64 {
    let meta = obj.meta();
    let mut h = DefaultHasher::new();
    meta.generation.hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut h);
    if let Some(a) = &meta.annotations {
        a.get(reconcile::PAUSED).hash(&mut h);
        a.get(reconcile::RECONCILE_REQUESTED_AT).hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn obj(name: &str, uid: &str, generation: i64) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                generation: Some(generation),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn only_what_a_reconcile_reads_triggers() {
        let mut t = Triggers::default();
        let a = obj("a", "u1", 1);
        assert!(t.changed(&a), "first sight");
        let mut status_write = a.clone();
        status_write.metadata.resource_version = Some("2".into());
        status_write.metadata.labels = Some([("x".into(), "y".into())].into());
        assert!(!t.changed(&status_write), "a status write or label edit");
        assert!(t.changed(&obj("a", "u1", 2)), "a spec change");
        let mut paused = obj("a", "u1", 2);
        paused.metadata.annotations = Some([(reconcile::PAUSED.into(), "true".into())].into());
        assert!(t.changed(&paused), "paused");
        let mut finalized = paused.clone();
        finalized.metadata.finalizers = Some(vec!["f".into()]);
        assert!(t.changed(&finalized), "a finalizer");
        let mut deleting = finalized.clone();
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert!(t.changed(&deleting), "deletion");
        assert!(!t.changed(&deleting), "the same again");
        assert!(t.changed(&obj("a", "u2", 1)), "recreated under its name");
        assert!(t.changed(&obj("b", "u3", 1)), "another set");
    }

    #[test]
    fn an_entry_not_seen_for_the_ttl_counts_as_new_and_is_swept() {
        let mut t = Triggers::default();
        let start = t.swept;
        assert!(t.changed_at(&obj("a", "u1", 1), start));
        assert!(t.changed_at(&obj("b", "u2", 1), start));
        let later = start + TTL / 2;
        assert!(!t.changed_at(&obj("b", "u2", 1), later));
        let much_later = start + TTL;
        assert!(t.changed_at(&obj("a", "u1", 1), much_later), "stale");
        assert_eq!(t.len(), 2, "b was seen within the TTL");
        let sweep = much_later + TTL;
        assert!(t.changed_at(&obj("c", "u3", 1), sweep));
        assert_eq!(t.len(), 1, "a and b swept");
    }
}
