//! Prometheus metrics of the controller.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::resource::LabelSet;
use crate::api::{DatasetLabelSet, ImageLabelSet, Provider};
use crate::provider::ErrorKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: String,
    pub result: String,
}

/// A failed reconcile: the set's kind and what failed (see
/// [`super::reconcile::Error::kind`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloudCallLabels {
    pub provider: String,
    pub api: String,
    pub outcome: String,
}

/// One client-side budget series: summed over main accounts, which would
/// make poor labels (cardinality, and they identify credentials).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    pub provider: String,
    pub region: String,
    pub api: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Failed reconciles by kind and what failed.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram>,
    pub cloud_calls: Family<CloudCallLabels, Counter>,
    pub drift_repaired: Family<KindLabels, Counter>,
    pub labels_managed: Family<KindLabels, Gauge>,
    pub conflicts: Family<KindLabels, Gauge>,
    pub fights_detected: Family<KindLabels, Counter>,
    pub rate_limiter_wait: Counter<f64, AtomicU64>,
    pub cloud_requests: Counter,
    pub budget_rate: Family<BudgetLabels, Gauge<f64, AtomicU64>>,
    pub budget_ceiling: Family<BudgetLabels, Gauge<f64, AtomicU64>>,
    pub throttled: Family<BudgetLabels, Counter>,
    pub leader: Gauge,
    /// Drift checks (reconciles of a set synced at its generation) by result.
    pub drift_checks: Family<ReconcileLabels, Counter>,
    /// ListImages pages read for workspace snapshots.
    pub snapshot_pages: Counter,
    /// Drift checks a workspace snapshot answered without a per-image read.
    pub snapshot_answers: Counter,
    /// Seconds from the start of the watches to both kinds' caches holding
    /// the full list (0 until then).
    pub caches_ready: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            reconciles: Default::default(),
            reconcile_errors: Default::default(),
            reconcile_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            cloud_calls: Default::default(),
            drift_repaired: Default::default(),
            labels_managed: Default::default(),
            conflicts: Default::default(),
            fights_detected: Default::default(),
            rate_limiter_wait: Default::default(),
            cloud_requests: Default::default(),
            budget_rate: Default::default(),
            budget_ceiling: Default::default(),
            throttled: Default::default(),
            leader: Default::default(),
            drift_checks: Default::default(),
            snapshot_pages: Default::default(),
            snapshot_answers: Default::default(),
            caches_ready: Default::default(),
        };
        let mut registry = Registry::with_prefix("imagelabel");
        m.register_reconcile_families(&mut registry);
        m.register_cloud_and_process_families(&mut registry);
        m.registry = registry;
        m.create_series();
        m
    }
}

impl Metrics {
    /// What reconciles did to sets: results, errors, durations, keys.
    fn register_reconcile_families(&self, registry: &mut Registry) {
        registry.register(
            "reconciles",
            "Reconciles by kind and result (success, error, stalled, paused)",
            self.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by kind and error (kube, cloud_throttled, cloud_server, cloud_network, secret_read, ownership, deletion_blocked, handing_over, finalizer, ...)",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            self.reconcile_duration.clone(),
        );
        registry.register(
            "cloud_calls",
            "Cloud API calls by provider, API and outcome",
            self.cloud_calls.clone(),
        );
        registry.register(
            "drift_repaired",
            "Labels repaired after an out-of-band change",
            self.drift_repaired.clone(),
        );
        registry.register(
            "labels_managed",
            "Label keys owned by all sets",
            self.labels_managed.clone(),
        );
        registry.register(
            "key_conflicts",
            "Keys declared by a set but won by an older set",
            self.conflicts.clone(),
        );
        registry.register(
            "fights_detected",
            "Keys the operator stopped repairing because something keeps changing them",
            self.fights_detected.clone(),
        );
    }

    /// Cloud calls and budgets, leadership, drift checks and the caches.
    fn register_cloud_and_process_families(&self, registry: &mut Registry) {
        registry.register(
            "rate_limiter_wait_seconds",
            "Time cloud calls waited for the rate limiter",
            self.rate_limiter_wait.clone(),
        );
        registry.register(
            "cloud_requests",
            "HTTP requests sent to cloud APIs, retries included (cloud_calls counts each call once)",
            self.cloud_requests.clone(),
        );
        registry.register(
            "cloud_budget_rate",
            "Current client-side rate (calls per second) of the budgets of a provider, region and API, summed over main accounts",
            self.budget_rate.clone(),
        );
        registry.register(
            "cloud_budget_ceiling",
            "Ceiling (calls per second) of the budgets of a provider, region and API, summed over main accounts",
            self.budget_ceiling.clone(),
        );
        registry.register(
            "cloud_throttled",
            "Throttling answers (HTTP requests, retries included) by provider, region and API",
            self.throttled.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            self.leader.clone(),
        );
        registry.register(
            "drift_checks",
            "Periodic drift checks by kind and result (clean: nothing written; drift: labels or status changed)",
            self.drift_checks.clone(),
        );
        registry.register(
            "workspace_snapshot_pages",
            "ListImages pages read to answer drift checks of a whole PAI workspace at once",
            self.snapshot_pages.clone(),
        );
        registry.register(
            "drift_checks_from_snapshot",
            "Drift checks answered from a workspace snapshot, without reading the image",
            self.snapshot_answers.clone(),
        );
        registry.register(
            "watch_caches_ready_seconds",
            "Seconds from the start of this leader's watches until both kinds' caches held the full list (0 until then)",
            self.caches_ready.clone(),
        );
    }
}

/// The `api` label values of `cloud_calls` (see `Metered`).
pub const CLOUD_APIS: [&str; 3] = ["read", "add", "remove"];
/// The `result` label values of `reconciles`.
pub const RESULTS: [&str; 4] = ["success", "stalled", "paused", "error"];
/// The `result` label values of `drift_checks`.
pub const DRIFT_CHECK_RESULTS: [&str; 2] = ["clean", "drift"];

impl Metrics {
    /// Every series a dashboard or alert selects exists at 0 from the start:
    /// a family without samples is "No data" to Grafana, and `rate()` or
    /// `increase()` over a series born at its first event misses that event.
    fn create_series(&self) {
        for kind in [ImageLabelSet::KIND, DatasetLabelSet::KIND] {
            let k = Metrics::kind(kind);
            for result in RESULTS {
                let _ = self.reconciles.get_or_create(&ReconcileLabels {
                    kind: kind.into(),
                    result: result.into(),
                });
            }
            let errors = super::reconcile::ERROR_KINDS
                .into_iter()
                .chain(["finalizer"]);
            for error in errors {
                let _ = self.reconcile_errors.get_or_create(&ErrorLabels {
                    kind: kind.into(),
                    error: error.into(),
                });
            }
            let _ = self.reconcile_duration.get_or_create(&k);
            let _ = self.drift_repaired.get_or_create(&k);
            let _ = self.labels_managed.get_or_create(&k);
            let _ = self.conflicts.get_or_create(&k);
            let _ = self.fights_detected.get_or_create(&k);
            for result in DRIFT_CHECK_RESULTS {
                let _ = self.drift_checks.get_or_create(&ReconcileLabels {
                    kind: kind.into(),
                    result: result.into(),
                });
            }
        }
        let outcomes = std::iter::once("ok").chain(ErrorKind::ALL.map(ErrorKind::as_str));
        for outcome in outcomes {
            for provider in [Provider::Pai, Provider::HuaweicloudIms] {
                for api in CLOUD_APIS {
                    let _ = self.cloud_calls.get_or_create(&CloudCallLabels {
                        provider: provider.as_str().into(),
                        api: api.into(),
                        outcome: outcome.into(),
                    });
                }
            }
        }
    }

    /// Series for every API in `region` at 0 (no live budget yet), so the
    /// budget families exist from the start like every other family.
    pub fn prefill_budgets(&self, region: &str) {
        for (provider, api, _) in crate::provider::limiter::PUBLISHED_RATES {
            let l = BudgetLabels {
                provider: (*provider).into(),
                region: region.into(),
                api: (*api).into(),
            };
            let _ = self.budget_rate.get_or_create(&l);
            let _ = self.budget_ceiling.get_or_create(&l);
            let _ = self.throttled.get_or_create(&l);
        }
    }

    /// Publishes the budgets' state: gauges as they are, the throttled
    /// counter by its increase.
    pub fn record_budgets(&self, stats: &[crate::provider::limiter::BudgetStat]) {
        for s in stats {
            let l = BudgetLabels {
                provider: s.provider.clone(),
                region: s.region.clone(),
                api: s.api.clone(),
            };
            self.budget_rate.get_or_create(&l).set(s.rate);
            self.budget_ceiling.get_or_create(&l).set(s.ceiling);
            let c = self.throttled.get_or_create(&l);
            let seen = c.get();
            if s.throttled > seen {
                c.inc_by(s.throttled - seen);
            }
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn kind(kind: &str) -> KindLabels {
        KindLabels {
            kind: kind.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_documented_names() {
        let m = Metrics::default();
        m.reconciles
            .get_or_create(&ReconcileLabels {
                kind: "ImageLabelSet".into(),
                result: "success".into(),
            })
            .inc();
        m.cloud_calls
            .get_or_create(&CloudCallLabels {
                provider: "pai".into(),
                api: "observe".into(),
                outcome: "ok".into(),
            })
            .inc();
        m.reconcile_duration
            .get_or_create(&Metrics::kind("ImageLabelSet"))
            .observe(0.01);
        let text = m.encode();
        assert!(
            text.contains(
                "imagelabel_reconciles_total{kind=\"ImageLabelSet\",result=\"success\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "imagelabel_cloud_calls_total{provider=\"pai\",api=\"observe\",outcome=\"ok\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE imagelabel_reconcile_duration_seconds histogram"),
            "{text}"
        );
    }

    #[test]
    fn counters_exist_at_zero_before_their_first_event() {
        let text = Metrics::default().encode();
        for kind in ["ImageLabelSet", "DatasetLabelSet"] {
            for name in ["drift_repaired", "fights_detected"] {
                let line = format!("imagelabel_{name}_total{{kind=\"{kind}\"}} 0");
                assert!(text.contains(&line), "{line} missing in\n{text}");
            }
        }
        assert!(text.contains(
            "imagelabel_cloud_calls_total{provider=\"huaweicloud-ims\",api=\"remove\",outcome=\"throttled\"} 0"
        ));
    }

    #[test]
    fn budgets_are_published_without_accounts() {
        use crate::provider::limiter::Budgets;
        let m = Metrics::default();
        let b = Budgets::default();
        b.get("pai", "111", "cn-hangzhou", "AddImageLabels")
            .throttled();
        let _ = b.get("pai", "222", "cn-hangzhou", "AddImageLabels");
        m.record_budgets(&b.stats());
        m.record_budgets(&b.stats());
        let text = m.encode();
        let l = "{provider=\"pai\",region=\"cn-hangzhou\",api=\"AddImageLabels\"}";
        assert!(
            text.contains(&format!("imagelabel_cloud_budget_ceiling{l} 20.0")),
            "{text}"
        );
        assert!(
            text.contains(&format!("imagelabel_cloud_budget_rate{l} 15.")),
            "{text}"
        );
        assert!(
            text.contains(&format!("imagelabel_cloud_throttled_total{l} 1")),
            "{text}"
        );
        assert!(!text.contains("111") && !text.contains("222"), "{text}");
    }
}
