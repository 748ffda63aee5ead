//! Load-benchmark baseline: hyper alone answering `GET /health` with a fixed
//! JSON body — the ceiling for `GET /health` of the real server.
//!
//! Run with `baseline_static 127.0.0.1:5101`. With `BASELINE_HEADERS=server`
//! it also sends the response headers the real server adds to every answer
//! (request id, security headers), to tell their cost on the wire (and in
//! the load generator) from the server's own work.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = br#"{"status":"ok"}"#;

/// The headers `meetinity_auth::http::Api` adds to every response, with a
/// request id of the same length.
const SERVER_HEADERS: &[(&str, &str)] = &[
    ("x-request-id", "6f1c8a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

async fn handle(extra: bool, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = if req.uri().path() == "/health" {
        (StatusCode::OK, Bytes::from_static(BODY))
    } else {
        (StatusCode::NOT_FOUND, Bytes::from_static(b"{}"))
    };
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if extra {
        for (name, value) in SERVER_HEADERS {
            h.insert(*name, HeaderValue::from_static(value));
        }
    }
    Ok(res)
}

#[tokio::main]
async fn main() -> ExitCode {
    let addr: SocketAddr = match std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5101".into())
        .parse()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("baseline_static: bad address: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("baseline_static: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let extra = std::env::var("BASELINE_HEADERS").is_ok_and(|v| v == "server");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(extra, req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
