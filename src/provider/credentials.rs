//! Cloud credentials and where they come from: a Kubernetes Secret named by
//! the set, or the operator's own default chain (environment, RRSA, API key).
//!
//! Secrets never leave this module in a printable form: every `Debug` impl
//! redacts them, and no error message carries a value, only key names.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::{CloudError, ErrorKind};
use crate::api::Provider;

const REDACTED: &str = "<redacted>";

/// Material to authenticate one call.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Alibaba Cloud AccessKey pair, with an STS token when temporary.
    AccessKey {
        id: String,
        secret: String,
        security_token: Option<String>,
    },
    /// Alibaba Cloud bearer token (DashScope / workspace API key).
    Bearer(String),
    /// Huawei Cloud AK/SK, with a security token when temporary.
    AkSk {
        ak: String,
        sk: String,
        security_token: Option<String>,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::AccessKey {
                id, security_token, ..
            } => f
                .debug_struct("AccessKey")
                .field("id", id)
                .field("secret", &REDACTED)
                .field("security_token", &security_token.as_ref().map(|_| REDACTED))
                .finish(),
            Credentials::Bearer(_) => f.debug_tuple("Bearer").field(&REDACTED).finish(),
            Credentials::AkSk {
                ak, security_token, ..
            } => f
                .debug_struct("AkSk")
                .field("ak", ak)
                .field("sk", &REDACTED)
                .field("security_token", &security_token.as_ref().map(|_| REDACTED))
                .finish(),
        }
    }
}

impl Credentials {
    /// A name for the kind, safe to show in errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Credentials::AccessKey {
                security_token: None,
                ..
            } => "AccessKey",
            Credentials::AccessKey { .. } => "STS AccessKey",
            Credentials::Bearer(_) => "bearer token",
            Credentials::AkSk {
                security_token: None,
                ..
            } => "AK/SK",
            Credentials::AkSk { .. } => "temporary AK/SK",
        }
    }

    /// Non-secret identity, the fallback budget account: the key id, or a
    /// short hash for a bearer token (which has no public part).
    pub fn identity(&self) -> String {
        match self {
            Credentials::AccessKey { id, .. } => id.clone(),
            Credentials::AkSk { ak, .. } => ak.clone(),
            Credentials::Bearer(token) => format!(
                "bearer-{}",
                &hex::encode(Sha256::digest(token.as_bytes()))[..16]
            ),
        }
    }

    /// Changes whenever any part of the material changes; an in-memory cache
    /// key, never shown.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        let parts: Vec<&str> = match self {
            Credentials::AccessKey {
                id,
                secret,
                security_token,
            } => vec!["ak", id, secret, security_token.as_deref().unwrap_or("")],
            Credentials::Bearer(t) => vec!["bearer", t],
            Credentials::AkSk {
                ak,
                sk,
                security_token,
            } => vec!["aksk", ak, sk, security_token.as_deref().unwrap_or("")],
        };
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// Why credentials could not be had. Names keys and variables, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("credentials Secret has no `{key}` ({hint})")]
    MissingSecretKey {
        key: &'static str,
        hint: &'static str,
    },
    #[error("credentials Secret key `{0}` is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("environment variable {set} is set but {missing} is not")]
    IncompleteEnv {
        set: &'static str,
        missing: &'static str,
    },
    #[error("no {provider} credentials: set {hint}")]
    NoneFound {
        provider: &'static str,
        hint: &'static str,
    },
    #[error("reading the OIDC token file {path}: {reason}")]
    TokenFile { path: String, reason: String },
    #[error("STS AssumeRoleWithOIDC: {0}")]
    Sts(CloudError),
    #[error("{0} credentials cannot sign {1} requests")]
    WrongKind(&'static str, &'static str),
}

impl CredentialError {
    /// As a cloud error of `api`. An STS failure keeps its kind (a network
    /// blip is retryable); everything else is a credentials problem.
    pub fn into_cloud(self, api: &'static str) -> CloudError {
        match self {
            CredentialError::Sts(e) => CloudError {
                api,
                message: format!("getting credentials from STS: {e}"),
                ..e
            },
            CredentialError::TokenFile { .. } => {
                CloudError::new(ErrorKind::Unauthenticated, api, self.to_string())
            }
            other => CloudError::new(ErrorKind::Unauthenticated, api, other.to_string()),
        }
    }
}

/// Where a client gets its credentials; asked before every attempt, so
/// implementations cache and refresh on their own.
pub trait CredentialSource: Send + Sync + fmt::Debug {
    fn get(&self) -> BoxFuture<'_, Result<Credentials, CredentialError>>;
    /// Non-secret, stable across refreshes: which account-ish identity the
    /// calls are made as (budgets fall back to it when the main account is
    /// unknown).
    fn identity(&self) -> String;
    /// Changes when the underlying configuration changes (client cache key).
    fn fingerprint(&self) -> String;
    /// The main account the calls are counted against, when the source
    /// knows it without asking (RRSA: the role ARN names it). `None`: the
    /// registry asks STS once (see `provider::account`).
    fn main_account(&self) -> Option<String> {
        None
    }
}

/// Fixed credentials (a Secret's content, or environment variables).
#[derive(Clone, Debug)]
pub struct StaticSource(pub Credentials);

impl CredentialSource for StaticSource {
    fn get(&self) -> BoxFuture<'_, Result<Credentials, CredentialError>> {
        let c = self.0.clone();
        Box::pin(async move { Ok(c) })
    }
    fn identity(&self) -> String {
        self.0.identity()
    }
    fn fingerprint(&self) -> String {
        self.0.fingerprint()
    }
}

fn secret_value(
    data: &BTreeMap<String, Vec<u8>>,
    key: &'static str,
) -> Result<Option<String>, CredentialError> {
    match data.get(key) {
        None => Ok(None),
        Some(bytes) => {
            let s = std::str::from_utf8(bytes).map_err(|_| CredentialError::NotUtf8(key))?;
            // `kubectl create secret --from-file` keeps trailing newlines; no
            // real key has surrounding whitespace.
            let s = s.trim();
            Ok((!s.is_empty()).then(|| s.to_string()))
        }
    }
}

/// Credentials from a Kubernetes Secret's `data`. pai: `accessKeyId` +
/// `accessKeySecret` (+ `securityToken`), or `apiKey`; ims: `ak` + `sk`
/// (+ `securityToken`). Errors name the missing key.
pub fn from_secret_data(
    provider: Provider,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Credentials, CredentialError> {
    match provider {
        Provider::Pai => {
            let id = secret_value(data, "accessKeyId")?;
            let secret = secret_value(data, "accessKeySecret")?;
            let token = secret_value(data, "securityToken")?;
            const HINT: &str =
                "pai needs accessKeyId + accessKeySecret (+ securityToken), or apiKey";
            match (id, secret) {
                (Some(id), Some(secret)) => Ok(Credentials::AccessKey {
                    id,
                    secret,
                    security_token: token,
                }),
                (Some(_), None) => Err(CredentialError::MissingSecretKey {
                    key: "accessKeySecret",
                    hint: HINT,
                }),
                (None, Some(_)) => Err(CredentialError::MissingSecretKey {
                    key: "accessKeyId",
                    hint: HINT,
                }),
                (None, None) => match secret_value(data, "apiKey")? {
                    Some(key) => Ok(Credentials::Bearer(key)),
                    None => Err(CredentialError::MissingSecretKey {
                        key: "accessKeyId",
                        hint: HINT,
                    }),
                },
            }
        }
        Provider::HuaweicloudIms => {
            const HINT: &str = "huaweicloud-ims needs ak + sk (+ securityToken)";
            let ak = secret_value(data, "ak")?.ok_or(CredentialError::MissingSecretKey {
                key: "ak",
                hint: HINT,
            })?;
            let sk = secret_value(data, "sk")?.ok_or(CredentialError::MissingSecretKey {
                key: "sk",
                hint: HINT,
            })?;
            Ok(Credentials::AkSk {
                ak,
                sk,
                security_token: secret_value(data, "securityToken")?,
            })
        }
    }
}

/// Environment lookup, injectable for tests. Empty values count as unset.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, empty values treated as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub const ENV_ALI_AK_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ENV_ALI_AK_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const ENV_ALI_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
pub const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
pub const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
pub const ENV_STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";
pub const ENV_VPC_ENDPOINT: &str = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED";
pub const ENV_DASHSCOPE: &str = "DASHSCOPE_API_KEY";
pub const ENV_HW_AK: &str = "HUAWEICLOUD_SDK_AK";
pub const ENV_HW_SK: &str = "HUAWEICLOUD_SDK_SK";
pub const ENV_HW_TOKEN: &str = "HUAWEICLOUD_SDK_SECURITY_TOKEN";

fn pair(
    env: EnvLookup<'_>,
    a: &'static str,
    b: &'static str,
) -> Result<Option<(String, String)>, CredentialError> {
    match (env(a), env(b)) {
        (Some(x), Some(y)) => Ok(Some((x.trim().to_string(), y.trim().to_string()))),
        (Some(_), None) => Err(CredentialError::IncompleteEnv { set: a, missing: b }),
        (None, Some(_)) => Err(CredentialError::IncompleteEnv { set: b, missing: a }),
        (None, None) => Ok(None),
    }
}

/// The operator's default credentials for pai: environment AccessKey →
/// RRSA (OIDC role) → `DASHSCOPE_API_KEY` bearer. `sts_endpoint` overrides
/// where RRSA exchanges its token (operator configuration only).
pub fn pai_default_chain(
    env: EnvLookup<'_>,
    http: reqwest::Client,
    sts_endpoint: Option<&str>,
) -> Result<Arc<dyn CredentialSource>, CredentialError> {
    if let Some((id, secret)) = pair(env, ENV_ALI_AK_ID, ENV_ALI_AK_SECRET)? {
        let security_token = env(ENV_ALI_TOKEN).map(|t| t.trim().to_string());
        return Ok(Arc::new(StaticSource(Credentials::AccessKey {
            id,
            secret,
            security_token,
        })));
    }
    let rrsa = [ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE];
    let present: Vec<&'static str> = rrsa.iter().copied().filter(|n| env(n).is_some()).collect();
    if !present.is_empty() {
        if let Some(missing) = rrsa.iter().copied().find(|n| env(n).is_none()) {
            return Err(CredentialError::IncompleteEnv {
                set: present[0],
                missing,
            });
        }
        let endpoint = match sts_endpoint {
            Some(e) => e.to_string(),
            None => default_sts_endpoint(
                env(ENV_STS_REGION).as_deref(),
                env(ENV_VPC_ENDPOINT).is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            ),
        };
        let cfg = RrsaConfig {
            role_arn: env(ENV_ROLE_ARN).unwrap_or_default(),
            oidc_provider_arn: env(ENV_OIDC_PROVIDER_ARN).unwrap_or_default(),
            token_file: PathBuf::from(env(ENV_OIDC_TOKEN_FILE).unwrap_or_default()),
            session_name: env(ENV_ROLE_SESSION_NAME)
                .unwrap_or_else(|| "imagelabel-operator".to_string()),
            sts_endpoint: endpoint,
            duration: Duration::from_secs(3600),
        };
        return Ok(Arc::new(RrsaSource::new(cfg, http)));
    }
    if let Some(key) = env(ENV_DASHSCOPE) {
        return Ok(Arc::new(StaticSource(Credentials::Bearer(
            key.trim().to_string(),
        ))));
    }
    Err(CredentialError::NoneFound {
        provider: "pai",
        hint: "ALIBABA_CLOUD_ACCESS_KEY_ID + ALIBABA_CLOUD_ACCESS_KEY_SECRET, or ALIBABA_CLOUD_ROLE_ARN + ALIBABA_CLOUD_OIDC_PROVIDER_ARN + ALIBABA_CLOUD_OIDC_TOKEN_FILE (RRSA), or DASHSCOPE_API_KEY, or give the set a credentialsRef",
    })
}

/// The operator's default credentials for ims: `HUAWEICLOUD_SDK_AK` /
/// `HUAWEICLOUD_SDK_SK` (+ `HUAWEICLOUD_SDK_SECURITY_TOKEN`).
pub fn ims_default_chain(env: EnvLookup<'_>) -> Result<Arc<dyn CredentialSource>, CredentialError> {
    match pair(env, ENV_HW_AK, ENV_HW_SK)? {
        Some((ak, sk)) => Ok(Arc::new(StaticSource(Credentials::AkSk {
            ak,
            sk,
            security_token: env(ENV_HW_TOKEN).map(|t| t.trim().to_string()),
        }))),
        None => Err(CredentialError::NoneFound {
            provider: "huaweicloud-ims",
            hint: "HUAWEICLOUD_SDK_AK + HUAWEICLOUD_SDK_SK, or give the set a credentialsRef",
        }),
    }
}

/// `https://sts.aliyuncs.com`, or the regional (optionally VPC) endpoint.
pub fn default_sts_endpoint(region: Option<&str>, vpc: bool) -> String {
    match region.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) if vpc => format!("https://sts-vpc.{r}.aliyuncs.com"),
        Some(r) => format!("https://sts.{r}.aliyuncs.com"),
        None => "https://sts.aliyuncs.com".to_string(),
    }
}

/// RRSA settings: which role to assume with the pod's OIDC token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RrsaConfig {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    /// Re-read at every refresh: the kubelet rotates the projected token.
    pub token_file: PathBuf,
    pub session_name: String,
    /// Base URL of STS; the call goes to `<base>/?Action=AssumeRoleWithOIDC&…`.
    pub sts_endpoint: String,
    pub duration: Duration,
}

/// Refresh this long before the STS credentials expire (as the SDK does).
pub const RRSA_REFRESH_MARGIN: Duration = Duration::from_secs(15 * 60);

pub(crate) struct Cached {
    pub(crate) creds: Credentials,
    expiration: Timestamp,
}

/// Temporary credentials from STS `AssumeRoleWithOIDC`, cached and refreshed
/// within [`RRSA_REFRESH_MARGIN`] of expiry. Concurrent callers share one
/// refresh.
pub struct RrsaSource {
    cfg: RrsaConfig,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl fmt::Debug for RrsaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RrsaSource")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl RrsaSource {
    pub fn new(cfg: RrsaConfig, http: reqwest::Client) -> Self {
        RrsaSource {
            cfg,
            http,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    async fn fetch(&self) -> Result<Cached, CredentialError> {
        const API: &str = "AssumeRoleWithOIDC";
        let path = self.cfg.token_file.display().to_string();
        let token = tokio::fs::read_to_string(&self.cfg.token_file)
            .await
            .map_err(|e| CredentialError::TokenFile {
                path: path.clone(),
                reason: e.kind().to_string(),
            })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(CredentialError::TokenFile {
                path,
                reason: "file is empty".into(),
            });
        }
        let duration = self.cfg.duration.as_secs().max(900).to_string();
        let timestamp = crate::sign::acs3::format_date(Timestamp::now());
        let query: [(&str, &str); 9] = [
            ("Action", API),
            ("Format", "JSON"),
            ("Version", "2015-04-01"),
            ("DurationSeconds", &duration),
            ("RoleArn", &self.cfg.role_arn),
            ("OIDCProviderArn", &self.cfg.oidc_provider_arn),
            ("OIDCToken", token),
            ("RoleSessionName", &self.cfg.session_name),
            ("Timestamp", &timestamp),
        ];
        let url = format!("{}/", self.cfg.sts_endpoint.trim_end_matches('/'));
        // The URL carries the OIDC token: transport errors are described
        // without it (see `transport_error`).
        let resp = self
            .http
            .get(&url)
            .query(&query)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| CredentialError::Sts(super::http::transport_error(API, &e)))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = super::body::read_capped(resp, API, super::body::MAX_RESPONSE_BYTES)
            .await
            .map_err(CredentialError::Sts)?;
        if !(200..300).contains(&status) {
            return Err(CredentialError::Sts(super::acs_error::map_error(
                API, status, &headers, &body,
            )));
        }
        parse_sts_answer(&body).map_err(|msg| {
            CredentialError::Sts(CloudError {
                http_status: Some(status),
                ..CloudError::new(ErrorKind::Network, API, msg)
            })
        })
    }
}

pub(crate) fn parse_sts_answer(body: &[u8]) -> Result<Cached, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "STS answer is not JSON".to_string())?;
    let c = v
        .get("Credentials")
        .ok_or("STS answer has no Credentials")?;
    let field = |name: &str| {
        c.get(name)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .filter(|s| !s.is_empty())
            .ok_or(format!("STS answer has no Credentials.{name}"))
    };
    let expiration: Timestamp = field("Expiration")?
        .parse()
        .map_err(|_| "STS Credentials.Expiration is not an RFC 3339 time".to_string())?;
    Ok(Cached {
        creds: Credentials::AccessKey {
            id: field("AccessKeyId")?,
            secret: field("AccessKeySecret")?,
            security_token: Some(field("SecurityToken")?),
        },
        expiration,
    })
}

impl CredentialSource for RrsaSource {
    fn get(&self) -> BoxFuture<'_, Result<Credentials, CredentialError>> {
        Box::pin(async move {
            let mut cache = self.cache.lock().await;
            let now = Timestamp::now();
            let margin = jiff::SignedDuration::try_from(RRSA_REFRESH_MARGIN)
                .unwrap_or(jiff::SignedDuration::ZERO);
            if let Some(c) = cache.as_ref()
                && now.checked_add(margin).is_ok_and(|t| t < c.expiration)
            {
                return Ok(c.creds.clone());
            }
            match self.fetch().await {
                Ok(fresh) => {
                    let creds = fresh.creds.clone();
                    *cache = Some(fresh);
                    Ok(creds)
                }
                // A failed early refresh is not fatal while the old
                // credentials are still valid; the next call tries again.
                Err(e) => match cache.as_ref() {
                    Some(c) if now < c.expiration => {
                        tracing::warn!(error = %e, "RRSA refresh failed; using credentials that are still valid");
                        Ok(c.creds.clone())
                    }
                    _ => Err(e),
                },
            }
        })
    }

    fn identity(&self) -> String {
        // acs:ram::<account uid>:role/<name>: the account is what STS-issued
        // keys share, and what the cloud's flow control counts.
        let mut parts = self.cfg.role_arn.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("acs"), Some("ram"), Some(_), Some(uid)) if !uid.is_empty() => uid.to_string(),
            _ => self.cfg.role_arn.clone(),
        }
    }

    fn main_account(&self) -> Option<String> {
        let id = self.identity();
        (id != self.cfg.role_arn).then_some(id)
    }

    fn fingerprint(&self) -> String {
        format!(
            "rrsa|{}|{}|{}|{}|{}",
            self.cfg.role_arn,
            self.cfg.oidc_provider_arn,
            self.cfg.token_file.display(),
            self.cfg.session_name,
            self.cfg.sts_endpoint
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::{Query, State};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn secret_pai_access_key() {
        let c = from_secret_data(
            Provider::Pai,
            &data(&[("accessKeyId", "AKID"), ("accessKeySecret", "s3cret\n")]),
        )
        .unwrap();
        assert_eq!(
            c,
            Credentials::AccessKey {
                id: "AKID".into(),
                secret: "s3cret".into(),
                security_token: None
            }
        );
        let c = from_secret_data(
            Provider::Pai,
            &data(&[
                ("accessKeyId", "AKID"),
                ("accessKeySecret", "s"),
                ("securityToken", "tok"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c,
            Credentials::AccessKey {
                id: "AKID".into(),
                secret: "s".into(),
                security_token: Some("tok".into())
            }
        );
        // AccessKey wins over apiKey when both are present.
        let c = from_secret_data(
            Provider::Pai,
            &data(&[
                ("accessKeyId", "AKID"),
                ("accessKeySecret", "s"),
                ("apiKey", "k"),
            ]),
        )
        .unwrap();
        assert!(matches!(c, Credentials::AccessKey { .. }));
    }

    #[test]
    fn secret_pai_api_key_and_errors() {
        assert_eq!(
            from_secret_data(Provider::Pai, &data(&[("apiKey", "sk-123")])).unwrap(),
            Credentials::Bearer("sk-123".into())
        );
        let e = from_secret_data(
            Provider::Pai,
            &data(&[("accessKeyId", "AKID"), ("apiKey", "k")]),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                CredentialError::MissingSecretKey {
                    key: "accessKeySecret",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("`accessKeySecret`"));
        let e = from_secret_data(Provider::Pai, &data(&[("accessKeySecret", "hidden-value")]))
            .unwrap_err();
        assert!(matches!(
            e,
            CredentialError::MissingSecretKey {
                key: "accessKeyId",
                ..
            }
        ));
        assert!(!e.to_string().contains("hidden-value"));
        let e = from_secret_data(Provider::Pai, &data(&[])).unwrap_err();
        assert!(e.to_string().contains("apiKey"), "{e}");
        // Whitespace-only counts as missing.
        assert!(from_secret_data(Provider::Pai, &data(&[("apiKey", " \n")])).is_err());
        let mut d = data(&[("accessKeyId", "AKID")]);
        d.insert("accessKeySecret".into(), vec![0xff, 0xfe]);
        assert_eq!(
            from_secret_data(Provider::Pai, &d).unwrap_err(),
            CredentialError::NotUtf8("accessKeySecret")
        );
    }

    #[test]
    fn secret_ims() {
        let c =
            from_secret_data(Provider::HuaweicloudIms, &data(&[("ak", "A"), ("sk", "S")])).unwrap();
        assert_eq!(
            c,
            Credentials::AkSk {
                ak: "A".into(),
                sk: "S".into(),
                security_token: None
            }
        );
        let c = from_secret_data(
            Provider::HuaweicloudIms,
            &data(&[("ak", "A"), ("sk", "S"), ("securityToken", "T")]),
        )
        .unwrap();
        assert_eq!(
            c,
            Credentials::AkSk {
                ak: "A".into(),
                sk: "S".into(),
                security_token: Some("T".into())
            }
        );
        let e = from_secret_data(Provider::HuaweicloudIms, &data(&[("ak", "A")])).unwrap_err();
        assert!(matches!(
            e,
            CredentialError::MissingSecretKey { key: "sk", .. }
        ));
        let e = from_secret_data(
            Provider::HuaweicloudIms,
            &data(&[("accessKeyId", "A"), ("accessKeySecret", "S")]),
        )
        .unwrap_err();
        assert!(matches!(
            e,
            CredentialError::MissingSecretKey { key: "ak", .. }
        ));
    }

    #[test]
    fn debug_never_prints_secrets() {
        let all = [
            Credentials::AccessKey {
                id: "AKID".into(),
                secret: "SECRET-1".into(),
                security_token: Some("TOKEN-1".into()),
            },
            Credentials::Bearer("BEARER-1".into()),
            Credentials::AkSk {
                ak: "HWAK".into(),
                sk: "SECRET-2".into(),
                security_token: Some("TOKEN-2".into()),
            },
        ];
        for c in &all {
            let d = format!("{c:?} {:?} {}", StaticSource(c.clone()), c.identity());
            for s in ["SECRET-1", "TOKEN-1", "BEARER-1", "SECRET-2", "TOKEN-2"] {
                assert!(!d.contains(s), "{d}");
            }
            assert!(d.contains("redacted"));
        }
        assert!(format!("{:?}", all[0]).contains("AKID"));
    }

    #[test]
    fn identity_and_fingerprint() {
        let a = Credentials::AccessKey {
            id: "AKID".into(),
            secret: "s1".into(),
            security_token: None,
        };
        let b = Credentials::AccessKey {
            id: "AKID".into(),
            secret: "s2".into(),
            security_token: None,
        };
        assert_eq!(a.identity(), b.identity());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert!(
            Credentials::Bearer("x".into())
                .identity()
                .starts_with("bearer-")
        );
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |n: &str| m.get(n).cloned().filter(|v| !v.is_empty())
    }

    fn http() -> reqwest::Client {
        crate::provider::http::http_client(Duration::from_secs(5)).unwrap()
    }

    #[tokio::test]
    async fn chain_order() {
        let env = env_of(&[
            (ENV_ALI_AK_ID, "AK"),
            (ENV_ALI_AK_SECRET, "S"),
            (ENV_ALI_TOKEN, "T"),
            (ENV_DASHSCOPE, "D"),
        ]);
        let src = pai_default_chain(&env, http(), None).unwrap();
        assert_eq!(
            src.get().await.unwrap(),
            Credentials::AccessKey {
                id: "AK".into(),
                secret: "S".into(),
                security_token: Some("T".into())
            }
        );

        let env = env_of(&[
            (ENV_DASHSCOPE, "D"),
            (ENV_ROLE_ARN, "acs:ram::123456:role/r"),
            (ENV_OIDC_PROVIDER_ARN, "p"),
            (ENV_OIDC_TOKEN_FILE, "/nonexistent"),
        ]);
        let src = pai_default_chain(&env, http(), None).unwrap();
        assert!(format!("{src:?}").contains("RrsaSource"));
        assert_eq!(src.identity(), "123456");

        let env = env_of(&[(ENV_DASHSCOPE, "D")]);
        assert_eq!(
            pai_default_chain(&env, http(), None)
                .unwrap()
                .get()
                .await
                .unwrap(),
            Credentials::Bearer("D".into())
        );

        let e = pai_default_chain(&env_of(&[]), http(), None).unwrap_err();
        assert!(matches!(
            e,
            CredentialError::NoneFound {
                provider: "pai",
                ..
            }
        ));
        let e = pai_default_chain(&env_of(&[(ENV_ALI_AK_ID, "AK")]), http(), None).unwrap_err();
        assert_eq!(
            e,
            CredentialError::IncompleteEnv {
                set: ENV_ALI_AK_ID,
                missing: ENV_ALI_AK_SECRET
            }
        );
        let e = pai_default_chain(
            &env_of(&[(ENV_ROLE_ARN, "r"), (ENV_OIDC_TOKEN_FILE, "/f")]),
            http(),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e,
            CredentialError::IncompleteEnv {
                set: ENV_ROLE_ARN,
                missing: ENV_OIDC_PROVIDER_ARN
            }
        );
    }

    #[tokio::test]
    async fn ims_chain() {
        let src = ims_default_chain(&env_of(&[
            (ENV_HW_AK, "A"),
            (ENV_HW_SK, "S"),
            (ENV_HW_TOKEN, "T"),
        ]))
        .unwrap();
        assert_eq!(
            src.get().await.unwrap(),
            Credentials::AkSk {
                ak: "A".into(),
                sk: "S".into(),
                security_token: Some("T".into())
            }
        );
        assert!(ims_default_chain(&env_of(&[(ENV_HW_SK, "S")])).is_err());
        assert!(matches!(
            ims_default_chain(&env_of(&[])).unwrap_err(),
            CredentialError::NoneFound { .. }
        ));
    }

    #[test]
    fn sts_endpoints() {
        assert_eq!(
            default_sts_endpoint(None, false),
            "https://sts.aliyuncs.com"
        );
        assert_eq!(
            default_sts_endpoint(Some("cn-hangzhou"), false),
            "https://sts.cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            default_sts_endpoint(Some("cn-hangzhou"), true),
            "https://sts-vpc.cn-hangzhou.aliyuncs.com"
        );
    }

    #[derive(Clone, Default)]
    struct Stub {
        calls: Arc<AtomicUsize>,
        tokens: Arc<Mutex<Vec<String>>>,
        queries: Arc<Mutex<Vec<HashMap<String, String>>>>,
        /// Seconds until the expiration the stub reports.
        expires_in: i64,
        fail: bool,
    }

    async fn sts(
        State(s): State<Stub>,
        Query(q): Query<HashMap<String, String>>,
    ) -> axum::response::Response {
        let n = s.calls.fetch_add(1, Ordering::SeqCst);
        s.tokens
            .lock()
            .unwrap()
            .push(q.get("OIDCToken").cloned().unwrap_or_default());
        s.queries.lock().unwrap().push(q.clone());
        if s.fail {
            return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"RequestId": "r", "Code": "AuthenticationFail.OIDCToken.Invalid", "Message": "bad token"}))).into_response();
        }
        let exp = Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(s.expires_in))
            .unwrap();
        axum::Json(serde_json::json!({
            "RequestId": "r",
            "Credentials": {"AccessKeyId": format!("STS.AK{n}"), "AccessKeySecret": "stssecret", "SecurityToken": "ststoken", "Expiration": exp.to_string()}
        }))
        .into_response()
    }

    async fn serve(stub: Stub) -> String {
        let app = axum::Router::new()
            .route("/", axum::routing::get(sts))
            .with_state(stub);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        format!("http://{addr}")
    }

    fn rrsa(endpoint: String, token_file: PathBuf) -> RrsaSource {
        RrsaSource::new(
            RrsaConfig {
                role_arn: "acs:ram::1234:role/imagelabel".into(),
                oidc_provider_arn: "acs:ram::1234:oidc-provider/ack".into(),
                token_file,
                session_name: "sess".into(),
                sts_endpoint: endpoint,
                duration: Duration::from_secs(3600),
            },
            http(),
        )
    }

    #[tokio::test]
    async fn rrsa_caches_until_near_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let tf = dir.path().join("token");
        std::fs::write(&tf, "oidc-1\n").unwrap();
        let stub = Stub {
            expires_in: 3600,
            ..Default::default()
        };
        let src = rrsa(serve(stub.clone()).await, tf.clone());
        let c1 = src.get().await.unwrap();
        assert_eq!(
            c1,
            Credentials::AccessKey {
                id: "STS.AK0".into(),
                secret: "stssecret".into(),
                security_token: Some("ststoken".into())
            }
        );
        let c2 = src.get().await.unwrap();
        assert_eq!(c1, c2);
        assert_eq!(stub.calls.load(Ordering::SeqCst), 1);
        let q = stub.queries.lock().unwrap()[0].clone();
        for (k, v) in [
            ("Action", "AssumeRoleWithOIDC"),
            ("Format", "JSON"),
            ("Version", "2015-04-01"),
            ("DurationSeconds", "3600"),
            ("RoleArn", "acs:ram::1234:role/imagelabel"),
            ("OIDCProviderArn", "acs:ram::1234:oidc-provider/ack"),
            ("OIDCToken", "oidc-1"),
            ("RoleSessionName", "sess"),
        ] {
            assert_eq!(q.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(crate::sign::acs3::parse_date(&q["Timestamp"]).is_some());
        assert!(!q.contains_key("Signature"), "RRSA exchange is unsigned");
        assert!(!format!("{src:?}").contains("oidc-1"));
    }

    #[tokio::test]
    async fn rrsa_refreshes_within_margin_and_rereads_token() {
        let dir = tempfile::tempdir().unwrap();
        let tf = dir.path().join("token");
        std::fs::write(&tf, "oidc-1").unwrap();
        // Expires in 10 minutes: inside the 15-minute margin, so every get refreshes.
        let stub = Stub {
            expires_in: 600,
            ..Default::default()
        };
        let src = rrsa(serve(stub.clone()).await, tf.clone());
        let c1 = src.get().await.unwrap();
        std::fs::write(&tf, "oidc-2").unwrap();
        let c2 = src.get().await.unwrap();
        assert_ne!(c1, c2);
        assert_eq!(stub.calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            *stub.tokens.lock().unwrap(),
            vec!["oidc-1".to_string(), "oidc-2".to_string()]
        );
    }

    #[tokio::test]
    async fn rrsa_errors_are_clean() {
        let dir = tempfile::tempdir().unwrap();
        let tf = dir.path().join("token");
        std::fs::write(&tf, "secret-oidc-token").unwrap();
        let stub = Stub {
            fail: true,
            ..Default::default()
        };
        let src = rrsa(serve(stub).await, tf.clone());
        let e = src.get().await.unwrap_err();
        let CredentialError::Sts(ref ce) = e else {
            panic!("{e:?}")
        };
        assert_eq!(ce.kind, ErrorKind::Invalid);
        assert_eq!(ce.code, "AuthenticationFail.OIDCToken.Invalid");
        assert!(!e.to_string().contains("secret-oidc-token"));
        assert!(!format!("{e:?}").contains("secret-oidc-token"));

        // Connection refused: a retryable network error without the URL (which holds the token).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let src = rrsa(format!("http://{addr}"), tf.clone());
        let e = src.get().await.unwrap_err();
        let ce = e.clone().into_cloud("ListImageLabels");
        assert_eq!(ce.kind, ErrorKind::Network);
        assert_eq!(ce.api, "ListImageLabels");
        assert!(
            !format!("{e} {e:?} {ce}").contains("secret-oidc-token"),
            "{e}"
        );

        let src = rrsa("http://127.0.0.1:1".into(), dir.path().join("missing"));
        let e = src.get().await.unwrap_err();
        assert!(matches!(e, CredentialError::TokenFile { .. }), "{e:?}");
        assert_eq!(e.into_cloud("X").kind, ErrorKind::Unauthenticated);
    }

    #[test]
    fn sts_answer_parsing() {
        assert!(parse_sts_answer(b"nope").is_err());
        assert!(
            parse_sts_answer(
                br#"{"Credentials":{"AccessKeyId":"a","AccessKeySecret":"b","SecurityToken":"c"}}"#
            )
            .is_err()
        );
        assert!(parse_sts_answer(br#"{"Credentials":{"AccessKeyId":"a","AccessKeySecret":"b","SecurityToken":"c","Expiration":"soon"}}"#).is_err());
        let c = parse_sts_answer(br#"{"Credentials":{"AccessKeyId":"a","AccessKeySecret":"b","SecurityToken":"c","Expiration":"2030-01-01T00:00:00Z"}}"#).unwrap();
        assert_eq!(
            c.expiration,
            "2030-01-01T00:00:00Z".parse::<Timestamp>().unwrap()
        );
    }
}
