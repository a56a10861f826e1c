//! Wire-format tests against a capture server, re-verifying signatures with
//! our own sign module.

use std::time::Duration;

use super::*;
use crate::provider::credentials::StaticSource;
use crate::provider::http::http_client;
use crate::provider::limiter::BudgetConfig;
use crate::provider::testsupport::{Canned, Captured, TestServer};

const PID: &str = "0123456789abcdef0123456789abcdef";
const IMG: &str = "67e17426-359e-49fb-aa12-0bd1756ec240";

fn aksk() -> Credentials {
    Credentials::AkSk {
        ak: "hwAK".into(),
        sk: "hwSK".into(),
        security_token: None,
    }
}

fn client(base: &str, creds: Credentials) -> ImsClient {
    ImsClient::new(
        http_client(Duration::from_secs(5)).unwrap(),
        "cn-north-4",
        Some(base),
        Arc::new(StaticSource(creds)),
        BudgetHandle::standalone(
            "huaweicloud-ims",
            "cn-hangzhou",
            BudgetConfig::all_at(1000.0),
        ),
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
            max_retry_after: Duration::from_millis(50),
        },
    )
    .unwrap()
}

async fn server() -> TestServer {
    TestServer::start(Canned {
        status: 204,
        headers: vec![("x-request-id".into(), "rid-ok".into())],
        body: String::new(),
    })
    .await
}

fn assert_signed(c: &Captured, sk: &str) -> sdk::Authorization {
    assert_eq!(c.header("x-project-id"), Some(PID));
    assert!(sdk::parse_date(c.header("x-sdk-date").unwrap()).is_some());
    let ct = c.header("content-type").unwrap();
    if c.body.is_empty() {
        assert_eq!(ct, "application/json");
    } else {
        assert_eq!(ct, "application/json;charset=UTF-8");
    }
    let auth =
        sdk::Authorization::parse(c.header("authorization").expect("authorization")).unwrap();
    assert_eq!(auth.access_key, if sk == "hwSK" { "hwAK" } else { "stsAK" });
    for must in ["content-type", "host", "x-project-id", "x-sdk-date"] {
        assert!(
            auth.signed_headers.iter().any(|h| h == must),
            "{must} not signed"
        );
    }
    let hash = sign::sha256_hex(&c.body);
    let query = c.decoded_query();
    let parts = RequestParts {
        method: &c.method,
        path: &c.path,
        query: &query,
        headers: &c.headers,
        payload_hash: &hash,
    };
    assert!(
        sdk::verify(&parts, &auth, sk).unwrap(),
        "signature does not verify"
    );
    assert!(!sdk::verify(&parts, &auth, "other").unwrap());
    auth
}

#[tokio::test]
async fn list_tags_wire() {
    let s = server().await;
    s.push(Canned::json(200, serde_json::json!({"tags": [{"key": "a", "value": "1"}, {"key": "b", "value": ""}, {"key": "c"}, {"value": "x"}]})).with_header("x-request-id", "rid-list"));
    let c = client(&s.base, aksk());
    let t = Target::ImsImage {
        project_id: PID.into(),
        image_id: IMG.into(),
    };
    let labels = c.observe(&t).await.unwrap();
    assert_eq!(
        labels,
        Labels::from([
            ("a".into(), "1".into()),
            ("b".into(), String::new()),
            ("c".into(), String::new())
        ])
    );
    let r = &s.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, format!("/v2/{PID}/images/{IMG}/tags"));
    assert!(r.query.is_empty());
    assert_eq!(r.header("host"), Some(s.base.trim_start_matches("http://")));
    assert!(r.header("x-security-token").is_none());
    assert_signed(r, "hwSK");
    let resp = c.list_image_tags(PID, IMG).await.unwrap();
    assert_eq!(resp.request_id, Some("rid-ok".into()));
}

#[tokio::test]
async fn batch_create_and_delete_wire() {
    let s = server().await;
    let c = client(&s.base, aksk());
    let t = Target::ImsImage {
        project_id: PID.into(),
        image_id: IMG.into(),
    };
    let out = c
        .add(
            &t,
            &[
                ("key1".into(), "value1".into()),
                ("key3".into(), String::new()),
                ("key1".into(), "again".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out.request_id.as_deref(), Some("rid-ok"));
    c.remove(&t, &["team ml/ops".into(), "key3".into()])
        .await
        .unwrap();
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, format!("/v2/{PID}/images/{IMG}/tags/action"));
        assert_signed(r, "hwSK");
    }
    let create: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(
        create,
        json!({"action": "create", "tags": [{"key": "key1", "value": "again"}, {"key": "key3", "value": ""}]})
    );
    let delete: Value = serde_json::from_slice(&reqs[1].body).unwrap();
    assert_eq!(
        delete,
        json!({"action": "delete", "tags": [{"key": "team ml/ops"}, {"key": "key3"}]})
    );
}

#[tokio::test]
async fn single_tag_calls_and_temporary_credentials() {
    let s = server().await;
    let c = client(
        &s.base,
        Credentials::AkSk {
            ak: "stsAK".into(),
            sk: "stsSK".into(),
            security_token: Some("hwToken".into()),
        },
    );
    c.add_image_tag(PID, IMG, "k", "v").await.unwrap();
    c.delete_image_tag(PID, IMG, "team ml/ops").await.unwrap();
    let reqs = s.requests();
    assert_eq!(reqs[0].path, format!("/v2/{PID}/images/{IMG}/tags"));
    assert_eq!(
        serde_json::from_slice::<Value>(&reqs[0].body).unwrap(),
        json!({"tag": {"key": "k", "value": "v"}})
    );
    assert_eq!(reqs[1].method, "DELETE");
    assert_eq!(
        reqs[1].path,
        format!("/v2/{PID}/images/{IMG}/tags/team%20ml%2Fops")
    );
    for r in &reqs {
        assert_eq!(r.header("x-security-token"), Some("hwToken"));
        let auth = assert_signed(r, "stsSK");
        assert!(
            auth.signed_headers
                .contains(&"x-security-token".to_string())
        );
    }
}

#[tokio::test]
async fn large_batches_are_split_by_ten() {
    let s = server().await;
    let c = client(&s.base, aksk());
    let t = Target::ImsImage {
        project_id: PID.into(),
        image_id: IMG.into(),
    };
    let tags: Vec<(String, String)> = (0..12).map(|i| (format!("k{i}"), "v".into())).collect();
    c.add(&t, &tags).await.unwrap();
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2);
    let first: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(first["tags"].as_array().unwrap().len(), 10);
    assert_eq!(
        c.limits(&t),
        CallLimits {
            add_per_call: 10,
            remove_per_call: 10,
            max_labels_on_object: Some(10)
        }
    );
    // Nothing to do: no call.
    c.add(&t, &[]).await.unwrap();
    c.remove(&t, &[]).await.unwrap();
    assert_eq!(s.requests().len(), 2);
}

#[tokio::test]
async fn errors_and_retries() {
    let s = server().await;
    let c = client(&s.base, aksk());
    let t = Target::ImsImage {
        project_id: PID.into(),
        image_id: IMG.into(),
    };
    s.push(
        Canned::json(
            404,
            json!({"error": {"code": "IMG.0027", "message": "image not found"}}),
        )
        .with_header("x-request-id", "rid-404"),
    );
    let e = c.observe(&t).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_str(), e.request_id.as_deref(), e.api),
        (
            ErrorKind::NotFound,
            "IMG.0027",
            Some("rid-404"),
            "ListImageTags"
        )
    );
    s.push(Canned::json(401, json!({"error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication information"})));
    assert_eq!(
        c.observe(&t).await.unwrap_err().kind,
        ErrorKind::Unauthenticated
    );
    s.push(Canned::json(
        403,
        json!({"error": {"code": "IMG.0001", "message": "denied"}}),
    ));
    assert_eq!(
        c.add(&t, &[("k".into(), "v".into())])
            .await
            .unwrap_err()
            .kind,
        ErrorKind::AccessDenied
    );
    s.push(Canned::json(
        400,
        json!({"error": {"code": "IMG.0101", "message": "too many tags"}}),
    ));
    assert_eq!(
        c.add(&t, &[("k".into(), "v".into())])
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Invalid
    );
    assert_eq!(s.requests().len(), 4, "permanent errors are not retried");

    // 429 then 500 then success: retried, each attempt re-signed.
    s.push(
        Canned::json(
            429,
            json!({"error_code": "APIGW.0308", "error_msg": "throttled"}),
        )
        .with_header("retry-after", "0"),
    );
    s.push(Canned::json(
        500,
        json!({"error": {"code": "IMG.0500", "message": "oops"}}),
    ));
    c.add(&t, &[("k".into(), "v".into())]).await.unwrap();
    let reqs = s.requests();
    assert_eq!(reqs.len(), 7);
    for r in &reqs[4..] {
        assert_signed(r, "hwSK");
    }

    // Deleting from a missing image is done, not failed.
    s.push(
        Canned::json(
            404,
            json!({"error": {"code": "IMG.0027", "message": "image not found"}}),
        )
        .with_header("x-request-id", "rid-del"),
    );
    assert_eq!(
        c.remove(&t, &["k".into()])
            .await
            .unwrap()
            .request_id
            .as_deref(),
        Some("rid-del")
    );
}

#[tokio::test]
async fn wrong_kinds_are_refused_without_calling() {
    let s = server().await;
    let c = client(
        &s.base,
        Credentials::AccessKey {
            id: "a".into(),
            secret: "hidden".into(),
            security_token: None,
        },
    );
    let t = Target::ImsImage {
        project_id: PID.into(),
        image_id: IMG.into(),
    };
    let e = c.observe(&t).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
    assert!(!e.to_string().contains("hidden"));
    let c = client(&s.base, aksk());
    assert_eq!(
        c.observe(&Target::PaiDataset {
            dataset_id: "d".into()
        })
        .await
        .unwrap_err()
        .kind,
        ErrorKind::Invalid
    );
    assert!(s.requests().is_empty());
}

#[test]
fn default_endpoint_and_debug() {
    let c = ImsClient::new(
        http_client(Duration::from_secs(1)).unwrap(),
        "cn-north-4",
        None,
        Arc::new(StaticSource(Credentials::AkSk {
            ak: "A".into(),
            sk: "SKSECRET".into(),
            security_token: Some("TOK".into()),
        })),
        BudgetHandle::standalone(
            "huaweicloud-ims",
            "cn-hangzhou",
            BudgetConfig::all_at(1000.0),
        ),
        RetryPolicy::none(),
    )
    .unwrap();
    assert_eq!(
        c.endpoint().origin,
        "https://ims.cn-north-4.myhuaweicloud.com"
    );
    let d = format!("{c:?}");
    assert!(!d.contains("SKSECRET") && !d.contains("TOK\""), "{d}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Over hostile image IDs the request is either refused before sending
    /// or arrives on exactly the signed path, naming exactly that image.
    #[test]
    fn the_path_sent_is_the_path_signed(image in proptest::prop_oneof![
        proptest::strategy::Just("..".to_string()),
        proptest::strategy::Just("%2e%2e".to_string()),
        "[./%?#a-z0-9-]{0,8}",
        "\\PC{0,6}",
    ]) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let s = server().await;
            s.push(Canned::json(200, serde_json::json!({"tags": []})));
            let c = client(&s.base, aksk());
            let t = Target::ImsImage { project_id: PID.into(), image_id: image.clone() };
            let result = c.observe(&t).await;
            let sent = s.requests();
            if sent.is_empty() {
                assert_eq!(result.expect_err("nothing sent").kind, ErrorKind::Invalid);
            }
            for r in &sent {
                assert_eq!(r.path, tags_path(PID, &image));
                assert_signed(r, "hwSK");
            }
        });
    }
}
