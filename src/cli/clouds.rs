//! The operator's clouds as the CLI and the controller see them: the
//! provider registry built from flags, with default credentials from the
//! environment (or, for the demo, from a fixed map).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::CloudArgs;
use crate::controller::context::CloudAccess;
use crate::engine::ResolvedSet;
use crate::provider::limiter::BudgetStat;
use crate::provider::registry::{self, CloudConfig};
use crate::provider::{AccessError, LabelProvider};

/// Where default credentials (sets without `credentialsRef`) come from.
#[derive(Clone, Debug)]
pub enum DefaultCredentials {
    /// The process environment, read as the official SDKs read it
    /// (`provider::credentials::pai_default_chain`, `ims_default_chain`).
    FromEnvironment,
    /// The same chain read from this map instead of the process environment.
    Fixed(HashMap<String, String>),
}

pub struct Clouds {
    registry: registry::Clouds,
    defaults: DefaultCredentials,
}

impl Clouds {
    pub fn from_args(args: &CloudArgs, defaults: DefaultCredentials) -> anyhow::Result<Self> {
        Self::for_client(args, defaults, None)
    }

    /// As [`Clouds::from_args`], with calls marked as `client_id`'s.
    pub fn for_client(
        args: &CloudArgs,
        defaults: DefaultCredentials,
        client_id: Option<String>,
    ) -> anyhow::Result<Self> {
        let config = CloudConfig {
            pai_endpoint: args.pai_endpoint.clone(),
            ims_endpoint: args.ims_endpoint.clone(),
            sts_endpoint: args.sts_endpoint.clone(),
            quota_share: args.quota_share,
            quotas: args.quotas.iter().cloned().collect(),
            http_timeout: args.http_timeout,
            client_id,
            ..CloudConfig::default()
        };
        let registry = registry::Clouds::new(config)
            .map_err(|e| anyhow::anyhow!("cloud configuration: {}", e.message))?;
        Ok(Clouds { registry, defaults })
    }

    pub fn lookup(&self, set: &ResolvedSet) -> Result<Arc<dyn LabelProvider>, AccessError> {
        self.provider_for(set, None)
    }

    pub fn registry(&self) -> &registry::Clouds {
        &self.registry
    }
}

impl CloudAccess for Clouds {
    fn provider_for(
        &self,
        set: &ResolvedSet,
        secret: Option<&BTreeMap<String, Vec<u8>>>,
    ) -> Result<Arc<dyn LabelProvider>, AccessError> {
        let creds = match (secret, &self.defaults) {
            (Some(data), _) => registry::Clouds::credentials_from_secret(set.provider, data),
            (None, DefaultCredentials::FromEnvironment) => {
                self.registry.default_credentials(set.provider)
            }
            (None, DefaultCredentials::Fixed(map)) => self
                .registry
                .default_credentials_with_env(set.provider, &|k| map.get(k).cloned()),
        }?;
        self.registry.provider(set.provider, &set.region, creds)
    }

    fn rate_limiter_wait_seconds(&self) -> f64 {
        self.registry.limiter_wait_total().as_secs_f64()
    }

    fn cloud_requests(&self) -> u64 {
        self.registry.requests_total()
    }

    fn budget_stats(&self) -> Vec<BudgetStat> {
        self.registry.budget_stats()
    }
}
