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

impl SyncError {
    pub fn cloud(&self) -> Option<&CloudError> {
        match self {
            SyncError::Observe(e) | SyncError::Write(e) => Some(e),
            _ => None,
        }
    }
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
mod tests {
    use std::sync::Mutex;

    use futures::future::BoxFuture;

    use super::*;

    use crate::provider::{ErrorKind, WriteOutcome};

    #[test]
    fn the_shared_reserved_matcher_matches_as_a_fresh_one() {
        for provider in [Provider::Pai, Provider::HuaweicloudIms] {
            let shared = protected_keys(provider, &Policy::default()).unwrap();
            let fresh = KeyMatcher::new(reserved_patterns(provider)).unwrap();
            for key in [
                "acs:x",
                "aliyun.a",
                "https://k",
                "_sys_k",
                "system.a",
                "team",
            ] {
                assert_eq!(
                    shared.matches(key),
                    fresh.matches(key),
                    "{provider:?} {key}"
                );
            }
        }
        let ignoring = Policy {
            ignore_keys: vec!["team*".into()],
            ..Default::default()
        };
        assert!(
            protected_keys(Provider::Pai, &ignoring)
                .unwrap()
                .matches("team")
        );
        assert!(
            !protected_keys(Provider::Pai, &Policy::default())
                .unwrap()
                .matches("team")
        );
    }

    /// Records calls and keeps labels in memory; fails the n-th call when asked.
    struct Recorder {
        labels: Mutex<Labels>,
        calls: Mutex<Vec<String>>,
        fail_at: Option<usize>,
        limits: CallLimits,
    }

    impl Recorder {
        fn new(labels: Labels, limits: CallLimits) -> Self {
            Recorder {
                labels: Mutex::new(labels),
                calls: Mutex::new(vec![]),
                fail_at: None,
                limits,
            }
        }
        fn call(&self, what: String) -> Result<WriteOutcome, CloudError> {
            let mut calls = self.calls.lock().unwrap();
            calls.push(what);
            if Some(calls.len()) == self.fail_at {
                return Err(CloudError::new(ErrorKind::Server, "Test", "boom"));
            }
            Ok(WriteOutcome {
                request_id: Some(format!("req-{}", calls.len())),
            })
        }
    }

    impl LabelProvider for Recorder {
        fn limits(&self, _: &Target) -> CallLimits {
            self.limits
        }
        fn observe<'a>(&'a self, _: &'a Target) -> BoxFuture<'a, Result<Labels, CloudError>> {
            Box::pin(async move { Ok(self.labels.lock().unwrap().clone()) })
        }
        fn add<'a>(
            &'a self,
            _: &'a Target,
            labels: &'a [(String, String)],
        ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
            Box::pin(async move {
                let out = self.call(format!("add {}", labels.len()))?;
                let mut l = self.labels.lock().unwrap();
                let min_before = l.len();
                l.extend(labels.iter().cloned());
                assert!(l.len() >= min_before);
                Ok(out)
            })
        }
        fn remove<'a>(
            &'a self,
            _: &'a Target,
            keys: &'a [String],
        ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
            Box::pin(async move {
                let out = self.call(format!("remove {}", keys.len()))?;
                let mut l = self.labels.lock().unwrap();
                for k in keys {
                    l.remove(k);
                }
                Ok(out)
            })
        }
    }

    fn target() -> Target {
        Target::PaiImage {
            image_id: "image-1".into(),
            workspace_id: None,
        }
    }

    fn plan_of(add: &[(&str, &str)], remove: &[&str]) -> Plan {
        Plan {
            add: add
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            remove: remove.iter().map(|k| k.to_string()).collect(),
            ..Default::default()
        }
    }

    const PAI: CallLimits = CallLimits {
        add_per_call: 2,
        remove_per_call: 1,
        max_labels_on_object: None,
    };

    #[tokio::test]
    async fn adds_go_first_in_batches() {
        let p = Recorder::new(Labels::new(), PAI);
        let plan = plan_of(&[("a", "1"), ("b", "1"), ("c", "1")], &["x", "y"]);
        let applied = execute(&p, &target(), &plan, Order::AddsFirst).await;
        assert!(applied.is_complete());
        assert_eq!(
            *p.calls.lock().unwrap(),
            vec!["add 2", "add 1", "remove 1", "remove 1"]
        );
        assert_eq!(applied.last_request_id.as_deref(), Some("req-4"));
    }

    #[tokio::test]
    async fn stops_at_the_first_failure_and_reports_progress() {
        let mut p = Recorder::new(Labels::new(), PAI);
        p.fail_at = Some(2);
        let plan = plan_of(&[("a", "1"), ("b", "1"), ("c", "1")], &["x"]);
        let applied = execute(&p, &target(), &plan, Order::AddsFirst).await;
        assert_eq!(applied.added.len(), 2);
        assert!(applied.removed.is_empty(), "no remove after a failed add");
        assert_eq!(applied.error.unwrap().kind, ErrorKind::Server);
    }

    #[test]
    fn cap_is_checked_before_any_write() {
        let ims = CallLimits {
            add_per_call: 10,
            remove_per_call: 10,
            max_labels_on_object: Some(3),
        };
        let observed: Labels = [("a", "1"), ("b", "1"), ("c", "1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let err = check_limits(
            &observed,
            &plan_of(&[("d", "1")], &[]),
            &ims,
            Provider::HuaweicloudIms,
        )
        .unwrap_err();
        assert!(err.0.contains("at most 3"), "{}", err.0);
        assert_eq!(
            check_limits(
                &observed,
                &plan_of(&[("d", "1")], &["a"]),
                &ims,
                Provider::HuaweicloudIms
            ),
            Ok(Order::RemovesFirst)
        );
        assert_eq!(
            check_limits(
                &observed,
                &plan_of(&[("a", "2")], &[]),
                &ims,
                Provider::HuaweicloudIms
            ),
            Ok(Order::AddsFirst)
        );
    }

    #[test]
    fn resolve_names_every_bad_field() {
        let spec = ImageLabelSetSpec {
            image_id: "".into(),
            labels: [("team".to_string(), "x".to_string())].into(),
            ..Default::default()
        };
        let errs = resolve_image(&spec, "cn-shanghai").unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"spec.imageId"));
        assert!(fields.contains(&"spec.labels[\"team\"]"));
    }

    #[test]
    fn resolve_adds_reserved_patterns() {
        let spec = ImageLabelSetSpec {
            image_id: "image-1".into(),
            ..Default::default()
        };
        let set = resolve_image(&spec, "cn-hangzhou").unwrap();
        assert!(set.protected.matches("acs:ack"));
        assert_eq!(set.region, "cn-hangzhou");
        assert_eq!(set.object_key(), "pai/cn-hangzhou/image/image-1");
    }
}
