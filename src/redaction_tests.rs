//! Every type that carries a credential is formatted with `{:?}` and `{:#?}`
//! and searched for the secret. A new credential-carrying type belongs here.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::Provider;
use crate::provider::credentials::{Credentials, StaticSource};
use crate::provider::registry::{CloudConfig, Clouds};
use crate::sign::{RequestParts, acs3, sdk};
#[cfg(feature = "sim")]
use crate::sim::{CredentialsSeed, ImsCredential, OidcSeed, PaiCredential};

const SECRET: &str = "S3cr3tValue0123456789";
const TOKEN: &str = "T0kenValue9876543210";

fn assert_hidden(what: &str, text: String) {
    for needle in [SECRET, TOKEN] {
        assert!(!text.contains(needle), "{what} shows {needle}: {text}");
    }
}

fn both<T: std::fmt::Debug>(what: &str, v: &T) {
    assert_hidden(what, format!("{v:?}"));
    assert_hidden(what, format!("{v:#?}"));
}

fn credentials() -> Vec<Credentials> {
    vec![
        Credentials::AccessKey {
            id: "LTAIid".into(),
            secret: SECRET.into(),
            security_token: Some(TOKEN.into()),
        },
        Credentials::Bearer(TOKEN.into()),
        Credentials::AkSk {
            ak: "HWak".into(),
            sk: SECRET.into(),
            security_token: Some(TOKEN.into()),
        },
    ]
}

#[test]
fn credentials_and_sources_hide_secrets() {
    for c in credentials() {
        both("Credentials", &c);
        both("StaticSource", &StaticSource(c.clone()));
    }
    let data: BTreeMap<String, Vec<u8>> = [
        ("accessKeyId".to_string(), b"LTAIid".to_vec()),
        ("accessKeySecret".to_string(), SECRET.as_bytes().to_vec()),
        ("securityToken".to_string(), TOKEN.as_bytes().to_vec()),
    ]
    .into();
    let src = Clouds::credentials_from_secret(Provider::Pai, &data).unwrap();
    assert_hidden("secret source", format!("{:?}", src.identity()));
    assert_hidden("secret source", src.fingerprint());
}

#[test]
fn signatures_and_requests_hide_the_token_and_signature() {
    let headers = vec![
        (
            "host".to_string(),
            "aiworkspace.cn-hangzhou.aliyuncs.com".to_string(),
        ),
        ("x-acs-date".to_string(), "2026-01-01T00:00:00Z".to_string()),
        ("x-acs-security-token".to_string(), TOKEN.to_string()),
        ("x-security-token".to_string(), TOKEN.to_string()),
        ("x-sdk-date".to_string(), "20260101T000000Z".to_string()),
        ("authorization".to_string(), format!("Bearer {TOKEN}")),
    ];
    let req = RequestParts {
        method: "GET",
        path: "/api/v1/images/image-abc/labels",
        query: &[],
        headers: &headers,
        payload_hash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    };
    both("RequestParts", &req);
    let names = ["host", "x-acs-date", "x-acs-security-token"];
    let signed = acs3::sign(&req, "LTAIid", SECRET, &names).unwrap();
    assert!(
        signed.canonical_request.contains(TOKEN),
        "the test signs the token, so Debug has something to hide"
    );
    both("acs3 Signed", &signed);
    assert_hidden(
        "acs3 signature",
        format!("{signed:?}").replace(&signed.signature, TOKEN),
    );
    let signed = sdk::sign(
        &req,
        "HWak",
        SECRET,
        &["host", "x-sdk-date", "x-security-token"],
    )
    .unwrap();
    both("sdk Signed", &signed);
    assert!(!format!("{signed:?}").contains(&signed.signature));
}

#[test]
fn clients_registry_and_simulator_seed_hide_secrets() {
    let clouds = Clouds::new(CloudConfig::default()).unwrap();
    both("Clouds", &clouds);
    for c in credentials() {
        let provider = match c {
            Credentials::AkSk { .. } => Provider::HuaweicloudIms,
            _ => Provider::Pai,
        };
        let p = clouds.provider(provider, "cn-hangzhou", Arc::new(StaticSource(c)));
        if provider == Provider::Pai {
            let client = clouds
                .pai(
                    "cn-hangzhou",
                    Arc::new(StaticSource(credentials()[0].clone())),
                )
                .unwrap();
            both("PaiClient", &client);
        } else {
            let client = clouds
                .ims(
                    "cn-hangzhou",
                    Arc::new(StaticSource(credentials()[2].clone())),
                )
                .unwrap();
            both("ImsClient", &client);
        }
        assert!(p.is_ok());
    }
    #[cfg(feature = "sim")]
    simulator_seed_hides_secrets();
}

#[cfg(feature = "sim")]
fn simulator_seed_hides_secrets() {
    let seed = CredentialsSeed {
        pai: vec![PaiCredential {
            access_key_id: "LTAIid".into(),
            access_key_secret: SECRET.into(),
            security_token: Some(TOKEN.into()),
            account_id: None,
        }],
        bearer_tokens: vec![TOKEN.into()],
        ims: vec![ImsCredential {
            ak: "HWak".into(),
            sk: SECRET.into(),
            security_token: Some(TOKEN.into()),
            project_id: None,
            account_id: None,
        }],
        main_account_id: None,
        ims_account_id: None,
        oidc: Some(OidcSeed {
            role_arn: "acs:ram::1:role/r".into(),
            provider_arn: "acs:ram::1:oidc-provider/p".into(),
            token: TOKEN.into(),
            issued_access_key_id: None,
            issued_access_key_secret: Some(SECRET.into()),
            expiry_seconds: None,
            issuer: None,
        }),
    };
    both("CredentialsSeed", &seed);
    // The simulator's principals: see `sim::auth` (private), checked there.
}
