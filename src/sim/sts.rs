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
use super::seed::OidcSeed;
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
    if oidc.token != token {
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
