//! One view of both kinds for the reconciler.

use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::validate::FieldError;
use crate::api::{DatasetLabelSet, ImageLabelSet, LabelSetSpec, LabelSetStatus};
use crate::engine::{ResolvedSet, resolve_dataset, resolve_image};
use crate::plan::SetId;

use super::context::Ctx;
use kube::runtime::reflector::ObjectRef;

/// What the reconciler needs of either kind.
pub trait LabelSetResource:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    const KIND: &'static str;
    fn spec_view(&self) -> &dyn LabelSetSpec;
    fn resolve(&self, default_region: &str) -> Result<ResolvedSet, Vec<FieldError>>;
    fn status(&self) -> Option<&LabelSetStatus>;
    /// Queues a reconcile of another set of this kind.
    fn wake(ctx: &Ctx, r: ObjectRef<Self>);

    /// Conflict order: creation time, then `namespace/name`.
    fn set_id(&self) -> SetId {
        let created = self
            .meta()
            .creation_timestamp
            .as_ref()
            .map_or(i64::MAX, |t| t.0.as_second());
        SetId::new(
            created,
            format!(
                "{}/{}",
                self.namespace().unwrap_or_default(),
                self.name_any()
            ),
        )
    }
}

impl LabelSetResource for ImageLabelSet {
    const KIND: &'static str = "ImageLabelSet";
    fn spec_view(&self) -> &dyn LabelSetSpec {
        &self.spec
    }
    fn resolve(&self, default_region: &str) -> Result<ResolvedSet, Vec<FieldError>> {
        resolve_image(&self.spec, default_region)
    }
    fn status(&self) -> Option<&LabelSetStatus> {
        self.status.as_ref()
    }
    fn wake(ctx: &Ctx, r: ObjectRef<Self>) {
        // A closed channel means the controller is shutting down.
        let _ = ctx.wake_images.send(r);
    }
}

impl LabelSetResource for DatasetLabelSet {
    const KIND: &'static str = "DatasetLabelSet";
    fn spec_view(&self) -> &dyn LabelSetSpec {
        &self.spec
    }
    fn resolve(&self, default_region: &str) -> Result<ResolvedSet, Vec<FieldError>> {
        resolve_dataset(&self.spec, default_region)
    }
    fn status(&self) -> Option<&LabelSetStatus> {
        self.status.as_ref()
    }
    fn wake(ctx: &Ctx, r: ObjectRef<Self>) {
        let _ = ctx.wake_datasets.send(r);
    }
}
