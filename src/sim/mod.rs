//! A simulator of the three cloud APIs the operator talks to (PAI
//! AIWorkSpace, Huawei Cloud IMS, Alibaba Cloud STS), faithful enough that
//! the official Python SDKs work against it unchanged (`tests/sdk/`).
//!
//! In process:
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use imagelabel::sim::{Sim, SeedConfig};
//! let handle = Sim::from_seed(SeedConfig::demo())?.start("127.0.0.1:0".parse()?).await?;
//! println!("endpoint {}", handle.base_url());
//! let calls = handle.counters();
//! handle.shutdown().await;
//! # Ok(()) }
//! ```
//! As a server: [`serve_seed`] (what `imagelabel sim` runs).
//!
//! Endpoints: one listener serves all three APIs. Point the PAI client at
//! `127.0.0.1:PORT` over http (the Alibaba SDK's `endpoint` is host:port),
//! the IMS client at `http://127.0.0.1:PORT`, STS at the same address.
//!
//! Seed (YAML, camelCase; see [`SeedConfig`] and `examples/sim/seed.yaml`):
//! `credentials` (`mainAccountId`, the main account of PAI credentials that
//! name none, default [`DEFAULT_MAIN_ACCOUNT_ID`]; `imsAccountId` likewise for
//! IMS; `pai` AccessKey pairs with optional `securityToken` and `accountId`,
//! `bearerTokens` (of `mainAccountId`), `ims` AK/SK with optional
//! `securityToken`, `projectId` and `accountId`, `oidc` for STS, whose keys
//! belong to the account in its role ARN), `flowControl`
//! ([`FlowControlSeed`]: `{enabled: true, rates: {AddImageLabels: 5}}`; on
//! by default at the published rates, `enabled: false` = off), `faults`
//! ([`FaultConfig`]), `pai.images`, `pai.datasets` (with `versions`), `ims.images`.
//!
//! Admin endpoints (no auth, loopback callers only), under `/_sim`:
//! `GET healthz`, `GET counters` ([`CounterSnapshot`]), `POST reset-counters`,
//! `GET state` (every object and its labels), `GET|PUT faults` (a
//! [`FaultConfig`] as JSON), `GET|PUT flow-control` (a [`FlowControlSeed`]
//! as JSON; a change refills every budget), and out-of-band
//! label changes that are not counted as API calls:
//! `PUT|DELETE pai/images/{id}/labels/{key}`,
//! `PUT|DELETE pai/datasets/{id}/labels/{key}`,
//! `PUT|DELETE pai/datasets/{id}/versions/{version}/labels/{key}`,
//! `PUT|DELETE ims/{projectId}/images/{id}/tags/{key}`; PUT takes `{"value": "..."}`.
//!
//! Behaviour where the clouds document nothing is the simulator's choice,
//! listed where it is implemented: label rules in `store`, PAI codes in
//! `pai`, IMS codes in `ims`, authentication codes in `auth`, STS in `sts`.
//! STS serves `AssumeRoleWithOIDC` (anonymous) and `GetCallerIdentity`
//! (signed; answers the caller's main account), see `sts`.
//!
//! Flow control, as Alibaba Cloud publishes it for AIWorkSpace
//! (<https://help.aliyun.com/en/pai/developer-reference/api-aiworkspace-2021-02-04-quota>):
//! one budget per (main account, region, API) at the API's published rate
//! ([`PUBLISHED_RATES`]), shared by every key, STS token and bearer token of
//! that main account. The region is the one in the Host
//! (`aiworkspace.<region>.aliyuncs.com`), [`DEFAULT_PAI_REGION`] for any
//! other host. IMS publishes no rates: the same shape with the simulator's
//! defaults ([`IMS_DEFAULT_RATES`]). A spent budget: PAI answers 400
//! `Throttling.User` with `x-acs-retry-after` (milliseconds); IMS answers the
//! gateway's 429 `APIGW.0308`. STS and the admin endpoints are never
//! throttled. [`CounterSnapshot`] counts throttled answers per API and per
//! User-Agent. Request bodies are capped at
//! [`MAX_BODY_BYTES`] (413). Fault injection applies to PAI and IMS calls,
//! never to STS or the admin endpoints.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::provider::{Labels, Target};

mod admin;
mod auth;
mod counters;
mod direct;
mod faults;
#[cfg(test)]
mod fuzz;
mod ims;
mod pai;
mod seed;
mod server;
mod store;
mod sts;
mod throttle;
mod wire;

pub use counters::{ApiCounts, CounterSnapshot};
pub use direct::DirectProvider;
pub use seed::{
    CredentialsSeed, DEFAULT_IMS_ACCOUNT_ID, DEFAULT_MAIN_ACCOUNT_ID, DatasetSeed, FaultConfig,
    FlowControlSeed, ImsCredential, ImsImageSeed, ImsSeed, OidcIssuerSeed, OidcSeed, PaiCredential,
    PaiImageSeed, PaiSeed, SeedConfig, SeedError, VersionSeed,
};
pub use throttle::{DEFAULT_IMS_REGION, DEFAULT_PAI_REGION, IMS_DEFAULT_RATES, PUBLISHED_RATES};
pub use wire::MAX_BODY_BYTES;

/// Everything the handlers share.
pub(crate) struct SimState {
    store: Mutex<store::Store>,
    auth: auth::Auth,
    faults: faults::FaultInjector,
    flow_control: throttle::FlowControl,
    counters: counters::Counters,
    oidc: Option<OidcSeed>,
    /// The main account STS-issued keys belong to.
    oidc_account: Option<String>,
}

/// An object the simulator does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the simulator has no {0}")]
pub struct UnknownObject(pub String);

/// A simulator: its state, without a listener. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Sim {
    state: Arc<SimState>,
}

impl Sim {
    /// A simulator seeded from `seed` (checked first).
    pub fn from_seed(seed: SeedConfig) -> Result<Sim, SeedError> {
        seed.validate()?;
        let state = SimState {
            store: Mutex::new(store::Store::from_seed(&seed)),
            auth: auth::Auth::new(&seed.credentials),
            faults: faults::FaultInjector::new(seed.faults.clone()),
            flow_control: throttle::FlowControl::new(seed.flow_control.clone()),
            counters: counters::Counters::default(),
            oidc: seed.credentials.oidc.clone(),
            oidc_account: seed.credentials.oidc_account(),
        };
        Ok(Sim {
            state: Arc::new(state),
        })
    }

    /// The embedded demo seed.
    pub fn demo() -> Sim {
        Sim::from_seed(SeedConfig::demo())
            .expect("the embedded demo seed is valid (checked by a unit test)")
    }

    /// The axum router, for callers that run their own server. Handlers
    /// need `ConnectInfo<server::ConnInfo>`, so serve it with [`Sim::serve`].
    fn router(&self) -> axum::Router {
        server::router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, then finishes the
    /// requests in flight.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self
            .router()
            .into_make_service_with_connect_info::<server::ConnInfo>();
        axum::serve(server::SimListener::new(listener), app)
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Binds `addr` (port 0 picks a free one) and serves in the background.
    pub async fn start(self, addr: SocketAddr) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let sim = self.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = sim
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await
            {
                tracing::error!(error = %e, "simulator server failed");
            }
        });
        Ok(SimHandle {
            sim: self,
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    fn store(&self) -> std::sync::MutexGuard<'_, store::Store> {
        self.state.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls counted so far.
    pub fn counters(&self) -> CounterSnapshot {
        self.state.counters.snapshot()
    }

    pub fn reset_counters(&self) {
        self.state.counters.reset()
    }

    pub fn faults(&self) -> FaultConfig {
        self.state.faults.config()
    }

    /// Changes fault injection from now on; rejects rates outside 0..=1.
    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), String> {
        self.state.faults.set(faults)
    }

    /// The flow-control configuration in force.
    pub fn flow_control(&self) -> FlowControlSeed {
        self.state.flow_control.config()
    }

    /// Changes flow control from now on; every budget starts full. Rejects
    /// rates for APIs the simulator does not serve.
    pub fn set_flow_control(&self, flow_control: FlowControlSeed) -> Result<(), String> {
        self.state.flow_control.set(flow_control)
    }

    /// Current labels of an object, `None` when the simulator has no such object.
    pub fn labels_of(&self, target: &Target) -> Option<Labels> {
        let store = self.store();
        match target {
            Target::PaiImage { image_id, .. } => {
                store.pai_image(image_id).ok().map(|i| i.labels.clone())
            }
            Target::PaiDataset { dataset_id } => {
                store.dataset(dataset_id).ok().map(|d| d.labels.clone())
            }
            Target::PaiDatasetVersion {
                dataset_id,
                version,
            } => store.dataset_version(dataset_id, version).ok().cloned(),
            Target::ImsImage {
                project_id,
                image_id,
            } => store.ims_tags(project_id, image_id).ok().cloned(),
        }
    }

    fn with_labels<R>(
        &self,
        target: &Target,
        f: impl FnOnce(&mut Labels) -> R,
    ) -> Result<R, UnknownObject> {
        let mut store = self.store();
        let labels = match target {
            Target::PaiImage { image_id, .. } => {
                store.pai_images.get_mut(image_id).map(|i| &mut i.labels)
            }
            Target::PaiDataset { dataset_id } => store
                .pai_datasets
                .get_mut(dataset_id)
                .map(|d| &mut d.labels),
            Target::PaiDatasetVersion {
                dataset_id,
                version,
            } => store
                .pai_datasets
                .get_mut(dataset_id)
                .and_then(|d| d.versions.get_mut(version)),
            Target::ImsImage {
                project_id,
                image_id,
            } => store
                .ims_images
                .get_mut(project_id)
                .and_then(|p| p.get_mut(image_id)),
        };
        labels
            .map(f)
            .ok_or_else(|| UnknownObject(target.to_string()))
    }

    /// Sets a label as someone else would (console, another tool), bypassing
    /// the API rules and the counters.
    pub fn set_label_out_of_band(
        &self,
        target: &Target,
        key: &str,
        value: &str,
    ) -> Result<(), UnknownObject> {
        self.with_labels(target, |labels| {
            labels.insert(key.to_string(), value.to_string());
        })
    }

    /// Removes a label behind the operator's back; `Ok(false)` when it was not there.
    pub fn remove_label_out_of_band(
        &self,
        target: &Target,
        key: &str,
    ) -> Result<bool, UnknownObject> {
        self.with_labels(target, |labels| labels.remove(key).is_some())
    }

    /// Adds (or replaces) objects while running, e.g. thousands of images for a benchmark.
    pub fn add_pai_image(&self, image: PaiImageSeed) {
        self.store().add_pai_image(image)
    }

    pub fn add_dataset(&self, dataset: DatasetSeed) {
        self.store().add_dataset(dataset)
    }

    pub fn add_ims_image(&self, image: ImsImageSeed) {
        self.store().add_ims_image(image)
    }

    /// All objects and labels, as `GET /_sim/state` returns them.
    pub fn state_json(&self) -> serde_json::Value {
        serde_json::to_value(&*self.store()).unwrap_or_default()
    }
}

/// A running simulator. Dropping it stops the server (without waiting);
/// [`SimHandle::shutdown`] stops it and waits. Derefs to [`Sim`] for the
/// state accessors.
pub struct SimHandle {
    sim: Sim,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the endpoint for every simulated API.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`: what the Alibaba Cloud SDK takes as `endpoint`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// Stops accepting, lets requests in flight finish, and waits.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl std::ops::Deref for SimHandle {
    type Target = Sim;
    fn deref(&self) -> &Sim {
        &self.sim
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves the simulator seeded with `seed` on `addr` until SIGINT or
/// SIGTERM: what `imagelabel sim` runs.
pub async fn serve_seed(seed: SeedConfig, addr: SocketAddr) -> anyhow::Result<()> {
    let sim = Sim::from_seed(seed)?;
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(url = %format!("http://{}", listener.local_addr()?), "simulator listening");
    sim.serve(listener, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod signature_tests;
#[cfg(test)]
mod tests;
