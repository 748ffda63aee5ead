//! The standard endpoints of the HTTP contract over plain `http` types,
//! mountable in hyper, axum/tower or anything that speaks `http::Request`.
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

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::model::RequestContext;
use crate::secret::{OneTimeToken, Password, RefreshToken};
use crate::service::{AuthService, Callback, Registration, TokenSet};
use crate::token::AccessClaims;

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
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1_048_576,
            cors_origins: vec!["*".into()],
            trusted_proxies: Vec::new(),
            secure_cookies: false,
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
        }
    }
}

/// The standard endpoints, ready to serve requests.
#[derive(Debug, Clone)]
pub struct Api {
    service: Arc<dyn AuthService>,
    settings: Arc<ApiSettings>,
}

type Res = Response<Full<Bytes>>;

/// What a handler produces before the common headers are added.
struct Reply {
    status: StatusCode,
    body: Option<Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reply {
    fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
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

/// Renders an error as the contract's envelope, with `WWW-Authenticate` and
/// `Retry-After` where they apply.
pub fn error_response(e: &Error) -> Response<Full<Bytes>> {
    if e.kind() == ErrorKind::Internal || e.kind() == ErrorKind::Config {
        tracing::error!(error = %e, "request failed");
    } else if e.kind() == ErrorKind::Unavailable {
        tracing::warn!(error = %e, "backend unavailable");
    }
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

fn json_response(status: StatusCode, body: &Value) -> Res {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut res = Response::new(Full::new(Bytes::from(bytes)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
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
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Error::new(ErrorKind::MissingToken));
    };
    let value = value
        .to_str()
        .map_err(|_| Error::new(ErrorKind::InvalidToken))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(Error::new(ErrorKind::InvalidToken)),
    }
}

/// The routes this module serves, for 404/405 and the OpenAPI test.
const ROUTES: &[(&str, &[Method])] = &[];

impl Api {
    /// The endpoints over `service`.
    pub fn new(service: Arc<dyn AuthService>, settings: ApiSettings) -> Self {
        Self {
            service,
            settings: Arc::new(settings),
        }
    }

    /// The service behind the endpoints.
    pub fn service(&self) -> &Arc<dyn AuthService> {
        &self.service
    }

    /// Serves one request. Never fails: every error becomes the contract's envelope.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let _ = ROUTES;
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let origin = req.headers().get(header::ORIGIN).cloned();
        let is_preflight = req.method() == Method::OPTIONS
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let mut res = if is_preflight {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        } else {
            match self.route(req).await {
                Ok(reply) => {
                    let mut r = match &reply.body {
                        Some(body) => json_response(reply.status, body),
                        None => {
                            let mut r = Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = reply.status;
                            r
                        }
                    };
                    for (k, v) in reply.headers {
                        r.headers_mut().append(k, v);
                    }
                    r
                }
                Err(e) => error_response(&e),
            }
        };
        let h = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            h.insert("x-request-id", v);
        }
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
        self.cors(origin, is_preflight, h);
        res
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

    fn context(&self, req: &Request<impl Sized>) -> RequestContext {
        let peer = req.extensions().get::<ClientAddr>().map(|a| a.0.ip());
        let ip = match peer {
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
        };
        RequestContext {
            ip: ip.map(|i| i.to_string()),
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
        let value = self.json_value(req).await?;
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
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("invalid").to_ascii_lowercase());
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
            return Ok(Value::Object(Default::default()));
        }
        if let Some(ct) = content_type {
            let mime = ct.split(';').next().unwrap_or("").trim();
            if mime != "application/json" && !mime.ends_with("+json") {
                return Err(Error::new(ErrorKind::UnsupportedMediaType));
            }
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
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

    async fn authed(&self, headers: &HeaderMap) -> Result<AccessClaims> {
        let token = bearer(headers)?;
        self.service.verify(token).await
    }

    async fn route<B>(&self, req: Request<B>) -> Result<Reply>
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
            ["health"] if get => Ok(Reply::json(StatusCode::OK, json!({"status": "ok"}))),
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
            ["auth", "verify"] if m == Method::POST => {
                let headers = req.headers().clone();
                let body: TokenBody = self.body(req).await?;
                let claims = match body.token {
                    Some(t) if !t.is_empty() => svc.verify(&t).await,
                    Some(_) => Err(Error::msg(ErrorKind::BadRequest, "`token` is empty.")),
                    None if headers.contains_key(header::AUTHORIZATION) => {
                        self.authed(&headers).await
                    }
                    None => Err(Error::msg(
                        ErrorKind::BadRequest,
                        "Send the token as {\"token\": \"...\"} or as a Bearer header.",
                    )),
                }?;
                Ok(Reply::json(
                    StatusCode::OK,
                    json!({"valid": true, "sub": claims.sub, "exp": claims.exp, "sid": claims.sid,
                           "email": claims.email, "roles": claims.roles}),
                ))
            }
            ["auth", "verify"] => allow("POST"),
            ["auth", "profile"] if get => {
                let claims = self.authed(req.headers()).await?;
                let user = svc.profile(&claims).await?;
                Ok(Reply::json(StatusCode::OK, json!({ "user": user })))
            }
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
