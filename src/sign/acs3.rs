//! ACS3-HMAC-SHA256, the signature of Alibaba Cloud ROA-style APIs (PAI
//! AIWorkSpace). The key is the bare AccessKeySecret: no date or region
//! scoping, so freshness rests on `x-acs-date` and `x-acs-signature-nonce`.

use std::fmt;

use jiff::Timestamp;

use super::{
    RequestParts, SignError, Signed, canonical_headers, encode, hmac_sha256_hex,
    normalize_signed_headers, sha256_hex, verify_hmac_sha256_hex,
};

const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// `x-acs-date` format, always UTC.
const DATE_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// Formats `ts` as `x-acs-date` expects (`2026-01-02T03:04:05Z`).
pub fn format_date(ts: Timestamp) -> String {
    ts.strftime(DATE_FORMAT).to_string()
}

/// Parses an `x-acs-date` value; `None` when it is not in the exact format.
pub fn parse_date(s: &str) -> Option<Timestamp> {
    let dt = jiff::civil::DateTime::strptime(DATE_FORMAT, s).ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// Canonical query: `key=encoded-value` pairs sorted by key (then value, so
/// repeated keys are deterministic), joined by `&`. Keys are not encoded, as
/// in the SDK; the empty string when there are no pairs.
pub fn canonical_query<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut sorted: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    sorted.sort();
    let parts: Vec<String> = sorted
        .into_iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    parts.join("&")
}

/// `ACS3-HMAC-SHA256\n` + hex SHA-256 of the canonical request.
pub fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// Hex HMAC-SHA256 of the string to sign under the AccessKeySecret.
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    hmac_sha256_hex(secret.as_bytes(), string_to_sign.as_bytes())
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
        req.path,
        &canonical_query(req.query),
        &headers,
        &names.join(";"),
        req.payload_hash,
    ))
}

/// Signs `req` with the given key pair over the headers named in `signed`.
pub fn sign<S: AsRef<str>>(
    req: &RequestParts<'_>,
    access_key_id: &str,
    secret: &str,
    signed: &[S],
) -> Result<Signed, SignError> {
    let names = normalize_signed_headers(signed);
    let canonical_request = canonical_request(req, &names)?;
    let string_to_sign = string_to_sign(&canonical_request);
    let signature = signature(secret, &string_to_sign);
    let auth = Authorization {
        access_key_id: access_key_id.to_string(),
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

/// Checks a received request against its parsed `Authorization`, rebuilding
/// the canonical request from the request's own SignedHeaders list (clients
/// differ in which headers they sign). `Ok(false)` is a signature mismatch;
/// `Err` means a listed header is absent.
pub fn verify(
    req: &RequestParts<'_>,
    auth: &Authorization,
    secret: &str,
) -> Result<bool, SignError> {
    let canonical_request = canonical_request(req, &auth.signed_headers)?;
    let sts = string_to_sign(&canonical_request);
    Ok(verify_hmac_sha256_hex(
        secret.as_bytes(),
        sts.as_bytes(),
        &auth.signature,
    ))
}

/// Headers a client of ours signs: `host`, `accept`, `content-type` and every
/// `x-acs-*`. `user-agent` is left out so proxies that rewrite it do not break
/// the signature; a verifier follows the SignedHeaders list anyway.
pub fn default_signed_headers<N: AsRef<str>, V>(headers: &[(N, V)]) -> Vec<String> {
    let names: Vec<&str> = headers
        .iter()
        .map(|(n, _)| n.as_ref())
        .filter(|n| {
            let l = n.to_ascii_lowercase();
            l == "host" || l == "accept" || l == "content-type" || l.starts_with("x-acs-")
        })
        .collect();
    normalize_signed_headers(&names)
}

/// The parsed `Authorization: ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// Lower-cased names as listed (sorted when built by [`sign`]).
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("access_key_id", &self.access_key_id)
            .field("signed_headers", &self.signed_headers)
            .field("signature", &"<redacted>")
            .finish()
    }
}

impl Authorization {
    pub fn to_header_value(&self) -> String {
        format!(
            "{ALGORITHM} Credential={},SignedHeaders={},Signature={}",
            self.access_key_id,
            self.signed_headers.join(";"),
            self.signature
        )
    }

    /// Parses a header value. Tolerates spaces around `,`; requires all
    /// three fields exactly once.
    pub fn parse(value: &str) -> Result<Self, SignError> {
        let value = value.trim();
        let (alg, rest) = value
            .split_once(' ')
            .ok_or(SignError::MalformedAuthorization("missing algorithm"))?;
        if alg != ALGORITHM {
            return Err(SignError::UnsupportedAlgorithm);
        }
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (k, v) = part
                .trim()
                .split_once('=')
                .ok_or(SignError::MalformedAuthorization("field without `=`"))?;
            let slot = match k.trim() {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return Err(SignError::MalformedAuthorization("unknown field")),
            };
            if slot.replace(v.trim().to_string()).is_some() {
                return Err(SignError::MalformedAuthorization("repeated field"));
            }
        }
        let access_key_id = credential
            .filter(|c| !c.is_empty())
            .ok_or(SignError::MalformedAuthorization("missing Credential"))?;
        let signed = signed
            .filter(|s| !s.is_empty())
            .ok_or(SignError::MalformedAuthorization("missing SignedHeaders"))?;
        let signature = signature
            .filter(|s| !s.is_empty())
            .ok_or(SignError::MalformedAuthorization("missing Signature"))?;
        Ok(Authorization {
            access_key_id,
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
    fn authorization_round_trip() {
        let a = Authorization {
            access_key_id: "AK".into(),
            signed_headers: vec!["host".into(), "x-acs-date".into()],
            signature: "abc".into(),
        };
        let v = a.to_header_value();
        assert_eq!(
            v,
            "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host;x-acs-date,Signature=abc"
        );
        assert_eq!(Authorization::parse(&v).unwrap(), a);
        assert_eq!(
            Authorization::parse(
                "ACS3-HMAC-SHA256 Credential=AK, SignedHeaders=host;x-acs-date, Signature=abc"
            )
            .unwrap(),
            a
        );
    }

    #[test]
    fn authorization_rejects_malformed() {
        for bad in [
            "",
            "ACS3-HMAC-SHA256",
            "Bearer abc",
            "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host",
            "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host,Signature=",
            "ACS3-HMAC-SHA256 Credential=AK,Credential=AK,SignedHeaders=host,Signature=x",
            "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host,Signature=x,Other=y",
            "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders,Signature=x",
        ] {
            assert!(Authorization::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn debug_redacts_signature() {
        let a = Authorization {
            access_key_id: "AK".into(),
            signed_headers: vec!["host".into()],
            signature: "deadbeefcafe".into(),
        };
        assert!(!format!("{a:?}").contains("deadbeefcafe"));
    }

    #[test]
    fn dates() {
        let ts = parse_date("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(format_date(ts), "2026-01-02T03:04:05Z");
        assert!(parse_date("2026-01-02 03:04:05").is_none());
        assert!(parse_date("20260102T030405Z").is_none());
    }

    #[test]
    fn default_signed_headers_pick() {
        let h = [
            ("Host", ""),
            ("user-agent", ""),
            ("X-Acs-Date", ""),
            ("accept", ""),
            ("content-type", ""),
            ("authorization", ""),
        ];
        assert_eq!(
            default_signed_headers(&h),
            vec!["accept", "content-type", "host", "x-acs-date"]
        );
    }

    #[test]
    fn canonical_query_sorts_and_encodes_values_only() {
        let q = [("b", "x y"), ("a", "1"), ("Z", "*")];
        assert_eq!(canonical_query(&q), "Z=%2A&a=1&b=x%20y");
        assert_eq!(canonical_query::<&str, &str>(&[]), "");
    }
}
