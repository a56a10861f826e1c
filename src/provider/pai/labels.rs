//! PAI as a [`LabelProvider`]: which API reads and writes each target
//! kind, and how many labels or keys one call may carry.

use futures::future::BoxFuture;

use super::{
    ListImageLabelsRequest, MAX_ADD_LABELS, MAX_DATASET_REMOVE_KEYS, PaiClient, list, parse_labels,
    to_map, wrong_target,
};
use crate::provider::{
    CallLimits, CloudError, ErrorKind, LabelProvider, Labels, Target, WriteOutcome,
};

impl PaiClient {
    async fn observe_target(&self, target: &Target) -> Result<Labels, CloudError> {
        match target {
            Target::PaiImage {
                image_id,
                workspace_id,
            } => {
                let req = ListImageLabelsRequest {
                    image_id: Some(image_id.clone()),
                    workspace_id: workspace_id.clone(),
                    ..Default::default()
                };
                let resp = self.list_image_labels(&req).await?;
                if resp.labels.is_empty() {
                    // A filter on an unknown image may well answer with an
                    // empty list; tell "no labels" from "no image".
                    self.get_image(image_id, None).await?;
                }
                Ok(to_map(resp.labels))
            }
            Target::PaiDataset { dataset_id } => Ok(to_map(parse_labels(
                self.get_dataset(dataset_id).await?.body.get("Labels"),
            ))),
            Target::PaiDatasetVersion {
                dataset_id,
                version,
            } => Ok(to_map(parse_labels(
                self.get_dataset_version(dataset_id, version)
                    .await?
                    .body
                    .get("Labels"),
            ))),
            Target::ImsImage { .. } => Err(wrong_target("ListImageLabels", target)),
        }
    }

    async fn add_target(
        &self,
        target: &Target,
        labels: &[(String, String)],
    ) -> Result<WriteOutcome, CloudError> {
        let mut out = WriteOutcome::default();
        // The engine batches by `limits`; chunking again keeps a larger
        // batch from becoming an API error.
        for chunk in labels.chunks(MAX_ADD_LABELS) {
            out = match target {
                Target::PaiImage { image_id, .. } => self.add_image_labels(image_id, chunk).await?,
                Target::PaiDataset { dataset_id } => {
                    self.create_dataset_labels(dataset_id, chunk).await?
                }
                Target::PaiDatasetVersion {
                    dataset_id,
                    version,
                } => {
                    self.create_dataset_version_labels(dataset_id, version, chunk)
                        .await?
                }
                Target::ImsImage { .. } => return Err(wrong_target("AddImageLabels", target)),
            };
        }
        Ok(out)
    }

    async fn remove_target(
        &self,
        target: &Target,
        keys: &[String],
    ) -> Result<WriteOutcome, CloudError> {
        let mut out = WriteOutcome::default();
        let chunk_size = if matches!(target, Target::PaiImage { .. }) {
            1
        } else {
            MAX_DATASET_REMOVE_KEYS
        };
        for chunk in keys.chunks(chunk_size) {
            let result = match target {
                Target::PaiImage { image_id, .. } => {
                    self.remove_image_label(image_id, &chunk[0]).await
                }
                Target::PaiDataset { dataset_id } => {
                    self.delete_dataset_labels(dataset_id, chunk).await
                }
                Target::PaiDatasetVersion {
                    dataset_id,
                    version,
                } => {
                    self.delete_dataset_version_labels(dataset_id, version, chunk)
                        .await
                }
                Target::ImsImage { .. } => return Err(wrong_target("RemoveImageLabels", target)),
            };
            out = match result {
                Ok(o) => o,
                // Removing what is not there (label or object) leaves the
                // object without the key, which is what was asked.
                Err(e) if e.kind == ErrorKind::NotFound => WriteOutcome {
                    request_id: e.request_id,
                },
                Err(e) => return Err(e),
            };
        }
        Ok(out)
    }
}

/// What one PAI call may carry, per target kind.
pub fn call_limits(target: &Target) -> CallLimits {
    match target {
        Target::PaiImage { .. } => CallLimits {
            add_per_call: MAX_ADD_LABELS,
            remove_per_call: 1,
            max_labels_on_object: None,
        },
        _ => CallLimits {
            add_per_call: MAX_ADD_LABELS,
            remove_per_call: MAX_DATASET_REMOVE_KEYS,
            max_labels_on_object: None,
        },
    }
}

impl LabelProvider for PaiClient {
    fn limits(&self, target: &Target) -> CallLimits {
        call_limits(target)
    }

    fn observe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Labels, CloudError>> {
        Box::pin(self.observe_target(target))
    }

    fn add<'a>(
        &'a self,
        target: &'a Target,
        labels: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        Box::pin(self.add_target(target, labels))
    }

    fn remove<'a>(
        &'a self,
        target: &'a Target,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        Box::pin(self.remove_target(target, keys))
    }

    fn list_workspace_images<'a>(
        &'a self,
        workspace_id: &'a str,
        page_number: u32,
        page_size: u32,
    ) -> Option<BoxFuture<'a, Result<list::Page, CloudError>>> {
        Some(Box::pin(async move {
            let filter = list::ImageFilter {
                workspace_id: Some(workspace_id.to_string()),
                ..Default::default()
            };
            self.list_images_page(&filter, page_number, page_size).await
        }))
    }

    fn list_workspace_datasets<'a>(
        &'a self,
        workspace_id: &'a str,
        page_number: u32,
        page_size: u32,
    ) -> Option<BoxFuture<'a, Result<list::Page, CloudError>>> {
        Some(Box::pin(self.list_datasets_page(
            Some(workspace_id),
            page_number,
            page_size,
        )))
    }
}
