//! Keeps the claim index (who declares and owns which keys of a cloud
//! object) in step with the sets, and wakes the sets a change concerns.

use kube::runtime::reflector::ObjectRef;

use tracing::warn;

use super::cached::Cached;
use super::context::Ctx;
use super::index::Entry;
use super::reconcile::set_key;
use super::resource::LabelSetResource;
use crate::plan::{self, Role, SetId};

/// Fills the claim index from the watch caches once, before the first plan,
/// so a set never writes a key an older, not yet reconciled set declares.
pub async fn prime_index(ctx: &Ctx) {
    ctx.primed
        .get_or_init(|| async {
            let _ = ctx.image_store.wait_until_ready().await;
            let _ = ctx.dataset_store.wait_until_ready().await;
            for o in ctx.image_store.state() {
                index_cached(&*o, ctx);
            }
            for o in ctx.dataset_store.state() {
                index_cached(&*o, ctx);
            }
        })
        .await;
}

/// The keys a set owns: what this process last wrote, else its status.
pub fn owned_keys_of<K: LabelSetResource>(obj: &K, ctx: &Ctx) -> Vec<String> {
    ctx.owned_keys(
        obj.meta().uid.as_deref(),
        obj.status().map_or(&[][..], |s| &s.owned_keys[..]),
    )
}

/// Indexes what a set manages and owns. A set being deleted stays in the
/// index, as a non-contender, until its cleanup is done: a winner must be
/// able to inherit the keys it leaves behind.
pub fn index_claim<K: LabelSetResource>(obj: &K, ctx: &Ctx) -> Vec<SetId> {
    match obj.resolve(&ctx.config.default_region) {
        Ok(set) => {
            let entry = Entry {
                labels: plan::managed(&set.desired, &set.protected),
                owned: owned_keys_of(obj, ctx).into_iter().collect(),
                role: Role::of(set.policy.mode, obj.meta().deletion_timestamp.is_some()),
            };
            ctx.index
                .upsert(&set_key(obj), &set.object_key(), &obj.set_id(), &entry)
        }
        Err(_) => ctx.index.remove(&set_key(obj)),
    }
}

/// [`index_claim`] for a set as the watch caches keep it. One the cache
/// cannot decode (the CRD's schema rules it out) leaves the index; its
/// reconcile reports the error.
pub fn index_cached<K: LabelSetResource>(obj: &Cached<K>, ctx: &Ctx) -> Vec<SetId> {
    match obj.object() {
        Ok(o) => index_claim(&o, ctx),
        Err(e) => {
            warn!(set = %obj.key(), error = %e, "a cached set does not decode; its claims are dropped");
            ctx.index.remove(&obj.key())
        }
    }
}

/// Asks for the other sets on an object to be reconciled again; their next
/// reconcile is a change, not a drift check.
pub fn wake_others<K: LabelSetResource>(ids: Vec<SetId>, ctx: &Ctx) {
    {
        let mut woken = ctx.woken.lock().expect("woken poisoned");
        for id in &ids {
            woken.insert(format!("{}/{}", K::KIND, id.name));
        }
    }
    wake_unmarked::<K>(ids, ctx);
}

/// As [`wake_others`], without making their next reconcile a change.
pub fn wake_unmarked<K: LabelSetResource>(ids: Vec<SetId>, ctx: &Ctx) {
    for id in ids {
        if let Some((ns, name)) = id.name.split_once('/') {
            K::wake(ctx, ObjectRef::new(name).within(ns));
        }
    }
}
