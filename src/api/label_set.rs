//! One model of a label set, whichever its kind. The controller (through
//! `controller::resource::LabelSetResource`, which only adds how to queue a
//! set), the CLI (`cli::manifest::Manifest` carries a parsed document of
//! either kind) and the engine ask a set everything through these two
//! traits, implemented once for both kinds at the bottom of this file.

use kube::core::NamespaceResourceScope;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::spec::{
    DatasetLabelSet, DatasetLabelSetSpec, ImageLabelSet, ImageLabelSetSpec, Policy, Provider,
};
use super::status::LabelSetStatus;
use super::validate::FieldError;
use crate::engine::{ResolvedSet, resolve_dataset, resolve_image};
use crate::plan::SetId;

/// What the engine and the controller read of either spec besides its
/// target: where the object is, and how the set writes.
pub trait LabelSetSpec {
    fn provider(&self) -> Provider;
    /// `spec.region`; the operator's default region applies when unset.
    fn region(&self) -> Option<&str>;
    /// `spec.workspaceId`.
    fn workspace_id(&self) -> Option<&str>;
    fn policy(&self) -> Policy;
}

/// A label set of either kind, as the cluster stores it and as a manifest
/// declares it.
pub trait LabelSet:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// `ImageLabelSet` or `DatasetLabelSet`.
    const KIND: &'static str;
    fn spec_view(&self) -> &dyn LabelSetSpec;
    fn status(&self) -> Option<&LabelSetStatus>;
    /// Validates the spec and names its cloud object; every problem is
    /// reported with its field.
    fn resolve(&self, default_region: &str) -> Result<ResolvedSet, Vec<FieldError>>;

    /// `metadata.creationTimestamp` in seconds since the epoch; a set not
    /// created yet (a manifest without one) counts as the newest.
    fn created(&self) -> i64 {
        self.meta()
            .creation_timestamp
            .as_ref()
            .map_or(i64::MAX, |t| t.0.as_second())
    }

    /// The set's place in conflict resolution on its object: the older set
    /// wins; at the same second, the smaller `namespace/name`.
    fn set_id(&self) -> SetId {
        SetId::new(
            self.created(),
            format!(
                "{}/{}",
                self.namespace().unwrap_or_default(),
                self.name_any()
            ),
        )
    }
}

/// Both specs name the shared fields alike, so one body serves both.
macro_rules! label_set {
    ($kind:ty, $spec:ty, $resolve:path) => {
        impl LabelSetSpec for $spec {
            fn provider(&self) -> Provider {
                self.provider
            }
            fn region(&self) -> Option<&str> {
                self.region.as_deref()
            }
            fn workspace_id(&self) -> Option<&str> {
                self.workspace_id.as_deref()
            }
            fn policy(&self) -> Policy {
                Policy {
                    prune: self.prune,
                    deletion_policy: self.deletion_policy,
                    mode: self.mode,
                    credentials_ref: self.credentials_ref.clone(),
                    resync_interval: self.resync_interval.clone(),
                    ignore_keys: self.ignore_keys.clone(),
                    adopt: self.adopt,
                }
            }
        }

        impl LabelSet for $kind {
            const KIND: &'static str = stringify!($kind);
            fn spec_view(&self) -> &dyn LabelSetSpec {
                &self.spec
            }
            fn status(&self) -> Option<&LabelSetStatus> {
                self.status.as_ref()
            }
            fn resolve(&self, default_region: &str) -> Result<ResolvedSet, Vec<FieldError>> {
                $resolve(&self.spec, default_region)
            }
        }
    };
}

label_set!(ImageLabelSet, ImageLabelSetSpec, resolve_image);
label_set!(DatasetLabelSet, DatasetLabelSetSpec, resolve_dataset);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_the_crd_kinds() {
        assert_eq!(ImageLabelSet::KIND, ImageLabelSet::kind(&()));
        assert_eq!(DatasetLabelSet::KIND, DatasetLabelSet::kind(&()));
    }

    #[test]
    fn the_older_set_orders_first_and_an_uncreated_one_last() {
        let set = |name: &str, created: Option<&str>| {
            let mut s = ImageLabelSet::new(name, ImageLabelSetSpec::default());
            s.metadata.namespace = Some("ns".into());
            s.metadata.creation_timestamp = created
                .map(|t| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t.parse().unwrap()));
            s
        };
        let old = set("z", Some("2026-01-01T00:00:00Z"));
        let new = set("a", Some("2026-01-02T00:00:00Z"));
        let same_second = set("b", Some("2026-01-02T00:00:00Z"));
        let uncreated = set("a0", None);
        let mut ids = [&uncreated, &same_second, &new, &old].map(LabelSet::set_id);
        ids.sort();
        let names: Vec<&str> = ids.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["ns/z", "ns/a", "ns/b", "ns/a0"]);
    }
}
