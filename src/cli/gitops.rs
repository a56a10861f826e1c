//! `plan` and `apply` for CI pipelines: manifests from disk go through the
//! same engine as the controller, straight against the cloud.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::manifest::Located;
use crate::engine::{ResolvedSet, SyncError, SyncReport, SyncRequest, sync};
use crate::plan::{Claim, Labels, Role, managed};
use crate::provider::LabelProvider;

/// Hands out a provider for a resolved set (the operator's configured clouds).
pub type ProviderLookup<'a> =
    dyn Fn(&ResolvedSet) -> Result<Arc<dyn LabelProvider>, String> + Send + Sync + 'a;

/// Ownership between CLI runs. Without it the CLI owns nothing, so
/// `prune: Owned` removes nothing — the safe reading of "never remove a label
/// we do not own".
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateFile {
    /// `Kind/namespace/name` → owned keys.
    pub owned: BTreeMap<String, BTreeSet<String>>,
}

impl StateFile {
    pub fn load(path: &Path) -> Result<Self, String> {
        match super::files::read_capped(path, super::files::MAX_STATE_BYTES, "state file") {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| format!("{}: not a state file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes atomically so a crash never leaves half a file (see [`super::files::write_atomic`]).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        super::files::write_atomic(path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))
    }
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
    pub conflicts: Vec<ConflictOut>,
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

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConflictOut {
    pub key: String,
    pub value: String,
    pub winner: String,
    pub winner_value: String,
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
/// see each other's claims and run one after another in input order, so
/// conflicts resolve exactly as in a sequential run; different objects run
/// up to `concurrency` at once, paced by the shared per-API budgets.
pub async fn run(
    sets: &[Located],
    default_region: &str,
    providers: &ProviderLookup<'_>,
    apply: bool,
    state_path: Option<&PathBuf>,
    concurrency: u16,
) -> Result<Vec<SetResult>, String> {
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
                .map_err(|e| {
                    format!(
                        "{}: {}",
                        l.source,
                        e.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    // Every provider is looked up before any call, so a bad credential or
    // region fails the run before anything is written.
    let providers: Vec<Arc<dyn LabelProvider>> = resolved
        .iter()
        .map(|(set, _)| providers(set))
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
        .collect::<Result<Vec<_>, String>>()?
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
    async fn run_object(&self, group: Vec<usize>) -> Result<Vec<(usize, SetResult)>, String> {
        let mut out = Vec::with_capacity(group.len());
        for &i in &group {
            out.push((i, self.run_set(i, &group).await?));
        }
        Ok(out)
    }

    async fn run_set(&self, i: usize, group: &[usize]) -> Result<SetResult, String> {
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
                .filter(|c| c.set != id)
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
                        state.save(p)
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
        Ok(result_of(set, located, &report, error.as_ref(), self.apply))
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
    for (k, v) in &report.plan.add {
        match report.observed.get(k) {
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
            .map(|c| ConflictOut {
                key: c.key.clone(),
                value: c.ours.clone(),
                winner: c.winner.name.clone(),
                winner_value: c.theirs.clone(),
            })
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

/// Escapes a cell of a Markdown table: `|` would end the cell, a newline
/// the row, and backticks or `<` could turn a value into markup.
fn md_cell(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '|' | '\\' | '`' | '*' | '_' | '<' | '>' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The plan for a pull-request comment: one table row per key that changes
/// (or conflicts, is adopted, or failed), and a summary line; a plan without
/// changes says so in one line.
pub fn render_markdown(results: &[SetResult], apply: bool) -> String {
    let mut rows = Vec::new();
    for r in results {
        // GitHub splits cells at `|` even inside a code span, unless escaped.
        let set = format!(
            "{} `{}`",
            r.kind,
            r.name.replace('`', "'").replace('|', "\\|")
        );
        let target = md_cell(&format!("{} {} ({})", r.provider, r.target, r.region));
        let mut row = |op: &str, key: &str, from: Option<&str>, to: Option<&str>| {
            let q = |v: Option<&str>| v.map(|v| md_cell(&format!("{v:?}"))).unwrap_or_default();
            rows.push(format!(
                "| {set} | {target} | {op} | {} | {} | {} |",
                md_cell(key),
                q(from),
                q(to)
            ));
        };
        for (k, v) in &r.add {
            row("add", k, None, Some(v));
        }
        for (k, c) in &r.change {
            row("change", k, Some(&c.from), Some(&c.to));
        }
        for k in &r.remove {
            row("remove", k, r.labels_after.get(k).map(String::as_str), None);
        }
        for k in &r.adopted {
            row("adopt", k, None, None);
        }
        for c in &r.conflicts {
            let to = format!(
                "{:?} (kept: {} declares {:?})",
                c.value, c.winner, c.winner_value
            );
            rows.push(format!(
                "| {set} | {target} | conflict | {} |  | {} |",
                md_cell(&c.key),
                md_cell(&to)
            ));
        }
        if let Some(e) = &r.error {
            rows.push(format!(
                "| {set} | {target} | error |  |  | {} |",
                md_cell(e)
            ));
        }
    }
    let changed = results.iter().filter(|r| r.has_changes()).count();
    let title = if apply {
        "imagelabel apply"
    } else {
        "imagelabel plan"
    };
    let mut out = format!(
        "### {title}: {changed} of {} sets with changes\n\n",
        results.len()
    );
    if rows.is_empty() {
        out.push_str("No changes: the cloud matches the manifests.\n");
        return out;
    }
    out.push_str("| set | target | action | key | from | to |\n|---|---|---|---|---|---|\n");
    for row in rows {
        out.push_str(&row);
        out.push('\n');
    }
    out
}

/// The human form: one block per set, `+` add, `~` change, `-` remove, `!` conflict.
pub fn render_table(results: &[SetResult], apply: bool) -> String {
    let mut out = String::new();
    let (mut adds, mut changes, mut removes, mut changed_sets, mut errors) = (0, 0, 0, 0, 0);
    for r in results {
        let verb = if !r.has_changes() {
            "in sync"
        } else if apply && r.applied {
            "applied"
        } else if apply {
            "not applied"
        } else {
            "will change"
        };
        out.push_str(&format!(
            "{} {} ({} {}, {}) — {verb}\n",
            r.kind, r.name, r.provider, r.target, r.region
        ));
        for (k, v) in &r.add {
            out.push_str(&format!("  + {k} = {v:?}\n"));
        }
        for (k, c) in &r.change {
            out.push_str(&format!("  ~ {k}: {:?} -> {:?}\n", c.from, c.to));
        }
        for k in &r.remove {
            out.push_str(&format!("  - {k}\n"));
        }
        for k in &r.adopted {
            out.push_str(&format!("  = {k}: adopted (already right, not written)\n"));
        }
        for c in &r.conflicts {
            out.push_str(&format!(
                "  ! {k}: wants {v:?}, but {w} (older) declares {wv:?}; not written\n",
                k = c.key,
                v = c.value,
                w = c.winner,
                wv = c.winner_value
            ));
        }
        if let Some(e) = &r.error {
            out.push_str(&format!("  error: {e}\n"));
            errors += 1;
        }
        if let Some(id) = &r.request_id {
            out.push_str(&format!("  last RequestId: {id}\n"));
        }
        adds += r.add.len();
        changes += r.change.len();
        removes += r.remove.len();
        changed_sets += usize::from(r.has_changes());
    }
    let action = if apply { "Applied" } else { "Plan" };
    out.push_str(&format!(
        "{action}: {changed_sets} of {} sets with changes ({adds} to add, {changes} to change, {removes} to remove){}.\n",
        results.len(),
        if errors > 0 { format!(", {errors} failed") } else { String::new() }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(add: &[(&str, &str)], error: Option<&str>) -> SetResult {
        SetResult {
            name: "ns/a|b".into(),
            kind: "ImageLabelSet".into(),
            source: "f.yaml".into(),
            provider: "pai".into(),
            region: "cn-shanghai".into(),
            target: "image-1".into(),
            add: add
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            change: BTreeMap::new(),
            remove: BTreeSet::new(),
            adopted: ["system.x".to_string()].into(),
            conflicts: vec![],
            applied: false,
            error: error.map(str::to_string),
            request_id: None,
            labels_after: Labels::new(),
        }
    }

    #[test]
    fn markdown_cells_cannot_break_the_table() {
        let md = render_markdown(
            &[result(
                &[("system.x|y", "a|b\nc <b>`x`</b>")],
                Some("boom | bad\nline"),
            )],
            false,
        );
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(rows.len(), 2 + 3, "header, rule, add, adopt, error: {md}");
        let header_cells = rows[0].matches('|').count();
        for row in &rows {
            let unescaped = row.replace("\\|", "");
            assert_eq!(unescaped.matches('|').count(), header_cells, "{row}");
            assert!(!row.contains("<b>"), "{row}");
        }
        assert!(
            rows.iter().any(|r| r.contains("| adopt | system.x |")),
            "{md}"
        );
    }
}
