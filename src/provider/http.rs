//! HTTP plumbing shared by every cloud call: the client (HTTP/1.1, no
//! redirects), where calls go ([`Endpoint`]), and transport failures as
//! [`CloudError`]s that never quote a URL.

use std::error::Error as _;
use std::time::Duration;

use super::{CloudError, ErrorKind};

/// Installs the process-wide rustls crypto provider (ring) once; reqwest is
/// built without one. A second install, by us or by kube, is harmless.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `imagelabel/<version>`, and the caller's identity when there is one.
pub(crate) fn user_agent(client_id: Option<&str>) -> String {
    let base = concat!("imagelabel/", env!("CARGO_PKG_VERSION"));
    match client_id {
        Some(id) => format!("{base} ({id})"),
        None => base.to_string(),
    }
}

/// [`http_client_as`] with the plain User-Agent.
#[cfg(test)]
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, CloudError> {
    http_client_as(timeout, &user_agent(None))
}

/// An HTTP client for cloud calls, sending `agent` as User-Agent. HTTP/1.1
/// only, as the official SDKs speak it, so the signed `host` header is
/// exactly the one sent.
pub(crate) fn http_client_as(
    timeout: Duration,
    agent: &str,
) -> Result<reqwest::Client, CloudError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .http1_only()
        // Signed requests must not be replayed at another host.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(agent)
        .build()
        .map_err(|e| {
            CloudError::new(
                ErrorKind::Network,
                "client",
                format!("building HTTP client: {}", describe(&e)),
            )
        })
}

/// Text of a reqwest error and its causes, without the URL (which may hold
/// query parameters such as an OIDC token).
fn describe(e: &reqwest::Error) -> String {
    // reqwest's own Display names the URL, so the top level is rebuilt from
    // the error's kind; the causes (hyper, io) carry no URL.
    let mut out = String::from(if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else if e.is_redirect() {
        "redirect refused"
    } else if e.is_request() {
        "sending the request failed"
    } else {
        "HTTP error"
    });
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A transport failure (no usable HTTP answer) as a retryable network error.
pub(crate) fn transport_error(api: &'static str, e: &reqwest::Error) -> CloudError {
    CloudError::new(ErrorKind::Network, api, describe(e))
}

/// Where a client sends its calls: an origin, an optional path prefix, and
/// the `host` header value that is signed and sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://authority`, no trailing `/`.
    pub origin: String,
    /// Path prefix of the base URL (empty, or starting with `/` and without a trailing `/`).
    pub prefix: String,
    /// `host[:port]` as sent in the `host` header.
    pub host: String,
}

impl Endpoint {
    /// The HTTPS endpoint of a cloud host name.
    pub fn https(host: &str) -> Self {
        Endpoint {
            origin: format!("https://{host}"),
            prefix: String::new(),
            host: host.to_string(),
        }
    }

    /// An operator-supplied base URL (`http://127.0.0.1:8080`,
    /// `https://aiworkspace-vpc.cn-hangzhou.aliyuncs.com`). Query and
    /// fragment are not allowed; a path is kept as a prefix.
    pub fn parse(base: &str) -> Result<Self, String> {
        let url =
            reqwest::Url::parse(base.trim()).map_err(|e| format!("invalid endpoint URL: {e}"))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err("endpoint URL must be http or https".into());
        }
        if url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err("endpoint URL must not carry a query, fragment or user info".into());
        }
        let host_name = url.host_str().ok_or("endpoint URL has no host")?;
        let host = match url.port() {
            Some(p) => format!("{host_name}:{p}"),
            None => host_name.to_string(),
        };
        Ok(Endpoint {
            origin: format!("{}://{host}", url.scheme()),
            prefix: url.path().trim_end_matches('/').to_string(),
            host,
        })
    }

    /// [`Endpoint::url`] as it will be sent, refused when URL parsing would
    /// change the signed path or query (`.`/`..` segments, `%2e%2e`, a `?`
    /// or `#` in an ID): the request must reach exactly the object signed.
    pub(crate) fn checked_url(
        &self,
        api: &'static str,
        path: &str,
        query: &str,
    ) -> Result<reqwest::Url, CloudError> {
        let text = self.url(path, query);
        let signed_path = format!("{}{path}", self.prefix);
        let url = reqwest::Url::parse(&text)
            .map_err(|e| CloudError::new(ErrorKind::Invalid, api, format!("request URL: {e}")))?;
        if url.path() != signed_path || url.query().unwrap_or("") != query {
            return Err(CloudError::new(
                ErrorKind::Invalid,
                api,
                format!(
                    "{api}: the request path {signed_path:?} would be sent as {:?}; refused, \
                     so no request reaches another object than the one signed",
                    url.path()
                ),
            ));
        }
        Ok(url)
    }

    /// The URL of an already-encoded `path` and wire `query` (may be empty).
    pub fn url(&self, path: &str, query: &str) -> String {
        if query.is_empty() {
            format!("{}{}{path}", self.origin, self.prefix)
        } else {
            format!("{}{}{path}?{query}", self.origin, self.prefix)
        }
    }
}
