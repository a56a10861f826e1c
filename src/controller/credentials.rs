//! A set's cloud client: its `credentialsRef` Secret (read in the set's own
//! namespace only) or the operator's own account, metered.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::context::{Ctx, Metered};
use super::resource::LabelSetResource;
use super::tenancy::DefaultCredentialsNamespaces;
use crate::engine::ResolvedSet;
use crate::provider::{AccessError, LabelProvider};

/// The data of a `credentialsRef` Secret and its resourceVersion.
pub struct SecretRead {
    pub data: BTreeMap<String, Vec<u8>>,
    pub version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Missing or forbidden, or no Secret where one is required: a person has to act.
    #[error("{0}")]
    Stall(String),
    /// The API server did not answer; try again with backoff.
    #[error("reading Secret {namespace}/{name}: {source}")]
    Unreadable {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Reads the `credentialsRef` Secret; `None`: the set runs on the
/// operator's own account, which its namespace is allowed to.
pub async fn secret_data<K: LabelSetResource>(
    obj: &K,
    set: &ResolvedSet,
    ctx: &Ctx,
) -> Result<Option<SecretRead>, SecretError> {
    let ns = obj.namespace().unwrap_or_default();
    let Some(r) = &set.policy.credentials_ref else {
        // Checked before any cloud client exists: a refused set costs no call.
        if !ctx.config.default_credentials.allows(&ns) {
            return Err(SecretError::Stall(DefaultCredentialsNamespaces::refusal(
                &ns,
            )));
        }
        return Ok(None);
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    match api.get_opt(&r.name).await {
        Ok(Some(s)) => Ok(Some(SecretRead {
            version: s.resource_version().unwrap_or_default(),
            data: s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect(),
        })),
        Ok(None) => Err(SecretError::Stall(format!(
            "Secret {ns}/{} (spec.credentialsRef) not found; create it with accessKeyId/accessKeySecret (pai) or ak/sk (huaweicloud-ims)",
            r.name
        ))),
        Err(kube::Error::Api(e)) if e.code == 403 => Err(SecretError::Stall(format!(
            "the operator may not read Secret {ns}/{}: {}",
            r.name, e.message
        ))),
        Err(source) => Err(SecretError::Unreadable {
            namespace: ns,
            name: r.name.clone(),
            source,
        }),
    }
}

/// The set's cloud client, counting every call in the metrics.
pub fn provider_for(
    set: &ResolvedSet,
    secret: Option<&SecretRead>,
    ctx: &Ctx,
) -> Result<Arc<dyn LabelProvider>, AccessError> {
    let inner = ctx.clouds.provider_for(set, secret.map(|s| &s.data))?;
    Ok(Arc::new(Metered {
        inner,
        provider: set.provider.as_str(),
        metrics: ctx.metrics.clone(),
    }))
}
