//! `imagelabel apply` of N sets (default 1,000) against the simulator at
//! the published flow control and 20 ms latency: time next to the quota
//! bound (max over APIs of calls ÷ that API's rate) and throttled answers.
//! Prints figures; asserts nothing about time.
//!
//! ```sh
//! cargo bench --bench cli_apply
//! IMAGELABEL_BENCH_SETS=300 cargo bench --bench cli_apply
//! ```

use std::process::Command;
use std::time::Instant;

use imagelabel::sim::{FlowControlSeed, PaiImageSeed, SeedConfig, Sim};

const BIN: &str = env!("CARGO_BIN_EXE_imagelabel");

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("IMAGELABEL_BENCH_SETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut seed = SeedConfig::demo();
    seed.flow_control = FlowControlSeed::published();
    seed.faults.latency_ms = 20;
    seed.pai.images = (0..n)
        .map(|i| PaiImageSeed {
            id: format!("image-cli{i:05}"),
            name: String::new(),
            workspace_id: None,
            labels: [("system.pre".to_string(), "x".to_string())].into(),
        })
        .collect();
    let rates = seed.flow_control.clone();
    let sim = Sim::from_seed(seed)
        .expect("seed")
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator");
    let dir = tempfile::tempdir().unwrap();
    let docs: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "---\napiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata: {{name: set{i:05}, namespace: ci}}\nspec:\n  imageId: image-cli{i:05}\n  labels: {{system.source: bench, system.dsw.tag: \"{i}\"}}\n"
            )
        })
        .collect();
    for (c, chunk) in docs.chunks(1000).enumerate() {
        std::fs::write(dir.path().join(format!("sets{c}.yaml")), chunk.concat()).unwrap();
    }
    let base = sim.base_url();
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["apply", "-f", dir.path().to_str().unwrap(), "-o", "json"])
        .args(["--quota-share", "1"])
        .args(["--pai-endpoint", &base, "--sts-endpoint", &base])
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "testAK")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "testSecret")
        .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
        .env_remove("ALIBABA_CLOUD_ROLE_ARN")
        .output()
        .expect("run imagelabel apply");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = sim.sim().counters();
    let mut bound = 0f64;
    let mut throttled = 0;
    let mut calls = 0;
    for (api, counts) in &c.apis {
        let rate = f64::from(rates.rate_of(api));
        if rate > 0.0 {
            bound = bound.max(counts.total() as f64 / rate);
        }
        throttled += counts.throttled;
        calls += counts.total();
        let secs = if rate > 0.0 {
            format!("at {rate}/s = {:.1} s", counts.total() as f64 / rate)
        } else {
            "not limited".into()
        };
        println!(
            "  {api}: {} calls ({} throttled) {secs}",
            counts.total(),
            counts.throttled
        );
    }
    println!(
        "cli apply: {n} sets in {:.1} s; quota bound {bound:.1} s ({:.2}x); {calls} calls, {throttled} throttled",
        took.as_secs_f64(),
        took.as_secs_f64() / bound
    );
    let json = serde_json::json!({
        "sets": n, "seconds": took.as_secs_f64(), "boundSeconds": bound,
        "calls": calls, "throttled": throttled,
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-cli-apply.json");
    let _ = std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap());
    sim.shutdown().await;
}
