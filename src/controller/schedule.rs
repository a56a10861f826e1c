//! When each set that needs no pass now gets its next one: a settled set's
//! drift check, a held set's next look, a check that found no free slot.
//!
//! kube-runtime's scheduler would keep these too, but as a delay-queue slot
//! and a map entry each holding the set's four-string `ObjectRef`: 567 B a
//! set, 5.7 MB of the heap at 10,000 sets (heaptrack), for what is a time
//! and a name. Here a set is one shared key and two times (~140 B). When a
//! pass comes due, the set is woken through its kind's channel and goes
//! through the controller's queue like any other trigger; only failures'
//! backoff stays in kube-runtime's scheduler (few sets, and only while
//! failing).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::context::Ctx;
use crate::api::{DatasetLabelSet, ImageLabelSet, LabelSet};

#[derive(Default)]
struct Inner {
    /// Set key (`Kind/namespace/name`) → when its next pass is due.
    due: HashMap<Arc<str>, Instant>,
    /// The same, soonest first. An entry whose time no longer matches `due`
    /// was superseded (or forgotten) and is dropped when it comes up.
    queue: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
}

impl Inner {
    /// Superseded entries pile up while sets are reconciled often (each
    /// pass forgets and reschedules); rebuilt from `due` when they dominate.
    fn compact(&mut self) {
        if self.queue.len() > 2 * self.due.len() + 1024 {
            self.queue = self
                .due
                .iter()
                .map(|(k, at)| Reverse((*at, k.clone())))
                .collect();
        }
    }
}

/// The next passes of both kinds' sets.
#[derive(Default)]
pub struct PassSchedule {
    inner: Mutex<Inner>,
    /// Woken when an entry becomes the soonest.
    sooner: Notify,
}

impl PassSchedule {
    /// Schedules `key`'s next pass `after` from now, replacing any.
    pub fn at(&self, key: &str, after: Duration) {
        let at = Instant::now() + after;
        let mut inner = self.inner.lock().expect("schedule poisoned");
        let key: Arc<str> = match inner.due.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => key.into(),
        };
        let soonest = inner.queue.peek().is_none_or(|Reverse((t, _))| at < *t);
        inner.due.insert(key.clone(), at);
        inner.queue.push(Reverse((at, key)));
        inner.compact();
        drop(inner);
        if soonest {
            self.sooner.notify_one();
        }
    }

    /// Drops `key`'s next pass: a pass is running (its result schedules the
    /// next) or the set is gone.
    pub fn forget(&self, key: &str) {
        self.inner
            .lock()
            .expect("schedule poisoned")
            .due
            .remove(key);
    }

    /// How long until `key`'s next pass, if one is scheduled.
    pub fn due_in(&self, key: &str) -> Option<Duration> {
        let inner = self.inner.lock().expect("schedule poisoned");
        inner
            .due
            .get(key)
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("schedule poisoned").due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the keys due by `now`, and when the next one is due.
    fn take_due(&self, now: Instant) -> (Vec<Arc<str>>, Option<Instant>) {
        let mut inner = self.inner.lock().expect("schedule poisoned");
        let mut due_now = Vec::new();
        while let Some(Reverse((at, _))) = inner.queue.peek() {
            if *at > now {
                return (due_now, Some(*at));
            }
            let Some(Reverse((at, key))) = inner.queue.pop() else {
                break;
            };
            if inner.due.get(&key) == Some(&at) {
                inner.due.remove(&key);
                due_now.push(key);
            }
        }
        (due_now, None)
    }
}

/// Wakes sets as their passes come due, until the process ends.
pub async fn run(ctx: Arc<Ctx>) {
    loop {
        let (due_now, next) = ctx.passes.take_due(Instant::now());
        for key in due_now {
            wake(&ctx, &key);
        }
        let sooner = ctx.passes.sooner.notified();
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = sooner => {}
                }
            }
            None => sooner.await,
        }
    }
}

/// Queues a pass of the set `key` names (`Kind/namespace/name`). Not a
/// change: the pass decides for itself whether it is a drift check.
fn wake(ctx: &Ctx, key: &str) {
    let mut parts = key.splitn(3, '/');
    let (Some(kind), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    // A closed channel means the controllers are shutting down.
    if kind == ImageLabelSet::KIND {
        let _ = ctx.wake_images.send(ObjectRef::new(name).within(ns));
    } else if kind == DatasetLabelSet::KIND {
        let _ = ctx.wake_datasets.send(ObjectRef::new(name).within(ns));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn passes_come_due_in_time_order_and_the_latest_schedule_wins() {
        let s = PassSchedule::default();
        s.at("K/ns/a", Duration::from_secs(30));
        s.at("K/ns/b", Duration::from_secs(10));
        s.at("K/ns/c", Duration::from_secs(20));
        // Rescheduled: only the later time counts.
        s.at("K/ns/b", Duration::from_secs(40));
        s.forget("K/ns/c");
        assert_eq!(s.len(), 2);
        let start = Instant::now();
        let (now, next) = s.take_due(start + Duration::from_secs(25));
        assert!(now.is_empty(), "{now:?}: b moved on, c forgotten");
        assert_eq!(next, Some(start + Duration::from_secs(30)));
        let (now, _) = s.take_due(start + Duration::from_secs(35));
        assert_eq!(now, vec![Arc::<str>::from("K/ns/a")]);
        let (now, next) = s.take_due(start + Duration::from_secs(45));
        assert_eq!(now, vec![Arc::<str>::from("K/ns/b")]);
        assert_eq!(next, None);
        assert!(s.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn superseded_entries_do_not_pile_up() {
        let s = PassSchedule::default();
        for i in 0..10_000u64 {
            s.at("K/ns/a", Duration::from_secs(1 + i));
        }
        let queued = s.inner.lock().unwrap().queue.len();
        assert!(queued <= 2 + 1024 + 1, "{queued} queued for one set");
        assert_eq!(s.due_in("K/ns/a"), Some(Duration::from_secs(10_000)));
    }
}
