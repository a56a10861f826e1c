//! The engine shared by the CLI and the controller: turn a resource into a
//! plan input, and carry a plan out against a provider (adds before removes,
//! batched by the provider's call limits).

use std::collections::BTreeSet;

use crate::api::DeletionPolicy;
use crate::api::validate::{FieldError, validate_dataset_spec, validate_image_spec};
use crate::api::{DatasetLabelSetSpec, ImageLabelSetSpec, LabelSetSpec, Policy, Provider};
use crate::plan::{Claim, KeyMatcher, Labels, Plan, PlanInput, SetId};
use crate::provider::{CallLimits, CloudError, LabelProvider, Target};

/// Keys each cloud sets itself; never written or removed by any set. PAI:
/// the prefixes CreateDatasetLabels forbids to callers (docs/cloud-rules.md),
/// which only the cloud can have set.
pub fn reserved_patterns(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Pai => &["acs*", "aliyun*", "http://*", "https://*"],
        Provider::HuaweicloudIms => &["_sys_*"],
    }
}

/// A validated set, ready for planning.
#[derive(Clone, Debug)]
pub struct ResolvedSet {
    pub provider: Provider,
    pub region: String,
    pub target: Target,
    pub desired: Labels,
    pub policy: Policy,
    /// `spec.ignoreKeys` plus the provider's reserved patterns.
    pub protected: KeyMatcher,
}

impl ResolvedSet {
    /// Identity of the cloud object, shared by every set that targets it:
    /// where requests really go (region, or the endpoint override), so an
    /// override and a region never make two keys for one object.
    pub fn object_key(&self) -> String {
        let place = crate::provider::location::location(self.provider, &self.region);
        self.target.object_key(&place)
    }

    /// The target as the spec names it (region included), as `status.target`
    /// records it; an endpoint override does not change it.
    pub fn target_key(&self) -> String {
        self.target.object_key(&self.region)
    }
}

fn protected_keys(provider: Provider, policy: &Policy) -> Result<KeyMatcher, Vec<FieldError>> {
    // Building a glob set takes tens of microseconds; with no ignoreKeys
    // (nearly every set) it is the provider's, built once. In a start-up
    // profile (2,000 sets) the rebuilds were a fifth of the operator's CPU.
    if policy.ignore_keys.is_empty() {
        static RESERVED: std::sync::OnceLock<[KeyMatcher; 2]> = std::sync::OnceLock::new();
        let [pai, ims] = RESERVED.get_or_init(|| {
            [Provider::Pai, Provider::HuaweicloudIms].map(|p| {
                KeyMatcher::new(reserved_patterns(p)).expect("reserved patterns are valid globs")
            })
        });
        return Ok(match provider {
            Provider::Pai => pai.clone(),
            Provider::HuaweicloudIms => ims.clone(),
        });
    }
    let patterns = reserved_patterns(provider)
        .iter()
        .map(|p| p.to_string())
        .chain(policy.ignore_keys.iter().cloned());
    KeyMatcher::new(patterns).map_err(|e| {
        vec![FieldError {
            field: "spec.ignoreKeys".into(),
            message: e.to_string(),
        }]
    })
}

fn region_of(spec: &dyn LabelSetSpec, default_region: &str) -> String {
    spec.region().unwrap_or(default_region).to_string()
}

pub fn resolve_image(
    spec: &ImageLabelSetSpec,
    default_region: &str,
) -> Result<ResolvedSet, Vec<FieldError>> {
    validate_image_spec(spec)?;
    let target = match spec.provider {
        Provider::Pai => Target::PaiImage {
            image_id: spec.image_id.clone(),
            workspace_id: spec.workspace_id.clone(),
        },
        Provider::HuaweicloudIms => Target::ImsImage {
            // validate_image_spec guarantees the project id for ims.
            project_id: spec.project_id.clone().unwrap_or_default(),
            image_id: spec.image_id.clone(),
        },
    };
    Ok(ResolvedSet {
        provider: spec.provider,
        region: region_of(spec, default_region),
        target,
        desired: spec.labels.clone(),
        policy: spec.policy(),
        protected: protected_keys(spec.provider, &spec.policy())?,
    })
}

pub fn resolve_dataset(
    spec: &DatasetLabelSetSpec,
    default_region: &str,
) -> Result<ResolvedSet, Vec<FieldError>> {
    validate_dataset_spec(spec)?;
    let target = match &spec.version {
        Some(version) => Target::PaiDatasetVersion {
            dataset_id: spec.dataset_id.clone(),
            version: version.clone(),
        },
        None => Target::PaiDataset {
            dataset_id: spec.dataset_id.clone(),
        },
    };
    Ok(ResolvedSet {
        provider: spec.provider,
        region: region_of(spec, default_region),
        target,
        desired: spec.labels.clone(),
        policy: spec.policy(),
        protected: protected_keys(spec.provider, &spec.policy())?,
    })
}

/// Why a plan cannot be carried out, known before any write.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LimitExceeded(pub String);

/// In which order the writes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The default: the object never holds fewer labels than either declaration.
    AddsFirst,
    /// Only when the cloud caps the label count and adding first would pass
    /// the cap although the end state fits.
    RemovesFirst,
}

/// Checks a plan against the object's label cap before any write.
pub fn check_limits(
    observed: &Labels,
    plan: &Plan,
    limits: &CallLimits,
    provider: Provider,
) -> Result<Order, LimitExceeded> {
    let Some(max) = limits.max_labels_on_object else {
        return Ok(Order::AddsFirst);
    };
    let end = plan.result_of(observed).len();
    if end > max {
        let new_keys = plan
            .add
            .keys()
            .filter(|k| !observed.contains_key(*k))
            .count();
        return Err(LimitExceeded(format!(
            "applying would leave {end} labels on the object ({} there now, {new_keys} new, {} removed); {provider} allows at most {max} — \
             drop keys from spec.labels or remove other labels from the object",
            observed.len(),
            plan.remove.len()
        )));
    }
    let peak = observed.len()
        + plan
            .add
            .keys()
            .filter(|k| !observed.contains_key(*k))
            .count();
    Ok(if peak > max {
        Order::RemovesFirst
    } else {
        Order::AddsFirst
    })
}

/// What a plan execution did, also when it stopped half-way.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    pub added: Labels,
    pub removed: BTreeSet<String>,
    pub calls: usize,
    pub last_request_id: Option<String>,
    pub error: Option<CloudError>,
}

impl Applied {
    pub fn is_complete(&self) -> bool {
        self.error.is_none()
    }
}

/// Carries out a plan: adds first (unless the cap forbids), batched by the
/// provider's limits. Stops at the first failed call and reports what was done.
pub async fn execute(
    provider: &dyn LabelProvider,
    target: &Target,
    plan: &Plan,
    order: Order,
) -> Applied {
    let limits = provider.limits(target);
    let mut applied = Applied::default();
    let steps: [Step; 2] = match order {
        Order::AddsFirst => [Step::Add, Step::Remove],
        Order::RemovesFirst => [Step::Remove, Step::Add],
    };
    for step in steps {
        let batches: Vec<Vec<(String, String)>> = match step {
            Step::Add => plan.add_batches(limits.add_per_call),
            // Removes carry only keys; an empty value keeps one batch shape.
            Step::Remove => plan
                .remove_batches(limits.remove_per_call)
                .into_iter()
                .map(|b| b.into_iter().map(|k| (k, String::new())).collect())
                .collect(),
        };
        for batch in batches {
            applied.calls += 1;
            let result = match step {
                Step::Add => provider.add(target, &batch).await,
                Step::Remove => {
                    let keys: Vec<String> = batch.iter().map(|(k, _)| k.clone()).collect();
                    provider.remove(target, &keys).await
                }
            };
            match result {
                Ok(out) => {
                    applied.last_request_id = out.request_id.or(applied.last_request_id.take());
                    match step {
                        Step::Add => applied.added.extend(batch),
                        Step::Remove => applied.removed.extend(batch.into_iter().map(|(k, _)| k)),
                    }
                }
                Err(e) => {
                    applied.error = Some(e);
                    return applied;
                }
            }
        }
    }
    applied
}

#[derive(Clone, Copy)]
enum Step {
    Add,
    Remove,
}

/// One pass over one set: observe, plan, check, and (unless dry-run) write.
pub struct SyncRequest<'a> {
    pub set: &'a ResolvedSet,
    pub id: &'a SetId,
    pub owned: &'a BTreeSet<String>,
    pub claims: &'a [Claim],
    pub held: &'a BTreeSet<String>,
    pub deleting: Option<DeletionPolicy>,
    /// Plan only, never write (the CLI's `plan`).
    pub dry_run: bool,
}

/// Why a pass stopped.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SyncError {
    #[error("reading the labels: {0}")]
    Observe(CloudError),
    #[error("{0}")]
    Limit(#[from] LimitExceeded),
    #[error("recording ownership before the write: {0}")]
    Ownership(String),
    #[error("writing the labels: {0}")]
    Write(CloudError),
}

/// What a pass saw and did.
#[derive(Clone, Debug, Default)]
pub struct SyncReport {
    pub observed: Labels,
    pub plan: Plan,
    pub applied: Option<Applied>,
    /// Ownership to record after the pass (write-ahead set when a write failed).
    pub owned: BTreeSet<String>,
    /// The object's labels after the pass, as far as we know.
    pub labels_after: Labels,
}

impl SyncReport {
    /// Each key the plan writes, with its value before (`None`: a new key)
    /// and after; the status message and the CLI's plan both show these.
    pub fn writes(&self) -> impl Iterator<Item = (&String, Option<&String>, &String)> {
        self.plan
            .add
            .iter()
            .map(|(k, v)| (k, self.observed.get(k), v))
    }
}

/// Reads the object and plans; writes nothing. Fails on a read error or when
/// the plan would break the object's label cap.
pub async fn observe_and_plan(
    provider: &dyn LabelProvider,
    req: &SyncRequest<'_>,
) -> Result<SyncReport, (SyncReport, SyncError)> {
    let mut report = SyncReport {
        owned: req.owned.clone(),
        ..Default::default()
    };
    report.observed = match provider.observe(&req.set.target).await {
        Ok(o) => o,
        Err(e) => return Err((report, SyncError::Observe(e))),
    };
    report.plan = plan_for(req, &report.observed);
    report.labels_after = report.observed.clone();
    if let Err(e) = check_limits(
        &report.observed,
        &report.plan,
        &provider.limits(&req.set.target),
        req.set.provider,
    ) {
        return Err((report, e.into()));
    }
    Ok(report)
}

/// The pure plan for a request against observed labels.
pub fn plan_for(req: &SyncRequest<'_>, observed: &Labels) -> Plan {
    crate::plan::plan(&PlanInput {
        set: req.id,
        desired: &req.set.desired,
        observed,
        owned: req.owned,
        prune: req.set.policy.prune,
        mode: req.set.policy.mode,
        deleting: req.deleting,
        protected: &req.set.protected,
        claims: req.claims,
        held: req.held,
        adopt: req.set.policy.adopt,
    })
}

/// Carries out a planned report: records write-ahead ownership through
/// `record_ownership` before the first write, then writes.
pub async fn carry_out<F, Fut>(
    provider: &dyn LabelProvider,
    set: &ResolvedSet,
    mut report: SyncReport,
    record_ownership: F,
) -> Result<SyncReport, (SyncReport, SyncError)>
where
    F: FnOnce(BTreeSet<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    if report.plan.is_empty() {
        report.owned = report.plan.owned_after.clone();
        return Ok(report);
    }
    let order = match check_limits(
        &report.observed,
        &report.plan,
        &provider.limits(&set.target),
        set.provider,
    ) {
        Ok(order) => order,
        Err(e) => return Err((report, e.into())),
    };
    if report.plan.owned_before_write != report.owned
        && let Err(e) = record_ownership(report.plan.owned_before_write.clone()).await
    {
        return Err((report, SyncError::Ownership(e)));
    }
    let applied = execute(provider, &set.target, &report.plan, order).await;
    for k in &applied.removed {
        report.labels_after.remove(k);
    }
    report
        .labels_after
        .extend(applied.added.iter().map(|(k, v)| (k.clone(), v.clone())));
    let error = applied.error.clone();
    report.owned = match error {
        None => report.plan.owned_after.clone(),
        Some(_) => report
            .plan
            .owned_before_write
            .iter()
            .filter(|k| !applied.removed.contains(*k))
            .cloned()
            .collect(),
    };
    report.applied = Some(applied);
    match error {
        None => Ok(report),
        Some(e) => Err((report, SyncError::Write(e))),
    }
}

/// One whole pass (the CLI's): observe, plan, and unless dry-run, write.
pub async fn sync<F, Fut>(
    provider: &dyn LabelProvider,
    req: SyncRequest<'_>,
    record_ownership: F,
) -> Result<SyncReport, (SyncReport, SyncError)>
where
    F: FnOnce(BTreeSet<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let report = observe_and_plan(provider, &req).await?;
    if req.dry_run {
        return Ok(report);
    }
    carry_out(provider, req.set, report, record_ownership).await
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
