//! The long soak (see `tests/support/chaos.rs`): ten minutes of kills,
//! an API-server restart and a faulty cloud against 40 PAI images and 8
//! datasets, then the same end checks as `tests/chaos_e2e.rs`. Prints what
//! ran; fails only when a check fails.
//!
//! ```sh
//! cargo bench --bench soak
//! IMAGELABEL_SOAK_SECONDS=3600 IMAGELABEL_SOAK_SEED=7 cargo bench --bench soak
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::operator::Env;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs = env_u64("IMAGELABEL_SOAK_SECONDS", 600);
    let seed = env_u64("IMAGELABEL_SOAK_SEED", 1);
    let (images, datasets) = (40, 8);
    let env = Env::start("soak", support::chaos::seed(images, datasets)).await;
    let started = Instant::now();
    let report = support::chaos::run(&env, Duration::from_secs(secs), seed, images, datasets).await;
    println!(
        "soak seed {seed}: {secs} s of chaos, {} steps, {} kills, {} API-server restart(s), \
         {} cloud writes by {:?}; converged {:.1?} after the faults stopped, every set deleted in {:.1?}; \
         nothing left behind ({:.1?} in all)",
        report.steps,
        report.kills,
        report.apiserver_restarts,
        report.writes,
        report.writers,
        report.converge,
        report.drain,
        started.elapsed()
    );
}
