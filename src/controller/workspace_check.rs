//! Drift checks of many sets on one PAI workspace answered from one
//! listing of the workspace (see [`super::snapshots`]) instead of one read
//! per object.

use std::any::Any;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;
use rand::Rng;

use super::context::Ctx;
use super::credentials::SecretRead;
use super::metrics::ReconcileLabels;
use super::reconcile::set_key;
use super::resource::LabelSetResource;
use super::status::settle;
use super::status_writer::{StatusWriter, count};
use crate::api::{DatasetLabelSet, LabelSetSpec, Provider};
use crate::engine::{ResolvedSet, SyncReport, SyncRequest, plan_for};
use crate::provider::{LabelProvider, Target};

/// What a snapshot lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    /// ListImages (`Verbose=true`).
    Images,
    /// ListDatasets (labels come with each dataset).
    Datasets,
}

/// Where a set's drift check may be answered from: the snapshot key
/// (listing, namespace, credentials as Secret name and version or the
/// operator's own, where requests go, workspace), the workspace, and the
/// object's ID in the listing.
pub struct Batch {
    pub key: String,
    workspace: String,
    listing: Listing,
    pub id: String,
}

/// The workspace of a dataset set; the target of a dataset carries none.
fn dataset_workspace<K: LabelSetResource>(obj: &K) -> Option<String> {
    let dataset = (obj as &dyn Any).downcast_ref::<DatasetLabelSet>()?;
    dataset.spec.workspace_id().map(str::to_string)
}

/// PAI image sets with a `workspaceId`, and PAI dataset sets (not dataset
/// versions) with a `workspaceId`.
pub fn batch_of<K: LabelSetResource>(
    obj: &K,
    set: &ResolvedSet,
    secret: Option<&SecretRead>,
) -> Option<Batch> {
    let (listing, id, ws) = match &set.target {
        Target::PaiImage {
            image_id,
            workspace_id: Some(ws),
        } => (Listing::Images, image_id.clone(), ws.clone()),
        Target::PaiDataset { dataset_id } => (
            Listing::Datasets,
            dataset_id.clone(),
            dataset_workspace(obj)?,
        ),
        _ => return None,
    };
    let ns = obj.namespace().unwrap_or_default();
    let creds = match (&set.policy.credentials_ref, secret) {
        (Some(r), Some(s)) => format!("{}@{}", r.name, s.version),
        _ => "-".to_string(),
    };
    let place = crate::provider::location::location(set.provider, &set.region);
    Some(Batch {
        key: format!("{listing:?}|{ns}|{creds}|{place}|{ws}"),
        workspace: ws,
        listing,
        id,
    })
}

/// Sets that share a batch's listing, namespace, credentials name, region
/// and workspace, from the watch caches.
fn sets_on_workspace(ctx: &Ctx, ns: &str, set: &ResolvedSet, batch: &Batch) -> usize {
    let cred = set.policy.credentials_ref.as_ref().map(|r| r.name.as_str());
    let ws = Some(batch.workspace.as_str());
    let same = |spec: &dyn LabelSetSpec, o_ns: Option<String>, c: Option<&str>| {
        spec.provider() == Provider::Pai
            && spec.workspace_id() == ws
            && o_ns.as_deref() == Some(ns)
            && c == cred
            && spec.region().unwrap_or(&ctx.config.default_region) == set.region
    };
    // Runs once per snapshot, not per check: decoding every cached set
    // here is a few milliseconds at 10,000 sets.
    match batch.listing {
        Listing::Images => ctx
            .image_store
            .state()
            .iter()
            .filter_map(|o| o.object().ok())
            .filter(|o| {
                same(
                    &o.spec,
                    o.namespace(),
                    o.spec.credentials_ref.as_ref().map(|r| r.name.as_str()),
                )
            })
            .count(),
        Listing::Datasets => ctx
            .dataset_store
            .state()
            .iter()
            .filter_map(|o| o.object().ok())
            .filter(|o| {
                o.spec.version.is_none()
                    && same(
                        &o.spec,
                        o.namespace(),
                        o.spec.credentials_ref.as_ref().map(|r| r.name.as_str()),
                    )
            })
            .count(),
    }
}

/// A drift check answered from a workspace snapshot: when the snapshot
/// holds the object, the plan from its labels is empty and the status would
/// not change, the check is done (no per-object read, no write) and the
/// next one is due at the workspace's next pass
/// ([`super::snapshots::next_pass`]), so all sets of the workspace come
/// due together. `None`: read the object as usual.
pub async fn quiet_from_snapshot<K: LabelSetResource>(
    w: &StatusWriter<'_, K>,
    set: &ResolvedSet,
    req: &SyncRequest<'_>,
    provider: &dyn LabelProvider,
    batch: &Batch,
    resync: Duration,
) -> Option<Action> {
    let (obj, ctx) = (w.obj, w.ctx);
    let ws = batch.workspace.as_str();
    let listing = batch.listing;
    let page = move |n: u32, size: u32| match listing {
        Listing::Images => provider.list_workspace_images(ws, n, size),
        Listing::Datasets => provider.list_workspace_datasets(ws, n, size),
    };
    // The provider cannot list: nothing to batch.
    drop(page(1, 1)?);
    let ns = obj.namespace().unwrap_or_default();
    let read = move |n: u32| page(n, crate::provider::pai::list::PAGE_SIZE).expect("checked above");
    let answer = crate::provider::limiter::as_check(ctx.snapshots.answer(
        &batch.key,
        &batch.id,
        resync / 2,
        || sets_on_workspace(ctx, &ns, set, batch),
        &read,
        |pages| {
            ctx.metrics.snapshot_pages.inc_by(u64::from(pages));
        },
    ))
    .await?;
    let plan = plan_for(req, &answer.labels);
    if !plan.is_empty() {
        return None;
    }
    let report = SyncReport {
        owned: plan.owned_after.clone(),
        plan,
        labels_after: answer.labels.clone(),
        observed: answer.labels,
        applied: None,
    };
    let mut status = w.status.clone();
    settle(&mut status, w.generation, set, &report);
    if !w.unchanged(&status) {
        return None;
    }
    ctx.metrics.snapshot_answers.inc();
    ctx.metrics
        .drift_checks
        .get_or_create(&ReconcileLabels {
            kind: K::KIND.into(),
            result: "clean".into(),
        })
        .inc();
    count::<K>(ctx, "success");
    // A little jitter so a pass's checks do not all start in one instant.
    let due = super::snapshots::next_pass(answer.epoch, Instant::now(), resync)
        + resync.mul_f64(rand::rng().random_range(0.0..0.02));
    let wait = due
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    tracing::debug!(set = %set_key(obj), next_check_s = wait.as_secs_f64(), "drift check answered from a workspace snapshot");
    Some(ctx.again(&set_key(obj), wait))
}
