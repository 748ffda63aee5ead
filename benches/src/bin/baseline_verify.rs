//! Load-benchmark baseline: hyper alone verifying an HS256 JWT sent as
//! `{"token": "..."}` with `jsonwebtoken` (signature, `iss`, `aud`, `exp`)
//! and answering with the same fields as `POST /auth/verify` — the ceiling
//! for token verification over HTTP.
//!
//! Run with `JWT_SECRET=... JWT_ISSUER=... JWT_AUDIENCE=... baseline_verify 127.0.0.1:5102`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

#[derive(Deserialize)]
struct Body {
    token: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    sid: String,
    exp: i64,
    email: String,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Serialize)]
struct Answer<'a> {
    valid: bool,
    sub: &'a str,
    exp: i64,
    sid: &'a str,
    email: &'a str,
    roles: &'a [String],
}

struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}

async fn handle(
    v: Arc<Verifier>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/health" {
        return Ok(reply(StatusCode::OK, br#"{"status":"ok"}"#.to_vec()));
    }
    let bad = || reply(StatusCode::UNAUTHORIZED, br#"{"valid":false}"#.to_vec());
    let Ok(bytes) = Limited::new(req.into_body(), 1 << 20).collect().await else {
        return Ok(reply(StatusCode::BAD_REQUEST, b"{}".to_vec()));
    };
    let Ok(body) = serde_json::from_slice::<Body>(&bytes.to_bytes()) else {
        return Ok(reply(StatusCode::BAD_REQUEST, b"{}".to_vec()));
    };
    let Ok(data) = jsonwebtoken::decode::<Claims>(&body.token, &v.key, &v.validation) else {
        return Ok(bad());
    };
    let c = data.claims;
    let answer = Answer {
        valid: true,
        sub: &c.sub,
        exp: c.exp,
        sid: &c.sid,
        email: &c.email,
        roles: &c.roles,
    };
    Ok(match serde_json::to_vec(&answer) {
        Ok(b) => reply(StatusCode::OK, b),
        Err(_) => bad(),
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let addr: SocketAddr = match std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5102".into())
        .parse()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("baseline_verify: bad address: {e}");
            return ExitCode::from(2);
        }
    };
    let Ok(secret) = std::env::var("JWT_SECRET") else {
        eprintln!("baseline_verify: set JWT_SECRET");
        return ExitCode::from(2);
    };
    let mut validation = Validation::new(Algorithm::HS256);
    if let Ok(iss) = std::env::var("JWT_ISSUER") {
        validation.set_issuer(&[iss]);
    }
    match std::env::var("JWT_AUDIENCE") {
        Ok(aud) => validation.set_audience(&[aud]),
        Err(_) => validation.validate_aud = false,
    }
    let verifier = Arc::new(Verifier {
        key: DecodingKey::from_secret(secret.as_bytes()),
        validation,
    });
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("baseline_verify: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let v = Arc::clone(&verifier);
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(Arc::clone(&v), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
