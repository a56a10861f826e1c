//! Call counters per API and outcome, for benchmarks ("API calls per change")
//! and tests that assert how many calls the operator made.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Whether an API reads or changes state; benchmarks compare the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Read,
    Write,
    /// Credential exchange (STS) and requests that matched no API.
    Other,
}

/// How one call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// An error response; `throttled` marks the flow-control error.
    Error {
        throttled: bool,
    },
    /// The connection was closed without a response (fault injection).
    Dropped,
}

/// Counts for one API name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiCounts {
    pub ok: u64,
    /// Every error response, throttling included.
    pub error: u64,
    /// The subset of `error` that was the throttling error.
    pub throttled: u64,
    /// Connections closed without a response.
    pub dropped: u64,
    /// Error responses by the error code sent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_code: BTreeMap<String, u64>,
}

impl ApiCounts {
    pub fn total(&self) -> u64 {
        self.ok + self.error + self.dropped
    }
}

/// A copy of all counters; also the JSON of `GET /_sim/counters`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterSnapshot {
    /// Keyed by API name (`ListImageLabels`, `AddImageTag`, …).
    pub apis: BTreeMap<String, ApiCounts>,
    /// Calls to read APIs, whatever their outcome.
    pub reads: u64,
    /// Calls to write APIs, whatever their outcome.
    pub writes: u64,
    /// All calls, including STS and unmatched requests.
    pub total: u64,
    /// Calls to write APIs by the caller's User-Agent, so a test can tell
    /// which replica of the operator wrote.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub writes_by_agent: BTreeMap<String, u64>,
    /// All calls (any API, any outcome, STS and unmatched requests too) by
    /// the caller's User-Agent (`-` when it sent none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub calls_by_agent: BTreeMap<String, u64>,
    /// Throttled answers (flow control, injected or not) by User-Agent, so
    /// a benchmark can tell the operator's from a second client's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub throttled_by_agent: BTreeMap<String, u64>,
}

impl CounterSnapshot {
    /// Counts of one API; zeros when it was never called.
    pub fn api(&self, name: &str) -> ApiCounts {
        self.apis.get(name).cloned().unwrap_or_default()
    }
}

#[derive(Default)]
pub struct Counters {
    inner: Mutex<CounterSnapshot>,
}

impl Counters {
    /// One call of `api` by `agent` (its User-Agent).
    pub fn record(
        &self,
        api: &str,
        kind: CallKind,
        outcome: Outcome,
        code: Option<&str>,
        agent: &str,
    ) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        c.total += 1;
        *c.calls_by_agent.entry(agent.to_string()).or_default() += 1;
        if outcome == (Outcome::Error { throttled: true }) {
            *c.throttled_by_agent.entry(agent.to_string()).or_default() += 1;
        }
        match kind {
            CallKind::Read => c.reads += 1,
            CallKind::Write => c.writes += 1,
            CallKind::Other => {}
        }
        let entry = c.apis.entry(api.to_string()).or_default();
        match outcome {
            Outcome::Ok => entry.ok += 1,
            Outcome::Error { throttled } => {
                entry.error += 1;
                if throttled {
                    entry.throttled += 1;
                }
                if let Some(code) = code {
                    *entry.by_code.entry(code.to_string()).or_default() += 1;
                }
            }
            Outcome::Dropped => entry.dropped += 1,
        }
    }

    /// One write call by `agent` (whatever its outcome).
    pub fn record_writer(&self, agent: &str) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *c.writes_by_agent.entry(agent.to_string()).or_default() += 1;
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn reset(&self) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = CounterSnapshot::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_outcomes_kinds_and_codes_and_resets() {
        let c = Counters::default();
        let (op, other) = ("imagelabel/0 (a)", "bench-client");
        c.record("ListImageLabels", CallKind::Read, Outcome::Ok, None, op);
        c.record(
            "ListImageLabels",
            CallKind::Read,
            Outcome::Error { throttled: true },
            Some("Throttling.User"),
            other,
        );
        c.record(
            "AddImageLabels",
            CallKind::Write,
            Outcome::Error { throttled: false },
            Some("InvalidParameter"),
            op,
        );
        c.record(
            "AddImageLabels",
            CallKind::Write,
            Outcome::Dropped,
            None,
            op,
        );
        c.record("AssumeRoleWithOIDC", CallKind::Other, Outcome::Ok, None, op);
        c.record_writer(op);
        c.record_writer(op);
        let s = c.snapshot();
        assert_eq!(s.writes_by_agent[op], 2);
        assert_eq!((s.calls_by_agent[op], s.calls_by_agent[other]), (4, 1));
        assert_eq!(s.throttled_by_agent.get(op), None);
        assert_eq!(s.throttled_by_agent[other], 1);
        assert_eq!((s.reads, s.writes, s.total), (2, 2, 5));
        let list = s.api("ListImageLabels");
        assert_eq!(
            (list.ok, list.error, list.throttled, list.dropped),
            (1, 1, 1, 0)
        );
        assert_eq!(list.by_code["Throttling.User"], 1);
        let add = s.api("AddImageLabels");
        assert_eq!(
            (add.ok, add.error, add.throttled, add.dropped, add.total()),
            (0, 1, 0, 1, 2)
        );
        assert_eq!(s.api("Nope"), ApiCounts::default());
        c.reset();
        assert_eq!(c.snapshot(), CounterSnapshot::default());
    }
}
