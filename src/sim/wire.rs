//! The parts of a request every API handler needs, and the two error shapes:
//! Alibaba's (`{"RequestId","Code","Message","HostId","Recommend"}`) and
//! Huawei's (`{"error":{"code","message"}}` from IMS itself,
//! `{"error_code","error_msg","request_id"}` from its API gateway).

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Largest request body accepted; label requests are a few kilobytes.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What the simulator wrote into an error response, read back by the
/// dispatcher to count the call.
#[derive(Clone, Debug)]
pub struct ErrorMeta {
    pub code: String,
    pub throttled: bool,
}

/// A request with its body read, as the API handlers see it.
pub struct ApiRequest {
    pub method: Method,
    /// The path exactly as sent (still percent-encoded).
    pub path: String,
    /// The query, form-decoded (`+` and `%20` both become a space).
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub request_id: String,
}

impl ApiRequest {
    pub fn new(
        method: Method,
        path: String,
        raw_query: String,
        headers: HeaderMap,
        body: Bytes,
        request_id: String,
    ) -> Self {
        let query = crate::sign::decode_query(&raw_query);
        ApiRequest {
            method,
            path,
            query,
            headers,
            body,
            request_id,
        }
    }

    /// The first value of a query parameter; empty values count as absent.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A header as text; a header that is not valid text counts as absent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The path split on `/` with each segment percent-decoded; `None` when a
    /// segment is not UTF-8 after decoding.
    pub fn segments(&self) -> Option<Vec<String>> {
        self.path
            .trim_start_matches('/')
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .ok()
                    .map(|c| c.into_owned())
            })
            .collect()
    }
}

/// A new PAI-style request id (upper-case UUID, as Alibaba Cloud sends).
pub fn pai_request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

/// A new IMS-style request id (32 hex digits).
pub fn ims_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    resp
}

fn set_header(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

// ---------------- Alibaba Cloud (PAI, STS) ----------------

/// An Alibaba Cloud API error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcsError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Sent as `x-acs-retry-after` (milliseconds); the SDK raises its
    /// throttling exception only when this header is present.
    pub retry_after_ms: Option<u64>,
}

impl AcsError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        AcsError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: code.to_string(),
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidParameter", message)
    }

    pub fn missing(name: &str) -> Self {
        Self::new(
            400,
            "MissingParameter",
            format!(
                "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
            ),
        )
    }

    /// Flow control. The simulator answers 400, the status Alibaba Cloud's
    /// gateway documents for `Throttling.User`.
    pub fn throttled(retry_after_ms: u64) -> Self {
        AcsError {
            retry_after_ms: Some(retry_after_ms.max(1)),
            ..Self::new(
                400,
                "Throttling.User",
                "Request was denied due to user flow control.",
            )
        }
    }

    pub fn server_error(status: u16) -> Self {
        if status == 503 {
            Self::new(
                503,
                "ServiceUnavailable",
                "The request has failed due to a temporary failure of the server.",
            )
        } else {
            Self::new(
                500,
                "InternalError",
                "The request processing has failed due to some unknown error, exception or failure.",
            )
        }
    }

    pub fn into_response(self, request_id: &str, host: &str) -> Response {
        let body = json!({
            "RequestId": request_id,
            "Code": self.code,
            "Message": self.message,
            "HostId": host,
            "Recommend": format!("https://api.aliyun.com/troubleshoot?q={}&product=AIWorkSpace&requestId={}", self.code, request_id),
        });
        let mut resp = json_response(self.status, &body);
        set_header(&mut resp, "x-acs-request-id", request_id);
        if let Some(ms) = self.retry_after_ms {
            set_header(&mut resp, "x-acs-retry-after", &ms.to_string());
        }
        resp.extensions_mut().insert(ErrorMeta {
            code: self.code,
            throttled: self.retry_after_ms.is_some(),
        });
        resp
    }
}

/// A successful Alibaba Cloud answer: the body object plus `RequestId`.
pub fn acs_ok(request_id: &str, mut body: Value) -> Response {
    if let Value::Object(map) = &mut body {
        map.insert("RequestId".into(), Value::String(request_id.to_string()));
    }
    let mut resp = json_response(StatusCode::OK, &body);
    set_header(&mut resp, "x-acs-request-id", request_id);
    resp
}

// ---------------- Huawei Cloud (IMS) ----------------

/// A Huawei Cloud error, from IMS or from the API gateway in front of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Gateway errors (authentication, throttling, unknown API) use the
    /// gateway's flat shape; service errors use IMS's nested one.
    pub gateway: bool,
}

impl HwError {
    pub fn ims(status: u16, code: &str, message: impl Into<String>) -> Self {
        HwError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: code.into(),
            message: message.into(),
            gateway: false,
        }
    }

    pub fn gateway(status: u16, code: &str, message: impl Into<String>) -> Self {
        HwError {
            gateway: true,
            ..Self::ims(status, code, message)
        }
    }

    pub fn unauthenticated(detail: &str) -> Self {
        Self::gateway(
            401,
            "APIGW.0301",
            format!("Incorrect IAM authentication information: {detail}"),
        )
    }

    /// The gateway's flow-control answer.
    pub fn throttled() -> Self {
        Self::gateway(
            429,
            "APIGW.0308",
            "The throttling threshold has been reached: policy user over ratelimit",
        )
    }

    pub fn server_error(status: u16) -> Self {
        if status == 503 {
            Self::ims(503, "IMG.0503", "The service is temporarily unavailable.")
        } else {
            Self::ims(500, "IMG.0500", "An internal error occurred.")
        }
    }

    pub fn into_response(self, request_id: &str) -> Response {
        let body = if self.gateway {
            json!({"error_code": self.code, "error_msg": self.message, "request_id": request_id})
        } else {
            json!({"error": {"code": self.code, "message": self.message}})
        };
        let mut resp = json_response(self.status, &body);
        set_header(&mut resp, "X-Request-Id", request_id);
        resp.extensions_mut().insert(ErrorMeta {
            code: self.code,
            throttled: self.status == StatusCode::TOO_MANY_REQUESTS,
        });
        resp
    }
}

pub fn hw_ok(request_id: &str, status: StatusCode, body: Option<Value>) -> Response {
    let mut resp = match body {
        Some(body) => json_response(status, &body),
        None => (status, Body::empty()).into_response(),
    };
    set_header(&mut resp, "X-Request-Id", request_id);
    resp
}

/// Labels as Alibaba Cloud lists them.
pub fn acs_labels<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Value {
    Value::Array(
        labels
            .into_iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect(),
    )
}
