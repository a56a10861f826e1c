//! Wire-format tests against a capture server: method, path, query, headers,
//! body, and a signature that re-verifies with our own sign module.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::provider::LabelProvider;
use crate::provider::credentials::StaticSource;
use crate::provider::http::http_client;
use crate::provider::limiter::BudgetConfig;
use crate::provider::testsupport::{Canned, Captured, TestServer};

fn ak() -> Credentials {
    Credentials::AccessKey {
        id: "testAK".into(),
        secret: "testSecret".into(),
        security_token: None,
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
        max_retry_after: Duration::from_millis(50),
    }
}

fn client(base: &str, creds: Credentials) -> PaiClient {
    PaiClient::new(
        http_client(Duration::from_secs(5)).unwrap(),
        "cn-hangzhou",
        Some(base),
        Arc::new(StaticSource(creds)),
        BudgetHandle::standalone("pai", "cn-hangzhou", BudgetConfig::all_at(1000.0)),
        fast_retry(),
    )
    .unwrap()
}

async fn server() -> TestServer {
    TestServer::start(Canned::json(200, json!({"RequestId": "req-ok"}))).await
}

/// Checks the headers every signed call carries and that the signature
/// verifies against the secret; returns the parsed Authorization.
fn assert_signed(c: &Captured, action: &str, secret: &str) -> acs3::Authorization {
    assert_eq!(c.header("x-acs-action"), Some(action));
    assert_eq!(c.header("x-acs-version"), Some("2021-02-04"));
    assert!(acs3::parse_date(c.header("x-acs-date").unwrap()).is_some());
    let nonce = c.header("x-acs-signature-nonce").unwrap();
    assert_eq!(nonce.len(), 32);
    assert_eq!(c.header("accept"), Some("application/json"));
    assert_eq!(
        c.header("x-acs-content-sha256"),
        Some(sign::sha256_hex(&c.body).as_str())
    );
    if c.body.is_empty() {
        assert_eq!(c.header("content-type"), None);
    } else {
        assert_eq!(
            c.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }
    let auth =
        acs3::Authorization::parse(c.header("authorization").expect("authorization")).unwrap();
    for must in [
        "host",
        "x-acs-action",
        "x-acs-content-sha256",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-version",
    ] {
        assert!(
            auth.signed_headers.iter().any(|h| h == must),
            "{must} not signed"
        );
    }
    let query = c.decoded_query();
    let hash = sign::sha256_hex(&c.body);
    let parts = RequestParts {
        method: &c.method,
        path: &c.path,
        query: &query,
        headers: &c.headers,
        payload_hash: &hash,
    };
    assert!(
        acs3::verify(&parts, &auth, secret).unwrap(),
        "signature does not verify"
    );
    assert!(!acs3::verify(&parts, &auth, "other").unwrap());
    auth
}

#[tokio::test]
async fn list_image_labels_wire() {
    let s = server().await;
    s.push(Canned::json(200, json!({"RequestId": "r1", "TotalCount": 2, "Labels": [{"Key": "system.chipType", "Value": "GPU"}, {"Key": "team", "Value": null}, {"Value": "orphan"}]})));
    let c = client(&s.base, ak());
    let req = ListImageLabelsRequest {
        image_id: Some("image-abc123".into()),
        workspace_id: Some("12345".into()),
        label_keys: vec!["system.chipType".into(), "team".into()],
        label_filter: Some("system.chipType=GPU,team=ml ops".into()),
        region: None,
    };
    let resp = c.list_image_labels(&req).await.unwrap();
    assert_eq!(resp.request_id.as_deref(), Some("r1"));
    assert_eq!(resp.total_count, Some(2));
    assert_eq!(
        resp.labels,
        vec![
            Label {
                key: "system.chipType".into(),
                value: "GPU".into()
            },
            Label {
                key: "team".into(),
                value: String::new()
            }
        ]
    );
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/api/v1/image/labels");
    let mut q = r.decoded_query();
    q.sort();
    assert_eq!(
        q,
        vec![
            ("ImageId".into(), "image-abc123".into()),
            (
                "LabelFilter".into(),
                "system.chipType=GPU,team=ml ops".into()
            ),
            ("LabelKeys".into(), "system.chipType,team".into()),
            ("WorkspaceId".into(), "12345".into()),
        ]
    );
    // A server form-decoding the query must see a space, not a plus.
    assert!(r.query.contains("ml%20ops"));
    assert_eq!(r.header("host"), Some(c.endpoint().host.as_str()));
    assert_eq!(r.header("host"), Some(s.base.trim_start_matches("http://")));
    let auth = assert_signed(r, "ListImageLabels", "testSecret");
    assert_eq!(auth.access_key_id, "testAK");
    assert!(r.header("x-acs-security-token").is_none());
}

#[tokio::test]
async fn add_and_remove_image_labels_wire() {
    let s = server().await;
    let c = client(&s.base, ak());
    let labels = vec![
        ("system.chipType".to_string(), "GPU".to_string()),
        ("team".to_string(), "ml ops/α".to_string()),
    ];
    let out = c.add_image_labels("image-abc123", &labels).await.unwrap();
    assert_eq!(out.request_id.as_deref(), Some("req-ok"));
    c.remove_image_label("image-abc123", "system.dsw/os x")
        .await
        .unwrap();
    let reqs = s.requests();
    let add = &reqs[0];
    assert_eq!(add.method, "POST");
    assert_eq!(add.path, "/api/v1/images/image-abc123/labels");
    let body: Value = serde_json::from_slice(&add.body).unwrap();
    assert_eq!(
        body,
        json!({"Labels": [{"Key": "system.chipType", "Value": "GPU"}, {"Key": "team", "Value": "ml ops/α"}]})
    );
    assert_signed(add, "AddImageLabels", "testSecret");
    let rm = &reqs[1];
    assert_eq!(rm.method, "DELETE");
    assert_eq!(
        rm.path,
        "/api/v1/images/image-abc123/labels/system.dsw%2Fos%20x"
    );
    assert!(rm.body.is_empty());
    assert_signed(rm, "RemoveImageLabels", "testSecret");
}

#[tokio::test]
async fn add_rejects_more_than_100_without_calling() {
    let s = server().await;
    let c = client(&s.base, ak());
    let labels: Vec<(String, String)> = (0..101)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    assert_eq!(
        c.add_image_labels("img", &labels).await.unwrap_err().kind,
        ErrorKind::Invalid
    );
    assert!(s.requests().is_empty());
    // Through the trait a large batch is split instead.
    let t = Target::PaiImage {
        image_id: "img".into(),
        workspace_id: None,
    };
    c.add(&t, &labels).await.unwrap();
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2);
    let first: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(first["Labels"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn dataset_and_version_calls_wire() {
    let s = server().await;
    let c = client(&s.base, ak());
    s.push(Canned::json(
        200,
        json!({"RequestId": "g", "DatasetId": "d-1", "Labels": [{"Key": "a", "Value": "1"}]}),
    ));
    let ds = Target::PaiDataset {
        dataset_id: "d-1".into(),
    };
    assert_eq!(
        c.observe(&ds).await.unwrap(),
        Labels::from([("a".into(), "1".into())])
    );
    c.add(&ds, &[("b".into(), "2".into())]).await.unwrap();
    c.remove(&ds, &["a".into(), "c d".into()]).await.unwrap();

    s.push(Canned::json(200, json!({"RequestId": "g", "Labels": []})));
    let v = Target::PaiDatasetVersion {
        dataset_id: "d-1".into(),
        version: "v 1/β".into(),
    };
    assert_eq!(c.observe(&v).await.unwrap(), Labels::new());
    c.add(&v, &[("b".into(), "2".into())]).await.unwrap();
    c.remove(&v, &["a~b*c".into(), "d é+f".into()])
        .await
        .unwrap();

    let reqs = s.requests();
    let shape: Vec<(String, String, String)> = reqs
        .iter()
        .map(|r| {
            (
                r.method.clone(),
                r.path.clone(),
                r.header("x-acs-action").unwrap().to_string(),
            )
        })
        .collect();
    let vp = "/api/v1/datasets/d-1/versions/v%201%2F%CE%B2";
    assert_eq!(
        shape,
        vec![
            (
                "GET".into(),
                "/api/v1/datasets/d-1".into(),
                "GetDataset".into()
            ),
            (
                "POST".into(),
                "/api/v1/datasets/d-1/labels".into(),
                "CreateDatasetLabels".into()
            ),
            (
                "DELETE".into(),
                "/api/v1/datasets/d-1/labels".into(),
                "DeleteDatasetLabels".into()
            ),
            ("GET".into(), vp.into(), "GetDatasetVersion".into()),
            (
                "PUT".into(),
                format!("{vp}/labels"),
                "CreateDatasetVersionLabels".into()
            ),
            (
                "DELETE".into(),
                format!("{vp}/labels"),
                "DeleteDatasetVersionLabels".into()
            ),
        ]
    );
    assert_eq!(
        reqs[2].decoded_query(),
        vec![("LabelKeys".to_string(), "a,c d".to_string())]
    );
    assert_eq!(
        reqs[5].decoded_query(),
        vec![("Keys".to_string(), "a~b*c,d é+f".to_string())]
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&reqs[4].body).unwrap(),
        json!({"Labels": [{"Key": "b", "Value": "2"}]})
    );
    for r in &reqs {
        assert_signed(r, r.header("x-acs-action").unwrap(), "testSecret");
    }
}

#[tokio::test]
async fn comma_in_dataset_key_is_invalid() {
    let s = server().await;
    let c = client(&s.base, ak());
    let e = c
        .remove(
            &Target::PaiDataset {
                dataset_id: "d".into(),
            },
            &["a,b".into()],
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(s.requests().is_empty());
}

#[tokio::test]
async fn sts_token_headers_are_sent_and_signed() {
    let s = server().await;
    let c = client(
        &s.base,
        Credentials::AccessKey {
            id: "STS.AK".into(),
            secret: "stsSecret".into(),
            security_token: Some("tok".into()),
        },
    );
    c.get_image("img", Some(true)).await.unwrap();
    let r = &s.requests()[0];
    assert_eq!(r.path, "/api/v1/images/img");
    assert_eq!(
        r.decoded_query(),
        vec![("Verbose".to_string(), "true".to_string())]
    );
    assert_eq!(r.header("x-acs-security-token"), Some("tok"));
    assert_eq!(r.header("x-acs-accesskey-id"), Some("STS.AK"));
    let auth = assert_signed(r, "GetImage", "stsSecret");
    assert!(
        auth.signed_headers
            .contains(&"x-acs-security-token".to_string())
    );
    assert!(
        auth.signed_headers
            .contains(&"x-acs-accesskey-id".to_string())
    );
}

#[tokio::test]
async fn bearer_headers() {
    let s = server().await;
    let c = client(&s.base, Credentials::Bearer("sk-key".into()));
    c.list_image_labels(&ListImageLabelsRequest {
        image_id: Some("i".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let r = &s.requests()[0];
    assert_eq!(r.header("x-acs-bearer-token"), Some("sk-key"));
    assert_eq!(r.header("x-acs-signature-type"), Some("BEARERTOKEN"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.header("x-acs-action"), Some("ListImageLabels"));
}

#[tokio::test]
async fn wrong_credential_kind_fails_without_calling() {
    let s = server().await;
    let c = client(
        &s.base,
        Credentials::AkSk {
            ak: "a".into(),
            sk: "hidden-sk".into(),
            security_token: None,
        },
    );
    let e = c.get_dataset("d").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
    assert!(!e.to_string().contains("hidden-sk"));
    assert!(s.requests().is_empty());
}

#[tokio::test]
async fn retries_are_resigned_and_honour_throttling() {
    let s = server().await;
    s.push(Canned::json(
        503,
        json!({"RequestId": "e1", "Code": "ServiceUnavailable", "Message": "busy"}),
    ));
    s.push(Canned::json(400, json!({"RequestId": "e2", "Code": "Throttling.User", "Message": "Request was denied due to user flow control"})).with_header("x-acs-retry-after", "5"));
    let c = client(&s.base, ak());
    let out = c
        .add_image_labels("img", &[("k".into(), "v".into())])
        .await
        .unwrap();
    assert_eq!(out.request_id.as_deref(), Some("req-ok"));
    let reqs = s.requests();
    assert_eq!(reqs.len(), 3);
    let nonces: HashSet<&str> = reqs
        .iter()
        .map(|r| r.header("x-acs-signature-nonce").unwrap())
        .collect();
    assert_eq!(nonces.len(), 3, "each attempt needs a fresh nonce");
    for r in &reqs {
        assert_signed(r, "AddImageLabels", "testSecret");
    }
    // The throttling answer reached the API's budget, and only that one.
    let add = c.budgets().budget("AddImageLabels").await;
    assert_eq!(add.throttled_total(), 1);
    assert!(add.rate() < add.ceiling() * 0.6, "halved: {add:?}");
    let remove = c.budgets().budget("RemoveImageLabels").await;
    assert_eq!(remove.throttled_total(), 0);
    assert_eq!(remove.rate(), remove.ceiling());
}

#[tokio::test]
async fn errors_map_and_permanent_ones_are_not_retried() {
    let s = server().await;
    let c = client(&s.base, ak());
    s.push(Canned::json(
        404,
        json!({"RequestId": "nf", "Code": "ImageNotFound", "Message": "no such image"}),
    ));
    let e = c.get_image("img", None).await.unwrap_err();
    assert_eq!(
        (
            e.kind,
            e.code.as_str(),
            e.request_id.as_deref(),
            e.http_status,
            e.api
        ),
        (
            ErrorKind::NotFound,
            "ImageNotFound",
            Some("nf"),
            Some(404),
            "GetImage"
        )
    );
    s.push(Canned::json(
        400,
        json!({"RequestId": "sig", "Code": "SignatureDoesNotMatch", "Message": "bad"}),
    ));
    assert_eq!(
        c.get_image("img", None).await.unwrap_err().kind,
        ErrorKind::Unauthenticated
    );
    s.push(Canned::json(
        403,
        json!({"RequestId": "ad", "Code": "Forbidden", "Message": "denied"}),
    ));
    assert_eq!(
        c.get_image("img", None).await.unwrap_err().kind,
        ErrorKind::AccessDenied
    );
    assert_eq!(s.requests().len(), 3);

    // Retryable errors exhaust the attempts and surface the last error.
    for _ in 0..3 {
        s.push(Canned::json(
            500,
            json!({"RequestId": "ie", "Code": "InternalError", "Message": "oops"}),
        ));
    }
    let e = c.get_image("img", None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Server);
    assert_eq!(s.requests().len(), 6);

    // A non-JSON success is not trusted.
    s.push(Canned {
        status: 200,
        headers: vec![],
        body: "<html>portal</html>".into(),
    });
    s.push(Canned {
        status: 200,
        headers: vec![],
        body: "<html>portal</html>".into(),
    });
    s.push(Canned {
        status: 200,
        headers: vec![],
        body: "<html>portal</html>".into(),
    });
    assert_eq!(
        c.get_image("img", None).await.unwrap_err().kind,
        ErrorKind::Network
    );
}

#[tokio::test]
async fn observe_image_tells_empty_from_missing() {
    let s = server().await;
    let c = client(&s.base, ak());
    let t = Target::PaiImage {
        image_id: "img".into(),
        workspace_id: Some("ws".into()),
    };
    s.push(Canned::json(
        200,
        json!({"RequestId": "l", "Labels": [], "TotalCount": 0}),
    ));
    s.push(Canned::json(
        404,
        json!({"RequestId": "g", "Code": "ImageNotFound", "Message": "gone"}),
    ));
    assert_eq!(c.observe(&t).await.unwrap_err().kind, ErrorKind::NotFound);
    s.push(Canned::json(
        200,
        json!({"RequestId": "l", "Labels": [], "TotalCount": 0}),
    ));
    s.push(Canned::json(
        200,
        json!({"RequestId": "g", "ImageId": "img"}),
    ));
    assert_eq!(c.observe(&t).await.unwrap(), Labels::new());
    s.push(Canned::json(
        200,
        json!({"RequestId": "l", "Labels": [{"Key": "k", "Value": "v"}]}),
    ));
    assert_eq!(
        c.observe(&t).await.unwrap(),
        Labels::from([("k".into(), "v".into())])
    );
    let reqs = s.requests();
    assert_eq!(reqs.len(), 5);
    assert!(
        reqs[0]
            .decoded_query()
            .contains(&("WorkspaceId".to_string(), "ws".to_string()))
    );
    assert_eq!(reqs[1].header("x-acs-action"), Some("GetImage"));
}

#[tokio::test]
async fn removing_missing_is_success_and_image_keys_go_one_by_one() {
    let s = server().await;
    let c = client(&s.base, ak());
    let t = Target::PaiImage {
        image_id: "img".into(),
        workspace_id: None,
    };
    s.push(Canned::json(
        404,
        json!({"RequestId": "nf", "Code": "LabelNotFound", "Message": "no"}),
    ));
    let out = c.remove(&t, &["a".into(), "b".into()]).await.unwrap();
    assert_eq!(out.request_id.as_deref(), Some("req-ok"));
    let paths: Vec<String> = s.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        vec!["/api/v1/images/img/labels/a", "/api/v1/images/img/labels/b"]
    );
    assert_eq!(c.limits(&t).remove_per_call, 1);
    assert_eq!(c.limits(&t).add_per_call, 100);
}

#[tokio::test]
async fn network_errors_are_retryable_and_clean() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = client(&format!("http://{addr}"), ak());
    let e = c.get_image("img", None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Network);
    assert!(!e.message.contains("testSecret"));
    assert!(!e.message.contains(&addr.to_string()), "{}", e.message);
}

#[tokio::test]
async fn ims_target_is_refused() {
    let s = server().await;
    let c = client(&s.base, ak());
    let t = Target::ImsImage {
        project_id: "p".into(),
        image_id: "i".into(),
    };
    assert_eq!(c.observe(&t).await.unwrap_err().kind, ErrorKind::Invalid);
    assert!(s.requests().is_empty());
}

#[test]
fn construction_validates_region_and_endpoint() {
    let http = http_client(Duration::from_secs(1)).unwrap();
    let mk = |region: &str, ep: Option<&str>| {
        PaiClient::new(
            http.clone(),
            region,
            ep,
            Arc::new(StaticSource(ak())),
            BudgetHandle::standalone("pai", "cn-hangzhou", BudgetConfig::all_at(1000.0)),
            RetryPolicy::none(),
        )
    };
    let c = mk("cn-shanghai", None).unwrap();
    assert_eq!(c.endpoint().host, "aiworkspace.cn-shanghai.aliyuncs.com");
    assert_eq!(
        c.endpoint().origin,
        "https://aiworkspace.cn-shanghai.aliyuncs.com"
    );
    for bad in ["", "evil.com/x", "cn-hangzhou.evil.com", "CN", "-x", "a b"] {
        assert_eq!(
            mk(bad, None).unwrap_err().kind,
            ErrorKind::Invalid,
            "{bad:?}"
        );
    }
    assert!(mk("cn-hangzhou", Some("ftp://x")).is_err());
    assert!(mk("cn-hangzhou", Some("http://x/?a=b")).is_err());
    let c = mk(
        "cn-hangzhou",
        Some("https://aiworkspace-vpc.cn-hangzhou.aliyuncs.com/"),
    )
    .unwrap();
    assert_eq!(
        c.endpoint().host,
        "aiworkspace-vpc.cn-hangzhou.aliyuncs.com"
    );
    assert_eq!(c.endpoint().prefix, "");
    let c = mk("cn-hangzhou", Some("http://127.0.0.1:8080/pai/")).unwrap();
    assert_eq!(
        c.endpoint().url("/api/v1/x", ""),
        "http://127.0.0.1:8080/pai/api/v1/x"
    );
    assert_eq!(c.endpoint().host, "127.0.0.1:8080");
}

#[test]
fn debug_hides_credentials() {
    let http = http_client(Duration::from_secs(1)).unwrap();
    let c = PaiClient::new(
        http,
        "cn-hangzhou",
        None,
        Arc::new(StaticSource(Credentials::AccessKey {
            id: "AKID".into(),
            secret: "SUPERSECRET".into(),
            security_token: Some("TOKENX".into()),
        })),
        BudgetHandle::standalone("pai", "cn-hangzhou", BudgetConfig::all_at(1000.0)),
        RetryPolicy::none(),
    )
    .unwrap();
    let d = format!("{c:?}");
    assert!(!d.contains("SUPERSECRET") && !d.contains("TOKENX"), "{d}");
}

/// What the client must send for a dataset version: the IDs encoded, and
/// nothing URL parsing would rewrite.
fn expected_version_path(dataset_id: &str, version: &str) -> String {
    format!(
        "/api/v1/datasets/{}/versions/{}",
        sign::encode(dataset_id),
        sign::encode(version)
    )
}

fn hostile_id() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e%2E".to_string()),
        Just("v1/../..".to_string()),
        "[./%?#a-z0-9-]{0,8}",
        "(\\.|%2e|%2E|/|\\?|#){1,4}",
        "\\PC{0,6}",
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]
    /// Over hostile IDs the request either is not sent at all (refused as
    /// Invalid) or arrives with exactly the path the client signed and the
    /// object the set names; the capture server re-verifies the signature
    /// over the path it received.
    #[test]
    fn the_path_sent_is_the_path_signed(dataset in hostile_id(), version in hostile_id()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let s = server().await;
            s.push(Canned::json(200, json!({"RequestId": "r", "Labels": []})));
            let c = client(&s.base, ak());
            let target = Target::PaiDatasetVersion {
                dataset_id: dataset.clone(),
                version: version.clone(),
            };
            let result = c.observe(&target).await;
            let sent = s.requests();
            if sent.is_empty() {
                let e = result.expect_err("nothing sent, so an error");
                assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
            }
            for r in &sent {
                assert_eq!(r.path, expected_version_path(&dataset, &version));
                assert_signed(r, "GetDatasetVersion", "testSecret");
            }
        });
    }
}

#[tokio::test]
async fn dot_dot_version_is_refused_before_sending() {
    let s = server().await;
    let c = client(&s.base, ak());
    let target = Target::PaiDatasetVersion {
        dataset_id: "d-abc".into(),
        version: "..".into(),
    };
    let e = c.observe(&target).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.message.contains("GetDatasetVersion"), "{e}");
    assert!(s.requests().is_empty(), "nothing reached the server");
}
