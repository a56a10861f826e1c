//! Client-side budgets, one per (provider, main account, region, API), so
//! many sets reconciling at once stay under the cloud's flow control instead
//! of discovering it through throttling errors.
//!
//! Alibaba Cloud publishes AIWorkSpace flow control per region, per API and
//! per main account (all AccessKeys, RAM users and STS tokens of the account
//! share it). Each budget's ceiling is the published rate times
//! [`BudgetConfig::quota_share`] (default one half: the other half stays free
//! for people and other tools), unless [`BudgetConfig::quotas`] names an
//! absolute rate for the API. Below the ceiling the rate adapts (AIMD): a
//! throttling answer halves it, then it recovers linearly.
//!
//! Calls made inside [`as_check`] (periodic drift checks) also pass a second
//! bucket at [`BudgetConfig::check_share`] of the current rate, so checks
//! never take the whole budget and changes always find room.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::account::MainAccount;

/// How urgent a cloud call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Applying a change (the default).
    Change,
    /// A periodic drift check: may use at most `check_share` of a budget.
    Check,
}

tokio::task_local! {
    static PRIORITY: Priority;
}

/// Runs `f` with every cloud call it makes counted as a background check.
/// The priority is task-local: tasks `f` spawns run as [`Priority::Change`]
/// unless wrapped again.
pub async fn as_check<F: Future>(f: F) -> F::Output {
    PRIORITY.scope(Priority::Check, f).await
}

/// The priority of calls made here: [`Priority::Change`] outside [`as_check`].
pub fn current_priority() -> Priority {
    PRIORITY.try_with(|p| *p).unwrap_or(Priority::Change)
}

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
pub fn published_rate(provider: &str, api: &str) -> f64 {
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
pub fn known_apis() -> Vec<&'static str> {
    let set: BTreeSet<&'static str> = PUBLISHED_RATES.iter().map(|(_, a, _)| *a).collect();
    set.into_iter().collect()
}

/// Default share of the published rate the operator allows itself.
pub const DEFAULT_QUOTA_SHARE: f64 = 0.5;
/// Default share of a budget's current rate drift checks may use.
pub const DEFAULT_CHECK_SHARE: f64 = 0.5;

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
    pub fn all_at(rate: f64) -> Self {
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

/// A throttling answer halves the rate.
pub const DECREASE_FACTOR: f64 = 0.5;
/// Throttling answers within this window after a decrease count once.
pub const DECREASE_WINDOW: Duration = Duration::from_secs(1);
/// After a decrease the rate grows by this share of the ceiling per second.
/// Slow on purpose: each climb past what the account has left ends in a
/// throttled answer, so the slower the climb the fewer of them (at 5%/s
/// the convergence bench saw 1.3% of calls throttled beside a client
/// taking half of AddImageLabels; see the README's benchmarks).
pub const RECOVERY_PER_SECOND: f64 = 0.02;
/// The rate never falls below this share of the ceiling…
pub const FLOOR_SHARE: f64 = 0.05;
/// …nor below this many calls per second (unless the ceiling is lower).
pub const FLOOR_MIN: f64 = 1.0;

/// How much of the rate may go at once. Small on purpose: the cloud's own
/// bucket holds a second of the rate, and at `--quota-share 1` a client
/// bursting a whole second leaves no room for network jitter, so calls
/// that left evenly spaced would arrive bunched and be throttled.
pub const BURST: Duration = Duration::from_millis(100);

/// A variable-rate GCRA bucket: the theoretical arrival time of the next
/// call. The burst is [`BURST`] of the current rate (at least one call).
#[derive(Debug)]
struct Gcra {
    tat: Option<Instant>,
}

impl Gcra {
    /// Reserves one slot at `rate` for a caller arriving at `now`; returns
    /// how long it must wait before sending.
    fn reserve(&mut self, now: Instant, rate: f64) -> Duration {
        let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
        let burst = BURST.saturating_sub(interval);
        let tat = self.tat.map_or(now, |t| t.max(now));
        let wait = tat.saturating_duration_since(now).saturating_sub(burst);
        self.tat = Some(tat + interval);
        wait
    }
}

#[derive(Debug)]
struct RateState {
    rate: f64,
    /// When `rate` was last brought up to date.
    at: Instant,
    last_decrease: Option<Instant>,
    /// Decreases so far: a caller that reserved before one re-reserves.
    decreases: u64,
    main: Gcra,
    check: Gcra,
}

/// One budget: (provider, main account, region, API).
pub struct Budget {
    ceiling: f64,
    floor: f64,
    check_share: f64,
    state: Mutex<RateState>,
    throttled: AtomicU64,
    waited_nanos: AtomicU64,
    /// Slots handed out: one per HTTP request, retries included.
    granted: AtomicU64,
    born: Instant,
    /// Nanoseconds after `born` of the last slot asked for.
    last_used: AtomicU64,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("ceiling", &self.ceiling)
            .field("rate", &self.rate())
            .field("total_wait", &self.total_wait())
            .finish()
    }
}

impl Budget {
    /// A budget of `ceiling` calls per second, starting at the ceiling.
    pub fn new(ceiling: f64, check_share: f64) -> Self {
        Self::new_at(ceiling, check_share, Instant::now())
    }

    pub fn new_at(ceiling: f64, check_share: f64, now: Instant) -> Self {
        let ceiling = if ceiling.is_finite() && ceiling > 0.0 {
            ceiling
        } else {
            1.0
        };
        Budget {
            ceiling,
            floor: (ceiling * FLOOR_SHARE).max(FLOOR_MIN).min(ceiling),
            check_share: check_share.clamp(0.01, 1.0),
            state: Mutex::new(RateState {
                rate: ceiling,
                at: now,
                last_decrease: None,
                decreases: 0,
                main: Gcra { tat: None },
                check: Gcra { tat: None },
            }),
            throttled: AtomicU64::new(0),
            waited_nanos: AtomicU64::new(0),
            granted: AtomicU64::new(0),
            born: now,
            last_used: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the additive recovery up to `now`.
    fn recover(&self, s: &mut RateState, now: Instant) {
        let dt = now.saturating_duration_since(s.at).as_secs_f64();
        s.rate = (s.rate + RECOVERY_PER_SECOND * self.ceiling * dt).min(self.ceiling);
        s.at = s.at.max(now);
    }

    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    pub fn floor(&self) -> f64 {
        self.floor
    }

    /// The current rate.
    pub fn rate(&self) -> f64 {
        self.rate_at(Instant::now())
    }

    pub fn rate_at(&self, now: Instant) -> f64 {
        let mut s = self.lock();
        self.recover(&mut s, now);
        s.rate
    }

    /// A throttling answer: halves the rate (not below the floor), at most
    /// once per [`DECREASE_WINDOW`]. Returns whether the rate went down.
    pub fn throttled(&self) -> bool {
        self.throttled_at(Instant::now())
    }

    pub fn throttled_at(&self, now: Instant) -> bool {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        self.recover(&mut s, now);
        if s.last_decrease
            .is_some_and(|t| now.saturating_duration_since(t) < DECREASE_WINDOW)
        {
            return false;
        }
        s.last_decrease = Some(now);
        s.rate = (s.rate * DECREASE_FACTOR).max(self.floor);
        // Slots handed out at the old rate are void: callers still waiting
        // for theirs re-reserve at the new one ([`Self::acquire`]), or a
        // queue of them would keep sending at the rate the cloud refused.
        s.decreases += 1;
        // The next slot is one interval of the new rate away, burst spent.
        let interval = Duration::from_secs_f64(1.0 / s.rate);
        let check_interval = interval.mul_f64(1.0 / self.check_share.max(1e-3));
        s.main.tat = Some(now + BURST.max(interval));
        s.check.tat = Some(now + BURST.max(check_interval));
        true
    }

    /// Decreases so far (see [`RateState::decreases`]).
    fn decreases(&self) -> u64 {
        self.lock().decreases
    }

    /// Throttling answers reported so far.
    pub fn throttled_total(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Reserves a slot at the current rate; the wait before sending.
    pub fn reserve_at(&self, now: Instant) -> Duration {
        let mut s = self.lock();
        self.recover(&mut s, now);
        let rate = s.rate;
        s.main.reserve(now, rate)
    }

    /// Reserves a slot in the check bucket (`check_share` of the current
    /// rate); a check then also reserves a slot with [`Self::reserve_at`].
    pub fn reserve_check_at(&self, now: Instant) -> Duration {
        let mut s = self.lock();
        self.recover(&mut s, now);
        let rate = s.rate * self.check_share;
        s.check.reserve(now, rate)
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_used.fetch_max(nanos, Ordering::Relaxed);
    }

    /// When a slot was last asked for (creation if never).
    pub fn last_used(&self) -> Instant {
        self.born + Duration::from_nanos(self.last_used.load(Ordering::Relaxed))
    }

    /// Waits for a slot at `priority`; the time spent waiting is added to
    /// [`Self::total_wait`].
    pub async fn acquire(&self, priority: Priority) {
        self.touch();
        self.granted.fetch_add(1, Ordering::Relaxed);
        let mut waited = Duration::ZERO;
        if priority == Priority::Check {
            let w = self.reserve_check_at(Instant::now());
            if !w.is_zero() {
                tokio::time::sleep(w).await;
                waited += w;
            }
        }
        loop {
            let before = self.decreases();
            let w = self.reserve_at(Instant::now());
            if w.is_zero() {
                break;
            }
            tokio::time::sleep(w).await;
            waited += w;
            if self.decreases() == before {
                break;
            }
        }
        if !waited.is_zero() {
            let n = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
            self.waited_nanos.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Requests let through so far: with retries, more than logical calls.
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }

    /// Cumulative time callers spent waiting (for a metric).
    pub fn total_wait(&self) -> Duration {
        Duration::from_nanos(self.waited_nanos.load(Ordering::Relaxed))
    }
}

/// A budget nobody holds and nobody used for this long is dropped: the map
/// is keyed by whatever account a tenant's Secret names, so it must not only
/// grow. A budget idle this long has recovered to its ceiling, so a new one
/// for the same key behaves exactly like the dropped one.
pub const LIMITER_IDLE_TTL: Duration = Duration::from_secs(300);
/// How often [`Budgets::get`] looks for idle budgets.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// (provider, main account, region, API).
type Key = (String, String, String, String);
/// (provider, region, API).
pub type SeriesKey = (String, String, String);

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
    pub fn total_wait(&self) -> Duration {
        let map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        let retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        map.values().map(|b| b.total_wait()).sum::<Duration>()
            + retired.values().map(|r| r.wait).sum::<Duration>()
    }

    /// Requests let through by every budget handed out.
    pub fn total_granted(&self) -> u64 {
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

/// What a client draws from: the budgets of its (provider, region), for the
/// main account of its credentials, one budget per API.
#[derive(Clone, Debug)]
pub struct BudgetHandle {
    budgets: Arc<Budgets>,
    provider: &'static str,
    region: String,
    account: Arc<MainAccount>,
}

impl BudgetHandle {
    pub fn new(
        budgets: Arc<Budgets>,
        provider: &'static str,
        region: &str,
        account: Arc<MainAccount>,
    ) -> Self {
        BudgetHandle {
            budgets,
            provider,
            region: region.to_string(),
            account,
        }
    }

    /// Budgets of their own under `config`, with a fixed account (no
    /// lookup): tests and one-off clients.
    pub fn standalone(provider: &'static str, region: &str, config: BudgetConfig) -> Self {
        BudgetHandle::new(
            Arc::new(Budgets::new(config)),
            provider,
            region,
            Arc::new(MainAccount::fixed("standalone")),
        )
    }

    /// The budget of `api` for the main account (looked up once per
    /// credential, see [`MainAccount`]).
    pub async fn budget(&self, api: &str) -> Arc<Budget> {
        let account = self.account.get().await;
        self.budgets.get(self.provider, &account, &self.region, api)
    }

    /// Waits for a slot of `api` at the task's [`current_priority`]; returns
    /// the budget, to report a throttling answer to.
    pub async fn acquire(&self, api: &str) -> Arc<Budget> {
        let budget = self.budget(api).await;
        budget.acquire(current_priority()).await;
        budget
    }

    /// Sends one HTTP attempt of `api` through its budget: waits for a
    /// slot, then reports a throttling answer so the budget slows down.
    pub async fn send<T>(
        &self,
        api: &str,
        attempt: impl Future<Output = Result<T, super::CloudError>>,
    ) -> Result<T, super::CloudError> {
        let budget = self.acquire(api).await;
        let result = attempt.await;
        if result
            .as_ref()
            .is_err_and(|e| e.kind == super::ErrorKind::Throttled)
        {
            budget.throttled();
        }
        result
    }

    pub fn budgets(&self) -> &Arc<Budgets> {
        &self.budgets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn ceilings_from_published_rates_share_and_quotas() {
        let c = BudgetConfig::default();
        assert_eq!(c.ceiling("pai", "ListImageLabels"), 25.0);
        assert_eq!(c.ceiling("pai", "AddImageLabels"), 10.0);
        assert_eq!(c.ceiling("huaweicloud-ims", "BatchAddOrDeleteTags"), 10.0);
        assert_eq!(c.ceiling("pai", "GetSomethingNew"), 25.0);
        assert_eq!(c.ceiling("pai", "TagSomethingNew"), 10.0);
        let c = BudgetConfig {
            quota_share: 1.0,
            quotas: BTreeMap::from([("AddImageLabels".to_string(), 3.0)]),
            ..Default::default()
        };
        assert_eq!(
            c.ceiling("pai", "AddImageLabels"),
            3.0,
            "absolute, not shared"
        );
        assert_eq!(c.ceiling("pai", "RemoveImageLabels"), 20.0);
        assert!(c.validate().is_ok());
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            let c = BudgetConfig {
                quota_share: bad,
                ..Default::default()
            };
            assert!(c.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn helm_schema_accepts_exactly_the_known_apis() {
        let schema: serde_json::Value = serde_json::from_str(include_str!(
            "../../deploy/helm/imagelabel-operator/values.schema.json"
        ))
        .unwrap();
        let names: Vec<&str> = schema["properties"]["quotas"]["propertyNames"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(names, known_apis());
    }

    #[test]
    fn quota_flags_are_checked() {
        assert_eq!(
            parse_quota("AddImageLabels=5").unwrap(),
            ("AddImageLabels".to_string(), 5.0)
        );
        assert_eq!(parse_quota("ListImageTags=2.5").unwrap().1, 2.5);
        let e = parse_quota("AddImageLabel=5").unwrap_err();
        assert!(
            e.contains("unknown API") && e.contains("AddImageLabels"),
            "{e}"
        );
        for bad in [
            "AddImageLabels",
            "AddImageLabels=0",
            "AddImageLabels=-1",
            "AddImageLabels=x",
            "AddImageLabels=inf",
        ] {
            assert!(parse_quota(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gcra_burst_then_paces() {
        let now = t0();
        let b = Budget::new_at(100.0, 0.5, now);
        // 100 ms of the rate goes at once…
        for _ in 0..10 {
            assert_eq!(b.reserve_at(now), Duration::ZERO);
        }
        // …then one call per 10 ms.
        let w = b.reserve_at(now);
        assert!(w > secs(0.005) && w <= secs(0.01), "{w:?}");
        let w2 = b.reserve_at(now);
        assert!(w2 > w, "{w2:?}");
        // After the bucket drains, a burst is allowed again.
        assert_eq!(b.reserve_at(now + secs(3.0)), Duration::ZERO);
    }

    #[test]
    fn halves_on_throttling_once_per_window() {
        let now = t0();
        let b = Budget::new_at(20.0, 0.5, now);
        assert_eq!(b.rate_at(now), 20.0);
        assert!(b.throttled_at(now));
        assert_eq!(b.rate_at(now), 10.0);
        // A burst of concurrent throttled answers counts once.
        for i in 1..10 {
            assert!(!b.throttled_at(now + secs(0.05 * f64::from(i))));
        }
        assert_eq!(b.throttled_total(), 10);
        let r = b.rate_at(now + secs(0.5));
        assert!((r - 10.2).abs() < 1e-9, "{r}");
        // The next window allows another decrease.
        assert!(b.throttled_at(now + secs(1.0)));
        let r = b.rate_at(now + secs(1.0));
        assert!((r - 5.2).abs() < 1e-9, "{r}");
    }

    #[test]
    fn never_below_the_floor() {
        let now = t0();
        let b = Budget::new_at(100.0, 0.5, now);
        assert_eq!(b.floor(), 5.0);
        for i in 0..20 {
            // Far enough apart to each count, too close to recover much.
            b.throttled_at(now + secs(1.0 * f64::from(i)));
        }
        let r = b.rate_at(now + secs(19.0));
        assert!((5.0..10.0 + 1e-9).contains(&r), "{r}");
        let small = Budget::new_at(0.5, 0.5, now);
        assert_eq!(small.floor(), 0.5, "the floor never exceeds the ceiling");
        small.throttled_at(now);
        assert_eq!(small.rate_at(now), 0.5);
    }

    #[test]
    fn recovers_linearly_to_the_ceiling_never_above() {
        let now = t0();
        let b = Budget::new_at(20.0, 0.5, now);
        b.throttled_at(now);
        assert_eq!(b.rate_at(now), 10.0);
        // +2% of the ceiling (0.4/s) per second.
        for s in 1..=25 {
            let r = b.rate_at(now + secs(f64::from(s)));
            assert!((r - (10.0 + 0.4 * f64::from(s))).abs() < 1e-9, "{s}: {r}");
        }
        assert!((b.rate_at(now + secs(25.0)) - 20.0).abs() < 1e-9);
        assert_eq!(
            b.rate_at(now + secs(100.0)),
            20.0,
            "never above the ceiling"
        );
        // An untouched budget stays at its ceiling.
        let c = Budget::new_at(20.0, 0.5, now);
        assert_eq!(c.rate_at(now + secs(60.0)), 20.0);
    }

    #[test]
    fn slower_rate_after_throttling_paces_calls() {
        let now = t0();
        let b = Budget::new_at(100.0, 0.5, now);
        b.throttled_at(now);
        // 50/s, burst spent by the decrease: 20 ms, then 20 ms apart.
        for i in 1..=5 {
            let w = b.reserve_at(now);
            let want = 0.02 * f64::from(i);
            assert!((w.as_secs_f64() - want).abs() < 1e-6, "{i}: {w:?}");
        }
    }

    #[test]
    fn a_decrease_voids_slots_reserved_at_the_old_rate() {
        let now = t0();
        let b = Budget::new_at(20.0, 0.5, now);
        // A queue of callers: the last one's slot is half a second out.
        let waits: Vec<Duration> = (0..12).map(|_| b.reserve_at(now)).collect();
        assert!(waits[11] > secs(0.45), "{waits:?}");
        let before = b.decreases();
        assert!(b.throttled_at(now));
        assert_eq!(b.decreases(), before + 1, "waiters see the decrease");
        // Re-reserving starts from now at the new rate (10/s), not behind
        // the voided queue: one pause of 100 ms, then 100 ms apart.
        let w1 = b.reserve_at(now);
        let w2 = b.reserve_at(now);
        assert!((w1.as_secs_f64() - 0.1).abs() < 1e-6, "{w1:?}");
        assert!((w2.as_secs_f64() - 0.2).abs() < 1e-6, "{w2:?}");
        // A throttled answer inside the window changes nothing more.
        assert!(!b.throttled_at(now + secs(0.5)));
        assert_eq!(b.decreases(), before + 1);
    }

    #[test]
    fn checks_get_only_their_share() {
        let now = t0();
        let b = Budget::new_at(100.0, 0.5, now);
        // The check bucket runs at 50/s: 5 at once, then 20 ms apart.
        for _ in 0..5 {
            assert_eq!(b.reserve_check_at(now), Duration::ZERO);
        }
        let w = b.reserve_check_at(now);
        assert!(w > secs(0.015) && w <= secs(0.02), "{w:?}");
        // Changes do not pass through the check bucket: the main bucket
        // still has room for them.
        for _ in 0..10 {
            assert_eq!(b.reserve_at(now), Duration::ZERO);
        }
    }

    #[tokio::test]
    async fn priority_is_task_local() {
        assert_eq!(current_priority(), Priority::Change);
        let p = as_check(async { current_priority() }).await;
        assert_eq!(p, Priority::Check);
        assert_eq!(current_priority(), Priority::Change);
    }

    #[tokio::test]
    async fn waiting_is_accounted() {
        let b = Budget::new(1.0, 0.5);
        b.acquire(Priority::Change).await;
        assert_eq!(b.total_wait(), Duration::ZERO);
        b.acquire(Priority::Change).await;
        assert!(b.total_wait() > Duration::ZERO);
        assert_eq!(b.granted(), 2, "every request is counted, waited or not");
    }

    #[test]
    fn shared_per_key() {
        let bs = Budgets::default();
        let a = bs.get("pai", "acct", "cn-hangzhou", "AddImageLabels");
        let b = bs.get("pai", "acct", "cn-hangzhou", "AddImageLabels");
        let c = bs.get("pai", "acct", "cn-shanghai", "AddImageLabels");
        let d = bs.get("pai", "other", "cn-hangzhou", "AddImageLabels");
        let e = bs.get("pai", "acct", "cn-hangzhou", "ListImageLabels");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(!Arc::ptr_eq(&a, &d));
        assert!(!Arc::ptr_eq(&a, &e));
        assert_eq!(a.ceiling(), 10.0);
        assert_eq!(e.ceiling(), 25.0);
        let stats = bs.stats();
        assert_eq!(stats.len(), 3);
        let add = stats
            .iter()
            .find(|s| s.region == "cn-hangzhou" && s.api == "AddImageLabels")
            .unwrap();
        assert_eq!(add.ceiling, 20.0, "summed over the two accounts");
        a.throttled();
        let add = bs
            .stats()
            .into_iter()
            .find(|s| s.region == "cn-hangzhou" && s.api == "AddImageLabels")
            .unwrap();
        assert_eq!(add.throttled, 1);
        assert!(add.rate < 20.0);
    }

    #[test]
    fn idle_unheld_budgets_expire_after_churn_and_totals_stay() {
        let bs = Budgets::new(BudgetConfig::all_at(1000.0));
        let held = bs.get("pai", "kept", "cn-hangzhou", "GetImage");
        assert_eq!(held.reserve_at(Instant::now()), Duration::ZERO);
        held.granted.fetch_add(1, Ordering::Relaxed);
        for i in 0..10_000 {
            let b = bs.get("pai", &format!("LTAI{i}"), "cn-hangzhou", "GetImage");
            b.granted.fetch_add(1, Ordering::Relaxed);
            b.throttled();
        }
        assert_eq!(bs.len(), 10_001);
        let before = bs.total_granted();
        assert_eq!(before, 10_001);
        assert_eq!(bs.sweep(Instant::now()), 10_001);
        let later = Instant::now() + LIMITER_IDLE_TTL + Duration::from_secs(1);
        assert_eq!(bs.sweep(later), 1, "only the budget a caller holds stays");
        assert_eq!(bs.total_granted(), before, "totals survive the sweep");
        let stats = bs.stats();
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].throttled, 10_000);
        assert_eq!(stats[0].ceiling, 1000.0, "only the live budget counts");
        assert!(Arc::ptr_eq(
            &held,
            &bs.get("pai", "kept", "cn-hangzhou", "GetImage")
        ));
    }
}
