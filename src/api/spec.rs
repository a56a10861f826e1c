//! The two custom resources. Their specs are identical except for the
//! target (`imageId` vs `datasetId` + `version`); [`super::label_set`] gives
//! the rest of the crate one view of either.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::status::LabelSetStatus;

/// Which cloud API manages the target.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum Provider {
    /// Alibaba Cloud PAI AIWorkSpace (images, datasets, dataset versions).
    #[default]
    #[serde(rename = "pai")]
    Pai,
    /// Huawei Cloud Image Management Service v2 (image tags).
    #[serde(rename = "huaweicloud-ims")]
    HuaweicloudIms,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Pai => "pai",
            Provider::HuaweicloudIms => "huaweicloud-ims",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which keys the set may remove.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Prune {
    /// Remove keys this set applied that the spec no longer lists; never touch others.
    #[default]
    Owned,
    /// The set is exclusive for the object: every key not listed is removed
    /// (protected keys and keys other live sets desire excepted).
    All,
    /// Never remove anything.
    None,
}

/// What happens to owned keys when the resource is deleted.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    /// Remove the keys this set owns (unless another live set desires them).
    #[default]
    Delete,
    /// Leave every label in place.
    Orphan,
}

/// Whether the set writes to the cloud.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Mode {
    /// Make the cloud match the spec.
    #[default]
    Sync,
    /// Compute the plan and report drift; never write.
    Observe,
}

/// A Secret in the set's own namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
pub struct SecretRef {
    /// Name of the Secret (same namespace as the set; cross-namespace references are not allowed).
    #[schemars(length(min = 1, max = 253), regex(pattern = super::ids::DNS1123_SUBDOMAIN))]
    pub name: String,
}

/// Duration pattern accepted by `resyncInterval` (Go/Kubernetes style: `30s`, `10m`, `1h30m`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// Desired labels of one cloud image.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "imagelabel.io",
    version = "v1alpha1",
    kind = "ImageLabelSet",
    doc = "Keeps the labels (tags) of one cloud image (Alibaba Cloud PAI or Huawei Cloud IMS) equal to spec.labels; status reports what the operator found and did.",
    namespaced,
    status = "LabelSetStatus",
    shortname = "ils",
    category = "imagelabel",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.imageId"}"#,
    printcolumn = r#"{"name":"Labels","type":"integer","jsonPath":".status.labelCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 253").message("metadata.name must be at most 253 characters"),
)]
#[x_kube(
    validation = Rule::new("self.provider != 'huaweicloud-ims' || has(self.projectId)").message("spec.projectId is required when spec.provider is huaweicloud-ims").field_path(".projectId"),
    validation = Rule::new("self.provider == 'huaweicloud-ims' || !has(self.projectId)").message("spec.projectId is only valid with provider huaweicloud-ims").field_path(".projectId"),
    validation = Rule::new("self.provider == 'pai' || !has(self.workspaceId)").message("spec.workspaceId is only valid with provider pai").field_path(".workspaceId"),
    validation = Rule::new("self.provider != 'pai' || self.labels.all(k, k.startsWith('system.'))").message("spec.labels: every PAI image label key must start with 'system.' (for example system.chipType)").field_path(".labels"),
    validation = Rule::new("self.provider != 'pai' || self.labels.all(k, size(k) <= 128 && size(self.labels[k]) <= 256)").message("spec.labels: PAI keys are at most 128 characters and values at most 256").field_path(".labels"),
    validation = Rule::new("self.provider != 'huaweicloud-ims' || size(self.labels) <= 10").message("spec.labels: Huawei Cloud IMS allows at most 10 tags per image").field_path(".labels"),
    validation = Rule::new("self.provider != 'huaweicloud-ims' || self.labels.all(k, size(k) <= 36 && size(self.labels[k]) <= 43)").message("spec.labels: Huawei Cloud IMS tag keys are 1-36 characters and values 0-43").field_path(".labels"),
    validation = Rule::new("self.provider != 'huaweicloud-ims' || self.labels.all(k, !k.startsWith('_sys_'))").message("spec.labels: IMS tag keys starting with _sys_ are reserved by Huawei Cloud").field_path(".labels"),
    validation = Rule::new("self.provider != 'huaweicloud-ims' || self.labels.all(k, !k.startsWith(' ') && !k.endsWith(' ') && !self.labels[k].startsWith(' ') && !self.labels[k].endsWith(' '))").message("spec.labels: Huawei Cloud IMS tag keys and values must not start or end with a space").field_path(".labels"),
    validation = Rule::new("self.provider != 'huaweicloud-ims' || self.labels.all(k, k.matches('^[A-Za-z0-9一-鿿 _.:+@-]*$'))").message("spec.labels: Huawei Cloud IMS tag keys hold only A-Z, a-z, 0-9, CJK characters, space and _ . : + - @").field_path(".labels"),
    validation = Rule::new("self.provider != 'huaweicloud-ims' || self.labels.all(k, self.labels[k].matches('^[A-Za-z0-9一-鿿 _.:/+@-]*$'))").message("spec.labels: Huawei Cloud IMS tag values hold only A-Z, a-z, 0-9, CJK characters, space and _ . : / + - @").field_path(".labels"),
    validation = Rule::new(format!("self.provider != 'pai' || self.imageId.matches('{}')", super::ids::PAI_IMAGE_ID)).message("spec.imageId: a PAI image ID is image- and 1-64 lowercase letters or digits").field_path(".imageId"),
    validation = Rule::new(format!("self.provider != 'huaweicloud-ims' || self.imageId.matches('{}')", super::ids::IMS_IMAGE_ID)).message("spec.imageId: an IMS image ID is a lowercase UUID").field_path(".imageId"),
    validation = Rule::new("self.provider == oldSelf.provider && self.imageId == oldSelf.imageId").message("spec.provider and spec.imageId are immutable: create another set for another image (deleting this one applies its deletionPolicy)").field_path(".imageId"),
    validation = Rule::new("has(self.region) == has(oldSelf.region) && (!has(self.region) || self.region == oldSelf.region)").message("spec.region is immutable: create another set for an image in another region").field_path(".region"),
    validation = Rule::new("has(self.projectId) == has(oldSelf.projectId) && (!has(self.projectId) || self.projectId == oldSelf.projectId)").message("spec.projectId is immutable: create another set for an image in another project").field_path(".projectId"),
)]
#[serde(rename_all = "camelCase")]
pub struct ImageLabelSetSpec {
    /// Cloud API that manages the image.
    #[serde(default)]
    pub provider: Provider,
    /// The image's ID in the cloud (PAI `image-…`, IMS UUID).
    #[schemars(length(min = 1, max = 70))]
    pub image_id: String,
    /// Region of the image; the operator's default region when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9-]+$"))]
    pub region: Option<String>,
    /// PAI workspace ID (pai only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 20), regex(pattern = super::ids::PAI_WORKSPACE_ID))]
    pub workspace_id: Option<String>,
    /// Huawei Cloud project ID (required for huaweicloud-ims).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 32, max = 32), regex(pattern = super::ids::IMS_PROJECT_ID))]
    pub project_id: Option<String>,
    /// Desired labels, key -> value.
    #[serde(default)]
    // Bounding values keeps the per-value CEL rules within the API server's cost budget.
    #[schemars(extend("maxProperties" = 100, "additionalProperties" = {"type": "string", "maxLength": 256}))]
    #[x_kube(validation = Rule::new("self.all(k, size(k) >= 1)").message("spec.labels: keys must not be empty"))]
    pub labels: BTreeMap<String, String>,
    /// Which keys may be removed: Owned (default), All, None.
    #[serde(default)]
    pub prune: Prune,
    /// On deletion: Delete (default) removes owned keys, Orphan leaves them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Sync (default) writes; Observe only reports drift.
    #[serde(default)]
    pub mode: Mode,
    /// Secret in this namespace with the cloud credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<SecretRef>,
    /// Drift-check period such as `10m` (jittered); the operator default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s')").message("spec.resyncInterval: the minimum is 10s"))]
    pub resync_interval: Option<String>,
    /// Glob patterns of keys never written or removed (for example `system.dsw.*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 128)))]
    pub ignore_keys: Vec<String>,
    /// Take ownership of declared keys the cloud already holds with the declared value, without writing them (Sync only; conflicts and ignoreKeys apply as usual). Adopted keys are listed in status.ownedKeys, so prune and deletionPolicy then apply to them. Default false: such keys stay whoever set them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
}

/// Desired labels of one PAI dataset or dataset version.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "imagelabel.io",
    version = "v1alpha1",
    kind = "DatasetLabelSet",
    doc = "Keeps the labels of one Alibaba Cloud PAI dataset (or dataset version) equal to spec.labels; status reports what the operator found and did.",
    namespaced,
    status = "LabelSetStatus",
    shortname = "dls",
    category = "imagelabel",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.datasetId"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Labels","type":"integer","jsonPath":".status.labelCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self.provider == 'pai'").message("spec.provider: DatasetLabelSet supports only provider pai").field_path(".provider"),
    validation = Rule::new("self.labels.all(k, size(k) <= 128 && size(self.labels[k]) <= 128)").message("spec.labels: PAI dataset label keys and values are at most 128 characters").field_path(".labels"),
    validation = Rule::new("self.labels.all(k, size(self.labels[k]) >= 1)").message("spec.labels: PAI dataset label values must not be empty").field_path(".labels"),
    validation = Rule::new("self.labels.all(k, !k.startsWith('aliyun') && !k.startsWith('acs') && !k.startsWith('http://') && !k.startsWith('https://'))").message("spec.labels: PAI dataset label keys must not start with aliyun, acs, http:// or https://").field_path(".labels"),
    validation = Rule::new("self.labels.all(k, !k.contains('=') && !k.contains(','))").message("spec.labels: PAI dataset label keys must not contain '=' or ','").field_path(".labels"),
    validation = Rule::new("self.labels.all(k, !self.labels[k].contains('=') && !self.labels[k].contains(','))").message("spec.labels: PAI dataset label values must not contain '=' or ','").field_path(".labels"),
    validation = Rule::new("self.datasetId == oldSelf.datasetId").message("spec.datasetId is immutable: create another set for another dataset (deleting this one applies its deletionPolicy)").field_path(".datasetId"),
    validation = Rule::new("has(self.version) == has(oldSelf.version) && (!has(self.version) || self.version == oldSelf.version)").message("spec.version is immutable: create another set for another dataset version").field_path(".version"),
    validation = Rule::new("has(self.region) == has(oldSelf.region) && (!has(self.region) || self.region == oldSelf.region)").message("spec.region is immutable: create another set for a dataset in another region").field_path(".region"),
)]
#[serde(rename_all = "camelCase")]
pub struct DatasetLabelSetSpec {
    /// Cloud API that manages the dataset (pai only).
    #[serde(default)]
    pub provider: Provider,
    /// The dataset's ID (`d-…`).
    #[schemars(length(min = 3, max = 66), regex(pattern = super::ids::PAI_DATASET_ID))]
    pub dataset_id: String,
    /// A dataset version name (for example `v1`); the dataset itself when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 10), regex(pattern = super::ids::PAI_DATASET_VERSION))]
    pub version: Option<String>,
    /// Region of the dataset; the operator's default region when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9-]+$"))]
    pub region: Option<String>,
    /// PAI workspace ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 20), regex(pattern = super::ids::PAI_WORKSPACE_ID))]
    pub workspace_id: Option<String>,
    /// Desired labels, key -> value.
    #[serde(default)]
    // Bounding values keeps the per-value CEL rules within the API server's cost budget.
    #[schemars(extend("maxProperties" = 100, "additionalProperties" = {"type": "string", "maxLength": 128}))]
    #[x_kube(validation = Rule::new("self.all(k, size(k) >= 1)").message("spec.labels: keys must not be empty"))]
    pub labels: BTreeMap<String, String>,
    /// Which keys may be removed: Owned (default), All, None.
    #[serde(default)]
    pub prune: Prune,
    /// On deletion: Delete (default) removes owned keys, Orphan leaves them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Sync (default) writes; Observe only reports drift.
    #[serde(default)]
    pub mode: Mode,
    /// Secret in this namespace with the cloud credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<SecretRef>,
    /// Drift-check period such as `10m` (jittered); the operator default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s')").message("spec.resyncInterval: the minimum is 10s"))]
    pub resync_interval: Option<String>,
    /// Glob patterns of keys never written or removed (for example `system.dsw.*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 128)))]
    pub ignore_keys: Vec<String>,
    /// Take ownership of declared keys the cloud already holds with the declared value, without writing them (Sync only; conflicts and ignoreKeys apply as usual). Adopted keys are listed in status.ownedKeys, so prune and deletionPolicy then apply to them. Default false: such keys stay whoever set them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
}

/// Fields that govern how the engine writes; identical for both kinds. The
/// specs spell them out (no `serde(flatten)`, which would hide field paths in
/// error messages); this is the engine's copy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    pub prune: Prune,
    pub deletion_policy: DeletionPolicy,
    pub mode: Mode,
    pub credentials_ref: Option<SecretRef>,
    pub resync_interval: Option<String>,
    pub ignore_keys: Vec<String>,
    pub adopt: bool,
}
