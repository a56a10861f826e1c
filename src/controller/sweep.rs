//! Per-set state never outlives its set. A set can go away without this
//! process seeing a Delete (a watch gap, an API server restart, a finalizer
//! removed while the operator was down): its claim would keep winning keys
//! no live set declares, and its entries in the per-set maps would stay
//! forever. Two ways out: every re-list of the watch replaces the kind's
//! claims with what the list returned ([`Relist`]), and a periodic check
//! drops whatever the watch cache no longer holds ([`check`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;

use super::cached::Cached;
use super::claims::wake_others;
use super::context::Ctx;
use super::metrics::Metrics;
use super::reconcile::key_hash;
use super::resource::LabelSetResource;

/// The set keys one watch stream listed since its last `Init`.
#[derive(Default)]
pub struct Relist {
    seen: Option<HashSet<String>>,
}

impl Relist {
    /// A re-list begins (`Event::Init`).
    pub fn begin(&mut self) {
        self.seen = Some(HashSet::new());
    }

    /// A set the re-list returned (`Event::InitApply`).
    pub fn saw(&mut self, key: &str) {
        if let Some(seen) = &mut self.seen {
            seen.insert(key.to_string());
        }
    }

    /// The re-list is complete (`Event::InitDone`): the indexed sets of
    /// `kind` it did not return.
    pub fn done(&mut self, kind: &str, indexed: Vec<String>) -> Vec<String> {
        let Some(seen) = self.seen.take() else {
            return vec![];
        };
        let prefix = format!("{kind}/");
        indexed
            .into_iter()
            .filter(|k| k.starts_with(&prefix) && !seen.contains(k))
            .collect()
    }
}

/// Forgets everything kept about a set that no longer exists (any path:
/// Delete event, re-list, periodic check) and wakes the sets on its object.
pub fn forget_set<K: LabelSetResource>(ctx: &Ctx, key: &str) {
    forget_state::<K>(ctx, key);
    ctx.failures.lock().expect("failures poisoned").remove(key);
    ctx.passes.forget(key);
    wake_others::<K>(ctx.index.remove(key), ctx);
}

/// The per-set maps a deletion ends. The claim and the failure count stay:
/// a deleting set keeps its claim until its cleanup is done, and a failing
/// cleanup keeps backing off.
pub fn forget_state<K: LabelSetResource>(ctx: &Ctx, key: &str) {
    ctx.stalls.lock().expect("stalls poisoned").remove(key);
    ctx.fights.reset(key);
    ctx.record_counts(key, K::KIND, None);
}

fn live_keys<K: LabelSetResource>(objs: &[Arc<Cached<K>>]) -> HashSet<String> {
    objs.iter().map(|o| o.key()).collect()
}

/// Drops per-set state of sets the watch caches no longer hold, and
/// entries that expired. Returns the sets forgotten.
pub fn check(ctx: &Ctx) -> Vec<String> {
    let images = ctx.image_store.state();
    let datasets = ctx.dataset_store.state();
    let mut live = live_keys(&images);
    live.extend(live_keys(&datasets));
    let uids: HashSet<String> = images
        .iter()
        .filter_map(|o| o.uid())
        .chain(datasets.iter().filter_map(|o| o.uid()))
        .collect();
    let mut gone: Vec<String> = ctx
        .index
        .set_keys()
        .into_iter()
        .filter(|k| !live.contains(k))
        .collect();
    // Claims first (waking the sets that shared an object); the maps below
    // are filtered in one pass each, not once per vanished set.
    for key in &gone {
        let others = ctx.index.remove(key);
        if key.starts_with("DatasetLabelSet/") {
            wake_others::<crate::api::DatasetLabelSet>(others, ctx);
        } else {
            wake_others::<crate::api::ImageLabelSet>(others, ctx);
        }
    }
    let keep = |k: &String| live.contains(k);
    let live_hashes: HashSet<u64> = live.iter().map(|k| key_hash(k)).collect();
    ctx.failures
        .lock()
        .expect("failures poisoned")
        .retain(|k, _| keep(k));
    ctx.stalls
        .lock()
        .expect("stalls poisoned")
        .retain(|k, _| keep(k));
    for (map, gauge) in [
        (&ctx.managed, &ctx.metrics.labels_managed),
        (&ctx.conflicting, &ctx.metrics.conflicts),
    ] {
        map.retain(&live_hashes);
        for kind in ["ImageLabelSet", "DatasetLabelSet"] {
            gauge
                .get_or_create(&Metrics::kind(kind))
                .set(map.total(kind) as i64);
        }
    }
    ctx.fights.retain_sets(|s| live.contains(s));
    ctx.fights.sweep(Instant::now());
    ctx.written.retain(|uid| uids.contains(uid));
    gone.sort();
    gone
}

/// Runs [`check`] every `every`, once the watch caches are primed.
pub async fn periodically(ctx: Arc<Ctx>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if ctx.primed.get().is_none() {
            continue;
        }
        let gone = check(&ctx);
        if !gone.is_empty() {
            tracing::info!(sets = ?gone, "claims of sets the watch cache no longer holds dropped");
        }
        // Workspace snapshots nobody used for an hour (a rotated Secret, sets
        // gone, a long resync interval) are dropped with what they hold.
        ctx.snapshots.expire(SNAPSHOT_KEEP);
    }
}

/// How long an unused workspace snapshot is kept.
const SNAPSHOT_KEEP: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::index::{ClaimIndex, Entry};
    use crate::plan::{Role, SetId};

    #[test]
    fn a_relist_drops_the_sets_it_did_not_return() {
        let idx = ClaimIndex::default();
        let entry = Entry {
            labels: [("k".to_string(), "v".to_string())].into(),
            owned: ["k".to_string()].into(),
            role: Role::Sync,
        };
        for i in 0..10_000 {
            idx.upsert(
                &format!("ImageLabelSet/ns/s{i}"),
                &format!("obj{}", i % 100),
                &SetId::new(i, format!("ns/s{i}")),
                &entry,
            );
        }
        idx.upsert(
            "DatasetLabelSet/ns/d",
            "d-1",
            &SetId::new(1, "ns/d"),
            &entry,
        );
        let mut r = Relist::default();
        assert!(
            r.done("ImageLabelSet", idx.set_keys()).is_empty(),
            "no re-list in progress"
        );
        r.begin();
        r.saw("ImageLabelSet/ns/s7");
        let gone = r.done("ImageLabelSet", idx.set_keys());
        assert_eq!(gone.len(), 9_999, "the other kind's sets are not touched");
        for k in gone {
            idx.remove(&k);
        }
        assert_eq!(idx.sizes(), (2, 2));
        assert_eq!(idx.claims("obj7", &SetId::new(0, "ns/x")).len(), 1);
    }

    fn image_set(name: &str) -> crate::api::ImageLabelSet {
        let mut o = crate::api::ImageLabelSet::new(name, Default::default());
        o.metadata.namespace = Some("ns".into());
        o.metadata.uid = Some(format!("uid-{name}"));
        o
    }

    #[tokio::test]
    async fn every_per_set_map_shrinks_back_after_churn_of_10000_sets() {
        let (store, mut writer) = kube::runtime::reflector::store();
        let ctx = crate::controller::context::offline_ctx(store);
        let entry = Entry {
            labels: [("k".to_string(), "v".to_string())].into(),
            owned: ["k".to_string()].into(),
            role: Role::Sync,
        };
        let now = Instant::now();
        for i in 0..10_000 {
            let key = format!("ImageLabelSet/ns/s{i}");
            ctx.index.upsert(
                &key,
                &format!("obj{i}"),
                &SetId::new(i, format!("ns/s{i}")),
                &entry,
            );
            ctx.failures.lock().unwrap().insert(key.clone(), 3);
            ctx.mark_stalled(&key, "fp".into());
            for map in [&ctx.managed, &ctx.conflicting] {
                map.set(&key, "ImageLabelSet", Some(1));
            }
            ctx.fights.record(&key, "k", now);
            ctx.written
                .remember(&format!("uid-s{i}"), &["k".to_string()], 0);
        }
        // Only s0 is still in the watch cache.
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
        writer.apply_watcher_event(&kube::runtime::watcher::Event::InitApply(
            crate::controller::cached::Cached::of(&image_set("s0")),
        ));
        writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
        let gone = check(&ctx);
        assert_eq!(gone.len(), 9_999);
        assert_eq!(ctx.index.sizes(), (1, 1));
        assert_eq!(ctx.failures.lock().unwrap().len(), 1);
        assert_eq!(ctx.stalls.lock().unwrap().len(), 1);
        assert_eq!(ctx.managed.len(), 1);
        assert_eq!(ctx.conflicting.len(), 1);
        assert_eq!(ctx.fights.len(), 1);
        assert_eq!(ctx.written.len(), 1);
        assert!(ctx.written.owned("uid-s0").is_some());
    }
}
