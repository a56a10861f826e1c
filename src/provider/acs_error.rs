//! Alibaba Cloud (ACS) error answers (`{"RequestId","Code","Message",…}`) mapped to
//! [`ErrorKind`]. PAI and STS (the RRSA exchange,
//! `GetCallerIdentity`) answer in this shape.

use reqwest::header::HeaderMap;

use crate::provider::error::scalar;
use crate::provider::retry::parse_retry_after_millis;
use crate::provider::{CloudError, ErrorKind};

/// Header with the pause, in milliseconds, that PAI asks for when throttling.
pub(crate) const RETRY_AFTER_HEADER: &str = "x-acs-retry-after";

/// Codes that mean the credentials themselves are wrong, whatever the status.
fn is_auth_code(code: &str) -> bool {
    code == "SignatureDoesNotMatch"
        || code == "IncompleteSignature"
        || code == "InvalidApiKey"
        || code == "MissingSecurityToken"
        || code.starts_with("InvalidAccessKeyId")
        || code.starts_with("InvalidSecurityToken")
        || code.starts_with("InvalidTimeStamp")
        || code.starts_with("InvalidBearerToken")
}

fn is_not_found_code(code: &str) -> bool {
    code.contains("NotFound") || code.contains("NotExist")
}

/// Maps a non-2xx answer. `body` is not echoed beyond the cloud's `Message`.
pub fn map_error(api: &'static str, status: u16, headers: &HeaderMap, body: &[u8]) -> CloudError {
    let retry_after = headers
        .get(RETRY_AFTER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after_millis);
    let header_request_id = headers
        .get("x-acs-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let parsed = serde_json::from_slice::<serde_json::Value>(body).ok();
    let Some(obj) = parsed.as_ref().and_then(|v| v.as_object()) else {
        // A throttling hint is meaningful even on a non-JSON page.
        let kind = if retry_after.is_some() || status == 429 {
            ErrorKind::Throttled
        } else {
            ErrorKind::Network
        };
        return CloudError {
            kind,
            code: String::new(),
            message: format!("non-JSON answer with HTTP status {status}"),
            request_id: header_request_id,
            http_status: Some(status),
            retry_after,
            api,
        };
    };
    let code = scalar(obj.get("Code")).unwrap_or_default();
    let kind = if status == 429 || code.starts_with("Throttling") || retry_after.is_some() {
        ErrorKind::Throttled
    } else if is_auth_code(&code) || status == 401 {
        ErrorKind::Unauthenticated
    } else if status == 403 || code.starts_with("Forbidden") || code == "NoPermission" {
        ErrorKind::AccessDenied
    } else if code.starts_with("InvalidAction") || code.starts_with("InvalidVersion") {
        // No such API at this endpoint: a configuration error, never a
        // missing object (a removal must not count it as done).
        ErrorKind::Invalid
    } else if status == 404 || is_not_found_code(&code) {
        ErrorKind::NotFound
    } else if status >= 500 {
        ErrorKind::Server
    } else {
        ErrorKind::Invalid
    };
    CloudError {
        kind,
        code,
        message: scalar(obj.get("Message")).unwrap_or_else(|| format!("HTTP status {status}")),
        request_id: scalar(obj.get("RequestId")).or(header_request_id),
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

    fn map(status: u16, code: &str, retry: Option<&str>) -> CloudError {
        let mut h = HeaderMap::new();
        if let Some(r) = retry {
            h.insert(RETRY_AFTER_HEADER, HeaderValue::from_str(r).unwrap());
        }
        let body = serde_json::json!({"RequestId": "req-1", "Code": code, "Message": "msg", "HostId": "h"});
        map_error("AddImageLabels", status, &h, body.to_string().as_bytes())
    }

    #[test]
    fn kinds() {
        let cases = [
            (400, "InvalidParameter", ErrorKind::Invalid),
            (400, "MissingParameter", ErrorKind::Invalid),
            (400, "SignatureDoesNotMatch", ErrorKind::Unauthenticated),
            (
                404,
                "InvalidAccessKeyId.NotFound",
                ErrorKind::Unauthenticated,
            ),
            (
                400,
                "InvalidSecurityToken.Expired",
                ErrorKind::Unauthenticated,
            ),
            (400, "InvalidTimeStamp.Expired", ErrorKind::Unauthenticated),
            (401, "Whatever", ErrorKind::Unauthenticated),
            (403, "Forbidden.RAM", ErrorKind::AccessDenied),
            (403, "NoPermission", ErrorKind::AccessDenied),
            (404, "ImageNotFound", ErrorKind::NotFound),
            (404, "Image.NotFound", ErrorKind::NotFound),
            (404, "InvalidAction.NotFound", ErrorKind::Invalid),
            (400, "MissingSecurityToken", ErrorKind::Unauthenticated),
            (400, "Dataset.NotExist", ErrorKind::NotFound),
            (400, "Throttling.User", ErrorKind::Throttled),
            (429, "TooMany", ErrorKind::Throttled),
            (500, "InternalError", ErrorKind::Server),
            (503, "ServiceUnavailable", ErrorKind::Server),
        ];
        for (status, code, kind) in cases {
            let e = map(status, code, None);
            assert_eq!(e.kind, kind, "{status} {code}");
            assert_eq!(e.code, code);
            assert_eq!(e.request_id.as_deref(), Some("req-1"));
            assert_eq!(e.http_status, Some(status));
            assert_eq!(e.message, "msg");
        }
    }

    #[test]
    fn retry_after_header_is_millis_and_means_throttled() {
        let e = map(400, "Throttling.User", Some("1500"));
        assert_eq!(e.kind, ErrorKind::Throttled);
        assert_eq!(e.retry_after, Some(Duration::from_millis(1500)));
        let e = map(400, "SomethingElse", Some("20"));
        assert_eq!(e.kind, ErrorKind::Throttled);
        assert_eq!(map(400, "Throttling.User", Some("junk")).retry_after, None);
    }

    #[test]
    fn non_json_is_network() {
        let mut h = HeaderMap::new();
        h.insert("x-acs-request-id", HeaderValue::from_static("hdr-req"));
        let e = map_error("GetImage", 502, &h, b"<html>bad gateway</html>");
        assert_eq!(e.kind, ErrorKind::Network);
        assert_eq!(e.http_status, Some(502));
        assert_eq!(e.request_id.as_deref(), Some("hdr-req"));
        assert!(!e.message.contains("html"));
        assert_eq!(
            map_error("GetImage", 400, &HeaderMap::new(), b"[1,2]").kind,
            ErrorKind::Network
        );
        assert_eq!(
            map_error("GetImage", 400, &HeaderMap::new(), b"").kind,
            ErrorKind::Network
        );
    }

    #[test]
    fn json_without_fields() {
        let e = map_error("GetImage", 500, &HeaderMap::new(), b"{}");
        assert_eq!(e.kind, ErrorKind::Server);
        assert_eq!(e.code, "");
        assert_eq!(e.message, "HTTP status 500");
        let e = map_error(
            "GetImage",
            400,
            &HeaderMap::new(),
            br#"{"Code": 12, "Message": null}"#,
        );
        assert_eq!(e.code, "12");
    }
}
