//! Hands out cloud clients for (provider, region, credentials), built from
//! the operator's configuration.

use std::error::Error as _;
use std::time::Duration;

use super::{CloudError, ErrorKind};

/// Installs the process-wide rustls crypto provider (ring) once; reqwest is
/// built without one. A second install, by us or by kube, is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP client for cloud calls. HTTP/1.1 only, as the official SDKs speak
/// it, so the signed `host` header is exactly the one sent.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, CloudError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .http1_only()
        // Signed requests must not be replayed at another host.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("imagelabel/", env!("CARGO_PKG_VERSION")))
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
