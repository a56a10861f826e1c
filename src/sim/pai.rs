//! PAI AIWorkSpace 2021-02-04 (ROA style) label APIs, in the API reference's
//! paths and the seed-documented `/api/AIWorkSpace/2021-02-04/...` forms
//! (both in docs/wire.md).
//!
//! Error codes the clouds do not document and the simulator chose:
//! 404 `Image.NotFound`, `Dataset.NotFound`, `DatasetVersion.NotFound`;
//! 404 `InvalidAction.NotFound` for a path or method no API answers;
//! 400 `InvalidAction.Mismatch` when `x-acs-action` names another API than the path.
//! 400 `InvalidVersion` when `x-acs-version` is not 2021-02-04. ListImageLabels
//! with an `ImageId` that does not exist answers 404 `Image.NotFound` rather
//! than an empty list, so a caller can tell a missing image from a bare one.

use std::sync::Mutex;

use axum::http::Method;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::counters::CallKind;
use super::store::{ImageQuery, Store, StoreError, parse_label_filter, split_keys};
use super::wire::{AcsError, ApiRequest, acs_labels, acs_ok};

pub const API_VERSION: &str = "2021-02-04";

/// Longest request path RemoveImageLabels accepts, counted in characters of
/// the path as sent (percent-encoded), per the seed documents' limits.
pub const MAX_REMOVE_PATH_CHARS: usize = 8192;

/// One PAI API call with its decoded path parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaiCall {
    ListImageLabels,
    AddImageLabels { image_id: String },
    RemoveImageLabels { image_id: String, key: String },
    GetImage { image_id: String },
    ListImages,
    GetDataset { dataset_id: String },
    ListDatasets,
    ListDatasetVersions { dataset_id: String },
    CreateDatasetLabels { dataset_id: String },
    DeleteDatasetLabels { dataset_id: String },
    GetDatasetVersion { dataset_id: String, version: String },
    CreateDatasetVersionLabels { dataset_id: String, version: String },
    DeleteDatasetVersionLabels { dataset_id: String, version: String },
}

impl PaiCall {
    pub fn api_name(&self) -> &'static str {
        match self {
            PaiCall::ListImageLabels => "ListImageLabels",
            PaiCall::AddImageLabels { .. } => "AddImageLabels",
            PaiCall::RemoveImageLabels { .. } => "RemoveImageLabels",
            PaiCall::GetImage { .. } => "GetImage",
            PaiCall::ListImages => "ListImages",
            PaiCall::GetDataset { .. } => "GetDataset",
            PaiCall::ListDatasets => "ListDatasets",
            PaiCall::ListDatasetVersions { .. } => "ListDatasetVersions",
            PaiCall::CreateDatasetLabels { .. } => "CreateDatasetLabels",
            PaiCall::DeleteDatasetLabels { .. } => "DeleteDatasetLabels",
            PaiCall::GetDatasetVersion { .. } => "GetDatasetVersion",
            PaiCall::CreateDatasetVersionLabels { .. } => "CreateDatasetVersionLabels",
            PaiCall::DeleteDatasetVersionLabels { .. } => "DeleteDatasetVersionLabels",
        }
    }

    pub fn kind(&self) -> CallKind {
        match self {
            PaiCall::ListImageLabels
            | PaiCall::GetImage { .. }
            | PaiCall::ListImages
            | PaiCall::ListDatasets
            | PaiCall::ListDatasetVersions { .. }
            | PaiCall::GetDataset { .. }
            | PaiCall::GetDatasetVersion { .. } => CallKind::Read,
            _ => CallKind::Write,
        }
    }
}

fn not_found_route(req: &ApiRequest) -> AcsError {
    AcsError::new(
        404,
        "InvalidAction.NotFound",
        format!(
            "Specified api is not found, please check your url and method: {} {}",
            req.method, req.path
        ),
    )
}

/// Finds the API a request addresses.
pub fn route(req: &ApiRequest) -> Result<PaiCall, AcsError> {
    let segs = req.segments().ok_or_else(|| {
        AcsError::invalid("the request path is not valid UTF-8 after percent-decoding")
    })?;
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = &req.method;
    let owned = |x: &str| x.to_string();
    let call = match s.as_slice() {
        ["api", "v1", "image", "labels"] if m == Method::GET => PaiCall::ListImageLabels,
        ["api", "v1", "images"] if m == Method::GET => PaiCall::ListImages,
        ["api", "v1", "images", id] if m == Method::GET => PaiCall::GetImage {
            image_id: owned(id),
        },
        ["api", "v1", "images", id, "labels"] if m == Method::POST => PaiCall::AddImageLabels {
            image_id: owned(id),
        },
        ["api", "v1", "images", id, "labels", key] if m == Method::DELETE => {
            PaiCall::RemoveImageLabels {
                image_id: owned(id),
                key: owned(key),
            }
        }
        ["api", "v1", "datasets"] if m == Method::GET => PaiCall::ListDatasets,
        ["api", "v1", "datasets", id, "versions"] if m == Method::GET => {
            PaiCall::ListDatasetVersions {
                dataset_id: owned(id),
            }
        }
        ["api", "v1", "datasets", id] if m == Method::GET => PaiCall::GetDataset {
            dataset_id: owned(id),
        },
        ["api", "v1", "datasets", id, "labels"] if m == Method::POST => {
            PaiCall::CreateDatasetLabels {
                dataset_id: owned(id),
            }
        }
        ["api", "v1", "datasets", id, "labels"] if m == Method::DELETE => {
            PaiCall::DeleteDatasetLabels {
                dataset_id: owned(id),
            }
        }
        ["api", "v1", "datasets", id, "versions", v] if m == Method::GET => {
            PaiCall::GetDatasetVersion {
                dataset_id: owned(id),
                version: owned(v),
            }
        }
        ["api", "v1", "datasets", id, "versions", v, "labels"] if m == Method::PUT => {
            PaiCall::CreateDatasetVersionLabels {
                dataset_id: owned(id),
                version: owned(v),
            }
        }
        ["api", "v1", "datasets", id, "versions", v, "labels"] if m == Method::DELETE => {
            PaiCall::DeleteDatasetVersionLabels {
                dataset_id: owned(id),
                version: owned(v),
            }
        }
        // The forms the seed documents describe.
        ["api", "AIWorkSpace", API_VERSION, "ListImageLabels"] if m == Method::GET => {
            PaiCall::ListImageLabels
        }
        [
            "api",
            "AIWorkSpace",
            API_VERSION,
            "AddImageLabels",
            id,
            "labels",
        ] if m == Method::POST => PaiCall::AddImageLabels {
            image_id: owned(id),
        },
        [
            "api",
            "AIWorkSpace",
            API_VERSION,
            "images",
            id,
            "labels",
            key,
        ] if m == Method::DELETE => PaiCall::RemoveImageLabels {
            image_id: owned(id),
            key: owned(key),
        },
        _ => return Err(not_found_route(req)),
    };
    if let Some(action) = req.header("x-acs-action")
        && action != call.api_name()
    {
        return Err(AcsError::new(
            400,
            "InvalidAction.Mismatch",
            format!(
                "x-acs-action {action:?} does not match the API of this path ({})",
                call.api_name()
            ),
        ));
    }
    if let Some(version) = req.header("x-acs-version")
        && version != API_VERSION
    {
        return Err(AcsError::new(
            400,
            "InvalidVersion",
            format!(
                "Specified parameter Version {version:?} is not valid; this API is {API_VERSION}."
            ),
        ));
    }
    Ok(call)
}

fn store_error(e: StoreError) -> AcsError {
    match e {
        StoreError::ImageNotFound(id) => AcsError::new(
            404,
            "Image.NotFound",
            format!("The image {id} does not exist."),
        ),
        StoreError::DatasetNotFound(id) => AcsError::new(
            404,
            "Dataset.NotFound",
            format!("The dataset {id} does not exist."),
        ),
        StoreError::VersionNotFound {
            dataset_id,
            version,
        } => AcsError::new(
            404,
            "DatasetVersion.NotFound",
            format!("The version {version} of dataset {dataset_id} does not exist."),
        ),
        StoreError::Invalid(m) | StoreError::TooManyTags(m) | StoreError::TagNotFound(m) => {
            AcsError::invalid(m)
        }
        StoreError::ImsImageNotFound(id) => AcsError::new(
            404,
            "Image.NotFound",
            format!("The image {id} does not exist."),
        ),
    }
}

#[derive(Deserialize)]
struct LabelsBody {
    #[serde(rename = "Labels")]
    labels: Option<Vec<LabelIn>>,
}

#[derive(Deserialize)]
struct LabelIn {
    #[serde(rename = "Key")]
    key: Option<String>,
    #[serde(rename = "Value")]
    value: Option<String>,
}

fn labels_from_body(req: &ApiRequest) -> Result<Vec<(String, String)>, AcsError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(AcsError::missing("Labels"));
    }
    let body: LabelsBody = serde_json::from_slice(&req.body).map_err(|e| {
        AcsError::invalid(format!(
            "The request body is not valid JSON for this API: {e}"
        ))
    })?;
    let labels = body.labels.ok_or_else(|| AcsError::missing("Labels"))?;
    labels
        .into_iter()
        .map(|l| match l.key {
            Some(k) => Ok((k, l.value.unwrap_or_default())),
            None => Err(AcsError::missing("Labels.Key")),
        })
        .collect()
}

fn page_param(req: &ApiRequest, name: &str, default: usize, max: usize) -> Result<usize, AcsError> {
    match req.param(name) {
        None => Ok(default),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(AcsError::invalid(format!(
                "{name} must be an integer from 1 to {max}, got {raw:?}"
            ))),
        },
    }
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

/// `Verbose=true` asks for "non-essential information", which is the labels:
/// without it GetImage and ListImages leave `Labels` out
/// (<https://help.aliyun.com/zh/pai/developer-reference/api-aiworkspace-2021-02-04-getimage>,
/// <https://help.aliyun.com/zh/pai/developer-reference/api-aiworkspace-2021-02-04-listimages>;
/// the SDK's `GetImageRequest.verbose` / `ListImagesRequest.verbose` say the
/// same). The Python SDK sends the boolean as `True`.
fn verbose(req: &ApiRequest) -> bool {
    req.param("Verbose")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn image_json(id: &str, img: &super::store::PaiImage, verbose: bool) -> serde_json::Value {
    let official = img
        .labels
        .get("system.official")
        .is_some_and(|v| v == "true");
    let mut out = json!({
        "ImageId": id,
        "Name": img.name,
        "WorkspaceId": img.workspace_id.clone().unwrap_or_default(),
        "Accessibility": if official { "PUBLIC" } else { "PRIVATE" },
        "ImageUri": format!("registry.cn-shanghai.aliyuncs.com/pai-sim/{}:latest", if img.name.is_empty() { id } else { &img.name }),
        "GmtCreateTime": "2026-01-01T00:00:00Z",
    });
    if verbose {
        out["Labels"] = acs_labels(&img.labels);
    }
    out
}

/// The largest page the simulator serves. No AIWorkSpace page documents a
/// maximum PageSize (ListImages, ListDatasets and ListDatasetVersions give
/// only defaults); 100 is the simulator's choice, refused above with
/// `InvalidParameter` naming `PageSize` (docs/cloud-rules.md).
pub const MAX_PAGE_SIZE: usize = 100;

/// One page of `items` by `PageNumber` / `PageSize` (both 1-based counts).
fn page_of<T>(
    req: &ApiRequest,
    items: Vec<T>,
    default_size: usize,
    required: bool,
) -> Result<(Vec<T>, usize, usize, usize), AcsError> {
    if required {
        for name in ["PageNumber", "PageSize"] {
            req.param(name).ok_or_else(|| AcsError::missing(name))?;
        }
    }
    let page = page_param(req, "PageNumber", 1, 100_000)?;
    let size = page_param(req, "PageSize", default_size, MAX_PAGE_SIZE)?;
    let total = items.len();
    let items = items
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .collect();
    Ok((items, total, page, size))
}

/// ListDatasets (`GET /api/v1/datasets`): `WorkspaceId`, `Name` (fuzzy),
/// `Label` ("datasets whose label key or value contains the specified
/// string"), `PageNumber`, `PageSize` (default 10); each dataset carries its
/// `Labels` (SDK `ListDatasetsRequest`, `Dataset.labels`;
/// <https://help.aliyun.com/zh/pai/developer-reference/api-aiworkspace-2021-02-04-listdatasets>).
fn list_datasets(store: &Mutex<Store>, req: &ApiRequest) -> Result<Response, AcsError> {
    let workspace = req.param("WorkspaceId");
    let name = req.param("Name");
    let label = req.param("Label");
    let store = lock(store);
    let found: Vec<_> = store
        .pai_datasets
        .iter()
        .filter(|(_, d)| workspace.is_none_or(|w| d.workspace_id.as_deref() == Some(w)))
        .filter(|(_, d)| name.is_none_or(|n| d.name.contains(n)))
        .filter(|(_, d)| {
            label.is_none_or(|l| d.labels.iter().any(|(k, v)| k.contains(l) || v.contains(l)))
        })
        .collect();
    let (items, total, _, _) = page_of(req, found, 10, false)?;
    let items: Vec<_> = items
        .into_iter()
        .map(|(id, d)| {
            json!({
                "DatasetId": id,
                "Name": d.name,
                "WorkspaceId": d.workspace_id.clone().unwrap_or_default(),
                "Labels": acs_labels(&d.labels),
            })
        })
        .collect();
    Ok(acs_ok(
        &req.request_id,
        json!({"Datasets": items, "TotalCount": total}),
    ))
}

/// ListDatasetVersions (`GET /api/v1/datasets/{DatasetId}/versions`):
/// `PageNumber` and `PageSize` are required (default 10 in the model's
/// words); each version carries its `Labels` (SDK
/// `ListDatasetVersionsRequest`, `DatasetVersion.labels`;
/// <https://help.aliyun.com/zh/pai/developer-reference/api-aiworkspace-2021-02-04-listdatasetversions>).
/// The label filters (`LabelKeys`, `LabelValues`) are not simulated and are
/// refused rather than ignored, so no caller mistakes a full list for a
/// filtered one.
fn list_dataset_versions(
    store: &Mutex<Store>,
    req: &ApiRequest,
    dataset_id: &str,
) -> Result<Response, AcsError> {
    for unsupported in ["LabelKeys", "LabelValues"] {
        if req.param(unsupported).is_some() {
            return Err(AcsError::invalid(format!(
                "{unsupported} is not supported by the simulator"
            )));
        }
    }
    let store = lock(store);
    let ds = store.dataset(dataset_id).map_err(store_error)?;
    let versions: Vec<_> = ds.versions.iter().collect();
    let (items, total, page, size) = page_of(req, versions, 10, true)?;
    let items: Vec<_> = items
        .into_iter()
        .map(|(v, labels)| {
            json!({"DatasetId": dataset_id, "VersionName": v, "Labels": acs_labels(labels)})
        })
        .collect();
    Ok(acs_ok(
        &req.request_id,
        json!({"DatasetVersions": items, "TotalCount": total, "PageNumber": page, "PageSize": size}),
    ))
}

/// Serves one call.
pub fn handle(
    store: &Mutex<Store>,
    call: &PaiCall,
    req: &ApiRequest,
) -> Result<Response, AcsError> {
    let rid = req.request_id.as_str();
    match call {
        PaiCall::ListImageLabels => {
            let query = ImageQuery {
                image_id: req.param("ImageId").map(str::to_string),
                workspace_id: req.param("WorkspaceId").map(str::to_string),
                label_keys: req.param("LabelKeys").map(split_keys),
                label_filter: req
                    .param("LabelFilter")
                    .map(parse_label_filter)
                    .transpose()
                    .map_err(store_error)?
                    .unwrap_or_default(),
            };
            let labels = lock(store).list_image_labels(&query).map_err(store_error)?;
            let list: Vec<_> = labels
                .iter()
                .map(|(k, v)| json!({"Key": k, "Value": v}))
                .collect();
            Ok(acs_ok(
                rid,
                json!({"Labels": list, "TotalCount": labels.len()}),
            ))
        }
        PaiCall::AddImageLabels { image_id } => {
            let labels = labels_from_body(req)?;
            lock(store)
                .add_image_labels(image_id, &labels)
                .map_err(store_error)?;
            Ok(acs_ok(rid, json!({})))
        }
        PaiCall::RemoveImageLabels { image_id, key } => {
            let path_chars = req.path.chars().count();
            if path_chars > MAX_REMOVE_PATH_CHARS {
                return Err(AcsError::invalid(format!(
                    "The request path of RemoveImageLabels is {path_chars} characters; the limit is {MAX_REMOVE_PATH_CHARS}."
                )));
            }
            lock(store)
                .remove_image_label(image_id, key)
                .map_err(store_error)?;
            Ok(acs_ok(rid, json!({})))
        }
        PaiCall::GetImage { image_id } => {
            let store = lock(store);
            let img = store.pai_image(image_id).map_err(store_error)?;
            Ok(acs_ok(rid, image_json(image_id, img, verbose(req))))
        }
        PaiCall::ListImages => {
            let query = ImageQuery {
                workspace_id: req.param("WorkspaceId").map(str::to_string),
                label_filter: req
                    .param("Labels")
                    .map(parse_label_filter)
                    .transpose()
                    .map_err(store_error)?
                    .unwrap_or_default(),
                ..Default::default()
            };
            let name = req.param("Name");
            let store = lock(store);
            let images: Vec<_> = store
                .find_images(&query)
                .map_err(store_error)?
                .into_iter()
                .filter(|(_, img)| name.is_none_or(|n| img.name.contains(n)))
                .collect();
            // ListImages: PageSize defaults to 20 (SDK `ListImagesRequest.page_size`).
            let (page, total, _, _) = page_of(req, images, 20, false)?;
            let items: Vec<_> = page
                .into_iter()
                .map(|(id, img)| image_json(id, img, verbose(req)))
                .collect();
            Ok(acs_ok(rid, json!({"Images": items, "TotalCount": total})))
        }
        PaiCall::GetDataset { dataset_id } => {
            let store = lock(store);
            let ds = store.dataset(dataset_id).map_err(store_error)?;
            Ok(acs_ok(
                rid,
                json!({
                    "DatasetId": dataset_id,
                    "Name": ds.name,
                    "WorkspaceId": ds.workspace_id.clone().unwrap_or_default(),
                    "LatestVersion": ds.versions.keys().next_back().map(|v| json!({"VersionName": v})),
                    "Labels": acs_labels(&ds.labels),
                }),
            ))
        }
        PaiCall::ListDatasets => list_datasets(store, req),
        PaiCall::ListDatasetVersions { dataset_id } => {
            list_dataset_versions(store, req, dataset_id)
        }
        PaiCall::CreateDatasetLabels { dataset_id } => {
            let labels = labels_from_body(req)?;
            lock(store)
                .create_dataset_labels(dataset_id, &labels)
                .map_err(store_error)?;
            Ok(acs_ok(rid, json!({})))
        }
        PaiCall::DeleteDatasetLabels { dataset_id } => {
            let keys = req
                .param("LabelKeys")
                .map(split_keys)
                .ok_or_else(|| AcsError::missing("LabelKeys"))?;
            lock(store)
                .delete_dataset_labels(dataset_id, &keys)
                .map_err(store_error)?;
            Ok(acs_ok(rid, json!({})))
        }
        PaiCall::GetDatasetVersion {
            dataset_id,
            version,
        } => {
            let store = lock(store);
            let labels = store
                .dataset_version(dataset_id, version)
                .map_err(store_error)?;
            Ok(acs_ok(
                rid,
                json!({"DatasetId": dataset_id, "VersionName": version, "Labels": acs_labels(labels)}),
            ))
        }
        PaiCall::CreateDatasetVersionLabels {
            dataset_id,
            version,
        } => {
            let labels = labels_from_body(req)?;
            lock(store)
                .create_version_labels(dataset_id, version, &labels)
                .map_err(store_error)?;
            Ok(acs_ok(rid, json!({})))
        }
        PaiCall::DeleteDatasetVersionLabels {
            dataset_id,
            version,
        } => {
            let keys = req
                .param("Keys")
                .map(split_keys)
                .ok_or_else(|| AcsError::missing("Keys"))?;
            lock(store)
                .delete_version_labels(dataset_id, version, &keys)
                .map_err(store_error)?;
            Ok(acs_ok(rid, json!({})))
        }
    }
}
