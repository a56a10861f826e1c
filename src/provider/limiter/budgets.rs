//! The shared budgets, one per (provider, main account, region, API),
//! dropped when idle, and their totals for the metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Budget, BudgetConfig};

/// A budget nobody holds and nobody used for this long is dropped: the map
/// is keyed by whatever account a tenant's Secret names, so it must not only
/// grow. A budget idle this long has recovered to its ceiling, so a new one
/// for the same key behaves exactly like the dropped one.
pub(crate) const LIMITER_IDLE_TTL: Duration = Duration::from_secs(300);
/// How often [`Budgets::get`] looks for idle budgets.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// (provider, main account, region, API).
type Key = (String, String, String, String);
/// (provider, region, API).
pub(crate) type SeriesKey = (String, String, String);

#[derive(Clone, Copy, Debug, Default)]
struct Retired {
    wait: Duration,
    granted: u64,
    throttled: u64,
}

/// One (provider, region, API) summed over accounts, for the metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BudgetStat {
    pub provider: String,
    pub region: String,
    pub api: String,
    /// Current rates, summed over live budgets (0 when none is alive).
    pub rate: f64,
    /// Ceilings, summed over live budgets.
    pub ceiling: f64,
    /// Throttling answers ever reported (never goes down).
    pub throttled: u64,
}

/// Hands out the shared budget of each (provider, main account, region, API).
#[derive(Debug)]
pub struct Budgets {
    config: BudgetConfig,
    by_key: Mutex<HashMap<Key, Arc<Budget>>>,
    /// Totals of dropped budgets, so the metrics never go down.
    retired: Mutex<BTreeMap<SeriesKey, Retired>>,
    last_sweep: Mutex<Instant>,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets::new(BudgetConfig::default())
    }
}

impl Budgets {
    pub fn new(config: BudgetConfig) -> Self {
        Budgets {
            config,
            by_key: Mutex::new(HashMap::new()),
            retired: Mutex::new(BTreeMap::new()),
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    pub fn get(&self, provider: &str, account: &str, region: &str, api: &str) -> Arc<Budget> {
        let now = Instant::now();
        let due = {
            let mut last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
            let due = now.duration_since(*last) >= SWEEP_EVERY;
            if due {
                *last = now;
            }
            due
        };
        if due {
            self.sweep(now);
        }
        let mut map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        let budget = map
            .entry((
                provider.to_string(),
                account.to_string(),
                region.to_string(),
                api.to_string(),
            ))
            .or_insert_with(|| {
                Arc::new(Budget::new(
                    self.config.ceiling(provider, api),
                    self.config.check_share,
                ))
            })
            .clone();
        budget.touch();
        budget
    }

    /// Drops the budgets no caller holds that were idle for
    /// [`LIMITER_IDLE_TTL`] at `now`; returns how many are left.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(provider, _, region, api), b| {
            let idle = now.saturating_duration_since(b.last_used()) >= LIMITER_IDLE_TTL;
            if Arc::strong_count(b) > 1 || !idle {
                return true;
            }
            let r = retired
                .entry((provider.clone(), region.clone(), api.clone()))
                .or_default();
            r.wait += b.total_wait();
            r.granted += b.granted();
            r.throttled += b.throttled_total();
            false
        });
        map.len()
    }

    /// Budgets alive now.
    pub fn len(&self) -> usize {
        self.by_key.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total wait across every budget handed out.
    pub(crate) fn total_wait(&self) -> Duration {
        let map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        let retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        map.values().map(|b| b.total_wait()).sum::<Duration>()
            + retired.values().map(|r| r.wait).sum::<Duration>()
    }

    /// Requests let through by every budget handed out.
    pub(crate) fn total_granted(&self) -> u64 {
        let map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        let retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        map.values().map(|b| b.granted()).sum::<u64>()
            + retired.values().map(|r| r.granted).sum::<u64>()
    }

    /// Rates, ceilings and throttling per (provider, region, API), summed
    /// over accounts: account IDs make poor metric labels (cardinality, and
    /// they identify credentials).
    pub fn stats(&self) -> Vec<BudgetStat> {
        let map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        let retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: BTreeMap<SeriesKey, BudgetStat> = BTreeMap::new();
        fn entry<'a>(
            out: &'a mut BTreeMap<SeriesKey, BudgetStat>,
            k: &SeriesKey,
        ) -> &'a mut BudgetStat {
            out.entry(k.clone()).or_insert_with(|| BudgetStat {
                provider: k.0.clone(),
                region: k.1.clone(),
                api: k.2.clone(),
                ..Default::default()
            })
        }
        for (k, r) in retired.iter() {
            entry(&mut out, k).throttled += r.throttled;
        }
        let now = Instant::now();
        for ((provider, _, region, api), b) in map.iter() {
            let s = entry(&mut out, &(provider.clone(), region.clone(), api.clone()));
            s.rate += b.rate_at(now);
            s.ceiling += b.ceiling();
            s.throttled += b.throttled_total();
        }
        out.into_values().collect()
    }
}
