//! The simulator over real HTTP: faults, dropped connections, flow control, limits,
//! admin endpoints, STS. Bearer tokens keep these independent of signing;
//! signature checks are in `signature_tests`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

pub(super) const SEED: &str = r#"
credentials:
  pai:
    - {accessKeyId: testAK, accessKeySecret: testSecret}
    - {accessKeyId: testAK2, accessKeySecret: testSecret2}
    - {accessKeyId: otherAK, accessKeySecret: otherSecret, accountId: "2000000000000002"}
    - {accessKeyId: STS.seeded, accessKeySecret: stsSecret, securityToken: stsToken}
  bearerTokens: [sk-one, sk-two]
  ims:
    - {ak: hwAK, sk: hwSK, projectId: p1}
    - {ak: hwSTSAK, sk: hwSTSSK, securityToken: hwToken}
  oidc:
    roleArn: "acs:ram::123:role/op"
    providerArn: "acs:ram::123:oidc-provider/ack"
    token: "oidc-token"
    expirySeconds: 2
flowControl: {enabled: false}
pai:
  images:
    - {id: img-a, name: a, workspaceId: "1", labels: {system.chipType: GPU}}
  datasets:
    - {id: d-1, labels: {team: ml}, versions: [{name: v1}, {name: "v 1/β", labels: {a~b*c: x}}]}
ims:
  images:
    - {id: ims-1, projectId: p1, tags: {env: prod}}
"#;

/// The main account of `otherAK` in [`SEED`]; every other PAI credential
/// belongs to the default one.
pub(super) const OTHER_ACCOUNT: &str = "2000000000000002";

pub(super) async fn start() -> SimHandle {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Sim::from_seed(SeedConfig::from_yaml(SEED).unwrap())
        .unwrap()
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

pub(super) fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn list(h: &SimHandle, token: &str) -> reqwest::Response {
    http()
        .get(format!(
            "{}/api/v1/image/labels?ImageId=img-a",
            h.base_url()
        ))
        .header("x-acs-bearer-token", token)
        .header("x-acs-signature-type", "BEARERTOKEN")
        .send()
        .await
        .unwrap()
}

async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.unwrap()
}

#[tokio::test]
async fn bearer_list_returns_labels_with_request_id_everywhere() {
    let h = start().await;
    let resp = list(&h, "sk-one").await;
    assert_eq!(resp.status(), 200);
    let header_id = resp.headers()["x-acs-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body = json_of(resp).await;
    assert_eq!(
        body["Labels"],
        json!([{"Key": "system.chipType", "Value": "GPU"}])
    );
    assert_eq!(body["TotalCount"], 1);
    assert_eq!(body["RequestId"], header_id);

    let resp = list(&h, "sk-wrong").await;
    assert_eq!(resp.status(), 401);
    let body = json_of(resp).await;
    assert_eq!(body["Code"], "InvalidApiKey");
    for field in ["RequestId", "Message", "HostId", "Recommend"] {
        assert!(body[field].is_string(), "{field} missing in {body}");
    }
    let c = h.counters();
    assert_eq!(
        (
            c.api("ListImageLabels").ok,
            c.api("ListImageLabels").error,
            c.reads
        ),
        (1, 1, 2)
    );
}

/// A request in a form the seed documents use: under
/// `/api/AIWorkSpace/2021-02-04/`, with `Authorization: Bearer`.
fn seed_form(h: &SimHandle, method: reqwest::Method, rest: &str) -> reqwest::RequestBuilder {
    http()
        .request(
            method,
            format!("{}/api/AIWorkSpace/2021-02-04/{rest}", h.base_url()),
        )
        .header("authorization", "Bearer sk-two")
}

#[tokio::test]
async fn seed_documented_forms_with_authorization_bearer() {
    let h = start().await;
    let resp = seed_form(&h, reqwest::Method::POST, "AddImageLabels/img-a/labels")
        .json(&json!({"Labels": [{"Key": "system.origin", "Value": "1"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = seed_form(
        &h,
        reqwest::Method::GET,
        "ListImageLabels?ImageId=img-a&LabelKeys=system.origin",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        json_of(resp).await["Labels"],
        json!([{"Key": "system.origin", "Value": "1"}])
    );
    let resp = seed_form(
        &h,
        reqwest::Method::DELETE,
        "images/img-a/labels/system.origin",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let target = Target::PaiImage {
        image_id: "img-a".into(),
        workspace_id: None,
    };
    assert!(!h.labels_of(&target).unwrap().contains_key("system.origin"));
    assert_eq!(h.counters().writes, 2);
}

/// The seed documents' ListImageLabels form as a curl example sends it:
/// every parameter in the query, `=` and `,` bare in LabelFilter, a space
/// in its value as `+`.
#[tokio::test]
async fn seed_documented_list_with_a_filter_value_containing_a_space() {
    let h = start().await;
    let resp = seed_form(&h, reqwest::Method::POST, "AddImageLabels/img-a/labels")
        .json(&json!({"Labels": [
            {"Key": "system.framework", "Value": "XGBoost 1.6.0"},
            {"Key": "system.supported.dsw", "Value": "true"},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let list = |filter: &str, workspace: &str| {
        seed_form(
            &h,
            reqwest::Method::GET,
            &format!(
                "ListImageLabels?ImageId=img-a&LabelKeys=system.framework,system.chipType\
                 &LabelFilter={filter}&WorkspaceId={workspace}&Region=cn-shanghai"
            ),
        )
        .send()
    };
    let resp = list(
        "system.framework=XGBoost+1.6.0,system.supported.dsw=true",
        "1",
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let body = json_of(resp).await;
    assert_eq!(
        body["Labels"],
        json!([
            {"Key": "system.chipType", "Value": "GPU"},
            {"Key": "system.framework", "Value": "XGBoost 1.6.0"},
        ]),
        "LabelKeys picks two keys; system.supported.dsw matched the filter but was not asked for"
    );
    assert_eq!(body["TotalCount"], 2);
    // The filter is applied, not ignored: another value, a literal `+`
    // (sent as %2B) instead of the space, or another workspace match nothing.
    for (filter, workspace) in [
        ("system.framework=XGBoost+1.6", "1"),
        ("system.framework=XGBoost%2B1.6.0", "1"),
        ("system.framework=XGBoost+1.6.0", "2"),
    ] {
        let body = json_of(list(filter, workspace).await.unwrap()).await;
        assert_eq!(
            (body["Labels"].clone(), body["TotalCount"].clone()),
            (json!([]), json!(0)),
            "{filter} in workspace {workspace}"
        );
    }
    assert_eq!(h.counters().api("ListImageLabels").ok, 4);
}

/// RemoveImageLabels: request path ≤ 8192 characters (seed documents), in
/// the SDK's path and the seed-documented one (docs/wire.md).
#[tokio::test]
async fn remove_image_labels_path_over_the_limit_is_invalid_parameter() {
    let h = start().await;
    let c = http();
    let limit = super::pai::MAX_REMOVE_PATH_CHARS;
    assert_eq!(limit, 8192);
    for prefix in [
        "/api/v1/images/img-a/labels/",
        "/api/AIWorkSpace/2021-02-04/images/img-a/labels/",
    ] {
        let remove = |path_chars: usize| {
            let key = format!("system.{}", "k".repeat(path_chars - prefix.len() - 7));
            let path = format!("{prefix}{key}");
            assert_eq!(path.len(), path_chars);
            c.delete(format!("{}{path}", h.base_url()))
                .header("authorization", "Bearer sk-one")
                .send()
        };
        // At the limit: accepted (removing a missing key succeeds).
        assert_eq!(remove(limit).await.unwrap().status(), 200, "{prefix}");
        let resp = remove(limit + 1).await.unwrap();
        assert_eq!(resp.status(), 400, "{prefix}");
        let body = json_of(resp).await;
        assert_eq!(body["Code"], "InvalidParameter");
        let message = body["Message"].as_str().unwrap();
        assert!(
            message.contains("8192") && message.contains("8193"),
            "{message}"
        );
    }
    let counts = h.counters().api("RemoveImageLabels");
    assert_eq!((counts.ok, counts.error), (2, 2));
    assert_eq!(counts.by_code["InvalidParameter"], 2);
    // The image is untouched.
    let target = Target::PaiImage {
        image_id: "img-a".into(),
        workspace_id: None,
    };
    assert_eq!(h.labels_of(&target).unwrap().len(), 1);
}

#[tokio::test]
async fn flow_control_answers_throttling_with_retry_after_per_main_account() {
    let h = start().await;
    // One request a second: the second call comes well inside that second
    // even on a loaded machine.
    h.set_flow_control(FlowControlSeed::published().with_rate("ListImageLabels", 1))
        .unwrap();
    assert_eq!(list(&h, "sk-one").await.status(), 200);
    // Both bearer tokens belong to the seed's main account: one budget.
    let resp = list(&h, "sk-two").await;
    assert_eq!(resp.status(), 400);
    let retry_after: u64 = resp.headers()["x-acs-retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0 && retry_after <= 1000, "{retry_after}");
    let body = json_of(resp).await;
    assert_eq!(body["Code"], "Throttling.User");
    assert_eq!(
        body["Message"],
        "Request was denied due to user flow control."
    );
    let c = h.counters().api("ListImageLabels");
    assert_eq!((c.ok, c.throttled), (1, 1));
    // Throttled answers are counted per caller too.
    let c = h.counters();
    assert_eq!(c.throttled_by_agent.values().sum::<u64>(), 1);
    assert_eq!(c.calls_by_agent.values().sum::<u64>(), 2);
}

#[tokio::test]
async fn injected_server_errors_throttling_and_latency() {
    let h = start().await;
    h.set_faults(FaultConfig {
        server_error_rate: 1.0,
        ..Default::default()
    })
    .unwrap();
    let resp = list(&h, "sk-one").await;
    let status = resp.status().as_u16();
    let body = json_of(resp).await;
    assert!(
        matches!(
            (status, body["Code"].as_str().unwrap()),
            (500, "InternalError") | (503, "ServiceUnavailable")
        ),
        "{status} {body}"
    );

    h.set_faults(FaultConfig {
        throttle_rate: 1.0,
        ..Default::default()
    })
    .unwrap();
    let resp = list(&h, "sk-one").await;
    assert!(resp.headers().contains_key("x-acs-retry-after"));
    assert_eq!(json_of(resp).await["Code"], "Throttling.User");

    h.set_faults(FaultConfig {
        latency_ms: 300,
        ..Default::default()
    })
    .unwrap();
    let started = Instant::now();
    assert_eq!(list(&h, "sk-one").await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn dropped_connections_reach_the_client_as_transport_errors() {
    let h = start().await;
    h.set_faults(FaultConfig {
        drop_rate: 1.0,
        ..Default::default()
    })
    .unwrap();
    let err = http()
        .get(format!(
            "{}/api/v1/image/labels?ImageId=img-a",
            h.base_url()
        ))
        .header("authorization", "Bearer sk-one")
        .send()
        .await
        .expect_err("a dropped connection must not produce a response");
    assert!(
        err.status().is_none() && (err.is_request() || err.is_connect() || err.is_body()),
        "{err:?}"
    );
    assert_eq!(h.counters().api("ListImageLabels").dropped, 1);
    // Faults are changeable at runtime and the server keeps serving.
    h.set_faults(FaultConfig::default()).unwrap();
    assert_eq!(list(&h, "sk-one").await.status(), 200);
}

#[tokio::test]
async fn bad_input_gets_json_errors_not_panics() {
    let h = start().await;
    let c = http();
    let post = |path: &str, body: Vec<u8>| {
        c.post(format!("{}{path}", h.base_url()))
            .header("authorization", "Bearer sk-one")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let resp = post("/api/v1/images/img-a/labels", b"{not json".to_vec())
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), json_of(resp).await["Code"].clone()),
        (400, json!("InvalidParameter"))
    );
    let resp = post("/api/v1/images/img-a/labels", vec![0xff, 0xfe])
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = post("/api/v1/images/img-a/labels", b"".to_vec())
        .await
        .unwrap();
    assert_eq!(json_of(resp).await["Code"], "MissingParameter");
    let resp = post(
        "/api/v1/images/img-a/labels",
        vec![b' '; MAX_BODY_BYTES + 1],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 413);
    let resp = c
        .delete(format!(
            "{}/api/v1/images/img-a/labels/%FF%FE",
            h.base_url()
        ))
        .header("authorization", "Bearer sk-one")
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(resp).await["Code"], "InvalidParameter");
    let resp = c
        .get(format!("{}/api/v1/nothing", h.base_url()))
        .header("authorization", "Bearer sk-one")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), json_of(resp).await["Code"].clone()),
        (404, json!("InvalidAction.NotFound"))
    );
    let resp = c
        .get(format!("{}/v2/p1/nothing", h.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            resp.status().as_u16(),
            json_of(resp).await["error_code"].clone()
        ),
        (404, json!("APIGW.0101"))
    );
    let resp = c
        .get(format!("{}/elsewhere", h.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // Unsigned IMS call: the gateway's 401 shape with X-Request-Id.
    let resp = c
        .get(format!("{}/v2/p1/images/ims-1/tags", h.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(json_of(resp).await["error_code"], "APIGW.0301");
}

#[tokio::test]
async fn admin_endpoints_change_state_without_counting() {
    let h = start().await;
    let c = http();
    let url = |p: &str| format!("{}/_sim{p}", h.base_url());
    assert_eq!(
        c.put(url("/pai/images/img-a/labels/system.dsw.os"))
            .json(&json!({"value": "ubuntu"}))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.put(url("/pai/datasets/d-1/versions/v1/labels/q"))
            .json(&json!({"value": "1"}))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.put(url("/ims/p1/images/ims-1/tags/a%2Fb"))
            .json(&json!({"value": ""}))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.delete(url("/pai/datasets/d-1/labels/team"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.put(url("/pai/images/nope/labels/k"))
            .json(&json!({"value": "1"}))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let state: Value = c
        .get(url("/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        state["paiImages"]["img-a"]["labels"]["system.dsw.os"],
        "ubuntu"
    );
    assert_eq!(state["paiDatasets"]["d-1"]["versions"]["v1"]["q"], "1");
    assert_eq!(state["paiDatasets"]["d-1"]["labels"], json!({}));
    assert_eq!(state["imsImages"]["p1"]["ims-1"]["a/b"], "");

    assert_eq!(
        c.put(url("/faults"))
            .json(&json!({"throttleRate": 2}))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        c.put(url("/faults"))
            .json(&json!({"latencyMs": 5}))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(h.faults().latency_ms, 5);
    assert_eq!(
        c.put(url("/flow-control"))
            .json(&json!({"enabled": true, "rates": {"AddImageLabels": 7}}))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        h.flow_control(),
        FlowControlSeed::published().with_rate("AddImageLabels", 7)
    );
    let got: FlowControlSeed = c
        .get(url("/flow-control"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, h.flow_control());
    for bad in [
        json!({"enabled": true, "rates": {"AddImageLabel": 7}}),
        json!({"qps": 7}),
    ] {
        assert!(
            c.put(url("/flow-control"))
                .json(&bad)
                .send()
                .await
                .unwrap()
                .status()
                .is_client_error(),
            "{bad}"
        );
    }
    assert_eq!(h.flow_control().rates["AddImageLabels"], 7);

    list(&h, "sk-one").await;
    let counters: CounterSnapshot = c
        .get(url("/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        counters.total, 1,
        "admin calls are not API calls: {counters:?}"
    );
    assert_eq!(
        c.post(url("/reset-counters"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(h.counters().total, 0);
}

/// AssumeRoleWithOIDC with the demo seed's good parameters, some replaced.
async fn assume_role(h: &SimHandle, replace: &[(&str, &str)]) -> reqwest::Response {
    let mut query: Vec<(String, String)> = [
        ("Action", "AssumeRoleWithOIDC"),
        ("Format", "JSON"),
        ("Version", "2015-04-01"),
        ("RoleArn", "acs:ram::123:role/op"),
        ("OIDCProviderArn", "acs:ram::123:oidc-provider/ack"),
        ("OIDCToken", "oidc-token"),
        ("RoleSessionName", "imagelabel"),
        ("DurationSeconds", "3600"),
        ("Timestamp", "2026-01-01T00:00:00Z"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in replace {
        if let Some(pair) = query.iter_mut().find(|(name, _)| name == k) {
            pair.1 = v.to_string();
        }
    }
    http()
        .get(format!("{}/", h.base_url()))
        .query(&query)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sts_issues_credentials_and_rejects_wrong_inputs() {
    let h = start().await;
    let h = &h;
    let sts = |token: &'static str, role: &'static str| async move {
        assume_role(h, &[("OIDCToken", token), ("RoleArn", role)]).await
    };
    let resp = sts("oidc-token", "acs:ram::123:role/op").await;
    assert_eq!(resp.status(), 200);
    let body = json_of(resp).await;
    let creds = &body["Credentials"];
    assert!(creds["AccessKeyId"].as_str().unwrap().starts_with("STS."));
    assert!(
        creds["SecurityToken"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let expiration: jiff::Timestamp = creds["Expiration"].as_str().unwrap().parse().unwrap();
    // expirySeconds in the seed caps the lifetime.
    assert!(expiration <= jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3));

    let resp = sts("wrong", "acs:ram::123:role/op").await;
    assert_eq!(
        (resp.status().as_u16(), json_of(resp).await["Code"].clone()),
        (401, json!("AuthenticationFail.OIDCToken.Invalid"))
    );
    let resp = sts("oidc-token", "acs:ram::123:role/other").await;
    assert_eq!(
        (resp.status().as_u16(), json_of(resp).await["Code"].clone()),
        (404, json!("EntityNotExist.Role"))
    );
    assert_eq!(h.counters().api("AssumeRoleWithOIDC").total(), 3);
}

/// The documented parameter limits, each at the edge it allows and one past.
#[tokio::test]
async fn sts_parameter_rules() {
    let h = start().await;
    let long_token = "t".repeat(20_001);
    let long_session = "s".repeat(65);
    for (replace, code) in [
        (
            ("DurationSeconds", "899"),
            "InvalidParameter.DurationSeconds",
        ),
        (
            ("DurationSeconds", "43201"),
            "InvalidParameter.DurationSeconds",
        ),
        (("RoleSessionName", "a"), "InvalidParameter.RoleSessionName"),
        (
            ("RoleSessionName", long_session.as_str()),
            "InvalidParameter.RoleSessionName",
        ),
        (
            ("RoleSessionName", "bad name"),
            "InvalidParameter.RoleSessionName",
        ),
        (("OIDCToken", "abc"), "InvalidParameter.OIDCToken"),
        (
            ("OIDCToken", long_token.as_str()),
            "InvalidParameter.OIDCToken",
        ),
    ] {
        let resp = assume_role(&h, &[replace]).await;
        assert_eq!(
            (resp.status().as_u16(), json_of(resp).await["Code"].clone()),
            (400, json!(code)),
            "{replace:?}"
        );
    }
    for replace in [
        ("DurationSeconds", "900"),
        ("DurationSeconds", "43200"),
        ("RoleSessionName", "a.b@c-d_e"),
    ] {
        assert_eq!(
            assume_role(&h, &[replace]).await.status(),
            200,
            "{replace:?}"
        );
    }
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let h = start().await;
    let url = h.base_url();
    assert_eq!(list(&h, "sk-one").await.status(), 200);
    h.shutdown().await;
    let fresh = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(
        fresh
            .get(format!("{url}/_sim/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[test]
fn demo_sim_builds() {
    let sim = Sim::demo();
    let target = Target::ImsImage {
        project_id: "fd73a4a14a4a4dfb9771a8475e5198ea".into(),
        image_id: "67e17426-359e-49fb-aa12-0bd1756ec240".into(),
    };
    assert_eq!(sim.labels_of(&target).unwrap()["env"], "prod");
    assert!(
        sim.labels_of(&Target::PaiDataset {
            dataset_id: "nope".into()
        })
        .is_none()
    );
    assert!(
        sim.set_label_out_of_band(
            &Target::PaiDataset {
                dataset_id: "nope".into()
            },
            "k",
            "v"
        )
        .is_err()
    );
}
