//! Issue 6 over HTTP and the command line: `/metrics` parsed as the
//! Prometheus text format, `/openapi.json`, CORS, per-IP rate limits (alone
//! and shared through Redis), security headers and request ids (in the
//! response and in the logs), and the `keys`, `users` and `config`
//! subcommands of the real binary.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use meetinity_auth::cache::{Cache, RedisCache, RedisSettings};
use meetinity_auth::http::ROUTES;
use meetinity_auth::Config;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use crate::support::{
    client, redis_url, start, start_opts, start_with, uuid_like, Options, TempDir, TestServer,
};

const PASSWORD: &str = "a long and unusual passphrase 42";

/// An HTTP answer, read whole.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn str(&self, field: &str) -> String {
        self.body[field].as_str().unwrap_or_default().to_owned()
    }
}

async fn answer(req: reqwest::RequestBuilder) -> Answer {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

async fn post(s: &TestServer, path: &str, body: Value) -> Answer {
    answer(client().post(s.url(path)).json(&body)).await
}

async fn register(s: &TestServer, email: &str) -> Answer {
    let a = post(
        s,
        "/auth/register",
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    a
}

async fn login(s: &TestServer, email: &str, password: &str) -> Answer {
    post(
        s,
        "/auth/login",
        json!({"email": email, "password": password}),
    )
    .await
}

// ------------------------------------------------- Prometheus text format

/// One metric family of the exposition.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

fn valid_name(name: &str, colon: bool) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

fn parse_value(raw: &str) -> Result<f64, String> {
    match raw {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => raw.parse().map_err(|_| format!("bad value {raw:?}")),
    }
}

/// `{a="x",b="y\"z"}` into a map; returns the rest of the line.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("expected =")?;
        let name = rest[..eq].trim();
        if !valid_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..].strip_prefix('"').ok_or("expected \"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, '\n') => return Err("newline in label value".into()),
                (_, c) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = rest[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses the Prometheus text exposition format (version 0.0.4), checking
/// what a scraper checks: names, `# TYPE` once and before its samples,
/// families contiguous, label syntax and escapes, float values, and for
/// histograms cumulative buckets ending with `+Inf` equal to `_count`.
fn parse_prometheus(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut done: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let family_of = |name: &str, families: &BTreeMap<String, Family>| -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if families.get(base).is_some_and(|f| f.kind == "histogram") {
                    return base.to_owned();
                }
            }
        }
        name.to_owned()
    };
    if !text.ends_with('\n') {
        return Err("the exposition must end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let err = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            match parts.next() {
                Some("TYPE") => {
                    let name = parts.next().ok_or_else(|| err("no name".into()))?;
                    let kind = parts.next().ok_or_else(|| err("no type".into()))?;
                    if !valid_name(name, true) {
                        return Err(err("bad metric name".into()));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(err(format!("unknown type {kind}")));
                    }
                    if families.contains_key(name) {
                        return Err(err("second TYPE, or TYPE after samples".into()));
                    }
                    if let Some(prev) = current.replace(name.to_owned()) {
                        done.push(prev);
                    }
                    families.insert(
                        name.to_owned(),
                        Family {
                            kind: kind.to_owned(),
                            samples: Vec::new(),
                        },
                    );
                }
                Some("HELP") => {
                    let name = parts.next().ok_or_else(|| err("no name".into()))?;
                    if !valid_name(name, true) {
                        return Err(err("bad metric name".into()));
                    }
                }
                _ => {}
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !valid_name(name, true) {
            return Err(err("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(err)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value =
            parse_value(fields.next().ok_or_else(|| err("no value".into()))?).map_err(err)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| err("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        let family = family_of(name, &families);
        if done.contains(&family) {
            return Err(err(format!("samples of {family} are not contiguous")));
        }
        if current.as_deref() != Some(family.as_str()) {
            if let Some(prev) = current.replace(family.clone()) {
                done.push(prev);
            }
        }
        families
            .entry(family)
            .or_insert_with(|| Family {
                kind: "untyped".into(),
                samples: Vec::new(),
            })
            .samples
            .push((name.to_owned(), labels, value));
    }
    for (name, family) in &families {
        if family.kind != "histogram" {
            continue;
        }
        // Group the buckets by their other labels.
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        let mut counts: BTreeMap<BTreeMap<String, String>, f64> = BTreeMap::new();
        for (sample, labels, value) in &family.samples {
            let mut rest = labels.clone();
            if sample == &format!("{name}_bucket") {
                let le = rest
                    .remove("le")
                    .ok_or(format!("{name}: bucket without le"))?;
                series
                    .entry(rest)
                    .or_default()
                    .push((parse_value(&le)?, *value));
            } else if sample == &format!("{name}_count") {
                counts.insert(rest, *value);
            }
        }
        for (labels, buckets) in series {
            let mut last = (f64::NEG_INFINITY, 0.0);
            for &(le, count) in &buckets {
                if le <= last.0 || count < last.1 {
                    return Err(format!("{name}{labels:?}: buckets not cumulative"));
                }
                last = (le, count);
            }
            if last.0 != f64::INFINITY || counts.get(&labels) != Some(&last.1) {
                return Err(format!(
                    "{name}{labels:?}: +Inf bucket missing or not _count"
                ));
            }
        }
    }
    Ok(families)
}

fn sample(families: &BTreeMap<String, Family>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .values()
        .flat_map(|f| &f.samples)
        .find_map(|(n, l, v)| {
            (n == name
                && labels
                    .iter()
                    .all(|(k, want)| l.get(*k).map(String::as_str) == Some(*want)))
            .then_some(*v)
        })
}

#[test]
fn the_parser_refuses_what_prometheus_refuses() {
    assert!(parse_prometheus("# TYPE a counter\na_total 1\n").is_ok());
    for bad in [
        "a 1",                                     // no final newline
        "1a 1\n",                                  // bad name
        "a{b=\"c} 1\n",                            // unterminated value
        "a{b=\"c\"} one\n",                        // bad value
        "# TYPE a counter\n# TYPE a gauge\na 1\n", // TYPE twice
        "a 1\nb 1\na 2\n",                         // not contiguous
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n", // decreasing
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n",                          // no +Inf
    ] {
        assert!(parse_prometheus(bad).is_err(), "{bad:?} was accepted");
    }
}

#[tokio::test]
async fn metrics_scrape_in_prometheus_text_format() {
    let s = start(&[("REFRESH_GRACE_SECS", "0")]).await;
    let reg = register(&s, "metrics@example.com").await;
    assert_eq!(
        login(&s, "metrics@example.com", "wrong password, long")
            .await
            .status,
        401
    );
    assert_eq!(login(&s, "metrics@example.com", PASSWORD).await.status, 200);
    for _ in 0..2 {
        let a = answer(
            client()
                .get(s.url("/auth/profile"))
                .bearer_auth(reg.str("token")),
        )
        .await;
        assert_eq!(a.status, 200);
    }
    let refresh = json!({"refresh_token": reg.str("refresh_token")});
    assert_eq!(post(&s, "/auth/refresh", refresh.clone()).await.status, 200);
    let reused = post(&s, "/auth/refresh", refresh).await;
    assert_eq!(reused.body["error"]["reason"], "refresh_token_reused");
    assert_eq!(
        answer(client().get(s.url("/no/such/thing"))).await.status,
        404
    );

    let res = client().get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = res.text().await.unwrap();
    let m = parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    let requests = "meetinity_http_requests_total";
    assert_eq!(m["meetinity_http_requests_total"].kind, "counter");
    assert_eq!(
        sample(
            &m,
            requests,
            &[
                ("method", "POST"),
                ("route", "/auth/register"),
                ("status", "201")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            requests,
            &[("route", "/auth/refresh"), ("status", "401")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            requests,
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        Some(1.0),
        "unknown paths share one series"
    );
    assert_eq!(
        m["meetinity_http_request_duration_seconds"].kind,
        "histogram"
    );
    assert_eq!(
        sample(
            &m,
            "meetinity_http_request_duration_seconds_count",
            &[("method", "POST"), ("route", "/auth/login")]
        ),
        Some(2.0)
    );
    let logins = "meetinity_logins_total";
    for (method, outcome) in [
        ("password", "success"),
        ("password", "invalid_credentials"),
        ("register", "success"),
    ] {
        assert_eq!(
            sample(
                &m,
                logins,
                &[
                    ("method", method),
                    ("provider", "local"),
                    ("outcome", outcome)
                ]
            ),
            Some(1.0),
            "{method} {outcome}"
        );
    }
    assert_eq!(
        sample(&m, "meetinity_refresh_reuse_detected_total", &[]),
        Some(1.0)
    );
    let hits = sample(&m, "meetinity_user_cache_hits_total", &[]).unwrap();
    let misses = sample(&m, "meetinity_user_cache_misses_total", &[]).unwrap();
    assert!(hits >= 1.0 && misses >= 1.0, "hits {hits}, misses {misses}");
    assert_eq!(m["meetinity_db_pool_connections"].kind, "gauge");
    let idle = sample(&m, "meetinity_db_pool_connections", &[("state", "idle")]).unwrap();
    let in_use = sample(&m, "meetinity_db_pool_connections", &[("state", "in_use")]).unwrap();
    assert!(idle + in_use >= 1.0, "idle {idle}, in use {in_use}");
    s.stop().await.unwrap();
}

// ---------------------------------------------------------------- OpenAPI

#[tokio::test]
async fn openapi_document_is_served_and_lists_every_route() {
    let s = start(&[]).await;
    let a = answer(client().get(s.url("/openapi.json"))).await;
    assert_eq!(a.status, 200);
    assert!(a
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(a.body["openapi"], "3.1.0");
    for (path, methods) in ROUTES {
        for m in *methods {
            let op = &a.body["paths"][*path][m.as_str().to_lowercase()];
            assert!(op["responses"].is_object(), "{m} {path} is not documented");
        }
    }
    let reasons = &a.body["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
        ["reason"]["enum"];
    for r in [
        "rate_limited",
        "refresh_token_reused",
        "invalid_token",
        "weak_password",
    ] {
        assert!(reasons.as_array().unwrap().contains(&json!(r)), "{r}");
    }
    s.stop().await.unwrap();
}

// ------------------------------------------------------------------- CORS

fn preflight(s: &TestServer, path: &str, origin: &str) -> reqwest::RequestBuilder {
    client()
        .request(reqwest::Method::OPTIONS, s.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, authorization",
        )
}

#[tokio::test]
async fn cors_follows_cors_origins_and_never_gives_credentials_to_any_origin() {
    let app = "https://app.example";
    let s = start(&[("CORS_ORIGINS", "https://app.example, https://admin.example")]).await;
    let a = answer(preflight(&s, "/auth/login", app)).await;
    assert_eq!(a.status, 204);
    assert_eq!(a.header("access-control-allow-origin"), Some(app));
    assert_eq!(a.header("access-control-allow-credentials"), Some("true"));
    assert!(a
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    let allowed = a.header("access-control-allow-headers").unwrap();
    assert!(allowed.contains("content-type") && allowed.contains("authorization"));
    assert!(a.header("access-control-max-age").is_some());
    assert!(a.header("vary").unwrap().contains("Origin"));

    // A listed origin on the real request: echoed, with credentials.
    let a = answer(
        client()
            .post(s.url("/auth/login"))
            .header("origin", app)
            .json(&json!({"email": "x@example.com", "password": "whatever it is"})),
    )
    .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.header("access-control-allow-origin"), Some(app));
    assert_eq!(a.header("access-control-allow-credentials"), Some("true"));
    assert!(a
        .header("access-control-expose-headers")
        .unwrap()
        .contains("x-request-id"));

    // Another origin: nothing that lets a browser read the answer.
    for req in [
        preflight(&s, "/auth/login", "https://evil.example"),
        client()
            .get(s.url("/health"))
            .header("origin", "https://evil.example"),
    ] {
        let a = answer(req).await;
        assert_eq!(a.header("access-control-allow-origin"), None);
        assert_eq!(a.header("access-control-allow-credentials"), None);
        assert!(a.header("vary").unwrap().contains("Origin"));
    }
    s.stop().await.unwrap();

    // The default `*`: any origin, never with credentials.
    let s = start(&[]).await;
    for req in [
        preflight(&s, "/auth/login", "https://anyone.example"),
        client()
            .get(s.url("/health"))
            .header("origin", "https://anyone.example"),
    ] {
        let a = answer(req).await;
        assert_eq!(a.header("access-control-allow-origin"), Some("*"));
        assert_eq!(a.header("access-control-allow-credentials"), None);
    }
    s.stop().await.unwrap();
}

// ------------------------------------------------------------ Rate limits

fn assert_rate_limited(a: &Answer) {
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.body["error"]["reason"], "rate_limited");
    let after: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&after), "Retry-After {after}");
}

#[tokio::test]
async fn entry_points_are_rate_limited_per_client_ip() {
    let s = start(&[
        ("RATE_LIMIT_PER_MINUTE", "3"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    for _ in 0..3 {
        assert_eq!(
            login(&s, "nobody@example.com", "wrong password, long")
                .await
                .status,
            401
        );
    }
    assert_rate_limited(&login(&s, "nobody@example.com", "wrong password, long").await);
    // Each entry point counts on its own; other routes are not limited.
    register(&s, "limits@example.com").await;
    for _ in 0..5 {
        assert_eq!(answer(client().get(s.url("/health"))).await.status, 200);
    }
    // Behind a trusted proxy, the client is the X-Forwarded-For address.
    let other = answer(
        client()
            .post(s.url("/auth/login"))
            .header("x-forwarded-for", "203.0.113.9")
            .json(&json!({"email": "nobody@example.com", "password": "wrong password, long"})),
    )
    .await;
    assert_eq!(other.status, 401);
    let text = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let m = parse_prometheus(&text).unwrap();
    assert_eq!(
        sample(
            &m,
            "meetinity_rate_limited_total",
            &[("route", "/auth/login")]
        ),
        Some(1.0)
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let s = start(&[("RATE_LIMIT_PER_MINUTE", "2")]).await;
    for i in 1..=3 {
        let a = answer(
            client()
                .post(s.url("/auth/password/forgot"))
                .header("x-forwarded-for", format!("203.0.113.{i}"))
                .json(&json!({"email": "nobody@example.com"})),
        )
        .await;
        if i <= 2 {
            assert_eq!(a.status, 202);
        } else {
            assert_rate_limited(&a);
        }
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn rate_limits_are_shared_by_instances_through_redis() {
    let prefix = format!("ratelimit-test-{}", uuid_like());
    let cache = || -> Arc<dyn Cache> {
        Arc::new(RedisCache::new(&redis_url(), &prefix, RedisSettings::default()).unwrap())
    };
    let opts = || {
        Options {
            cache: Some(cache()),
            ..Options::default()
        }
        .var("RATE_LIMIT_PER_MINUTE", "3")
    };
    let (a, b) = (start_opts(opts()).await, start_opts(opts()).await);
    let refresh = json!({"refresh_token": "not-a-real-refresh-token"});
    for s in [&a, &a, &b] {
        assert_eq!(post(s, "/auth/refresh", refresh.clone()).await.status, 401);
    }
    assert_rate_limited(&post(&b, "/auth/refresh", refresh.clone()).await);
    assert_rate_limited(&post(&a, "/auth/refresh", refresh).await);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

// --------------------------------------------- Security headers, request id

fn assert_security_headers(a: &Answer, what: &str) {
    assert_eq!(
        a.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(a.header("referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(a.header("cache-control"), Some("no-store"), "{what}");
    assert_eq!(a.header("x-frame-options"), Some("DENY"), "{what}");
    assert!(
        a.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'"),
        "{what}"
    );
    let id = a.header("x-request-id").unwrap_or_default();
    assert_eq!(id.len(), 36, "{what}: a generated request id: {id:?}");
}

#[tokio::test]
async fn every_response_has_security_headers_and_a_request_id() {
    let s = start(&[]).await;
    let reg = register(&s, "headers@example.com").await;
    assert_security_headers(&reg, "register");
    let cases = [
        ("ok", client().get(s.url("/health")), 200),
        ("not found", client().get(s.url("/nope")), 404),
        ("wrong method", client().delete(s.url("/health")), 405),
        ("no token", client().get(s.url("/auth/profile")), 401),
        (
            "preflight",
            preflight(&s, "/auth/login", "https://x.example"),
            204,
        ),
        (
            "bad json",
            client()
                .post(s.url("/auth/login"))
                .header("content-type", "application/json")
                .body("{"),
            400,
        ),
        ("metrics", client().get(s.url("/metrics")), 200),
        (
            "logout",
            client()
                .post(s.url("/auth/logout"))
                .bearer_auth(reg.str("token")),
            204,
        ),
    ];
    let mut ids = std::collections::HashSet::new();
    for (what, req, status) in cases {
        let a = answer(req).await;
        assert_eq!(a.status, status, "{what}: {}", a.body);
        assert_security_headers(&a, what);
        assert!(
            ids.insert(a.header("x-request-id").unwrap().to_owned()),
            "ids are unique"
        );
        if status == 405 {
            assert_eq!(a.header("allow"), Some("GET, HEAD"));
        }
    }
    // The caller's id is kept when it is sane, replaced when it is not.
    let a = answer(
        client()
            .get(s.url("/health"))
            .header("x-request-id", "trace-abc-123"),
    )
    .await;
    assert_eq!(a.header("x-request-id"), Some("trace-abc-123"));
    for bad in ["has space", &"x".repeat(200)] {
        let a = answer(client().get(s.url("/health")).header("x-request-id", bad)).await;
        assert_ne!(a.header("x-request-id"), Some(bad));
        assert_eq!(a.header("x-request-id").unwrap().len(), 36);
    }
    assert_eq!(
        a.header("strict-transport-security"),
        None,
        "not on plain http"
    );
    s.stop().await.unwrap();

    let s = start(&[("PUBLIC_BASE_URL", "https://auth.example")]).await;
    let a = answer(client().get(s.url("/health"))).await;
    assert!(a
        .header("strict-transport-security")
        .unwrap()
        .starts_with("max-age="));
    s.stop().await.unwrap();
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_request_id_is_in_the_logs() {
    // The test runtime has one thread: the server's tasks log through this
    // thread's default subscriber for as long as the guard lives.
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let s = start(&[]).await;
    let a = answer(
        client()
            .get(s.url("/nope"))
            .header("x-request-id", "log-me-7f3a"),
    )
    .await;
    assert_eq!(a.status, 404);
    let a = answer(client().get(s.url("/health"))).await;
    let generated = a.header("x-request-id").unwrap().to_owned();
    s.stop().await.unwrap();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = |id: &str| {
        text.lines()
            .find(|l| l.contains(&format!("request_id={id}")) && l.contains("request answered"))
            .map(str::to_owned)
    };
    let given = line("log-me-7f3a").unwrap_or_else(|| panic!("no log line with the id:\n{text}"));
    assert!(given.contains("status=404"), "{given}");
    assert!(given.contains("unmatched"), "{given}");
    assert!(line(&generated).is_some(), "{text}");
}

// -------------------------------------------------------------------- CLI

/// The real binary, in `dir`, with only `vars` in its environment.
fn cli(dir: &TempDir, args: &[&str], vars: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meetinity-auth-server"));
    cmd.args(args)
        .current_dir(&dir.0)
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_subcommand_has_help() {
    let dir = TempDir::new();
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["purge", "--help"],
        &["keys", "--help"],
        &["keys", "generate", "--help"],
        &["users", "create-admin", "--help"],
        &["config", "check", "--help"],
    ] {
        let o = cli(&dir, args, &[], None);
        assert!(o.status.success(), "{args:?}: {}", out(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
    let o = cli(&dir, &["--help"], &[], None);
    for sub in ["serve", "migrate", "purge", "keys", "users", "config"] {
        assert!(String::from_utf8_lossy(&o.stdout).contains(sub), "{sub}");
    }
    let o = cli(&dir, &["keys", "generate", "--help"], &[], None);
    let help = String::from_utf8_lossy(&o.stdout).to_string();
    for alg in ["rs256", "es256", "eddsa"] {
        assert!(help.contains(alg), "{help}");
    }
}

#[test]
fn keys_generate_writes_a_private_pem_that_the_server_loads() {
    let dir = TempDir::new();
    for (alg, jwt) in [("es256", "ES256"), ("eddsa", "EdDSA")] {
        let file = format!("{alg}.pem");
        let o = cli(
            &dir,
            &["keys", "generate", "--alg", alg, "--out", &file],
            &[],
            None,
        );
        assert!(o.status.success(), "{}", out(&o));
        assert!(out(&o).contains("key id"), "{}", out(&o));
        let path = dir.0.join(&file);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{alg}: mode {mode:o}");
        }
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{alg}");
        // An existing file is kept unless --force.
        let o = cli(
            &dir,
            &["keys", "generate", "--alg", alg, "--out", &file],
            &[],
            None,
        );
        assert!(!o.status.success());
        assert!(out(&o).contains("--force"), "{}", out(&o));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
        let o = cli(
            &dir,
            &["keys", "generate", "--alg", alg, "--out", &file, "--force"],
            &[],
            None,
        );
        assert!(o.status.success(), "{}", out(&o));
        assert_ne!(std::fs::read_to_string(&path).unwrap(), pem);
        // The configuration accepts it.
        let o = cli(
            &dir,
            &["config", "check"],
            &[("JWT_ALGO", jwt), ("JWT_PRIVATE_KEY_FILE", &file)],
            None,
        );
        assert!(o.status.success(), "{}", out(&o));
    }
    // RSA once (key generation is slow in debug builds).
    let o = cli(
        &dir,
        &["keys", "generate", "--alg", "rs256", "--out", "rs.pem"],
        &[],
        None,
    );
    assert!(o.status.success(), "{}", out(&o));
    let o = cli(
        &dir,
        &["config", "check"],
        &[("JWT_ALGO", "RS256"), ("JWT_PRIVATE_KEY_FILE", "rs.pem")],
        None,
    );
    assert!(o.status.success(), "{}", out(&o));
    let o = cli(
        &dir,
        &["keys", "generate", "--alg", "hs256", "--out", "x.pem"],
        &[],
        None,
    );
    assert!(!o.status.success());
}

#[test]
fn config_check_prints_the_configuration_redacted_and_fails_on_problems() {
    let dir = TempDir::new();
    let secret = "a-jwt-secret-that-must-never-be-printed-0123";
    let o = cli(
        &dir,
        &["config", "check"],
        &[
            ("JWT_SECRET", secret),
            (
                "DATABASE_URL",
                "postgres://meetinity:hunter2-db-pass@db.internal/meetinity",
            ),
            ("SMTP_URL", "smtp://mailer:hunter3-smtp-pass@127.0.0.1:2525"),
            ("RATE_LIMIT_PER_MINUTE", "42"),
        ],
        None,
    );
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("configuration OK"), "{text}");
    assert!(text.contains("rate_limit_per_minute: 42"), "{text}");
    assert!(text.contains("db.internal"), "{text}");
    for leaked in [secret, "hunter2-db-pass", "hunter3-smtp-pass"] {
        assert!(!text.contains(leaked), "{leaked} printed:\n{text}");
    }

    let o = cli(
        &dir,
        &["config", "check"],
        &[
            ("APP_PORT", "eighty"),
            ("JWT_ALGO", "HS512x"),
            ("RATE_LIMIT_PER_MINUTE", "-1"),
        ],
        None,
    );
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    for var in ["APP_PORT", "JWT_ALGO", "RATE_LIMIT_PER_MINUTE"] {
        assert!(text.contains(var), "{var} not named:\n{text}");
    }

    std::fs::write(
        dir.0.join("garbage.pem"),
        "-----BEGIN PRIVATE KEY-----\nnope\n",
    )
    .unwrap();
    let o = cli(
        &dir,
        &["config", "check"],
        &[
            ("JWT_ALGO", "ES256"),
            ("JWT_PRIVATE_KEY_FILE", "garbage.pem"),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("JWT_PRIVATE_KEY_FILE"), "{}", out(&o));
}

#[tokio::test]
async fn users_create_admin_creates_or_promotes() {
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("cli.db").display());
    let secret = "test-secret-test-secret-test-secret-0123";
    let vars = [("DATABASE_URL", db.as_str()), ("JWT_SECRET", secret)];
    let args = [
        "users",
        "create-admin",
        "--email",
        "root@example.com",
        "--password-stdin",
    ];
    let o = cli(&dir, &args, &vars, Some(PASSWORD));
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("created admin root@example.com"),
        "{}",
        out(&o)
    );
    let o = cli(&dir, &args[..4], &vars, None);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("already an admin"), "{}", out(&o));
    let o = cli(
        &dir,
        &["users", "create-admin", "--email", "not an email"],
        &vars,
        None,
    );
    assert!(!o.status.success());

    let config = Config::from_vars(vars).unwrap();
    let s = start_with(config, TempDir::new()).await;
    let roles = |token: String| {
        let s = &s;
        async move {
            let a = post(s, "/auth/verify", json!({"token": token})).await;
            a.body["roles"].clone()
        }
    };
    let root = login(&s, "root@example.com", PASSWORD).await;
    assert_eq!(root.status, 200, "{}", root.body);
    assert_eq!(roles(root.str("token")).await, json!(["admin"]));

    register(&s, "bob@example.com").await;
    let o = cli(
        &dir,
        &["users", "create-admin", "--email", "bob@example.com"],
        &vars,
        None,
    );
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("promoted bob@example.com"), "{}", out(&o));
    let bob = login(&s, "bob@example.com", PASSWORD).await;
    assert_eq!(roles(bob.str("token")).await, json!(["admin"]));
    s.stop().await.unwrap();
}
