//! A tiny capture server for wire-format tests of the clients: records every
//! request and answers from a queue of canned responses.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Clone, Debug)]
pub struct Captured {
    pub method: String,
    /// Path as sent (still percent-encoded).
    pub path: String,
    /// Raw query as sent.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn decoded_query(&self) -> Vec<(String, String)> {
        crate::sign::decode_query(&self.query)
    }
}

#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Canned {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Canned {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

#[derive(Clone)]
pub struct TestServer {
    pub base: String,
    pub captured: Arc<Mutex<Vec<Captured>>>,
    queue: Arc<Mutex<VecDeque<Canned>>>,
}

impl TestServer {
    /// Starts a server answering `default` when the queue is empty.
    pub async fn start(default: Canned) -> Self {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let state = (captured.clone(), queue.clone(), default);
        let app = axum::Router::new().fallback(handler).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        TestServer {
            base: format!("http://{addr}"),
            captured,
            queue,
        }
    }

    pub fn push(&self, c: Canned) {
        self.queue.lock().unwrap().push_back(c);
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.captured.lock().unwrap().clone()
    }
}

type State = (
    Arc<Mutex<Vec<Captured>>>,
    Arc<Mutex<VecDeque<Canned>>>,
    Canned,
);

async fn handler(
    axum::extract::State((captured, queue, default)): axum::extract::State<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers = headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    captured.lock().unwrap().push(Captured {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers,
        body: body.to_vec(),
    });
    let c = queue.lock().unwrap().pop_front().unwrap_or(default);
    let mut resp = (StatusCode::from_u16(c.status).unwrap(), c.body).into_response();
    for (n, v) in c.headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}
