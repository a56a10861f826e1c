//! `imagelabel export`: flags, clients and output of [`crate::export`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::CloudArgs;
use super::clouds::{Clouds, DefaultCredentials};
use crate::api::{Mode, Provider};
use crate::export::{ExportOptions, ExportQuery, Filters, read, render};

#[derive(Clone, Debug, Args)]
pub struct ExportArgs {
    /// PAI workspace to export (repeatable): its images, datasets and dataset versions.
    #[arg(long = "workspace")]
    pub workspaces: Vec<String>,
    /// Huawei Cloud IMS project to export (repeatable): its images.
    #[arg(long = "project")]
    pub projects: Vec<String>,
    /// Only PAI images whose name contains this.
    #[arg(long)]
    pub name: Option<String>,
    /// Only PAI images with this label, `KEY=VALUE` (repeatable; all must match).
    #[arg(long = "label", value_parser = parse_pair)]
    pub labels: Vec<(String, String)>,
    /// Only IMS images with this tag, `KEY=VALUE`.
    #[arg(long, value_parser = parse_pair)]
    pub tag: Option<(String, String)>,
    /// Leave PAI datasets and dataset versions out.
    #[arg(long)]
    pub no_datasets: bool,
    /// `spec.mode` of the exported sets.
    #[arg(long, value_parser = parse_mode, default_value = "Observe")]
    pub mode: Mode,
    /// Set `spec.adopt: true`, so Sync sets own the labels already there without writing them.
    #[arg(long)]
    pub adopt: bool,
    /// Namespace of the exported sets.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Directory to write one file per workspace / project into; stdout when omitted.
    #[arg(short = 'o', long = "output-dir")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "Observe" => Ok(Mode::Observe),
        "Sync" => Ok(Mode::Sync),
        _ => Err(format!("{s:?} is not a mode: Observe or Sync")),
    }
}

/// A namespace is a DNS-1123 label.
fn validate_namespace(ns: &str) -> Result<(), String> {
    let ok = !ns.is_empty()
        && ns.len() <= 63
        && ns
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    ok.then_some(()).ok_or_else(|| {
        format!("--namespace {ns:?}: a namespace is 1-63 lower-case letters, digits and inner '-'")
    })
}

/// The IDs go into `spec.workspaceId` / `spec.projectId`: the schema's
/// rules for those fields, so every exported file is admitted.
fn validate_ids(args: &ExportArgs) -> Result<(), String> {
    for w in &args.workspaces {
        if w.is_empty() || w.chars().count() > 64 {
            return Err(format!(
                "--workspace {w:?}: a workspace ID is 1-64 characters"
            ));
        }
    }
    for p in &args.projects {
        let ok = !p.is_empty()
            && p.len() <= 64
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(format!(
                "--project {p:?}: a project ID is 1-64 letters, digits and '-'"
            ));
        }
    }
    Ok(())
}

pub async fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    if args.workspaces.is_empty() && args.projects.is_empty() {
        anyhow::bail!("name at least one --workspace (PAI) or --project (IMS) to export");
    }
    validate_namespace(&args.namespace).map_err(anyhow::Error::msg)?;
    validate_ids(&args).map_err(anyhow::Error::msg)?;
    let filters = Filters {
        image_name: args.name.clone(),
        image_labels: args.labels.clone(),
        ims_tag: args.tag.clone(),
        no_datasets: args.no_datasets,
    };
    filters.validate().map_err(anyhow::Error::msg)?;
    let clouds = Clouds::from_args(&args.cloud, DefaultCredentials::FromEnvironment)?;
    let registry = clouds.registry();
    let region = args.cloud.default_region.as_str();
    // Only the clouds asked for need credentials.
    let pai = if args.workspaces.is_empty() {
        None
    } else {
        let creds = registry.default_credentials(Provider::Pai)?;
        Some(registry.pai(region, creds).map_err(anyhow::Error::msg)?)
    };
    let ims = if args.projects.is_empty() {
        None
    } else {
        let creds = registry.default_credentials(Provider::HuaweicloudIms)?;
        Some(registry.ims(region, creds).map_err(anyhow::Error::msg)?)
    };
    let found = read(&ExportQuery {
        region,
        pai: pai.as_deref(),
        workspaces: &args.workspaces,
        ims: ims.as_deref(),
        projects: &args.projects,
        filters: &filters,
    })
    .await
    .context("reading the cloud")?;
    let files = render(
        &found,
        &ExportOptions {
            namespace: args.namespace.clone(),
            mode: args.mode,
            adopt: args.adopt,
        },
    );
    let sets: usize = files.iter().map(|f| f.sets).sum();
    match &args.output {
        Some(dir) => {
            // `{:#}` (how errors are printed) shows "PATH: cause", as before.
            std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
            for f in &files {
                let path = dir.join(&f.name);
                std::fs::write(&path, &f.text).with_context(|| path.display().to_string())?;
            }
        }
        // Each file opens with its comment and `---`, so the files simply
        // follow each other as one multi-document stream.
        None => files.iter().for_each(|f| print!("{}", f.text)),
    }
    eprintln!(
        "exported {sets} set(s) from {} object(s) into {} file(s)",
        found.len(),
        files.len()
    );
    Ok(ExitCode::SUCCESS)
}
