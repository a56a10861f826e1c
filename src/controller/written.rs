//! What this process last wrote into each set's status, by the set's uid.
//!
//! The watch can hand a reconcile an object older than our own last status
//! write; ownership read from it would forget keys just claimed and leave
//! them behind, and a status compared against it would be written again.
//! Only this process (the leader) writes status, so what it wrote last is
//! the newest there is. Dropped when the set is gone.
//!
//! One entry per set for both facts, with the owned keys as shared strings
//! (the same few keys repeat across thousands of sets): two maps of owned
//! `String`s were ~300 B a set (heaptrack, 10,000 sets).

use std::collections::HashMap;
use std::sync::Mutex;

use internment::ArcIntern;

#[derive(Default)]
struct Entry {
    owned: Box<[ArcIntern<str>]>,
    status: u64,
}

#[derive(Default)]
pub struct Written(Mutex<HashMap<Box<str>, Entry>>);

impl Written {
    /// Records a status write the API server took: the owned keys in it and
    /// its hash ([`super::status::status_hash`]).
    pub fn remember(&self, uid: &str, owned: &[String], status: u64) {
        let entry = Entry {
            owned: owned.iter().map(|k| ArcIntern::from(k.as_str())).collect(),
            status,
        };
        self.0
            .lock()
            .expect("written poisoned")
            .insert(uid.into(), entry);
    }

    /// The owned keys last written for the set, if any.
    pub fn owned(&self, uid: &str) -> Option<Vec<String>> {
        let map = self.0.lock().expect("written poisoned");
        map.get(uid)
            .map(|e| e.owned.iter().map(|k| k.to_string()).collect())
    }

    /// The hash of the status last written for the set, if any.
    pub fn status(&self, uid: &str) -> Option<u64> {
        let map = self.0.lock().expect("written poisoned");
        map.get(uid).map(|e| e.status)
    }

    pub fn forget(&self, uid: &str) {
        self.0.lock().expect("written poisoned").remove(uid);
    }

    /// Keeps only the sets `keep` accepts (by uid).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.0
            .lock()
            .expect("written poisoned")
            .retain(|uid, _| keep(uid));
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("written poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_write_per_set_until_forgotten() {
        let w = Written::default();
        assert_eq!(w.owned("u1"), None);
        w.remember("u1", &["a".into(), "b".into()], 7);
        w.remember("u2", &["a".into()], 8);
        w.remember("u1", &["b".into()], 9);
        assert_eq!(w.owned("u1"), Some(vec!["b".to_string()]));
        assert_eq!(w.status("u1"), Some(9));
        assert_eq!(w.owned("u2"), Some(vec!["a".to_string()]));
        w.forget("u1");
        assert_eq!((w.owned("u1"), w.status("u1")), (None, None));
        w.retain(|uid| uid != "u2");
        assert!(w.is_empty());
    }
}
