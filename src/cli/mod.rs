//! The `imagelabel` binary's subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod clouds;
#[cfg(feature = "sim")]
pub mod demo;
pub mod export;
pub mod files;
pub mod gitops;
pub mod manifest;

#[derive(Debug, Parser)]
#[command(
    name = "imagelabel",
    version,
    about = "Keeps the labels of cloud ML images and datasets equal to what ImageLabelSet / DatasetLabelSet declare"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level or tracing filter (for example `info`, `imagelabel=debug`).
    #[arg(
        long,
        global = true,
        env = "IMAGELABEL_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
    /// Log format.
    #[arg(long, global = true, env = "IMAGELABEL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Threads of the async runtime (default: the CPUs this process may
    /// use, at most 2). The work is mostly waiting on the network, and
    /// every thread keeps its own allocator arena.
    #[arg(long, global = true, env = "IMAGELABEL_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: Option<u16>,
}

impl Cli {
    pub fn runtime_threads(&self) -> usize {
        match self.worker_threads {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
// Parsed once per process; boxing the largest variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the controller (in cluster, or out of cluster with a kubeconfig).
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
    /// Show the changes the manifests would make; exit 2 when there are any.
    Plan(GitopsArgs),
    /// Make the changes the manifests declare, directly against the cloud.
    Apply(GitopsArgs),
    /// Write manifests for the labels the clouds already hold (one set per object).
    Export(export::ExportArgs),
    /// Serve the cloud simulator.
    #[cfg(feature = "sim")]
    Sim(demo::SimArgs),
    /// Run the simulator in-process, apply the bundled examples, show the result.
    #[cfg(feature = "sim")]
    Demo(demo::DemoArgs),
}

/// Where the clouds are and how hard we may call them. Endpoints come only
/// from here, never from a custom resource.
#[derive(Clone, Debug, Args)]
pub struct CloudArgs {
    /// Region for sets that do not name one.
    #[arg(long, env = "IMAGELABEL_DEFAULT_REGION", default_value = "cn-shanghai")]
    pub default_region: String,
    /// Base URL replacing https://aiworkspace.<region>.aliyuncs.com (VPC endpoint, simulator).
    #[arg(long, env = "IMAGELABEL_PAI_ENDPOINT")]
    pub pai_endpoint: Option<String>,
    /// Base URL replacing https://ims.<region>.myhuaweicloud.com.
    #[arg(long, env = "IMAGELABEL_IMS_ENDPOINT")]
    pub ims_endpoint: Option<String>,
    /// Base URL of STS for RRSA (AssumeRoleWithOIDC).
    #[arg(long, env = "IMAGELABEL_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,
    /// Share of each cloud API's published rate (per main account, region
    /// and API) this operator uses, in (0, 1]; the rest stays free for
    /// people and other tools.
    #[arg(long, env = "IMAGELABEL_QUOTA_SHARE", default_value_t = crate::provider::limiter::DEFAULT_QUOTA_SHARE, value_parser = parse_share_arg)]
    pub quota_share: f64,
    /// Absolute rate for one API, API=RATE in calls per second (repeatable,
    /// e.g. --quota AddImageLabels=5); not multiplied by --quota-share. A
    /// name applies to every provider with that API (ListImages: PAI and IMS).
    #[arg(long = "quota", env = "IMAGELABEL_QUOTAS", value_delimiter = ',', value_parser = parse_quota_arg)]
    pub quotas: Vec<(String, f64)>,
    /// Timeout of one cloud call.
    #[arg(long, env = "IMAGELABEL_HTTP_TIMEOUT", default_value = "30s", value_parser = parse_duration_arg)]
    pub http_timeout: Duration,
    /// PAI image label keys AddImageLabels accepts beyond the documented list
    /// (comma-separated): the cloud may gain keys before this binary knows them.
    #[arg(long, env = "IMAGELABEL_EXTRA_PAI_IMAGE_KEYS", value_delimiter = ',')]
    pub extra_pai_image_keys: Vec<String>,
}

#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub cloud: CloudArgs,
    /// Sets reconciled at once.
    #[arg(long, env = "IMAGELABEL_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// Drift-check period for sets without spec.resyncInterval (jittered ±20%).
    #[arg(long, env = "IMAGELABEL_RESYNC_INTERVAL", default_value = "10m", value_parser = parse_duration_arg)]
    pub resync_interval: Duration,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "IMAGELABEL_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Run only while holding the Lease, so two replicas never both write.
    #[arg(long, env = "IMAGELABEL_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    #[arg(
        long,
        env = "IMAGELABEL_LEASE_NAME",
        default_value = "imagelabel-operator"
    )]
    pub lease_name: String,
    /// Namespace of the Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// How long a lease holder that stopped renewing keeps the lease.
    #[arg(long, env = "IMAGELABEL_LEASE_DURATION", default_value = "15s", value_parser = parse_duration_arg)]
    pub lease_duration: Duration,
    /// This replica's identity in the Lease (defaults to the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Watch one namespace only (default or empty: all).
    #[arg(long, env = "IMAGELABEL_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Out-of-band changes of one key within --fight-window before the operator stops repairing it.
    #[arg(long, default_value_t = 3)]
    pub fight_threshold: usize,
    #[arg(long, default_value = "1h", value_parser = parse_duration_arg)]
    pub fight_window: Duration,
    /// Longest pause between retries of a failing set.
    #[arg(long, default_value = "5m", value_parser = parse_duration_arg)]
    pub backoff_cap: Duration,
    /// How often a set stalled on its credentialsRef Secret re-reads the
    /// Secret (no cloud call) to notice it was fixed.
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
    pub secret_poll_interval: Duration,
    /// How long a set stalled on a terminal cloud error (not found, access
    /// denied, bad credentials) waits before one more attempt when neither
    /// its spec nor its Secret changed.
    #[arg(long, default_value = "1h", value_parser = parse_duration_arg)]
    pub stalled_recheck: Duration,
    /// Namespaces whose sets may omit spec.credentialsRef and use the
    /// operator's own credentials (comma-separated; `*` for every
    /// namespace). Empty: every set must name a Secret of its own.
    #[arg(
        long,
        env = "IMAGELABEL_DEFAULT_CREDENTIALS_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub default_credentials_namespaces: Vec<String>,
}

#[derive(Clone, Debug, Args)]
pub struct GitopsArgs {
    /// Manifest files or directories (multi-document YAML; directories are not recursed).
    #[arg(short = 'f', long = "filename", required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// JSON file recording which keys each set owns between runs; without
    /// it, `prune: Owned` removes nothing.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Objects planned or applied at once (sets on one object always run in
    /// input order); the per-API budgets pace the calls whatever this is.
    #[arg(long, default_value_t = gitops::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    /// A Markdown table, for a pull-request comment.
    Markdown,
}

fn parse_share_arg(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!("{s:?} is not a share in (0, 1], like 0.5")),
    }
}

fn parse_quota_arg(s: &str) -> Result<(String, f64), String> {
    crate::provider::limiter::parse_quota(s)
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    crate::api::validate::parse_duration(s)
        .ok_or_else(|| format!("{s:?} is not a duration like 30s, 10m or 1h30m"))
}

/// Installs the tracing subscriber (JSON for clusters, text for people).
pub fn init_logging(level: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs a parsed command line; the exit code follows the CLI contract
/// (0 ok, 1 error, 2 `plan` found changes).
pub async fn main(cli: Cli) -> ExitCode {
    init_logging(&cli.log_level, cli.log_format);
    if let Command::Plan(GitopsArgs { cloud, .. })
    | Command::Apply(GitopsArgs { cloud, .. })
    | Command::Run(RunArgs { cloud, .. })
    | Command::Export(export::ExportArgs { cloud, .. }) = &cli.command
    {
        crate::api::rules::allow_extra_pai_image_keys(cloud.extra_pai_image_keys.iter().cloned());
        crate::provider::location::route_requests_to(crate::provider::location::Routes {
            pai: cloud.pai_endpoint.clone(),
            ims: cloud.ims_endpoint.clone(),
        });
    }
    let result = match cli.command {
        Command::Crd => {
            print!("{}", crate::api::crds_yaml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(args) => gitops_command(args, false).await,
        Command::Apply(args) => gitops_command(args, true).await,
        Command::Run(args) => run_command(args).await,
        Command::Export(args) => export::run(args).await,
        #[cfg(feature = "sim")]
        Command::Sim(args) => demo::serve_sim(args).await,
        #[cfg(feature = "sim")]
        Command::Demo(args) => demo::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn gitops_command(args: GitopsArgs, apply: bool) -> anyhow::Result<ExitCode> {
    let sets = match manifest::load(&args.paths, &args.cloud.default_region) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!(
                "{} invalid manifest document(s); nothing was {}.",
                errors.len(),
                if apply { "applied" } else { "planned" }
            );
            // A pipeline reading stdout gets the same verdict as JSON.
            if args.output == Output::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "apply": apply, "sets": [], "invalid": errors })
                    )?
                );
            }
            return Ok(ExitCode::from(1));
        }
    };
    let clouds =
        clouds::Clouds::from_args(&args.cloud, clouds::DefaultCredentials::FromEnvironment)?;
    let results = gitops::run(
        &sets,
        &args.cloud.default_region,
        &|set| clouds.lookup(set),
        apply,
        args.state.as_ref(),
        args.concurrency,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    match args.output {
        Output::Table => print!("{}", gitops::render_table(&results, apply)),
        Output::Markdown => print!("{}", gitops::render_markdown(&results, apply)),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "apply": apply, "sets": results }))?
        ),
    }
    let failed = results.iter().any(|r| r.error.is_some());
    let changes = results.iter().any(gitops::SetResult::has_changes);
    Ok(if failed {
        ExitCode::from(1)
    } else if !apply && changes {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

async fn run_command(args: RunArgs) -> anyhow::Result<ExitCode> {
    let client = kube::Client::try_default().await?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            hostname(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    });
    let clouds = clouds::Clouds::for_client(
        &args.cloud,
        clouds::DefaultCredentials::FromEnvironment,
        Some(identity.clone()),
    )?;
    let cfg = crate::controller::RunConfig {
        reconcile: crate::controller::context::ReconcileConfig {
            default_region: args.cloud.default_region.clone(),
            default_resync: args.resync_interval,
            fight_threshold: args.fight_threshold,
            fight_window: args.fight_window,
            backoff_base: Duration::from_secs(1),
            backoff_cap: args.backoff_cap,
            secret_poll: args.secret_poll_interval,
            stalled_recheck: args.stalled_recheck,
            default_credentials: crate::controller::tenancy::DefaultCredentialsNamespaces::parse(
                args.default_credentials_namespaces
                    .iter()
                    .map(String::as_str),
            ),
        },
        concurrency: args.concurrency,
        metrics_addr: args.metrics_addr,
        leader_election: args.leader_election,
        lease_name: args.lease_name,
        lease_namespace: args.lease_namespace,
        lease_duration: args.lease_duration,
        identity,
        watch_namespace: args.watch_namespace.filter(|ns| !ns.is_empty()),
    };
    crate::controller::run(client, std::sync::Arc::new(clouds), cfg, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "imagelabel".into())
}

/// SIGTERM (Kubernetes) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested; finishing in-flight reconciles");
}

#[cfg(test)]
mod budget_flag_tests {
    use clap::Parser;

    use super::*;

    fn run(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["imagelabel", "run"].iter().chain(args))
    }

    fn cloud(cli: Cli) -> CloudArgs {
        match cli.command {
            Command::Run(r) => r.cloud,
            _ => unreachable!(),
        }
    }

    #[test]
    fn quota_share_and_quotas() {
        let c = cloud(run(&[]).unwrap());
        assert_eq!(c.quota_share, 0.5);
        assert!(c.quotas.is_empty());
        let c = cloud(
            run(&[
                "--quota-share",
                "1",
                "--quota",
                "AddImageLabels=5",
                "--quota",
                "ListImageTags=2.5",
            ])
            .unwrap(),
        );
        assert_eq!(c.quota_share, 1.0);
        assert_eq!(
            c.quotas,
            vec![
                ("AddImageLabels".to_string(), 5.0),
                ("ListImageTags".to_string(), 2.5)
            ]
        );
        for bad in ["0", "1.5", "-1", "half"] {
            assert!(run(&["--quota-share", bad]).is_err(), "{bad}");
        }
        let e = run(&["--quota", "AddLabels=5"]).unwrap_err().to_string();
        assert!(
            e.contains("unknown API") && e.contains("RemoveImageLabels"),
            "{e}"
        );
        assert!(run(&["--quota", "AddImageLabels=0"]).is_err());
        assert!(run(&["--qps", "100"]).is_err(), "--qps is gone");
    }
}
