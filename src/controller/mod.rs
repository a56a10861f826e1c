//! The Kubernetes controller: `imagelabel run`.
//!
//! Both kinds run through one generic reconciler ([`reconcile`]). Only the
//! replica holding the Lease runs controllers ([`leader`]); losing the lease
//! ends the process so a restarted pod never writes on a stale view.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

mod apply;
pub mod cached;
mod claims;
mod cleanup;
pub mod context;
mod credentials;
pub mod events;
pub mod exposition;
pub mod fights;
mod holds;
pub mod http;
pub mod index;
mod leader;
pub mod metrics;
pub mod reconcile;
pub mod resource;
pub mod schedule;
pub mod snapshots;
pub mod spread;
mod status;
mod status_writer;
pub mod sweep;
pub mod tally;
pub mod tenancy;
pub mod triggers;
mod workspace_check;
pub mod written;

use cached::Cached;
use context::{CloudAccess, Ctx, ReconcileConfig};
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

fn api_for<K: LabelSetResource>(client: &Client, ns: &Option<String>) -> Api<Cached<K>> {
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
) -> impl FnMut(&watcher::Event<Cached<K>>) {
    let mut relist = sweep::Relist::default();
    let mut listed = false;
    move |event| match event {
        watcher::Event::Apply(o) => {
            claims::wake_others::<K>(claims::index_cached(o, &ctx), &ctx);
        }
        watcher::Event::InitApply(o) => {
            relist.saw(&o.key());
            // A (re-)list wakes without marking: a restart must not turn the
            // settled sets sharing an object into changes (see `spread`).
            claims::wake_unmarked::<K>(claims::index_cached(o, &ctx), &ctx);
        }
        watcher::Event::Delete(o) => {
            ctx.forget_owned(o.meta().uid.as_deref());
            ctx.seen
                .lock()
                .expect("seen poisoned")
                .remove(&reconcile::key_hash(&o.key()));
            sweep::forget_set::<K>(&ctx, &o.key());
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
    rx: mpsc::UnboundedReceiver<ObjectRef<Cached<K>>>,
) -> impl futures::Stream<Item = ObjectRef<Cached<K>>> + Send + 'static {
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
        let standby = || ready.store(true, Ordering::SeqCst);
        match leader::acquire(&client, &cfg, standby, shutdown.clone()).await? {
            Some(held) => lease = Some(held),
            None => return Ok(()),
        }
    }
    ready.store(true, Ordering::SeqCst);
    metrics.leader.set(1);

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
    let lease_watch = lease.map(|held| leader::watch(held, &client, &cfg, lost_tx));
    let stop = {
        let shutdown = shutdown.clone();
        let lost = lost.clone();
        async move {
            tokio::select! { _ = shutdown => {}, _ = lost => {} }
        }
        .shared()
    };
    run_controllers(&client, clouds, metrics.clone(), &cfg, stop, lost.clone()).await;
    metrics.leader.set(0);

    if lost.clone().now_or_never().is_some() {
        error!("leadership lost; exiting so no stale replica writes");
        anyhow::bail!("leader lease lost");
    }
    if let Some(handle) = lease_watch {
        handle.abort();
        leader::release(&client, &cfg).await;
    }
    info!("controllers stopped");
    Ok(())
}

/// Runs both kinds' watches and controllers until `stop` (in-flight
/// reconciles finish) or `lost` (they are dropped at once, since another
/// replica may already be writing).
async fn run_controllers(
    client: &Client,
    clouds: Arc<dyn CloudAccess>,
    metrics: Arc<Metrics>,
    cfg: &RunConfig,
    stop: impl std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
    lost: impl std::future::Future<Output = ()>,
) {
    let (wake_images, images_rx) = mpsc::unbounded_channel();
    let (wake_datasets, datasets_rx) = mpsc::unbounded_channel();
    let (image_store, image_writer) = reflector::store::<Cached<ImageLabelSet>>();
    let (dataset_store, dataset_writer) = reflector::store::<Cached<DatasetLabelSet>>();
    let wiring = context::Wiring {
        wake_images,
        wake_datasets,
        image_store: image_store.clone(),
        dataset_store: dataset_store.clone(),
    };
    let events = events::Events::new(client.clone(), "imagelabel-operator", Some(&cfg.identity));
    let concurrency = usize::from(cfg.concurrency.max(1));
    let ctx = Arc::new(Ctx::new(
        client.clone(),
        clouds,
        metrics,
        events,
        cfg.reconcile.clone(),
        concurrency,
        wiring,
    ));
    let sweeper = tokio::spawn(sweep::periodically(ctx.clone(), STATE_CHECK_EVERY));
    let passes = tokio::spawn(schedule::run(ctx.clone()));
    let listing = FirstList::new(2);
    let (image_ctl, image_watch) = controller(
        client,
        cfg,
        ctx.clone(),
        listing.clone(),
        (image_store, image_writer),
        images_rx,
        stop.clone(),
    );
    let (dataset_ctl, dataset_watch) = controller(
        client,
        cfg,
        ctx,
        listing,
        (dataset_store, dataset_writer),
        datasets_rx,
        stop,
    );
    info!(concurrency = cfg.concurrency, namespace = ?cfg.watch_namespace, "controllers started");
    // On SIGTERM the controllers finish what is in flight; on a lost lease
    // in-flight reconciles are dropped at once.
    tokio::select! {
        _ = futures::future::join(image_ctl, dataset_ctl) => {}
        _ = lost => {}
    }
    sweeper.abort();
    passes.abort();
    image_watch.abort();
    dataset_watch.abort();
}

/// One kind's controller, and the task running its watch.
fn controller<K: LabelSetResource>(
    client: &Client,
    cfg: &RunConfig,
    ctx: Arc<Ctx>,
    listing: Arc<FirstList>,
    (store, writer): (
        reflector::Store<Cached<K>>,
        reflector::store::Writer<Cached<K>>,
    ),
    wakes_rx: mpsc::UnboundedReceiver<ObjectRef<Cached<K>>>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> (
    impl std::future::Future<Output = ()>,
    tokio::task::JoinHandle<()>,
) {
    // `ctx.slots` bounds reconciles across both kinds. The runner's own
    // limit only keeps waiting reconciles few: a drift check never waits
    // in it for a check slot (it is requeued), so checks cannot fill it and
    // hold changes back.
    let controller_config = ControllerConfig::default()
        .concurrency(context::runner_limit(usize::from(cfg.concurrency.max(1))))
        .debounce(Duration::from_millis(200));
    let wc = watcher::Config::default().timeout(240);
    let objects = watcher(api_for::<K>(client, &cfg.watch_namespace), wc)
        .default_backoff()
        .reflect(writer)
        .inspect_ok(claims_from_watch(ctx.clone(), listing))
        .applied_objects()
        .try_filter({
            let mut triggers = triggers::Triggers::default();
            move |obj| std::future::ready(triggers.changed(obj))
        });
    let (objects, watch) = on_own_task(objects);
    let ctl = Controller::for_stream(objects, store)
        .with_config(controller_config)
        .reconcile_on(wakes(wakes_rx))
        .graceful_shutdown_on(stop)
        .run(reconcile::reconcile::<K>, reconcile::error_policy::<K>, ctx)
        .for_each(|r| async move { log_result(r) });
    (ctl, watch)
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
