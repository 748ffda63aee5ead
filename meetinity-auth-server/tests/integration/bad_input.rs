//! Hostile and broken input over real sockets: invalid UTF-8, NUL bytes,
//! huge headers, deep JSON, out-of-range numbers, duplicate keys, wrong
//! content types, slow headers and slow bodies. Never a 5xx, never a crash,
//! and other clients are served normally meanwhile.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{client, start, start_opts, Db, Options, TestServer};

const PASSWORD: &str = "correct horse battery staple 9";

/// What came back on a raw connection.
#[derive(Debug)]
struct Answer {
    /// The status of the first response, if one came.
    status: Option<u16>,
    /// Everything read, lossily decoded.
    text: String,
    /// When the server closed the connection (or the read gave up).
    after: Duration,
    /// Whether the server closed the connection (EOF or reset) before `wait`.
    closed: bool,
}

impl Answer {
    fn body(&self) -> Value {
        let body = self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or(Value::Null)
    }
}

/// Reads until the server closes the connection or `wait` passes.
async fn read_all(stream: &mut TcpStream, started: Instant, wait: Duration) -> Answer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut closed = false;
    loop {
        let left = wait.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok());
    Answer {
        status,
        text,
        after: started.elapsed(),
        closed,
    }
}

/// Sends `request` as is (it should say `Connection: close`) and reads the answer.
async fn raw(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    // The server may answer and close before reading everything: ignore write errors.
    let _ = stream.write_all(request).await;
    read_all(&mut stream, started, Duration::from_secs(10)).await
}

/// A POST with `body` and extra raw header lines.
fn post_bytes(path: &str, headers: &[u8], body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(headers);
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

fn json_post(path: &str, body: &[u8]) -> Vec<u8> {
    post_bytes(path, b"Content-Type: application/json\r\n", body)
}

/// Asserts a 4xx answer with the contract's envelope (when the body is JSON).
#[track_caller]
fn assert_4xx(a: &Answer, what: &str) {
    let status = a
        .status
        .unwrap_or_else(|| panic!("{what}: no answer: {a:?}"));
    assert!((400..500).contains(&status), "{what}: {status}: {}", a.text);
    let body = a.body();
    if !body.is_null() {
        assert_eq!(body["error"]["code"], status, "{what}: {body}");
    }
}

/// The server still serves a normal client: health and a real login.
async fn still_serving(s: &TestServer, email: &str) {
    assert!(!s.task.is_finished(), "the server task ended");
    let res = client().get(s.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = client()
        .post(s.url("/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
}

async fn register(s: &TestServer, email: &str) -> Value {
    let res = client()
        .post(s.url("/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

async fn login_token(s: &TestServer, email: &str) -> String {
    let res = client()
        .post(s.url("/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// Every POST route of the contract that reads a JSON body.
const BODY_ROUTES: &[&str] = &[
    "/auth/verify",
    "/auth/refresh",
    "/auth/register",
    "/auth/login",
    "/auth/email/verify",
    "/auth/password/forgot",
    "/auth/password/reset",
    "/auth/password/change",
    "/auth/google",
];

#[tokio::test]
async fn invalid_utf8_is_a_4xx_in_bodies_headers_and_urls() {
    let s = start(&[]).await;
    let email = "utf8@example.com";
    let set = register(&s, email).await;
    let token = set["token"].as_str().unwrap();
    for path in BODY_ROUTES {
        let a = raw(s.addr, &json_post(path, b"{\"email\": \"\xff\xfe\xfd\"}")).await;
        assert_4xx(&a, path);
        let a = raw(s.addr, &json_post(path, b"\xc3\x28\xa0\xa1")).await;
        assert_4xx(&a, path);
    }
    // In header values (obs-text): Authorization, Content-Type, cookies, request id.
    let mut headers = b"Authorization: Bearer \xff\xfe\r\nX-Request-Id: \xff\r\n".to_vec();
    headers.extend_from_slice(b"Cookie: mt_flow=\xff\r\nUser-Agent: \xfe\xff\r\n");
    let a = raw(
        s.addr,
        &[
            b"GET /auth/profile HTTP/1.1\r\nHost: t\r\nConnection: close\r\n".as_slice(),
            &headers,
            b"\r\n",
        ]
        .concat(),
    )
    .await;
    assert_eq!(a.status, Some(401), "{}", a.text);
    let a = raw(
        s.addr,
        &post_bytes(
            "/auth/login",
            b"Content-Type: application/json\xff\r\n",
            br#"{"email":"utf8@example.com","password":"x"}"#,
        ),
    )
    .await;
    assert_eq!(a.status, Some(415), "{}", a.text);
    // A valid token with an invalid user agent still works.
    let a = raw(
        s.addr,
        format!(
            "GET /auth/profile HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
             Authorization: Bearer {token}\r\nUser-Agent: \u{fe}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(a.status, Some(200), "{}", a.text);
    // In the request target, raw and percent-encoded.
    for target in [
        b"/auth/\xff\xfe/callback?code=a&state=b".as_slice(),
        b"/auth/email/verify?token=%FF%FE%00",
        b"/auth/%FF%FE/callback?code=%FF&state=%C3%28",
        b"/users/%FF%FE",
        b"/\xff",
    ] {
        let a = raw(
            s.addr,
            &[
                b"GET ".as_slice(),
                target,
                b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            ]
            .concat(),
        )
        .await;
        assert_4xx(&a, &String::from_utf8_lossy(target));
    }
    still_serving(&s, email).await;
    s.stop().await.unwrap();
}

/// NUL bytes, raw and escaped, on both databases: PostgreSQL refuses NUL
/// inside text, which must not become a 500.
async fn nul_bytes_on(db: Db) {
    let s = start_opts(Options::default().db(db)).await;
    let email = format!("nul-{}@example.com", crate::support::uuid_like());
    let set = register(&s, &email).await;
    let token = set["token"].as_str().unwrap().to_owned();
    // Raw NUL bytes: not JSON.
    for path in BODY_ROUTES {
        let a = raw(s.addr, &json_post(path, b"{\"email\": \"a\0b\"}")).await;
        assert_4xx(&a, path);
    }
    // Escaped NUL in every string field of every body.
    let nul = "a\u{0}b@example.com";
    let bodies: Vec<(&str, Value)> = vec![
        (
            "/auth/register",
            json!({"email": nul, "password": PASSWORD}),
        ),
        (
            "/auth/register",
            json!({"email": format!("x{}", email), "password": PASSWORD, "name": "Ada\u{0}"}),
        ),
        (
            "/auth/register",
            json!({"email": format!("y{}", email), "password": "pass\u{0}word-long-enough"}),
        ),
        ("/auth/login", json!({"email": nul, "password": PASSWORD})),
        ("/auth/login", json!({"email": email, "password": "a\u{0}"})),
        ("/auth/password/forgot", json!({"email": nul})),
        ("/auth/refresh", json!({"refresh_token": "\u{0}"})),
        ("/auth/verify", json!({"token": "\u{0}.\u{0}.\u{0}"})),
        ("/auth/email/verify", json!({"token": "\u{0}"})),
        (
            "/auth/password/reset",
            json!({"token": "\u{0}", "password": PASSWORD}),
        ),
        ("/auth/google", json!({"redirect_uri": "https://a/\u{0}"})),
        ("/auth/\u{0}", json!({})),
    ];
    for (path, body) in &bodies {
        let res = client()
            .post(s.url(&path.replace('\0', "%00")))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        assert!(status < 500, "{db:?} {path} {body}: {status} {text}");
        if body["email"] == nul {
            assert!(
                status >= 400 || path.contains("forgot"),
                "{db:?} {path}: {status}"
            );
        }
    }
    let res = client()
        .post(s.url("/auth/password/change"))
        .bearer_auth(&token)
        .json(&json!({"current_password": "\u{0}", "new_password": "\u{0}\u{0}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "{:?}", res.text().await);
    // A NUL inside a header value is refused by the HTTP parser.
    let a = raw(
        s.addr,
        b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Evil: a\0b\r\n\r\n",
    )
    .await;
    assert_4xx(&a, "NUL in a header");
    still_serving(&s, &email).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn nul_bytes_are_a_4xx_on_sqlite() {
    nul_bytes_on(Db::Sqlite).await;
}

#[tokio::test]
async fn nul_bytes_are_a_4xx_on_postgres() {
    nul_bytes_on(Db::Postgres).await;
}

#[tokio::test]
async fn huge_headers_are_refused_and_the_server_goes_on() {
    let s = start(&[]).await;
    let email = "headers@example.com";
    register(&s, email).await;
    // One 100 KB header.
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let a = raw(s.addr, big.as_bytes()).await;
    assert_4xx(&a, "100 KB header");
    // A 100 KB Authorization header and a 100 KB cookie.
    for name in ["Authorization: Bearer ", "Cookie: mt_flow="] {
        let req = format!(
            "GET /auth/profile HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{name}{}\r\n\r\n",
            "b".repeat(100 * 1024)
        );
        assert_4xx(&raw(s.addr, req.as_bytes()).await, name);
    }
    // Many small headers adding up to 100 KB.
    let mut req = String::from("GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for i in 0..2000 {
        req.push_str(&format!("X-H{i}: {}\r\n", "c".repeat(40)));
    }
    req.push_str("\r\n");
    assert_4xx(&raw(s.addr, req.as_bytes()).await, "2000 headers");
    // A 100 KB request target.
    let req = format!(
        "GET /auth/email/verify?token={} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "d".repeat(100 * 1024)
    );
    assert_4xx(&raw(s.addr, req.as_bytes()).await, "100 KB URL");
    // Just under the limit is fine: an 8 KB header on a normal request.
    let res = client()
        .get(s.url("/health"))
        .header("x-padding", "e".repeat(8 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    still_serving(&s, email).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn deeply_nested_json_is_a_400_not_a_stack_overflow() {
    let s = start(&[]).await;
    let email = "deep@example.com";
    register(&s, email).await;
    let token = login_token(&s, email).await;
    let bearer = format!("Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n");
    let depth = 10_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    let inside = format!(
        "{{\"email\": {}, \"password\": \"x\"}}",
        format_args!("{}{}", "[".repeat(depth), "]".repeat(depth))
    );
    // Unclosed: the parser must stop at its depth limit, not at the end.
    let unclosed = "[".repeat(100_000);
    for path in BODY_ROUTES {
        for body in [&arrays, &objects, &inside, &unclosed] {
            let a = raw(
                s.addr,
                &post_bytes(path, bearer.as_bytes(), body.as_bytes()),
            )
            .await;
            assert_4xx(&a, path);
            assert_eq!(a.status, Some(400), "{path}: {}", a.text);
            assert_eq!(a.body()["error"]["reason"], "invalid_json", "{path}");
        }
    }
    still_serving(&s, email).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn out_of_range_numbers_and_wrong_types_are_4xx() {
    let s = start(&[]).await;
    let email = "numbers@example.com";
    register(&s, email).await;
    let bodies: &[&str] = &[
        r#"{"email": 1e999, "password": "x"}"#,
        r#"{"email": -1e999, "password": "x"}"#,
        r#"{"email": 18446744073709551616999999999999, "password": "x"}"#,
        r#"{"email": 1.7976931348623157e309, "password": "x"}"#,
        r#"{"email": 0.000000000000000000000000000001e-400, "password": "x"}"#,
        r#"{"email": NaN, "password": "x"}"#,
        r#"{"email": Infinity, "password": "x"}"#,
        r#"{"email": 12, "password": 34}"#,
        r#"{"email": ["a"], "password": {"b": 1}}"#,
        r#"{"email": null, "password": null}"#,
        r#"{"email": true, "password": false}"#,
        r#"{"token": 99999999999999999999999, "refresh_token": -0}"#,
        r#"{"email": "\ud800", "password": "x"}"#,
        r#"{"email": "\uDFFF\uD800", "password": "x"}"#,
        r#"[1, 2, 3]"#,
        r#""a string""#,
        r#"12345678901234567890123456789"#,
        r#"null"#,
    ];
    let token = login_token(&s, email).await;
    let bearer = format!("Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n");
    for path in BODY_ROUTES {
        for body in bodies {
            let a = raw(
                s.addr,
                &post_bytes(path, bearer.as_bytes(), body.as_bytes()),
            )
            .await;
            let status = a.status.unwrap_or(0);
            // `/auth/verify` falls back to the (valid) Bearer header when the
            // body has no usable `token`; everything else is refused.
            let lowest = if *path == "/auth/verify" { 200 } else { 400 };
            assert!((lowest..500).contains(&status), "{path} {body}: {}", a.text);
        }
    }
    still_serving(&s, email).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn duplicate_keys_take_the_last_value_consistently() {
    let s = start(&[]).await;
    let email = "dupes@example.com";
    register(&s, email).await;
    // Last one wins, as everywhere in serde_json: never a 5xx, never a mix.
    let wrong_then_right =
        format!(r#"{{"email": "{email}", "password": "wrong", "password": "{PASSWORD}"}}"#);
    let a = raw(
        s.addr,
        &json_post("/auth/login", wrong_then_right.as_bytes()),
    )
    .await;
    assert_eq!(a.status, Some(200), "{}", a.text);
    let right_then_wrong =
        format!(r#"{{"email": "{email}", "password": "{PASSWORD}", "password": "wrong"}}"#);
    let a = raw(
        s.addr,
        &json_post("/auth/login", right_then_wrong.as_bytes()),
    )
    .await;
    assert_eq!(a.status, Some(401), "{}", a.text);
    let other_then_mine = format!(
        r#"{{"email": "other@example.com", "email": "{email}", "password": "{PASSWORD}"}}"#
    );
    let a = raw(
        s.addr,
        &json_post("/auth/login", other_then_mine.as_bytes()),
    )
    .await;
    assert_eq!(a.status, Some(200), "{}", a.text);
    // Many duplicates of one key.
    let mut many = String::from("{");
    for i in 0..10_000 {
        many.push_str(&format!("\"email\": \"{i}@example.com\","));
    }
    many.push_str("\"password\": \"x\"}");
    for path in BODY_ROUTES {
        let a = raw(s.addr, &json_post(path, many.as_bytes())).await;
        let status = a.status.unwrap_or(0);
        assert!((200..500).contains(&status), "{path}: {}", a.text);
    }
    still_serving(&s, email).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn wrong_content_types_are_415() {
    let s = start(&[]).await;
    let email = "ctype@example.com";
    register(&s, email).await;
    let body = format!(r#"{{"email": "{email}", "password": "{PASSWORD}"}}"#);
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/xml",
        "json",
        "",
        "application/json\u{1}",
        "*/*",
    ] {
        let header = format!("Content-Type: {ct}\r\n");
        let a = raw(
            s.addr,
            &post_bytes("/auth/login", header.as_bytes(), body.as_bytes()),
        )
        .await;
        let status = a.status.unwrap_or(0);
        // A control character in a header value is refused by the parser (400).
        assert!(status == 415 || status == 400, "{ct:?}: {}", a.text);
        assert_4xx(&a, ct);
    }
    // Form-encoded credentials are never read as credentials.
    let form = format!("email={email}&password={PASSWORD}");
    let a = raw(
        s.addr,
        &post_bytes(
            "/auth/login",
            b"Content-Type: application/x-www-form-urlencoded\r\n",
            form.as_bytes(),
        ),
    )
    .await;
    assert_eq!(a.status, Some(415), "{}", a.text);
    // Parameters and case do not matter for JSON itself.
    for ct in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/merge-patch+json",
    ] {
        let header = format!("Content-Type: {ct}\r\n");
        let a = raw(
            s.addr,
            &post_bytes("/auth/login", header.as_bytes(), body.as_bytes()),
        )
        .await;
        assert_eq!(a.status, Some(200), "{ct}: {}", a.text);
    }
    still_serving(&s, email).await;
    s.stop().await.unwrap();
}

/// Starts a server whose requests must be read within one second.
async fn impatient() -> TestServer {
    start(&[("REQUEST_TIMEOUT_SECS", "1")]).await
}

#[tokio::test]
async fn slow_headers_are_cut_off_and_others_are_served_meanwhile() {
    let s = impatient().await;
    let email = "slowloris@example.com";
    register(&s, email).await;
    // Fifty slowloris connections: each sends a header byte every 100 ms, for ever.
    let mut lorises = Vec::new();
    for _ in 0..50 {
        let addr = s.addr;
        lorises.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            stream
                .write_all(b"POST /auth/login HTTP/1.1\r\nHost: t\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 1024];
            loop {
                if stream.write_all(b"X").await.is_err() {
                    return started.elapsed();
                }
                match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await
                {
                    Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
                    Ok(Ok(_)) => {} // a 408 may come before the close
                    Err(_) => {}
                }
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "a slow header was not cut off"
                );
            }
        }));
    }
    // Meanwhile, a normal client is served quickly.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    still_serving(&s, email).await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    for l in lorises {
        let cut = l.await.unwrap();
        assert!(cut < Duration::from_secs(3), "cut off after {cut:?}");
    }
    still_serving(&s, email).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed() {
    let s = impatient().await;
    // Connected, nothing sent.
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    let a = read_all(&mut idle, Instant::now(), Duration::from_secs(5)).await;
    assert!(a.closed, "an idle connection stayed open: {a:?}");
    assert!(a.after < Duration::from_secs(3), "{a:?}");
    // Half a request line, then silence.
    let mut half = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    half.write_all(b"GET /hea").await.unwrap();
    let a = read_all(&mut half, started, Duration::from_secs(5)).await;
    assert!(a.closed, "{a:?}");
    assert!(a.after < Duration::from_secs(3), "{a:?}");
    if let Some(status) = a.status {
        assert!((400..500).contains(&status), "{}", a.text);
    }
    // After a first request, a kept-alive connection that goes quiet is closed too.
    let mut kept = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let a = read_all(&mut kept, started, Duration::from_secs(6)).await;
    assert_eq!(a.status, Some(200), "{a:?}");
    assert!(a.closed, "{a:?}");
    // One that keeps asking is not idle, however long it lives.
    let mut busy = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    let mut answers = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        busy.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(br#"{"status":"ok"}"#) {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(2), busy.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed while in use, after {:?}", started.elapsed());
            answer.extend_from_slice(&chunk[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"));
        answers += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(answers >= 7, "{answers}");
    // HTTP/2 (prior knowledge): a connection with no request is closed too.
    let mut h2 = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let a = read_all(&mut h2, started, Duration::from_secs(6)).await;
    assert!(a.closed, "an idle HTTP/2 connection stayed open: {a:?}");
    assert!(a.after < Duration::from_secs(4), "{a:?}");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn slow_bodies_are_cut_off_with_408_and_others_are_served_meanwhile() {
    let s = impatient().await;
    let email = "slowbody@example.com";
    register(&s, email).await;
    let body = format!(r#"{{"email": "{email}", "password": "{PASSWORD}"}}"#);
    let mut slow = Vec::new();
    for _ in 0..20 {
        let addr = s.addr;
        let body = body.clone();
        slow.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            let head = format!(
                "POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            // One byte every 300 ms: the whole body would take 20 s.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            for b in body.as_bytes() {
                if stream.write_all(&[*b]).await.is_err() {
                    break;
                }
                match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut chunk))
                    .await
                {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => {
                        buf.extend_from_slice(&chunk[..n]);
                        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    Err(_) => {}
                }
            }
            (
                started.elapsed(),
                String::from_utf8_lossy(&buf).into_owned(),
            )
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    still_serving(&s, email).await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    for task in slow {
        let (after, text) = task.await.unwrap();
        assert!(
            after < Duration::from_secs(3),
            "cut off after {after:?}: {text}"
        );
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("request_timeout"), "{text}");
    }
    // A chunked body that never ends is cut off the same way.
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(
            b"POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n",
        )
        .await
        .unwrap();
    let a = read_all(&mut stream, started, Duration::from_secs(5)).await;
    assert_eq!(a.status, Some(408), "{a:?}");
    assert!(a.after < Duration::from_secs(3), "{a:?}");
    still_serving(&s, email).await;
    s.stop().await.unwrap();
}
