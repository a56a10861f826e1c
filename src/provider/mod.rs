//! Cloud clients behind one small trait. A provider only knows how to read a
//! target's labels and make the calls; batching, ordering (adds before
//! removes) and ownership live in [`crate::engine`] and [`crate::plan`].

use std::collections::BTreeMap;
use std::fmt;

use futures::future::BoxFuture;

mod access;
pub mod account;
pub mod acs_error;
pub mod body;
pub mod credentials;
mod error;
pub mod http;
pub mod ims;
pub mod limiter;
pub mod location;
pub mod pai;
pub mod region;
pub mod registry;
mod request;
pub mod retry;
#[cfg(test)]
pub(crate) mod testsupport;

pub use access::AccessError;
pub use error::{CloudError, ErrorKind};

/// What a set points at, with everything the cloud call needs to find it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    PaiImage {
        image_id: String,
        workspace_id: Option<String>,
    },
    PaiDataset {
        dataset_id: String,
    },
    PaiDatasetVersion {
        dataset_id: String,
        version: String,
    },
    ImsImage {
        project_id: String,
        image_id: String,
    },
}

impl Target {
    /// Identity of the cloud object, used to find other sets on the same object.
    /// The workspace is a filter on PAI list calls, not part of an image's identity.
    /// `region` is the place requests go: see [`location`] (`ResolvedSet::object_key`).
    pub fn object_key(&self, region: &str) -> String {
        match self {
            Target::PaiImage { image_id, .. } => format!("pai/{region}/image/{image_id}"),
            Target::PaiDataset { dataset_id } => format!("pai/{region}/dataset/{dataset_id}"),
            Target::PaiDatasetVersion {
                dataset_id,
                version,
            } => format!("pai/{region}/dataset/{dataset_id}/version/{version}"),
            Target::ImsImage {
                project_id,
                image_id,
            } => format!("huaweicloud-ims/{region}/{project_id}/image/{image_id}"),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::PaiImage { image_id, .. } => write!(f, "image {image_id}"),
            Target::PaiDataset { dataset_id } => write!(f, "dataset {dataset_id}"),
            Target::PaiDatasetVersion {
                dataset_id,
                version,
            } => write!(f, "dataset {dataset_id} version {version}"),
            Target::ImsImage { image_id, .. } => write!(f, "image {image_id}"),
        }
    }
}

/// Labels as the cloud reports them.
pub type Labels = BTreeMap<String, String>;

/// Call-size limits of one provider and target kind; the engine batches by them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallLimits {
    /// Labels one add call may carry.
    pub add_per_call: usize,
    /// Keys one remove call may carry.
    pub remove_per_call: usize,
    /// Labels the object may hold at once, when the cloud caps it.
    pub max_labels_on_object: Option<usize>,
}

/// Result of a write call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The cloud's request id, for support tickets.
    pub request_id: Option<String>,
}

/// One object of a list answer (PAI ListImages, ListDatasets, ListDatasetVersions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Image ID, dataset ID, or version name.
    pub id: String,
    pub name: String,
    pub workspace_id: Option<String>,
    pub labels: Labels,
}

/// One page and the total the cloud reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Listed>,
    pub total_count: Option<u64>,
}

/// One cloud account in one region, able to read and write labels.
pub trait LabelProvider: Send + Sync {
    /// Limits the engine batches by, for this target.
    fn limits(&self, target: &Target) -> CallLimits;

    /// The target's current labels.
    fn observe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Labels, CloudError>>;

    /// Adds or overwrites labels; `labels.len() <= limits().add_per_call`.
    fn add<'a>(
        &'a self,
        target: &'a Target,
        labels: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>>;

    /// Removes keys; `keys.len() <= limits().remove_per_call`. Removing a missing key succeeds.
    fn remove<'a>(
        &'a self,
        target: &'a Target,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>>;

    /// One page (from 1) of a PAI workspace's images with their labels
    /// (ListImages, `Verbose=true`), for batched drift checks; `None` when
    /// the provider cannot list a workspace.
    fn list_workspace_images<'a>(
        &'a self,
        _workspace_id: &'a str,
        _page_number: u32,
        _page_size: u32,
    ) -> Option<BoxFuture<'a, Result<Page, CloudError>>> {
        None
    }

    /// As [`Self::list_workspace_images`] for datasets (ListDatasets, which
    /// carries each dataset's labels).
    fn list_workspace_datasets<'a>(
        &'a self,
        _workspace_id: &'a str,
        _page_number: u32,
        _page_size: u32,
    ) -> Option<BoxFuture<'a, Result<Page, CloudError>>> {
        None
    }
}
