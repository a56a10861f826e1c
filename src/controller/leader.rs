//! Leader election on a Lease: only the replica holding it runs
//! controllers, and it stops before the Lease it last renewed can expire.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::RunConfig;

/// Leadership held: the manager's view of it and the task renewing it.
pub struct Held {
    channel: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

/// Waits until this replica holds the Lease. `None`: `shutdown` came first.
/// `waiting` runs once the wait has begun (the replica is ready as a standby).
pub async fn acquire(
    client: &Client,
    cfg: &RunConfig,
    waiting: impl FnOnce(),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Option<Held>> {
    let manager = LeaseManagerBuilder::new(client.clone(), &cfg.lease_name)
        .with_namespace(&cfg.lease_namespace)
        .with_identity(&cfg.identity)
        .with_duration(cfg.lease_duration.as_secs().max(2))
        .with_grace((cfg.lease_duration.as_secs() / 3).max(1))
        .build()
        .await?;
    let (mut channel, task) = manager.watch().await;
    waiting();
    info!(identity = %cfg.identity, lease = %cfg.lease_name, "waiting for leadership");
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        if *channel.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = channel.changed() => changed?,
            _ = &mut shutdown => {
                drop(channel);
                let _ = task.await;
                return Ok(None);
            }
        }
    }
    info!(identity = %cfg.identity, "acquired leadership");
    Ok(Some(Held { channel, task }))
}

/// Sends on `lost` when the manager says the Lease is gone or it can no
/// longer be confirmed. The task ends with it; abort it to stop watching.
pub fn watch(
    held: Held,
    client: &Client,
    cfg: &RunConfig,
    lost: tokio::sync::oneshot::Sender<()>,
) -> JoinHandle<Held> {
    let confirm = confirm_lease(
        Api::namespaced(client.clone(), &cfg.lease_namespace),
        cfg.lease_name.clone(),
        cfg.identity.clone(),
        cfg.lease_duration,
    );
    let Held { mut channel, task } = held;
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
        let _ = lost.send(());
        Held { channel, task }
    })
}

/// Hands the Lease over at once instead of letting it expire.
pub async fn release(client: &Client, cfg: &RunConfig) {
    let manager = LeaseManagerBuilder::new(client.clone(), &cfg.lease_name)
        .with_namespace(&cfg.lease_namespace)
        .with_identity(&cfg.identity)
        .build()
        .await;
    if let Ok(m) = manager
        && let Err(e) = m.release().await
    {
        warn!(error = %e, "could not release the lease; the standby takes over when it expires");
    }
}

/// Resolves when this replica can no longer be sure it holds the Lease.
/// The lease manager retries failed renewals without saying so; a leader
/// cut off from the API server must stop before the Lease it last renewed
/// expires and a standby takes over.
async fn confirm_lease(leases: Api<Lease>, name: String, identity: String, duration: Duration) {
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
