//! What the reconciler needs of either kind beyond the shared model
//! ([`LabelSet`]): how to queue another set of the same kind.

use kube::runtime::reflector::ObjectRef;

pub use crate::api::LabelSet;
use crate::api::{DatasetLabelSet, ImageLabelSet};

use super::cached::Cached;
use super::context::Ctx;

pub trait LabelSetResource: LabelSet {
    /// Queues a reconcile of another set of this kind.
    fn wake(ctx: &Ctx, r: ObjectRef<Cached<Self>>);
}

impl LabelSetResource for ImageLabelSet {
    fn wake(ctx: &Ctx, r: ObjectRef<Cached<Self>>) {
        // A closed channel means the controller is shutting down.
        let _ = ctx.wake_images.send(r);
    }
}

impl LabelSetResource for DatasetLabelSet {
    fn wake(ctx: &Ctx, r: ObjectRef<Cached<Self>>) {
        let _ = ctx.wake_datasets.send(r);
    }
}
