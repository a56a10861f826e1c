//! The operator's default credentials, from its own environment: the
//! variable names and precedence of the official Alibaba Cloud and Huawei
//! Cloud SDKs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::oidc::{RrsaConfig, RrsaSource, default_sts_endpoint};
use super::{CredentialError, CredentialSource, Credentials, StaticSource};

/// Environment lookup, injectable for tests. Empty values count as unset.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, empty values treated as unset.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub(crate) const ENV_ALI_AK_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub(crate) const ENV_ALI_AK_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub(crate) const ENV_ALI_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
pub(crate) const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub(crate) const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub(crate) const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
pub(crate) const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
pub(crate) const ENV_STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";
pub(crate) const ENV_VPC_ENDPOINT: &str = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED";
pub(crate) const ENV_DASHSCOPE: &str = "DASHSCOPE_API_KEY";
pub(crate) const ENV_HW_AK: &str = "HUAWEICLOUD_SDK_AK";
pub(crate) const ENV_HW_SK: &str = "HUAWEICLOUD_SDK_SK";
pub(crate) const ENV_HW_TOKEN: &str = "HUAWEICLOUD_SDK_SECURITY_TOKEN";

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
