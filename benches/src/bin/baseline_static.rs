//! Load-benchmark baseline: hyper alone answering `GET /health` with a fixed
//! JSON body — the ceiling for `GET /health` of the real server.
//!
//! Run with `baseline_static 127.0.0.1:5101`.

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

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = if req.uri().path() == "/health" {
        (StatusCode::OK, Bytes::from_static(BODY))
    } else {
        (StatusCode::NOT_FOUND, Bytes::from_static(b"{}"))
    };
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
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
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}
