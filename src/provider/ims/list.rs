//! Querying Images (`GET /v2/cloudimages`) for `imagelabel export`: the
//! project's image IDs a page at a time. The list's `tags` come as
//! `key.value` strings, which cannot be split when a key holds a `.`, so
//! the tags themselves are read per image with ListImageTags.

use reqwest::Method;
use serde_json::Value;

use super::{ImsClient, project_call};
use crate::provider::CloudError;

/// The documented default (and the page asked for): "默认取值为500"
/// (SDK `ListImagesRequest.limit`, <https://support.huaweicloud.com/api-ims/ims_03_0602.html>).
pub const PAGE_LIMIT: u32 = 500;

/// One page of image IDs and where the next one starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImagePage {
    pub ids: Vec<String>,
    pub next_marker: Option<String>,
}

impl ImsClient {
    /// The images of `project_id` after `marker`, optionally only those with
    /// the tag `key.value`.
    pub async fn list_images_page(
        &self,
        project_id: &str,
        tag: Option<&str>,
        marker: Option<&str>,
        limit: u32,
    ) -> Result<ImagePage, CloudError> {
        let mut call = project_call(
            "ListImages",
            Method::GET,
            project_id,
            "/v2/cloudimages".into(),
        )
        .query("limit", limit.to_string());
        if let Some(m) = marker {
            call = call.query("marker", m);
        }
        if let Some(t) = tag {
            call = call.query("tag", t);
        }
        let a = self.call(call).await?;
        let ids = a
            .body
            .get("images")
            .and_then(Value::as_array)
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        let next_marker = a
            .body
            .pointer("/page_info/next_marker")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        Ok(ImagePage { ids, next_marker })
    }
}
