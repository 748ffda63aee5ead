//! The standard endpoints of the HTTP contract over plain `http` types,
//! mountable in hyper, axum/tower or anything that speaks `http::Request`.
//!
//! [`Api`] answers every route of [`ROUTES`] (documented by
//! [`openapi::document`], served at `GET /openapi.json`), plus `GET /metrics`
//! (Prometheus text). Around every request it adds the security headers, the
//! request id (response header, and a `request` tracing span at DEBUG), CORS from
//! `CORS_ORIGINS`, and the per-IP rate limits of [`ratelimit`]. It is a
//! `tower_service::Service`, so tower-based frameworks mount it as-is.
//!
//! ```no_run
//! # async fn run(auth: std::sync::Arc<dyn meetinity_auth::AuthService>) {
//! use meetinity_auth::http::{Api, ApiSettings};
//! let api = Api::new(auth, ApiSettings::default());
//! let req = http::Request::get("/health").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
//! let res = api.handle(req).await;
//! assert_eq!(res.status(), 200);
//! # }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::cache::Cache;
use crate::error::{Error, ErrorKind, Result};
use crate::model::RequestContext;
use crate::secret::{OneTimeToken, Password, RefreshToken};
use crate::service::{AuthService, Callback, Registration, TokenSet};
use crate::token::AccessClaims;

mod metrics;
pub mod openapi;
pub mod ratelimit;
mod tower;
mod users;

pub use metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;

/// The name of the cookie that binds a login flow to the browser that started it.
pub const FLOW_COOKIE: &str = "mt_flow";

/// The peer address of a connection, inserted by the server as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest accepted body (`MAX_BODY_BYTES`); larger gets 413.
    pub max_body_bytes: usize,
    /// Allowed CORS origins (`CORS_ORIGINS`); `*` allows any origin without credentials.
    pub cors_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpAddr>,
    /// Whether cookies get the `Secure` attribute (`PUBLIC_BASE_URL` is https).
    pub secure_cookies: bool,
    /// Requests per minute per client IP on each `/auth/*` entry point
    /// (`RATE_LIMIT_PER_MINUTE`; 0 = no limit). Counted in the cache given to
    /// [`Api::with_cache`] (or [`Api::for_authenticator`]).
    pub rate_limit_per_minute: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1_048_576,
            cors_origins: vec!["*".into()],
            trusted_proxies: Vec::new(),
            secure_cookies: false,
            rate_limit_per_minute: 60,
        }
    }
}

impl ApiSettings {
    /// Settings from the configuration.
    pub fn from_config(c: &crate::Config) -> Self {
        Self {
            max_body_bytes: c.max_body_bytes,
            cors_origins: c.cors_origins.clone(),
            trusted_proxies: c.trusted_proxies.clone(),
            secure_cookies: c.public_base_url.starts_with("https://"),
            rate_limit_per_minute: c.rate_limit_per_minute,
        }
    }
}

/// The standard endpoints, ready to serve requests.
#[derive(Debug, Clone)]
pub struct Api {
    service: Arc<dyn AuthService>,
    settings: Arc<ApiSettings>,
    common: Arc<CommonHeaders>,
    metrics: Arc<metrics::Metrics>,
    limiter: Option<ratelimit::RateLimiter>,
    users: Option<Arc<dyn crate::store::UserStore>>,
    mailer: Option<Arc<dyn crate::mail::Mailer>>,
    backend: Option<crate::service::Backend>,
}

type Res = Response<Full<Bytes>>;

/// What a handler produces before the common headers are added.
struct Reply {
    status: StatusCode,
    /// The JSON body, already serialized.
    body: Option<Bytes>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reply {
    fn json(status: StatusCode, body: Value) -> Self {
        Self::json_of(status, &body)
    }

    /// A JSON body serialized straight from `body`: the hot endpoints skip
    /// building a `serde_json::Value` first (benches/README.md).
    fn json_of(status: StatusCode, body: &impl serde::Serialize) -> Self {
        Self {
            status,
            body: Some(Bytes::from({
                // The hot answers (verify, profile) are 200-1,000 bytes:
                // one allocation instead of growing from serde_json's 128.
                let mut buf = Vec::with_capacity(512);
                match serde_json::to_writer(&mut buf, body) {
                    Ok(()) => buf,
                    Err(_) => Vec::new(),
                }
            })),
            headers: Vec::new(),
        }
    }

    fn empty(status: StatusCode) -> Self {
        Self {
            status,
            body: None,
            headers: Vec::new(),
        }
    }
}

/// `X-Request-Id`, on every answer.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `application/json; charset=utf-8`.
const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

/// The security headers of every answer (OWASP's REST Security Cheat
/// Sheet): no sniffing, no referrer, no caching, no framing.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

/// The headers every answer carries, built once: one clone of this map per
/// request costs a fraction of inserting them one by one
/// (benches/README.md). The request id's value is a placeholder, replaced
/// in place.
#[derive(Debug)]
struct CommonHeaders {
    /// For an answer with a (JSON) body.
    json: HeaderMap,
    /// For an answer without a body: no `Content-Type`.
    empty: HeaderMap,
}

impl CommonHeaders {
    fn new(settings: &ApiSettings) -> Self {
        let build = |json: bool| {
            let mut h = HeaderMap::with_capacity(10);
            // First: `with_common_headers` finds it without hashing its name.
            h.insert(X_REQUEST_ID, HeaderValue::from_static("-"));
            if json {
                h.insert(header::CONTENT_TYPE, JSON);
            }
            for (name, value) in SECURITY_HEADERS {
                h.insert(name, HeaderValue::from_static(value));
            }
            if settings.secure_cookies {
                h.insert(
                    header::STRICT_TRANSPORT_SECURITY,
                    HeaderValue::from_static("max-age=31536000"),
                );
            }
            h
        };
        Self {
            json: build(true),
            empty: build(false),
        }
    }
}

/// Puts the common headers under `res`'s own: a name both have keeps the
/// answer's value (`Cache-Control` of the key set, `Content-Type` of
/// `/metrics`), every other is added (several `Set-Cookie` stay several).
fn with_common_headers(res: &mut Res, common: &CommonHeaders, request_id: HeaderValue) {
    let has_body = http_body::Body::size_hint(res.body()).exact() != Some(0);
    let base = if has_body {
        &common.json
    } else {
        &common.empty
    };
    let own = std::mem::replace(res.headers_mut(), base.clone());
    let h = res.headers_mut();
    if let Some((name, value)) = h.iter_mut().next() {
        debug_assert_eq!(name, X_REQUEST_ID);
        *value = request_id;
    }
    if own.is_empty() {
        return;
    }
    let mut last: Option<HeaderName> = None;
    for (name, value) in own {
        if let Some(name) = name {
            if h.contains_key(&name) {
                h.insert(name.clone(), value);
            } else {
                h.append(name.clone(), value);
            }
            last = Some(name);
        } else if let Some(name) = &last {
            h.append(name.clone(), value);
        }
    }
}

/// A new request id: a v4 UUID from the thread-local CSPRNG (no `getrandom`
/// syscall per request).
fn new_request_id() -> HeaderValue {
    // One u128, not `[u8; 16]`: the array is drawn a byte at a time.
    let id = uuid::Builder::from_random_bytes(rand::random::<u128>().to_le_bytes()).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Renders an error as the contract's envelope, with `WWW-Authenticate` and
/// `Retry-After` where they apply.
pub fn error_response(e: &Error) -> Response<Full<Bytes>> {
    log_failure(e, None);
    let mut res = error_body(e);
    res.headers_mut().insert(header::CONTENT_TYPE, JSON);
    res
}

/// Logs the server-side failures (5xx): internal errors and unavailable
/// backends, with the request's id when known.
fn log_failure(e: &Error, request_id: Option<&str>) {
    let id = request_id.unwrap_or("-");
    if e.kind() == ErrorKind::Internal || e.kind() == ErrorKind::Config {
        tracing::error!(error = %e, request_id = %id, "request failed");
    } else if e.kind() == ErrorKind::Unavailable {
        tracing::warn!(error = %e, request_id = %id, "backend unavailable");
    }
}

/// The envelope of [`error_response`], without the logging (and without
/// `Content-Type`, which [`Api::handle`] adds with the common headers).
fn error_body(e: &Error) -> Response<Full<Bytes>> {
    let mut res = json_response(
        StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_body(),
    );
    let h = res.headers_mut();
    match e.kind() {
        ErrorKind::MissingToken => {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        ErrorKind::InvalidToken => {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        _ => {}
    }
    if e.kind() == ErrorKind::MethodNotAllowed {
        if let Some(v) = e
            .details()
            .and_then(|d| d["allow"].as_str())
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            h.insert(header::ALLOW, v);
        }
    }
    if let Some(after) = e.retry_after() {
        if let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string()) {
            h.insert(header::RETRY_AFTER, v);
        }
    }
    res
}

/// Parses a JSON object (anything else is [`ErrorKind::InvalidJson`]).
fn json_object(bytes: &[u8]) -> Result<Value> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::msg(
            ErrorKind::InvalidJson,
            format!("The body is not valid JSON: {e}."),
        )
    })?;
    if !value.is_object() {
        return Err(Error::msg(
            ErrorKind::InvalidJson,
            "The body must be a JSON object.",
        ));
    }
    Ok(value)
}

fn json_response(status: StatusCode, body: &Value) -> Res {
    json_bytes_response(
        status,
        Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
    )
}

/// A JSON answer; `Content-Type` comes with the common headers
/// ([`Api::handle`]).
fn json_bytes_response(status: StatusCode, bytes: Bytes) -> Res {
    let mut res = Response::new(Full::new(bytes));
    *res.status_mut() = status;
    res
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    redirect_uri: Option<String>,
}

#[derive(Deserialize)]
struct TokenBody {
    token: Option<String>,
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

#[derive(Deserialize)]
struct RegisterBody {
    email: String,
    password: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

#[derive(Deserialize)]
struct EmailBody {
    email: String,
}

#[derive(Deserialize)]
struct ResetBody {
    token: String,
    password: String,
}

#[derive(Deserialize)]
struct ChangeBody {
    current_password: String,
    new_password: String,
}

fn token_set_json(t: &TokenSet) -> Value {
    serde_json::to_value(t).unwrap_or_else(|_| json!({}))
}

fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    let q = uri.query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn bearer(headers: &HeaderMap) -> Result<&str> {
    match headers.get(header::AUTHORIZATION) {
        None => bearer_token(None),
        Some(v) => bearer_token(Some(
            v.to_str()
                .map_err(|_| Error::new(ErrorKind::InvalidToken))?,
        )),
    }
}

/// The token of an `Authorization: Bearer <token>` header value, for
/// extractors in any framework: no header is [`ErrorKind::MissingToken`],
/// another scheme or an empty token [`ErrorKind::InvalidToken`] (both
/// rendered by [`error_response`] with the right `WWW-Authenticate`).
///
/// ```
/// use meetinity_auth::http::bearer_token;
/// assert_eq!(bearer_token(Some("Bearer abc")).unwrap(), "abc");
/// assert_eq!(bearer_token(None).unwrap_err().reason(), "missing_token");
/// assert_eq!(bearer_token(Some("Basic abc")).unwrap_err().reason(), "invalid_token");
/// ```
pub fn bearer_token(authorization: Option<&str>) -> Result<&str> {
    let Some(value) = authorization else {
        return Err(Error::new(ErrorKind::MissingToken));
    };
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(Error::new(ErrorKind::InvalidToken)),
    }
}

/// Every route the endpoints answer: `(path template, methods)`. A path
/// matching no template answers 404 and a method not listed 405 (with
/// `Allow`) before any handler runs; literal segments win over `{params}`.
/// The OpenAPI document lists exactly these operations (a test checks both
/// ways), and metrics label requests with the template. A new endpoint is
/// added here, in [`openapi`], and in the router.
pub const ROUTES: &[(&str, &[Method])] = &[
    ("/health", &[Method::GET]),
    ("/ready", &[Method::GET]),
    ("/metrics", &[Method::GET]),
    ("/openapi.json", &[Method::GET]),
    ("/.well-known/jwks.json", &[Method::GET]),
    ("/auth/verify", &[Method::POST]),
    ("/auth/profile", &[Method::GET]),
    ("/auth/refresh", &[Method::POST]),
    ("/auth/logout", &[Method::POST]),
    ("/auth/logout-all", &[Method::POST]),
    ("/auth/register", &[Method::POST]),
    ("/auth/login", &[Method::POST]),
    ("/auth/email/verify", &[Method::GET, Method::POST]),
    ("/auth/email/verify/resend", &[Method::POST]),
    ("/auth/password/forgot", &[Method::POST]),
    ("/auth/password/reset", &[Method::POST]),
    ("/auth/password/change", &[Method::POST]),
    ("/auth/{provider}", &[Method::POST]),
    ("/auth/{provider}/callback", &[Method::GET]),
    ("/users", &[Method::GET]),
    ("/users/search", &[Method::GET]),
    (
        "/users/{id}",
        &[Method::GET, Method::PATCH, Method::PUT, Method::DELETE],
    ),
    ("/users/{id}/preferences", &[Method::PUT]),
    ("/users/{id}/privacy", &[Method::PUT]),
    ("/users/{id}/social-accounts", &[Method::GET]),
    ("/users/{id}/social-accounts/{provider}", &[Method::DELETE]),
    ("/users/{id}/connections", &[Method::GET, Method::POST]),
    (
        "/users/{id}/connections/{connection_id}",
        &[Method::PATCH, Method::DELETE],
    ),
    ("/users/{id}/sessions", &[Method::GET]),
    ("/users/{id}/sessions/{session_id}", &[Method::DELETE]),
    ("/users/{id}/export", &[Method::GET]),
    ("/users/{id}/erase", &[Method::POST]),
    ("/admin/audit", &[Method::GET]),
];

/// The route of [`ROUTES`] that `path` matches: same number of segments,
/// every literal segment equal, every `{param}` non-empty; the most
/// literal segments win.
pub fn match_route(path: &str) -> Option<(&'static str, &'static [Method])> {
    route_index(path).map(|i| ROUTES[i])
}

/// [`match_route`]'s index in [`ROUTES`].
fn route_index(path: &str) -> Option<usize> {
    // The hot endpoints as clients send them, without splitting the path.
    match path {
        "/health" => Some(HEALTH),
        "/auth/verify" => Some(VERIFY),
        "/auth/profile" => Some(PROFILE),
        _ => match_split(path),
    }
}

/// The answer of `GET /health`.
const HEALTH_BODY: &[u8] = br#"{"status":"ok"}"#;

/// Indices in [`ROUTES`] of the hot endpoints (a test checks them).
const HEALTH: usize = 0;
const VERIFY: usize = 5;
const PROFILE: usize = 6;

/// [`route_index`] for any path.
fn match_split(path: &str) -> Option<usize> {
    // The templates are split once, the path without allocating
    // (benches/README.md).
    static SPLIT: std::sync::LazyLock<Vec<Vec<&'static str>>> = std::sync::LazyLock::new(|| {
        ROUTES
            .iter()
            .map(|r| r.0.trim_matches('/').split('/').collect())
            .collect()
    });
    const MAX_SEGMENTS: usize = 8;
    let mut segs = [""; MAX_SEGMENTS];
    let mut n = 0;
    for s in path.trim_matches('/').split('/') {
        // No template is this long.
        let slot = segs.get_mut(n)?;
        *slot = s;
        n += 1;
    }
    let segs = &segs[..n];
    let mut best: Option<(usize, usize)> = None;
    for (i, tsegs) in SPLIT.iter().enumerate() {
        if tsegs.len() != n {
            continue;
        }
        let mut literals = 0;
        let fits = tsegs.iter().zip(segs).all(|(t, s)| {
            if t.starts_with('{') {
                !s.is_empty()
            } else {
                literals += 1;
                t == s
            }
        });
        if fits && best.is_none_or(|(_, l)| literals > l) {
            best = Some((i, literals));
        }
    }
    best.map(|(i, _)| i)
}

/// The `Allow` header of a route (`HEAD` comes with `GET`).
fn allow_header(methods: &[Method]) -> String {
    let mut names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    if methods.contains(&Method::GET) {
        names.push("HEAD");
    }
    names.join(", ")
}

impl Reply {
    fn into_response(self) -> Res {
        let mut r = match self.body {
            Some(body) => json_bytes_response(self.status, body),
            None => {
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = self.status;
                r
            }
        };
        for (k, v) in self.headers {
            r.headers_mut().append(k, v);
        }
        r
    }
}

/// How a request signs in, for the `meetinity_logins_total` metric.
struct LoginAttempt {
    method: &'static str,
    provider: String,
}

impl Api {
    /// The endpoints over `service`. Rate limits need a cache
    /// ([`Api::with_cache`]); [`Api::for_authenticator`] wires everything.
    pub fn new(service: Arc<dyn AuthService>, settings: ApiSettings) -> Self {
        Self {
            service,
            common: Arc::new(CommonHeaders::new(&settings)),
            settings: Arc::new(settings),
            metrics: Arc::new(metrics::Metrics::new()),
            limiter: None,
            users: None,
            mailer: None,
            backend: None,
        }
    }

    /// The endpoints over an [`Authenticator`](crate::service::Authenticator),
    /// with its cache counting the rate limits (shared by every instance with
    /// Redis) and its user cache's hits and misses in `/metrics`.
    pub fn for_authenticator(auth: crate::service::Authenticator, settings: ApiSettings) -> Self {
        let cache = Arc::clone(&auth.parts().cache);
        let users = Arc::clone(&auth.parts().users);
        let mailer = Arc::clone(&auth.parts().mailer);
        Self::new(Arc::new(auth), settings)
            .with_cache(cache)
            .with_user_store(users)
            .with_mailer(mailer)
    }

    /// Reports the mailer's failures in `/metrics`.
    pub fn with_mailer(mut self, mailer: Arc<dyn crate::mail::Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    /// Counts the per-IP rate limits of the `/auth/*` entry points in
    /// `cache` (`RATE_LIMIT_PER_MINUTE`; 0 leaves them off).
    pub fn with_cache(mut self, cache: Arc<dyn Cache>) -> Self {
        self.limiter = ratelimit::RateLimiter::new(cache, self.settings.rate_limit_per_minute);
        self
    }

    /// Reports the user cache's hits and misses in `/metrics` (from
    /// [`UserStore::cache_stats`](crate::store::UserStore::cache_stats)).
    pub fn with_user_store(mut self, users: Arc<dyn crate::store::UserStore>) -> Self {
        self.users = Some(users);
        self
    }

    /// Reports the database pool (connections in use and idle) in `/metrics`.
    pub fn with_backend(mut self, backend: crate::service::Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// The service behind the endpoints.
    pub fn service(&self) -> &Arc<dyn AuthService> {
        &self.service
    }

    /// The settings of the endpoints.
    pub fn settings(&self) -> &ApiSettings {
        &self.settings
    }

    /// Serves one request. Never fails: every error becomes the contract's
    /// envelope. Every response carries `X-Request-Id` (the caller's, if it
    /// is 1-128 visible ASCII characters, else a new UUID), `nosniff`,
    /// `Referrer-Policy: no-referrer`, `Cache-Control: no-store` and the CORS
    /// headers; the request runs in a `request` tracing span (DEBUG) with that id.
    /// The client's address, for rate limits and sessions, is the request's
    /// [`ClientAddr`] extension ([`Api::handle_from`] takes it directly).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.serve(req, None).await
    }

    /// [`Api::handle`] for a request from `peer`, without a [`ClientAddr`]
    /// extension: the server inserts it only for the routes that use it.
    pub async fn handle_from<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<Full<Bytes>>
    where
        B: http_body::Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.serve(req, Some(peer)).await
    }

    async fn serve<B>(&self, mut req: Request<B>, peer: Option<SocketAddr>) -> Response<Full<Bytes>>
    where
        B: http_body::Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        // One pass over the request's few headers instead of two lookups
        // that hash the names (the first value of each counts, as `get`).
        let (mut caller_id, mut origin) = (None, None);
        for (name, value) in req.headers() {
            if *name == X_REQUEST_ID {
                caller_id.get_or_insert(value);
            } else if name == header::ORIGIN {
                origin.get_or_insert(value);
            }
        }
        let origin = origin.cloned();
        let request_id = caller_id
            .filter(|v| {
                let b = v.as_bytes();
                !b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic)
            })
            .cloned()
            .unwrap_or_else(new_request_id);
        let id = request_id.to_str().unwrap_or("-");
        let index = route_index(req.uri().path());
        let template = index.map_or("unmatched", |i| ROUTES[i].0);
        // The hot endpoints need neither the client's address nor its context.
        if let Some(peer) = peer {
            if !matches!(index, Some(HEALTH | VERIFY | PROFILE)) {
                req.extensions_mut().insert(ClientAddr(peer));
            }
        }
        let method = metrics::method_label(req.method());
        // At DEBUG, as tower-http's `TraceLayer` does: at INFO the fmt
        // subscriber would format the span's fields on every request, ~6 % of
        // the server's CPU on `/health` (benches/README.md). Failures (5xx)
        // are logged with the id at any level.
        let span = tracing::debug_span!("request", request_id = %id, method, route = template);
        let is_preflight = req.method() == Method::OPTIONS
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let get = req.method() == Method::GET || req.method() == Method::HEAD;
        let mut res = if is_preflight {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        } else if index == Some(HEALTH) && get {
            // The liveness probe: nothing to dispatch.
            json_bytes_response(StatusCode::OK, Bytes::from_static(HEALTH_BODY))
        } else {
            let login = self.login_attempt(template, &req);
            let outcome = if span.is_disabled() {
                self.dispatch(req, index).await
            } else {
                self.dispatch(req, index).instrument(span.clone()).await
            };
            self.count_outcome(template, login, &outcome);
            match outcome {
                Ok(r) => r,
                Err(e) => span.in_scope(|| {
                    log_failure(&e, Some(id));
                    error_body(&e)
                }),
            }
        };
        with_common_headers(&mut res, &self.common, request_id);
        self.cors(origin, is_preflight, res.headers_mut());
        let status = res.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics.request(method, index, status, elapsed);
        span.in_scope(|| {
            tracing::debug!(
                status,
                elapsed_ms = elapsed.as_secs_f64() * 1000.0,
                "request answered"
            );
        });
        res
    }

    /// Checks the route and method, applies the rate limit, and runs the handler.
    async fn dispatch<B>(&self, req: Request<B>, index: Option<usize>) -> Result<Res>
    where
        B: http_body::Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some((template, methods)) = index.map(|i| ROUTES[i]) else {
            return Err(Error::new(ErrorKind::NotFound));
        };
        let m = req.method();
        if !(methods.contains(m) || (*m == Method::HEAD && methods.contains(&Method::GET))) {
            return Err(Error::new(ErrorKind::MethodNotAllowed)
                .with_details(json!({ "allow": allow_header(methods) })));
        }
        if let Some(limiter) = &self.limiter {
            if ratelimit::LIMITED_ROUTES.contains(&template) {
                if let Some(ip) = self.client_ip(&req) {
                    if let Err(e) = limiter.check(template, ip).await {
                        self.metrics.rate_limited(template);
                        return Err(e);
                    }
                }
            }
        }
        match template {
            "/metrics" => self.metrics_response(),
            "/openapi.json" => Ok(openapi_response()),
            _ => self.route(req, index).await.map(Reply::into_response),
        }
    }

    fn login_attempt<B>(&self, template: &str, req: &Request<B>) -> Option<LoginAttempt> {
        let (method, provider) = match (template, req.method()) {
            ("/auth/login", &Method::POST) => ("password", "local".to_owned()),
            ("/auth/register", &Method::POST) => ("register", "local".to_owned()),
            ("/auth/{provider}/callback", &Method::GET) => {
                let name = req.uri().path().trim_matches('/').split('/').nth(1)?;
                // Only configured names become label values.
                let known = self.service.providers().iter().any(|p| p == name);
                (
                    "oidc",
                    if known {
                        name.to_owned()
                    } else {
                        "unknown".to_owned()
                    },
                )
            }
            _ => return None,
        };
        Some(LoginAttempt { method, provider })
    }

    fn count_outcome(&self, template: &str, login: Option<LoginAttempt>, outcome: &Result<Res>) {
        let reason = outcome.as_ref().err().map(Error::reason);
        if let Some(login) = login {
            self.metrics
                .login(login.method, &login.provider, reason.unwrap_or("success"));
        }
        if template == "/auth/refresh"
            && outcome
                .as_ref()
                .err()
                .is_some_and(|e| e.kind() == ErrorKind::RefreshTokenReused)
        {
            self.metrics.refresh_reuse();
        }
    }

    fn metrics_response(&self) -> Result<Res> {
        let snapshot = metrics::Snapshot {
            cache: self.users.as_ref().and_then(|u| u.cache_stats()),
            pool: self.backend.as_ref().and_then(pool_stats),
            mail_failures: self.mailer.as_ref().map(|m| m.failures()),
        };
        let text = self
            .metrics
            .render(snapshot)
            .map_err(|e| Error::internal(format!("metrics could not be encoded: {e}")))?;
        let mut res = Response::new(Full::new(Bytes::from(text)));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        );
        Ok(res)
    }

    fn cors(&self, origin: Option<HeaderValue>, preflight: bool, h: &mut HeaderMap) {
        let Some(origin) = origin else { return };
        let origins = &self.settings.cors_origins;
        let any = origins.iter().any(|o| o == "*");
        let listed = origin
            .to_str()
            .is_ok_and(|o| origins.iter().any(|a| a.eq_ignore_ascii_case(o)));
        if listed {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        } else if any {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        } else {
            // Refused: no CORS header, but the answer still depends on the origin.
            h.append(header::VARY, HeaderValue::from_static("Origin"));
            return;
        }
        if preflight {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type, x-request-id"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-request-id, retry-after, www-authenticate"),
        );
    }

    /// The client's address: the connection's peer ([`ClientAddr`]), or
    /// behind a trusted proxy the nearest untrusted `X-Forwarded-For` entry.
    fn client_ip(&self, req: &Request<impl Sized>) -> Option<IpAddr> {
        let peer = req.extensions().get::<ClientAddr>().map(|a| a.0.ip());
        match peer {
            Some(p) if self.settings.trusted_proxies.contains(&p) => req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.split(',')
                        .rev()
                        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
                        .find(|ip| !self.settings.trusted_proxies.contains(ip))
                })
                .or(Some(p)),
            other => other,
        }
    }

    fn context(&self, req: &Request<impl Sized>) -> RequestContext {
        RequestContext {
            ip: self.client_ip(req).map(|i| i.to_string()),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(512).collect()),
        }
    }

    async fn body<B, T>(&self, req: Request<B>) -> Result<T>
    where
        B: http_body::Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        T: DeserializeOwned,
    {
        let value = match self.json_bytes(req).await? {
            None => Value::Object(Default::default()),
            Some(bytes) => {
                // Fast path (every verify takes it): a flat object straight
                // into `T`, without a `Value` in between. Anything nested, or
                // refused, takes the path below, which keeps its limits (depth)
                // and gives the precise error.
                let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
                if let Some(rest) = start.and_then(|i| bytes[i..].strip_prefix(b"{")) {
                    if memchr::memchr2(b'{', b'[', rest).is_none() {
                        if let Ok(body) = serde_json::from_slice::<T>(&bytes) {
                            return Ok(body);
                        }
                    }
                }
                json_object(&bytes)?
            }
        };
        serde_json::from_value(value).map_err(|e| {
            Error::msg(
                ErrorKind::Validation,
                format!("The body does not fit this endpoint: {e}."),
            )
        })
    }

    /// Reads a JSON object body (empty body = `{}`).
    async fn json_value<B>(&self, req: Request<B>) -> Result<Value>
    where
        B: http_body::Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match self.json_bytes(req).await? {
            None => Ok(Value::Object(Default::default())),
            Some(bytes) => json_object(&bytes),
        }
    }

    /// Reads a body declared (or sniffed) as JSON; `None` when it is empty.
    async fn json_bytes<B>(&self, req: Request<B>) -> Result<Option<Bytes>>
    where
        B: http_body::Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = self.settings.max_body_bytes;
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > limit as u64 {
                return Err(Error::new(ErrorKind::PayloadTooLarge));
            }
        }
        // Whether a declared type is JSON, decided before the body is taken
        // (and without copying the header to lowercase it).
        let json_declared = req.headers().get(header::CONTENT_TYPE).map(|v| {
            let mime = v
                .to_str()
                .unwrap_or("invalid")
                .split(';')
                .next()
                .unwrap_or("");
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
                || mime
                    .len()
                    .checked_sub(5)
                    .and_then(|i| mime.get(i..))
                    .is_some_and(|end| end.eq_ignore_ascii_case("+json"))
        });
        let bytes = match Limited::new(req.into_body(), limit).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    return Err(Error::new(ErrorKind::PayloadTooLarge));
                }
                return Err(Error::msg(
                    ErrorKind::BadRequest,
                    "The body could not be read.",
                ));
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        if let Some(json) = json_declared {
            if !json {
                return Err(Error::new(ErrorKind::UnsupportedMediaType));
            }
        }
        Ok(Some(bytes))
    }

    async fn authed(&self, headers: &HeaderMap) -> Result<AccessClaims> {
        let token = bearer(headers)?;
        self.service.verify(token).await
    }

    /// `POST /auth/verify`: the token from the body, or else the Bearer header.
    async fn verify_endpoint<B>(&self, req: Request<B>) -> Result<Reply>
    where
        B: http_body::Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Only this header is needed once the body is read (cloning
        // the whole map cost every verify an allocation).
        let authorization = req.headers().get(header::AUTHORIZATION).cloned();
        let body: TokenBody = self.body(req).await?;
        let claims = match body.token {
            Some(t) if !t.is_empty() => self.service.verify(&t).await,
            Some(_) => Err(Error::msg(ErrorKind::BadRequest, "`token` is empty.")),
            None if authorization.is_some() => {
                let value = authorization.as_ref().map(|v| v.to_str());
                match value {
                    Some(Ok(v)) => self.service.verify(bearer_token(Some(v))?).await,
                    _ => Err(Error::new(ErrorKind::InvalidToken)),
                }
            }
            None => Err(Error::msg(
                ErrorKind::BadRequest,
                "Send the token as {\"token\": \"...\"} or as a Bearer header.",
            )),
        }?;
        /// The answer, serialized without an intermediate `Value`
        /// (keys in the order `json!` gave them).
        #[derive(serde::Serialize)]
        struct Verified<'a> {
            email: &'a str,
            exp: i64,
            roles: &'a [String],
            sid: &'a str,
            sub: &'a str,
            valid: bool,
        }
        Ok(Reply::json_of(
            StatusCode::OK,
            &Verified {
                email: &claims.email,
                exp: claims.exp,
                roles: &claims.roles,
                sid: &claims.sid,
                sub: &claims.sub,
                valid: true,
            },
        ))
    }

    async fn route<B>(&self, req: Request<B>, index: Option<usize>) -> Result<Reply>
    where
        B: http_body::Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // The hot endpoints first: they need neither the path's segments nor
        // the client's context (address and user agent). `dispatch` has
        // checked the method.
        match index {
            // (`handle` answers it before dispatching; here for `dispatch` alone.)
            Some(HEALTH) => {
                return Ok(Reply {
                    status: StatusCode::OK,
                    body: Some(Bytes::from_static(HEALTH_BODY)),
                    headers: Vec::new(),
                })
            }
            Some(VERIFY) => return self.verify_endpoint(req).await,
            Some(PROFILE) => {
                let claims = self.authed(req.headers()).await?;
                let user = self.service.profile(&claims).await?;
                /// `{"user": ...}` without an intermediate `Value`.
                #[derive(serde::Serialize)]
                struct Profile<'a> {
                    user: &'a crate::model::User,
                }
                return Ok(Reply::json_of(StatusCode::OK, &Profile { user: &user }));
            }
            _ => {}
        }
        // Boxed: the other routes' state is large, and moving it around (or
        // reserving it) on every hot request showed up as `memcpy`.
        Box::pin(self.route_cold(req)).await
    }

    /// Every route but the hot ones.
    async fn route_cold<B>(&self, req: Request<B>) -> Result<Reply>
    where
        B: http_body::Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().to_owned();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let m = req.method().clone();
        let ctx = self.context(&req);
        let svc = &self.service;
        let allow = |methods: &'static str| -> Result<Reply> {
            Err(Error::new(ErrorKind::MethodNotAllowed).with_details(json!({ "allow": methods })))
        };
        let get = m == Method::GET || m == Method::HEAD;
        match segs.as_slice() {
            ["health"] => allow("GET"),
            ["ready"] if get => {
                let r = svc.readiness().await;
                if r.is_ready() {
                    Ok(Reply::json(
                        StatusCode::OK,
                        json!({"status": "ready", "checks": r.checks}),
                    ))
                } else {
                    let failing: Vec<&str> =
                        r.checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
                    Err(Error::msg(
                        ErrorKind::Unavailable,
                        format!("Not ready: {} not answering.", failing.join(", ")),
                    )
                    .with_details(json!({ "checks": r.checks })))
                }
            }
            ["ready"] => allow("GET"),
            [".well-known", "jwks.json"] if get => Ok(Reply::json(StatusCode::OK, svc.jwks())),
            [".well-known", "jwks.json"] => allow("GET"),
            ["auth", "verify"] => allow("POST"),
            ["auth", "profile"] => allow("GET"),
            ["auth", "refresh"] if m == Method::POST => {
                let body: RefreshBody = self.body(req).await?;
                let set = svc
                    .refresh(&RefreshToken::new(body.refresh_token), &ctx)
                    .await?;
                Ok(Reply::json(StatusCode::OK, token_set_json(&set)))
            }
            ["auth", "refresh"] => allow("POST"),
            ["auth", "logout"] if m == Method::POST => {
                let claims = self.authed(req.headers()).await?;
                svc.logout(&claims, &ctx).await?;
                Ok(Reply::empty(StatusCode::NO_CONTENT))
            }
            ["auth", "logout"] => allow("POST"),
            ["auth", "logout-all"] if m == Method::POST => {
                let claims = self.authed(req.headers()).await?;
                svc.logout_all(&claims, &ctx).await?;
                Ok(Reply::empty(StatusCode::NO_CONTENT))
            }
            ["auth", "logout-all"] => allow("POST"),
            ["auth", "register"] if m == Method::POST => {
                let b: RegisterBody = self.body(req).await?;
                let set = svc
                    .register(
                        Registration {
                            email: b.email,
                            password: Password::new(b.password),
                            name: b.name,
                        },
                        &ctx,
                    )
                    .await?;
                Ok(Reply::json(StatusCode::CREATED, token_set_json(&set)))
            }
            ["auth", "register"] => allow("POST"),
            ["auth", "login"] if m == Method::POST => {
                let b: LoginBody = self.body(req).await?;
                let set = svc
                    .login(&b.email, &Password::new(b.password), &ctx)
                    .await?;
                Ok(Reply::json(StatusCode::OK, token_set_json(&set)))
            }
            ["auth", "login"] => allow("POST"),
            ["auth", "email", "verify"] if m == Method::POST || get => {
                let token = if get {
                    query_param(req.uri(), "token")
                } else {
                    let b: TokenBody = self.body(req).await?;
                    b.token
                };
                let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
                    Error::msg(ErrorKind::InvalidOneTimeToken, "`token` is required.")
                })?;
                let user = svc.verify_email(&OneTimeToken::new(token), &ctx).await?;
                Ok(Reply::json(StatusCode::OK, json!({ "user": user })))
            }
            ["auth", "email", "verify"] => allow("GET, POST"),
            ["auth", "email", "verify", "resend"] if m == Method::POST => {
                let claims = self.authed(req.headers()).await?;
                svc.resend_verification(&claims, &ctx).await?;
                Ok(Reply::json(
                    StatusCode::ACCEPTED,
                    json!({"status": "accepted"}),
                ))
            }
            ["auth", "email", "verify", "resend"] => allow("POST"),
            ["auth", "password", "forgot"] if m == Method::POST => {
                let b: EmailBody = self.body(req).await?;
                svc.forgot_password(&b.email, &ctx).await?;
                Ok(Reply::json(
                    StatusCode::ACCEPTED,
                    json!({"status": "accepted"}),
                ))
            }
            ["auth", "password", "forgot"] => allow("POST"),
            ["auth", "password", "reset"] if m == Method::POST => {
                let b: ResetBody = self.body(req).await?;
                svc.reset_password(
                    &OneTimeToken::new(b.token),
                    &Password::new(b.password),
                    &ctx,
                )
                .await?;
                Ok(Reply::empty(StatusCode::NO_CONTENT))
            }
            ["auth", "password", "reset"] => allow("POST"),
            ["auth", "password", "change"] if m == Method::POST => {
                let claims = self.authed(req.headers()).await?;
                let b: ChangeBody = self.body(req).await?;
                svc.change_password(
                    &claims,
                    &Password::new(b.current_password),
                    &Password::new(b.new_password),
                    &ctx,
                )
                .await?;
                Ok(Reply::empty(StatusCode::NO_CONTENT))
            }
            ["auth", "password", "change"] => allow("POST"),
            ["auth", provider, "callback"] if get => {
                let uri = req.uri();
                let cb = Callback {
                    code: query_param(uri, "code"),
                    state: query_param(uri, "state"),
                    error: query_param(uri, "error"),
                    iss: query_param(uri, "iss"),
                    browser_binding: cookie(req.headers(), FLOW_COOKIE),
                };
                let provider = (*provider).to_owned();
                let set = svc.finish_login(&provider, &cb, &ctx).await?;
                let mut reply = Reply::json(StatusCode::OK, token_set_json(&set));
                reply
                    .headers
                    .push((header::SET_COOKIE, self.flow_cookie("", 0)));
                Ok(reply)
            }
            ["auth", _, "callback"] => allow("GET"),
            ["auth", provider] if m == Method::POST => {
                let provider = (*provider).to_owned();
                let browser = req.headers().contains_key("sec-fetch-mode")
                    || req.headers().contains_key(header::ORIGIN);
                let b: StartBody = self.body(req).await?;
                let start = svc
                    .start_login(&provider, b.redirect_uri.as_deref(), browser, &ctx)
                    .await?;
                let mut reply = Reply::json(
                    StatusCode::OK,
                    json!({"auth_url": start.auth_url, "state": start.state}),
                );
                if let Some(binding) = &start.browser_binding {
                    reply
                        .headers
                        .push((header::SET_COOKIE, self.flow_cookie(binding, 600)));
                }
                Ok(reply)
            }
            ["auth", _] => allow("POST"),
            ["users", ..] | ["admin", ..] => users::route(self, req, &segs, ctx).await,
            _ => Err(Error::new(ErrorKind::NotFound)),
        }
    }

    fn flow_cookie(&self, value: &str, max_age: u32) -> HeaderValue {
        let secure = if self.settings.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        HeaderValue::from_str(&format!(
            "{FLOW_COOKIE}={value}; Path=/auth; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("mt_flow=; Path=/auth; Max-Age=0"))
    }
}

/// `GET /openapi.json`: the document, serialized once.
fn openapi_response() -> Res {
    static DOC: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let body = DOC
        .get_or_init(|| Bytes::from(serde_json::to_vec(&openapi::document()).unwrap_or_default()));
    let mut res = Response::new(Full::new(body.clone()));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}

/// Connections in use and idle in the backend's pool.
fn pool_stats(backend: &crate::service::Backend) -> Option<(u64, u64)> {
    #[allow(unreachable_patterns)]
    match backend {
        #[cfg(feature = "sqlite")]
        crate::service::Backend::Sqlite(s) => {
            let (size, idle) = (u64::from(s.pool().size()), s.pool().num_idle() as u64);
            Some((size.saturating_sub(idle), idle))
        }
        #[cfg(feature = "postgres")]
        crate::service::Backend::Postgres(s) => {
            let (size, idle) = (u64::from(s.pool().size()), s.pool().num_idle() as u64);
            Some((size.saturating_sub(idle), idle))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_paths_match_as_the_table_does() {
        for (path, index) in [
            ("/health", HEALTH),
            ("/auth/verify", VERIFY),
            ("/auth/profile", PROFILE),
        ] {
            assert_eq!(ROUTES[index].0, path);
            assert_eq!(route_index(path), Some(index));
            assert_eq!(match_split(path), Some(index), "{path}");
        }
        assert_eq!(route_index("/health/"), Some(HEALTH));
        assert_eq!(route_index("/users/42"), match_split("/users/42"));
        assert_eq!(route_index("/nope"), None);
    }

    #[test]
    fn common_headers_start_with_the_request_id_and_keep_the_answers_own() {
        let settings = ApiSettings {
            secure_cookies: true,
            ..ApiSettings::default()
        };
        let common = CommonHeaders::new(&settings);
        for map in [&common.json, &common.empty] {
            assert_eq!(map.iter().next().map(|(k, _)| k), Some(&X_REQUEST_ID));
            assert!(map.contains_key(header::STRICT_TRANSPORT_SECURITY));
        }
        assert!(!common.empty.contains_key(header::CONTENT_TYPE));

        let mut res = json_bytes_response(StatusCode::OK, Bytes::from_static(b"{}"));
        let h = res.headers_mut();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
        h.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        with_common_headers(&mut res, &common, HeaderValue::from_static("rid-1"));
        let h = res.headers();
        assert_eq!(h[X_REQUEST_ID], "rid-1");
        assert_eq!(h[header::CACHE_CONTROL], "max-age=60");
        assert_eq!(h.get_all(header::CACHE_CONTROL).iter().count(), 1);
        assert_eq!(h.get_all(header::SET_COOKIE).iter().count(), 2);
        assert_eq!(h[header::CONTENT_TYPE], "application/json; charset=utf-8");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");

        let mut empty = Response::new(Full::new(Bytes::new()));
        with_common_headers(&mut empty, &common, HeaderValue::from_static("rid-2"));
        assert!(!empty.headers().contains_key(header::CONTENT_TYPE));
        assert_eq!(empty.headers()[X_REQUEST_ID], "rid-2");
    }
}
