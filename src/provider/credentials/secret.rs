//! Credentials from the Kubernetes Secret a set names (`credentialsRef`).

use std::collections::BTreeMap;

use super::{CredentialError, Credentials};
use crate::api::Provider;

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
pub(crate) fn from_secret_data(
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
