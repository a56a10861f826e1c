//! RRSA: temporary credentials from STS `AssumeRoleWithOIDC`, exchanging
//! the pod's projected service-account token (re-read at every refresh),
//! cached until shortly before they expire.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;

use super::{CredentialError, CredentialSource, Credentials};
use crate::provider::{CloudError, ErrorKind};

/// `https://sts.aliyuncs.com`, or the regional (optionally VPC) endpoint.
pub(crate) fn default_sts_endpoint(region: Option<&str>, vpc: bool) -> String {
    match region.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) if vpc => format!("https://sts-vpc.{r}.aliyuncs.com"),
        Some(r) => format!("https://sts.{r}.aliyuncs.com"),
        None => "https://sts.aliyuncs.com".to_string(),
    }
}

/// RRSA settings: which role to assume with the pod's OIDC token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RrsaConfig {
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
pub(crate) const RRSA_REFRESH_MARGIN: Duration = Duration::from_secs(15 * 60);

pub(crate) struct Cached {
    pub(crate) creds: Credentials,
    pub(crate) expiration: Timestamp,
}

/// Temporary credentials from STS `AssumeRoleWithOIDC`, cached and refreshed
/// within [`RRSA_REFRESH_MARGIN`] of expiry. Concurrent callers share one
/// refresh.
pub(crate) struct RrsaSource {
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
            .map_err(|e| CredentialError::Sts(crate::provider::http::transport_error(API, &e)))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = crate::provider::body::read_capped(
            resp,
            API,
            crate::provider::body::MAX_RESPONSE_BYTES,
        )
        .await
        .map_err(CredentialError::Sts)?;
        if !(200..300).contains(&status) {
            return Err(CredentialError::Sts(crate::provider::acs_error::map_error(
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
