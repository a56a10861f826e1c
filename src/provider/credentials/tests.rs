use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::env::*;
use super::oidc::*;
use super::*;
use crate::api::Provider;

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

#[test]
fn secret_pai_access_key() {
    let c = from_secret_data(
        Provider::Pai,
        &data(&[("accessKeyId", "AKID"), ("accessKeySecret", "s3cret\n")]),
    )
    .unwrap();
    assert_eq!(
        c,
        Credentials::AccessKey {
            id: "AKID".into(),
            secret: "s3cret".into(),
            security_token: None
        }
    );
    let c = from_secret_data(
        Provider::Pai,
        &data(&[
            ("accessKeyId", "AKID"),
            ("accessKeySecret", "s"),
            ("securityToken", "tok"),
        ]),
    )
    .unwrap();
    assert_eq!(
        c,
        Credentials::AccessKey {
            id: "AKID".into(),
            secret: "s".into(),
            security_token: Some("tok".into())
        }
    );
    // AccessKey wins over apiKey when both are present.
    let c = from_secret_data(
        Provider::Pai,
        &data(&[
            ("accessKeyId", "AKID"),
            ("accessKeySecret", "s"),
            ("apiKey", "k"),
        ]),
    )
    .unwrap();
    assert!(matches!(c, Credentials::AccessKey { .. }));
}

#[test]
fn secret_pai_api_key_and_errors() {
    assert_eq!(
        from_secret_data(Provider::Pai, &data(&[("apiKey", "sk-123")])).unwrap(),
        Credentials::Bearer("sk-123".into())
    );
    let e = from_secret_data(
        Provider::Pai,
        &data(&[("accessKeyId", "AKID"), ("apiKey", "k")]),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            CredentialError::MissingSecretKey {
                key: "accessKeySecret",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("`accessKeySecret`"));
    let e =
        from_secret_data(Provider::Pai, &data(&[("accessKeySecret", "hidden-value")])).unwrap_err();
    assert!(matches!(
        e,
        CredentialError::MissingSecretKey {
            key: "accessKeyId",
            ..
        }
    ));
    assert!(!e.to_string().contains("hidden-value"));
    let e = from_secret_data(Provider::Pai, &data(&[])).unwrap_err();
    assert!(e.to_string().contains("apiKey"), "{e}");
    // Whitespace-only counts as missing.
    assert!(from_secret_data(Provider::Pai, &data(&[("apiKey", " \n")])).is_err());
    let mut d = data(&[("accessKeyId", "AKID")]);
    d.insert("accessKeySecret".into(), vec![0xff, 0xfe]);
    assert_eq!(
        from_secret_data(Provider::Pai, &d).unwrap_err(),
        CredentialError::NotUtf8("accessKeySecret")
    );
}

#[test]
fn secret_ims() {
    let c = from_secret_data(Provider::HuaweicloudIms, &data(&[("ak", "A"), ("sk", "S")])).unwrap();
    assert_eq!(
        c,
        Credentials::AkSk {
            ak: "A".into(),
            sk: "S".into(),
            security_token: None
        }
    );
    let c = from_secret_data(
        Provider::HuaweicloudIms,
        &data(&[("ak", "A"), ("sk", "S"), ("securityToken", "T")]),
    )
    .unwrap();
    assert_eq!(
        c,
        Credentials::AkSk {
            ak: "A".into(),
            sk: "S".into(),
            security_token: Some("T".into())
        }
    );
    let e = from_secret_data(Provider::HuaweicloudIms, &data(&[("ak", "A")])).unwrap_err();
    assert!(matches!(
        e,
        CredentialError::MissingSecretKey { key: "sk", .. }
    ));
    let e = from_secret_data(
        Provider::HuaweicloudIms,
        &data(&[("accessKeyId", "A"), ("accessKeySecret", "S")]),
    )
    .unwrap_err();
    assert!(matches!(
        e,
        CredentialError::MissingSecretKey { key: "ak", .. }
    ));
}

#[test]
fn debug_never_prints_secrets() {
    let all = [
        Credentials::AccessKey {
            id: "AKID".into(),
            secret: "SECRET-1".into(),
            security_token: Some("TOKEN-1".into()),
        },
        Credentials::Bearer("BEARER-1".into()),
        Credentials::AkSk {
            ak: "HWAK".into(),
            sk: "SECRET-2".into(),
            security_token: Some("TOKEN-2".into()),
        },
    ];
    for c in &all {
        let d = format!("{c:?} {:?} {}", StaticSource(c.clone()), c.identity());
        for s in ["SECRET-1", "TOKEN-1", "BEARER-1", "SECRET-2", "TOKEN-2"] {
            assert!(!d.contains(s), "{d}");
        }
        assert!(d.contains("redacted"));
    }
    assert!(format!("{:?}", all[0]).contains("AKID"));
}

#[test]
fn identity_and_fingerprint() {
    let a = Credentials::AccessKey {
        id: "AKID".into(),
        secret: "s1".into(),
        security_token: None,
    };
    let b = Credentials::AccessKey {
        id: "AKID".into(),
        secret: "s2".into(),
        security_token: None,
    };
    assert_eq!(a.identity(), b.identity());
    assert_ne!(a.fingerprint(), b.fingerprint());
    assert!(
        Credentials::Bearer("x".into())
            .identity()
            .starts_with("bearer-")
    );
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |n: &str| m.get(n).cloned().filter(|v| !v.is_empty())
}

fn http() -> reqwest::Client {
    crate::provider::http::http_client(Duration::from_secs(5)).unwrap()
}

#[tokio::test]
async fn chain_order() {
    let env = env_of(&[
        (ENV_ALI_AK_ID, "AK"),
        (ENV_ALI_AK_SECRET, "S"),
        (ENV_ALI_TOKEN, "T"),
        (ENV_DASHSCOPE, "D"),
    ]);
    let src = pai_default_chain(&env, http(), None).unwrap();
    assert_eq!(
        src.get().await.unwrap(),
        Credentials::AccessKey {
            id: "AK".into(),
            secret: "S".into(),
            security_token: Some("T".into())
        }
    );

    let env = env_of(&[
        (ENV_DASHSCOPE, "D"),
        (ENV_ROLE_ARN, "acs:ram::123456:role/r"),
        (ENV_OIDC_PROVIDER_ARN, "p"),
        (ENV_OIDC_TOKEN_FILE, "/nonexistent"),
    ]);
    let src = pai_default_chain(&env, http(), None).unwrap();
    assert!(format!("{src:?}").contains("RrsaSource"));
    assert_eq!(src.identity(), "123456");

    let env = env_of(&[(ENV_DASHSCOPE, "D")]);
    assert_eq!(
        pai_default_chain(&env, http(), None)
            .unwrap()
            .get()
            .await
            .unwrap(),
        Credentials::Bearer("D".into())
    );

    let e = pai_default_chain(&env_of(&[]), http(), None).unwrap_err();
    assert!(matches!(
        e,
        CredentialError::NoneFound {
            provider: "pai",
            ..
        }
    ));
    let e = pai_default_chain(&env_of(&[(ENV_ALI_AK_ID, "AK")]), http(), None).unwrap_err();
    assert_eq!(
        e,
        CredentialError::IncompleteEnv {
            set: ENV_ALI_AK_ID,
            missing: ENV_ALI_AK_SECRET
        }
    );
    let e = pai_default_chain(
        &env_of(&[(ENV_ROLE_ARN, "r"), (ENV_OIDC_TOKEN_FILE, "/f")]),
        http(),
        None,
    )
    .unwrap_err();
    assert_eq!(
        e,
        CredentialError::IncompleteEnv {
            set: ENV_ROLE_ARN,
            missing: ENV_OIDC_PROVIDER_ARN
        }
    );
}

#[tokio::test]
async fn ims_chain() {
    let src = ims_default_chain(&env_of(&[
        (ENV_HW_AK, "A"),
        (ENV_HW_SK, "S"),
        (ENV_HW_TOKEN, "T"),
    ]))
    .unwrap();
    assert_eq!(
        src.get().await.unwrap(),
        Credentials::AkSk {
            ak: "A".into(),
            sk: "S".into(),
            security_token: Some("T".into())
        }
    );
    assert!(ims_default_chain(&env_of(&[(ENV_HW_SK, "S")])).is_err());
    assert!(matches!(
        ims_default_chain(&env_of(&[])).unwrap_err(),
        CredentialError::NoneFound { .. }
    ));
}

#[test]
fn sts_endpoints() {
    assert_eq!(
        default_sts_endpoint(None, false),
        "https://sts.aliyuncs.com"
    );
    assert_eq!(
        default_sts_endpoint(Some("cn-hangzhou"), false),
        "https://sts.cn-hangzhou.aliyuncs.com"
    );
    assert_eq!(
        default_sts_endpoint(Some("cn-hangzhou"), true),
        "https://sts-vpc.cn-hangzhou.aliyuncs.com"
    );
}

#[derive(Clone, Default)]
struct Stub {
    calls: Arc<AtomicUsize>,
    tokens: Arc<Mutex<Vec<String>>>,
    queries: Arc<Mutex<Vec<HashMap<String, String>>>>,
    /// Seconds until the expiration the stub reports.
    expires_in: i64,
    fail: bool,
}

async fn sts(
    State(s): State<Stub>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    let n = s.calls.fetch_add(1, Ordering::SeqCst);
    s.tokens
        .lock()
        .unwrap()
        .push(q.get("OIDCToken").cloned().unwrap_or_default());
    s.queries.lock().unwrap().push(q.clone());
    if s.fail {
        return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"RequestId": "r", "Code": "AuthenticationFail.OIDCToken.Invalid", "Message": "bad token"}))).into_response();
    }
    let exp = Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(s.expires_in))
        .unwrap();
    axum::Json(serde_json::json!({
        "RequestId": "r",
        "Credentials": {"AccessKeyId": format!("STS.AK{n}"), "AccessKeySecret": "stssecret", "SecurityToken": "ststoken", "Expiration": exp.to_string()}
    }))
    .into_response()
}

async fn serve(stub: Stub) -> String {
    let app = axum::Router::new()
        .route("/", axum::routing::get(sts))
        .with_state(stub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    format!("http://{addr}")
}

fn rrsa(endpoint: String, token_file: PathBuf) -> RrsaSource {
    RrsaSource::new(
        RrsaConfig {
            role_arn: "acs:ram::1234:role/imagelabel".into(),
            oidc_provider_arn: "acs:ram::1234:oidc-provider/ack".into(),
            token_file,
            session_name: "sess".into(),
            sts_endpoint: endpoint,
            duration: Duration::from_secs(3600),
        },
        http(),
    )
}

#[tokio::test]
async fn rrsa_caches_until_near_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let tf = dir.path().join("token");
    std::fs::write(&tf, "oidc-1\n").unwrap();
    let stub = Stub {
        expires_in: 3600,
        ..Default::default()
    };
    let src = rrsa(serve(stub.clone()).await, tf.clone());
    let c1 = src.get().await.unwrap();
    assert_eq!(
        c1,
        Credentials::AccessKey {
            id: "STS.AK0".into(),
            secret: "stssecret".into(),
            security_token: Some("ststoken".into())
        }
    );
    let c2 = src.get().await.unwrap();
    assert_eq!(c1, c2);
    assert_eq!(stub.calls.load(Ordering::SeqCst), 1);
    let q = stub.queries.lock().unwrap()[0].clone();
    for (k, v) in [
        ("Action", "AssumeRoleWithOIDC"),
        ("Format", "JSON"),
        ("Version", "2015-04-01"),
        ("DurationSeconds", "3600"),
        ("RoleArn", "acs:ram::1234:role/imagelabel"),
        ("OIDCProviderArn", "acs:ram::1234:oidc-provider/ack"),
        ("OIDCToken", "oidc-1"),
        ("RoleSessionName", "sess"),
    ] {
        assert_eq!(q.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert!(crate::sign::acs3::parse_date(&q["Timestamp"]).is_some());
    assert!(!q.contains_key("Signature"), "RRSA exchange is unsigned");
    assert!(!format!("{src:?}").contains("oidc-1"));
}

#[tokio::test]
async fn rrsa_refreshes_within_margin_and_rereads_token() {
    let dir = tempfile::tempdir().unwrap();
    let tf = dir.path().join("token");
    std::fs::write(&tf, "oidc-1").unwrap();
    // Expires in 10 minutes: inside the 15-minute margin, so every get refreshes.
    let stub = Stub {
        expires_in: 600,
        ..Default::default()
    };
    let src = rrsa(serve(stub.clone()).await, tf.clone());
    let c1 = src.get().await.unwrap();
    std::fs::write(&tf, "oidc-2").unwrap();
    let c2 = src.get().await.unwrap();
    assert_ne!(c1, c2);
    assert_eq!(stub.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        *stub.tokens.lock().unwrap(),
        vec!["oidc-1".to_string(), "oidc-2".to_string()]
    );
}

#[tokio::test]
async fn rrsa_errors_are_clean() {
    let dir = tempfile::tempdir().unwrap();
    let tf = dir.path().join("token");
    std::fs::write(&tf, "secret-oidc-token").unwrap();
    let stub = Stub {
        fail: true,
        ..Default::default()
    };
    let src = rrsa(serve(stub).await, tf.clone());
    let e = src.get().await.unwrap_err();
    let CredentialError::Sts(ref ce) = e else {
        panic!("{e:?}")
    };
    assert_eq!(ce.kind, ErrorKind::Invalid);
    assert_eq!(ce.code, "AuthenticationFail.OIDCToken.Invalid");
    assert!(!e.to_string().contains("secret-oidc-token"));
    assert!(!format!("{e:?}").contains("secret-oidc-token"));

    // Connection refused: a retryable network error without the URL (which holds the token).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let src = rrsa(format!("http://{addr}"), tf.clone());
    let e = src.get().await.unwrap_err();
    let ce = e.clone().into_cloud("ListImageLabels");
    assert_eq!(ce.kind, ErrorKind::Network);
    assert_eq!(ce.api, "ListImageLabels");
    assert!(
        !format!("{e} {e:?} {ce}").contains("secret-oidc-token"),
        "{e}"
    );

    let src = rrsa("http://127.0.0.1:1".into(), dir.path().join("missing"));
    let e = src.get().await.unwrap_err();
    assert!(matches!(e, CredentialError::TokenFile { .. }), "{e:?}");
    assert_eq!(e.into_cloud("X").kind, ErrorKind::Unauthenticated);
}

#[test]
fn sts_answer_parsing() {
    assert!(parse_sts_answer(b"nope").is_err());
    assert!(
        parse_sts_answer(
            br#"{"Credentials":{"AccessKeyId":"a","AccessKeySecret":"b","SecurityToken":"c"}}"#
        )
        .is_err()
    );
    assert!(parse_sts_answer(br#"{"Credentials":{"AccessKeyId":"a","AccessKeySecret":"b","SecurityToken":"c","Expiration":"soon"}}"#).is_err());
    let c = parse_sts_answer(br#"{"Credentials":{"AccessKeyId":"a","AccessKeySecret":"b","SecurityToken":"c","Expiration":"2030-01-01T00:00:00Z"}}"#).unwrap();
    assert_eq!(
        c.expiration,
        "2030-01-01T00:00:00Z".parse::<Timestamp>().unwrap()
    );
}
