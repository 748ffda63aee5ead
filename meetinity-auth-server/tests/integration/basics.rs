//! Health, readiness, error envelopes, body limits, graceful shutdown, and the
//! real binary with no configuration.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{client, start, TempDir};

fn assert_envelope(body: &Value, code: u16, reason: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["reason"], reason, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn health_and_ready_answer() {
    let s = start(&[]).await;
    let res = client().get(s.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
    let res = client().get(s.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["checks"][0]["name"], "database");
    assert_eq!(body["checks"][0]["ok"], true);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn ready_is_503_naming_the_database_when_it_is_gone() {
    let s = start(&[]).await;
    match &s.backend {
        meetinity_auth::service::Backend::Sqlite(store) => store.close().await,
        other => panic!("expected sqlite, got {other:?}"),
    }
    let res = client().get(s.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_envelope(&body, 503, "unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("database"),
        "{body}"
    );
    // The process is still up.
    let res = client().get(s.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn ready_is_503_naming_redis_when_it_is_unreachable() {
    let s = start(&[
        ("REDIS_URL", "redis://127.0.0.1:1/0"),
        ("REDIS_TIMEOUT_MS", "200"),
    ])
    .await;
    let res = client().get(s.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("redis"),
        "{body}"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_route_and_wrong_method_use_the_envelope() {
    let s = start(&[]).await;
    let res = client().get(s.url("/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_envelope(&res.json().await.unwrap(), 404, "not_found");
    let res = client().delete(s.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
    assert_envelope(&res.json().await.unwrap(), 405, "method_not_allowed");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let s = start(&[("MAX_BODY_BYTES", "1024")]).await;
    let big = format!("{{\"email\": \"{}\"}}", "a".repeat(4096));
    let res = client()
        .post(s.url("/auth/login"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_envelope(&res.json().await.unwrap(), 413, "payload_too_large");
    // Chunked, without a Content-Length: the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b' '; 512])).collect();
    let res = client()
        .post(s.url("/auth/login"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    s.stop().await.unwrap();
}

fn futures_stream(
    items: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core_stream::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_core_stream::iter(items)
}

mod futures_core_stream {
    pub use futures_util::stream::{iter, Stream};
}

#[tokio::test]
async fn malformed_json_gets_400_and_wrong_shapes_never_500() {
    let s = start(&[]).await;
    for (body, status) in [
        ("{not json", 400),
        ("[1,2,3]", 400),
        ("\"string\"", 400),
        ("{\"email\": 5, \"password\": true}", 422),
        ("{\"email\": \"a@b.co\"}", 422),
    ] {
        let res = client()
            .post(s.url("/auth/login"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{body}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], status, "{v}");
    }
    let res = client()
        .post(s.url("/auth/login"))
        .header("content-type", "text/plain")
        .body("email=x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let s = start(&[]).await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let body = b"{\"token\": \"not-a-jwt\"}";
    let head = format!(
        "POST /auth/verify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The request is in flight; ask the server to stop.
    let addr = s.addr;
    let stopping = tokio::spawn(s.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // New connections are refused.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    conn.write_all(&body[5..]).await.unwrap();
    let mut buf = Vec::new();
    conn.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// The real binary, with no configuration at all but a port: serves /health,
/// creates `meetinity.db` in its working directory, exits 0 on SIGTERM.
#[tokio::test]
async fn binary_starts_with_no_configuration_and_stops_on_sigterm() {
    let dir = TempDir::new();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_meetinity-auth-server"))
        .current_dir(&dir.0)
        .env_clear()
        .env("APP_PORT", port.to_string())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/health");
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(res) = client().get(&url).send().await {
            assert_eq!(res.status(), 200);
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the server did not answer /health");
    assert!(dir.0.join("meetinity.db").exists());
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exit = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            exit = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exit = exit.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the server did not exit after SIGTERM")
    });
    assert!(exit.success(), "{exit:?}");
}
