//! The operator's clouds: provider clients built from operator configuration
//! (endpoints, QPS, credentials), shared by the CLI and the controller.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::CloudArgs;
use crate::controller::context::CloudAccess;
use crate::engine::ResolvedSet;
use crate::provider::LabelProvider;

/// Where default credentials (sets without `credentialsRef`) come from.
#[derive(Clone, Debug)]
pub enum DefaultCredentials {
    /// The environment chain of DESIGN.md §3.
    FromEnvironment,
}

pub struct Clouds {}

impl Clouds {
    pub fn from_args(_args: &CloudArgs, _defaults: DefaultCredentials) -> anyhow::Result<Self> {
        Ok(Clouds {})
    }

    pub fn lookup(&self, set: &ResolvedSet) -> Result<Arc<dyn LabelProvider>, String> {
        self.provider_for(set, None)
    }
}

impl CloudAccess for Clouds {
    fn provider_for(
        &self,
        _set: &ResolvedSet,
        _secret: Option<&BTreeMap<String, Vec<u8>>>,
    ) -> Result<Arc<dyn LabelProvider>, String> {
        Err("cloud clients are not wired yet".into())
    }
}
