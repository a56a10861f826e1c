//! How a cloud call failed ([`CloudError`], [`ErrorKind`]), shared by every
//! client, and the JSON field reading their error and answer parsers share.

use std::fmt;
use std::time::Duration;

/// How a cloud call failed, so callers can decide between retrying,
/// stalling and reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The image, dataset or version does not exist.
    NotFound,
    /// Authenticated but not allowed (403).
    AccessDenied,
    /// The credentials are wrong: unknown key, bad signature, expired token.
    Unauthenticated,
    /// The request broke a rule of the API (bad parameter, limit exceeded).
    Invalid,
    /// Flow control; retry after a pause.
    Throttled,
    /// 5xx from the cloud.
    Server,
    /// No answer: connection refused or dropped, timeout, non-JSON reply.
    Network,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::NotFound,
        ErrorKind::AccessDenied,
        ErrorKind::Unauthenticated,
        ErrorKind::Invalid,
        ErrorKind::Throttled,
        ErrorKind::Server,
        ErrorKind::Network,
    ];

    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled | ErrorKind::Server | ErrorKind::Network
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Server => "server",
            ErrorKind::Network => "network",
        }
    }
}

/// A failed cloud call, carrying what the cloud said. Never holds a secret
/// or a signature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct CloudError {
    pub kind: ErrorKind,
    /// The cloud's error code (`InvalidParameter`, `IMG.0027`, …), empty for network errors.
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
    pub http_status: Option<u16>,
    /// How long the cloud asked us to wait (throttling).
    pub retry_after: Option<Duration>,
    /// The API call that failed (`AddImageLabels`, …).
    pub api: &'static str,
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.api)?;
        if let Some(status) = self.http_status {
            write!(f, " (HTTP {status}")?;
            if !self.code.is_empty() {
                write!(f, ", {}", self.code)?;
            }
            write!(f, ")")?;
        } else if !self.code.is_empty() {
            write!(f, " ({})", self.code)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " [RequestId {id}]")?;
        }
        Ok(())
    }
}

impl CloudError {
    pub fn new(kind: ErrorKind, api: &'static str, message: impl Into<String>) -> Self {
        CloudError {
            kind,
            code: String::new(),
            message: message.into(),
            request_id: None,
            http_status: None,
            retry_after: None,
            api,
        }
    }
}

/// A JSON scalar as text; anything else (absent, null, object) is `None`.
pub(crate) fn scalar(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
