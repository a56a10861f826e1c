//! Verifies callers the way the real gateways do: ACS3-HMAC-SHA256 and bearer
//! tokens for PAI, SDK-HMAC-SHA256 for IMS. The canonical request is rebuilt
//! from the incoming request using the request's own SignedHeaders list, so
//! a client that signs fewer headers than the Python SDK is verified too.
//! Canonicalization and HMAC come from [`crate::sign`], shared with the clients.
//!
//! Error codes: PAI 400 `IncompleteSignature` (no or malformed
//! Authorization, a signed header missing), 404 `InvalidAccessKeyId.NotFound`,
//! 400 `SignatureDoesNotMatch` (message carries the server's string to sign,
//! as Alibaba Cloud's does), 400 `InvalidTimeStamp.Format` /
//! `InvalidTimeStamp.Expired` (x-acs-date more than 15 minutes off), 400
//! `SignatureNonceUsed`, 400 `MissingSecurityToken`,
//! `InvalidSecurityToken.MismatchWithAccessKey`, `InvalidSecurityToken.Expired`;
//! bearer tokens 401 `InvalidApiKey` (DashScope's code for an unknown key).
//! IMS: 401 `APIGW.0301` "Incorrect IAM authentication information: …" in the
//! gateway's `{"error_code","error_msg","request_id"}` shape.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::sign::{self, RequestParts, SignError, acs3, sdk};

use super::seed::{CredentialsSeed, ImsCredential};
use super::wire::{AcsError, ApiRequest, HwError};

/// How far a signed request's date may be from the simulator's clock: 15
/// minutes for `x-acs-date`
/// (<https://help.aliyun.com/zh/model-studio/user-guide/roa-style-request-body-signature-mechanism>)
/// and for `X-Sdk-Date` (Huawei's API signing guide,
/// <https://support.huaweicloud.com/devg-apisign/api-sign-provide01.html>).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// What a PAI AccessKey is, for STS `GetCallerIdentity`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyIdentity {
    /// A permanent key of a RAM user (the simulator names the user after the key).
    RamUser,
    /// A temporary key from assuming a role.
    AssumedRole {
        role: String,
        role_id: String,
        session: String,
    },
}

/// Who a PAI request came from, and the main account its flow-control
/// budgets belong to.
#[derive(Clone, PartialEq, Eq)]
pub enum PaiPrincipal {
    AccessKey {
        access_key_id: String,
        account: String,
        identity: KeyIdentity,
    },
    Bearer {
        token: String,
        account: String,
    },
}

impl std::fmt::Debug for PaiPrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PaiPrincipal::AccessKey {
                access_key_id,
                account,
                identity,
            } => f
                .debug_struct("AccessKey")
                .field("access_key_id", access_key_id)
                .field("account", account)
                .field("identity", identity)
                .finish(),
            // A hash of the token, never the token.
            PaiPrincipal::Bearer { token, account } => f
                .debug_struct("Bearer")
                .field(
                    "token_sha256",
                    &&hex::encode(Sha256::digest(token.as_bytes()))[..16],
                )
                .field("account", account)
                .finish(),
        }
    }
}

impl PaiPrincipal {
    /// The main account (UID) the caller belongs to.
    pub fn account(&self) -> &str {
        match self {
            PaiPrincipal::AccessKey { account, .. } | PaiPrincipal::Bearer { account, .. } => {
                account
            }
        }
    }
}

/// A stable 16-digit ID derived from `seed`, for RAM user and role IDs.
pub fn numeric_id(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]));
    format!("2{:015}", n % 1_000_000_000_000_000)
}

/// Who an IMS request came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImsPrincipal {
    pub ak: String,
    /// The project the key is bound to, when the seed says so.
    pub project_id: Option<String>,
    /// The Huawei account (domain) the key belongs to.
    pub account: String,
}

struct PaiKey {
    secret: String,
    /// Permanent keys have none; seeded STS keys one; issued keys one per issuance.
    tokens: HashMap<String, Option<Timestamp>>,
    temporary: bool,
    account: String,
    identity: KeyIdentity,
}

/// Nonces seen within the skew window, oldest first.
#[derive(Default)]
struct NonceCache {
    seen: HashSet<String>,
    order: VecDeque<(Instant, String)>,
}

impl NonceCache {
    /// Records `nonce`; false when it was already used inside the window.
    fn insert(&mut self, nonce: &str, now: Instant) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) <= 2 * MAX_CLOCK_SKEW {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if !self.seen.insert(nonce.to_string()) {
            return false;
        }
        self.order.push_back((now, nonce.to_string()));
        true
    }
}

pub struct Auth {
    pai: Mutex<HashMap<String, PaiKey>>,
    bearer: HashSet<String>,
    /// The main account of bearer tokens.
    bearer_account: String,
    ims: HashMap<String, ImsCredential>,
    ims_account: String,
    nonces: Mutex<NonceCache>,
}

/// Equal in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn incomplete(detail: &str) -> AcsError {
    AcsError::new(
        400,
        "IncompleteSignature",
        format!("The request signature does not conform to Aliyun standards: {detail}"),
    )
}

fn skew_ok(date: Timestamp) -> bool {
    let diff = Timestamp::now().duration_since(date).unsigned_abs();
    diff <= MAX_CLOCK_SKEW
}

/// The request as the shared signing code sees it.
fn parts<'a>(
    req: &'a ApiRequest,
    headers: &'a [(String, String)],
    payload_hash: &'a str,
) -> RequestParts<'a> {
    RequestParts {
        method: req.method.as_str(),
        path: &req.path,
        query: &req.query,
        headers,
        payload_hash,
    }
}

/// Every header that is valid text, for canonicalization by name.
fn header_pairs(req: &ApiRequest) -> Vec<(String, String)> {
    req.headers
        .iter()
        .filter_map(|(n, v)| {
            v.to_str()
                .ok()
                .map(|v| (n.as_str().to_string(), v.to_string()))
        })
        .collect()
}

impl Auth {
    pub fn new(seed: &CredentialsSeed) -> Self {
        let pai = seed
            .pai
            .iter()
            .map(|c| {
                let tokens = c.security_token.iter().map(|t| (t.clone(), None)).collect();
                // A seeded STS key: a role of the simulator's naming, the
                // key ID as the session.
                let identity = if c.security_token.is_some() {
                    KeyIdentity::AssumedRole {
                        role: "sim-seeded-role".into(),
                        role_id: numeric_id("sim-seeded-role"),
                        session: c.access_key_id.clone(),
                    }
                } else {
                    KeyIdentity::RamUser
                };
                (
                    c.access_key_id.clone(),
                    PaiKey {
                        secret: c.access_key_secret.clone(),
                        tokens,
                        temporary: c.security_token.is_some(),
                        account: c
                            .account_id
                            .clone()
                            .unwrap_or_else(|| seed.pai_main_account().to_string()),
                        identity,
                    },
                )
            })
            .collect();
        Auth {
            pai: Mutex::new(pai),
            bearer: seed.bearer_tokens.iter().cloned().collect(),
            bearer_account: seed.pai_main_account().to_string(),
            ims: seed.ims.iter().map(|c| (c.ak.clone(), c.clone())).collect(),
            ims_account: seed.ims_account().to_string(),
            nonces: Mutex::new(NonceCache::default()),
        }
    }

    /// Makes a temporary key (from STS) of `account`'s role valid until `expires`.
    pub fn issue_pai_key(
        &self,
        access_key_id: &str,
        secret: &str,
        token: &str,
        expires: Timestamp,
        account: &str,
        identity: KeyIdentity,
    ) {
        let mut keys = self.pai.lock().unwrap_or_else(|e| e.into_inner());
        let key = keys
            .entry(access_key_id.to_string())
            .or_insert_with(|| PaiKey {
                secret: secret.to_string(),
                tokens: HashMap::new(),
                temporary: true,
                account: account.to_string(),
                identity: identity.clone(),
            });
        key.secret = secret.to_string();
        key.account = account.to_string();
        key.identity = identity;
        key.tokens
            .retain(|_, exp| exp.is_none_or(|e| e > Timestamp::now()));
        key.tokens.insert(token.to_string(), Some(expires));
    }

    /// Checks a PAI request's credentials.
    pub fn verify_pai(&self, req: &ApiRequest) -> Result<PaiPrincipal, AcsError> {
        if let Some(token) = req.header("x-acs-bearer-token") {
            if !req
                .header("x-acs-signature-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("BEARERTOKEN"))
            {
                return Err(incomplete(
                    "x-acs-bearer-token needs x-acs-signature-type: BEARERTOKEN",
                ));
            }
            return self.bearer(token);
        }
        let Some(authorization) = req.header("authorization") else {
            return Err(incomplete("the Authorization header is missing"));
        };
        if let Some(token) = authorization.strip_prefix("Bearer ") {
            return self.bearer(token.trim());
        }
        let auth = acs3::Authorization::parse(authorization).map_err(|e| match e {
            SignError::UnsupportedAlgorithm => {
                incomplete("the signature algorithm is not ACS3-HMAC-SHA256")
            }
            other => incomplete(&other.to_string()),
        })?;
        let ak = auth.access_key_id.clone();

        let (secret, token_rule, account, identity) = {
            let keys = self.pai.lock().unwrap_or_else(|e| e.into_inner());
            let key = keys.get(&ak).ok_or_else(|| {
                AcsError::new(
                    404,
                    "InvalidAccessKeyId.NotFound",
                    "Specified access key is not found.",
                )
            })?;
            let token = req.header("x-acs-security-token");
            let rule = match (key.temporary, token) {
                (false, None) => Ok(()),
                (false, Some(_)) => Err(AcsError::new(
                    400,
                    "InvalidSecurityToken.MismatchWithAccessKey",
                    "The security token does not belong to this access key.",
                )),
                (true, None) => Err(AcsError::new(
                    400,
                    "MissingSecurityToken",
                    "SecurityToken is mandatory for this access key.",
                )),
                (true, Some(t)) => match key.tokens.get(t) {
                    None => Err(AcsError::new(
                        400,
                        "InvalidSecurityToken.MismatchWithAccessKey",
                        "The security token does not belong to this access key.",
                    )),
                    Some(Some(exp)) if *exp <= Timestamp::now() => Err(AcsError::new(
                        400,
                        "InvalidSecurityToken.Expired",
                        "Specified SecurityToken is expired.",
                    )),
                    Some(_) => Ok(()),
                },
            };
            (
                key.secret.clone(),
                rule,
                key.account.clone(),
                key.identity.clone(),
            )
        };
        token_rule?;

        let lower_signed = sign::normalize_signed_headers(&auth.signed_headers);
        for required in [
            "host",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-content-sha256",
        ] {
            if !lower_signed.iter().any(|s| s == required) {
                return Err(incomplete(&format!(
                    "{required} must be present and signed"
                )));
            }
        }
        if req.header("x-acs-security-token").is_some()
            && !lower_signed.iter().any(|s| s == "x-acs-security-token")
        {
            return Err(incomplete("x-acs-security-token must be signed"));
        }
        let payload_hash = req.header("x-acs-content-sha256").unwrap_or_default();
        if !payload_hash.eq_ignore_ascii_case(&sign::sha256_hex(&req.body)) {
            return Err(AcsError::new(
                400,
                "SignatureDoesNotMatch",
                "x-acs-content-sha256 does not match the SHA-256 of the request body.",
            ));
        }

        let date = req.header("x-acs-date").unwrap_or_default();
        let date = acs3::parse_date(date).ok_or_else(|| {
            AcsError::new(
                400,
                "InvalidTimeStamp.Format",
                format!("Specified time stamp or date value {date:?} is not well formatted."),
            )
        })?;
        if !skew_ok(date) {
            return Err(AcsError::new(
                400,
                "InvalidTimeStamp.Expired",
                "Specified time stamp or date value is expired.",
            ));
        }

        let headers = header_pairs(req);
        let request = parts(req, &headers, payload_hash);
        let canonical = acs3::canonical_request(&request, &auth.signed_headers)
            .map_err(|e| incomplete(&e.to_string()))?;
        let string_to_sign = acs3::string_to_sign(&canonical);
        if !sign::verify_hmac_sha256_hex(
            secret.as_bytes(),
            string_to_sign.as_bytes(),
            &auth.signature,
        ) {
            return Err(AcsError::new(
                400,
                "SignatureDoesNotMatch",
                format!(
                    "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
                ),
            ));
        }

        let nonce = req.header("x-acs-signature-nonce").unwrap_or_default();
        if !self
            .nonces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(nonce, Instant::now())
        {
            return Err(AcsError::new(
                400,
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ));
        }
        Ok(PaiPrincipal::AccessKey {
            access_key_id: ak,
            account,
            identity,
        })
    }

    fn bearer(&self, token: &str) -> Result<PaiPrincipal, AcsError> {
        if self.bearer.contains(token) {
            Ok(PaiPrincipal::Bearer {
                token: token.to_string(),
                account: self.bearer_account.clone(),
            })
        } else {
            Err(AcsError::new(
                401,
                "InvalidApiKey",
                "Invalid API-key provided.",
            ))
        }
    }

    /// Checks an IMS request's SDK-HMAC-SHA256 signature.
    pub fn verify_ims(&self, req: &ApiRequest) -> Result<ImsPrincipal, HwError> {
        let authorization = req
            .header("authorization")
            .ok_or_else(|| HwError::unauthenticated("the Authorization header is missing"))?;
        let auth = sdk::Authorization::parse(authorization)
            .map_err(|e| HwError::unauthenticated(&e.to_string()))?;
        let ak = auth.access_key.clone();
        let cred = self.ims.get(&ak).ok_or_else(|| {
            HwError::unauthenticated(&format!("Get secretKey failed,ak:{ak},err:ak not exist"))
        })?;
        if let Some(token) = &cred.security_token
            && !req
                .header("x-security-token")
                .is_some_and(|t| same(t, token))
        {
            return Err(HwError::unauthenticated("verify security token fail"));
        }
        let lower_signed = sign::normalize_signed_headers(&auth.signed_headers);
        for required in ["host", "x-sdk-date"] {
            if !lower_signed.iter().any(|s| s == required) {
                return Err(HwError::unauthenticated(&format!(
                    "{required} must be signed"
                )));
            }
        }
        let date = req.header("x-sdk-date").unwrap_or_default();
        let parsed = sdk::parse_date(date.trim())
            .ok_or_else(|| HwError::unauthenticated("x-sdk-date is not YYYYMMDDTHHMMSSZ"))?;
        if !skew_ok(parsed) {
            return Err(HwError::unauthenticated(
                "x-sdk-date is more than 15 minutes from the server time",
            ));
        }
        // IMS has no content-hash header: the body is hashed as received.
        let payload_hash = sign::sha256_hex(&req.body);
        let headers = header_pairs(req);
        let verified = sdk::verify(&parts(req, &headers, &payload_hash), &auth, &cred.sk)
            .map_err(|e| HwError::unauthenticated(&e.to_string()))?;
        if !verified {
            return Err(HwError::unauthenticated("verify aksk signature fail"));
        }
        Ok(ImsPrincipal {
            ak,
            project_id: cred.project_id.clone(),
            account: cred
                .account_id
                .clone()
                .unwrap_or_else(|| self.ims_account.clone()),
        })
    }
}

#[cfg(test)]
mod redaction {
    use super::PaiPrincipal;

    #[test]
    fn a_bearer_principal_never_shows_its_token() {
        let token = "T0kenValue9876543210";
        let p = PaiPrincipal::Bearer {
            token: token.into(),
            account: "1".into(),
        };
        assert!(!format!("{p:?}").contains(token));
        assert!(!format!("{p:#?}").contains(token));
    }
}
