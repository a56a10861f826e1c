//! STS (2015-04-01, RPC style). `AssumeRoleWithOIDC` (unsigned) exchanges
//! the seeded OIDC token for temporary PAI keys that the simulator then
//! accepts with their security token; they belong to the main account in
//! the role's ARN. `GetCallerIdentity` (signed with ACS3-HMAC-SHA256 by an
//! AccessKey or an STS key, as the official `alibabacloud_sts20150401`
//! sends it: `POST /`, `x-acs-action: GetCallerIdentity`,
//! `x-acs-version: 2015-04-01`, empty body) answers who signed:
//! `{RequestId, AccountId, UserId, Arn, IdentityType, PrincipalId}` (+
//! `RoleId` for a role) as
//! <https://help.aliyun.com/zh/ram/developer-reference/api-sts-2015-04-01-getcalleridentity>
//! documents; `IdentityType` `RAMUser` (Arn `acs:ram::<account>:user/<name>`,
//! the simulator names the user after its AccessKeyId) or `AssumedRoleUser`
//! (Arn `acs:ram::<account>:assumed-role/<role>/<session>`). A bearer token
//! gets 400 `IncompleteSignature` (the simulator's choice: STS takes
//! AccessKey signatures). STS calls are never throttled. Error codes follow Alibaba Cloud's STS error table; the
//! 404 `EntityNotExist.Role` for an unknown role ARN and 400
//! `InvalidParameter.OIDCToken` for a token of the wrong length are the
//! simulator's choice. Parameter limits: the STS SDK's `AssumeRoleWithOIDCRequest`
//! (<https://aliyunsdk-pages.alicdn.com/apidocs/Sts/2015-04-01/java-async-tea/latest/com/aliyun/sdk/service/sts20150401/models/AssumeRoleWithOIDCRequest.Builder.html>):
//! DurationSeconds 900 to the role's MaxSessionDuration (at most 43,200),
//! default 3600; OIDCToken 4–20,000 characters; RoleSessionName 2–64 of
//! letters, digits and `. @ - _`.

use axum::response::Response;
use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::json;

use super::auth::{Auth, KeyIdentity, PaiPrincipal, numeric_id};
use super::seed::{OidcIssuerSeed, OidcSeed};
use super::wire::{AcsError, ApiRequest, acs_ok};

pub const DEFAULT_DURATION_SECONDS: u64 = 3600;
pub const MIN_DURATION_SECONDS: u64 = 900;
pub const MAX_DURATION_SECONDS: u64 = 43_200;
pub const OIDC_TOKEN_CHARS: std::ops::RangeInclusive<usize> = 4..=20_000;

fn random(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// The request's parameters: the query, or a form body for POST.
fn params(req: &ApiRequest) -> Vec<(String, String)> {
    let mut params = req.query.clone();
    if req.method == axum::http::Method::POST {
        params.extend(
            form_urlencoded::parse(&req.body).map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }
    params
}

fn valid_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".@-_".contains(c))
}

/// The action a request asks for: the `Action` parameter (RPC signature
/// v1 and anonymous calls) or the `x-acs-action` header (ACS3).
pub fn action(req: &ApiRequest) -> Option<String> {
    params(req)
        .into_iter()
        .find(|(k, v)| k == "Action" && !v.is_empty())
        .map(|(_, v)| v)
        .or_else(|| req.header("x-acs-action").map(str::to_string))
}

/// Serves one STS request; the first value names the API for the counters.
pub fn handle(
    auth: &Auth,
    oidc: Option<&OidcSeed>,
    oidc_account: Option<&str>,
    req: &ApiRequest,
) -> (&'static str, Result<Response, AcsError>) {
    match action(req).as_deref() {
        Some("GetCallerIdentity") => ("GetCallerIdentity", caller_identity(auth, req)),
        Some("AssumeRoleWithOIDC") => (
            "AssumeRoleWithOIDC",
            assume_role_with_oidc(auth, oidc, oidc_account, req),
        ),
        other => (
            "AssumeRoleWithOIDC",
            Err(AcsError::new(
                404,
                "InvalidAction.NotFound",
                format!(
                    "Specified api {other:?} is not found; the simulator's STS answers AssumeRoleWithOIDC and GetCallerIdentity."
                ),
            )),
        ),
    }
}

fn check_version(req: &ApiRequest) -> Result<(), AcsError> {
    let params = params(req);
    let version = params
        .iter()
        .find(|(k, v)| k == "Version" && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .or_else(|| req.header("x-acs-version"));
    match version {
        Some(v) if v != "2015-04-01" => Err(AcsError::new(
            400,
            "InvalidVersion",
            format!("Specified parameter Version {v:?} is not valid."),
        )),
        _ => Ok(()),
    }
}

fn caller_identity(auth: &Auth, req: &ApiRequest) -> Result<Response, AcsError> {
    check_version(req)?;
    let principal = auth.verify_pai(req)?;
    let PaiPrincipal::AccessKey {
        access_key_id,
        account,
        identity,
    } = principal
    else {
        return Err(AcsError::new(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards: STS takes AccessKey signatures, not bearer tokens.",
        ));
    };
    let body = match identity {
        KeyIdentity::RamUser => {
            let user_id = numeric_id(&access_key_id);
            json!({
                "IdentityType": "RAMUser",
                "AccountId": account,
                "UserId": user_id,
                "PrincipalId": user_id,
                "Arn": format!("acs:ram::{account}:user/{access_key_id}"),
            })
        }
        KeyIdentity::AssumedRole {
            role,
            role_id,
            session,
        } => json!({
            "IdentityType": "AssumedRoleUser",
            "AccountId": account,
            "UserId": format!("{role_id}:{session}"),
            "PrincipalId": format!("{role_id}:{session}"),
            "RoleId": role_id,
            "Arn": format!("acs:ram::{account}:assumed-role/{role}/{session}"),
        }),
    };
    Ok(acs_ok(&req.request_id, body))
}

fn assume_role_with_oidc(
    auth: &Auth,
    oidc: Option<&OidcSeed>,
    oidc_account: Option<&str>,
    req: &ApiRequest,
) -> Result<Response, AcsError> {
    let params = params(req);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    if let Some(version) = get("Version")
        && version != "2015-04-01"
    {
        return Err(AcsError::new(
            400,
            "InvalidVersion",
            format!("Specified parameter Version {version:?} is not valid."),
        ));
    }
    let role_arn = get("RoleArn").ok_or_else(|| AcsError::missing("RoleArn"))?;
    let provider_arn =
        get("OIDCProviderArn").ok_or_else(|| AcsError::missing("OIDCProviderArn"))?;
    let token = get("OIDCToken").ok_or_else(|| {
        AcsError::new(
            401,
            "AuthenticationFail.OIDCToken.Invalid",
            "The OIDCToken can not empty.",
        )
    })?;
    if !OIDC_TOKEN_CHARS.contains(&token.chars().count()) {
        return Err(AcsError::new(
            400,
            "InvalidParameter.OIDCToken",
            "The parameter OIDCToken must be 4 to 20000 characters.",
        ));
    }
    let session = get("RoleSessionName").ok_or_else(|| AcsError::missing("RoleSessionName"))?;
    if !valid_session_name(session) {
        return Err(AcsError::new(
            400,
            "InvalidParameter.RoleSessionName",
            "The parameter RoleSessionName is wrongly formed.",
        ));
    }
    let duration = match get("DurationSeconds") {
        None => DEFAULT_DURATION_SECONDS,
        Some(raw) => match raw.parse::<u64>() {
            Ok(d) if (MIN_DURATION_SECONDS..=MAX_DURATION_SECONDS).contains(&d) => d,
            _ => {
                return Err(AcsError::new(
                    400,
                    "InvalidParameter.DurationSeconds",
                    format!(
                        "The Min/Max value of DurationSeconds is {MIN_DURATION_SECONDS}/{MAX_DURATION_SECONDS} seconds, got {raw:?}."
                    ),
                ));
            }
        },
    };
    let oidc = oidc
        .filter(|o| o.provider_arn == provider_arn)
        .ok_or_else(|| {
            AcsError::new(
                401,
                "AuthenticationFail.NoPermission",
                "No such OIDC Provider registered.",
            )
        })?;
    if oidc.role_arn != role_arn {
        return Err(AcsError::new(
            404,
            "EntityNotExist.Role",
            format!("The role not exists: {role_arn}."),
        ));
    }
    let accepted = match &oidc.issuer {
        Some(issuer) => verify_service_account_token(issuer, token).is_ok(),
        None => oidc.token == token,
    };
    if !accepted {
        return Err(AcsError::new(
            401,
            "AuthenticationFail.OIDCToken.Invalid",
            "The Jwt content is invalid that cannot be recognized.",
        ));
    }

    let lifetime = oidc
        .expiry_seconds
        .map_or(duration, |cap| cap.min(duration));
    let lifetime = i64::try_from(lifetime).unwrap_or(i64::MAX);
    let expires = Timestamp::now()
        .checked_add(SignedDuration::from_secs(lifetime))
        .unwrap_or(Timestamp::MAX);
    let access_key_id = oidc
        .issued_access_key_id
        .clone()
        .unwrap_or_else(|| format!("STS.{}", random(24)));
    let secret = oidc
        .issued_access_key_secret
        .clone()
        .unwrap_or_else(|| random(40));
    let security_token = format!("CAIS{}", random(96));
    let account = oidc_account.unwrap_or_default();
    let role = role_arn.rsplit('/').next().unwrap_or_default();
    let role_id = numeric_id(role_arn);
    auth.issue_pai_key(
        &access_key_id,
        &secret,
        &security_token,
        expires,
        account,
        KeyIdentity::AssumedRole {
            role: role.to_string(),
            role_id: role_id.clone(),
            session: session.to_string(),
        },
    );

    Ok(acs_ok(
        &req.request_id,
        json!({
            "Credentials": {
                "AccessKeyId": access_key_id,
                "AccessKeySecret": secret,
                "SecurityToken": security_token,
                // Whole seconds, as STS sends them.
                "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            },
            "AssumedRoleUser": {
                "Arn": format!("acs:ram::{account}:assumed-role/{role}/{session}"),
                "AssumedRoleId": format!("{role_id}:{session}"),
            },
            "OIDCTokenInfo": {"Issuer": "https://oidc-ack.sim.aliyuncs.com", "Subject": "system:serviceaccount:sim"},
        }),
    ))
}

/// Checks a Kubernetes ServiceAccount token: an ES256 JWT signed by the
/// issuer's key, for its audience and subject, not expired. The error says
/// which check failed, for the simulator's tests.
pub(crate) fn verify_service_account_token(
    issuer: &OidcIssuerSeed,
    token: &str,
) -> Result<(), &'static str> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err("not a JWT");
    };
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| "bad base64url");
    let header: serde_json::Value =
        serde_json::from_slice(&decode(header)?).map_err(|_| "bad header")?;
    if header["alg"] != "ES256" {
        return Err("not ES256");
    }
    let der: String = issuer
        .public_key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(der).map_err(|_| "bad public key")?;
    // A P-256 SubjectPublicKeyInfo ends with the 65-byte uncompressed point.
    let point = der
        .len()
        .checked_sub(65)
        .map(|start| &der[start..])
        .filter(|p| p[0] == 4)
        .ok_or("not a P-256 key")?;
    let signed = &token[..header_and_payload_len(token)];
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(signed.as_bytes(), &decode(signature)?)
        .map_err(|_| "bad signature")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&decode(payload)?).map_err(|_| "bad claims")?;
    if claims["iss"] != issuer.issuer.as_str() {
        return Err("wrong issuer");
    }
    if claims["sub"] != issuer.subject.as_str() {
        return Err("wrong subject");
    }
    let audience_ok = match &claims["aud"] {
        serde_json::Value::String(a) => *a == issuer.audience,
        serde_json::Value::Array(a) => a.iter().any(|x| *x == issuer.audience.as_str()),
        _ => false,
    };
    if !audience_ok {
        return Err("wrong audience");
    }
    let now = Timestamp::now().as_second();
    if claims["exp"].as_i64().is_none_or(|exp| exp <= now) {
        return Err("expired");
    }
    if claims["nbf"].as_i64().is_some_and(|nbf| nbf > now + 60) {
        return Err("not yet valid");
    }
    Ok(())
}

fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}

#[cfg(test)]
mod service_account_token_tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    use super::{OidcIssuerSeed, Timestamp, verify_service_account_token};

    /// DER prefix of a P-256 SubjectPublicKeyInfo, before the point.
    const SPKI_P256: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";

    fn key() -> (EcdsaKeyPair, OidcIssuerSeed) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let mut der = hex::decode(SPKI_P256).unwrap();
        der.extend_from_slice(pair.public_key().as_ref());
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        );
        let issuer = OidcIssuerSeed {
            issuer: "https://kubernetes.default.svc.cluster.local".into(),
            public_key_pem: pem,
            audience: "sts.aliyuncs.com".into(),
            subject: "system:serviceaccount:ns:sa".into(),
        };
        (pair, issuer)
    }

    fn token(pair: &EcdsaKeyPair, claims: serde_json::Value) -> String {
        let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"k"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{head}.{body}");
        let sig = pair.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    #[test]
    fn accepts_the_issuers_tokens_for_its_audience_and_subject_only() {
        let (pair, issuer) = key();
        let exp = Timestamp::now().as_second() + 600;
        let good = serde_json::json!({
            "iss": issuer.issuer, "sub": issuer.subject,
            "aud": [issuer.audience], "exp": exp,
        });
        assert_eq!(
            verify_service_account_token(&issuer, &token(&pair, good.clone())),
            Ok(())
        );

        let mut other = good.clone();
        other["sub"] = "system:serviceaccount:ns:other".into();
        assert_eq!(
            verify_service_account_token(&issuer, &token(&pair, other)),
            Err("wrong subject")
        );
        let mut other = good.clone();
        other["aud"] = serde_json::json!(["https://kubernetes.default.svc"]);
        assert_eq!(
            verify_service_account_token(&issuer, &token(&pair, other)),
            Err("wrong audience")
        );
        let mut other = good.clone();
        other["exp"] = (exp - 1200).into();
        assert_eq!(
            verify_service_account_token(&issuer, &token(&pair, other)),
            Err("expired")
        );

        let (stranger, _) = key();
        assert_eq!(
            verify_service_account_token(&issuer, &token(&stranger, good.clone())),
            Err("bad signature")
        );
        let t = token(&pair, good);
        let tampered = t.replacen('.', ".e", 1);
        assert!(verify_service_account_token(&issuer, &tampered).is_err());
        assert_eq!(
            verify_service_account_token(&issuer, "opaque-token"),
            Err("not a JWT")
        );
    }
}
