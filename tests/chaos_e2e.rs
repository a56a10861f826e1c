//! A bounded soak on the real control plane (see `support::chaos`): two
//! replicas killed at random, an API-server restart, 20% faulty cloud calls,
//! random edits, deletions and out-of-band changes; then nothing may be left
//! behind. `IMAGELABEL_SOAK_SECONDS` (default 60) and `IMAGELABEL_SOAK_SEED`
//! change the run; `cargo bench --bench soak` is the long version.

mod support;

use std::time::Duration;

use support::operator::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_kills_restarts_and_faults_leaves_nothing_behind() {
    let secs = std::env::var("IMAGELABEL_SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let seed = std::env::var("IMAGELABEL_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    println!("soak seed {seed} ({secs} s); replay with IMAGELABEL_SOAK_SEED={seed}");
    let (images, datasets) = (12, 3);
    let env = Env::start("chaos", support::chaos::seed(images, datasets)).await;
    let report = support::chaos::run(&env, Duration::from_secs(secs), seed, images, datasets).await;
    println!("soak seed {seed}: {report:?}");
    assert!(
        report.kills >= 1 && report.apiserver_restarts == 1,
        "{report:?}"
    );
    assert!(report.writes > 0, "the operator wrote: {report:?}");
}
