//! Huawei Cloud IMS v2 client (image tags), signing with SDK-HMAC-SHA256.
//!
//! Calls take the shared request path (`provider::request`: retry policy,
//! the API's budget per main account and region); each attempt is signed
//! afresh with a new `X-Sdk-Date`.

use std::sync::Arc;

use futures::future::BoxFuture;
use jiff::Timestamp;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::credentials::{CredentialError, CredentialSource, Credentials};
use super::error::scalar;
use super::http::Endpoint;
use super::limiter::BudgetHandle;
use super::request::{Answer, Call, Dialect, Transport};
use super::retry::RetryPolicy;
use super::{CallLimits, CloudError, ErrorKind, LabelProvider, Labels, Target, WriteOutcome};
use crate::sign::{self, RequestParts, sdk};

pub mod error;
pub mod list;
#[cfg(test)]
mod tests;

/// Tags one image may carry, and so the most one batch call can usefully hold.
pub(crate) const MAX_TAGS: usize = 10;

const JSON_BODY_CONTENT_TYPE: &str = "application/json;charset=UTF-8";
// The SDK sends (and signs) a content type even on body-less calls.
const NO_BODY_CONTENT_TYPE: &str = "application/json";

/// The default endpoint of a region.
pub(crate) fn default_host(region: &str) -> String {
    format!("ims.{region}.myhuaweicloud.com")
}

/// One image tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListTagsResponse {
    pub request_id: Option<String>,
    pub tags: Vec<Tag>,
}

/// What BatchAddOrDeleteTags does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagAction {
    Create,
    Delete,
}

impl TagAction {
    pub fn as_str(self) -> &'static str {
        match self {
            TagAction::Create => "create",
            TagAction::Delete => "delete",
        }
    }
}

/// A client for one account (credential source) in one region.
pub struct ImsClient {
    transport: Transport,
}

impl std::fmt::Debug for ImsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.transport.debug_as("ImsClient", f)
    }
}

/// How IMS calls are signed (SDK-HMAC-SHA256) and answered.
struct ImsWire;

impl Dialect for ImsWire {
    const NAME: &'static str = "ims";

    fn query_string(query: &[(String, String)]) -> String {
        sdk::canonical_query(query)
    }

    fn headers(
        endpoint: &Endpoint,
        call: &Call,
        creds: &Credentials,
    ) -> Result<Vec<(String, String)>, CloudError> {
        headers_for(endpoint, call, creds, Timestamp::now())
    }

    fn map_error(api: &'static str, status: u16, headers: &HeaderMap, body: &[u8]) -> CloudError {
        error::map_error(api, status, headers, body)
    }

    fn request_id(_body: &Value, headers: &HeaderMap) -> Option<String> {
        error::request_id(headers)
    }
}

/// Every header of one attempt, the signature included. Pure: the date
/// comes from the caller.
fn headers_for(
    endpoint: &Endpoint,
    call: &Call,
    creds: &Credentials,
    date: Timestamp,
) -> Result<Vec<(String, String)>, CloudError> {
    let Credentials::AkSk {
        ak,
        sk,
        security_token,
    } = creds
    else {
        return Err(
            CredentialError::WrongKind(creds.kind_name(), "huaweicloud-ims").into_cloud(call.api),
        );
    };
    let body = call.body.as_deref().unwrap_or_default();
    let payload_hash = sign::sha256_hex(body);
    let content_type = if call.body.is_some() {
        JSON_BODY_CONTENT_TYPE
    } else {
        NO_BODY_CONTENT_TYPE
    };
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), endpoint.host.clone()),
        ("content-type".into(), content_type.into()),
    ];
    // `x-project-id`, set by the call.
    headers.extend(call.headers.iter().cloned());
    headers.push(("x-sdk-date".into(), sdk::format_date(date)));
    if let Some(token) = security_token {
        headers.push(("x-security-token".into(), token.clone()));
    }
    let signed = sdk::default_signed_headers(&headers);
    let path = format!("{}{}", endpoint.prefix, call.path);
    let parts = RequestParts {
        method: call.method.as_str(),
        path: &path,
        query: &call.query,
        headers: &headers,
        payload_hash: &payload_hash,
    };
    let s = sdk::sign(&parts, ak, sk, &signed)
        .map_err(|e| CloudError::new(ErrorKind::Invalid, call.api, e.to_string()))?;
    headers.push(("authorization".into(), s.authorization));
    Ok(headers)
}

/// A call on `project_id`'s resources.
fn project_call(api: &'static str, method: Method, project_id: &str, path: String) -> Call {
    Call::new(api, method, path).header("x-project-id", project_id)
}

fn tags_path(project_id: &str, image_id: &str) -> String {
    format!(
        "/v2/{}/images/{}/tags",
        sign::encode(project_id),
        sign::encode(image_id)
    )
}

/// `tags` of a list answer; entries without a key are skipped, a missing
/// value reads as empty.
pub(crate) fn parse_tags(v: &Value) -> Vec<Tag> {
    let Some(Value::Array(items)) = v.get("tags") else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|t| {
            Some(Tag {
                key: scalar(t.get("key"))?,
                value: scalar(t.get("value")).unwrap_or_default(),
            })
        })
        .collect()
}

fn wrong_target(api: &'static str, target: &Target) -> CloudError {
    CloudError::new(
        ErrorKind::Invalid,
        api,
        format!("the huaweicloud-ims client cannot manage {target}"),
    )
}

impl ImsClient {
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
        Ok(ImsClient {
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

    async fn call(&self, call: Call) -> Result<Answer, CloudError> {
        self.transport.call::<ImsWire>(call).await
    }

    /// The tags of one image.
    pub async fn list_image_tags(
        &self,
        project_id: &str,
        image_id: &str,
    ) -> Result<ListTagsResponse, CloudError> {
        let a = self
            .call(project_call(
                "ListImageTags",
                Method::GET,
                project_id,
                tags_path(project_id, image_id),
            ))
            .await?;
        Ok(ListTagsResponse {
            tags: parse_tags(&a.body),
            request_id: a.request_id,
        })
    }

    /// AddImageTag: adds or overwrites one tag.
    pub async fn add_image_tag(
        &self,
        project_id: &str,
        image_id: &str,
        key: &str,
        value: &str,
    ) -> Result<WriteOutcome, CloudError> {
        let body = json!({"tag": {"key": key, "value": value}})
            .to_string()
            .into_bytes();
        let a = self
            .call(
                project_call(
                    "AddImageTag",
                    Method::POST,
                    project_id,
                    tags_path(project_id, image_id),
                )
                .body(body),
            )
            .await?;
        Ok(WriteOutcome {
            request_id: a.request_id,
        })
    }

    /// BatchAddOrDeleteTags. `create` sends key and value; `delete` sends
    /// keys only, so a tag goes whatever its current value.
    pub async fn batch_add_or_delete_tags(
        &self,
        project_id: &str,
        image_id: &str,
        action: TagAction,
        tags: &[(String, String)],
    ) -> Result<WriteOutcome, CloudError> {
        const API: &str = "BatchAddOrDeleteTags";
        // The API refuses repeated keys in one batch; the last value wins.
        let mut unique: Vec<(&str, &str)> = Vec::with_capacity(tags.len());
        for (k, v) in tags {
            match unique.iter_mut().find(|(uk, _)| uk == k) {
                Some(slot) => slot.1 = v,
                None => unique.push((k, v)),
            }
        }
        let list: Vec<Value> = unique
            .iter()
            .map(|(k, v)| match action {
                TagAction::Create => json!({"key": k, "value": v}),
                TagAction::Delete => json!({"key": k}),
            })
            .collect();
        let body = json!({"action": action.as_str(), "tags": list})
            .to_string()
            .into_bytes();
        let path = format!("{}/action", tags_path(project_id, image_id));
        let a = self
            .call(project_call(API, Method::POST, project_id, path).body(body))
            .await?;
        Ok(WriteOutcome {
            request_id: a.request_id,
        })
    }

    /// DeleteImageTag: removes one tag. Not idempotent: a missing tag is 404
    /// (`ErrorKind::NotFound`, like a missing image;
    /// <https://support.huaweicloud.com/api-ims/ims_03_0619.html>), which is
    /// why the engine removes tags with BatchAddOrDeleteTags instead.
    #[cfg(test)]
    pub(crate) async fn delete_image_tag(
        &self,
        project_id: &str,
        image_id: &str,
        key: &str,
    ) -> Result<WriteOutcome, CloudError> {
        let path = format!("{}/{}", tags_path(project_id, image_id), sign::encode(key));
        let a = self
            .call(project_call(
                "DeleteImageTag",
                Method::DELETE,
                project_id,
                path,
            ))
            .await?;
        Ok(WriteOutcome {
            request_id: a.request_id,
        })
    }

    async fn observe_target(&self, target: &Target) -> Result<Labels, CloudError> {
        let Target::ImsImage {
            project_id,
            image_id,
        } = target
        else {
            return Err(wrong_target("ListImageTags", target));
        };
        Ok(self
            .list_image_tags(project_id, image_id)
            .await?
            .tags
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect())
    }

    async fn batch_target(
        &self,
        target: &Target,
        action: TagAction,
        tags: &[(String, String)],
    ) -> Result<WriteOutcome, CloudError> {
        let Target::ImsImage {
            project_id,
            image_id,
        } = target
        else {
            return Err(wrong_target("BatchAddOrDeleteTags", target));
        };
        let mut out = WriteOutcome::default();
        for chunk in tags.chunks(MAX_TAGS) {
            out = match self
                .batch_add_or_delete_tags(project_id, image_id, action, chunk)
                .await
            {
                Ok(o) => o,
                // Deleting from an image that is gone leaves it without the tags.
                Err(e) if action == TagAction::Delete && e.kind == ErrorKind::NotFound => {
                    WriteOutcome {
                        request_id: e.request_id,
                    }
                }
                Err(e) => return Err(e),
            };
        }
        Ok(out)
    }
}

/// What one IMS call may carry; an image holds at most [`MAX_TAGS`].
pub const CALL_LIMITS: CallLimits = CallLimits {
    add_per_call: MAX_TAGS,
    remove_per_call: MAX_TAGS,
    max_labels_on_object: Some(MAX_TAGS),
};

impl LabelProvider for ImsClient {
    fn limits(&self, _target: &Target) -> CallLimits {
        CALL_LIMITS
    }

    fn observe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Labels, CloudError>> {
        Box::pin(self.observe_target(target))
    }

    fn add<'a>(
        &'a self,
        target: &'a Target,
        labels: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        Box::pin(async move {
            if labels.is_empty() {
                Ok(WriteOutcome::default())
            } else {
                self.batch_target(target, TagAction::Create, labels).await
            }
        })
    }

    fn remove<'a>(
        &'a self,
        target: &'a Target,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(WriteOutcome::default());
            }
            let pairs: Vec<(String, String)> =
                keys.iter().map(|k| (k.clone(), String::new())).collect();
            self.batch_target(target, TagAction::Delete, &pairs).await
        })
    }
}
