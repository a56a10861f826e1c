//! Convergence time, cloud calls per change and operator memory at N sets,
//! on the real control plane with the simulator (prints figures; no timed
//! assertions). `IMAGELABEL_BENCH_SETS` sets N (default 1000):
//!
//! ```sh
//! cargo bench --bench convergence
//! IMAGELABEL_BENCH_SETS=10000 cargo bench --bench convergence
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use imagelabel::sim::{PaiImageSeed, SeedConfig};
use kube::api::{Patch, PatchParams};
use support::operator::{Env, Operator};

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn manifest(i: usize) -> String {
    format!(
        "---\napiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata: {{name: set{i:05}}}\nspec:\n  imageId: image-bench{i:05}\n  labels: {{system.a: \"1\", system.b: \"2\", system.c: \"3\", system.d: \"4\", system.e: \"{i}\"}}\n"
    )
}

async fn wait_all_ready(
    env: &Env,
    op: &mut Operator,
    n: usize,
    started: Instant,
    generation_of_change: bool,
) -> Duration {
    loop {
        assert!(op.is_running(), "the operator exited: {}", op.log_text());
        let list = env
            .images()
            .list(&Default::default())
            .await
            .expect("list sets");
        let ready = list
            .items
            .iter()
            .filter(|o| {
                o.status.as_ref().is_some_and(|s| {
                    s.is_ready()
                        && (!generation_of_change || s.observed_generation == o.metadata.generation)
                })
            })
            .count();
        if ready >= n {
            return started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(3600) {
            panic!("only {ready}/{n} Ready after an hour");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("IMAGELABEL_BENCH_SETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut seed = SeedConfig::demo();
    seed.qps = 0;
    seed.pai.images = (0..n)
        .map(|i| PaiImageSeed {
            id: format!("image-bench{i:05}"),
            name: String::new(),
            workspace_id: None,
            labels: [
                ("system.pre".to_string(), "x".to_string()),
                ("system.a".to_string(), "1".to_string()),
            ]
            .into(),
        })
        .collect();
    let env = Env::start("bench", seed).await;

    let created = Instant::now();
    let docs: Vec<String> = (0..n).map(manifest).collect();
    for (c, chunk) in docs.chunks(500).enumerate() {
        env.apply(&format!("chunk{c}.yaml"), &chunk.concat());
    }
    let create_time = created.elapsed();

    env.sim.sim().reset_counters();
    let started = Instant::now();
    let mut op = env.operator(
        "bench",
        &[
            "--concurrency",
            "32",
            "--quota-share",
            "1",
            "--log-level",
            "warn",
            // The chart's default: the test fixture's 6 s Lease is too short
            // to be renewed in time while 10,000 patches load the API server.
            "--lease-duration",
            "15s",
        ],
    );
    let converge = wait_all_ready(&env, &mut op, n, started, false).await;
    let c = env.sim.sim().counters();
    let (rss, hwm) = rss_kib(op.pid());
    let labels_written = c.api("AddImageLabels").ok;
    println!(
        "convergence: {n} sets Ready in {:.1} s ({:.0} sets/s); sets created with kubectl in {:.1} s",
        converge.as_secs_f64(),
        n as f64 / converge.as_secs_f64(),
        create_time.as_secs_f64()
    );
    println!(
        "calls during convergence: {} reads, {} writes ({:.2} calls per set; AddImageLabels {labels_written})",
        c.reads,
        c.writes,
        (c.reads + c.writes) as f64 / n as f64
    );

    // A change to 10% of the sets.
    let changed = (n / 10).max(1);
    env.sim.sim().reset_counters();
    let started = Instant::now();
    let api = env.images();
    futures::stream::iter(0..changed)
        .map(|i| {
            let api = api.clone();
            async move {
                let patch = serde_json::json!({"spec": {"labels": {"system.b": "changed", "system.c": null}}});
                api.patch(&format!("set{i:05}"), &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let change_time = wait_all_ready(&env, &mut op, n, started, true).await;
    let c2 = env.sim.sim().counters();
    println!(
        "change on {changed} sets (1 changed, 1 dropped key each): converged in {:.1} s; {} reads, {} writes = {:.2} calls per changed set",
        change_time.as_secs_f64(),
        c2.reads,
        c2.writes,
        (c2.reads + c2.writes) as f64 / changed as f64
    );

    // Steady state: every set reconciles again; nothing is written.
    env.sim.sim().reset_counters();
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let patch = serde_json::json!({"metadata": {"annotations": {"imagelabel.io/reconcile-requested-at": "bench"}}});
                api.patch(&format!("set{i:05}"), &PatchParams::default(), &Patch::Merge(&patch)).await.expect("annotate");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    while env.sim.sim().counters().reads < n as u64 && started.elapsed() < Duration::from_secs(600)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let c3 = env.sim.sim().counters();
    println!(
        "steady state: all {n} sets reconciled again in {:.1} s: {} reads, {} writes",
        started.elapsed().as_secs_f64(),
        c3.reads,
        c3.writes
    );
    let (rss2, hwm2) = rss_kib(op.pid());
    println!(
        "operator memory at {n} sets: RSS {:.1} MiB after convergence, {:.1} MiB at the end, peak {:.1} MiB",
        rss as f64 / 1024.0,
        rss2 as f64 / 1024.0,
        hwm.max(hwm2) as f64 / 1024.0
    );

    let json = serde_json::json!({
        "sets": n,
        "convergeSeconds": converge.as_secs_f64(),
        "setsPerSecond": n as f64 / converge.as_secs_f64(),
        "convergeReads": c.reads, "convergeWrites": c.writes,
        "changedSets": changed, "changeSeconds": change_time.as_secs_f64(), "changeReads": c2.reads, "changeWrites": c2.writes,
        "steadyReads": c3.reads, "steadyWrites": c3.writes,
        "operatorRssKiB": rss2, "operatorPeakKiB": hwm.max(hwm2),
    });
    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-convergence.json");
    let _ = std::fs::write(&out, serde_json::to_string_pretty(&json).unwrap());
    println!("figures written to {}", out.display());
}
