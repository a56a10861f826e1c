//! `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;

use super::context::CloudAccess;
use super::exposition;
use super::metrics::Metrics;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    clouds: Arc<dyn CloudAccess>,
}

async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    // The limiter keeps its own running total; publish the increase.
    let total = s.clouds.rate_limiter_wait_seconds();
    let seen = s.metrics.rate_limiter_wait.get();
    if total > seen {
        s.metrics.rate_limiter_wait.inc_by(total - seen);
    }
    let sent = s.clouds.cloud_requests();
    let counted = s.metrics.cloud_requests.get();
    if sent > counted {
        s.metrics.cloud_requests.inc_by(sent - counted);
    }
    s.metrics.record_budgets(&s.clouds.budget_stats());
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    let text = s.metrics.encode();
    if exposition::wants_openmetrics(accept) {
        ([(CONTENT_TYPE, exposition::OPENMETRICS)], text)
    } else {
        (
            [(CONTENT_TYPE, exposition::TEXT_004)],
            exposition::to_text_004(&text),
        )
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

/// Binds and serves in the background; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    clouds: Arc<dyn CloudAccess>,
) -> anyhow::Result<SocketAddr> {
    let app = Router::new()
        .route("/metrics", get(self::metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            metrics,
            ready,
            clouds,
        });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}
