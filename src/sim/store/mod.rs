//! The simulated clouds' objects and their label rules. Every mutating call
//! checks all its input first and then applies it whole, as the real APIs
//! answer a request with one status.
//!
//! The label rules themselves are `crate::api::rules` (shared with the
//! operator's validation, each with its documentation link); this module adds
//! the per-request and per-object counts and the simulator's choices where
//! the clouds document none:
//! - PAI image labels: 1–100 labels per AddImageLabels (seed documents); an
//!   existing key is overwritten; removing a missing key succeeds.
//! - PAI dataset and dataset-version labels: 1–100 labels a request;
//!   deleting missing keys succeeds.
//! - IMS tags: value present (may be empty); at most 10 tags per image after
//!   the request; keys unique in one batch; batch delete checks only key
//!   1–127 and value ≤ 255 and removes by key
//!   (<https://support.huaweicloud.com/api-ims/ims_03_0617.html>);
//!   DeleteImageTag of a missing key is 404
//!   (<https://support.huaweicloud.com/api-ims/ims_03_0619.html>).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::seed::{DatasetSeed, ImsImageSeed, PaiImageSeed, SeedConfig};
use crate::api::rules::{IMS_RULES, LabelRules, PAI_DATASET_RULES, PAI_IMAGE_RULES};

pub type Labels = BTreeMap<String, String>;

pub const PAI_MAX_LABELS_PER_CALL: usize = PAI_IMAGE_RULES.max_labels;

pub const IMS_MAX_TAGS: usize = IMS_RULES.max_labels;
pub const IMS_DELETE_MAX_KEY_CHARS: usize = 127;
pub const IMS_DELETE_MAX_VALUE_CHARS: usize = 255;

/// Why a store call failed; the API modules turn it into their wire errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    ImageNotFound(String),
    DatasetNotFound(String),
    VersionNotFound {
        dataset_id: String,
        version: String,
    },
    ImsImageNotFound(String),
    /// A parameter broke a rule; the message names it.
    Invalid(String),
    /// IMS: the image would hold more than 10 tags.
    TooManyTags(String),
    /// IMS DeleteImageTag: the image has no tag with this key.
    TagNotFound(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaiImage {
    pub name: String,
    pub workspace_id: Option<String>,
    pub labels: Labels,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dataset {
    pub name: String,
    pub workspace_id: Option<String>,
    pub labels: Labels,
    pub versions: BTreeMap<String, Labels>,
}

/// The whole state; also the JSON of `GET /_sim/state`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Store {
    pub pai_images: BTreeMap<String, PaiImage>,
    pub pai_datasets: BTreeMap<String, Dataset>,
    /// project id → image id → tags.
    pub ims_images: BTreeMap<String, BTreeMap<String, Labels>>,
    /// Keys AddImageLabels accepts beyond the documented list.
    #[serde(skip)]
    pub extra_pai_image_keys: BTreeSet<String>,
}

/// Filters of ListImageLabels / ListImages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageQuery {
    pub image_id: Option<String>,
    pub workspace_id: Option<String>,
    /// Only these keys are returned (ListImageLabels `LabelKeys`).
    pub label_keys: Option<Vec<String>>,
    /// Only images carrying all of these pairs.
    pub label_filter: Vec<(String, String)>,
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Parses `k=v,k2=v2` (LabelFilter, ListImages `Labels`). A pair without `=`
/// is a parameter error, not silently a key-only filter.
pub fn parse_label_filter(raw: &str) -> Result<Vec<(String, String)>, StoreError> {
    raw.split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(StoreError::Invalid(format!(
                "LabelFilter: {pair:?} is not key=value"
            ))),
        })
        .collect()
}

/// Splits a comma-separated key list, dropping empty items.
pub fn split_keys(raw: &str) -> Vec<String> {
    raw.split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

/// The first rule a label breaks, as the API's parameter error.
fn first_violation(
    rules: &LabelRules,
    key: &str,
    value: &str,
    extra_keys: &BTreeSet<String>,
    key_field: &str,
    value_field: &str,
) -> Result<(), StoreError> {
    match rules.check(key, value, extra_keys).first() {
        None => Ok(()),
        Some(v) => Err(StoreError::Invalid(format!(
            "{}: {key:?}: {v}",
            if v.is_value() { value_field } else { key_field }
        ))),
    }
}

fn check_pai_labels(
    labels: &[(String, String)],
    rules: &LabelRules,
    extra_keys: &BTreeSet<String>,
) -> Result<(), StoreError> {
    if labels.is_empty() {
        return Err(StoreError::Invalid(
            "Labels: at least one label is required".into(),
        ));
    }
    if labels.len() > rules.max_labels {
        return Err(StoreError::Invalid(format!(
            "Labels: at most {} labels per request, got {}",
            rules.max_labels,
            labels.len()
        )));
    }
    for (key, value) in labels {
        first_violation(rules, key, value, extra_keys, "Labels.Key", "Labels.Value")?;
    }
    Ok(())
}

fn check_keys(keys: &[String], field: &str) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Err(StoreError::Invalid(format!(
            "{field}: at least one key is required"
        )));
    }
    if keys.len() > PAI_MAX_LABELS_PER_CALL {
        return Err(StoreError::Invalid(format!(
            "{field}: at most {PAI_MAX_LABELS_PER_CALL} keys per request, got {}",
            keys.len()
        )));
    }
    Ok(())
}

/// One tag of an IMS create request; `None` value means the field was absent.
pub type ImsTagInput = (String, Option<String>);

fn check_ims_create(tags: &[ImsTagInput]) -> Result<(), StoreError> {
    if tags.is_empty() {
        return Err(StoreError::Invalid(
            "tags: at least one tag is required".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for (key, value) in tags {
        let Some(value) = value else {
            return Err(StoreError::Invalid(format!(
                "tag {key:?}: value is required (it may be empty)"
            )));
        };
        first_violation(
            &IMS_RULES,
            key,
            value,
            &BTreeSet::new(),
            "tag key",
            "tag value",
        )?;
        if !seen.insert(key.as_str()) {
            return Err(StoreError::Invalid(format!(
                "tag key {key:?} appears twice in the request"
            )));
        }
    }
    Ok(())
}

impl Store {
    pub fn from_seed(seed: &SeedConfig) -> Store {
        let mut store = Store {
            extra_pai_image_keys: seed.pai.extra_image_label_keys.iter().cloned().collect(),
            ..Store::default()
        };
        for image in &seed.pai.images {
            store.add_pai_image(image.clone());
        }
        for dataset in &seed.pai.datasets {
            store.add_dataset(dataset.clone());
        }
        for image in &seed.ims.images {
            store.add_ims_image(image.clone());
        }
        store
    }

    /// Adds or replaces an image.
    pub fn add_pai_image(&mut self, seed: PaiImageSeed) {
        self.pai_images.insert(
            seed.id,
            PaiImage {
                name: seed.name,
                workspace_id: seed.workspace_id,
                labels: seed.labels,
            },
        );
    }

    pub fn add_dataset(&mut self, seed: DatasetSeed) {
        let versions = seed
            .versions
            .into_iter()
            .map(|v| (v.name, v.labels))
            .collect();
        self.pai_datasets.insert(
            seed.id,
            Dataset {
                name: seed.name,
                workspace_id: seed.workspace_id,
                labels: seed.labels,
                versions,
            },
        );
    }

    pub fn add_ims_image(&mut self, seed: ImsImageSeed) {
        self.ims_images
            .entry(seed.project_id)
            .or_default()
            .insert(seed.id, seed.tags);
    }

    // ---- PAI images ----

    pub fn pai_image(&self, id: &str) -> Result<&PaiImage, StoreError> {
        self.pai_images
            .get(id)
            .ok_or_else(|| StoreError::ImageNotFound(id.to_string()))
    }

    fn pai_image_mut(&mut self, id: &str) -> Result<&mut PaiImage, StoreError> {
        self.pai_images
            .get_mut(id)
            .ok_or_else(|| StoreError::ImageNotFound(id.to_string()))
    }

    /// Images matching the query, in id order.
    pub fn find_images(&self, q: &ImageQuery) -> Result<Vec<(&String, &PaiImage)>, StoreError> {
        let matches = |img: &PaiImage| {
            q.workspace_id
                .as_ref()
                .is_none_or(|w| img.workspace_id.as_ref() == Some(w))
                && q.label_filter
                    .iter()
                    .all(|(k, v)| img.labels.get(k) == Some(v))
        };
        if let Some(id) = &q.image_id {
            // A named image that does not exist is an error rather than an
            // empty list, so a caller can tell "no labels" from "no image".
            // Looked up directly: the operator always names the image, and a
            // scan would make a 10,000-image benchmark quadratic.
            let (key, img) = self
                .pai_images
                .get_key_value(id)
                .ok_or_else(|| StoreError::ImageNotFound(id.clone()))?;
            return Ok(if matches(img) {
                vec![(key, img)]
            } else {
                vec![]
            });
        }
        Ok(self
            .pai_images
            .iter()
            .filter(|(_, img)| matches(img))
            .collect())
    }

    /// ListImageLabels: the distinct (key, value) pairs of the matching
    /// images, sorted, restricted to `label_keys` when given.
    pub fn list_image_labels(&self, q: &ImageQuery) -> Result<Vec<(String, String)>, StoreError> {
        let mut pairs = std::collections::BTreeSet::new();
        for (_, img) in self.find_images(q)? {
            for (k, v) in &img.labels {
                if q.label_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|want| want == k))
                {
                    pairs.insert((k.clone(), v.clone()));
                }
            }
        }
        Ok(pairs.into_iter().collect())
    }

    pub fn add_image_labels(
        &mut self,
        id: &str,
        labels: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.pai_image(id)?;
        check_pai_labels(labels, &PAI_IMAGE_RULES, &self.extra_pai_image_keys)?;
        let img = self.pai_image_mut(id)?;
        for (k, v) in labels {
            img.labels.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    pub fn remove_image_label(&mut self, id: &str, key: &str) -> Result<(), StoreError> {
        if key.is_empty() {
            return Err(StoreError::Invalid("LabelKey: must not be empty".into()));
        }
        self.pai_image_mut(id)?.labels.remove(key);
        Ok(())
    }

    // ---- PAI datasets ----

    pub fn dataset(&self, id: &str) -> Result<&Dataset, StoreError> {
        self.pai_datasets
            .get(id)
            .ok_or_else(|| StoreError::DatasetNotFound(id.to_string()))
    }

    fn dataset_mut(&mut self, id: &str) -> Result<&mut Dataset, StoreError> {
        self.pai_datasets
            .get_mut(id)
            .ok_or_else(|| StoreError::DatasetNotFound(id.to_string()))
    }

    pub fn dataset_version(&self, id: &str, version: &str) -> Result<&Labels, StoreError> {
        self.dataset(id)?
            .versions
            .get(version)
            .ok_or_else(|| StoreError::VersionNotFound {
                dataset_id: id.to_string(),
                version: version.to_string(),
            })
    }

    fn dataset_version_mut(&mut self, id: &str, version: &str) -> Result<&mut Labels, StoreError> {
        self.dataset_mut(id)?
            .versions
            .get_mut(version)
            .ok_or_else(|| StoreError::VersionNotFound {
                dataset_id: id.to_string(),
                version: version.to_string(),
            })
    }

    pub fn create_dataset_labels(
        &mut self,
        id: &str,
        labels: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.dataset(id)?;
        check_pai_labels(labels, &PAI_DATASET_RULES, &BTreeSet::new())?;
        let ds = self.dataset_mut(id)?;
        ds.labels.extend(labels.iter().cloned());
        Ok(())
    }

    pub fn delete_dataset_labels(&mut self, id: &str, keys: &[String]) -> Result<(), StoreError> {
        self.dataset(id)?;
        check_keys(keys, "LabelKeys")?;
        let ds = self.dataset_mut(id)?;
        for k in keys {
            ds.labels.remove(k);
        }
        Ok(())
    }

    pub fn create_version_labels(
        &mut self,
        id: &str,
        version: &str,
        labels: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.dataset_version(id, version)?;
        check_pai_labels(labels, &PAI_DATASET_RULES, &BTreeSet::new())?;
        self.dataset_version_mut(id, version)?
            .extend(labels.iter().cloned());
        Ok(())
    }

    pub fn delete_version_labels(
        &mut self,
        id: &str,
        version: &str,
        keys: &[String],
    ) -> Result<(), StoreError> {
        self.dataset_version(id, version)?;
        check_keys(keys, "Keys")?;
        let labels = self.dataset_version_mut(id, version)?;
        for k in keys {
            labels.remove(k);
        }
        Ok(())
    }

    // ---- IMS ----

    pub fn ims_tags(&self, project: &str, image: &str) -> Result<&Labels, StoreError> {
        self.ims_images
            .get(project)
            .and_then(|p| p.get(image))
            .ok_or_else(|| StoreError::ImsImageNotFound(image.to_string()))
    }

    fn ims_tags_mut(&mut self, project: &str, image: &str) -> Result<&mut Labels, StoreError> {
        self.ims_images
            .get_mut(project)
            .and_then(|p| p.get_mut(image))
            .ok_or_else(|| StoreError::ImsImageNotFound(image.to_string()))
    }

    /// AddImageTag and BatchAddOrDeleteTags `create`.
    pub fn ims_create_tags(
        &mut self,
        project: &str,
        image: &str,
        tags: &[ImsTagInput],
    ) -> Result<(), StoreError> {
        let current = self.ims_tags(project, image)?;
        check_ims_create(tags)?;
        let new_keys = tags
            .iter()
            .filter(|(k, _)| !current.contains_key(k))
            .count();
        if current.len() + new_keys > IMS_MAX_TAGS {
            return Err(StoreError::TooManyTags(format!(
                "an image holds at most {IMS_MAX_TAGS} tags; it has {} and the request adds {new_keys}",
                current.len()
            )));
        }
        let current = self.ims_tags_mut(project, image)?;
        for (k, v) in tags {
            current.insert(k.clone(), v.clone().unwrap_or_default());
        }
        Ok(())
    }

    /// BatchAddOrDeleteTags `delete`: lengths only, missing tags are fine.
    pub fn ims_delete_tags(
        &mut self,
        project: &str,
        image: &str,
        tags: &[ImsTagInput],
    ) -> Result<(), StoreError> {
        self.ims_tags(project, image)?;
        if tags.is_empty() {
            return Err(StoreError::Invalid(
                "tags: at least one tag is required".into(),
            ));
        }
        for (key, value) in tags {
            if key.trim().is_empty() || chars(key) > IMS_DELETE_MAX_KEY_CHARS {
                return Err(StoreError::Invalid(format!(
                    "tag key must be 1 to {IMS_DELETE_MAX_KEY_CHARS} characters and not blank"
                )));
            }
            if value
                .as_deref()
                .is_some_and(|v| chars(v) > IMS_DELETE_MAX_VALUE_CHARS)
            {
                return Err(StoreError::Invalid(format!(
                    "tag value must be at most {IMS_DELETE_MAX_VALUE_CHARS} characters"
                )));
            }
        }
        let current = self.ims_tags_mut(project, image)?;
        for (k, _) in tags {
            current.remove(k);
        }
        Ok(())
    }

    /// DeleteImageTag is not idempotent: a missing key is 404
    /// (<https://support.huaweicloud.com/api-ims/ims_03_0619.html>).
    pub fn ims_delete_tag(
        &mut self,
        project: &str,
        image: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        match self.ims_tags_mut(project, image)?.remove(key) {
            Some(_) => Ok(()),
            None => Err(StoreError::TagNotFound(key.to_string())),
        }
    }
}

#[cfg(test)]
mod tests;
