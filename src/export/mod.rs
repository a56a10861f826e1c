//! `imagelabel export`: read what the clouds already hold with their list
//! calls and write it as reviewable manifests, one set per object, so a
//! team can bring existing labels under management (with `adopt: true`,
//! without a single write).
//!
//! Reading ([`read`]) pages the cheapest list calls: PAI `ListImages` with
//! `Verbose=true` (labels included) and `ListDatasets` per workspace, one
//! `ListDatasetVersions` per dataset, IMS `ListImages` per project plus one
//! `ListImageTags` per image (see `provider::ims::list` for why). Rendering
//! ([`render`]) is pure, so the same cloud always gives the same bytes.

mod read;
mod render;

pub use read::{ExportQuery, Filters, read};
pub use render::{ExportOptions, File, render};

use crate::plan::Labels;

/// What an object is, with the IDs its set needs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Object {
    PaiImage {
        workspace_id: String,
        image_id: String,
    },
    PaiDataset {
        workspace_id: String,
        dataset_id: String,
    },
    PaiDatasetVersion {
        workspace_id: String,
        dataset_id: String,
        version: String,
    },
    ImsImage {
        project_id: String,
        image_id: String,
    },
}

/// One object read from the cloud, with every label it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub object: Object,
    /// The cloud's display name (empty when it has none).
    pub name: String,
    pub region: String,
    pub labels: Labels,
}
