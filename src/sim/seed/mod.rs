//! The simulator's starting state and settings, read from YAML (camelCase)
//! or built in code. `SeedConfig::demo()` is the embedded sample that
//! `imagelabel demo` runs against; `examples/sim/seed.yaml` is the same file.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize};

/// Everything the simulator starts from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedConfig {
    #[serde(default)]
    pub credentials: CredentialsSeed,
    /// Per-API flow control per main account and region; on by default with
    /// the published rates ([`FlowControlSeed::published`]).
    #[serde(default)]
    pub flow_control: FlowControlSeed,
    #[serde(default)]
    pub faults: FaultConfig,
    #[serde(default)]
    pub pai: PaiSeed,
    #[serde(default)]
    pub ims: ImsSeed,
}

/// The main account (16-digit UID) of PAI credentials that name none.
pub const DEFAULT_MAIN_ACCOUNT_ID: &str = "1000000000000001";
/// The Huawei account (domain ID) of IMS keys that name none.
pub const DEFAULT_IMS_ACCOUNT_ID: &str = "0a1b2c3d4e5f40718293a4b5c6d7e8f9";

/// Per-API flow control, as Alibaba Cloud publishes it for AIWorkSpace
/// 2021-02-04: a budget per region, API and main account (all RAM users,
/// roles, STS tokens and keys of one main account share it). YAML:
/// `flowControl: {enabled: true, rates: {AddImageLabels: 5}}`; the same JSON
/// is what `GET|PUT /_sim/flow-control` take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowControlSeed {
    /// `false` turns all throttling off (tests and benchmarks that do not
    /// study quota).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Calls per second for one API (by its name: `AddImageLabels`,
    /// `ListImageTags`, …), replacing the published figure; 0 = no limit for
    /// that API. APIs not listed keep theirs (`sim::PUBLISHED_RATES`,
    /// `sim::IMS_DEFAULT_RATES`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rates: BTreeMap<String, u32>,
}

fn enabled_by_default() -> bool {
    true
}

impl Default for FlowControlSeed {
    fn default() -> Self {
        Self::published()
    }
}

impl FlowControlSeed {
    /// On, with the published rates.
    pub fn published() -> Self {
        FlowControlSeed {
            enabled: true,
            rates: BTreeMap::new(),
        }
    }

    /// No throttling at all.
    /// The rate `api` gets under this configuration (0: not limited).
    pub fn rate_of(&self, api: &str) -> u32 {
        if !self.enabled {
            return 0;
        }
        self.rates
            .get(api)
            .copied()
            .or_else(|| super::throttle::default_rate(api))
            .unwrap_or(0)
    }

    pub fn off() -> Self {
        FlowControlSeed {
            enabled: false,
            rates: BTreeMap::new(),
        }
    }

    /// The published rates with one API's replaced.
    pub fn with_rate(mut self, api: &str, per_second: u32) -> Self {
        self.rates.insert(api.to_string(), per_second);
        self
    }

    /// Rejects overrides of APIs the simulator does not serve (a typo would
    /// otherwise silently keep the published rate).
    pub fn validate(&self) -> Result<(), String> {
        for api in self.rates.keys() {
            if super::throttle::default_rate(api).is_none() {
                return Err(format!(
                    "flowControl.rates: {api:?} is not an API the simulator serves"
                ));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsSeed {
    /// The main account (Alibaba Cloud UID) of every PAI credential that
    /// names none: bearer tokens, and AccessKeys without `accountId`.
    /// Defaults to [`DEFAULT_MAIN_ACCOUNT_ID`], so by default all keys of a
    /// seed belong to one main account, as on a real account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_account_id: Option<String>,
    /// The Huawei account (domain ID) of every IMS key that names none;
    /// defaults to [`DEFAULT_IMS_ACCOUNT_ID`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ims_account_id: Option<String>,
    /// AccessKey pairs the PAI API accepts (ACS3-HMAC-SHA256).
    #[serde(default)]
    pub pai: Vec<PaiCredential>,
    /// Bearer tokens (API keys) the PAI API accepts; they belong to
    /// `mainAccountId`.
    #[serde(default)]
    pub bearer_tokens: Vec<String>,
    /// AK/SK pairs the IMS API accepts (SDK-HMAC-SHA256).
    #[serde(default)]
    pub ims: Vec<ImsCredential>,
    /// The one OIDC role STS `AssumeRoleWithOIDC` lets callers assume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcSeed>,
}

impl CredentialsSeed {
    /// The main account of PAI credentials that name none.
    pub fn pai_main_account(&self) -> &str {
        self.main_account_id
            .as_deref()
            .unwrap_or(DEFAULT_MAIN_ACCOUNT_ID)
    }

    pub fn ims_account(&self) -> &str {
        self.ims_account_id
            .as_deref()
            .unwrap_or(DEFAULT_IMS_ACCOUNT_ID)
    }

    /// The main account STS-issued keys belong to: the one in the role's
    /// ARN (`acs:ram::<account>:role/<name>`), else [`Self::pai_main_account`].
    pub fn oidc_account(&self) -> Option<String> {
        self.oidc.as_ref().map(|o| {
            o.role_arn
                .split(':')
                .nth(3)
                .filter(|a| !a.is_empty())
                .unwrap_or(self.pai_main_account())
                .to_string()
        })
    }
}

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaiCredential {
    pub access_key_id: String,
    pub access_key_secret: String,
    /// When set, the key is a temporary (STS) key: every request must carry
    /// this `x-acs-security-token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_token: Option<String>,
    /// The main account (16-digit UID) the key belongs to;
    /// `credentials.mainAccountId` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImsCredential {
    pub ak: String,
    pub sk: String,
    /// When set, the pair is temporary: requests must carry this `X-Security-Token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_token: Option<String>,
    /// When set, the key may only touch this project (403 for others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// The Huawei account (domain ID) the key belongs to;
    /// `credentials.imsAccountId` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcSeed {
    pub role_arn: String,
    pub provider_arn: String,
    /// The OIDC token the caller must present (the content of the token file).
    pub token: String,
    /// Fixed AccessKeyId for issued credentials; a fresh `STS.<random>` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_access_key_id: Option<String>,
    /// Fixed AccessKeySecret for issued credentials; random otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_access_key_secret: Option<String>,
    /// Caps the lifetime of issued credentials below the requested
    /// DurationSeconds, so tests can watch a refresh without waiting 15 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_seconds: Option<u64>,
    /// When set, `token` is not compared: any ES256 JWT this issuer signed
    /// for the audience and subject is accepted, as STS accepts the
    /// projected ServiceAccount tokens of a cluster whose OIDC provider it
    /// trusts (each pod's token differs and the kubelet rotates them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<OidcIssuerSeed>,
}

/// The OIDC provider a cluster's ServiceAccount tokens come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcIssuerSeed {
    /// The tokens' `iss` (the API server's --service-account-issuer).
    pub issuer: String,
    /// The P-256 public key the API server signs with, as a PEM SubjectPublicKeyInfo.
    pub public_key_pem: String,
    /// Required in the tokens' `aud`.
    pub audience: String,
    /// The tokens' `sub`: `system:serviceaccount:<namespace>:<name>`.
    pub subject: String,
}

/// Fault injection. Rates are probabilities per API request (0..=1); admin
/// and STS requests are never faulted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultConfig {
    /// Added to every API request before it is answered.
    #[serde(default)]
    pub latency_ms: u64,
    /// Answer 500 InternalError / 503 ServiceUnavailable (half each).
    #[serde(default)]
    pub server_error_rate: f64,
    /// Answer the throttling error as if a flow-control budget were spent.
    #[serde(default)]
    pub throttle_rate: f64,
    /// Close the connection without any response.
    #[serde(default)]
    pub drop_rate: f64,
    /// Seed for the fault RNG, for reproducible runs; entropy otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl FaultConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("serverErrorRate", self.server_error_rate),
            ("throttleRate", self.throttle_rate),
            ("dropRate", self.drop_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("faults.{name} must be between 0 and 1, got {rate}"));
            }
        }
        if self.latency_ms > 600_000 {
            return Err(format!(
                "faults.latencyMs must be at most 600000, got {}",
                self.latency_ms
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaiSeed {
    /// Keys AddImageLabels accepts beyond its documented list: the cloud
    /// gaining keys before the operator ships them (`--extra-pai-image-keys`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_image_label_keys: Vec<String>,
    #[serde(default)]
    pub images: Vec<PaiImageSeed>,
    #[serde(default)]
    pub datasets: Vec<DatasetSeed>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaiImageSeed {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatasetSeed {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub versions: Vec<VersionSeed>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VersionSeed {
    pub name: String,
    #[serde(default, deserialize_with = "scalar_map")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImsSeed {
    #[serde(default)]
    pub images: Vec<ImsImageSeed>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImsImageSeed {
    pub id: String,
    pub project_id: String,
    #[serde(default, deserialize_with = "scalar_map")]
    pub tags: BTreeMap<String, String>,
}

/// A YAML scalar taken as the string it spells, so a seed author who writes
/// `system.official: true` unquoted gets "true" rather than a type error.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Str(String),
    Bool(bool),
    Int(i64),
    Float(f64),
}

fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = Option::<BTreeMap<String, Scalar>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::Str(s) => s,
                Scalar::Bool(b) => b.to_string(),
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// The seed `imagelabel demo` uses; also `examples/sim/seed.yaml`.
pub const DEMO_SEED_YAML: &str = include_str!("../../../examples/sim/seed.yaml");

impl SeedConfig {
    /// Parses and checks a YAML seed.
    pub fn from_yaml(text: &str) -> Result<Self, SeedError> {
        let seed: SeedConfig = serde_saphyr::from_str(text)
            .map_err(|e| SeedError(format!("invalid seed YAML: {e}")))?;
        seed.validate()?;
        Ok(seed)
    }

    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, SeedError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| SeedError(format!("cannot read seed {}: {e}", path.display())))?;
        Self::from_yaml(&text).map_err(|SeedError(e)| SeedError(format!("{}: {e}", path.display())))
    }

    /// The embedded demo seed.
    pub fn demo() -> Self {
        Self::from_yaml(DEMO_SEED_YAML)
            .expect("the embedded demo seed is valid (checked by a unit test)")
    }

    /// Rejects seeds the simulator could not serve unambiguously.
    pub fn validate(&self) -> Result<(), SeedError> {
        self.faults.validate().map_err(SeedError)?;
        self.flow_control.validate().map_err(SeedError)?;
        let uid = |what: &str, id: Option<&String>| match id {
            Some(id) if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) => Err(SeedError(
                format!("{what}: {id:?} is not an account UID (digits, e.g. 1234567890123456)"),
            )),
            _ => Ok(()),
        };
        uid(
            "credentials.mainAccountId",
            self.credentials.main_account_id.as_ref(),
        )?;
        if self
            .credentials
            .ims_account_id
            .as_ref()
            .is_some_and(String::is_empty)
            || self
                .credentials
                .ims
                .iter()
                .any(|c| c.account_id.as_ref().is_some_and(String::is_empty))
        {
            return Err(SeedError("credentials.ims: an account ID is empty".into()));
        }
        let mut ids = BTreeSet::new();
        for c in &self.credentials.pai {
            uid("credentials.pai[].accountId", c.account_id.as_ref())?;
            if c.access_key_id.is_empty() || c.access_key_secret.is_empty() {
                return Err(SeedError(
                    "credentials.pai: accessKeyId and accessKeySecret must not be empty".into(),
                ));
            }
            if !ids.insert(c.access_key_id.as_str()) {
                return Err(SeedError(format!(
                    "credentials.pai: accessKeyId {:?} listed twice",
                    c.access_key_id
                )));
            }
        }
        if self.credentials.bearer_tokens.iter().any(String::is_empty) {
            return Err(SeedError(
                "credentials.bearerTokens: a token is empty".into(),
            ));
        }
        let mut aks = BTreeSet::new();
        for c in &self.credentials.ims {
            if c.ak.is_empty() || c.sk.is_empty() {
                return Err(SeedError(
                    "credentials.ims: ak and sk must not be empty".into(),
                ));
            }
            if !aks.insert(c.ak.as_str()) {
                return Err(SeedError(format!(
                    "credentials.ims: ak {:?} listed twice",
                    c.ak
                )));
            }
        }
        unique("pai.images", self.pai.images.iter().map(|i| i.id.clone()))?;
        unique(
            "pai.datasets",
            self.pai.datasets.iter().map(|d| d.id.clone()),
        )?;
        for d in &self.pai.datasets {
            unique(
                &format!("pai.datasets[{}].versions", d.id),
                d.versions.iter().map(|v| v.name.clone()),
            )?;
        }
        unique(
            "ims.images",
            self.ims
                .images
                .iter()
                .map(|i| format!("{}/{}", i.project_id, i.id)),
        )?;
        Ok(())
    }
}

fn unique(what: &str, ids: impl Iterator<Item = String>) -> Result<(), SeedError> {
    let mut seen = BTreeSet::new();
    for id in ids {
        if id.is_empty() {
            return Err(SeedError(format!("{what}: an id is empty")));
        }
        if !seen.insert(id.clone()) {
            return Err(SeedError(format!("{what}: {id:?} listed twice")));
        }
    }
    Ok(())
}

/// A seed that cannot be used, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SeedError(pub String);

/// Debug of the seed's credentials shows who, never the secrets.
const HIDDEN: &str = "<redacted>";

impl std::fmt::Debug for CredentialsSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsSeed")
            .field("main_account_id", &self.main_account_id)
            .field("ims_account_id", &self.ims_account_id)
            .field("pai", &self.pai)
            .field("bearer_tokens", &self.bearer_tokens.len())
            .field("ims", &self.ims)
            .field("oidc", &self.oidc)
            .finish()
    }
}

impl std::fmt::Debug for PaiCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaiCredential")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &HIDDEN)
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| HIDDEN),
            )
            .field("account_id", &self.account_id)
            .finish()
    }
}

impl std::fmt::Debug for ImsCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImsCredential")
            .field("ak", &self.ak)
            .field("sk", &HIDDEN)
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| HIDDEN),
            )
            .field("project_id", &self.project_id)
            .field("account_id", &self.account_id)
            .finish()
    }
}

impl std::fmt::Debug for OidcSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSeed")
            .field("role_arn", &self.role_arn)
            .field("provider_arn", &self.provider_arn)
            .field("token", &HIDDEN)
            .field("issued_access_key_id", &self.issued_access_key_id)
            .field(
                "issued_access_key_secret",
                &self.issued_access_key_secret.as_ref().map(|_| HIDDEN),
            )
            .field("expiry_seconds", &self.expiry_seconds)
            .field("issuer", &self.issuer)
            .finish()
    }
}

#[cfg(test)]
mod tests;
