//! The main account behind a credential, which is what Alibaba Cloud's flow
//! control counts: every AccessKey, RAM user and STS token of one account
//! shares the account's per-API rate. Credentials of one main account must
//! therefore share one budget.
//!
//! The account is asked once per credential (STS `GetCallerIdentity`, signed
//! like the PAI calls) and cached. Any failure (network, timeout, an error
//! answer, a simulator without the API) falls back to the credential's own
//! identity ([`CredentialSource::identity`]: the key ID) and the lookup is
//! retried at most every [`LOOKUP_RETRY`]. Bearer tokens cannot call STS and
//! Huawei AK/SK have no such API here: both always use their identity. RRSA
//! sources already know the account from the role ARN and skip the lookup.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::Value;

use super::credentials::{CredentialSource, Credentials};
use super::http::{Endpoint, transport_error};
use super::{CloudError, ErrorKind};
use crate::sign::{self, RequestParts, acs3};

/// A failed lookup is tried again after this long, not sooner.
pub(crate) const LOOKUP_RETRY: Duration = Duration::from_secs(300);
/// One lookup may take this long before the fallback is used.
pub(crate) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Default STS endpoint.
pub(crate) const DEFAULT_STS: &str = "https://sts.aliyuncs.com";

const API: &str = "GetCallerIdentity";
const STS_VERSION: &str = "2015-04-01";

struct Lookup {
    http: reqwest::Client,
    sts_endpoint: String,
    creds: Arc<dyn CredentialSource>,
}

#[derive(Default)]
struct State {
    resolved: Option<String>,
    /// No lookup before this (after a failure; `None`: try now).
    next_try: Option<Instant>,
    /// The credentials cannot be looked up (bearer token, Huawei AK/SK).
    never: bool,
}

/// The main account of one credential, looked up at most once (and retried
/// at most every [`LOOKUP_RETRY`] after a failure).
pub struct MainAccount {
    fallback: String,
    lookup: Option<Lookup>,
    state: Mutex<State>,
    running: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for MainAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MainAccount")
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl MainAccount {
    /// Always `account`, never looked up.
    pub(crate) fn fixed(account: &str) -> Self {
        MainAccount {
            fallback: account.to_string(),
            lookup: None,
            state: Mutex::new(State::default()),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The account of `creds`: known from the source itself (RRSA), else
    /// looked up with `GetCallerIdentity` at `sts_endpoint` (default
    /// `https://sts.aliyuncs.com`) when `lookup` is on, else its identity.
    pub fn of(
        creds: Arc<dyn CredentialSource>,
        http: reqwest::Client,
        sts_endpoint: Option<&str>,
        lookup: bool,
    ) -> Self {
        if let Some(account) = creds.main_account() {
            return MainAccount::fixed(&account);
        }
        if !lookup {
            return MainAccount::fixed(&creds.identity());
        }
        MainAccount {
            fallback: creds.identity(),
            lookup: Some(Lookup {
                http,
                sts_endpoint: sts_endpoint.unwrap_or(DEFAULT_STS).to_string(),
                creds,
            }),
            state: Mutex::new(State::default()),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The credential's own identity, used until (or unless) the lookup works.
    pub fn fallback(&self) -> &str {
        &self.fallback
    }

    /// What to use now without waiting: `Ok` with the answer, `Err` when a
    /// lookup is due.
    fn cached(&self, now: Instant) -> Result<String, ()> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = &s.resolved {
            return Ok(a.clone());
        }
        if self.lookup.is_none() || s.never || s.next_try.is_some_and(|t| now < t) {
            return Ok(self.fallback.clone());
        }
        Err(())
    }

    /// The main account (or the fallback). Costs a network call only the
    /// first time and after [`LOOKUP_RETRY`] following a failure.
    pub async fn get(&self) -> String {
        if let Ok(a) = self.cached(Instant::now()) {
            return a;
        }
        let _one = self.running.lock().await;
        if let Ok(a) = self.cached(Instant::now()) {
            return a;
        }
        let Some(lookup) = &self.lookup else {
            return self.fallback.clone();
        };
        let result = match lookup.creds.get().await {
            Ok(Credentials::AccessKey {
                id,
                secret,
                security_token,
            }) => tokio::time::timeout(
                LOOKUP_TIMEOUT,
                get_caller_identity(
                    &lookup.http,
                    &lookup.sts_endpoint,
                    &id,
                    &secret,
                    security_token.as_deref(),
                ),
            )
            .await
            .unwrap_or_else(|_| Err(CloudError::new(ErrorKind::Network, API, "timed out"))),
            Ok(_) => {
                // Bearer tokens and Huawei AK/SK: nothing to ask.
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                s.never = true;
                return self.fallback.clone();
            }
            Err(e) => Err(e.into_cloud(API)),
        };
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(account) => {
                tracing::debug!(fallback = %self.fallback, "main account found");
                s.resolved = Some(account.clone());
                account
            }
            Err(e) => {
                tracing::info!(identity = %self.fallback, error = %e, "GetCallerIdentity failed; budgets count this key as its own account until the next try");
                s.next_try = Some(Instant::now() + LOOKUP_RETRY);
                self.fallback.clone()
            }
        }
    }
}

/// STS `GetCallerIdentity` (RPC API 2015-04-01, ACS3-HMAC-SHA256): the
/// account ID of the caller.
pub(crate) async fn get_caller_identity(
    http: &reqwest::Client,
    sts_endpoint: &str,
    id: &str,
    secret: &str,
    security_token: Option<&str>,
) -> Result<String, CloudError> {
    let endpoint =
        Endpoint::parse(sts_endpoint).map_err(|m| CloudError::new(ErrorKind::Invalid, API, m))?;
    let payload_hash = sign::sha256_hex(b"");
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), endpoint.host.clone()),
        ("x-acs-action".into(), API.into()),
        ("x-acs-version".into(), STS_VERSION.into()),
        ("x-acs-date".into(), acs3::format_date(Timestamp::now())),
        ("x-acs-signature-nonce".into(), nonce),
        ("accept".into(), "application/json".into()),
        ("x-acs-content-sha256".into(), payload_hash.clone()),
    ];
    if let Some(token) = security_token {
        headers.push(("x-acs-accesskey-id".into(), id.to_string()));
        headers.push(("x-acs-security-token".into(), token.to_string()));
    }
    let signed = acs3::default_signed_headers(&headers);
    let path = format!("{}/", endpoint.prefix);
    let parts = RequestParts {
        method: "POST",
        path: &path,
        query: &[],
        headers: &headers,
        payload_hash: &payload_hash,
    };
    let s = acs3::sign(&parts, id, secret, &signed)
        .map_err(|e| CloudError::new(ErrorKind::Invalid, API, e.to_string()))?;
    headers.push(("authorization".into(), s.authorization));
    let url = endpoint.checked_url(API, "/", "")?;
    let mut req = http.post(url).timeout(LOOKUP_TIMEOUT);
    for (n, v) in &headers {
        req = req.header(n.as_str(), v.as_str());
    }
    let resp = req.send().await.map_err(|e| transport_error(API, &e))?;
    let status = resp.status().as_u16();
    let resp_headers = resp.headers().clone();
    let body = super::body::read_capped(resp, API, super::body::MAX_RESPONSE_BYTES).await?;
    if !(200..300).contains(&status) {
        return Err(super::acs_error::map_error(
            API,
            status,
            &resp_headers,
            &body,
        ));
    }
    parse_caller_identity(&body).map_err(|m| CloudError {
        http_status: Some(status),
        ..CloudError::new(ErrorKind::Network, API, m)
    })
}

/// `AccountId` of a `GetCallerIdentity` answer
/// (`{"RequestId","AccountId","UserId","Arn","IdentityType","PrincipalId"}`).
pub(crate) fn parse_caller_identity(body: &[u8]) -> Result<String, String> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "answer is not JSON".to_string())?;
    let account = super::error::scalar(v.get("AccountId"))
        .filter(|a| !a.trim().is_empty())
        .ok_or("answer has no AccountId")?;
    if account.len() > 64
        || !account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err("AccountId is not an account ID".into());
    }
    Ok(account)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::State as AxState;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;

    use super::*;
    use crate::provider::credentials::StaticSource;

    #[test]
    fn parsing() {
        let ok = br#"{"RequestId":"r","AccountId":"1234567890","UserId":"2","Arn":"acs:ram::1234567890:user/u","IdentityType":"RAMUser","PrincipalId":"2"}"#;
        assert_eq!(parse_caller_identity(ok).unwrap(), "1234567890");
        assert_eq!(
            parse_caller_identity(br#"{"AccountId": 42}"#).unwrap(),
            "42"
        );
        for bad in [
            &b"<html>"[..],
            br#"{"RequestId":"r"}"#,
            br#"{"AccountId":""}"#,
            br#"{"AccountId":"a/b"}"#,
        ] {
            assert!(parse_caller_identity(bad).is_err());
        }
    }

    #[derive(Clone)]
    struct Stub {
        calls: Arc<AtomicUsize>,
        ok: bool,
    }

    async fn sts(AxState(s): AxState<Stub>, h: HeaderMap) -> axum::response::Response {
        s.calls.fetch_add(1, Ordering::SeqCst);
        let hv = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(hv("x-acs-action"), "GetCallerIdentity");
        assert_eq!(hv("x-acs-version"), "2015-04-01");
        assert!(hv("authorization").starts_with("ACS3-HMAC-SHA256 Credential=LTAIkey,"));
        if !s.ok {
            return (StatusCode::NOT_FOUND, "no such API").into_response();
        }
        axum::Json(serde_json::json!({"RequestId": "r", "AccountId": "1234567890", "UserId": "u", "Arn": "acs:ram::1234567890:user/x", "IdentityType": "RAMUser", "PrincipalId": "u"})).into_response()
    }

    async fn serve(ok: bool) -> (String, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route("/", axum::routing::post(sts))
            .with_state(Stub {
                calls: calls.clone(),
                ok,
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        (format!("http://{addr}"), calls)
    }

    fn creds(c: Credentials) -> Arc<dyn CredentialSource> {
        Arc::new(StaticSource(c))
    }

    fn ak() -> Arc<dyn CredentialSource> {
        creds(Credentials::AccessKey {
            id: "LTAIkey".into(),
            secret: "s".into(),
            security_token: None,
        })
    }

    fn http() -> reqwest::Client {
        super::super::http::http_client(Duration::from_secs(5)).unwrap()
    }

    #[tokio::test]
    async fn looked_up_once_and_cached() {
        let (base, calls) = serve(true).await;
        let m = MainAccount::of(ak(), http(), Some(&base), true);
        assert_eq!(m.get().await, "1234567890");
        assert_eq!(m.get().await, "1234567890");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one call per credential");
    }

    #[tokio::test]
    async fn failure_falls_back_and_is_not_retried_at_once() {
        let (base, calls) = serve(false).await;
        let m = MainAccount::of(ak(), http(), Some(&base), true);
        assert_eq!(m.get().await, "LTAIkey");
        assert_eq!(m.get().await, "LTAIkey");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "retried only after LOOKUP_RETRY"
        );
        // Nothing listening: a transport error also falls back.
        let m = MainAccount::of(ak(), http(), Some("http://127.0.0.1:9"), true);
        assert_eq!(m.get().await, "LTAIkey");
    }

    #[tokio::test]
    async fn bearer_and_aksk_use_their_identity() {
        let (base, calls) = serve(true).await;
        let bearer = creds(Credentials::Bearer("tok".into()));
        let id = bearer.identity();
        let m = MainAccount::of(bearer, http(), Some(&base), true);
        assert_eq!(m.get().await, id);
        let m = MainAccount::of(
            creds(Credentials::AkSk {
                ak: "HWAK".into(),
                sk: "s".into(),
                security_token: None,
            }),
            http(),
            Some(&base),
            true,
        );
        assert_eq!(m.get().await, "HWAK");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        let m = MainAccount::of(ak(), http(), Some(&base), false);
        assert_eq!(m.get().await, "LTAIkey", "lookup off");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
