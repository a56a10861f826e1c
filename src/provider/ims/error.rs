//! Huawei Cloud error answers mapped to [`ErrorKind`]. IMS itself answers
//! `{"error":{"code","message"}}`; the API gateway and other services use
//! `error_code`/`error_msg`, `errorCode`/`errorMsg` or `code`/`message`, and
//! the SDK accepts all of them, so do we.

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::provider::error::scalar;
use crate::provider::retry::parse_retry_after_secs;
use crate::provider::{CloudError, ErrorKind};

/// The request id Huawei Cloud puts on every answer.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn code_and_message(v: &Value) -> (Option<String>, Option<String>) {
    if let Some(e) = v.get("error").filter(|e| e.is_object()) {
        return (scalar(e.get("code")), scalar(e.get("message")));
    }
    for (c, m) in [
        ("error_code", "error_msg"),
        ("errorCode", "errorMsg"),
        ("code", "message"),
    ] {
        let (code, msg) = (scalar(v.get(c)), scalar(v.get(m)));
        if code.is_some() || msg.is_some() {
            return (code, msg);
        }
    }
    (None, None)
}

/// Maps a non-2xx answer by status; the body only supplies code and message.
pub fn map_error(api: &'static str, status: u16, headers: &HeaderMap, body: &[u8]) -> CloudError {
    let parsed = serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object);
    let (code, message) = parsed
        .as_ref()
        .map(code_and_message)
        .unwrap_or((None, None));
    let gateway = code.as_deref().is_some_and(|c| c.starts_with("APIGW."));
    let kind = match status {
        // The gateway's 404 means no such API at this endpoint: a
        // configuration error, never a missing image (a removal must not
        // count it as done).
        404 if gateway => ErrorKind::Invalid,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::AccessDenied,
        404 => ErrorKind::NotFound,
        429 => ErrorKind::Throttled,
        400..=499 => ErrorKind::Invalid,
        500.. => ErrorKind::Server,
        // 1xx/3xx where an answer was expected: nothing usable came back.
        _ => ErrorKind::Network,
    };
    let retry_after = if kind == ErrorKind::Throttled {
        headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after_secs)
    } else {
        None
    };
    let message = message.unwrap_or_else(|| {
        if parsed.is_some() {
            format!("HTTP status {status}")
        } else {
            format!("non-JSON answer with HTTP status {status}")
        }
    });
    CloudError {
        kind,
        code: code.unwrap_or_default(),
        message,
        request_id: request_id(headers)
            .or_else(|| parsed.as_ref().and_then(|v| scalar(v.get("request_id")))),
        http_status: Some(status),
        retry_after,
        api,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::header::HeaderValue;

    use super::*;

    fn hdrs(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn body_shapes() {
        let h = hdrs(&[("x-request-id", "rid")]);
        for body in [
            r#"{"error":{"code":"IMG.0027","message":"m"}}"#,
            r#"{"error_code":"IMG.0027","error_msg":"m"}"#,
            r#"{"errorCode":"IMG.0027","errorMsg":"m"}"#,
            r#"{"code":"IMG.0027","message":"m"}"#,
        ] {
            let e = map_error("BatchAddOrDeleteTags", 400, &h, body.as_bytes());
            assert_eq!(
                (
                    e.kind,
                    e.code.as_str(),
                    e.message.as_str(),
                    e.request_id.as_deref()
                ),
                (ErrorKind::Invalid, "IMG.0027", "m", Some("rid")),
                "{body}"
            );
        }
        let e = map_error(
            "X",
            400,
            &HeaderMap::new(),
            br#"{"error_code":"APIGW.0101","error_msg":"m","request_id":"body-rid"}"#,
        );
        assert_eq!(e.request_id.as_deref(), Some("body-rid"));
    }

    #[test]
    fn kinds_by_status() {
        let body = br#"{"error":{"code":"C","message":"m"}}"#;
        for (status, kind) in [
            (400, ErrorKind::Invalid),
            (401, ErrorKind::Unauthenticated),
            (403, ErrorKind::AccessDenied),
            (404, ErrorKind::NotFound),
            (409, ErrorKind::Invalid),
            (429, ErrorKind::Throttled),
            (500, ErrorKind::Server),
            (503, ErrorKind::Server),
            (302, ErrorKind::Network),
        ] {
            assert_eq!(
                map_error("X", status, &HeaderMap::new(), body).kind,
                kind,
                "{status}"
            );
        }
    }

    #[test]
    fn throttling_retry_after_is_seconds() {
        let e = map_error("X", 429, &hdrs(&[("retry-after", "3")]), b"{}");
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(
            map_error("X", 400, &hdrs(&[("retry-after", "3")]), b"{}").retry_after,
            None
        );
    }

    #[test]
    fn non_json_maps_by_status() {
        let e = map_error("X", 502, &HeaderMap::new(), b"<html>");
        assert_eq!(e.kind, ErrorKind::Server);
        assert_eq!(e.code, "");
        assert!(e.message.contains("502"));
    }
}
