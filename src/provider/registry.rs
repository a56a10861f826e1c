//! Hands out cloud clients for (provider, region, credentials), built from
//! the operator's configuration. The CLI and the controller go through
//! [`Clouds`]: it caches clients, shares one HTTP connection pool, and shares
//! one budget per (provider, main account, region, API) however many sets
//! and credential objects point at that account (see [`super::limiter`]).
//!
//! Endpoints come only from [`CloudConfig`] (operator flags), never from a
//! custom resource: a tenant must not be able to send the operator's
//! credentials to a host of its choosing. Regions, which do come from
//! resources, are checked to be plain region names before they become part
//! of a host name.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::access::AccessError;
use super::account::MainAccount;
use super::credentials::{self, CredentialError, CredentialSource, EnvLookup, StaticSource};
use super::http::{Endpoint, http_client_as, user_agent};
use super::ims::ImsClient;
use super::limiter::{BudgetConfig, BudgetHandle, BudgetStat, Budgets, DEFAULT_QUOTA_SHARE};
use super::pai::PaiClient;
use super::region::validate_region;
use super::retry::RetryPolicy;
use super::{CloudError, ErrorKind, LabelProvider};
use crate::api::Provider;

/// Operator-level settings of the cloud clients.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudConfig {
    /// Base URL replacing `https://aiworkspace.<region>.aliyuncs.com` (VPC endpoint, simulator).
    pub pai_endpoint: Option<String>,
    /// Base URL replacing `https://ims.<region>.myhuaweicloud.com`.
    pub ims_endpoint: Option<String>,
    /// Base URL of STS for RRSA, replacing `https://sts.aliyuncs.com` (or the regional one).
    pub sts_endpoint: Option<String>,
    /// Share of each API's published rate the operator uses, in (0, 1]:
    /// the ceiling of a (provider, main account, region, API) budget.
    pub quota_share: f64,
    /// Absolute ceilings (calls per second) per API name, replacing
    /// published rate × `quota_share` for that API.
    pub quotas: BTreeMap<String, f64>,
    /// Ask STS `GetCallerIdentity` for the main account of AccessKeys, so
    /// keys of one account share budgets (see [`super::account`]).
    pub main_account_lookup: bool,
    pub retry: RetryPolicy,
    /// Whole-request timeout of one attempt.
    pub http_timeout: Duration,
    /// Who is calling, added to the User-Agent (a replica's Lease identity),
    /// so the cloud's logs and the simulator can tell replicas apart.
    pub client_id: Option<String>,
}

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            pai_endpoint: None,
            ims_endpoint: None,
            sts_endpoint: None,
            quota_share: DEFAULT_QUOTA_SHARE,
            quotas: BTreeMap::new(),
            main_account_lookup: true,
            retry: RetryPolicy::default(),
            http_timeout: Duration::from_secs(30),
            client_id: None,
        }
    }
}

impl CloudConfig {
    /// How budgets are sized.
    pub(crate) fn budget_config(&self) -> BudgetConfig {
        BudgetConfig {
            quota_share: self.quota_share,
            quotas: self.quotas.clone(),
            ..BudgetConfig::default()
        }
    }

    /// Every API (PAI, IMS and STS) at one base URL, as the simulator serves them.
    pub fn with_base_url(base: &str) -> Self {
        CloudConfig {
            pai_endpoint: Some(base.to_string()),
            ims_endpoint: Some(base.to_string()),
            sts_endpoint: Some(base.to_string()),
            ..Default::default()
        }
    }

    /// Checks the endpoint overrides, so a typo fails at start-up rather than
    /// at the first reconcile.
    pub fn validate(&self) -> Result<(), String> {
        self.budget_config().validate()?;
        for (name, ep) in [
            ("pai", &self.pai_endpoint),
            ("huaweicloud-ims", &self.ims_endpoint),
            ("sts", &self.sts_endpoint),
        ] {
            if let Some(ep) = ep {
                Endpoint::parse(ep).map_err(|e| format!("{name} endpoint: {e}"))?;
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
enum Client {
    Pai(Arc<PaiClient>),
    Ims(Arc<ImsClient>),
}

/// Past this many cached clients the cache starts over (rotated Secrets
/// leave stale entries behind); clients are cheap to rebuild and the rate
/// budgets live on separately.
const MAX_CACHED_CLIENTS: usize = 4096;

/// The registry of cloud clients.
pub struct Clouds {
    config: CloudConfig,
    http: reqwest::Client,
    budgets: Arc<Budgets>,
    /// Main account per (provider, credential fingerprint): looked up once.
    accounts: Mutex<HashMap<(Provider, String), Arc<MainAccount>>>,
    clients: Mutex<HashMap<(Provider, String, String), Client>>,
    defaults: Mutex<HashMap<Provider, Arc<dyn CredentialSource>>>,
}

impl std::fmt::Debug for Clouds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clouds")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Clouds {
    pub fn new(config: CloudConfig) -> Result<Self, CloudError> {
        config
            .validate()
            .map_err(|m| CloudError::new(ErrorKind::Invalid, "client", m))?;
        let http = http_client_as(
            config.http_timeout,
            &user_agent(config.client_id.as_deref()),
        )?;
        Ok(Clouds {
            budgets: Arc::new(Budgets::new(config.budget_config())),
            accounts: Mutex::new(HashMap::new()),
            config,
            http,
            clients: Mutex::new(HashMap::new()),
            defaults: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &CloudConfig {
        &self.config
    }

    /// The main account of `creds`, shared by every client using them.
    fn main_account(
        &self,
        provider: Provider,
        creds: &Arc<dyn CredentialSource>,
    ) -> Arc<MainAccount> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let key = (provider, creds.fingerprint());
        if let Some(a) = accounts.get(&key) {
            return a.clone();
        }
        if accounts.len() >= MAX_CACHED_CLIENTS {
            accounts.clear();
        }
        let account = Arc::new(MainAccount::of(
            creds.clone(),
            self.http.clone(),
            self.config.sts_endpoint.as_deref(),
            // Only Alibaba AccessKeys can ask (see `provider::account`).
            self.config.main_account_lookup && provider == Provider::Pai,
        ));
        accounts.insert(key, account.clone());
        account
    }

    fn client(
        &self,
        provider: Provider,
        region: &str,
        creds: Arc<dyn CredentialSource>,
    ) -> Result<Client, AccessError> {
        validate_region(region).map_err(|reason| AccessError::Region {
            region: region.to_string(),
            reason: reason.to_string(),
        })?;
        let key = (provider, region.to_string(), creds.fingerprint());
        let mut cache = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let budgets = BudgetHandle::new(
            self.budgets.clone(),
            provider.as_str(),
            region,
            self.main_account(provider, &creds),
        );
        let retry = self.config.retry.clone();
        let client = match provider {
            Provider::Pai => Client::Pai(Arc::new(
                PaiClient::new(
                    self.http.clone(),
                    region,
                    self.config.pai_endpoint.as_deref(),
                    creds,
                    budgets,
                    retry,
                )
                .map_err(AccessError::Client)?,
            )),
            Provider::HuaweicloudIms => Client::Ims(Arc::new(
                ImsClient::new(
                    self.http.clone(),
                    region,
                    self.config.ims_endpoint.as_deref(),
                    creds,
                    budgets,
                    retry,
                )
                .map_err(AccessError::Client)?,
            )),
        };
        if cache.len() >= MAX_CACHED_CLIENTS {
            cache.clear();
        }
        cache.insert(key, client.clone());
        Ok(client)
    }

    /// The client of `provider` in `region` acting with `creds`; the same
    /// (provider, region, credentials) gets the same client back.
    pub fn provider(
        &self,
        provider: Provider,
        region: &str,
        creds: Arc<dyn CredentialSource>,
    ) -> Result<Arc<dyn LabelProvider>, AccessError> {
        Ok(match self.client(provider, region, creds)? {
            Client::Pai(c) => c,
            Client::Ims(c) => c,
        })
    }

    /// The PAI client itself, for its plain API methods (GetImage, filtered ListImageLabels, …).
    pub fn pai(
        &self,
        region: &str,
        creds: Arc<dyn CredentialSource>,
    ) -> Result<Arc<PaiClient>, AccessError> {
        match self.client(Provider::Pai, region, creds)? {
            Client::Pai(c) => Ok(c),
            Client::Ims(_) => Err(AccessError::Client(CloudError::new(
                ErrorKind::Invalid,
                "client",
                "cached client of the wrong provider",
            ))),
        }
    }

    /// The IMS client itself, for its plain API methods.
    pub fn ims(
        &self,
        region: &str,
        creds: Arc<dyn CredentialSource>,
    ) -> Result<Arc<ImsClient>, AccessError> {
        match self.client(Provider::HuaweicloudIms, region, creds)? {
            Client::Ims(c) => Ok(c),
            Client::Pai(_) => Err(AccessError::Client(CloudError::new(
                ErrorKind::Invalid,
                "client",
                "cached client of the wrong provider",
            ))),
        }
    }

    /// The operator's default credentials for `provider`, from the process
    /// environment (see [`credentials::pai_default_chain`]); resolved once.
    pub fn default_credentials(
        &self,
        provider: Provider,
    ) -> Result<Arc<dyn CredentialSource>, CredentialError> {
        self.default_credentials_with_env(provider, &credentials::process_env)
    }

    /// [`Clouds::default_credentials`] with an injectable environment.
    pub fn default_credentials_with_env(
        &self,
        provider: Provider,
        env: EnvLookup<'_>,
    ) -> Result<Arc<dyn CredentialSource>, CredentialError> {
        let mut defaults = self.defaults.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(src) = defaults.get(&provider) {
            return Ok(src.clone());
        }
        let src = match provider {
            Provider::Pai => credentials::pai_default_chain(
                env,
                self.http.clone(),
                self.config.sts_endpoint.as_deref(),
            )?,
            Provider::HuaweicloudIms => credentials::ims_default_chain(env)?,
        };
        defaults.insert(provider, src.clone());
        Ok(src)
    }

    /// Credentials from a set's Secret (`data` as the API server returns it).
    pub fn credentials_from_secret(
        provider: Provider,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Arc<dyn CredentialSource>, CredentialError> {
        Ok(Arc::new(StaticSource(credentials::from_secret_data(
            provider, data,
        )?)))
    }

    /// Cumulative time calls waited on client-side budgets.
    pub fn limiter_wait_total(&self) -> Duration {
        self.budgets.total_wait()
    }

    pub fn requests_total(&self) -> u64 {
        self.budgets.total_granted()
    }

    /// Budget rates, ceilings and throttling per (provider, region, API).
    pub fn budget_stats(&self) -> Vec<BudgetStat> {
        self.budgets.stats()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::provider::Target;
    use crate::provider::credentials::Credentials;
    use crate::provider::testsupport::{Canned, TestServer};

    fn src(id: &str, secret: &str) -> Arc<dyn CredentialSource> {
        Arc::new(StaticSource(Credentials::AccessKey {
            id: id.into(),
            secret: secret.into(),
            security_token: None,
        }))
    }

    #[test]
    fn regions() {
        for ok in ["cn-hangzhou", "cn-north-4", "ap-southeast-1", "eu"] {
            assert!(validate_region(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "cn_hangzhou",
            "cn-hangzhou.",
            "a/b",
            "a:1",
            "Cn",
            "-a",
            "a-",
            &"a".repeat(65),
        ] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:8080").unwrap(),
            Endpoint {
                origin: "http://127.0.0.1:8080".into(),
                prefix: String::new(),
                host: "127.0.0.1:8080".into()
            }
        );
        assert_eq!(
            Endpoint::parse("https://h.example:443/").unwrap().host,
            "h.example"
        );
        assert_eq!(
            Endpoint::parse("http://[::1]:9/x/").unwrap(),
            Endpoint {
                origin: "http://[::1]:9".into(),
                prefix: "/x".into(),
                host: "[::1]:9".into()
            }
        );
        for bad in [
            "",
            "127.0.0.1:8080",
            "ftp://h",
            "http://u:p@h",
            "http://h/#f",
            "http://h/?q=1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Clouds::new(CloudConfig {
                ims_endpoint: Some("nope".into()),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[tokio::test]
    async fn clients_are_cached_and_budgets_shared() {
        let clouds = Clouds::new(CloudConfig {
            main_account_lookup: false,
            ..CloudConfig::default()
        })
        .unwrap();
        let a = clouds.pai("cn-hangzhou", src("AK1", "s1")).unwrap();
        let b = clouds.pai("cn-hangzhou", src("AK1", "s1")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        const ADD: &str = "AddImageLabels";
        let budget = |c: Arc<PaiClient>| async move { c.budgets().budget(ADD).await };
        // A rotated secret gets a new client but the same account budget.
        let c = clouds.pai("cn-hangzhou", src("AK1", "s2")).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        let a_add = budget(a.clone()).await;
        assert!(Arc::ptr_eq(&a_add, &budget(c).await));
        let d = clouds.pai("cn-shanghai", src("AK1", "s1")).unwrap();
        assert!(!Arc::ptr_eq(&a_add, &budget(d).await));
        let e = clouds.pai("cn-hangzhou", src("AK2", "s1")).unwrap();
        assert!(!Arc::ptr_eq(&a_add, &budget(e).await));
        assert!(!Arc::ptr_eq(
            &a_add,
            &a.budgets().budget("RemoveImageLabels").await
        ));
        assert_eq!(a.endpoint().host, "aiworkspace.cn-hangzhou.aliyuncs.com");
        let i = clouds.ims("cn-north-4", src("AK1", "s1")).unwrap();
        assert_eq!(i.endpoint().host, "ims.cn-north-4.myhuaweicloud.com");
        assert!(
            clouds
                .provider(Provider::Pai, "evil.com/", src("AK1", "s1"))
                .is_err()
        );
        assert_eq!(a_add.ceiling(), 10.0, "20/s published, half of it");
        assert!(
            Clouds::new(CloudConfig {
                quota_share: 0.0,
                ..CloudConfig::default()
            })
            .is_err()
        );
    }

    #[test]
    fn a_bad_region_is_a_region_error_and_bad_keys_a_credentials_error() {
        let clouds = Clouds::new(CloudConfig::default()).unwrap();
        let Err(e) = clouds.provider(Provider::Pai, "evil.com/", src("AK1", "s1")) else {
            panic!("a region with a slash was accepted");
        };
        assert_eq!(e.kind_label(), "region");
        assert_eq!(
            e.to_string(),
            "region `evil.com/`: expected lower-case letters, digits and dashes"
        );
        let e = AccessError::from(
            Clouds::credentials_from_secret(Provider::HuaweicloudIms, &BTreeMap::new())
                .unwrap_err(),
        );
        assert_eq!(e.kind_label(), "credentials");
    }

    /// Two AccessKeys of one main account share one budget once STS named
    /// the account; the lookup happens once per credential.
    #[tokio::test]
    async fn keys_of_one_main_account_share_budgets() {
        let s = TestServer::start(Canned::json(
            200,
            json!({"RequestId": "r", "AccountId": "1234567890", "UserId": "u", "Arn": "acs:ram::1234567890:user/x", "IdentityType": "RAMUser", "PrincipalId": "u"}),
        ))
        .await;
        let clouds = Clouds::new(CloudConfig {
            retry: RetryPolicy::none(),
            ..CloudConfig::with_base_url(&s.base)
        })
        .unwrap();
        let a = clouds.pai("cn-hangzhou", src("AK1", "s1")).unwrap();
        let b = clouds.pai("cn-hangzhou", src("AK2", "s2")).unwrap();
        let b2 = clouds.pai("cn-shanghai", src("AK2", "s2")).unwrap();
        let ba = a.budgets().budget("GetImage").await;
        let bb = b.budgets().budget("GetImage").await;
        assert!(Arc::ptr_eq(&ba, &bb));
        let _ = b2.budgets().budget("GetImage").await;
        let _ = a.budgets().budget("AddImageLabels").await;
        let reqs = s.requests();
        assert_eq!(reqs.len(), 2, "one GetCallerIdentity per credential");
        assert!(
            reqs.iter()
                .all(|r| r.header("x-acs-action") == Some("GetCallerIdentity"))
        );
    }

    #[test]
    fn default_credentials_are_resolved_once() {
        let clouds = Clouds::new(CloudConfig::default()).unwrap();
        let env1 = |n: &str| {
            (n == "HUAWEICLOUD_SDK_AK" || n == "HUAWEICLOUD_SDK_SK").then(|| "x".to_string())
        };
        let a = clouds
            .default_credentials_with_env(Provider::HuaweicloudIms, &env1)
            .unwrap();
        let b = clouds
            .default_credentials_with_env(Provider::HuaweicloudIms, &|_| None)
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(
            clouds
                .default_credentials_with_env(Provider::Pai, &|_| None)
                .is_err()
        );
        let data = BTreeMap::from([("apiKey".to_string(), b"k".to_vec())]);
        assert!(Clouds::credentials_from_secret(Provider::Pai, &data).is_ok());
        assert!(Clouds::credentials_from_secret(Provider::HuaweicloudIms, &data).is_err());
    }

    /// PAI, IMS and STS on one base URL, as the simulator will serve them:
    /// RRSA exchanges the token at `/?Action=AssumeRoleWithOIDC`, then PAI
    /// calls are signed with the STS credentials.
    #[tokio::test]
    async fn one_base_url_for_pai_ims_and_sts() {
        let s = TestServer::start(Canned::json(200, json!({"RequestId": "ok"}))).await;
        let clouds = Clouds::new(CloudConfig {
            retry: RetryPolicy::none(),
            ..CloudConfig::with_base_url(&s.base)
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "oidc-token").unwrap();
        let tf = token_file.display().to_string();
        let env = move |n: &str| match n {
            "ALIBABA_CLOUD_ROLE_ARN" => Some("acs:ram::1234:role/r".to_string()),
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN" => Some("acs:ram::1234:oidc-provider/p".to_string()),
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE" => Some(tf.clone()),
            _ => None,
        };
        let creds = clouds
            .default_credentials_with_env(Provider::Pai, &env)
            .unwrap();
        assert_eq!(creds.identity(), "1234");
        let exp = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(3600))
            .unwrap();
        s.push(Canned::json(200, json!({"RequestId": "sts", "Credentials": {"AccessKeyId": "STS.x", "AccessKeySecret": "stsSecret", "SecurityToken": "stsToken", "Expiration": exp.to_string()}})));
        s.push(Canned::json(
            200,
            json!({"RequestId": "g", "Labels": [{"Key": "a", "Value": "1"}]}),
        ));
        let pai = clouds
            .provider(Provider::Pai, "cn-hangzhou", creds)
            .unwrap();
        let labels = pai
            .observe(&Target::PaiDataset {
                dataset_id: "d-1".into(),
            })
            .await
            .unwrap();
        assert_eq!(labels.get("a").map(String::as_str), Some("1"));

        s.push(Canned::json(
            200,
            json!({"tags": [{"key": "k", "value": "v"}]}),
        ));
        let ims_creds: Arc<dyn CredentialSource> = Arc::new(StaticSource(Credentials::AkSk {
            ak: "hw".into(),
            sk: "hwsk".into(),
            security_token: None,
        }));
        let ims = clouds
            .provider(Provider::HuaweicloudIms, "cn-north-4", ims_creds)
            .unwrap();
        let tags = ims
            .observe(&Target::ImsImage {
                project_id: "p".into(),
                image_id: "i".into(),
            })
            .await
            .unwrap();
        assert_eq!(tags.get("k").map(String::as_str), Some("v"));

        let reqs = s.requests();
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[0].path, "/");
        assert!(
            reqs[0]
                .decoded_query()
                .contains(&("Action".to_string(), "AssumeRoleWithOIDC".to_string()))
        );
        assert_eq!(reqs[1].path, "/api/v1/datasets/d-1");
        assert_eq!(reqs[1].header("x-acs-security-token"), Some("stsToken"));
        let auth =
            crate::sign::acs3::Authorization::parse(reqs[1].header("authorization").unwrap())
                .unwrap();
        assert_eq!(auth.access_key_id, "STS.x");
        assert_eq!(reqs[2].path, "/v2/p/images/i/tags");
    }
}
