//! `imagelabel demo` (the embedded default) and `imagelabel sim`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::CloudArgs;
use super::clouds::{Clouds, DefaultCredentials};
use super::gitops::{self, SetResult};
use super::manifest::{self, Located};
use crate::sim::SeedConfig;
use crate::sim::Sim;

/// The bundled examples, so the demo runs from any directory.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "examples/pai-image-xgboost.yaml",
        include_str!("../../examples/pai-image-xgboost.yaml"),
    ),
    (
        "examples/pai-image-modelscope.yaml",
        include_str!("../../examples/pai-image-modelscope.yaml"),
    ),
    (
        "examples/pai-datasets.yaml",
        include_str!("../../examples/pai-datasets.yaml"),
    ),
    (
        "examples/ims-image.yaml",
        include_str!("../../examples/ims-image.yaml"),
    ),
];

const REGION: &str = "cn-shanghai";

#[derive(Clone, Debug, Args)]
pub struct SimArgs {
    /// Seed file (YAML); the embedded demo seed when omitted.
    #[arg(long)]
    pub seed: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
}

#[derive(Clone, Debug, Args)]
pub struct DemoArgs {
    /// Apply these manifests instead of the bundled examples.
    #[arg(short = 'f', long = "filename")]
    pub paths: Vec<PathBuf>,
}

pub async fn serve_sim(args: SimArgs) -> anyhow::Result<ExitCode> {
    let seed = match &args.seed {
        Some(p) => SeedConfig::from_file(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        None => SeedConfig::demo(),
    };
    eprintln!(
        "simulator listening on http://{} (PAI /api/…, IMS /v2/…, STS /?Action=…, admin /_sim/…)",
        args.listen
    );
    crate::sim::serve_seed(seed, args.listen).await?;
    Ok(ExitCode::SUCCESS)
}

fn load(args: &DemoArgs) -> Result<Vec<Located>, Vec<manifest::ManifestError>> {
    if !args.paths.is_empty() {
        return manifest::load(&args.paths, REGION);
    }
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in EXAMPLES {
        manifest::parse_text(Path::new(name), text, REGION, &mut found, &mut errors);
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

fn print_labels(title: &str, sets: &[Located], sim: &Sim) {
    println!("== {title}");
    for l in sets {
        let Ok(set) = l.manifest.resolve(REGION) else {
            continue;
        };
        let labels = sim.labels_of(&set.target).unwrap_or_default();
        println!(
            "{} {} ({} {}):",
            l.manifest.kind(),
            l.manifest.name(),
            set.provider,
            set.target
        );
        if labels.is_empty() {
            println!("    (no labels)");
        }
        for (k, v) in labels {
            let mark = match set.desired.get(&k) {
                Some(d) if *d == v => "declared",
                Some(_) => "differs",
                None if set.protected.matches(&k) => "protected",
                None => "not declared",
            };
            println!("    {k:<28} = {v:<20} [{mark}]");
        }
    }
    println!();
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let sets = match load(&args) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let handle = Sim::demo().start("127.0.0.1:0".parse()?).await?;
    let base = handle.base_url();
    println!("Simulator (PAI AIWorkSpace, Huawei Cloud IMS, STS) running in-process at {base}\n");
    let cloud = CloudArgs {
        default_region: REGION.into(),
        pai_endpoint: Some(base.clone()),
        ims_endpoint: Some(base.clone()),
        sts_endpoint: Some(base.clone()),
        quota_share: 1.0,
        quotas: Vec::new(),
        http_timeout: std::time::Duration::from_secs(10),
        extra_pai_image_keys: Vec::new(),
    };
    let env: HashMap<String, String> = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "testAK"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "testSecret"),
        ("HUAWEICLOUD_SDK_AK", "hwAK"),
        ("HUAWEICLOUD_SDK_SK", "hwSK"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let clouds = Clouds::from_args(&cloud, DefaultCredentials::Fixed(env))?;
    let lookup = |set: &crate::engine::ResolvedSet| clouds.lookup(set);
    let state = tempfile_path();

    print_labels("Labels in the cloud before", &sets, handle.sim());

    println!("== imagelabel plan");
    let planned = gitops::run(
        &sets,
        REGION,
        &lookup,
        false,
        Some(&state),
        gitops::DEFAULT_CONCURRENCY,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    print!("{}", gitops::render_table(&planned, false));
    println!();

    handle.sim().reset_counters();
    println!("== imagelabel apply");
    let applied = gitops::run(
        &sets,
        REGION,
        &lookup,
        true,
        Some(&state),
        gitops::DEFAULT_CONCURRENCY,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    print!("{}", gitops::render_table(&applied, true));
    let counters = handle.sim().counters();
    println!(
        "   ({} read calls, {} write calls)\n",
        counters.reads, counters.writes
    );

    print_labels("Labels in the cloud after", &sets, handle.sim());

    handle.sim().reset_counters();
    println!("== imagelabel plan (again)");
    let again = gitops::run(
        &sets,
        REGION,
        &lookup,
        false,
        Some(&state),
        gitops::DEFAULT_CONCURRENCY,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    print!("{}", gitops::render_table(&again, false));
    let counters = handle.sim().counters();
    println!(
        "   ({} read calls, {} write calls)",
        counters.reads, counters.writes
    );
    let _ = std::fs::remove_file(&state);
    handle.shutdown().await;

    let failed = applied.iter().any(|r| r.error.is_some());
    let converged = again.iter().all(|r: &SetResult| !r.has_changes());
    if failed || !converged {
        eprintln!("demo: the examples did not converge");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn tempfile_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("imagelabel-demo-{}.json", std::process::id()))
}
