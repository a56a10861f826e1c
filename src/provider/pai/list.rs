//! The AIWorkSpace list calls `imagelabel export` reads the cloud with: one
//! page a call, through the same signing, retries and budget as every other
//! call of this client.

use reqwest::Method;
use serde_json::Value;

use super::{Call, PaiClient, dataset_path, parse_labels, to_map};
use crate::provider::{CloudError, Labels};

/// The largest page asked for. The API reference gives only defaults
/// (ListImages 20, ListDatasets and ListDatasetVersions 10); 100 is the
/// largest page the simulator serves, see docs/cloud-rules.md.
pub const PAGE_SIZE: u32 = 100;

/// One object of a list answer.
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

/// ListImages filters (all optional, as in the API).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageFilter {
    pub workspace_id: Option<String>,
    /// Fuzzy match on the name.
    pub name: Option<String>,
    /// `key=value,…`, keys from the AddImageLabels list.
    pub labels: Option<String>,
}

fn text(v: &Value, field: &str) -> Option<String> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn page_of(body: &Value, list: &str, id_field: &str) -> Page {
    let items = body
        .get(list)
        .and_then(Value::as_array)
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| {
            Some(Listed {
                id: text(v, id_field)?,
                name: text(v, "Name").unwrap_or_default(),
                workspace_id: text(v, "WorkspaceId"),
                labels: to_map(parse_labels(v.get("Labels"))),
            })
        })
        .collect();
    Page {
        items,
        total_count: body.get("TotalCount").and_then(Value::as_u64),
    }
}

fn paged(call: Call, page_number: u32, page_size: u32) -> Call {
    call.query("PageNumber", page_number.to_string())
        .query("PageSize", page_size.to_string())
}

impl PaiClient {
    /// ListImages with `Verbose=true`, so each image carries its labels.
    pub async fn list_images_page(
        &self,
        filter: &ImageFilter,
        page_number: u32,
        page_size: u32,
    ) -> Result<Page, CloudError> {
        let mut call =
            Call::new("ListImages", Method::GET, "/api/v1/images".into()).query("Verbose", "true");
        for (k, v) in [
            ("WorkspaceId", &filter.workspace_id),
            ("Name", &filter.name),
            ("Labels", &filter.labels),
        ] {
            if let Some(v) = v {
                call = call.query(k, v.clone());
            }
        }
        let a = self.call(paged(call, page_number, page_size)).await?;
        Ok(page_of(&a.body, "Images", "ImageId"))
    }

    /// ListDatasets: each dataset carries its labels.
    pub async fn list_datasets_page(
        &self,
        workspace_id: Option<&str>,
        page_number: u32,
        page_size: u32,
    ) -> Result<Page, CloudError> {
        let mut call = Call::new("ListDatasets", Method::GET, "/api/v1/datasets".into());
        if let Some(w) = workspace_id {
            call = call.query("WorkspaceId", w);
        }
        let a = self.call(paged(call, page_number, page_size)).await?;
        Ok(page_of(&a.body, "Datasets", "DatasetId"))
    }

    /// ListDatasetVersions: each version (by name) carries its labels.
    pub async fn list_dataset_versions_page(
        &self,
        dataset_id: &str,
        page_number: u32,
        page_size: u32,
    ) -> Result<Page, CloudError> {
        let call = Call::new(
            "ListDatasetVersions",
            Method::GET,
            format!("{}/versions", dataset_path(dataset_id)),
        );
        let a = self.call(paged(call, page_number, page_size)).await?;
        Ok(page_of(&a.body, "DatasetVersions", "VersionName"))
    }
}
