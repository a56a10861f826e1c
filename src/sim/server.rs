//! The HTTP front: one listener for PAI (`/api/...`), IMS (`/v2/...`), STS
//! (`/?Action=...`) and the admin endpoints (`/_sim/...`). Each API request
//! goes through the same steps a cloud gateway takes: read the body (size
//! limited), find the API, inject faults, authenticate, rate-limit, serve,
//! and count the outcome.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::SimState;
use super::counters::{CallKind, Outcome};
use super::faults::FaultAction;
use super::wire::{
    AcsError, ApiRequest, ErrorMeta, HwError, MAX_BODY_BYTES, ims_request_id, pai_request_id,
};
use super::{admin, ims, pai, sts, throttle};

/// How long the injected throttling error asks callers to wait.
const INJECTED_RETRY_AFTER_MS: u64 = 500;

/// A TCP connection the simulator can cut from inside a handler: once
/// `kill` is set, every read and write fails, so hyper drops the connection
/// without sending the response it was given.
pub struct KillableStream {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

fn killed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection dropped by fault injection",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::Acquire) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.kill.load(Ordering::Acquire) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::Acquire) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub struct SimListener {
    inner: TcpListener,
}

impl SimListener {
    pub fn new(inner: TcpListener) -> Self {
        SimListener { inner }
    }
}

impl Listener for SimListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return (
                        KillableStream {
                            inner: stream,
                            kill: Arc::new(AtomicBool::new(false)),
                        },
                        peer,
                    );
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The caller's address and the switch that drops its connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    kill: Arc<AtomicBool>,
}

impl ConnInfo {
    pub fn drop_connection(&self) {
        self.kill.store(true, Ordering::Release);
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        ConnInfo {
            peer: *stream.remote_addr(),
            kill: stream.io().kill.clone(),
        }
    }
}

pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .nest("/_sim", admin::router())
        .fallback(entry)
        .with_state(state)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Pai,
    Ims,
    Sts,
}

fn family_of(path: &str) -> Option<Family> {
    if path.starts_with("/api/") {
        Some(Family::Pai)
    } else if path.starts_with("/v2/") {
        Some(Family::Ims)
    } else if path == "/" {
        Some(Family::Sts)
    } else {
        None
    }
}

fn error_response(
    family: Family,
    request_id: &str,
    host: &str,
    status: u16,
    code: &str,
    message: &str,
) -> Response {
    match family {
        Family::Pai | Family::Sts => {
            AcsError::new(status, code, message).into_response(request_id, host)
        }
        Family::Ims => HwError::ims(status, code, message).into_response(request_id),
    }
}

async fn entry(
    State(sim): State<Arc<SimState>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    request: Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let Some(family) = family_of(&path) else {
        sim.counters.record(
            "Unknown",
            CallKind::Other,
            Outcome::Error { throttled: false },
            Some("NotFound"),
            &agent,
        );
        let mut resp = (
            StatusCode::NOT_FOUND,
            r#"{"error":"no simulated API at this path"}"#,
        )
            .into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return resp;
    };
    let request_id = if family == Family::Ims {
        ims_request_id()
    } else {
        pai_request_id()
    };
    // HTTP/2 carries the host in the URI authority; signatures cover it as `host`.
    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(header::HOST, authority);
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();

    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let (code, msg) = match family {
                Family::Ims => ("APIGW.0201", "Request entity too large"),
                _ => (
                    "RequestEntityTooLarge",
                    "The request body is larger than 1 MiB.",
                ),
            };
            sim.counters.record(
                "Unknown",
                CallKind::Other,
                Outcome::Error { throttled: false },
                Some(code),
                &agent,
            );
            return error_response(family, &request_id, &host, 413, code, msg);
        }
    };
    let req = ApiRequest::new(
        parts.method,
        path,
        parts.uri.query().unwrap_or_default().to_string(),
        parts.headers,
        body,
        request_id,
    );

    let (api, kind, resp) = match family {
        Family::Sts => {
            let (api, resp) = sts::handle(
                &sim.auth,
                sim.oidc.as_ref(),
                sim.oidc_account.as_deref(),
                &req,
            );
            let resp = resp.unwrap_or_else(|e| e.into_response(&req.request_id, &host));
            (api, CallKind::Other, resp)
        }
        Family::Pai => match pai::route(&req) {
            Err(e) => (
                "Unknown",
                CallKind::Other,
                e.into_response(&req.request_id, &host),
            ),
            Ok(call) => {
                let resp = serve_api(&sim, &conn, &req, ApiCall::Pai(&call)).await;
                match resp {
                    Some(resp) => (
                        call.api_name(),
                        call.kind(),
                        resp.unwrap_or_else(|e| e.into_pai(&req.request_id, &host)),
                    ),
                    None => return dropped(&sim, call.api_name(), call.kind(), &agent),
                }
            }
        },
        Family::Ims => match ims::route(&req) {
            Err(e) => ("Unknown", CallKind::Other, e.into_response(&req.request_id)),
            Ok(call) => {
                let resp = serve_api(&sim, &conn, &req, ApiCall::Ims(&call)).await;
                match resp {
                    Some(resp) => (
                        call.api_name(),
                        call.kind(),
                        resp.unwrap_or_else(|e| e.into_ims(&req.request_id)),
                    ),
                    None => return dropped(&sim, call.api_name(), call.kind(), &agent),
                }
            }
        },
    };
    if kind == CallKind::Write {
        sim.counters.record_writer(&agent);
    }
    let outcome = match resp.extensions().get::<ErrorMeta>() {
        Some(meta) => {
            sim.counters.record(
                api,
                kind,
                Outcome::Error {
                    throttled: meta.throttled,
                },
                Some(&meta.code),
                &agent,
            );
            return resp;
        }
        None => Outcome::Ok,
    };
    sim.counters.record(api, kind, outcome, None, &agent);
    resp
}

fn dropped(sim: &SimState, api: &str, kind: CallKind, agent: &str) -> Response {
    if kind == CallKind::Write {
        sim.counters.record_writer(agent);
    }
    sim.counters
        .record(api, kind, Outcome::Dropped, None, agent);
    // Never reaches the caller: the connection is already marked dead.
    Body::empty().into_response()
}

enum ApiCall<'a> {
    Pai(&'a pai::PaiCall),
    Ims(&'a ims::ImsCall),
}

/// An error in either family's shape, built late so the fault and
/// throttling paths are shared.
enum Failure {
    Acs(AcsError),
    Hw(HwError),
}

impl Failure {
    fn into_pai(self, request_id: &str, host: &str) -> Response {
        match self {
            Failure::Acs(e) => e.into_response(request_id, host),
            Failure::Hw(e) => e.into_response(request_id),
        }
    }

    fn into_ims(self, request_id: &str) -> Response {
        match self {
            Failure::Hw(e) => e.into_response(request_id),
            Failure::Acs(e) => e.into_response(request_id, ""),
        }
    }
}

/// Faults, authentication, flow control and the handler. `None` means the connection
/// was dropped.
async fn serve_api(
    sim: &SimState,
    conn: &ConnInfo,
    req: &ApiRequest,
    call: ApiCall<'_>,
) -> Option<Result<Response, Failure>> {
    let fault = sim.faults.decide();
    if !fault.latency.is_zero() {
        tokio::time::sleep(fault.latency).await;
    }
    let is_pai = matches!(call, ApiCall::Pai(_));
    match fault.action {
        FaultAction::None => {}
        FaultAction::Drop => {
            conn.drop_connection();
            return None;
        }
        FaultAction::ServerError(status) => {
            return Some(Err(if is_pai {
                Failure::Acs(AcsError::server_error(status))
            } else {
                Failure::Hw(HwError::server_error(status))
            }));
        }
        FaultAction::Throttle => {
            return Some(Err(if is_pai {
                Failure::Acs(AcsError::throttled(INJECTED_RETRY_AFTER_MS))
            } else {
                Failure::Hw(HwError::throttled())
            }));
        }
    }
    Some(match call {
        ApiCall::Pai(call) => serve_pai(sim, req, call).map_err(Failure::Acs),
        ApiCall::Ims(call) => serve_ims(sim, req, call).map_err(Failure::Hw),
    })
}

fn serve_pai(sim: &SimState, req: &ApiRequest, call: &pai::PaiCall) -> Result<Response, AcsError> {
    let principal = sim.auth.verify_pai(req)?;
    let region = throttle::region_of_host(
        req.header("host").unwrap_or_default(),
        throttle::DEFAULT_PAI_REGION,
    );
    sim.flow_control
        .check(principal.account(), region, call.api_name())
        .map_err(|wait| AcsError::throttled(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)))?;
    pai::handle(&sim.store, call, req)
}

fn serve_ims(sim: &SimState, req: &ApiRequest, call: &ims::ImsCall) -> Result<Response, HwError> {
    let principal = sim.auth.verify_ims(req)?;
    let forbidden = |why: String| {
        HwError::gateway(
            403,
            "APIGW.0302",
            format!("The IAM user is not authorized to access the API: {why}"),
        )
    };
    if let Some(header_project) = req.header("x-project-id")
        && header_project != call.project_id
    {
        return Err(forbidden(format!(
            "project {} in the path differs from X-Project-Id {header_project}",
            call.project_id
        )));
    }
    if let Some(bound) = &principal.project_id
        && bound != &call.project_id
    {
        return Err(forbidden(format!(
            "the key belongs to project {bound}, not {}",
            call.project_id
        )));
    }
    let region = throttle::region_of_host(
        req.header("host").unwrap_or_default(),
        throttle::DEFAULT_IMS_REGION,
    );
    sim.flow_control
        .check(
            &format!("hw:{}", principal.account),
            region,
            call.api_name(),
        )
        .map_err(|_| HwError::throttled())?;
    ims::handle(&sim.store, call, req)
}
