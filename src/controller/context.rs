//! What every reconcile shares.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kube::Client;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::mpsc::UnboundedSender;

use super::cached::Cached;
use super::fights::FightDetector;
use super::index::ClaimIndex;
use super::metrics::{CloudCallLabels, Metrics};
use crate::api::{DatasetLabelSet, ImageLabelSet};
use crate::engine::ResolvedSet;
use crate::provider::{CallLimits, CloudError, LabelProvider, Labels, Target, WriteOutcome};

/// Hands out cloud clients. Endpoints come from operator configuration only.
pub trait CloudAccess: Send + Sync {
    /// A provider for the set; `secret` is the data of its `credentialsRef`
    /// Secret, `None` for the operator's default credentials.
    fn provider_for(
        &self,
        set: &ResolvedSet,
        secret: Option<&BTreeMap<String, Vec<u8>>>,
    ) -> Result<Arc<dyn LabelProvider>, crate::provider::AccessError>;

    /// Total seconds cloud calls have waited for the rate limiter so far.
    fn rate_limiter_wait_seconds(&self) -> f64 {
        0.0
    }

    /// HTTP requests sent to clouds so far, retries included.
    fn cloud_requests(&self) -> u64 {
        0
    }

    /// Budget rates, ceilings and throttling per (provider, region, API).
    fn budget_stats(&self) -> Vec<crate::provider::limiter::BudgetStat> {
        Vec::new()
    }
}

/// Knobs of the reconciler.
#[derive(Clone, Debug)]
pub struct ReconcileConfig {
    pub default_region: String,
    pub default_resync: Duration,
    pub fight_threshold: usize,
    pub fight_window: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// How often a set stalled on a `credentialsRef` Secret reads the Secret
    /// again (a Kubernetes GET, no cloud call) to notice it was fixed.
    pub secret_poll: Duration,
    /// How long a stalled set waits before one more cloud attempt when
    /// neither its spec nor its Secret changed (cloud-side fixes: a created
    /// image, a granted permission).
    pub stalled_recheck: Duration,
    /// Namespaces whose sets may run without `credentialsRef`, on the
    /// operator's own account (see [`super::tenancy`]).
    pub default_credentials: super::tenancy::DefaultCredentialsNamespaces,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            default_region: "cn-shanghai".into(),
            default_resync: Duration::from_secs(600),
            fight_threshold: 3,
            fight_window: Duration::from_secs(3600),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            secret_poll: Duration::from_secs(30),
            stalled_recheck: Duration::from_secs(3600),
            default_credentials: Default::default(),
        }
    }
}

pub struct Ctx {
    pub client: Client,
    pub clouds: Arc<dyn CloudAccess>,
    pub metrics: Arc<Metrics>,
    pub events: super::events::Events,
    pub config: ReconcileConfig,
    pub index: ClaimIndex,
    pub fights: FightDetector,
    /// Consecutive failures per set, for exponential backoff (reset on success).
    pub failures: Mutex<HashMap<String, u32>>,
    /// Sets stalled on a terminal error, with what they were stalled on.
    pub stalls: Mutex<HashMap<String, StallMark>>,
    /// Reconciles running at once across both kinds (`--concurrency`).
    pub slots: tokio::sync::Semaphore,
    /// Owned-key counts per set, summed into the labels-managed gauge.
    pub managed: super::tally::Tally,
    /// Conflicting-key counts per set, summed into the conflicts gauge.
    pub conflicting: super::tally::Tally,
    pub wake_images: UnboundedSender<ObjectRef<Cached<ImageLabelSet>>>,
    pub wake_datasets: UnboundedSender<ObjectRef<Cached<DatasetLabelSet>>>,
    pub image_store: Store<Cached<ImageLabelSet>>,
    pub dataset_store: Store<Cached<DatasetLabelSet>>,
    /// Set once the claim index holds every set the stores know.
    pub primed: tokio::sync::OnceCell<()>,
    /// What this process last wrote into each set's status.
    pub written: super::written::Written,
    /// Drift checks running or waiting for a `slots` permit at once: at most
    /// half the slots (at least one), so checks never hold every slot and a
    /// change waits behind at most that many (see [`super::spread`]).
    pub check_slots: tokio::sync::Semaphore,
    /// Sets (by key) reconciled at least once by this process.
    /// By [`super::reconcile::key_hash`].
    pub seen: Mutex<HashSet<u64>>,
    /// Sets (by key) another set's claim change asked to look again; their
    /// next reconcile is a change, not a drift check.
    pub woken: Mutex<HashSet<String>>,
    /// Batched drift reads of PAI workspaces.
    pub snapshots: super::snapshots::WorkspaceSnapshots,
    /// Each set's next pass when no change comes first.
    pub passes: super::schedule::PassSchedule,
}

/// What ties a context to its controllers: the wake-up channels and the
/// watch caches.
pub struct Wiring {
    pub wake_images: UnboundedSender<ObjectRef<Cached<ImageLabelSet>>>,
    pub wake_datasets: UnboundedSender<ObjectRef<Cached<DatasetLabelSet>>>,
    pub image_store: Store<Cached<ImageLabelSet>>,
    pub dataset_store: Store<Cached<DatasetLabelSet>>,
}

/// How many drift checks may run (or wait for a slot) at once.
pub fn check_slots_for(concurrency: usize) -> usize {
    (concurrency / 2).max(1)
}

/// Permits held for one reconcile.
pub struct Entered<'a> {
    _check: Option<tokio::sync::SemaphorePermit<'a>>,
    _slot: Option<tokio::sync::SemaphorePermit<'a>>,
}

/// Takes a reconcile slot. A drift check takes a check slot first, so
/// checks hold (or wait in line for) at most `check_slots` of the `slots`,
/// and a change never waits behind more checks than that. When every check
/// slot is taken a check does not wait (`None`): it is requeued, so checks
/// never fill the controller's bounded runner (see [`runner_limit`]).
pub async fn enter<'a>(
    slots: &'a tokio::sync::Semaphore,
    check_slots: &'a tokio::sync::Semaphore,
    check: bool,
) -> Option<Entered<'a>> {
    let check = if check {
        Some(check_slots.try_acquire().ok()?)
    } else {
        None
    };
    Some(Entered {
        _check: check,
        _slot: slots.acquire().await.ok(),
    })
}

/// Reconciles one kind's controller runs (or keeps waiting for a slot) at
/// once: every slot, and as many again waiting for one. Unbounded, every
/// set of a large cluster was a spawned reconcile at start-up, held in the
/// runner's map, which never shrinks back (9 MB at 10,000 sets).
pub fn runner_limit(concurrency: usize) -> u16 {
    u16::try_from(concurrency.saturating_mul(2)).unwrap_or(u16::MAX)
}

/// What a stalled set saw: its generation, resume annotation and Secret
/// version. The cloud is not called again until one of them changes or
/// `stalled_recheck` passes.
#[derive(Clone, Debug)]
pub struct StallMark {
    pub fingerprint: String,
    pub since: Instant,
}

impl Ctx {
    /// Schedules the set's next pass `after` from now when no change comes
    /// first ([`super::schedule`]); the controller itself only waits for
    /// a change.
    pub fn again(&self, key: &str, after: Duration) -> kube::runtime::controller::Action {
        self.passes.at(key, after);
        kube::runtime::controller::Action::await_change()
    }

    /// A context running at most `concurrency` reconciles at once.
    pub fn new(
        client: Client,
        clouds: Arc<dyn CloudAccess>,
        metrics: Arc<Metrics>,
        events: super::events::Events,
        config: ReconcileConfig,
        concurrency: usize,
        wiring: Wiring,
    ) -> Self {
        Ctx {
            client,
            clouds,
            metrics,
            events,
            index: ClaimIndex::default(),
            fights: FightDetector::new(config.fight_threshold, config.fight_window),
            config,
            failures: Default::default(),
            stalls: Default::default(),
            slots: tokio::sync::Semaphore::new(concurrency),
            managed: Default::default(),
            conflicting: Default::default(),
            wake_images: wiring.wake_images,
            wake_datasets: wiring.wake_datasets,
            image_store: wiring.image_store,
            dataset_store: wiring.dataset_store,
            primed: Default::default(),
            written: Default::default(),
            check_slots: tokio::sync::Semaphore::new(check_slots_for(concurrency)),
            seen: Default::default(),
            woken: Default::default(),
            snapshots: Default::default(),
            passes: Default::default(),
        }
    }

    /// Ownership of a set: what this process last wrote, else its status.
    pub fn owned_keys(&self, uid: Option<&str>, status: &[String]) -> Vec<String> {
        uid.and_then(|u| self.written.owned(u))
            .unwrap_or_else(|| status.to_vec())
    }

    pub fn forget_owned(&self, uid: Option<&str>) {
        if let Some(u) = uid {
            self.written.forget(u);
        }
    }

    /// While `set` is stalled on exactly `fingerprint`, the time left before
    /// a recheck; otherwise forgets the stall and returns `None`.
    pub fn stall_hold(&self, set: &str, fingerprint: &str) -> Option<Duration> {
        let mut stalls = self.stalls.lock().expect("stalls poisoned");
        let recheck = self.config.stalled_recheck;
        let now = Instant::now();
        let left = stalls.get(set).and_then(|m| {
            super::holds::hold_left(&m.fingerprint, m.since, fingerprint, recheck, now)
        });
        if left.is_none() {
            stalls.remove(set);
        }
        left
    }

    pub fn mark_stalled(&self, set: &str, fingerprint: String) {
        self.stalls.lock().expect("stalls poisoned").insert(
            set.to_string(),
            StallMark {
                fingerprint,
                since: Instant::now(),
            },
        );
    }

    /// Records a set's owned and conflicting key counts (`None`: forgets
    /// the set) and sets its kind's two gauges to the new totals.
    pub fn record_counts(&self, set: &str, kind: &'static str, counts: Option<(usize, usize)>) {
        let managed = self.managed.set(set, kind, counts.map(|(owned, _)| owned));
        self.metrics
            .labels_managed
            .get_or_create(&Metrics::kind(kind))
            .set(managed as i64);
        let conflicts = self.conflicting.set(set, kind, counts.map(|(_, c)| c));
        self.metrics
            .conflicts
            .get_or_create(&Metrics::kind(kind))
            .set(conflicts as i64);
    }
}

/// A provider that counts every call in the metrics.
pub struct Metered {
    pub inner: Arc<dyn LabelProvider>,
    pub provider: &'static str,
    pub metrics: Arc<Metrics>,
}

impl Metered {
    /// A workspace page read, counted as a read when it ends.
    fn counted_read<'a>(
        &'a self,
        page: BoxFuture<'a, Result<crate::provider::pai::list::Page, CloudError>>,
    ) -> Option<BoxFuture<'a, Result<crate::provider::pai::list::Page, CloudError>>> {
        Some(Box::pin(async move {
            let r = page.await;
            self.count("read", &r);
            r
        }))
    }

    fn count<T>(&self, api: &str, result: &Result<T, CloudError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.kind.as_str(),
        };
        self.metrics
            .cloud_calls
            .get_or_create(&CloudCallLabels {
                provider: self.provider.into(),
                api: api.into(),
                outcome: outcome.into(),
            })
            .inc();
    }
}

impl LabelProvider for Metered {
    fn limits(&self, target: &Target) -> CallLimits {
        self.inner.limits(target)
    }

    fn observe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Labels, CloudError>> {
        Box::pin(async move {
            let r = self.inner.observe(target).await;
            self.count("read", &r);
            r
        })
    }

    fn add<'a>(
        &'a self,
        target: &'a Target,
        labels: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        Box::pin(async move {
            let r = self.inner.add(target, labels).await;
            self.count("add", &r);
            r
        })
    }

    fn remove<'a>(
        &'a self,
        target: &'a Target,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        Box::pin(async move {
            let r = self.inner.remove(target, keys).await;
            self.count("remove", &r);
            r
        })
    }

    fn list_workspace_images<'a>(
        &'a self,
        workspace_id: &'a str,
        page_number: u32,
        page_size: u32,
    ) -> Option<BoxFuture<'a, Result<crate::provider::pai::list::Page, CloudError>>> {
        self.counted_read(
            self.inner
                .list_workspace_images(workspace_id, page_number, page_size)?,
        )
    }

    fn list_workspace_datasets<'a>(
        &'a self,
        workspace_id: &'a str,
        page_number: u32,
        page_size: u32,
    ) -> Option<BoxFuture<'a, Result<crate::provider::pai::list::Page, CloudError>>> {
        self.counted_read(self.inner.list_workspace_datasets(
            workspace_id,
            page_number,
            page_size,
        )?)
    }
}

/// A context with no API server or cloud behind it, for tests that read
/// only the watch caches (which the test fills itself).
#[cfg(test)]
pub(crate) fn offline_ctx(images: Store<Cached<ImageLabelSet>>) -> Ctx {
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    test_ctx(client, Arc::new(NoClouds), images)
}

/// A context on `client` and `clouds`, with one reconcile slot, whose
/// wake-ups go nowhere and whose dataset cache is empty.
#[cfg(test)]
pub(crate) fn test_ctx(
    client: Client,
    clouds: Arc<dyn CloudAccess>,
    images: Store<Cached<ImageLabelSet>>,
) -> Ctx {
    let (wake_images, _) = tokio::sync::mpsc::unbounded_channel();
    let (wake_datasets, _) = tokio::sync::mpsc::unbounded_channel();
    let (dataset_store, _) = kube::runtime::reflector::store();
    let wiring = Wiring {
        wake_images,
        wake_datasets,
        image_store: images,
        dataset_store,
    };
    let events = super::events::Events::new(client.clone(), "test", None);
    let config = ReconcileConfig {
        fight_window: Duration::from_secs(60),
        ..Default::default()
    };
    Ctx::new(client, clouds, Arc::default(), events, config, 1, wiring)
}

#[cfg(test)]
struct NoClouds;
#[cfg(test)]
impl CloudAccess for NoClouds {
    fn provider_for(
        &self,
        _: &crate::engine::ResolvedSet,
        _: Option<&std::collections::BTreeMap<String, Vec<u8>>>,
    ) -> Result<Arc<dyn crate::provider::LabelProvider>, crate::provider::AccessError> {
        Err(crate::provider::AccessError::Client(
            crate::provider::CloudError::new(
                crate::provider::ErrorKind::Network,
                "client",
                "offline",
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::*;

    #[tokio::test]
    async fn a_change_finds_a_slot_while_checks_pile_up() {
        let concurrency = 4;
        let slots = Semaphore::new(concurrency);
        let checks = Semaphore::new(check_slots_for(concurrency));
        let mut held = Vec::new();
        // Two checks run; a hundred more are turned away at once (they are
        // requeued, not left waiting in the runner).
        for _ in 0..2 {
            held.push(enter(&slots, &checks, true).await.expect("a check slot"));
        }
        for _ in 0..100 {
            let turned =
                tokio::time::timeout(Duration::from_millis(50), enter(&slots, &checks, true));
            assert!(
                turned
                    .await
                    .expect("a check past its share does not wait")
                    .is_none(),
                "checks past their share get no slot"
            );
        }
        // Two changes still enter at once.
        for _ in 0..2 {
            let edit =
                tokio::time::timeout(Duration::from_millis(50), enter(&slots, &checks, false));
            held.push(
                edit.await
                    .expect("a change is not held behind checks")
                    .expect("a slot"),
            );
        }
        // A fifth reconcile waits for a slot.
        let fifth = tokio::time::timeout(Duration::from_millis(50), enter(&slots, &checks, false));
        assert!(fifth.await.is_err(), "four slots are all taken");
        assert_eq!(runner_limit(4), 8);
        assert_eq!(check_slots_for(1), 1);
        assert_eq!(check_slots_for(16), 8);
    }
}
