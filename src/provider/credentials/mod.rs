//! Cloud credentials and where they come from: a Kubernetes Secret named by
//! the set, or the operator's own default chain (environment, RRSA, API key).
//!
//! Secrets never leave this module in a printable form: every `Debug` impl
//! redacts them, and no error message carries a value, only key names.

use std::fmt;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::{CloudError, ErrorKind};

mod env;
mod oidc;
mod secret;
#[cfg(test)]
mod tests;

pub(crate) use env::process_env;
pub use env::{EnvLookup, ims_default_chain, pai_default_chain};
#[cfg(test)]
pub(crate) use oidc::parse_sts_answer;
pub(crate) use secret::from_secret_data;

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
    pub(crate) fn kind_name(&self) -> &'static str {
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
    pub(crate) fn into_cloud(self, api: &'static str) -> CloudError {
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
