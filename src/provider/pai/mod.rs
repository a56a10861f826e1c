//! Alibaba Cloud PAI AIWorkSpace client (API 2021-02-04, ROA style, JSON),
//! signing with ACS3-HMAC-SHA256 or sending a bearer token.
//!
//! Calls take the shared request path (`provider::request`: retry policy,
//! the API's budget per main account and region); each attempt is signed
//! afresh (new date and nonce), because AIWorkSpace rejects a replayed nonce.

use std::sync::Arc;

use jiff::Timestamp;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::acs_error;
use super::credentials::{CredentialError, CredentialSource, Credentials};
use super::error::scalar;
use super::http::Endpoint;
use super::limiter::BudgetHandle;
use super::request::{Call, Dialect, Transport};
use super::retry::RetryPolicy;
use super::{CloudError, ErrorKind, Labels, Target, WriteOutcome};
use crate::sign::{self, RequestParts, acs3};

mod labels;
pub mod list;

pub use labels::call_limits;

pub use super::request::Answer;

pub const API_VERSION: &str = "2021-02-04";
/// AddImageLabels accepts at most this many labels.
pub(crate) const MAX_ADD_LABELS: usize = 100;
/// Keys per DeleteDatasetLabels / DeleteDatasetVersionLabels call: they go
/// in one comma-separated query value, and request paths are capped at 8192
/// characters.
pub(crate) const MAX_DATASET_REMOVE_KEYS: usize = 20;

const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The default endpoint of a region.
pub(crate) fn default_host(region: &str) -> String {
    format!("aiworkspace.{region}.aliyuncs.com")
}

/// One label as AIWorkSpace reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub key: String,
    pub value: String,
}

/// Parameters of ListImageLabels; all optional, as in the API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListImageLabelsRequest {
    pub image_id: Option<String>,
    pub workspace_id: Option<String>,
    /// Sent comma-separated as `LabelKeys`.
    pub label_keys: Vec<String>,
    /// Sent as is, e.g. `system.framework=XGBoost 1.6.0,system.official=true`.
    pub label_filter: Option<String>,
    pub region: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListImageLabelsResponse {
    pub request_id: Option<String>,
    pub labels: Vec<Label>,
    pub total_count: Option<u64>,
}

/// A client for one account (credential source) in one region.
pub struct PaiClient {
    transport: Transport,
}

impl std::fmt::Debug for PaiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.transport.debug_as("PaiClient", f)
    }
}

fn labels_body(labels: &[(String, String)]) -> Value {
    let list: Vec<Value> = labels
        .iter()
        .map(|(k, v)| serde_json::json!({"Key": k, "Value": v}))
        .collect();
    serde_json::json!({ "Labels": list })
}

/// `Labels` of an answer: `[{"Key","Value"}]`; entries without a key are
/// skipped, a missing or null value reads as empty.
pub fn parse_labels(v: Option<&Value>) -> Vec<Label> {
    let Some(Value::Array(items)) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let key = scalar(item.get("Key"))?;
            Some(Label {
                key,
                value: scalar(item.get("Value")).unwrap_or_default(),
            })
        })
        .collect()
}

fn to_map(labels: Vec<Label>) -> Labels {
    labels.into_iter().map(|l| (l.key, l.value)).collect()
}

fn image_path(image_id: &str) -> String {
    format!("/api/v1/images/{}", sign::encode(image_id))
}

fn dataset_path(dataset_id: &str) -> String {
    format!("/api/v1/datasets/{}", sign::encode(dataset_id))
}

fn version_path(dataset_id: &str, version: &str) -> String {
    format!(
        "{}/versions/{}",
        dataset_path(dataset_id),
        sign::encode(version)
    )
}

fn comma_joined(api: &'static str, keys: &[String]) -> Result<String, CloudError> {
    // The API splits on commas: such a key cannot be expressed.
    if let Some(k) = keys.iter().find(|k| k.contains(',')) {
        return Err(CloudError::new(
            ErrorKind::Invalid,
            api,
            format!("label key {k:?} contains a comma, which {api} cannot express"),
        ));
    }
    Ok(keys.join(","))
}

fn wrong_target(api: &'static str, target: &Target) -> CloudError {
    CloudError::new(
        ErrorKind::Invalid,
        api,
        format!("the pai client cannot manage {target}"),
    )
}

/// How PAI calls are signed (ACS3-HMAC-SHA256 or a bearer token) and answered.
struct PaiWire;

impl Dialect for PaiWire {
    const NAME: &'static str = "pai";

    fn query_string(query: &[(String, String)]) -> String {
        acs3::canonical_query(query)
    }

    fn headers(
        endpoint: &Endpoint,
        call: &Call,
        creds: &Credentials,
    ) -> Result<Vec<(String, String)>, CloudError> {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        headers_for(endpoint, call, creds, Timestamp::now(), &nonce)
    }

    fn map_error(api: &'static str, status: u16, headers: &HeaderMap, body: &[u8]) -> CloudError {
        acs_error::map_error(api, status, headers, body)
    }

    fn request_id(body: &Value, headers: &HeaderMap) -> Option<String> {
        scalar(body.get("RequestId")).or_else(|| {
            headers
                .get("x-acs-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
    }
}

/// Every header of one attempt, the signature included. Pure: the date and
/// nonce come from the caller.
fn headers_for(
    endpoint: &Endpoint,
    call: &Call,
    creds: &Credentials,
    date: Timestamp,
    nonce: &str,
) -> Result<Vec<(String, String)>, CloudError> {
    let body = call.body.as_deref().unwrap_or_default();
    let payload_hash = sign::sha256_hex(body);
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), endpoint.host.clone()),
        ("x-acs-action".into(), call.api.into()),
        ("x-acs-version".into(), API_VERSION.into()),
        ("x-acs-date".into(), acs3::format_date(date)),
        ("x-acs-signature-nonce".into(), nonce.into()),
        ("accept".into(), "application/json".into()),
        ("x-acs-content-sha256".into(), payload_hash.clone()),
    ];
    if call.body.is_some() {
        headers.push(("content-type".into(), JSON_CONTENT_TYPE.into()));
    }
    match creds {
        Credentials::AccessKey {
            id,
            secret,
            security_token,
        } => {
            if let Some(token) = security_token {
                headers.push(("x-acs-accesskey-id".into(), id.clone()));
                headers.push(("x-acs-security-token".into(), token.clone()));
            }
            let signed = acs3::default_signed_headers(&headers);
            let parts = RequestParts {
                method: call.method.as_str(),
                path: &format!("{}{}", endpoint.prefix, call.path),
                query: &call.query,
                headers: &headers,
                payload_hash: &payload_hash,
            };
            let s = acs3::sign(&parts, id, secret, &signed)
                .map_err(|e| CloudError::new(ErrorKind::Invalid, call.api, e.to_string()))?;
            headers.push(("authorization".into(), s.authorization));
        }
        Credentials::Bearer(token) => {
            headers.push(("x-acs-bearer-token".into(), token.clone()));
            headers.push(("x-acs-signature-type".into(), "BEARERTOKEN".into()));
        }
        other => {
            return Err(CredentialError::WrongKind(other.kind_name(), "pai").into_cloud(call.api));
        }
    }
    Ok(headers)
}

impl PaiClient {
    /// A client for `region`; `endpoint` (operator configuration only)
    /// replaces the region's default host.
    pub fn new(
        http: reqwest::Client,
        region: &str,
        endpoint: Option<&str>,
        creds: Arc<dyn CredentialSource>,
        budgets: BudgetHandle,
        retry: RetryPolicy,
    ) -> Result<Self, CloudError> {
        Ok(PaiClient {
            transport: Transport::new(http, region, endpoint, default_host, creds, budgets, retry)?,
        })
    }

    pub fn region(&self) -> &str {
        &self.transport.region
    }

    #[cfg(test)]
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.transport.endpoint
    }

    /// The shared budgets (one per API of the main account) this client draws from.
    #[cfg(test)]
    pub(crate) fn budgets(&self) -> &BudgetHandle {
        &self.transport.budgets
    }

    async fn call(&self, call: Call) -> Result<Answer, CloudError> {
        self.transport.call::<PaiWire>(call).await
    }

    /// GetImage: the image's full description.
    pub async fn get_image(
        &self,
        image_id: &str,
        verbose: Option<bool>,
    ) -> Result<Answer, CloudError> {
        let mut call = Call::new("GetImage", Method::GET, image_path(image_id));
        if let Some(v) = verbose {
            call = call.query("Verbose", v.to_string());
        }
        self.call(call).await
    }

    /// ListImageLabels with any of its filters.
    pub async fn list_image_labels(
        &self,
        req: &ListImageLabelsRequest,
    ) -> Result<ListImageLabelsResponse, CloudError> {
        let mut call = Call::new(
            "ListImageLabels",
            Method::GET,
            "/api/v1/image/labels".into(),
        );
        if let Some(v) = &req.image_id {
            call = call.query("ImageId", v.clone());
        }
        if let Some(v) = &req.workspace_id {
            call = call.query("WorkspaceId", v.clone());
        }
        if !req.label_keys.is_empty() {
            call = call.query("LabelKeys", req.label_keys.join(","));
        }
        if let Some(v) = &req.label_filter {
            call = call.query("LabelFilter", v.clone());
        }
        if let Some(v) = &req.region {
            call = call.query("Region", v.clone());
        }
        let a = self.call(call).await?;
        Ok(ListImageLabelsResponse {
            labels: parse_labels(a.body.get("Labels")),
            total_count: a.body.get("TotalCount").and_then(Value::as_u64),
            request_id: a.request_id,
        })
    }

    /// AddImageLabels (at most [`MAX_ADD_LABELS`]).
    pub async fn add_image_labels(
        &self,
        image_id: &str,
        labels: &[(String, String)],
    ) -> Result<WriteOutcome, CloudError> {
        const API: &str = "AddImageLabels";
        if labels.len() > MAX_ADD_LABELS {
            return Err(CloudError::new(
                ErrorKind::Invalid,
                API,
                format!(
                    "{} labels in one call; the limit is {MAX_ADD_LABELS}",
                    labels.len()
                ),
            ));
        }
        let call = Call::new(
            API,
            Method::POST,
            format!("{}/labels", image_path(image_id)),
        )
        .json(&labels_body(labels));
        Ok(WriteOutcome {
            request_id: self.call(call).await?.request_id,
        })
    }

    /// RemoveImageLabels: one key.
    pub async fn remove_image_label(
        &self,
        image_id: &str,
        key: &str,
    ) -> Result<WriteOutcome, CloudError> {
        let call = Call::new(
            "RemoveImageLabels",
            Method::DELETE,
            format!("{}/labels/{}", image_path(image_id), sign::encode(key)),
        );
        Ok(WriteOutcome {
            request_id: self.call(call).await?.request_id,
        })
    }

    /// GetDataset: the dataset's description (its `Labels` among others).
    pub async fn get_dataset(&self, dataset_id: &str) -> Result<Answer, CloudError> {
        self.call(Call::new(
            "GetDataset",
            Method::GET,
            dataset_path(dataset_id),
        ))
        .await
    }

    pub async fn create_dataset_labels(
        &self,
        dataset_id: &str,
        labels: &[(String, String)],
    ) -> Result<WriteOutcome, CloudError> {
        let call = Call::new(
            "CreateDatasetLabels",
            Method::POST,
            format!("{}/labels", dataset_path(dataset_id)),
        )
        .json(&labels_body(labels));
        Ok(WriteOutcome {
            request_id: self.call(call).await?.request_id,
        })
    }

    pub async fn delete_dataset_labels(
        &self,
        dataset_id: &str,
        keys: &[String],
    ) -> Result<WriteOutcome, CloudError> {
        const API: &str = "DeleteDatasetLabels";
        let call = Call::new(
            API,
            Method::DELETE,
            format!("{}/labels", dataset_path(dataset_id)),
        )
        .query("LabelKeys", comma_joined(API, keys)?);
        Ok(WriteOutcome {
            request_id: self.call(call).await?.request_id,
        })
    }

    /// GetDatasetVersion: the version's description (its `Labels` among others).
    pub async fn get_dataset_version(
        &self,
        dataset_id: &str,
        version: &str,
    ) -> Result<Answer, CloudError> {
        self.call(Call::new(
            "GetDatasetVersion",
            Method::GET,
            version_path(dataset_id, version),
        ))
        .await
    }

    pub async fn create_dataset_version_labels(
        &self,
        dataset_id: &str,
        version: &str,
        labels: &[(String, String)],
    ) -> Result<WriteOutcome, CloudError> {
        let call = Call::new(
            "CreateDatasetVersionLabels",
            Method::PUT,
            format!("{}/labels", version_path(dataset_id, version)),
        )
        .json(&labels_body(labels));
        Ok(WriteOutcome {
            request_id: self.call(call).await?.request_id,
        })
    }

    pub async fn delete_dataset_version_labels(
        &self,
        dataset_id: &str,
        version: &str,
        keys: &[String],
    ) -> Result<WriteOutcome, CloudError> {
        const API: &str = "DeleteDatasetVersionLabels";
        let call = Call::new(
            API,
            Method::DELETE,
            format!("{}/labels", version_path(dataset_id, version)),
        )
        .query("Keys", comma_joined(API, keys)?);
        Ok(WriteOutcome {
            request_id: self.call(call).await?.request_id,
        })
    }
}

#[cfg(test)]
mod tests;
