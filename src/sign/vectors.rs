//! Signing vectors produced by the official SDKs (provenance in
//! docs/wire.md), checked at each intermediate step so a mismatch points at
//! the piece that is wrong.

use super::*;

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Wire URL query → decoded pairs, as a server would see them.
fn query_of(url: &str) -> Vec<(String, String)> {
    url.split_once('?')
        .map(|(_, q)| decode_query(q))
        .unwrap_or_default()
}

fn path_of(url: &str) -> &str {
    let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = &after_scheme[after_scheme.find('/').unwrap_or(after_scheme.len())..];
    path.split_once('?').map(|(p, _)| p).unwrap_or(path)
}

struct Acs3Case<'a> {
    method: &'a str,
    path: &'a str,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: &'a [u8],
    secret: &'a str,
    canonical_query: &'a str,
    signed_headers: &'a str,
    canonical_request: Option<&'a str>,
    canonical_hash: &'a str,
    signature: &'a str,
    authorization: Option<&'a str>,
}

fn check_acs3(c: Acs3Case<'_>) {
    let payload_hash = sha256_hex(c.body);
    // The vectors carry the hash as a header too; it must agree with the body.
    let sent_hash = c
        .headers
        .iter()
        .find(|(n, _)| n == "x-acs-content-sha256")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(payload_hash, sent_hash);
    assert_eq!(acs3::canonical_query(&c.query), c.canonical_query);
    let signed: Vec<&str> = c.signed_headers.split(';').collect();
    let req = RequestParts {
        method: c.method,
        path: c.path,
        query: &c.query,
        headers: &c.headers,
        payload_hash: &payload_hash,
    };
    let s = acs3::sign(&req, "testAK", c.secret, &signed).unwrap();
    if let Some(cr) = c.canonical_request {
        assert_eq!(s.canonical_request, cr);
    }
    assert_eq!(s.signed_headers, c.signed_headers);
    assert_eq!(sha256_hex(s.canonical_request.as_bytes()), c.canonical_hash);
    assert_eq!(
        s.string_to_sign,
        format!("ACS3-HMAC-SHA256\n{}", c.canonical_hash)
    );
    assert_eq!(s.signature, c.signature);
    let expected_auth = format!(
        "ACS3-HMAC-SHA256 Credential=testAK,SignedHeaders={},Signature={}",
        c.signed_headers, c.signature
    );
    assert_eq!(s.authorization, expected_auth);
    if let Some(a) = c.authorization {
        assert_eq!(s.authorization, a);
    }
    // The verifier side: parse the header back and check it, then tamper.
    let auth = acs3::Authorization::parse(&s.authorization).unwrap();
    assert!(acs3::verify(&req, &auth, c.secret).unwrap());
    assert!(!acs3::verify(&req, &auth, "wrongSecret").unwrap());
    let mut tampered = c.headers.clone();
    for (n, v) in tampered.iter_mut() {
        if n == "x-acs-date" {
            v.push('0');
        }
    }
    let req2 = RequestParts {
        headers: &tampered,
        ..req
    };
    assert!(!acs3::verify(&req2, &auth, c.secret).unwrap());
}

fn wire_acs3_headers(action: &str, body: &[u8], content_type: bool) -> Vec<(String, String)> {
    let mut v = h(&[
        ("host", "aiworkspace.cn-shanghai.aliyuncs.com"),
        ("x-acs-version", "2021-02-04"),
        ("x-acs-action", action),
        ("x-acs-date", "2026-01-02T03:04:05Z"),
        ("x-acs-signature-nonce", "3f0c1a2b4d5e6f708192a3b4c5d6e7f8"),
        ("accept", "application/json"),
    ]);
    if content_type {
        v.push((
            "content-type".into(),
            "application/json; charset=utf-8".into(),
        ));
    }
    v.push(("x-acs-content-sha256".into(), sha256_hex(body)));
    v
}

#[test]
fn wire_acs3_1_list_image_labels() {
    let query = h(&[
        ("ImageId", "image-4c62abc53uor"),
        (
            "LabelFilter",
            "system.framework=XGBoost 1.6.0,system.official=true",
        ),
    ]);
    check_acs3(Acs3Case {
        method: "GET",
        path: "/api/v1/image/labels",
        query,
        headers: wire_acs3_headers("ListImageLabels", b"", false),
        body: b"",
        secret: "testSecret",
        canonical_query: "ImageId=image-4c62abc53uor&LabelFilter=system.framework%3DXGBoost%201.6.0%2Csystem.official%3Dtrue",
        signed_headers: "accept;host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version",
        canonical_request: None,
        canonical_hash: "c9e84f2ec5b5b29a0e7574903e521f6373a72f6aeaaa313181459a15f23b2b63",
        signature: "5ecdca81ca816ef7c2943fe7007880bea919064cca01e60a4e314c35043bbd7f",
        authorization: None,
    });
}

#[test]
fn wire_acs3_2_add_image_labels() {
    let body = br#"{"Labels":[{"Key":"system.chipType","Value":"GPU"}]}"#;
    assert_eq!(
        sha256_hex(body),
        "b0b6b0f1a47232a07817819b5836163744c56d48cab1724578bae3b457c8e1f3"
    );
    check_acs3(Acs3Case {
        method: "POST",
        path: "/api/v1/images/image-4c62abc53uor/labels",
        query: vec![],
        headers: wire_acs3_headers("AddImageLabels", body, true),
        body,
        secret: "testSecret",
        canonical_query: "",
        signed_headers: "accept;content-type;host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version",
        canonical_request: None,
        canonical_hash: "2975adaa9d3f1d86a66e2fd6eff76cf103b219231f01be24cec908619ecb04a1",
        signature: "d2c3a13cef9d4efb8eb8e6581979ad0baad4cab9f880dd6d57ca8ec0370a0ea3",
        authorization: None,
    });
}

#[test]
fn wire_acs3_3_remove_image_label() {
    let path = format!(
        "/api/v1/images/{}/labels/{}",
        encode("image-4c62abc53uor"),
        encode("system.dsw/os x")
    );
    assert_eq!(
        path,
        "/api/v1/images/image-4c62abc53uor/labels/system.dsw%2Fos%20x"
    );
    check_acs3(Acs3Case {
        method: "DELETE",
        path: &path,
        query: vec![],
        headers: wire_acs3_headers("RemoveImageLabels", b"", false),
        body: b"",
        secret: "testSecret",
        canonical_query: "",
        signed_headers: "accept;host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version",
        canonical_request: None,
        canonical_hash: "79782b702a48a8367d54aa5ba208cd091f53b1f7e240c1d1e26c516dbfc160d9",
        signature: "2794a84b5083a710331ebf746a282d46e299d50a8ed6ebf90374a61654b6c086",
        authorization: None,
    });
}

const UA_ALI: &str = "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2";

#[test]
fn vector_a1_list_with_form_encoded_query() {
    let url = "https://aiworkspace.cn-hangzhou.aliyuncs.com/api/v1/image/labels?ImageId=image-abc123&LabelFilter=system.chipType%3DGPU%2Cteam%3Dml+ops&LabelKeys=system.chipType%2Cteam&WorkspaceId=12345";
    let headers = h(&[
        ("host", "aiworkspace.cn-hangzhou.aliyuncs.com"),
        ("x-acs-version", "2021-02-04"),
        ("x-acs-action", "ListImageLabels"),
        ("user-agent", UA_ALI),
        ("x-acs-date", "2024-01-01T00:00:00Z"),
        ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
        ("accept", "application/json"),
        ("x-acs-credentials-provider", "static_ak"),
        (
            "x-acs-content-sha256",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
    ]);
    let cr = "GET
/api/v1/image/labels
ImageId=image-abc123&LabelFilter=system.chipType%3DGPU%2Cteam%3Dml%20ops&LabelKeys=system.chipType%2Cteam&WorkspaceId=12345
accept:application/json
host:aiworkspace.cn-hangzhou.aliyuncs.com
user-agent:AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2
x-acs-action:ListImageLabels
x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
x-acs-credentials-provider:static_ak
x-acs-date:2024-01-01T00:00:00Z
x-acs-signature-nonce:0123456789abcdef0123456789abcdef
x-acs-version:2021-02-04

accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-signature-nonce;x-acs-version
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    check_acs3(Acs3Case {
        method: "GET",
        path: path_of(url),
        query: query_of(url),
        headers,
        body: b"",
        secret: "testSecret",
        canonical_query: "ImageId=image-abc123&LabelFilter=system.chipType%3DGPU%2Cteam%3Dml%20ops&LabelKeys=system.chipType%2Cteam&WorkspaceId=12345",
        signed_headers: "accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-signature-nonce;x-acs-version",
        canonical_request: Some(cr),
        canonical_hash: "bd2d29ec1959903c47380a5428ba09962a2667c056501e170e3ccb87283a778d",
        signature: "4f1d10e37c592c8dd5ce1755f1198a0b995db45a6206f55689f26339b375e7cc",
        authorization: Some(
            "ACS3-HMAC-SHA256 Credential=testAK,SignedHeaders=accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=4f1d10e37c592c8dd5ce1755f1198a0b995db45a6206f55689f26339b375e7cc",
        ),
    });
}

#[test]
fn vector_a2_add_with_sts_and_non_ascii_body() {
    let body =
        r#"{"Labels":[{"Key":"system.chipType","Value":"GPU"},{"Key":"team","Value":"ml ops/α"}]}"#
            .as_bytes();
    assert_eq!(
        sha256_hex(body),
        "519cd022179559acfe9c929306aeb8ca1a5c33723f76961653ac0809789e4f6a"
    );
    let headers = h(&[
        ("host", "aiworkspace.cn-hangzhou.aliyuncs.com"),
        ("x-acs-version", "2021-02-04"),
        ("x-acs-action", "AddImageLabels"),
        ("user-agent", UA_ALI),
        ("x-acs-date", "2024-01-01T00:00:00Z"),
        ("x-acs-signature-nonce", "fedcba9876543210fedcba9876543210"),
        ("accept", "application/json"),
        ("content-type", "application/json; charset=utf-8"),
        ("x-acs-credentials-provider", "static_sts"),
        ("x-acs-accesskey-id", "testAK"),
        ("x-acs-security-token", "testSecurityToken"),
        (
            "x-acs-content-sha256",
            "519cd022179559acfe9c929306aeb8ca1a5c33723f76961653ac0809789e4f6a",
        ),
    ]);
    let cr = "POST
/api/v1/images/image-abc123/labels

accept:application/json
content-type:application/json; charset=utf-8
host:aiworkspace.cn-hangzhou.aliyuncs.com
user-agent:AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2
x-acs-accesskey-id:testAK
x-acs-action:AddImageLabels
x-acs-content-sha256:519cd022179559acfe9c929306aeb8ca1a5c33723f76961653ac0809789e4f6a
x-acs-credentials-provider:static_sts
x-acs-date:2024-01-01T00:00:00Z
x-acs-security-token:testSecurityToken
x-acs-signature-nonce:fedcba9876543210fedcba9876543210
x-acs-version:2021-02-04

accept;content-type;host;user-agent;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version
519cd022179559acfe9c929306aeb8ca1a5c33723f76961653ac0809789e4f6a";
    check_acs3(Acs3Case {
        method: "POST",
        path: "/api/v1/images/image-abc123/labels",
        query: vec![],
        headers,
        body,
        secret: "testSecret",
        canonical_query: "",
        signed_headers: "accept;content-type;host;user-agent;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version",
        canonical_request: Some(cr),
        canonical_hash: "203f9ce484d002102e268ada8d5c2005ee784bea374b7f25c6927a8ecdaec790",
        signature: "e92e6102b7ff51755dc30615aa29372b59d91ba00005e79482e59a6240a042bf",
        authorization: Some(
            "ACS3-HMAC-SHA256 Credential=testAK,SignedHeaders=accept;content-type;host;user-agent;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,Signature=e92e6102b7ff51755dc30615aa29372b59d91ba00005e79482e59a6240a042bf",
        ),
    });
}

#[test]
fn vector_a3_delete_version_labels_tricky_path_and_query() {
    let url = "https://aiworkspace.cn-hangzhou.aliyuncs.com/api/v1/datasets/d-abc123/versions/v%201%2F%CE%B2/labels?Keys=a~b%2Ac%2Cd+%C3%A9%2Bf";
    // Our encoder produces the same path segment from the raw version name.
    assert_eq!(
        format!(
            "/api/v1/datasets/d-abc123/versions/{}/labels",
            encode("v 1/β")
        ),
        path_of(url)
    );
    assert_eq!(query_of(url), h(&[("Keys", "a~b*c,d é+f")]));
    let headers = h(&[
        ("host", "aiworkspace.cn-hangzhou.aliyuncs.com"),
        ("x-acs-version", "2021-02-04"),
        ("x-acs-action", "DeleteDatasetVersionLabels"),
        ("x-acs-date", "2024-01-01T00:00:00Z"),
        ("x-acs-signature-nonce", "00000000000000000000000000000001"),
        (
            "x-acs-content-sha256",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
    ]);
    let cr = "DELETE
/api/v1/datasets/d-abc123/versions/v%201%2F%CE%B2/labels
Keys=a~b%2Ac%2Cd%20%C3%A9%2Bf
host:aiworkspace.cn-hangzhou.aliyuncs.com
x-acs-action:DeleteDatasetVersionLabels
x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
x-acs-date:2024-01-01T00:00:00Z
x-acs-signature-nonce:00000000000000000000000000000001
x-acs-version:2021-02-04

host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    check_acs3(Acs3Case {
        method: "DELETE",
        path: path_of(url),
        query: query_of(url),
        headers,
        body: b"",
        secret: "testSecret",
        canonical_query: "Keys=a~b%2Ac%2Cd%20%C3%A9%2Bf",
        signed_headers: "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version",
        canonical_request: Some(cr),
        canonical_hash: "9ea430e2baac6af7f15843baa30c97972367cdba63b7da65b6654485b0c05e8a",
        signature: "07e111f1bc854ea15d856cf5ba0c41b4f54cc9634bbd838979942aadf7835b70",
        authorization: Some(
            "ACS3-HMAC-SHA256 Credential=testAK,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=07e111f1bc854ea15d856cf5ba0c41b4f54cc9634bbd838979942aadf7835b70",
        ),
    });
}

struct SdkCase<'a> {
    method: &'a str,
    url: &'a str,
    headers: Vec<(String, String)>,
    body: &'a [u8],
    ak: &'a str,
    sk: &'a str,
    canonical_uri: Option<&'a str>,
    canonical_query: &'a str,
    signed_headers: &'a str,
    payload_hash: Option<&'a str>,
    canonical_request: Option<&'a str>,
    canonical_hash: Option<&'a str>,
    signature: &'a str,
}

fn check_sdk(c: SdkCase<'_>) {
    let payload_hash = sha256_hex(c.body);
    if let Some(p) = c.payload_hash {
        assert_eq!(payload_hash, p);
    }
    let path = path_of(c.url);
    let query = query_of(c.url);
    if let Some(u) = c.canonical_uri {
        assert_eq!(sdk::canonical_uri(path), u);
    }
    assert_eq!(sdk::canonical_query(&query), c.canonical_query);
    let req = RequestParts {
        method: c.method,
        path,
        query: &query,
        headers: &c.headers,
        payload_hash: &payload_hash,
    };
    // The SDK signs every header it set (none has `_`), so the default pick
    // must reproduce its list.
    let signed = sdk::default_signed_headers(&c.headers);
    assert_eq!(signed.join(";"), c.signed_headers);
    let s = sdk::sign(&req, c.ak, c.sk, &signed).unwrap();
    if let Some(cr) = c.canonical_request {
        assert_eq!(s.canonical_request, cr);
    }
    let hash = sha256_hex(s.canonical_request.as_bytes());
    if let Some(ch) = c.canonical_hash {
        assert_eq!(hash, ch);
    }
    let date = req.header("x-sdk-date").unwrap();
    assert_eq!(s.string_to_sign, format!("SDK-HMAC-SHA256\n{date}\n{hash}"));
    assert_eq!(s.signature, c.signature);
    assert_eq!(
        s.authorization,
        format!(
            "SDK-HMAC-SHA256 Access={}, SignedHeaders={}, Signature={}",
            c.ak, c.signed_headers, c.signature
        )
    );
    let auth = sdk::Authorization::parse(&s.authorization).unwrap();
    assert!(sdk::verify(&req, &auth, c.sk).unwrap());
    assert!(!sdk::verify(&req, &auth, "wrongSK").unwrap());
    let other_body = sha256_hex(b"x");
    assert!(
        !sdk::verify(
            &RequestParts {
                payload_hash: &other_body,
                ..req
            },
            &auth,
            c.sk
        )
        .unwrap()
    );
}

#[test]
fn wire_sdk_1_batch_create() {
    let body = br#"{"action":"create","tags":[{"key":"key1","value":"value1"},{"key":"key3","value":""}]}"#;
    let headers = h(&[
        ("Content-Type", "application/json;charset=UTF-8"),
        ("X-Project-Id", "fd73a4a14a4a4dfb9771a8475e5198ea"),
        ("X-Sdk-Date", "20260102T030405Z"),
        ("Host", "ims.cn-north-4.myhuaweicloud.com"),
    ]);
    check_sdk(SdkCase {
        method: "POST",
        url: "https://ims.cn-north-4.myhuaweicloud.com/v2/fd73a4a14a4a4dfb9771a8475e5198ea/images/67e17426-359e-49fb-aa12-0bd1756ec240/tags/action",
        headers,
        body,
        ak: "testAK",
        sk: "testSK",
        canonical_uri: Some(
            "/v2/fd73a4a14a4a4dfb9771a8475e5198ea/images/67e17426-359e-49fb-aa12-0bd1756ec240/tags/action/",
        ),
        canonical_query: "",
        signed_headers: "content-type;host;x-project-id;x-sdk-date",
        payload_hash: Some("4ae438461d085cea1b6c1bf7baa135c22e8e5cbb68c0fd035a1383e4ecef1a41"),
        canonical_request: None,
        canonical_hash: None,
        signature: "eaf4b85f8b803d660756eca5e34c7465d6fb8b7db94d515667f684ea78621a64",
    });
}

#[test]
fn wire_sdk_2_list_tags() {
    let headers = h(&[
        ("Content-Type", "application/json;charset=UTF-8"),
        ("X-Project-Id", "fd73a4a14a4a4dfb9771a8475e5198ea"),
        ("X-Sdk-Date", "20260102T030405Z"),
        ("Host", "ims.cn-north-4.myhuaweicloud.com"),
    ]);
    check_sdk(SdkCase {
        method: "GET",
        url: "https://ims.cn-north-4.myhuaweicloud.com/v2/fd73a4a14a4a4dfb9771a8475e5198ea/images/67e17426-359e-49fb-aa12-0bd1756ec240/tags",
        headers,
        body: b"",
        ak: "testAK",
        sk: "testSK",
        canonical_uri: Some(
            "/v2/fd73a4a14a4a4dfb9771a8475e5198ea/images/67e17426-359e-49fb-aa12-0bd1756ec240/tags/",
        ),
        canonical_query: "",
        signed_headers: "content-type;host;x-project-id;x-sdk-date",
        payload_hash: Some(EMPTY_SHA256),
        canonical_request: None,
        canonical_hash: None,
        signature: "1183b41eaaf7f58c503070a1492bd3e2f60823f4ab128dc1f790531c1101a606",
    });
}

const UA_HW: &str = "huaweicloud-usdk-python/3.0";

#[test]
fn vector_b1_batch_create_permanent() {
    let body = br#"{"action": "create", "tags": [{"key": "key1", "value": "value1"}, {"key": "key3", "value": ""}]}"#;
    let headers = h(&[
        ("Content-Type", "application/json;charset=utf-8"),
        ("User-Agent", UA_HW),
        ("X-Project-Id", "0123456789abcdef0123456789abcdef"),
        ("X-Sdk-Date", "20240101T000000Z"),
        ("Host", "ims.cn-north-4.myhuaweicloud.com"),
    ]);
    let cr = "POST
/v2/0123456789abcdef0123456789abcdef/images/67e17426-359e-49fb-aa12-0bd1756ec240/tags/action/

content-type:application/json;charset=utf-8
host:ims.cn-north-4.myhuaweicloud.com
user-agent:huaweicloud-usdk-python/3.0
x-project-id:0123456789abcdef0123456789abcdef
x-sdk-date:20240101T000000Z

content-type;host;user-agent;x-project-id;x-sdk-date
bc7438bab1385f74f17798b4685b63f687a5f34d0dbc17d4aab6ebe495ff1bd8";
    check_sdk(SdkCase {
        method: "POST",
        url: "https://ims.cn-north-4.myhuaweicloud.com/v2/0123456789abcdef0123456789abcdef/images/67e17426-359e-49fb-aa12-0bd1756ec240/tags/action",
        headers,
        body,
        ak: "hwAK",
        sk: "hwSK",
        canonical_uri: Some(
            "/v2/0123456789abcdef0123456789abcdef/images/67e17426-359e-49fb-aa12-0bd1756ec240/tags/action/",
        ),
        canonical_query: "",
        signed_headers: "content-type;host;user-agent;x-project-id;x-sdk-date",
        payload_hash: Some("bc7438bab1385f74f17798b4685b63f687a5f34d0dbc17d4aab6ebe495ff1bd8"),
        canonical_request: Some(cr),
        canonical_hash: Some("604cc874fcab9b580cfc5db3782adfaf2b16f679b7b79b3255f06dbb0027b1d1"),
        signature: "3aff8fc1050efaa13d250ec54499929e3c94ba567d4067c5bce1f12dc346fc9a",
    });
}

#[test]
fn vector_b2_delete_tag_with_slash_temporary_credentials() {
    let url = "https://ims.cn-north-4.myhuaweicloud.com/v2/0123456789abcdef0123456789abcdef/images/67e17426-359e-49fb-aa12-0bd1756ec240/tags/team%20ml%2Fops";
    assert!(url.ends_with(&format!("/tags/{}", encode("team ml/ops"))));
    let headers = h(&[
        ("Content-Type", "application/json"),
        ("User-Agent", UA_HW),
        ("X-Project-Id", "0123456789abcdef0123456789abcdef"),
        ("X-Sdk-Date", "20240101T000000Z"),
        ("X-Security-Token", "hwSecurityToken"),
        ("Host", "ims.cn-north-4.myhuaweicloud.com"),
    ]);
    let cr = "DELETE
/v2/0123456789abcdef0123456789abcdef/images/67e17426-359e-49fb-aa12-0bd1756ec240/tags/team%20ml/ops/

content-type:application/json
host:ims.cn-north-4.myhuaweicloud.com
user-agent:huaweicloud-usdk-python/3.0
x-project-id:0123456789abcdef0123456789abcdef
x-sdk-date:20240101T000000Z
x-security-token:hwSecurityToken

content-type;host;user-agent;x-project-id;x-sdk-date;x-security-token
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    check_sdk(SdkCase {
        method: "DELETE",
        url,
        headers,
        body: b"",
        ak: "hwSTSAK",
        sk: "hwSTSSK",
        canonical_uri: Some(
            "/v2/0123456789abcdef0123456789abcdef/images/67e17426-359e-49fb-aa12-0bd1756ec240/tags/team%20ml/ops/",
        ),
        canonical_query: "",
        signed_headers: "content-type;host;user-agent;x-project-id;x-sdk-date;x-security-token",
        payload_hash: Some(EMPTY_SHA256),
        canonical_request: Some(cr),
        canonical_hash: Some("06fcb4f9bf1bd0f9aa1c159d55b0e43dc5fcd4d74a0238f2938991f261d42016"),
        signature: "4d4a0d509bea958823be1371b025dc10f6e9722ad0b818c6c79188c0be0dc9ea",
    });
}

#[test]
fn vector_b3_list_with_query() {
    let url = "https://ims.cn-north-4.myhuaweicloud.com/v1/cloudimages/tags?__imagetype=private&limit=10&name=my%20image~%2A&page=1";
    let headers = h(&[
        ("Content-Type", "application/json"),
        ("User-Agent", UA_HW),
        ("X-Project-Id", "0123456789abcdef0123456789abcdef"),
        ("X-Sdk-Date", "20240101T000000Z"),
        ("Host", "ims.cn-north-4.myhuaweicloud.com"),
    ]);
    let cr = "GET
/v1/cloudimages/tags/
__imagetype=private&limit=10&name=my%20image~%2A&page=1
content-type:application/json
host:ims.cn-north-4.myhuaweicloud.com
user-agent:huaweicloud-usdk-python/3.0
x-project-id:0123456789abcdef0123456789abcdef
x-sdk-date:20240101T000000Z

content-type;host;user-agent;x-project-id;x-sdk-date
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    // Wire query equals the canonical query for this SDK.
    assert_eq!(
        sdk::canonical_query(&query_of(url)),
        url.split_once('?').unwrap().1
    );
    check_sdk(SdkCase {
        method: "GET",
        url,
        headers,
        body: b"",
        ak: "hwAK",
        sk: "hwSK",
        canonical_uri: Some("/v1/cloudimages/tags/"),
        canonical_query: "__imagetype=private&limit=10&name=my%20image~%2A&page=1",
        signed_headers: "content-type;host;user-agent;x-project-id;x-sdk-date",
        payload_hash: Some(EMPTY_SHA256),
        canonical_request: Some(cr),
        canonical_hash: Some("7cc8ea7bcc3bba74b15459715129eb81dfc500cde7c32c3cb5d613e0de18b610"),
        signature: "fe2e0c482a49c53c2e16ef022aed033b9beaf5e6e42fae0f6f1a19ed9a137ecb",
    });
}
