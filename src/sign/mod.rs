//! Request signing shared by the cloud clients and the simulator's verifier.
//!
//! Both schemes hash a canonical request and HMAC it with the secret, but they
//! build the canonical pieces differently, so each piece is exposed on its own:
//! a client signs from the parts it is about to send, and a verifier rebuilds
//! the same parts from what arrived (using the request's own `SignedHeaders`).
//!
//! - [`acs3`]: Alibaba Cloud ACS3-HMAC-SHA256 (PAI AIWorkSpace, ROA style).
//! - [`sdk`]: Huawei Cloud SDK-HMAC-SHA256 (IMS).
//!
//! Nothing here logs, and no error carries a secret or a signature.

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

pub mod acs3;
pub mod sdk;

#[cfg(test)]
mod vectors;

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - _ . ~`) is
/// encoded; both clouds' SDKs encode path segments and query values this way
/// (space → `%20`, `/` → `%2F`, `*` → `%2A`, `~` kept).
const ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Hex SHA-256 of the empty body, sent on every body-less call.
#[cfg(test)]
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Why a signature could not be built or checked. Carries names only, never
/// values, so it is safe to show.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("signed header `{0}` is not present in the request")]
    MissingSignedHeader(String),
    #[error("malformed Authorization header: {0}")]
    MalformedAuthorization(&'static str),
    #[error("unsupported signature algorithm")]
    UnsupportedAlgorithm,
}

/// Percent-encodes one path segment or query value (unreserved characters and
/// `~` kept, space → `%20`).
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE_SET).to_string()
}

/// Percent-decodes `s` (no `+` → space translation, as for paths). Invalid
/// UTF-8 after decoding is replaced rather than rejected, like the SDKs do.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Decodes a query string as it arrives on the wire. The SDKs form-encode the
/// query (space as `+`), so a server must form-decode it before rebuilding the
/// canonical query, which uses `%20`.
pub fn decode_query(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Hex HMAC-SHA256 of `msg` under `key`.
fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    hex::encode(hmac_sha256(key, msg))
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// Checks a hex signature against the expected HMAC in constant time, so a
/// verifier does not leak how many leading bytes matched.
pub fn verify_hmac_sha256_hex(key: &[u8], msg: &[u8], signature_hex: &str) -> bool {
    let Ok(given) = hex::decode(signature_hex) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.verify_slice(&given).is_ok()
}

/// Lower-cased, sorted, de-duplicated header names, as both schemes list them
/// in `SignedHeaders`.
pub fn normalize_signed_headers<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    let mut out: Vec<String> = names
        .iter()
        .map(|n| n.as_ref().trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Canonical header block shared by both schemes: `name:trimmed-value\n` for
/// each signed name in sorted order. Header names match case-insensitively;
/// a name that appears more than once has its values joined with `,` (what an
/// HTTP intermediary may legally do), so client and verifier agree either way.
fn canonical_headers<N: AsRef<str>, V: AsRef<str>, S: AsRef<str>>(
    headers: &[(N, V)],
    signed: &[S],
) -> Result<String, SignError> {
    let mut out = String::new();
    for name in normalize_signed_headers(signed) {
        let values: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.as_ref().eq_ignore_ascii_case(&name))
            .map(|(_, v)| v.as_ref().trim())
            .collect();
        if values.is_empty() {
            return Err(SignError::MissingSignedHeader(name));
        }
        out.push_str(&name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// The parts of a request that a signature covers, as a client is about to
/// send them or as a server received them (query already decoded).
#[derive(Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The path exactly as sent on the wire (already percent-encoded).
    pub path: &'a str,
    /// Decoded query pairs; order does not matter.
    pub query: &'a [(String, String)],
    /// All headers present (the signed ones are picked by name).
    pub headers: &'a [(String, String)],
    /// Hex SHA-256 of the body.
    pub payload_hash: &'a str,
}

impl RequestParts<'_> {
    /// First value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The intermediate strings and the result of signing one request. Debug
/// redacts the signature, which must never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Signed {
    pub canonical_request: String,
    pub string_to_sign: String,
    /// Sorted, lower-cased names joined by `;`.
    pub signed_headers: String,
    pub signature: String,
    /// The full `Authorization` header value.
    pub authorization: String,
}

/// Whether a header's value is a credential (a security token, a bearer
/// token, a signature) that Debug output must never show.
fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("token") || n == "authorization" || n.contains("signature")
}

/// A canonical request with the values of secret headers replaced: it lists
/// every signed header, and a temporary key signs its security token.
fn redact_canonical(canonical: &str) -> String {
    canonical
        .split('\n')
        .map(|line| match line.split_once(':') {
            Some((name, _)) if is_secret_header(name) => format!("{name}:<redacted>"),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl std::fmt::Debug for RequestParts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let v = if is_secret_header(n) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (n.as_str(), v)
            })
            .collect();
        f.debug_struct("RequestParts")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &headers)
            .field("payload_hash", &self.payload_hash)
            .finish()
    }
}

impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signed")
            .field(
                "canonical_request",
                &redact_canonical(&self.canonical_request),
            )
            .field("string_to_sign", &self.string_to_sign)
            .field("signed_headers", &self.signed_headers)
            .field("signature", &"<redacted>")
            .field("authorization", &"<redacted>")
            .finish()
    }
}

/// `METHOD\nPATH\nQUERY\nHEADERS\nSIGNED\nPAYLOADHASH`; `canonical_headers`
/// already ends in `\n`, hence the blank line both schemes have before the
/// signed-header list.
pub fn canonical_request(
    method: &str,
    path: &str,
    canonical_query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    format!(
        "{}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        method.to_ascii_uppercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_keeps_only_unreserved() {
        assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode("system.dsw/os x"), "system.dsw%2Fos%20x");
        assert_eq!(encode("a*b+c=d,e"), "a%2Ab%2Bc%3Dd%2Ce");
        assert_eq!(encode("β"), "%CE%B2");
        assert_eq!(encode(""), "");
    }

    #[test]
    fn decode_query_is_form_decoding() {
        let q = decode_query(
            "LabelFilter=system.chipType%3DGPU%2Cteam%3Dml+ops&Keys=a~b%2Ac%2Cd+%C3%A9%2Bf&Empty=&Flag",
        );
        assert_eq!(
            q,
            vec![
                (
                    "LabelFilter".into(),
                    "system.chipType=GPU,team=ml ops".into()
                ),
                ("Keys".into(), "a~b*c,d é+f".into()),
                ("Empty".into(), String::new()),
                ("Flag".into(), String::new()),
            ]
        );
    }

    #[test]
    fn percent_decode_keeps_plus() {
        assert_eq!(percent_decode("team%20ml%2Fops+x"), "team ml/ops+x");
        // Bad escapes and bad UTF-8 must not panic.
        assert_eq!(percent_decode("%zz%"), "%zz%");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn canonical_headers_missing_and_case() {
        let headers = [("Host", " example.com "), ("X-Acs-Date", "d")];
        assert_eq!(
            canonical_headers(&headers, &["x-acs-date", "HOST"]).unwrap(),
            "host:example.com\nx-acs-date:d\n"
        );
        assert_eq!(
            canonical_headers(&headers, &["x-acs-action"]),
            Err(SignError::MissingSignedHeader("x-acs-action".into()))
        );
    }

    #[test]
    fn verify_rejects_wrong_and_garbage() {
        let sig = hmac_sha256_hex(b"k", b"m");
        assert!(verify_hmac_sha256_hex(b"k", b"m", &sig));
        assert!(!verify_hmac_sha256_hex(b"k", b"n", &sig));
        assert!(!verify_hmac_sha256_hex(b"k", b"m", "not hex"));
        assert!(!verify_hmac_sha256_hex(b"k", b"m", ""));
    }

    #[test]
    fn empty_hash_constant() {
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
    }
}
