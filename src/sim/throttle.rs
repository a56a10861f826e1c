//! Flow control as Alibaba Cloud publishes it for AIWorkSpace 2021-02-04
//! (<https://help.aliyun.com/en/pai/developer-reference/api-aiworkspace-2021-02-04-quota>,
//! read 2026-12-03): one budget per region, per API, per main account (the
//! page's dimension `regionId, API, ParentUid`), shared by every RAM user,
//! role, STS token and key of that main account. A budget is a token bucket
//! of the API's rate per second (burst = one second's worth).
//!
//! Huawei IMS publishes no per-API rate for the tag APIs the simulator
//! serves; it gets the same shape (per account, region and API) with the
//! simulator's own defaults in [`IMS_DEFAULT_RATES`].

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::seed::FlowControlSeed;

/// Calls per second per (region, main account) for the PAI APIs the
/// simulator serves. Figures the quota page publishes for the API itself:
/// ListImageLabels 50, AddImageLabels 20, RemoveImageLabels 20,
/// CreateDatasetLabels 20, DeleteDatasetLabels 20, GetDataset 50,
/// GetDatasetVersion 50, ListImages 50. The others are not on the page as
/// we read it; they take the page's figures for their sibling APIs (label
/// writes 20/s, reads 50/s): GetImage, CreateDatasetVersionLabels,
/// DeleteDatasetVersionLabels, ListDatasets, ListDatasetVersions.
pub const PUBLISHED_RATES: &[(&str, u32)] = &[
    // Published for the API itself.
    ("ListImageLabels", 50),
    ("AddImageLabels", 20),
    ("RemoveImageLabels", 20),
    ("CreateDatasetLabels", 20),
    ("DeleteDatasetLabels", 20),
    ("GetDataset", 50),
    ("GetDatasetVersion", 50),
    ("ListImages", 50),
    // The sibling APIs' figures (see above).
    ("GetImage", 50),
    ("CreateDatasetVersionLabels", 20),
    ("DeleteDatasetVersionLabels", 20),
    ("ListDatasets", 50),
    ("ListDatasetVersions", 50),
];

/// Huawei IMS: **not published** (the IMS API reference states no per-API
/// rate for these). The simulator's defaults, per (account, region, API):
/// writes 20/s, reads 50/s, configurable like the PAI rates.
pub const IMS_DEFAULT_RATES: &[(&str, u32)] = &[
    ("ListCloudImages", 50),
    ("ListImageTags", 50),
    ("AddImageTag", 20),
    ("BatchAddOrDeleteTags", 20),
    ("DeleteImageTag", 20),
];

/// Where a request counts when its Host names no region (the simulator is
/// usually reached as `127.0.0.1:PORT`).
pub const DEFAULT_PAI_REGION: &str = "cn-hangzhou";
pub const DEFAULT_IMS_REGION: &str = "cn-north-4";

/// The rate an API has without overrides; `None` for APIs the simulator
/// does not serve.
pub fn default_rate(api: &str) -> Option<u32> {
    PUBLISHED_RATES
        .iter()
        .chain(IMS_DEFAULT_RATES)
        .find(|(name, _)| *name == api)
        .map(|(_, rate)| *rate)
}

/// The region a request went to, from its Host: the region part of
/// `<service>.<region>.aliyuncs.com` (PAI: `aiworkspace.cn-shanghai.aliyuncs.com`,
/// `aiworkspace-vpc.…`) or `<service>.<region>.myhuaweicloud.com` (IMS:
/// `ims.cn-north-4.myhuaweicloud.com`); `default` for any other host (an
/// IP address, `localhost`).
pub fn region_of_host<'a>(host: &'a str, default: &'a str) -> &'a str {
    let host = host.split(':').next().unwrap_or_default();
    let host = host.strip_suffix('.').unwrap_or(host);
    for suffix in [".aliyuncs.com", ".myhuaweicloud.com"] {
        if let Some(rest) = host.strip_suffix(suffix)
            && let Some((_, region)) = rest.rsplit_once('.')
            && !region.is_empty()
        {
            return region;
        }
    }
    default
}

type Buckets = DefaultKeyedRateLimiter<(String, String)>;

/// The budgets of one configuration: a keyed limiter per limited API,
/// keyed by (main account, region).
struct Budgets {
    seed: FlowControlSeed,
    by_api: Option<HashMap<&'static str, Arc<Buckets>>>,
}

impl Budgets {
    fn new(seed: FlowControlSeed) -> Self {
        let by_api = seed.enabled.then(|| {
            PUBLISHED_RATES
                .iter()
                .chain(IMS_DEFAULT_RATES)
                .filter_map(|(api, published)| {
                    let rate = seed.rates.get(*api).copied().unwrap_or(*published);
                    NonZeroU32::new(rate)
                        .map(|n| (*api, Arc::new(RateLimiter::keyed(Quota::per_second(n)))))
                })
                .collect()
        });
        Budgets { seed, by_api }
    }
}

pub struct FlowControl {
    clock: DefaultClock,
    budgets: RwLock<Arc<Budgets>>,
}

impl FlowControl {
    pub fn new(seed: FlowControlSeed) -> Self {
        FlowControl {
            clock: DefaultClock::default(),
            budgets: RwLock::new(Arc::new(Budgets::new(seed))),
        }
    }

    /// Replaces the configuration; every budget starts full again.
    pub fn set(&self, seed: FlowControlSeed) -> Result<(), String> {
        seed.validate()?;
        *self.budgets.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Budgets::new(seed));
        Ok(())
    }

    pub fn config(&self) -> FlowControlSeed {
        self.current().seed.clone()
    }

    fn current(&self) -> Arc<Budgets> {
        self.budgets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes one call of `api` from the budget of (`account`, `region`);
    /// when it is spent, returns how long until the next call would pass.
    pub fn check(&self, account: &str, region: &str, api: &str) -> Result<(), Duration> {
        let budgets = self.current();
        let Some(limiter) = budgets.by_api.as_ref().and_then(|m| m.get(api)) else {
            return Ok(());
        };
        // Forget idle keys now and then so a flood of distinct accounts or
        // regions cannot grow the map without bound.
        if limiter.len() > 10_000 {
            limiter.retain_recent();
        }
        limiter
            .check_key(&(account.to_string(), region.to_string()))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(fc: &FlowControl, account: &str, region: &str, api: &str) -> usize {
        (0..1000)
            .take_while(|_| fc.check(account, region, api).is_ok())
            .count()
    }

    #[test]
    fn budgets_are_per_account_region_and_api_at_the_published_rates() {
        let fc = FlowControl::new(FlowControlSeed::published());
        // A second's burst of the published rate, then the wait.
        assert_eq!(drain(&fc, "1", "cn-hangzhou", "AddImageLabels"), 20);
        let wait = fc.check("1", "cn-hangzhou", "AddImageLabels").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(50),
            "{wait:?}"
        );
        // Another API, region or account has its own budget.
        assert_eq!(drain(&fc, "1", "cn-hangzhou", "ListImageLabels"), 50);
        assert_eq!(drain(&fc, "1", "cn-shanghai", "AddImageLabels"), 20);
        assert_eq!(drain(&fc, "2", "cn-hangzhou", "AddImageLabels"), 20);
        assert_eq!(drain(&fc, "1", "cn-north-4", "BatchAddOrDeleteTags"), 20);
        // Not a served API: not limited.
        assert_eq!(drain(&fc, "1", "cn-hangzhou", "Unknown"), 1000);
    }

    #[test]
    fn overrides_off_and_changes_at_run_time() {
        let fc = FlowControl::new(FlowControlSeed::off());
        assert_eq!(drain(&fc, "1", "r", "AddImageLabels"), 1000);
        fc.set(
            FlowControlSeed::published()
                .with_rate("AddImageLabels", 3)
                .with_rate("ListImageLabels", 0),
        )
        .unwrap();
        assert_eq!(fc.config().rates["AddImageLabels"], 3);
        assert_eq!(drain(&fc, "1", "r", "AddImageLabels"), 3);
        assert_eq!(drain(&fc, "1", "r", "ListImageLabels"), 1000);
        assert_eq!(drain(&fc, "1", "r", "RemoveImageLabels"), 20);
        assert!(
            fc.set(FlowControlSeed::published().with_rate("Nope", 1))
                .is_err()
        );
        // A refused change keeps the old configuration.
        assert_eq!(fc.config().rates["AddImageLabels"], 3);
    }

    #[test]
    fn region_comes_from_the_host() {
        let d = DEFAULT_PAI_REGION;
        assert_eq!(
            region_of_host("aiworkspace.cn-shanghai.aliyuncs.com", d),
            "cn-shanghai"
        );
        assert_eq!(
            region_of_host("aiworkspace-vpc.ap-southeast-1.aliyuncs.com:443", d),
            "ap-southeast-1"
        );
        assert_eq!(
            region_of_host("ims.cn-north-4.myhuaweicloud.com", d),
            "cn-north-4"
        );
        assert_eq!(region_of_host("127.0.0.1:8080", d), d);
        assert_eq!(region_of_host("aliyuncs.com", d), d);
        assert_eq!(region_of_host("localhost", d), d);
    }
}
