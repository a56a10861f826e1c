//! Signature verification over real HTTP, with requests signed by the
//! shared `crate::sign` code the operator's clients use.

use std::time::Duration;

use axum::http::Method;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::tests::{OTHER_ACCOUNT, http, start};
use super::*;
use crate::sign::{self, RequestParts, acs3, sdk};

struct Pai<'a> {
    method: Method,
    path: &'a str,
    query: Vec<(&'a str, &'a str)>,
    body: Option<Value>,
    action: &'a str,
    version: &'a str,
    /// The Host header (signed); the simulator's host:port when `None`.
    host: Option<&'a str>,
    ak: &'a str,
    secret: &'a str,
    token: Option<&'a str>,
    date: Timestamp,
    nonce: String,
    /// Extra header names to list as signed without sending them.
    phantom_signed: Vec<&'a str>,
    /// Replaces the body after signing.
    tamper_body: Option<&'a str>,
}

impl<'a> Pai<'a> {
    fn new(method: Method, path: &'a str, action: &'a str) -> Self {
        Pai {
            method,
            path,
            query: vec![],
            body: None,
            action,
            version: "2021-02-04",
            host: None,
            ak: "testAK",
            secret: "testSecret",
            token: None,
            date: Timestamp::now(),
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            phantom_signed: vec![],
            tamper_body: None,
        }
    }

    async fn send(&self, h: &SimHandle) -> (u16, Value) {
        let body = self
            .body
            .as_ref()
            .map(|b| b.to_string())
            .unwrap_or_default();
        let mut headers: Vec<(String, String)> = vec![
            (
                "host".into(),
                self.host.map_or_else(|| h.host_port(), str::to_string),
            ),
            ("x-acs-action".into(), self.action.into()),
            ("x-acs-version".into(), self.version.into()),
            ("x-acs-date".into(), acs3::format_date(self.date)),
            ("x-acs-signature-nonce".into(), self.nonce.clone()),
            ("accept".into(), "application/json".into()),
            (
                "x-acs-content-sha256".into(),
                sign::sha256_hex(body.as_bytes()),
            ),
        ];
        if self.body.is_some() {
            headers.push((
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            ));
        }
        if let Some(token) = self.token {
            headers.push(("x-acs-accesskey-id".into(), self.ak.into()));
            headers.push(("x-acs-security-token".into(), token.into()));
        }
        let query: Vec<(String, String)> = self
            .query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let payload_hash = sign::sha256_hex(body.as_bytes());
        let mut signed_names = acs3::default_signed_headers(&headers);
        signed_names.extend(self.phantom_signed.iter().map(|s| s.to_string()));
        let parts = RequestParts {
            method: self.method.as_str(),
            path: self.path,
            query: &query,
            headers: &headers,
            payload_hash: &payload_hash,
        };
        // Phantom headers are signed with a value that is never sent.
        let mut sign_headers = headers.clone();
        sign_headers.extend(
            self.phantom_signed
                .iter()
                .map(|n| (n.to_string(), "x".to_string())),
        );
        let signed = acs3::sign(
            &RequestParts {
                headers: &sign_headers,
                ..parts
            },
            self.ak,
            self.secret,
            &signed_names,
        )
        .unwrap();

        let mut url = format!("{}{}", h.base_url(), self.path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(
                &form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&query)
                    .finish(),
            );
        }
        let mut req = http()
            .request(self.method.clone(), url)
            .header("authorization", signed.authorization);
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(self.tamper_body.map(str::to_string).unwrap_or(body));
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// STS GetCallerIdentity as `alibabacloud_sts20150401` sends it.
fn caller_identity() -> Pai<'static> {
    Pai {
        version: "2015-04-01",
        ..Pai::new(Method::POST, "/", "GetCallerIdentity")
    }
}

fn add_label(ak: &'static str, secret: &'static str) -> Pai<'static> {
    Pai {
        ak,
        secret,
        body: Some(json!({"Labels": [{"Key": "system.chipType", "Value": "GPU"}]})),
        ..Pai::new(
            Method::POST,
            "/api/v1/images/img-a/labels",
            "AddImageLabels",
        )
    }
}

#[tokio::test]
async fn get_caller_identity_names_the_main_account() {
    let h = start().await;
    let (status, body) = caller_identity().send(&h).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["AccountId"], DEFAULT_MAIN_ACCOUNT_ID);
    assert_eq!(body["IdentityType"], "RAMUser");
    assert_eq!(
        body["Arn"],
        format!("acs:ram::{DEFAULT_MAIN_ACCOUNT_ID}:user/testAK")
    );
    let user_id = body["UserId"].as_str().unwrap();
    assert_eq!(user_id.len(), 16);
    assert_eq!(body["PrincipalId"], user_id);
    assert!(body["RequestId"].is_string());

    let (status, body) = Pai {
        ak: "otherAK",
        secret: "otherSecret",
        ..caller_identity()
    }
    .send(&h)
    .await;
    assert_eq!(
        (status, body["AccountId"].as_str()),
        (200, Some(OTHER_ACCOUNT))
    );

    let (status, body) = Pai {
        ak: "STS.seeded",
        secret: "stsSecret",
        token: Some("stsToken"),
        ..caller_identity()
    }
    .send(&h)
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["IdentityType"].as_str(), body["AccountId"].as_str()),
        (Some("AssumedRoleUser"), Some(DEFAULT_MAIN_ACCOUNT_ID))
    );

    // Signed like any other call.
    let (status, body) = Pai {
        secret: "wrong",
        ..caller_identity()
    }
    .send(&h)
    .await;
    assert_eq!(
        (status, body["Code"].as_str().unwrap()),
        (400, "SignatureDoesNotMatch")
    );
    let (status, body) = Pai {
        version: "2021-02-04",
        ..caller_identity()
    }
    .send(&h)
    .await;
    assert_eq!(
        (status, body["Code"].as_str().unwrap()),
        (400, "InvalidVersion")
    );
    // Not a PAI call: never throttled, counted under its own name.
    h.set_flow_control(FlowControlSeed::published().with_rate("ListImageLabels", 1))
        .unwrap();
    for _ in 0..3 {
        assert_eq!(caller_identity().send(&h).await.0, 200);
    }
    let c = h.counters().api("GetCallerIdentity");
    assert_eq!((c.ok, c.error, c.throttled), (6, 2, 0));
}

/// Alibaba Cloud's flow control for AIWorkSpace: per main account, region
/// and API, shared by every key of the main account.
#[tokio::test]
async fn flow_control_is_per_main_account_region_and_api() {
    let h = start().await;
    // Off in the test seed: nothing is throttled.
    for _ in 0..30 {
        assert_eq!(add_label("testAK", "testSecret").send(&h).await.0, 200);
    }
    h.set_flow_control(FlowControlSeed::published().with_rate("AddImageLabels", 1))
        .unwrap();
    // Key A spends the main account's one AddImageLabels a second ...
    let (status, body) = add_label("testAK", "testSecret").send(&h).await;
    assert_eq!(status, 200, "{body}");
    // ... so key B of the same main account is throttled on that API,
    let (status, body) = add_label("testAK2", "testSecret2").send(&h).await;
    assert_eq!(
        (status, body["Code"].as_str().unwrap()),
        (400, "Throttling.User"),
        "{body}"
    );
    // but not on another API (ListImageLabels keeps its published 50/s).
    let (status, body) = Pai {
        ak: "testAK2",
        secret: "testSecret2",
        ..list(vec![("ImageId", "img-a")])
    }
    .send(&h)
    .await;
    assert_eq!(status, 200, "{body}");
    // A key of another main account has its own budget.
    let (status, body) = add_label("otherAK", "otherSecret").send(&h).await;
    assert_eq!(status, 200, "{body}");
    // So does another region of the same account (region from the Host).
    let (status, body) = Pai {
        host: Some("aiworkspace.cn-shanghai.aliyuncs.com"),
        ..add_label("testAK2", "testSecret2")
    }
    .send(&h)
    .await;
    assert_eq!(status, 200, "{body}");
    // The default region is cn-hangzhou: naming it shares the spent budget.
    let (status, _) = Pai {
        host: Some("aiworkspace.cn-hangzhou.aliyuncs.com"),
        ..add_label("testAK", "testSecret")
    }
    .send(&h)
    .await;
    assert_eq!(status, 400);
    let c = h.counters().api("AddImageLabels");
    assert_eq!((c.throttled, c.by_code["Throttling.User"]), (2, 2));

    // Turned off at run time: no throttling again.
    h.set_flow_control(FlowControlSeed::off()).unwrap();
    for _ in 0..5 {
        assert_eq!(add_label("testAK2", "testSecret2").send(&h).await.0, 200);
    }
    assert_eq!(h.counters().api("AddImageLabels").throttled, 2);
}

fn list(query: Vec<(&'static str, &'static str)>) -> Pai<'static> {
    Pai {
        query,
        ..Pai::new(Method::GET, "/api/v1/image/labels", "ListImageLabels")
    }
}

#[tokio::test]
async fn access_key_signatures_are_verified() {
    let h = start().await;
    let (status, body) = list(vec![
        ("ImageId", "img-a"),
        ("LabelFilter", "system.chipType=GPU"),
    ])
    .send(&h)
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Labels"][0]["Value"], "GPU");

    let (status, body) = Pai {
        secret: "wrong",
        ..list(vec![("ImageId", "img-a")])
    }
    .send(&h)
    .await;
    assert_eq!(
        (status, body["Code"].as_str().unwrap()),
        (400, "SignatureDoesNotMatch")
    );
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .contains("ACS3-HMAC-SHA256\n"),
        "{body}"
    );

    let (status, body) = Pai {
        ak: "nobody",
        ..list(vec![])
    }
    .send(&h)
    .await;
    assert_eq!(
        (status, body["Code"].as_str().unwrap()),
        (404, "InvalidAccessKeyId.NotFound")
    );

    let stale = Timestamp::now() - SignedDuration::from_mins(16);
    let (status, body) = Pai {
        date: stale,
        ..list(vec![])
    }
    .send(&h)
    .await;
    assert_eq!(
        (status, body["Code"].as_str().unwrap()),
        (400, "InvalidTimeStamp.Expired")
    );
    let future = Timestamp::now() + SignedDuration::from_mins(16);
    let (_, body) = Pai {
        date: future,
        ..list(vec![])
    }
    .send(&h)
    .await;
    assert_eq!(body["Code"], "InvalidTimeStamp.Expired");
    let near = Timestamp::now() - SignedDuration::from_mins(14);
    assert_eq!(
        Pai {
            date: near,
            ..list(vec![])
        }
        .send(&h)
        .await
        .0,
        200
    );

    let replay = list(vec![]);
    assert_eq!(replay.send(&h).await.0, 200);
    let (status, body) = replay.send(&h).await;
    assert_eq!(
        (status, body["Code"].as_str().unwrap()),
        (400, "SignatureNonceUsed")
    );

    let (status, body) = Pai {
        phantom_signed: vec!["x-acs-extra"],
        ..list(vec![])
    }
    .send(&h)
    .await;
    assert_eq!(
        (status, body["Code"].as_str().unwrap()),
        (400, "IncompleteSignature")
    );

    let add = || Pai {
        body: Some(json!({"Labels": [{"Key": "system.dsw.tag", "Value": "v"}]})),
        ..Pai::new(
            Method::POST,
            "/api/v1/images/img-a/labels",
            "AddImageLabels",
        )
    };
    assert_eq!(add().send(&h).await.0, 200);
    let (status, body) = Pai {
        tamper_body: Some(r#"{"Labels":[{"Key":"system.dsw.tag","Value":"evil"}]}"#),
        ..add()
    }
    .send(&h)
    .await;
    assert_eq!(
        (status, body["Code"].as_str().unwrap()),
        (400, "SignatureDoesNotMatch")
    );
    let target = Target::PaiImage {
        image_id: "img-a".into(),
        workspace_id: None,
    };
    assert_eq!(h.labels_of(&target).unwrap()["system.dsw.tag"], "v");

    let (status, body) = Pai {
        action: "AddImageLabels",
        ..list(vec![])
    }
    .send(&h)
    .await;
    assert_eq!(
        (status, body["Code"].as_str().unwrap()),
        (400, "InvalidAction.Mismatch")
    );
}

#[tokio::test]
async fn tricky_paths_and_queries_verify() {
    let h = start().await;
    // Like signing vector A3 (`sign::vectors`): encoded `/`, space and UTF-8 in a path segment; `~ * , +` in a query value.
    let req = Pai {
        query: vec![("Keys", "a~b*c,d é+f")],
        ..Pai::new(
            Method::DELETE,
            "/api/v1/datasets/d-1/versions/v%201%2F%CE%B2/labels",
            "DeleteDatasetVersionLabels",
        )
    };
    let (status, body) = req.send(&h).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        h.labels_of(&Target::PaiDatasetVersion {
            dataset_id: "d-1".into(),
            version: "v 1/β".into()
        })
        .unwrap()
        .is_empty()
    );
    let (status, body) = Pai::new(
        Method::DELETE,
        "/api/v1/images/img-a/labels/system.dsw%2Fos%20x",
        "RemoveImageLabels",
    )
    .send(&h)
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn security_tokens_seeded_and_issued_by_sts() {
    let h = start().await;
    let sts_key = |token: Option<&'static str>| Pai {
        ak: "STS.seeded",
        secret: "stsSecret",
        token,
        ..list(vec![])
    };
    assert_eq!(sts_key(Some("stsToken")).send(&h).await.0, 200);
    assert_eq!(
        sts_key(None).send(&h).await.1["Code"],
        "MissingSecurityToken"
    );
    assert_eq!(
        sts_key(Some("other")).send(&h).await.1["Code"],
        "InvalidSecurityToken.MismatchWithAccessKey"
    );
    let permanent_with_token = Pai {
        token: Some("stsToken"),
        ..list(vec![])
    };
    assert_eq!(
        permanent_with_token.send(&h).await.1["Code"],
        "InvalidSecurityToken.MismatchWithAccessKey"
    );

    let body: Value = http()
        .get(format!("{}/", h.base_url()))
        .query(&[
            ("Action", "AssumeRoleWithOIDC"),
            ("RoleArn", "acs:ram::123:role/op"),
            ("OIDCProviderArn", "acs:ram::123:oidc-provider/ack"),
            ("OIDCToken", "oidc-token"),
            ("RoleSessionName", "op"),
            ("Format", "JSON"),
            ("Version", "2015-04-01"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let creds = &body["Credentials"];
    let (ak, secret, token) = (
        creds["AccessKeyId"].as_str().unwrap(),
        creds["AccessKeySecret"].as_str().unwrap(),
        creds["SecurityToken"].as_str().unwrap(),
    );
    let issued = || Pai {
        ak,
        secret,
        token: Some(token),
        ..list(vec![])
    };
    let (status, body) = issued().send(&h).await;
    assert_eq!(status, 200, "{body}");
    // GetCallerIdentity: the role's account, from its ARN.
    let (status, body) = Pai {
        ak,
        secret,
        token: Some(token),
        ..caller_identity()
    }
    .send(&h)
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["IdentityType"], "AssumedRoleUser");
    assert_eq!(body["AccountId"], "123");
    let role_id = body["RoleId"].as_str().unwrap();
    assert_eq!(body["PrincipalId"], format!("{role_id}:op"));
    assert_eq!(body["Arn"], "acs:ram::123:assumed-role/op/op");
    // The seed caps issued credentials at 2 seconds.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = issued().send(&h).await;
    assert_eq!(
        (status, body["Code"].as_str().unwrap()),
        (400, "InvalidSecurityToken.Expired")
    );
}

struct Ims<'a> {
    method: Method,
    path: String,
    body: Option<Value>,
    ak: &'a str,
    sk: &'a str,
    token: Option<&'a str>,
    project_header: &'a str,
    date: Timestamp,
}

impl<'a> Ims<'a> {
    fn new(method: Method, path: &str) -> Self {
        Ims {
            method,
            path: path.to_string(),
            body: None,
            ak: "hwAK",
            sk: "hwSK",
            token: None,
            project_header: "p1",
            date: Timestamp::now(),
        }
    }

    async fn send(&self, h: &SimHandle) -> (u16, Value) {
        let body = self
            .body
            .as_ref()
            .map(|b| b.to_string())
            .unwrap_or_default();
        let mut headers: Vec<(String, String)> = vec![
            (
                "content-type".into(),
                "application/json;charset=UTF-8".into(),
            ),
            ("host".into(), h.host_port()),
            ("x-project-id".into(), self.project_header.into()),
            ("x-sdk-date".into(), sdk::format_date(self.date)),
        ];
        if let Some(token) = self.token {
            headers.push(("x-security-token".into(), token.into()));
        }
        let payload_hash = sign::sha256_hex(body.as_bytes());
        let parts = RequestParts {
            method: self.method.as_str(),
            path: &self.path,
            query: &[],
            headers: &headers,
            payload_hash: &payload_hash,
        };
        let signed = sdk::sign(
            &parts,
            self.ak,
            self.sk,
            &sdk::default_signed_headers(&headers),
        )
        .unwrap();
        let mut req = http()
            .request(
                self.method.clone(),
                format!("{}{}", h.base_url(), self.path),
            )
            .header("authorization", signed.authorization);
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req.body(body).send().await.unwrap();
        assert!(resp.headers().contains_key("x-request-id"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn ims_signatures_projects_and_tokens() {
    let h = start().await;
    let tags = "/v2/p1/images/ims-1/tags";
    let (status, body) = Ims::new(Method::GET, tags).send(&h).await;
    assert_eq!(
        (status, body),
        (200, json!({"tags": [{"key": "env", "value": "prod"}]}))
    );

    let batch = Ims {
        body: Some(
            json!({"action": "create", "tags": [{"key": "key1", "value": "value1"}, {"key": "key3", "value": ""}]}),
        ),
        ..Ims::new(Method::POST, "/v2/p1/images/ims-1/tags/action")
    };
    assert_eq!(batch.send(&h).await.0, 204);
    let target = Target::ImsImage {
        project_id: "p1".into(),
        image_id: "ims-1".into(),
    };
    assert_eq!(h.labels_of(&target).unwrap().len(), 3);

    let (status, body) = Ims {
        sk: "wrong",
        ..Ims::new(Method::GET, tags)
    }
    .send(&h)
    .await;
    assert_eq!(
        (status, body["error_code"].as_str().unwrap()),
        (401, "APIGW.0301")
    );
    assert!(
        body["error_msg"]
            .as_str()
            .unwrap()
            .starts_with("Incorrect IAM authentication information: ")
    );
    let (status, _) = Ims {
        ak: "nobody",
        ..Ims::new(Method::GET, tags)
    }
    .send(&h)
    .await;
    assert_eq!(status, 401);
    let (status, _) = Ims {
        date: Timestamp::now() - SignedDuration::from_mins(20),
        ..Ims::new(Method::GET, tags)
    }
    .send(&h)
    .await;
    assert_eq!(status, 401);

    // Header and path disagree; and the key is bound to p1.
    let (status, body) = Ims {
        project_header: "p2",
        ..Ims::new(Method::GET, tags)
    }
    .send(&h)
    .await;
    assert_eq!(
        (status, body["error_code"].as_str().unwrap()),
        (403, "APIGW.0302")
    );
    let (status, _) = Ims {
        project_header: "p2",
        ..Ims::new(Method::GET, "/v2/p2/images/ims-1/tags")
    }
    .send(&h)
    .await;
    assert_eq!(status, 403);

    let temp = |token| Ims {
        ak: "hwSTSAK",
        sk: "hwSTSSK",
        token,
        ..Ims::new(Method::GET, tags)
    };
    assert_eq!(temp(Some("hwToken")).send(&h).await.0, 200);
    assert_eq!(temp(None).send(&h).await.0, 401);
    assert_eq!(temp(Some("nope")).send(&h).await.0, 401);

    // Like signing vector B2 (`sign::vectors`): a key with `/` and a space, one encoded path segment.
    h.set_label_out_of_band(&target, "team ml/ops", "x")
        .unwrap();
    let (status, _) = Ims::new(Method::DELETE, "/v2/p1/images/ims-1/tags/team%20ml%2Fops")
        .send(&h)
        .await;
    assert_eq!(status, 204);
    assert!(!h.labels_of(&target).unwrap().contains_key("team ml/ops"));

    let (status, body) = Ims::new(Method::GET, "/v2/p1/images/nope/tags")
        .send(&h)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str().unwrap()),
        (404, "IMG.0027")
    );
    let bad = Ims {
        body: Some(json!({"action": "rename", "tags": []})),
        ..Ims::new(Method::POST, "/v2/p1/images/ims-1/tags/action")
    };
    assert_eq!(bad.send(&h).await.1["error"]["code"], "IMG.0001");

    // The gateway's flow control, per account and API.
    h.set_flow_control(FlowControlSeed::published().with_rate("ListImageTags", 1))
        .unwrap();
    assert_eq!(Ims::new(Method::GET, tags).send(&h).await.0, 200);
    let (status, body) = Ims::new(Method::GET, tags).send(&h).await;
    assert_eq!(
        (status, body["error_code"].as_str().unwrap()),
        (429, "APIGW.0308")
    );
    assert_eq!(h.counters().api("ListImageTags").throttled, 1);
}
