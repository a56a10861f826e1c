//! The request path every cloud client shares: retry policy around budget
//! around one attempt, and each attempt fetches credentials, signs afresh
//! (a new date, and for PAI a new nonce, since a replay is refused), sends,
//! reads the answer up to [`MAX_RESPONSE_BYTES`] and maps a non-2xx answer
//! to a [`CloudError`]. What differs between clouds (query encoding, headers
//! and signature, error bodies, where the request id is) is a [`Dialect`].

use std::sync::Arc;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::body::{MAX_RESPONSE_BYTES, read_capped};
use super::credentials::{CredentialSource, Credentials};
use super::http::{Endpoint, transport_error};
use super::limiter::BudgetHandle;
use super::region::validate_region;
use super::retry::RetryPolicy;
use super::{CloudError, ErrorKind};

/// One API call before signing.
pub(crate) struct Call {
    pub api: &'static str,
    pub method: Method,
    /// Already percent-encoded.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Headers the call itself sets (IMS's `x-project-id`), signed with the rest.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Call {
    pub fn new(api: &'static str, method: Method, path: String) -> Self {
        Call {
            api,
            method,
            path,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn query(mut self, k: &str, v: impl Into<String>) -> Self {
        self.query.push((k.to_string(), v.into()));
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    pub fn json(self, v: &Value) -> Self {
        self.body(v.to_string().into_bytes())
    }
}

/// A JSON answer with its request id.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub request_id: Option<String>,
    pub body: Value,
}

/// What one cloud does its own way on the shared path.
pub(crate) trait Dialect {
    /// Names the cloud in log lines (`pai call`, `ims call failed`).
    const NAME: &'static str;
    /// The query as sent, encoded and ordered as the signature expects.
    fn query_string(query: &[(String, String)]) -> String;
    /// Every header of one attempt, the signature included.
    fn headers(
        endpoint: &Endpoint,
        call: &Call,
        creds: &Credentials,
    ) -> Result<Vec<(String, String)>, CloudError>;
    /// A non-2xx answer as an error.
    fn map_error(api: &'static str, status: u16, headers: &HeaderMap, body: &[u8]) -> CloudError;
    /// The request id of a 2xx answer.
    fn request_id(body: &Value, headers: &HeaderMap) -> Option<String>;
}

/// Where and as whom a client calls: one account (credential source) in one region.
pub(crate) struct Transport {
    http: reqwest::Client,
    pub endpoint: Endpoint,
    pub region: String,
    creds: Arc<dyn CredentialSource>,
    pub budgets: BudgetHandle,
    retry: RetryPolicy,
}

impl Transport {
    /// Calls to `region`; `endpoint` (operator configuration only) replaces
    /// the region's `default_host`.
    pub fn new(
        http: reqwest::Client,
        region: &str,
        endpoint: Option<&str>,
        default_host: fn(&str) -> String,
        creds: Arc<dyn CredentialSource>,
        budgets: BudgetHandle,
        retry: RetryPolicy,
    ) -> Result<Self, CloudError> {
        validate_region(region).map_err(|reason| {
            CloudError::new(
                ErrorKind::Invalid,
                "client",
                format!("invalid region {region:?}: {reason}"),
            )
        })?;
        let endpoint = match endpoint {
            Some(base) => Endpoint::parse(base)
                .map_err(|m| CloudError::new(ErrorKind::Invalid, "client", m))?,
            None => Endpoint::https(&default_host(region)),
        };
        Ok(Transport {
            http,
            endpoint,
            region: region.to_string(),
            creds,
            budgets,
            retry,
        })
    }

    /// `Debug` of the client owning this transport, without secrets.
    pub fn debug_as(&self, client: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(client)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }

    /// `call` under the retry policy, each attempt through its API's budget.
    pub async fn call<D: Dialect>(&self, call: Call) -> Result<Answer, CloudError> {
        self.retry
            .run(|attempt| {
                self.budgets
                    .send(call.api, self.attempt::<D>(&call, attempt))
            })
            .await
    }

    async fn attempt<D: Dialect>(&self, call: &Call, attempt: u32) -> Result<Answer, CloudError> {
        let creds = self.creds.get().await.map_err(|e| e.into_cloud(call.api))?;
        let url = self
            .endpoint
            .checked_url(call.api, &call.path, &D::query_string(&call.query))?;
        let headers = D::headers(&self.endpoint, call, &creds)?;
        let mut req = self.http.request(call.method.clone(), url);
        for (n, v) in &headers {
            req = req.header(n.as_str(), v.as_str());
        }
        if let Some(body) = &call.body {
            req = req.body(body.clone());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(call.api, &e))?;
        let status = resp.status().as_u16();
        let resp_headers = resp.headers().clone();
        let bytes = read_capped(resp, call.api, MAX_RESPONSE_BYTES).await?;
        if !(200..300).contains(&status) {
            let err = D::map_error(call.api, status, &resp_headers, &bytes);
            tracing::debug!(api = call.api, attempt, status, code = %err.code, request_id = err.request_id.as_deref().unwrap_or(""), "{} call failed", D::NAME);
            return Err(err);
        }
        let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| CloudError {
                http_status: Some(status),
                ..CloudError::new(ErrorKind::Network, call.api, "answer is not JSON")
            })?
        };
        let request_id = D::request_id(&body, &resp_headers);
        tracing::debug!(
            api = call.api,
            attempt,
            status,
            request_id = request_id.as_deref().unwrap_or(""),
            "{} call",
            D::NAME
        );
        Ok(Answer { request_id, body })
    }
}
