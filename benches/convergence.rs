//! The operator at N sets (default 1,000) against the simulator at the
//! cloud's published flow control and 20 ms latency, on the real control
//! plane. Prints figures next to their quota bound (max over APIs of calls ÷
//! that API's rate); asserts nothing about time.
//!
//! Phases, one operator process after another on the same sets:
//! 1. convergence from nothing (`--quota-share 1`, alone on the account);
//! 2. a full drift pass over the in-sync sets (calls per API), with one
//!    set edited in the middle of it (time to Ready);
//! 3. a restart: cloud calls per minute over the first interval, status
//!    writes of sets that found nothing;
//! 4. a change to every set while a second client of the same main account
//!    takes half of AddImageLabels (`IMAGELABEL_BENCH_SECOND_CLIENT=0` skips);
//! 5. start-up with every set in the cluster and one changed while no
//!    operator ran: watch caches ready against the API server's list time.
//!
//! Memory (RSS, peak) is printed after convergence, at the end and after
//! start-up. `IMAGELABEL_BENCH_CONVERGE_ONLY=1` runs phases 1 and 5 only;
//! `IMAGELABEL_BENCH_FLOW_CONTROL=0` lifts the simulator's and the
//! operator's budgets (profiling runs); `IMAGELABEL_OPERATOR_WRAPPER`
//! runs the operator under a profiler that keeps its pid, so the bench's
//! signals reach it (`scripts/heaptrack-exec.sh`; plain `heaptrack` does not).
//!
//! ```sh
//! cargo bench --bench convergence
//! IMAGELABEL_BENCH_SETS=10000 cargo bench --bench convergence
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use imagelabel::api::ImageLabelSet;
use imagelabel::provider::credentials::{Credentials, StaticSource};
use imagelabel::provider::registry::{CloudConfig, Clouds};
use imagelabel::sim::{CounterSnapshot, FlowControlSeed, PaiCredential, PaiImageSeed, SeedConfig};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use support::operator::{Env, Operator};

const WORKSPACE: &str = "1001";
const LOADGEN_AK: &str = "loadgenAK";
const LOADGEN_SECRET: &str = "loadgenSecret";
const LOADGEN_IMAGE: &str = "image-loadgen";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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

fn manifest(i: usize, value: &str) -> String {
    format!(
        "---\napiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata: {{name: set{i:05}}}\nspec:\n  imageId: image-bench{i:05}\n  workspaceId: \"{WORKSPACE}\"\n  labels: {{system.a: \"1\", system.b: \"{value}\", system.c: \"3\", system.e: \"{i}\"}}\n"
    )
}

/// Calls and throttled answers per API, and the bound they imply.
struct Tally {
    lines: Vec<String>,
    bound: f64,
    calls: u64,
    throttled: u64,
}

fn tally(c: &CounterSnapshot, rates: &FlowControlSeed) -> Tally {
    let mut t = Tally {
        lines: vec![],
        bound: 0.0,
        calls: 0,
        throttled: 0,
    };
    for (api, n) in &c.apis {
        let rate = f64::from(rates.rate_of(api));
        // Unlimited APIs (STS) bound nothing.
        let secs = if rate > 0.0 {
            n.total() as f64 / rate
        } else {
            0.0
        };
        t.bound = t.bound.max(secs);
        t.calls += n.total();
        t.throttled += n.throttled;
        t.lines.push(format!(
            "    {api}: {} calls, {} throttled; at {rate}/s {secs:.1} s",
            n.total(),
            n.throttled
        ));
    }
    t
}

async fn ready_count(api: &Api<ImageLabelSet>, generation_synced: bool) -> usize {
    let list = api.list(&Default::default()).await.expect("list sets");
    list.items
        .iter()
        .filter(|o| {
            o.status.as_ref().is_some_and(|s| {
                s.is_ready()
                    && (!generation_synced
                        || (s.observed_generation == o.metadata.generation
                            && s.synced_generation == o.metadata.generation))
            })
        })
        .count()
}

async fn wait_all_ready(env: &Env, op: &mut Operator, n: usize, synced: bool) -> Duration {
    let started = Instant::now();
    loop {
        assert!(op.is_running(), "the operator exited: {}", op.log_text());
        if ready_count(&env.images(), synced).await >= n {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(7200),
            "not all Ready after two hours"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// When the operator first read a workspace whole (polled every 50 ms).
fn first_workspace_read(port: u16) -> tokio::task::JoinHandle<Instant> {
    tokio::spawn(async move {
        let url = format!("http://127.0.0.1:{port}/metrics");
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && let Ok(text) = r.text().await
                && support::operator::sum_metric(
                    &text,
                    "imagelabel_workspace_snapshot_pages_total",
                    &[],
                ) > 0.0
            {
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// When the simulator saw the first call after `since` (polled every 20 ms).
fn first_call(sim: imagelabel::sim::Sim) -> tokio::task::JoinHandle<Instant> {
    tokio::spawn(async move {
        loop {
            if sim.counters().total > 0 {
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Counts every change the API server reports on the sets (status writes
/// included) while it runs.
fn count_modifications(api: Api<ImageLabelSet>) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let n = Arc::new(AtomicU64::new(0));
    let counter = n.clone();
    let task = tokio::spawn(async move {
        let mut primed = false;
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::InitDone) => primed = true,
                Ok(watcher::Event::Apply(_)) if primed => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    });
    (n, task)
}

fn operator(env: &Env, name: &str, resync: &str) -> Operator {
    let log_level = std::env::var("IMAGELABEL_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    // Without the simulator's flow control, the operator's budgets go too.
    let unlimited: &[&str] = if env_u64("IMAGELABEL_BENCH_FLOW_CONTROL", 1) == 1 {
        &[]
    } else {
        &[
            "--quota",
            "AddImageLabels=2000",
            "--quota",
            "ListImageLabels=2000",
            "--quota",
            "ListImages=2000",
        ]
    };
    let mut args = vec![
        "--concurrency",
        "32",
        "--quota-share",
        "1",
        "--resync-interval",
        resync,
        "--log-level",
        &log_level,
        // The chart's default: the test fixture's 6 s Lease is too short
        // to be renewed in time while 10,000 patches load the API server.
        "--lease-duration",
        "15s",
    ];
    args.extend_from_slice(unlimited);
    env.operator(name, &args)
}

async fn patch_all(api: &Api<ImageLabelSet>, n: usize, value: &str) {
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let patch = serde_json::json!({"spec": {"labels": {"system.b": value}}});
            async move {
                api.patch(
                    &format!("set{i:05}"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .expect("patch");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_u64("IMAGELABEL_BENCH_SETS", 1000) as usize;
    let second_client = env_u64("IMAGELABEL_BENCH_SECOND_CLIENT", 1) == 1;
    // Long enough that a pass never overlaps convergence at 20 writes/s.
    let resync_secs = env_u64("IMAGELABEL_BENCH_RESYNC_SECONDS", 300);
    let resync = format!("{resync_secs}s");
    let mut seed = SeedConfig::demo();
    // `IMAGELABEL_BENCH_FLOW_CONTROL=0`: no throttling, for profiling runs
    // that only need the sets converged quickly.
    seed.flow_control = if env_u64("IMAGELABEL_BENCH_FLOW_CONTROL", 1) == 1 {
        FlowControlSeed::published()
    } else {
        FlowControlSeed::off()
    };
    seed.faults.latency_ms = 20;
    // A second key of the same main account, for the load generator.
    seed.credentials.pai.push(PaiCredential {
        access_key_id: LOADGEN_AK.into(),
        access_key_secret: LOADGEN_SECRET.into(),
        ..Default::default()
    });
    seed.pai.images = (0..n)
        .map(|i| PaiImageSeed {
            id: format!("image-bench{i:05}"),
            name: String::new(),
            workspace_id: Some(WORKSPACE.into()),
            labels: [
                ("system.pre".to_string(), "x".to_string()),
                ("system.a".to_string(), "1".to_string()),
            ]
            .into(),
        })
        .chain([PaiImageSeed {
            id: LOADGEN_IMAGE.into(),
            name: String::new(),
            workspace_id: None,
            labels: Default::default(),
        }])
        .collect();
    let rates = seed.flow_control.clone();
    let env = Env::start("bench", seed).await;
    let api = env.images();
    let mut figures = serde_json::Map::new();

    let created = Instant::now();
    let docs: Vec<String> = (0..n).map(|i| manifest(i, "2")).collect();
    for (c, chunk) in docs.chunks(500).enumerate() {
        env.apply(&format!("chunk{c}.yaml"), &chunk.concat());
    }
    println!(
        "{n} sets created with kubectl in {:.1} s",
        created.elapsed().as_secs_f64()
    );

    // 1. Convergence, alone on the account.
    env.sim.sim().reset_counters();
    let started = Instant::now();
    let first = first_call(env.sim.sim().clone());
    let mut op = operator(&env, "bench", &resync);
    let first_read = first_workspace_read(op.metrics_port);
    let converge = wait_all_ready(&env, &mut op, n, false).await;
    let first = first.await.expect("first call").duration_since(started);
    let c = env.sim.sim().counters();
    let t = tally(&c, &rates);
    let (rss, hwm) = rss_kib(op.pid());
    println!(
        "convergence: {n} sets Ready in {:.1} s from process start ({:.1} s from the first cloud call); quota bound {:.1} s ({:.3}x; {:.3}x from the first call); {} calls, {} throttled",
        converge.as_secs_f64(),
        (converge - first).as_secs_f64(),
        t.bound,
        converge.as_secs_f64() / t.bound,
        (converge - first).as_secs_f64() / t.bound,
        t.calls,
        t.throttled
    );
    for l in &t.lines {
        println!("{l}");
    }
    figures.insert("sets".into(), n.into());
    figures.insert("convergeSeconds".into(), converge.as_secs_f64().into());
    figures.insert("firstCallSeconds".into(), first.as_secs_f64().into());
    figures.insert("convergeBoundSeconds".into(), t.bound.into());
    figures.insert("convergeCalls".into(), t.calls.into());
    figures.insert("convergeThrottled".into(), t.throttled.into());
    println!(
        "operator memory after convergence: RSS {:.1} MiB, peak {:.1} MiB",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    if env_u64("IMAGELABEL_BENCH_CONVERGE_ONLY", 0) == 1 {
        op.terminate();
        startup(&env, &resync, &mut figures).await;
        return;
    }

    // 2. One full drift pass over the in-sync sets: from the first page of
    // a workspace read until every set has been checked once; one set is
    // edited while the pass runs.
    let checks =
        |text: &str| support::operator::sum_metric(text, "imagelabel_drift_checks_total", &[]);
    let pages = |text: &str| {
        support::operator::sum_metric(text, "imagelabel_workspace_snapshot_pages_total", &[])
    };
    // Passes of a workspace fall on its first read plus whole intervals
    // (see `snapshots::next_pass`). A set's first check comes one interval
    // (±20%) after it converged, so checks after convergence spread over
    // the convergence time plus 40% of an interval; the pass after all of
    // them is the first with every set lined up.
    let wait_pages = |after: f64| {
        let op = &op;
        async move {
            let waited = Instant::now();
            loop {
                let now = pages(&op.metrics().await);
                if now > after {
                    return (Instant::now(), now);
                }
                assert!(
                    waited.elapsed() < Duration::from_secs(resync_secs * 3 + 60),
                    "no workspace read"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let epoch = first_read.await.expect("first workspace read");
    let seen = pages(&op.metrics().await);
    let k = 2 + (converge - first).as_secs() / resync_secs;
    let aligned = epoch + Duration::from_secs(k * resync_secs);
    tokio::time::sleep(aligned.saturating_duration_since(Instant::now() + Duration::from_secs(5)))
        .await;
    env.sim.sim().reset_counters();
    let (writes, watch) = count_modifications(api.clone());
    let text = op.metrics().await;
    let seen = pages(&text).max(seen);
    let checks_before = checks(&text);
    wait_pages(seen).await;
    let started = Instant::now();
    let edited = Instant::now();
    let patch = serde_json::json!({"spec": {"labels": {"system.c": "edited"}}});
    api.patch("set00007", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("edit");
    let edit_ready = loop {
        let o = api.get("set00007").await.expect("get");
        if o.status
            .as_ref()
            .is_some_and(|s| s.is_ready() && s.synced_generation == o.metadata.generation)
        {
            break edited.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let checked_during_edit = checks(&op.metrics().await) - checks_before;
    while checks(&op.metrics().await) - checks_before < (n - 1) as f64 {
        assert!(
            started.elapsed() < Duration::from_secs(resync_secs * 2),
            "the pass did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pass = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = env.sim.sim().counters();
    let t = tally(&c, &rates);
    let per_image = n as u64;
    // The edit's own read and write are not part of the pass.
    let pass_calls = t
        .calls
        .saturating_sub(c.api("AddImageLabels").total() + c.api("ListImageLabels").total().min(1));
    println!(
        "drift pass over {n} in-sync sets (all checked within {:.1} s of the workspace read): {pass_calls} calls without the edit's = {:.2}% of {per_image} per-image reads; {} throttled; {} set changes seen by a watch (the edit's included)",
        pass.as_secs_f64(),
        100.0 * pass_calls as f64 / per_image as f64,
        t.throttled,
        writes.load(Ordering::Relaxed)
    );
    for l in &t.lines {
        println!("{l}");
    }
    println!(
        "edit during the pass ({checked_during_edit:.0} sets checked meanwhile): Ready in {:.2} s",
        edit_ready.as_secs_f64()
    );
    figures.insert("driftPassCalls".into(), pass_calls.into());
    figures.insert(
        "driftPassWrites".into(),
        writes.load(Ordering::Relaxed).into(),
    );
    figures.insert("editReadySeconds".into(), edit_ready.as_secs_f64().into());
    watch.abort();

    // 3. A restart: cloud calls and drift checks per minute over the first
    // interval, status writes.
    let (rss2, hwm2) = rss_kib(op.pid());
    op.kill();
    env.sim.sim().reset_counters();
    let (writes, watch) = count_modifications(api.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted = Instant::now();
    let mut op = operator(&env, "bench-restarted", &resync);
    let (mut per_minute, mut checks_per_minute) = (Vec::new(), Vec::new());
    let (mut last, mut last_checks) = (0, 0.0);
    let minutes = resync_secs.div_ceil(60);
    for _ in 0..minutes {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let total = tally(&env.sim.sim().counters(), &rates).calls;
        per_minute.push(total - last);
        last = total;
        let done = checks(&op.metrics().await);
        checks_per_minute.push(done - last_checks);
        last_checks = done;
    }
    let even = n as f64 / resync_secs as f64 * 60.0;
    let max = per_minute.iter().copied().max().unwrap_or(0);
    let max_checks = checks_per_minute.iter().copied().fold(0.0, f64::max);
    println!(
        "restart with {n} in-sync sets, first {resync_secs} s: cloud calls per minute {per_minute:?} (max {max} = {:.2}x of N/interval = {even:.0}); drift checks per minute {checks_per_minute:?} (max {:.2}x); {} status writes in {:.0} s",
        max as f64 / even,
        max_checks / even,
        writes.load(Ordering::Relaxed),
        restarted.elapsed().as_secs_f64()
    );
    figures.insert("restartCallsPerMinute".into(), per_minute.clone().into());
    figures.insert(
        "restartChecksPerMinute".into(),
        checks_per_minute.clone().into(),
    );
    figures.insert(
        "restartWrites".into(),
        writes.load(Ordering::Relaxed).into(),
    );
    watch.abort();

    // 4. A change to every set while another client of the account takes
    // half of AddImageLabels.
    if second_client {
        let stop = Arc::new(AtomicBool::new(false));
        let loadgen = tokio::spawn(load_generator(env.sim.base_url(), stop.clone()));
        env.sim.sim().reset_counters();
        let started = Instant::now();
        patch_all(&api, n, "changed").await;
        let mut rates_seen: Vec<f64> = Vec::new();
        let converge = loop {
            assert!(op.is_running(), "the operator exited: {}", op.log_text());
            rates_seen.push(
                op.metric("imagelabel_cloud_budget_rate", &["api=\"AddImageLabels\""])
                    .await,
            );
            if ready_count(&api, true).await >= n {
                break started.elapsed();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        stop.store(true, Ordering::Relaxed);
        let _ = loadgen.await;
        let c = env.sim.sim().counters();
        let (mut ours, mut ours_throttled, mut theirs) = (0, 0, 0);
        for (agent, calls) in &c.calls_by_agent {
            let throttled = c.throttled_by_agent.get(agent).copied().unwrap_or(0);
            if agent.contains("loadgen") {
                theirs += calls;
            } else {
                ours += calls;
                ours_throttled += throttled;
            }
        }
        let add = c.api("AddImageLabels");
        let bound = n as f64 / (f64::from(rates.rate_of("AddImageLabels")) - 10.0);
        let series: Vec<String> = rates_seen
            .iter()
            .step_by(10)
            .map(|r| format!("{r:.1}"))
            .collect();
        println!(
            "second client at half of AddImageLabels: {n} changed sets Ready in {:.1} s (bound with half the writes {bound:.1} s); operator {ours} calls, {ours_throttled} throttled ({:.2}%); second client {theirs} calls; AddImageLabels {} ok, {} throttled in all",
            converge.as_secs_f64(),
            100.0 * ours_throttled as f64 / ours.max(1) as f64,
            add.ok,
            add.throttled
        );
        println!("  AddImageLabels budget every 10 s: {}", series.join(" "));
        figures.insert("secondClientSeconds".into(), converge.as_secs_f64().into());
        figures.insert("secondClientOperatorCalls".into(), ours.into());
        figures.insert(
            "secondClientOperatorThrottled".into(),
            ours_throttled.into(),
        );
        figures.insert("secondClientBudgetSeries".into(), rates_seen.into());
    }

    let (rss3, hwm3) = rss_kib(op.pid());
    println!(
        "operator memory at {n} sets: RSS {:.1} MiB after convergence, {:.1} MiB before the restart, {:.1} MiB at the end; peak {:.1} MiB (first process), {:.1} MiB (restarted)",
        rss as f64 / 1024.0,
        rss2 as f64 / 1024.0,
        rss3 as f64 / 1024.0,
        hwm.max(hwm2) as f64 / 1024.0,
        hwm3 as f64 / 1024.0,
    );
    figures.insert("operatorPeakKiB".into(), hwm.max(hwm2).max(hwm3).into());
    op.terminate();
    startup(&env, &resync, &mut figures).await;
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/bench-convergence-{n}.json"));
    let _ = std::fs::write(&out, serde_json::to_string_pretty(&figures).unwrap());
    println!("figures written to {}", out.display());
}

/// How long the API server takes to list every set the way the watcher
/// does (pages of 500, most recent).
async fn list_time(api: &Api<ImageLabelSet>) -> (Duration, usize) {
    let started = Instant::now();
    let mut params = kube::api::ListParams::default().limit(500);
    let mut n = 0;
    loop {
        let page = api.list(&params).await.expect("list sets");
        n += page.items.len();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return (started.elapsed(), n),
        }
    }
}

/// Phase 5, start-up with every set in the cluster and one spec changed
/// while no operator ran: the watch caches against the API server's own
/// list time, and how soon after them the changed set is reconciled.
async fn startup(
    env: &Env,
    resync: &str,
    figures: &mut serde_json::Map<String, serde_json::Value>,
) {
    let api = env.images();
    let patch = serde_json::json!({"spec": {"labels": {"system.c": "started"}}});
    let edited = api
        .patch("set00000", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch set00000");
    let generation = edited.metadata.generation;
    // The second list is the one to compare: the first warms the API
    // server's caches as the bench's own writes left them.
    let _ = list_time(&api).await;
    let (listed, n) = list_time(&api).await;
    // The same list through a bare kube-runtime watcher, for what the
    // watcher itself adds.
    let bare = {
        let started = Instant::now();
        let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            if matches!(ev, Ok(watcher::Event::InitDone)) {
                break;
            }
        }
        started.elapsed()
    };
    let started = Instant::now();
    let op = operator(env, "bench-startup", resync);
    let (mut caches_seen, mut ready_seen) = (None, None);
    while caches_seen.is_none() || ready_seen.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "start-up took over 10 minutes: {}",
            op.log_text()
        );
        if caches_seen.is_none()
            && op
                .metric("imagelabel_watch_caches_ready_seconds", &[])
                .await
                > 0.0
        {
            caches_seen = Some(started.elapsed());
        }
        if ready_seen.is_none()
            && let Ok(o) = api.get("set00000").await
            && o.status
                .as_ref()
                .is_some_and(|s| s.is_ready() && s.synced_generation == generation)
        {
            ready_seen = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let caches = op
        .metric("imagelabel_watch_caches_ready_seconds", &[])
        .await;
    let (caches_seen, ready_seen) = (caches_seen.unwrap(), ready_seen.unwrap());
    let (rss, hwm) = rss_kib(op.pid());
    println!(
        "start-up with {n} sets: API server list (pages of 500) {:.2} s, through a bare watcher {:.2} s; watch caches ready {caches:.2} s after the watches started ({:.2}x the list), seen {:.2} s after process start; the set changed while down Ready {:.2} s after that (polled every 25 ms); RSS {:.1} MiB, peak {:.1} MiB",
        listed.as_secs_f64(),
        bare.as_secs_f64(),
        caches / listed.as_secs_f64(),
        caches_seen.as_secs_f64(),
        ready_seen.as_secs_f64() - caches_seen.as_secs_f64(),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
    );
    figures.insert("startupListSeconds".into(), listed.as_secs_f64().into());
    figures.insert("startupCachesReadySeconds".into(), caches.into());
    figures.insert(
        "startupEditReadyAfterCachesSeconds".into(),
        (ready_seen.as_secs_f64() - caches_seen.as_secs_f64()).into(),
    );
}

/// Another tool of the same main account (its own AccessKey, its own
/// User-Agent) writing labels at a steady half of the published
/// AddImageLabels rate, whatever answers it gets: it does not back off.
async fn load_generator(base: String, stop: Arc<AtomicBool>) {
    let mut config = CloudConfig::with_base_url(&base);
    config.client_id = Some("loadgen".into());
    // Its own pace below; the client's budget and retries stay out of it.
    config.quotas.insert("AddImageLabels".into(), 1000.0);
    config.retry = imagelabel::provider::retry::RetryPolicy::none();
    let clouds = Clouds::new(config).expect("clouds");
    let creds = Arc::new(StaticSource(Credentials::AccessKey {
        id: LOADGEN_AK.into(),
        secret: LOADGEN_SECRET.into(),
        security_token: None,
    }));
    let pai = clouds.pai("cn-hangzhou", creds).expect("client");
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut i = 0u64;
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        i += 1;
        let labels = [("system.source".to_string(), format!("load{}", i % 7))];
        if let Err(e) = pai.add_image_labels(LOADGEN_IMAGE, &labels).await {
            *failures.entry(e.code.clone()).or_default() += 1;
        }
    }
    println!("  second client: {i} writes at 10/s, failures {failures:?}");
}
