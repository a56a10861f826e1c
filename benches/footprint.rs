//! Where the operator's memory per set goes: heap bytes held by each
//! structure that grows with the number of sets, counted by a global
//! allocator that tracks live bytes. Prints figures; asserts nothing.
//!
//! ```sh
//! cargo bench --bench footprint
//! ```
//!
//! What it cannot isolate (kube-runtime's runner, the allocator's own
//! overhead and fragmentation) shows in the difference between its total
//! and the RSS `convergence` prints.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use imagelabel::api::ImageLabelSet;
use imagelabel::controller::cached::Cached;
use imagelabel::controller::index::{ClaimIndex, Entry};
use imagelabel::controller::reconcile::key_hash;
use imagelabel::controller::schedule::PassSchedule;
use imagelabel::controller::tally::Tally;
use imagelabel::controller::triggers::Triggers;
use imagelabel::controller::written::Written;
use imagelabel::plan::{Role, SetId};
use kube::runtime::reflector::ObjectRef;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const N: usize = 10_000;

/// A set as the API server returns it after the operator converged it:
/// applied with `kubectl apply` (so with its last-applied annotation and
/// managedFields), finalizer, status with three conditions and four owned keys.
fn object_json(i: usize) -> String {
    let spec = format!(
        r#"{{"imageId":"image-bench{i:05}","workspaceId":"1001","labels":{{"system.a":"1","system.b":"2","system.c":"3","system.e":"{i}"}}}}"#
    );
    let condition = |t: &str, reason: &str, msg: &str| {
        format!(
            r#"{{"type":"{t}","status":"True","reason":"{reason}","message":"{msg}","lastTransitionTime":"2026-12-03T10:00:00Z","observedGeneration":1}}"#
        )
    };
    format!(
        r#"{{"apiVersion":"imagelabel.io/v1alpha1","kind":"ImageLabelSet",
        "metadata":{{"name":"set{i:05}","namespace":"bench","uid":"6c1a3e0e-7f7e-4c1b-9d3a-{i:012}",
          "resourceVersion":"{rv}","generation":1,"creationTimestamp":"2026-12-03T10:00:00Z",
          "finalizers":["imagelabel.io/finalizer"],
          "annotations":{{"kubectl.kubernetes.io/last-applied-configuration":{last}}},
          "managedFields":[
            {{"manager":"kubectl-client-side-apply","operation":"Update","apiVersion":"imagelabel.io/v1alpha1","time":"2026-12-03T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{{"f:metadata":{{"f:annotations":{{".":{{}},"f:kubectl.kubernetes.io/last-applied-configuration":{{}}}}}},"f:spec":{{".":{{}},"f:imageId":{{}},"f:labels":{{".":{{}},"f:system.a":{{}},"f:system.b":{{}},"f:system.c":{{}},"f:system.e":{{}}}},"f:workspaceId":{{}}}}}}}},
            {{"manager":"imagelabel-operator","operation":"Apply","apiVersion":"imagelabel.io/v1alpha1","time":"2026-12-03T10:00:01Z","fieldsType":"FieldsV1","subresource":"status","fieldsV1":{{"f:status":{{"f:conditions":{{}},"f:ownedKeys":{{}},"f:target":{{}}}}}}}}
          ]}},
        "spec":{spec},
        "status":{{"observedGeneration":1,"syncedGeneration":1,"labelCount":5,
          "lastSyncTime":"2026-12-03T10:00:01Z","target":"pai/cn-shanghai/image/image-bench{i:05}",
          "ownedKeys":["system.a","system.b","system.c","system.e"],
          "conditions":[{{}},{{}},{{}}]}}}}"#,
        rv = 100_000 + i,
        last = serde_json::to_string(&format!(
            r#"{{"apiVersion":"imagelabel.io/v1alpha1","kind":"ImageLabelSet","metadata":{{"annotations":{{}},"name":"set{i:05}","namespace":"bench"}},"spec":{spec}}}"#
        ))
        .unwrap(),
        spec = spec,
    )
    .replace(
        "[{},{},{}]",
        &format!(
            "[{},{},{}]",
            condition("Ready", "InSync", "4 labels in sync"),
            condition("Reconciling", "InSync", ""),
            condition("Stalled", "InSync", "")
        ),
    )
}

/// Live heap bytes per item that `build` leaves behind (it returns what it
/// keeps; that is dropped after the count).
fn per_set<T>(build: impl FnOnce() -> T) -> (f64, T) {
    let before = LIVE.load(Ordering::Relaxed);
    let kept = build();
    let after = LIVE.load(Ordering::Relaxed);
    ((after - before) as f64 / N as f64, kept)
}

fn row(what: &str, bytes: f64, total: &mut f64) {
    *total += bytes;
    println!(
        "  {what:<58} {bytes:>7.0} B/set  {:>6.1} MiB at {N}",
        bytes * N as f64 / 1_048_576.0
    );
}

fn main() {
    let docs: Vec<String> = (0..N).map(object_json).collect();
    let objects: Vec<ImageLabelSet> = docs
        .iter()
        .map(|d| serde_json::from_str(d).expect("object"))
        .collect();
    println!("heap bytes per set kept by what grows with the sets ({N} sets):");
    let mut total = 0.0;

    let (whole, cached_whole) = per_set(|| {
        objects
            .iter()
            .map(|o| Arc::new(o.clone()))
            .collect::<Vec<_>>()
    });
    println!(
        "  {:<58} {whole:>7.0} B/set  (before slimming; not kept)",
        "watch cache object as listed"
    );
    drop(cached_whole);
    // Decoded from the listed JSON, as the watcher does.
    let (cached_bytes, cache) = per_set(|| {
        let mut store = HashMap::new();
        for d in &docs {
            let o: Cached<ImageLabelSet> = serde_json::from_str(d).expect("cached");
            store.insert(ObjectRef::from(&o), Arc::new(o));
        }
        store
    });
    drop(docs);
    row(
        "watch cache: cached set + store entry",
        cached_bytes,
        &mut total,
    );

    let (index_bytes, index) = per_set(|| {
        let index = ClaimIndex::default();
        for (i, o) in objects.iter().enumerate() {
            let entry = Entry {
                labels: o.spec.labels.clone(),
                owned: o
                    .status
                    .as_ref()
                    .unwrap()
                    .owned_keys
                    .iter()
                    .cloned()
                    .collect(),
                role: Role::Sync,
            };
            index.upsert(
                &format!("ImageLabelSet/bench/set{i:05}"),
                &format!("pai/cn-shanghai/image/image-bench{i:05}"),
                &SetId::new(1_764_756_000, format!("bench/set{i:05}")),
                &entry,
            );
        }
        index
    });
    row("claim index", index_bytes, &mut total);

    let (state_bytes, state) = per_set(|| {
        let mut seen = HashSet::new();
        let written = Written::default();
        let (managed, conflicting) = (Tally::default(), Tally::default());
        for (i, o) in objects.iter().enumerate() {
            let key = format!("ImageLabelSet/bench/set{i:05}");
            let uid = o.metadata.uid.as_deref().unwrap();
            seen.insert(key_hash(&key));
            written.remember(uid, &o.status.as_ref().unwrap().owned_keys, i as u64);
            managed.set(&key, "ImageLabelSet", Some(4));
            conflicting.set(&key, "ImageLabelSet", Some(0));
        }
        (seen, written, managed, conflicting)
    });
    row(
        "per-set state (seen, written ownedKeys and status, tallies)",
        state_bytes,
        &mut total,
    );

    // Every settled set waits for its next drift check.
    let (schedule_bytes, schedule) = per_set(|| {
        let schedule = PassSchedule::default();
        for i in 0..N {
            let key = format!("ImageLabelSet/bench/set{i:05}");
            schedule.at(&key, Duration::from_secs(600 + i as u64 % 60));
        }
        schedule
    });
    row("next-pass schedule", schedule_bytes, &mut total);

    let (trigger_bytes, triggers) = per_set(|| {
        let mut triggers = Triggers::default();
        for o in cache.values() {
            triggers.changed(&**o);
        }
        triggers
    });
    row("watch trigger filter", trigger_bytes, &mut total);
    println!(
        "  {:<58} {total:>7.0} B/set  {:>6.1} MiB at {N}",
        "total",
        total * N as f64 / 1_048_576.0
    );
    drop((cache, index, state, schedule, triggers));
}
