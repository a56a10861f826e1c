//! SDK-HMAC-SHA256, the AK/SK signature of Huawei Cloud APIs (IMS). The date
//! (`X-Sdk-Date`) is part of the string to sign; the key is the bare SK.

use std::fmt;

use jiff::Timestamp;

use super::{
    RequestParts, SignError, Signed, canonical_headers, encode, hmac_sha256_hex,
    normalize_signed_headers, percent_decode, sha256_hex, verify_hmac_sha256_hex,
};

const ALGORITHM: &str = "SDK-HMAC-SHA256";
const DATE_HEADER: &str = "x-sdk-date";

/// `X-Sdk-Date` format, always UTC.
const DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Formats `ts` as `X-Sdk-Date` expects (`20260102T030405Z`).
pub fn format_date(ts: Timestamp) -> String {
    ts.strftime(DATE_FORMAT).to_string()
}

/// Parses an `X-Sdk-Date` value; `None` when it is not in the exact format.
pub fn parse_date(s: &str) -> Option<Timestamp> {
    let dt = jiff::civil::DateTime::strptime(DATE_FORMAT, s).ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// Canonical URI: the wire path percent-decoded (so an encoded `/` inside a
/// segment becomes a real separator, as the SDK does), split on `/`, each
/// segment re-encoded keeping unreserved characters and `~`, and a trailing
/// `/` added when missing.
pub(super) fn canonical_uri(path: &str) -> String {
    let decoded = percent_decode(path);
    let mut out = decoded.split('/').map(encode).collect::<Vec<_>>().join("/");
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Canonical query: pairs sorted by key then value, key and value both
/// encoded, joined by `&`.
pub fn canonical_query<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut sorted: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    sorted.sort();
    let parts: Vec<String> = sorted
        .into_iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    parts.join("&")
}

/// `SDK-HMAC-SHA256\n<X-Sdk-Date>\n` + hex SHA-256 of the canonical request.
pub fn string_to_sign(canonical_request: &str, sdk_date: &str) -> String {
    format!(
        "{ALGORITHM}\n{sdk_date}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// Hex HMAC-SHA256 of the string to sign under the SK.
pub fn signature(sk: &str, string_to_sign: &str) -> String {
    hmac_sha256_hex(sk.as_bytes(), string_to_sign.as_bytes())
}

/// The canonical request for `req`, signing exactly the headers in `signed`.
pub fn canonical_request<S: AsRef<str>>(
    req: &RequestParts<'_>,
    signed: &[S],
) -> Result<String, SignError> {
    let names = normalize_signed_headers(signed);
    let headers = canonical_headers(req.headers, &names)?;
    Ok(super::canonical_request(
        req.method,
        &canonical_uri(req.path),
        &canonical_query(req.query),
        &headers,
        &names.join(";"),
        req.payload_hash,
    ))
}

fn sdk_date<'a>(req: &'a RequestParts<'_>) -> Result<&'a str, SignError> {
    req.header(DATE_HEADER)
        .map(str::trim)
        .ok_or_else(|| SignError::MissingSignedHeader(DATE_HEADER.to_string()))
}

/// Signs `req` over the headers named in `signed`; the request must carry
/// `X-Sdk-Date`.
pub fn sign<S: AsRef<str>>(
    req: &RequestParts<'_>,
    ak: &str,
    sk: &str,
    signed: &[S],
) -> Result<Signed, SignError> {
    let names = normalize_signed_headers(signed);
    let canonical_request = canonical_request(req, &names)?;
    let string_to_sign = string_to_sign(&canonical_request, sdk_date(req)?);
    let signature = signature(sk, &string_to_sign);
    let auth = Authorization {
        access_key: ak.to_string(),
        signed_headers: names.clone(),
        signature: signature.clone(),
    };
    Ok(Signed {
        canonical_request,
        string_to_sign,
        signed_headers: names.join(";"),
        signature,
        authorization: auth.to_header_value(),
    })
}

/// Checks a received request against its parsed `Authorization`, following
/// the request's own SignedHeaders list. `Ok(false)` is a mismatch.
pub fn verify(req: &RequestParts<'_>, auth: &Authorization, sk: &str) -> Result<bool, SignError> {
    let canonical_request = canonical_request(req, &auth.signed_headers)?;
    let sts = string_to_sign(&canonical_request, sdk_date(req)?);
    Ok(verify_hmac_sha256_hex(
        sk.as_bytes(),
        sts.as_bytes(),
        &auth.signature,
    ))
}

/// Headers the SDK signs: every header whose name has no `_`. The caller
/// should not pass `Authorization` or `User-Agent` unless it means to sign them.
pub fn default_signed_headers<N: AsRef<str>, V>(headers: &[(N, V)]) -> Vec<String> {
    let names: Vec<&str> = headers
        .iter()
        .map(|(n, _)| n.as_ref())
        .filter(|n| !n.contains('_') && !n.eq_ignore_ascii_case("authorization"))
        .collect();
    normalize_signed_headers(&names)
}

/// The parsed `Authorization: SDK-HMAC-SHA256 Access=.., SignedHeaders=.., Signature=..`.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("access_key", &self.access_key)
            .field("signed_headers", &self.signed_headers)
            .field("signature", &"<redacted>")
            .finish()
    }
}

impl Authorization {
    pub fn to_header_value(&self) -> String {
        format!(
            "{ALGORITHM} Access={}, SignedHeaders={}, Signature={}",
            self.access_key,
            self.signed_headers.join(";"),
            self.signature
        )
    }

    /// Parses a header value; accepts `,` with or without the space.
    pub fn parse(value: &str) -> Result<Self, SignError> {
        let value = value.trim();
        let (alg, rest) = value
            .split_once(' ')
            .ok_or(SignError::MalformedAuthorization("missing algorithm"))?;
        if alg != ALGORITHM {
            return Err(SignError::UnsupportedAlgorithm);
        }
        let (mut access, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (k, v) = part
                .trim()
                .split_once('=')
                .ok_or(SignError::MalformedAuthorization("field without `=`"))?;
            let slot = match k.trim() {
                "Access" => &mut access,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return Err(SignError::MalformedAuthorization("unknown field")),
            };
            if slot.replace(v.trim().to_string()).is_some() {
                return Err(SignError::MalformedAuthorization("repeated field"));
            }
        }
        let access_key = access
            .filter(|c| !c.is_empty())
            .ok_or(SignError::MalformedAuthorization("missing Access"))?;
        let signed = signed
            .filter(|s| !s.is_empty())
            .ok_or(SignError::MalformedAuthorization("missing SignedHeaders"))?;
        let signature = signature
            .filter(|s| !s.is_empty())
            .ok_or(SignError::MalformedAuthorization("missing Signature"))?;
        Ok(Authorization {
            access_key,
            signed_headers: signed
                .split(';')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect(),
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uri_cases() {
        assert_eq!(
            canonical_uri("/v1/cloudimages/tags"),
            "/v1/cloudimages/tags/"
        );
        assert_eq!(
            canonical_uri("/v2/p/images/i/tags/team%20ml%2Fops"),
            "/v2/p/images/i/tags/team%20ml/ops/"
        );
        assert_eq!(canonical_uri("/a/"), "/a/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/a~b*c"), "/a~b%2Ac/");
    }

    #[test]
    fn canonical_query_encodes_keys_too() {
        assert_eq!(
            canonical_query(&[
                ("name", "my image~*"),
                ("__imagetype", "private"),
                ("a b", "")
            ]),
            "__imagetype=private&a%20b=&name=my%20image~%2A"
        );
    }

    #[test]
    fn authorization_round_trip() {
        let a = Authorization {
            access_key: "AK".into(),
            signed_headers: vec!["host".into(), "x-sdk-date".into()],
            signature: "abc".into(),
        };
        let v = a.to_header_value();
        assert_eq!(
            v,
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=abc"
        );
        assert_eq!(Authorization::parse(&v).unwrap(), a);
        assert_eq!(
            Authorization::parse(
                "SDK-HMAC-SHA256 Access=AK,SignedHeaders=host;x-sdk-date,Signature=abc"
            )
            .unwrap(),
            a
        );
        for bad in [
            "",
            "SDK-HMAC-SHA256",
            "ACS3-HMAC-SHA256 Access=AK, SignedHeaders=h, Signature=s",
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=h",
            "SDK-HMAC-SHA256 Access=, SignedHeaders=h, Signature=s",
        ] {
            assert!(Authorization::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(!format!("{a:?}").contains("abc"));
    }

    #[test]
    fn dates() {
        let ts = parse_date("20260102T030405Z").unwrap();
        assert_eq!(format_date(ts), "20260102T030405Z");
        assert!(parse_date("2026-01-02T03:04:05Z").is_none());
    }

    #[test]
    fn sign_requires_date() {
        let headers = vec![("host".to_string(), "h".to_string())];
        let req = RequestParts {
            method: "GET",
            path: "/",
            query: &[],
            headers: &headers,
            payload_hash: crate::sign::EMPTY_SHA256,
        };
        assert_eq!(
            sign(&req, "ak", "sk", &["host"]).unwrap_err(),
            SignError::MissingSignedHeader("x-sdk-date".into())
        );
    }

    #[test]
    fn default_signed_headers_skip_underscore() {
        let h = [
            ("Host", ""),
            ("X_Custom", ""),
            ("X-Sdk-Date", ""),
            ("Authorization", ""),
        ];
        assert_eq!(default_signed_headers(&h), vec!["host", "x-sdk-date"]);
    }
}
