//! The simulator's starting state and settings, read from YAML (camelCase)
//! or built in code. `SeedConfig::demo()` is the embedded sample that
//! `imagelabel demo` runs against; `examples/sim/seed.yaml` is the same file.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize};

/// Everything the simulator starts from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedConfig {
    #[serde(default)]
    pub credentials: CredentialsSeed,
    /// Requests per second allowed per account (AccessKeyId, bearer token or
    /// Huawei AK); 0 turns the limit off. Defaults to the documented 100.
    #[serde(default = "default_qps")]
    pub qps: u32,
    #[serde(default)]
    pub faults: FaultConfig,
    #[serde(default)]
    pub pai: PaiSeed,
    #[serde(default)]
    pub ims: ImsSeed,
}

fn default_qps() -> u32 {
    100
}

impl Default for SeedConfig {
    fn default() -> Self {
        SeedConfig {
            credentials: CredentialsSeed::default(),
            qps: default_qps(),
            faults: FaultConfig::default(),
            pai: PaiSeed::default(),
            ims: ImsSeed::default(),
        }
    }
}

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsSeed {
    /// AccessKey pairs the PAI API accepts (ACS3-HMAC-SHA256).
    #[serde(default)]
    pub pai: Vec<PaiCredential>,
    /// Bearer tokens (API keys) the PAI API accepts.
    #[serde(default)]
    pub bearer_tokens: Vec<String>,
    /// AK/SK pairs the IMS API accepts (SDK-HMAC-SHA256).
    #[serde(default)]
    pub ims: Vec<ImsCredential>,
    /// The one OIDC role STS `AssumeRoleWithOIDC` lets callers assume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcSeed>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaiCredential {
    pub access_key_id: String,
    pub access_key_secret: String,
    /// When set, the key is a temporary (STS) key: every request must carry
    /// this `x-acs-security-token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_token: Option<String>,
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
    /// Answer the throttling error as if the QPS limit were hit.
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
pub const DEMO_SEED_YAML: &str = include_str!("../../examples/sim/seed.yaml");

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
        let mut ids = BTreeSet::new();
        for c in &self.credentials.pai {
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
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_seed_parses_and_has_what_the_demo_needs() {
        let seed = SeedConfig::demo();
        assert!(
            seed.credentials
                .pai
                .iter()
                .any(|c| c.access_key_id == "testAK" && c.access_key_secret == "testSecret")
        );
        assert!(
            seed.credentials
                .bearer_tokens
                .contains(&"sk-demo".to_string())
        );
        assert!(
            seed.credentials
                .ims
                .iter()
                .any(|c| c.ak == "hwAK" && c.sk == "hwSK")
        );
        assert!(
            seed.pai
                .images
                .iter()
                .any(|i| i.labels.keys().any(|k| k.starts_with("system.dsw.")))
        );
        assert!(
            seed.pai
                .images
                .iter()
                .any(|i| i.labels.get("system.official").map(String::as_str) == Some("true"))
        );
        assert_eq!(seed.pai.datasets.len(), 2);
        assert!(seed.pai.datasets.iter().any(|d| !d.versions.is_empty()));
        assert_eq!(seed.ims.images.len(), 1);
        assert!(seed.ims.images[0].tags.len() >= 2);
    }

    #[test]
    fn unquoted_scalars_become_strings_and_defaults_apply() {
        let seed = SeedConfig::from_yaml(
            "pai:\n  images:\n    - {id: image-a, labels: {system.official: true, system.n: 3}}\n",
        )
        .unwrap();
        assert_eq!(seed.qps, 100);
        assert_eq!(seed.pai.images[0].labels["system.official"], "true");
        assert_eq!(seed.pai.images[0].labels["system.n"], "3");
    }

    #[test]
    fn rejects_duplicates_bad_rates_and_unknown_fields() {
        assert!(
            SeedConfig::from_yaml("pai:\n  images: [{id: a}, {id: a}]\n")
                .unwrap_err()
                .0
                .contains("twice")
        );
        assert!(
            SeedConfig::from_yaml("faults: {dropRate: 1.5}\n")
                .unwrap_err()
                .0
                .contains("dropRate")
        );
        assert!(SeedConfig::from_yaml("qpss: 3\n").is_err());
        assert!(
            SeedConfig::from_yaml("credentials:\n  pai: [{accessKeyId: a, accessKeySecret: ''}]\n")
                .is_err()
        );
    }
}
