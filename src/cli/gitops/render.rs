//! The two forms of a `plan` / `apply` result for people: the table on a
//! terminal and the Markdown table for a pull-request comment. Both print
//! the same rows ([`rows`]), in the same order.

use super::SetResult;
use crate::api::ConflictEntry;

/// One line of a set's diff.
enum Row<'a> {
    Add(&'a str, &'a str),
    Change(&'a str, &'a str, &'a str),
    /// The key, and the value it had.
    Remove(&'a str, Option<&'a str>),
    Adopt(&'a str),
    Conflict(&'a ConflictEntry),
    Error(&'a str),
}

/// Adds, changes, removes, adoptions, conflicts, then the error.
fn rows(r: &SetResult) -> impl Iterator<Item = Row<'_>> {
    let adds = r.add.iter().map(|(k, v)| Row::Add(k, v));
    let changes = r.change.iter().map(|(k, c)| Row::Change(k, &c.from, &c.to));
    let removes = r
        .remove
        .iter()
        .map(|k| Row::Remove(k, r.labels_after.get(k).map(String::as_str)));
    let adopted = r.adopted.iter().map(|k| Row::Adopt(k));
    adds.chain(changes)
        .chain(removes)
        .chain(adopted)
        .chain(r.conflicts.iter().map(Row::Conflict))
        .chain(r.error.as_deref().map(Row::Error))
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

/// A Markdown cell holding a quoted value, empty for none.
fn md_value(v: Option<&str>) -> String {
    v.map(|v| md_cell(&format!("{v:?}"))).unwrap_or_default()
}

/// The plan for a pull-request comment: one table row per key that changes
/// (or conflicts, is adopted, or failed), and a summary line; a plan without
/// changes says so in one line.
pub fn render_markdown(results: &[SetResult], apply: bool) -> String {
    let mut lines = Vec::new();
    for r in results {
        // GitHub splits cells at `|` even inside a code span, unless escaped.
        let set = format!(
            "{} `{}`",
            r.kind,
            r.name.replace('`', "'").replace('|', "\\|")
        );
        let target = md_cell(&format!("{} {} ({})", r.provider, r.target, r.region));
        for row in rows(r) {
            let (op, key, from, to) = match row {
                Row::Add(k, v) => ("add", md_cell(k), String::new(), md_value(Some(v))),
                Row::Change(k, from, to) => (
                    "change",
                    md_cell(k),
                    md_value(Some(from)),
                    md_value(Some(to)),
                ),
                Row::Remove(k, was) => ("remove", md_cell(k), md_value(was), String::new()),
                Row::Adopt(k) => ("adopt", md_cell(k), String::new(), String::new()),
                Row::Conflict(c) => {
                    let kept = format!(
                        "{:?} (kept: {} declares {:?})",
                        c.value, c.winner, c.winner_value
                    );
                    ("conflict", md_cell(&c.key), String::new(), md_cell(&kept))
                }
                Row::Error(e) => ("error", String::new(), String::new(), md_cell(e)),
            };
            lines.push(format!(
                "| {set} | {target} | {op} | {key} | {from} | {to} |"
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
    if lines.is_empty() {
        out.push_str("No changes: the cloud matches the manifests.\n");
        return out;
    }
    out.push_str("| set | target | action | key | from | to |\n|---|---|---|---|---|---|\n");
    for line in lines {
        out.push_str(&line);
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
        for row in rows(r) {
            let line = match row {
                Row::Add(k, v) => format!("  + {k} = {v:?}\n"),
                Row::Change(k, from, to) => format!("  ~ {k}: {from:?} -> {to:?}\n"),
                Row::Remove(k, _) => format!("  - {k}\n"),
                Row::Adopt(k) => format!("  = {k}: adopted (already right, not written)\n"),
                Row::Conflict(c) => format!(
                    "  ! {k}: wants {v:?}, but {w} (older) declares {wv:?}; not written\n",
                    k = c.key,
                    v = c.value,
                    w = c.winner,
                    wv = c.winner_value
                ),
                Row::Error(e) => {
                    errors += 1;
                    format!("  error: {e}\n")
                }
            };
            out.push_str(&line);
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
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::plan::Labels;

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
