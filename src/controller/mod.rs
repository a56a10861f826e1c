//! The Kubernetes controller: `imagelabel run`.
//!
//! Both kinds run through one generic reconciler ([`reconcile`]). Only the
//! replica holding the Lease runs controllers; losing the lease ends the
//! process so a restarted pod never writes on a stale view.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt, predicates};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

pub mod context;
pub mod events;
pub mod exposition;
pub mod fights;
pub mod http;
pub mod index;
pub mod metrics;
pub mod reconcile;
pub mod resource;
pub mod snapshots;
pub mod spread;
pub mod sweep;
pub mod tally;
pub mod tenancy;

use context::{CloudAccess, Ctx, ReconcileConfig};
use fights::FightDetector;
use index::ClaimIndex;
use metrics::Metrics;
use resource::LabelSetResource;

use crate::api::{DatasetLabelSet, ImageLabelSet};

/// How often per-set state is checked against the watch caches.
const STATE_CHECK_EVERY: Duration = Duration::from_secs(60);

/// Settings of `imagelabel run`.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub reconcile: ReconcileConfig,
    pub concurrency: u16,
    pub metrics_addr: SocketAddr,
    pub leader_election: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    pub lease_duration: Duration,
    pub identity: String,
    pub watch_namespace: Option<String>,
}

/// Re-triggers on what matters to a reconcile: the spec (generation), our
/// annotations, finalizers and deletion. Status writes do not retrigger.
fn trigger_hash<K: Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut h);
    if let Some(a) = &meta.annotations {
        a.get(reconcile::PAUSED).hash(&mut h);
        a.get(reconcile::RECONCILE_REQUESTED_AT).hash(&mut h);
    }
    let _ = predicates::generation::<K>;
    Some(h.finish())
}

/// What the watch caches keep of a set: what a reconcile reads. managedFields
/// and other tools' annotations (`kubectl apply` copies the whole manifest
/// into one) are never read and are most of an object's bytes: 8.2 KB as
/// listed, 3.4 KB kept (`cargo bench --bench footprint`).
pub fn slim<K: LabelSetResource>(o: &mut K) {
    o.managed_fields_mut().clear();
    o.annotations_mut()
        .retain(|k, _| k.starts_with(reconcile::ANNOTATION_PREFIX));
}

fn api_for<K: LabelSetResource>(client: &Client, ns: &Option<String>) -> Api<K> {
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Keeps the claim index current from the watch itself, before any set is
/// reconciled: two sets applied together must see each other's claims, or
/// the newer one could write a key the older one wins.
/// A re-list (after a watch gap) replaces the kind's claims with what it
/// returned, so a Delete the watch missed cannot leave a claim behind.
fn claims_from_watch<K: LabelSetResource>(
    ctx: Arc<Ctx>,
    listing: Arc<FirstList>,
) -> impl FnMut(&watcher::Event<K>) {
    let mut relist = sweep::Relist::default();
    let mut listed = false;
    move |event| match event {
        watcher::Event::Apply(o) => {
            reconcile::wake_others::<K>(reconcile::index_claim(o, &ctx), &ctx);
        }
        watcher::Event::InitApply(o) => {
            relist.saw(&reconcile::set_key(o));
            // A (re-)list wakes without marking: a restart must not turn the
            // settled sets sharing an object into changes (see `spread`).
            reconcile::wake_unmarked::<K>(reconcile::index_claim(o, &ctx), &ctx);
        }
        watcher::Event::Delete(o) => {
            ctx.forget_owned(o.meta().uid.as_deref());
            ctx.seen
                .lock()
                .expect("seen poisoned")
                .remove(&reconcile::set_key(o));
            sweep::forget_set::<K>(&ctx, &reconcile::set_key(o));
        }
        watcher::Event::Init => relist.begin(),
        watcher::Event::InitDone => {
            let gone = relist.done(K::KIND, ctx.index.set_keys());
            if !gone.is_empty() {
                info!(sets = ?gone, "re-list: claims of sets that no longer exist dropped");
            }
            for key in gone {
                sweep::forget_set::<K>(&ctx, &key);
            }
            if !std::mem::replace(&mut listed, true) {
                listing.kind_listed(K::KIND, &ctx.metrics);
            }
        }
    }
}

/// When both kinds' first lists are in the caches (start-up's figure: see
/// the README's Benchmarks).
struct FirstList {
    started: std::time::Instant,
    kinds_left: std::sync::atomic::AtomicUsize,
}

impl FirstList {
    fn new(kinds: usize) -> Arc<Self> {
        Arc::new(FirstList {
            started: std::time::Instant::now(),
            kinds_left: kinds.into(),
        })
    }

    fn kind_listed(&self, kind: &str, metrics: &Metrics) {
        let took = self.started.elapsed().as_secs_f64();
        info!(kind, seconds = took, "watch cache holds the full list");
        if self.kinds_left.fetch_sub(1, Ordering::SeqCst) == 1 {
            metrics.caches_ready.set(took);
        }
    }
}

/// Resolves when this replica can no longer be sure it holds the Lease.
/// The lease manager retries failed renewals without saying so; a leader
/// cut off from the API server must stop before the Lease it last renewed
/// expires and a standby takes over.
async fn confirm_lease(
    leases: Api<k8s_openapi::api::coordination::v1::Lease>,
    name: String,
    identity: String,
    duration: Duration,
) {
    let period = (duration / 4).max(Duration::from_millis(500));
    // Stop a sixth of a lease early (clocks and in-flight requests need
    // room), but after the renewal the manager makes a third before expiry.
    let margin = duration / 6;
    let mut valid_until = tokio::time::Instant::now() + duration - margin;
    loop {
        tokio::time::sleep(period).await;
        match leases.get(&name).await {
            Ok(lease) => {
                let spec = lease.spec.unwrap_or_default();
                if spec.holder_identity.as_deref() != Some(identity.as_str()) {
                    warn!(holder = ?spec.holder_identity, "the Lease names another holder");
                    return;
                }
                let renewed = spec.renew_time.map(|t| t.0);
                let lasts = spec
                    .lease_duration_seconds
                    .map_or(duration, |s| Duration::from_secs(s.max(0) as u64));
                if let Some(renewed) = renewed {
                    let age = jiff::Timestamp::now()
                        .duration_since(renewed)
                        .unsigned_abs();
                    let left = lasts.saturating_sub(age).saturating_sub(margin);
                    valid_until = tokio::time::Instant::now() + left;
                }
            }
            Err(e) => warn!(error = %e, "could not confirm the Lease"),
        }
        if tokio::time::Instant::now() >= valid_until {
            warn!("the Lease could not be confirmed before it would expire");
            return;
        }
    }
}

/// Runs a watch (and the caches and claim index it fills) on its own task,
/// handing objects to the controller through a bounded queue, so the list
/// moves on while the controller schedules instead of waiting for it object
/// by object.
fn on_own_task<T: Send + 'static>(
    watch: impl futures::Stream<Item = T> + Send + 'static,
) -> (
    impl futures::Stream<Item = T> + Send + 'static,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(WATCH_QUEUE);
    let task = tokio::spawn(async move {
        let mut watch = std::pin::pin!(watch);
        while let Some(item) = watch.next().await {
            if tx.send(item).await.is_err() {
                return;
            }
        }
    });
    let objects =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|o| (o, rx)) });
    (objects, task)
}

/// Objects a watch may run ahead of its controller (a list page is 500).
const WATCH_QUEUE: usize = 512;

/// A stream of wake-ups from the claim index.
fn wakes<K: LabelSetResource>(
    rx: mpsc::UnboundedReceiver<ObjectRef<K>>,
) -> impl futures::Stream<Item = ObjectRef<K>> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })
}

/// Runs the controllers until `shutdown` resolves (finishing in-flight
/// reconciles) or leadership is lost (an error).
pub async fn run(
    client: Client,
    clouds: Arc<dyn CloudAccess>,
    cfg: RunConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    metrics.prefill_budgets(&cfg.reconcile.default_region);
    let ready = Arc::new(AtomicBool::new(false));
    let server = http::serve(
        cfg.metrics_addr,
        metrics.clone(),
        ready.clone(),
        clouds.clone(),
    )
    .await?;
    info!(addr = %server, "serving /metrics, /healthz, /readyz");

    let shutdown = shutdown.shared();
    let mut lease = None;
    if cfg.leader_election {
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &cfg.lease_name)
            .with_namespace(&cfg.lease_namespace)
            .with_identity(&cfg.identity)
            .with_duration(cfg.lease_duration.as_secs().max(2))
            .with_grace((cfg.lease_duration.as_secs() / 3).max(1))
            .build()
            .await?;
        let (mut channel, task) = manager.watch().await;
        ready.store(true, Ordering::SeqCst);
        info!(identity = %cfg.identity, lease = %cfg.lease_name, "waiting for leadership");
        loop {
            if *channel.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = channel.changed() => changed?,
                _ = shutdown.clone() => {
                    drop(channel);
                    let _ = task.await;
                    return Ok(());
                }
            }
        }
        info!(identity = %cfg.identity, "acquired leadership");
        lease = Some((channel, task));
    }
    ready.store(true, Ordering::SeqCst);
    metrics.leader.set(1);

    let (wake_images, images_rx) = mpsc::unbounded_channel();
    let (wake_datasets, datasets_rx) = mpsc::unbounded_channel();
    let (image_store, image_writer) = reflector::store::<ImageLabelSet>();
    let (dataset_store, dataset_writer) = reflector::store::<DatasetLabelSet>();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        clouds,
        metrics: metrics.clone(),
        events: events::Events::new(client.clone(), "imagelabel-operator", Some(&cfg.identity)),
        config: cfg.reconcile.clone(),
        index: ClaimIndex::default(),
        fights: FightDetector::new(cfg.reconcile.fight_threshold, cfg.reconcile.fight_window),
        failures: Default::default(),
        stalls: Default::default(),
        slots: tokio::sync::Semaphore::new(usize::from(cfg.concurrency.max(1))),
        managed: Default::default(),
        conflicting: Default::default(),
        wake_images,
        wake_datasets,
        image_store: image_store.clone(),
        dataset_store: dataset_store.clone(),
        primed: Default::default(),
        written_owned: Default::default(),
        check_slots: tokio::sync::Semaphore::new(context::check_slots_for(usize::from(
            cfg.concurrency.max(1),
        ))),
        seen: Default::default(),
        woken: Default::default(),
        written_status: Default::default(),
        snapshots: Default::default(),
    });

    let sweeper = tokio::spawn(sweep::periodically(ctx.clone(), STATE_CHECK_EVERY));

    // Leadership lost: stop at once, a restarted replica starts from scratch.
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    // Only a sent signal means lost: without leader election no sender is
    // ever kept, and a dropped sender must not stop the controllers.
    let lost = async move {
        if lost_rx.await.is_err() {
            futures::future::pending::<()>().await;
        }
    }
    .boxed()
    .shared();
    let lease_watch = lease.map(|(mut channel, task)| {
        let confirm = confirm_lease(
            Api::namespaced(client.clone(), &cfg.lease_namespace),
            cfg.lease_name.clone(),
            cfg.identity.clone(),
            cfg.lease_duration,
        );
        tokio::spawn(async move {
            let announced = async {
                loop {
                    if channel.changed().await.is_err() {
                        // The manager ended; the confirmation below decides.
                        return futures::future::pending().await;
                    }
                    if !*channel.borrow_and_update() {
                        return;
                    }
                }
            };
            tokio::select! { _ = announced => {}, _ = confirm => {} }
            let _ = lost_tx.send(());
            (channel, task)
        })
    });

    let stop = {
        let shutdown = shutdown.clone();
        let lost = lost.clone();
        async move {
            tokio::select! { _ = shutdown => {}, _ = lost => {} }
        }
        .shared()
    };
    // No limit per controller: `ctx.slots` bounds reconciles across both
    // kinds, and drift checks queue on `ctx.check_slots` first. A runner
    // limit would count checks waiting there and hold edits back behind them.
    let controller_config = ControllerConfig::default()
        .concurrency(0)
        .debounce(Duration::from_millis(200));
    let wc = watcher::Config::default().timeout(240);
    let listing = FirstList::new(2);

    let images = watcher(
        api_for::<ImageLabelSet>(&client, &cfg.watch_namespace),
        wc.clone(),
    )
    .default_backoff()
    .modify(slim::<ImageLabelSet>)
    .reflect(image_writer)
    .inspect_ok(claims_from_watch(ctx.clone(), listing.clone()))
    .applied_objects()
    .predicate_filter(trigger_hash::<ImageLabelSet>, Default::default());
    let (images, image_watch) = on_own_task(images);
    let datasets = watcher(
        api_for::<DatasetLabelSet>(&client, &cfg.watch_namespace),
        wc,
    )
    .default_backoff()
    .modify(slim::<DatasetLabelSet>)
    .reflect(dataset_writer)
    .inspect_ok(claims_from_watch(ctx.clone(), listing))
    .applied_objects()
    .predicate_filter(trigger_hash::<DatasetLabelSet>, Default::default());
    let (datasets, dataset_watch) = on_own_task(datasets);

    let image_ctl = Controller::for_stream(images, image_store)
        .with_config(controller_config.clone())
        .reconcile_on(wakes(images_rx))
        .graceful_shutdown_on(stop.clone())
        .run(
            reconcile::reconcile::<ImageLabelSet>,
            reconcile::error_policy::<ImageLabelSet>,
            ctx.clone(),
        )
        .for_each(|r| async move { log_result(r) });
    let dataset_ctl = Controller::for_stream(datasets, dataset_store)
        .with_config(controller_config)
        .reconcile_on(wakes(datasets_rx))
        .graceful_shutdown_on(stop.clone())
        .run(
            reconcile::reconcile::<DatasetLabelSet>,
            reconcile::error_policy::<DatasetLabelSet>,
            ctx.clone(),
        )
        .for_each(|r| async move { log_result(r) });
    info!(concurrency = cfg.concurrency, namespace = ?cfg.watch_namespace, "controllers started");
    // On SIGTERM the controllers finish what is in flight; on a lost lease
    // in-flight reconciles are dropped at once, since another replica may
    // already be writing.
    tokio::select! {
        _ = futures::future::join(image_ctl, dataset_ctl) => {}
        _ = lost.clone() => {}
    }
    metrics.leader.set(0);
    sweeper.abort();
    image_watch.abort();
    dataset_watch.abort();

    if lost.clone().now_or_never().is_some() {
        error!("leadership lost; exiting so no stale replica writes");
        anyhow::bail!("leader lease lost");
    }
    if let Some(handle) = lease_watch {
        handle.abort();
        // Hand the lease over at once instead of letting it expire.
        let release = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &cfg.lease_name)
            .with_namespace(&cfg.lease_namespace)
            .with_identity(&cfg.identity)
            .build()
            .await;
        if let Ok(m) = release
            && let Err(e) = m.release().await
        {
            warn!(error = %e, "could not release the lease; the standby takes over when it expires");
        }
    }
    info!("controllers stopped");
    Ok(())
}

fn log_result<K: Resource, E: std::fmt::Display>(
    r: Result<(ObjectRef<K>, kube::runtime::controller::Action), E>,
) where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    if let Err(e) = r {
        warn!(error = %e, "controller event");
    }
}
