//! Planner throughput and plan sizes at 10,000 sets (prints figures; run
//! with `cargo bench --bench planner`). Pure CPU: no I/O is involved.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::Instant;

use imagelabel::api::{Mode, Prune};
use imagelabel::plan::{Claim, KeyMatcher, Labels, PlanInput, SetId, plan};

fn labels(prefix: &str, n: usize, value: &str) -> Labels {
    (0..n)
        .map(|i| (format!("system.{prefix}{i:02}"), value.to_string()))
        .collect()
}

/// One set's planning inputs: id, desired, observed, owned, other sets' claims.
type Case = (SetId, Labels, Labels, BTreeSet<String>, Vec<Claim>);

fn main() {
    const SETS: usize = 10_000;
    let protected = KeyMatcher::new(["acs:*", "aliyun*", "system.dsw.*"]).unwrap();
    let held = BTreeSet::new();
    // Each set declares 20 labels; the cloud holds 15 of them (5 with a stale
    // value), 3 keys owned but dropped from the spec, and 5 foreign keys.
    let sets: Vec<Case> = (0..SETS)
        .map(|i| {
            let desired = labels("k", 20, "v2");
            let mut observed = labels("k", 10, "v2");
            observed.extend(labels("k", 15, "v1").into_iter().skip(10));
            observed.extend(labels("old", 3, "x"));
            observed.extend(labels("foreign", 5, "y"));
            let owned: BTreeSet<String> = labels("old", 3, "x")
                .into_keys()
                .chain(labels("k", 15, "").into_keys())
                .collect();
            let claims = if i % 10 == 0 {
                vec![Claim::sync(
                    SetId::new(0, format!("ns/older{i}")),
                    labels("k", 2, "other"),
                )]
            } else {
                vec![]
            };
            (
                SetId::new(100, format!("ns/set{i}")),
                desired,
                observed,
                owned,
                claims,
            )
        })
        .collect();

    for (name, mode) in [("sync", Mode::Sync), ("observe", Mode::Observe)] {
        let started = Instant::now();
        let mut adds = 0;
        let mut removes = 0;
        let mut conflicts = 0;
        for (id, desired, observed, owned, claims) in &sets {
            let p = plan(black_box(&PlanInput {
                set: id,
                desired,
                observed,
                owned,
                prune: Prune::Owned,
                mode,
                deleting: None,
                protected: &protected,
                claims,
                held: &held,
                adopt: false,
            }));
            adds += p.add.len();
            removes += p.remove.len();
            conflicts += p.conflicts.len();
        }
        let elapsed = started.elapsed();
        println!(
            "planner/{name}: {SETS} sets in {:.1} ms ({:.1} µs per set); {adds} adds, {removes} removes, {conflicts} conflicts",
            elapsed.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e6 / SETS as f64
        );
    }
}
