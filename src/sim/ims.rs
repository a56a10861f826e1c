//! Huawei Cloud IMS v2 image-tag APIs.
//!
//! Codes the cloud does not document and the simulator chose: 404 `IMG.0027`
//! (image not found), 404 `IMG.0028` (DeleteImageTag of a missing key; the
//! 404 itself is documented), 400 `IMG.0200` (a tag breaks a rule), 400 `IMG.0201`
//! (more than 10 tags), 500 `IMG.0500`, 503 `IMG.0503`; the gateway's 404
//! `APIGW.0101` for unknown paths and 403 `APIGW.0302` when the project in the
//! path is not the caller's (`X-Project-Id`, or the project a key is bound to).
//! Documented: 400 `IMG.0001` (malformed request), `IMG.0007` (empty body).

use std::sync::Mutex;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::counters::CallKind;
use super::store::{ImsTagInput, Store, StoreError};
use super::wire::{ApiRequest, HwError, hw_ok};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImsCall {
    pub project_id: String,
    pub image_id: String,
    pub op: ImsOp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImsOp {
    /// `GET /v2/cloudimages`: the project's images (no image in the path).
    ListImages,
    ListImageTags,
    AddImageTag,
    BatchAddOrDeleteTags,
    DeleteImageTag {
        key: String,
    },
}

impl ImsCall {
    pub fn api_name(&self) -> &'static str {
        match self.op {
            // Not "ListImages": the counters are keyed by name, and PAI has one.
            ImsOp::ListImages => "ListCloudImages",
            ImsOp::ListImageTags => "ListImageTags",
            ImsOp::AddImageTag => "AddImageTag",
            ImsOp::BatchAddOrDeleteTags => "BatchAddOrDeleteTags",
            ImsOp::DeleteImageTag { .. } => "DeleteImageTag",
        }
    }

    pub fn kind(&self) -> CallKind {
        match self.op {
            ImsOp::ListImages | ImsOp::ListImageTags => CallKind::Read,
            _ => CallKind::Write,
        }
    }
}

pub fn route(req: &ApiRequest) -> Result<ImsCall, HwError> {
    let segs = req
        .segments()
        .ok_or_else(|| HwError::ims(400, "IMG.0001", "The request message format is invalid."))?;
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = &req.method;
    if let ["v2", "cloudimages"] = s.as_slice()
        && m == Method::GET
    {
        // The project is the caller's: the SDK sends it as X-Project-Id
        // (there is none in this path).
        let project = req.header("x-project-id").ok_or_else(|| {
            HwError::ims(400, "IMG.0001", "X-Project-Id is required to list images.")
        })?;
        return Ok(ImsCall {
            project_id: project.to_string(),
            image_id: String::new(),
            op: ImsOp::ListImages,
        });
    }
    let (project, image, op) = match s.as_slice() {
        ["v2", p, "images", i, "tags"] if m == Method::GET => (p, i, ImsOp::ListImageTags),
        ["v2", p, "images", i, "tags"] if m == Method::POST => (p, i, ImsOp::AddImageTag),
        ["v2", p, "images", i, "tags", "action"] if m == Method::POST => {
            (p, i, ImsOp::BatchAddOrDeleteTags)
        }
        ["v2", p, "images", i, "tags", key] if m == Method::DELETE => (
            p,
            i,
            ImsOp::DeleteImageTag {
                key: key.to_string(),
            },
        ),
        _ => {
            return Err(HwError::gateway(
                404,
                "APIGW.0101",
                "The API does not exist or has not been published in the environment",
            ));
        }
    };
    Ok(ImsCall {
        project_id: project.to_string(),
        image_id: image.to_string(),
        op,
    })
}

fn store_error(e: StoreError) -> HwError {
    match e {
        StoreError::ImsImageNotFound(id) | StoreError::ImageNotFound(id) => {
            HwError::ims(404, "IMG.0027", format!("The image {id} does not exist."))
        }
        StoreError::TooManyTags(m) => HwError::ims(400, "IMG.0201", m),
        // https://support.huaweicloud.com/api-ims/ims_03_0619.html: "non-idempotent:
        // if the key to delete does not exist, status code 404 is returned".
        StoreError::TagNotFound(key) => {
            HwError::ims(404, "IMG.0028", format!("The tag {key:?} does not exist."))
        }
        StoreError::Invalid(m) => HwError::ims(400, "IMG.0200", m),
        StoreError::DatasetNotFound(id) | StoreError::VersionNotFound { dataset_id: id, .. } => {
            HwError::ims(404, "IMG.0027", format!("{id} does not exist."))
        }
    }
}

#[derive(Deserialize)]
struct TagIn {
    key: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize)]
struct AddBody {
    tag: Option<TagIn>,
}

#[derive(Deserialize)]
struct BatchBody {
    action: Option<String>,
    tags: Option<Vec<TagIn>>,
}

fn malformed(detail: impl std::fmt::Display) -> HwError {
    HwError::ims(
        400,
        "IMG.0001",
        format!("The request message format is invalid: {detail}"),
    )
}

fn parse<T: for<'de> Deserialize<'de>>(req: &ApiRequest) -> Result<T, HwError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(HwError::ims(400, "IMG.0007", "The request body is empty."));
    }
    serde_json::from_slice(&req.body).map_err(malformed)
}

fn inputs(tags: Vec<TagIn>) -> Result<Vec<ImsTagInput>, HwError> {
    tags.into_iter()
        .map(|t| {
            t.key
                .map(|k| (k, t.value))
                .ok_or_else(|| malformed("a tag has no key"))
        })
        .collect()
}

pub fn handle(store: &Mutex<Store>, call: &ImsCall, req: &ApiRequest) -> Result<Response, HwError> {
    let rid = req.request_id.as_str();
    let (p, i) = (call.project_id.as_str(), call.image_id.as_str());
    let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
    match &call.op {
        ImsOp::ListImages => list_images(&store, p, req),
        ImsOp::ListImageTags => {
            let tags = store.ims_tags(p, i).map_err(store_error)?;
            let list: Vec<_> = tags
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            Ok(hw_ok(rid, StatusCode::OK, Some(json!({"tags": list}))))
        }
        ImsOp::AddImageTag => {
            store.ims_tags(p, i).map_err(store_error)?;
            let body: AddBody = parse(req)?;
            let tag = body.tag.ok_or_else(|| malformed("\"tag\" is required"))?;
            store
                .ims_create_tags(p, i, &inputs(vec![tag])?)
                .map_err(store_error)?;
            Ok(hw_ok(rid, StatusCode::NO_CONTENT, None))
        }
        ImsOp::BatchAddOrDeleteTags => {
            store.ims_tags(p, i).map_err(store_error)?;
            let body: BatchBody = parse(req)?;
            let tags = inputs(body.tags.ok_or_else(|| malformed("\"tags\" is required"))?)?;
            match body.action.as_deref() {
                Some("create") => store.ims_create_tags(p, i, &tags).map_err(store_error)?,
                Some("delete") => store.ims_delete_tags(p, i, &tags).map_err(store_error)?,
                other => {
                    return Err(malformed(format!(
                        "action must be \"create\" or \"delete\", got {other:?}"
                    )));
                }
            }
            Ok(hw_ok(rid, StatusCode::NO_CONTENT, None))
        }
        ImsOp::DeleteImageTag { key } => {
            store.ims_delete_tag(p, i, key).map_err(store_error)?;
            Ok(hw_ok(rid, StatusCode::NO_CONTENT, None))
        }
    }
}

/// Querying Images (`GET /v2/cloudimages`,
/// <https://support.huaweicloud.com/api-ims/ims_03_0602.html>; SDK
/// `ListImagesRequest`): `limit` (default 500), `marker` (the image ID the
/// page starts after), `tag` (`key.value`, the image tag form of the v1
/// tag API, <https://support.huaweicloud.com/api-ims/ims_03_0613.html>);
/// each image carries `tags` in that `key.value` form, and `page_info.next_marker`
/// names where the next page starts. Images come in ID order (the
/// documented default sorts by creation time; the simulator has none). Other
/// filters are not simulated and are refused rather than ignored.
fn list_images(store: &Store, project: &str, req: &ApiRequest) -> Result<Response, HwError> {
    const DEFAULT_LIMIT: usize = 500;
    let simulated = ["limit", "marker", "tag"];
    if let Some((k, _)) = req
        .query
        .iter()
        .find(|(k, _)| !simulated.contains(&k.as_str()))
    {
        return Err(malformed(format!(
            "the filter {k} is not supported by the simulator"
        )));
    }
    let limit = match req.param("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| malformed(format!("limit must be a positive integer, got {raw:?}")))?,
    };
    let marker = req.param("marker");
    let tag = req.param("tag");
    let empty = std::collections::BTreeMap::new();
    let images = store.ims_images.get(project).unwrap_or(&empty);
    let form = |tags: &std::collections::BTreeMap<String, String>| -> Vec<String> {
        tags.iter().map(|(k, v)| format!("{k}.{v}")).collect()
    };
    let matching: Vec<_> = images
        .iter()
        .filter(|(id, _)| marker.is_none_or(|m| id.as_str() > m))
        .filter(|(_, tags)| tag.is_none_or(|t| form(tags).iter().any(|f| f == t)))
        .collect();
    let more = matching.len() > limit;
    let page: Vec<_> = matching.into_iter().take(limit).collect();
    let next = if more {
        page.last().map(|(id, _)| id.as_str())
    } else {
        None
    };
    let items: Vec<_> = page
        .iter()
        .map(|(id, tags)| json!({"id": id, "name": id, "owner": project, "status": "active", "tags": form(tags)}))
        .collect();
    let mut body = json!({"images": items});
    if let Some(next) = next {
        body["page_info"] = json!({"next_marker": next});
    }
    Ok(hw_ok(&req.request_id, StatusCode::OK, Some(body)))
}
