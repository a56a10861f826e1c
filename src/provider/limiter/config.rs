//! How big each budget is: the clouds' published rates, the share of them
//! the operator allows itself, and `--quota` overrides.

use std::collections::{BTreeMap, BTreeSet};

/// Published flow control, calls per second per main account, region and
/// API. Alibaba AIWorkSpace publishes these; Huawei IMS publishes no per-API
/// rate for the tag APIs, so its entries are a conservative default (20/s for
/// writes, 50/s for reads), adjustable with `--quota`.
pub const PUBLISHED_RATES: &[(&str, &str, u32)] = &[
    ("pai", "ListImageLabels", 50),
    ("pai", "AddImageLabels", 20),
    ("pai", "RemoveImageLabels", 20),
    ("pai", "CreateDatasetLabels", 20),
    ("pai", "DeleteDatasetLabels", 20),
    ("pai", "GetDataset", 50),
    ("pai", "GetDatasetVersion", 50),
    ("pai", "ListImages", 50),
    // Not in the published table: reads at 50/s, label writes at 20/s.
    ("pai", "GetImage", 50),
    ("pai", "ListDatasets", 50),
    ("pai", "ListDatasetVersions", 50),
    ("pai", "CreateDatasetVersionLabels", 20),
    ("pai", "DeleteDatasetVersionLabels", 20),
    // Huawei IMS: no published per-API rate; a default, not a documented limit.
    ("huaweicloud-ims", "ListImageTags", 50),
    ("huaweicloud-ims", "ListImages", 50),
    ("huaweicloud-ims", "AddImageTag", 20),
    ("huaweicloud-ims", "DeleteImageTag", 20),
    ("huaweicloud-ims", "BatchAddOrDeleteTags", 20),
];

/// Rate of an API missing from [`PUBLISHED_RATES`]: 50/s for reads
/// (`Get…`/`List…`/`Describe…`), 20/s otherwise.
pub(crate) fn published_rate(provider: &str, api: &str) -> f64 {
    PUBLISHED_RATES
        .iter()
        .find(|(p, a, _)| *p == provider && *a == api)
        .map(|(_, _, r)| f64::from(*r))
        .unwrap_or_else(|| {
            if ["Get", "List", "Describe"]
                .iter()
                .any(|p| api.starts_with(p))
            {
                50.0
            } else {
                20.0
            }
        })
}

/// Every API name `--quota` accepts, sorted, without duplicates.
pub(crate) fn known_apis() -> Vec<&'static str> {
    let set: BTreeSet<&'static str> = PUBLISHED_RATES.iter().map(|(_, a, _)| *a).collect();
    set.into_iter().collect()
}

/// Default share of the published rate the operator allows itself.
pub const DEFAULT_QUOTA_SHARE: f64 = 0.5;
/// Default share of a budget's current rate drift checks may use.
pub(crate) const DEFAULT_CHECK_SHARE: f64 = 0.5;

/// How budgets are sized.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetConfig {
    /// Share of the published rate used as the ceiling, in (0, 1].
    pub quota_share: f64,
    /// Absolute ceilings per API name (calls per second), applied as given:
    /// not multiplied by `quota_share`. An API name applies to every
    /// provider that has it (`ListImages` exists in PAI and IMS).
    pub quotas: BTreeMap<String, f64>,
    /// Share of the current rate drift checks may use, in (0, 1].
    pub check_share: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            quota_share: DEFAULT_QUOTA_SHARE,
            quotas: BTreeMap::new(),
            check_share: DEFAULT_CHECK_SHARE,
        }
    }
}

impl BudgetConfig {
    /// Every known API at `rate` (tests that must not wait).
    #[cfg(test)]
    pub(crate) fn all_at(rate: f64) -> Self {
        BudgetConfig {
            quotas: known_apis()
                .into_iter()
                .map(|a| (a.to_string(), rate))
                .collect(),
            ..Default::default()
        }
    }

    /// The ceiling of `api` of `provider`, calls per second.
    pub fn ceiling(&self, provider: &str, api: &str) -> f64 {
        match self.quotas.get(api) {
            Some(r) => *r,
            None => published_rate(provider, api) * self.quota_share,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let share_ok = |s: f64| s.is_finite() && s > 0.0 && s <= 1.0;
        if !share_ok(self.quota_share) {
            return Err(format!(
                "quota share {} must be in (0, 1]",
                self.quota_share
            ));
        }
        if !share_ok(self.check_share) {
            return Err(format!(
                "check share {} must be in (0, 1]",
                self.check_share
            ));
        }
        for (api, rate) in &self.quotas {
            parse_quota(&format!("{api}={rate}"))?;
        }
        Ok(())
    }
}

/// Parses `API=RATE` (`AddImageLabels=5`, `ListImageTags=2.5`): a known API
/// name and a positive, finite rate in calls per second.
pub fn parse_quota(s: &str) -> Result<(String, f64), String> {
    let known = || known_apis().join(", ");
    let (api, rate) = s
        .split_once('=')
        .ok_or_else(|| format!("expected API=RATE, got {s:?}"))?;
    let api = api.trim();
    if !known_apis().contains(&api) {
        return Err(format!("unknown API {api:?}; known APIs: {}", known()));
    }
    let rate: f64 = rate
        .trim()
        .parse()
        .map_err(|_| format!("rate of {api} must be a number of calls per second, got {rate:?}"))?;
    if !rate.is_finite() || rate <= 0.0 || rate > 1_000_000.0 {
        return Err(format!(
            "rate of {api} must be positive calls per second (at most 1000000), got {rate}"
        ));
    }
    Ok((api.to_string(), rate))
}
