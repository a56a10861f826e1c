//! The simulator as a [`LabelProvider`] without HTTP: the same store calls
//! (and so the same label rules and the IMS tag cap) the API handlers make,
//! at memory speed. For tests that run thousands of histories through the
//! engine, where signing and sockets add nothing but time; the HTTP path has
//! its own tests (`tests/sdk`, `tests/client_sim.rs`).

use futures::future::BoxFuture;

use super::Sim;
use super::store::{Store, StoreError};
use crate::provider::{
    CallLimits, CloudError, ErrorKind, LabelProvider, Labels, Target, WriteOutcome,
};
use crate::provider::{ims, pai};

/// Reads and writes labels straight on a [`Sim`]'s store.
#[derive(Clone)]
pub struct DirectProvider {
    sim: Sim,
}

impl DirectProvider {
    pub fn new(sim: Sim) -> Self {
        DirectProvider { sim }
    }
}

fn cloud_error(api: &'static str, e: StoreError) -> CloudError {
    let kind = match e {
        StoreError::ImageNotFound(_)
        | StoreError::DatasetNotFound(_)
        | StoreError::VersionNotFound { .. }
        | StoreError::ImsImageNotFound(_)
        | StoreError::TagNotFound(_) => ErrorKind::NotFound,
        StoreError::Invalid(_) | StoreError::TooManyTags(_) => ErrorKind::Invalid,
    };
    CloudError::new(kind, api, format!("{e:?}"))
}

impl DirectProvider {
    fn write(
        &self,
        api: &'static str,
        f: impl FnOnce(&mut Store) -> Result<(), StoreError>,
    ) -> Result<WriteOutcome, CloudError> {
        f(&mut self.sim.store()).map_err(|e| cloud_error(api, e))?;
        Ok(WriteOutcome::default())
    }
}

impl LabelProvider for DirectProvider {
    fn limits(&self, target: &Target) -> CallLimits {
        match target {
            Target::ImsImage { .. } => ims::CALL_LIMITS,
            _ => pai::call_limits(target),
        }
    }

    fn observe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Labels, CloudError>> {
        let found = self
            .sim
            .labels_of(target)
            .ok_or_else(|| CloudError::new(ErrorKind::NotFound, "Observe", target.to_string()));
        Box::pin(async move { found })
    }

    fn add<'a>(
        &'a self,
        target: &'a Target,
        labels: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        let out = match target {
            Target::PaiImage { image_id, .. } => {
                self.write("AddImageLabels", |s| s.add_image_labels(image_id, labels))
            }
            Target::PaiDataset { dataset_id } => self.write("CreateDatasetLabels", |s| {
                s.create_dataset_labels(dataset_id, labels)
            }),
            Target::PaiDatasetVersion {
                dataset_id,
                version,
            } => self.write("CreateDatasetVersionLabels", |s| {
                s.create_version_labels(dataset_id, version, labels)
            }),
            Target::ImsImage {
                project_id,
                image_id,
            } => {
                let tags: Vec<_> = labels
                    .iter()
                    .map(|(k, v)| (k.clone(), Some(v.clone())))
                    .collect();
                self.write("BatchAddOrDeleteTags", |s| {
                    s.ims_create_tags(project_id, image_id, &tags)
                })
            }
        };
        Box::pin(async move { out })
    }

    fn remove<'a>(
        &'a self,
        target: &'a Target,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        let out = match target {
            Target::PaiImage { image_id, .. } => self.write("RemoveImageLabels", |s| {
                keys.iter()
                    .try_for_each(|k| s.remove_image_label(image_id, k))
            }),
            Target::PaiDataset { dataset_id } => self.write("DeleteDatasetLabels", |s| {
                s.delete_dataset_labels(dataset_id, keys)
            }),
            Target::PaiDatasetVersion {
                dataset_id,
                version,
            } => self.write("DeleteDatasetVersionLabels", |s| {
                s.delete_version_labels(dataset_id, version, keys)
            }),
            Target::ImsImage {
                project_id,
                image_id,
            } => {
                let tags: Vec<_> = keys.iter().map(|k| (k.clone(), None)).collect();
                self.write("BatchAddOrDeleteTags", |s| {
                    s.ims_delete_tags(project_id, image_id, &tags)
                })
            }
        };
        Box::pin(async move { out })
    }
}
