//! `plan` and `apply` for CI pipelines: manifests from disk go through the
//! same engine as the controller, straight against the cloud.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::manifest::Located;
use crate::api::ConflictEntry;
use crate::api::validate::FieldError;
use crate::engine::{ResolvedSet, SyncError, SyncReport, SyncRequest, sync};
use crate::plan::{Claim, Labels, Role, managed};
use crate::provider::{AccessError, LabelProvider};

mod render;

pub use render::{render_markdown, render_table};

/// Hands out a provider for a resolved set (the operator's configured clouds).
pub type ProviderLookup<'a> =
    dyn Fn(&ResolvedSet) -> Result<Arc<dyn LabelProvider>, AccessError> + Send + Sync + 'a;

/// Ownership between CLI runs. Without it the CLI owns nothing, so
/// `prune: Owned` removes nothing — the safe reading of "never remove a label
/// we do not own".
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateFile {
    /// `Kind/namespace/name` → owned keys.
    pub owned: BTreeMap<String, BTreeSet<String>>,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}: not a state file: {source}", path.display())]
    NotAStateFile {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Encode(#[source] serde_json::Error),
}

impl StateFile {
    /// The state at `path`; empty when there is no file yet.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        match super::files::read_capped(path, super::files::MAX_STATE_BYTES, "state file") {
            Ok(text) => serde_json::from_str(&text).map_err(|source| StateError::NotAStateFile {
                path: path.to_path_buf(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
            Err(source) => Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes atomically so a crash never leaves half a file (see [`super::files::write_atomic`]).
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let text = serde_json::to_string_pretty(self).map_err(StateError::Encode)?;
        super::files::write_atomic(path, text.as_bytes()).map_err(|source| StateError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Why a run stopped before planning; a set's own failure is in its
/// [`SetResult::error`] instead.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    /// A manifest that does not resolve (`manifest::load` has checked it
    /// already, so only for callers that built their list another way).
    #[error("{origin}: {}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// Where the manifest came from.
        origin: String,
        errors: Vec<FieldError>,
    },
    /// No provider for a set (unknown region, credentials missing).
    #[error(transparent)]
    Provider(AccessError),
}

/// What happened to one set.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SetResult {
    pub name: String,
    pub kind: String,
    pub source: String,
    pub provider: String,
    pub region: String,
    pub target: String,
    pub add: Labels,
    pub change: BTreeMap<String, Change>,
    pub remove: BTreeSet<String>,
    /// Keys this set takes ownership of without a write (`spec.adopt`).
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub adopted: BTreeSet<String>,
    /// As in `status.conflicts`, but `winner` is `Kind/namespace/name`.
    pub conflicts: Vec<ConflictEntry>,
    pub applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub labels_after: Labels,
}

#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub from: String,
    pub to: String,
}

impl SetResult {
    pub fn has_changes(&self) -> bool {
        !(self.add.is_empty() && self.change.is_empty() && self.remove.is_empty())
    }
}

/// Sets one `plan` / `apply` handles at once unless told otherwise: enough
/// to keep the per-API budgets busy at 20 ms per call, few enough that a
/// pipeline's runner does not notice.
pub const DEFAULT_CONCURRENCY: u16 = 16;

/// Plans (and with `apply`, carries out) every set. Sets on the same object
/// see each other's claims; a key they declare differently goes to the set
/// the cluster would pick ([`super::manifest::Manifest::set_id`]: the older
/// `metadata.creationTimestamp`, a manifest without one being the newest,
/// then the smaller name), whatever the input order. They run one after
/// another in input order, so `concurrency` changes nothing in the result;
/// different objects run up to `concurrency` at once, paced by the shared
/// per-API budgets.
pub async fn run(
    sets: &[Located],
    default_region: &str,
    providers: &ProviderLookup<'_>,
    apply: bool,
    state_path: Option<&PathBuf>,
    concurrency: u16,
) -> Result<Vec<SetResult>, RunError> {
    use futures::StreamExt;

    let state = Mutex::new(match state_path {
        Some(p) => StateFile::load(p)?,
        None => StateFile::default(),
    });
    let resolved: Vec<(ResolvedSet, &Located)> = sets
        .iter()
        .map(|l| {
            l.manifest
                .resolve(default_region)
                .map(|r| (r, l))
                .map_err(|errors| RunError::Invalid {
                    origin: l.source.clone(),
                    errors,
                })
        })
        .collect::<Result<_, _>>()?;
    // Every provider is looked up before any call, so a bad credential or
    // region fails the run before anything is written.
    let providers: Vec<Arc<dyn LabelProvider>> = resolved
        .iter()
        .map(|(set, _)| providers(set).map_err(RunError::Provider))
        .collect::<Result<_, _>>()?;
    let mut by_object: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (set, _)) in resolved.iter().enumerate() {
        by_object.entry(set.object_key()).or_default().push(i);
    }
    // Objects in the order their first set appears, so output and state
    // writes do not depend on key order.
    let mut groups: Vec<Vec<usize>> = by_object.into_values().collect();
    groups.sort_by_key(|g| g[0]);
    let ctx = RunCtx {
        resolved: &resolved,
        providers: &providers,
        state: &state,
        state_path,
        apply,
    };
    let mut results: Vec<(usize, SetResult)> = futures::stream::iter(groups)
        .map(|group| ctx.run_object(group))
        .buffer_unordered(usize::from(concurrency.max(1)))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect();
    results.sort_by_key(|(i, _)| *i);
    if apply && let Some(p) = state_path {
        lock(&state).save(p)?;
    }
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

fn lock(state: &Mutex<StateFile>) -> std::sync::MutexGuard<'_, StateFile> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// What every set of one run shares.
struct RunCtx<'a> {
    resolved: &'a [(ResolvedSet, &'a Located)],
    providers: &'a [Arc<dyn LabelProvider>],
    state: &'a Mutex<StateFile>,
    state_path: Option<&'a PathBuf>,
    apply: bool,
}

impl RunCtx<'_> {
    /// The sets of one object, one after another.
    async fn run_object(&self, group: Vec<usize>) -> Vec<(usize, SetResult)> {
        let mut out = Vec::with_capacity(group.len());
        for &i in &group {
            out.push((i, self.run_set(i, &group).await));
        }
        out
    }

    async fn run_set(&self, i: usize, group: &[usize]) -> SetResult {
        let (set, located) = &self.resolved[i];
        let id = located.manifest.set_id();
        let (claims, owned) = {
            let state = lock(self.state);
            let claims: Vec<Claim> = group
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| {
                    let (other, l) = &self.resolved[j];
                    let set = l.manifest.set_id();
                    Claim {
                        owned: state.owned.get(&set.name).cloned().unwrap_or_default(),
                        labels: managed(&other.desired, &other.protected),
                        role: Role::of(other.policy.mode, false),
                        set,
                    }
                })
                // A second document with the same name is the same set.
                .filter(|c| c.set.name != id.name)
                .collect();
            (
                claims,
                state.owned.get(&id.name).cloned().unwrap_or_default(),
            )
        };
        let held = BTreeSet::new();
        let req = SyncRequest {
            set,
            id: &id,
            owned: &owned,
            claims: &claims,
            held: &held,
            deleting: None,
            dry_run: !self.apply,
        };
        // The write-ahead record reaches the state file before the first
        // write; the file holds every set's latest record, under one lock.
        let outcome = sync(self.providers[i].as_ref(), req, |owned_ahead| {
            let saved = match self.state_path {
                Some(p) => {
                    let mut state = lock(self.state);
                    let known = state.owned.get(&id.name);
                    if known.is_some_and(|k| owned_ahead.is_subset(k)) {
                        Ok(())
                    } else {
                        state.owned.insert(id.name.clone(), owned_ahead);
                        // The engine reports it as a message.
                        state.save(p).map_err(|e| e.to_string())
                    }
                }
                None => Ok(()),
            };
            async move { saved }
        })
        .await;
        let (report, error) = match outcome {
            Ok(r) => (r, None),
            Err((r, e)) => (r, Some(e)),
        };
        if self.apply && !matches!(error, Some(SyncError::Observe(_) | SyncError::Limit(_))) {
            lock(self.state)
                .owned
                .insert(id.name.clone(), report.owned.clone());
        }
        result_of(set, located, &report, error.as_ref(), self.apply)
    }
}

fn result_of(
    set: &ResolvedSet,
    located: &Located,
    report: &SyncReport,
    error: Option<&SyncError>,
    apply: bool,
) -> SetResult {
    let mut add = Labels::new();
    let mut change = BTreeMap::new();
    for (k, before, v) in report.writes() {
        match before {
            Some(old) => {
                change.insert(
                    k.clone(),
                    Change {
                        from: old.clone(),
                        to: v.clone(),
                    },
                );
            }
            None => {
                add.insert(k.clone(), v.clone());
            }
        }
    }
    SetResult {
        name: located.manifest.name(),
        kind: located.manifest.kind().to_string(),
        source: located.source.clone(),
        provider: set.provider.to_string(),
        region: set.region.clone(),
        target: set.target.to_string(),
        add,
        change,
        remove: report.plan.remove.clone(),
        adopted: report.plan.adopted.clone(),
        conflicts: report
            .plan
            .conflicts
            .iter()
            .map(ConflictEntry::from)
            .collect(),
        applied: apply && error.is_none() && report.applied.is_some(),
        error: error.map(ToString::to_string),
        request_id: report
            .applied
            .as_ref()
            .and_then(|a| a.last_request_id.clone()),
        labels_after: report.labels_after.clone(),
    }
}

#[cfg(test)]
mod tests;
