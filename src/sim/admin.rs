//! `/_sim/...`: counters, state, faults, flow control and out-of-band label changes
//! for tests and end-to-end runs. No authentication, so only loopback
//! callers are served: a simulator bound to 0.0.0.0 in a cluster does not
//! let other pods rewrite its state.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::server::ConnInfo;
use super::{FaultConfig, FlowControlSeed, Sim, SimState, UnknownObject};
use crate::provider::Target;

pub fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/counters", get(counters))
        .route("/reset-counters", post(reset_counters))
        .route("/state", get(state))
        .route("/faults", get(get_faults).put(put_faults))
        .route("/flow-control", get(get_flow_control).put(put_flow_control))
        .route(
            "/pai/images/{id}/labels/{key}",
            put(put_image_label).delete(delete_image_label),
        )
        .route(
            "/pai/datasets/{id}/labels/{key}",
            put(put_dataset_label).delete(delete_dataset_label),
        )
        .route(
            "/pai/datasets/{id}/versions/{version}/labels/{key}",
            put(put_version_label).delete(delete_version_label),
        )
        .route(
            "/ims/{project}/images/{id}/tags/{key}",
            put(put_ims_tag).delete(delete_ims_tag),
        )
        .layer(middleware::from_fn(loopback_only))
}

async fn loopback_only(
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    request: Request,
    next: Next,
) -> Response {
    if !conn.peer.ip().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "the /_sim admin endpoints answer loopback callers only"})),
        )
            .into_response();
    }
    next.run(request).await
}

fn sim(state: Arc<SimState>) -> Sim {
    Sim { state }
}

async fn counters(State(state): State<Arc<SimState>>) -> Response {
    Json(sim(state).counters()).into_response()
}

async fn reset_counters(State(state): State<Arc<SimState>>) -> StatusCode {
    sim(state).reset_counters();
    StatusCode::NO_CONTENT
}

async fn state(State(state): State<Arc<SimState>>) -> Response {
    Json(sim(state).state_json()).into_response()
}

async fn get_faults(State(state): State<Arc<SimState>>) -> Response {
    Json(sim(state).faults()).into_response()
}

async fn put_faults(
    State(state): State<Arc<SimState>>,
    Json(faults): Json<FaultConfig>,
) -> Response {
    match sim(state).set_faults(faults) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
    }
}

async fn get_flow_control(State(state): State<Arc<SimState>>) -> Response {
    Json(sim(state).flow_control()).into_response()
}

async fn put_flow_control(
    State(state): State<Arc<SimState>>,
    Json(flow_control): Json<FlowControlSeed>,
) -> Response {
    match sim(state).set_flow_control(flow_control) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
    }
}

#[derive(Deserialize)]
struct LabelValue {
    value: String,
}

fn outcome(result: Result<(), UnknownObject>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::NOT_FOUND, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

fn set(state: Arc<SimState>, target: Target, key: &str, value: &str) -> Response {
    outcome(sim(state).set_label_out_of_band(&target, key, value))
}

fn remove(state: Arc<SimState>, target: Target, key: &str) -> Response {
    outcome(
        sim(state)
            .remove_label_out_of_band(&target, key)
            .map(|_| ()),
    )
}

fn image(id: String) -> Target {
    Target::PaiImage {
        image_id: id,
        workspace_id: None,
    }
}

async fn put_image_label(
    State(s): State<Arc<SimState>>,
    Path((id, key)): Path<(String, String)>,
    Json(v): Json<LabelValue>,
) -> Response {
    set(s, image(id), &key, &v.value)
}

async fn delete_image_label(
    State(s): State<Arc<SimState>>,
    Path((id, key)): Path<(String, String)>,
) -> Response {
    remove(s, image(id), &key)
}

async fn put_dataset_label(
    State(s): State<Arc<SimState>>,
    Path((id, key)): Path<(String, String)>,
    Json(v): Json<LabelValue>,
) -> Response {
    set(s, Target::PaiDataset { dataset_id: id }, &key, &v.value)
}

async fn delete_dataset_label(
    State(s): State<Arc<SimState>>,
    Path((id, key)): Path<(String, String)>,
) -> Response {
    remove(s, Target::PaiDataset { dataset_id: id }, &key)
}

async fn put_version_label(
    State(s): State<Arc<SimState>>,
    Path((id, version, key)): Path<(String, String, String)>,
    Json(v): Json<LabelValue>,
) -> Response {
    set(
        s,
        Target::PaiDatasetVersion {
            dataset_id: id,
            version,
        },
        &key,
        &v.value,
    )
}

async fn delete_version_label(
    State(s): State<Arc<SimState>>,
    Path((id, version, key)): Path<(String, String, String)>,
) -> Response {
    remove(
        s,
        Target::PaiDatasetVersion {
            dataset_id: id,
            version,
        },
        &key,
    )
}

async fn put_ims_tag(
    State(s): State<Arc<SimState>>,
    Path((project_id, image_id, key)): Path<(String, String, String)>,
    Json(v): Json<LabelValue>,
) -> Response {
    set(
        s,
        Target::ImsImage {
            project_id,
            image_id,
        },
        &key,
        &v.value,
    )
}

async fn delete_ims_tag(
    State(s): State<Arc<SimState>>,
    Path((project_id, image_id, key)): Path<(String, String, String)>,
) -> Response {
    remove(
        s,
        Target::ImsImage {
            project_id,
            image_id,
        },
        &key,
    )
}
