//! An in-process OpenID provider over real loopback HTTP, for login tests.
//!
//! [`FakeIdp::start`] binds `127.0.0.1:0` and serves, under its issuer
//! `http://127.0.0.1:{port}`:
//!
//! | path | what |
//! |---|---|
//! | `/.well-known/openid-configuration` | discovery (PKCE and client-auth method per the knobs) |
//! | `/jwks` | the published RS256 keys (rotatable with [`FakeIdp::rotate_keys`]) |
//! | `/authorize` | redirects to the client with a code for [`FakeIdp::set_signed_in_user`] |
//! | `/token` | authorization-code grant: checks client auth, code (single use), `redirect_uri`, PKCE |
//! | `/userinfo` | the user's claims for a Bearer access token |
//!
//! A test usually skips the browser: it takes the `auth_url` its client got,
//! calls [`FakeIdp::authorize`] (the user approves; the code is registered
//! with the request's `state`, `nonce`, `redirect_uri` and `code_challenge`)
//! and hands the code to the callback. [`FakeIdp::set_tamper`] alters the next
//! id_tokens (claims, header, signature) to test validation.
//!
//! ```ignore
//! let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
//! let auth = provider.begin(REDIRECT).await?;
//! let code = idp.authorize(&auth.url, "user-1", Some("ada@example.com"), true);
//! let identity = provider.complete(&code, &flow).await?;
//! ```
//!
//! Keys come from `tests/fixtures/idp_rsa_{1,2,3}.pem` (3 is never published:
//! the attacker's key).
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hyper::body::{Body, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use url::Url;

const KEY_PEMS: [&str; 2] = [
    include_str!("../fixtures/idp_rsa_1.pem"),
    include_str!("../fixtures/idp_rsa_2.pem"),
];
const PUBLIC_PEMS: [&str; 2] = [
    include_str!("../fixtures/idp_rsa_1.pub.pem"),
    include_str!("../fixtures/idp_rsa_2.pub.pem"),
];
const ATTACKER_PEM: &str = include_str!("../fixtures/idp_rsa_3.pem");

/// How the token endpoint authenticates the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded id and secret.
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    Post,
}

/// Start-up options; each has a run-time knob too.
#[derive(Debug, Clone)]
pub struct FakeIdpOptions {
    /// The registered client id.
    pub client_id: String,
    /// The registered client secret.
    pub client_secret: String,
    /// Advertise (and enforce) PKCE S256 in discovery.
    pub pkce: bool,
    /// The one client-auth method advertised and accepted.
    pub client_auth: ClientAuth,
    /// Echo the request's nonce in id_tokens.
    pub echo_nonce: bool,
    /// Send `email_verified` as the string `"true"`/`"false"` (LinkedIn).
    pub email_verified_as_string: bool,
    /// Advertise and serve a userinfo endpoint.
    pub userinfo: bool,
    /// A path for the issuer (`/oauth` like LinkedIn's
    /// `https://www.linkedin.com/oauth`); every endpoint lives under it.
    pub issuer_path: String,
}

impl FakeIdpOptions {
    /// Like Google: PKCE S256, `client_secret_basic`, nonce echoed.
    pub fn google_like() -> Self {
        Self {
            client_id: "test-client".into(),
            client_secret: "test-secret with spaces&symbols".into(),
            pkce: true,
            client_auth: ClientAuth::Basic,
            echo_nonce: true,
            email_verified_as_string: false,
            userinfo: true,
            issuer_path: String::new(),
        }
    }

    /// Like LinkedIn: issuer with a path (`/oauth`), no PKCE (a
    /// `code_verifier` is refused), only `client_secret_post`, no nonce in
    /// id_tokens, `email_verified` as a string.
    pub fn linkedin_like() -> Self {
        Self {
            pkce: false,
            client_auth: ClientAuth::Post,
            echo_nonce: false,
            email_verified_as_string: true,
            issuer_path: "/oauth".into(),
            ..Self::google_like()
        }
    }
}

impl Default for FakeIdpOptions {
    fn default() -> Self {
        Self::google_like()
    }
}

/// A user approving the authorization request.
#[derive(Debug, Clone, Default)]
pub struct FakeUser {
    /// `sub`.
    pub subject: String,
    /// `email` (absent when `None`).
    pub email: Option<String>,
    /// `email_verified` (sent only with an email).
    pub email_verified: bool,
    /// `name`.
    pub name: Option<String>,
    /// `picture`.
    pub picture: Option<String>,
    /// `locale`.
    pub locale: Option<String>,
}

impl FakeUser {
    /// A user with a subject and an optional email.
    pub fn new(subject: &str, email: Option<&str>, email_verified: bool) -> Self {
        Self {
            subject: subject.into(),
            email: email.map(Into::into),
            email_verified,
            ..Self::default()
        }
    }
}

/// How an id_token is signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Signer {
    /// RS256 with the active published key; `kid` = its id.
    #[default]
    Active,
    /// RS256 with a key that is never published; `kid` = the active key's id
    /// unless the header override sets one (bad signature / unknown kid).
    Unpublished,
    /// `alg: none`, empty signature.
    AlgNone,
    /// HS256 keyed with the active public key's PEM (algorithm confusion).
    HmacWithPublicKey,
}

/// Alterations applied to every id_token until cleared.
#[derive(Debug, Clone, Default)]
pub struct IdTokenTamper {
    /// Claims to set after the defaults; `Value::Null` removes the claim.
    pub claims: Map<String, Value>,
    /// JOSE header fields to set (`kid`, `alg`, `jku`, ...); `Value::Null` removes.
    pub header: Map<String, Value>,
    /// The signature.
    pub signer: Signer,
}

impl IdTokenTamper {
    /// Only claim changes.
    pub fn claims(claims: Value) -> Self {
        Self {
            claims: claims.as_object().cloned().unwrap_or_default(),
            ..Self::default()
        }
    }

    /// Only a different signer.
    pub fn signer(signer: Signer) -> Self {
        Self {
            signer,
            ..Self::default()
        }
    }

    /// Adds header changes.
    pub fn with_header(mut self, header: Value) -> Self {
        self.header = header.as_object().cloned().unwrap_or_default();
        self
    }
}

/// What the token endpoint saw in the last request it accepted or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestSeen {
    /// The client-auth method the client used (`None`: no credentials).
    pub client_auth: Option<ClientAuth>,
    /// Whether a `code_verifier` was sent.
    pub code_verifier: bool,
    /// The `redirect_uri` sent.
    pub redirect_uri: Option<String>,
}

/// A running fake OpenID provider; stops when dropped.
pub struct FakeIdp {
    inner: Arc<Inner>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeIdp")
            .field("issuer", &self.inner.issuer)
            .finish()
    }
}

struct Inner {
    issuer: String,
    issuer_path: String,
    client_id: String,
    client_secret: String,
    state: Mutex<State>,
}

struct State {
    pkce: bool,
    client_auth: ClientAuth,
    echo_nonce: bool,
    email_verified_as_string: bool,
    userinfo: bool,
    /// Key generation: key material `KEY_PEMS[generation % 2]`, kid `key-{generation}`.
    generation: usize,
    codes: HashMap<String, Grant>,
    access_tokens: HashMap<String, FakeUser>,
    tamper: IdTokenTamper,
    token_error: Option<String>,
    discovery_failure: bool,
    discovery_redirect: Option<String>,
    discovery_overrides: Map<String, Value>,
    signed_in_user: Option<FakeUser>,
    hits: HashMap<String, usize>,
    last_token_request: Option<TokenRequestSeen>,
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    nonce: Option<String>,
    code_challenge: Option<String>,
    user: FakeUser,
}

impl FakeIdp {
    /// Starts the provider on `127.0.0.1:0`.
    pub async fn start(options: FakeIdpOptions) -> FakeIdp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            issuer: format!("http://{addr}{}", options.issuer_path),
            issuer_path: options.issuer_path,
            client_id: options.client_id,
            client_secret: options.client_secret,
            state: Mutex::new(State {
                pkce: options.pkce,
                client_auth: options.client_auth,
                echo_nonce: options.echo_nonce,
                email_verified_as_string: options.email_verified_as_string,
                userinfo: options.userinfo,
                generation: 0,
                codes: HashMap::new(),
                access_tokens: HashMap::new(),
                tamper: IdTokenTamper::default(),
                token_error: None,
                discovery_failure: false,
                discovery_redirect: None,
                discovery_overrides: Map::new(),
                signed_in_user: None,
                hits: HashMap::new(),
                last_token_request: None,
            }),
        });
        let server = inner.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let inner = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let inner = inner.clone();
                        async move { Ok::<_, Infallible>(inner.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeIdp { inner, addr, task }
    }

    /// The issuer, `http://127.0.0.1:{port}` + the issuer path (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `issuer + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.issuer)
    }

    /// The registered client id.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The registered client secret.
    pub fn client_secret(&self) -> &str {
        &self.inner.client_secret
    }

    /// The user approves the authorization request `auth_url`: checks it,
    /// registers a code for the user and returns it.
    ///
    /// Panics when `auth_url` is not a valid authorization request for this
    /// provider (another endpoint or client id, no `state`, no
    /// `redirect_uri`, no `openid` scope, a non-S256 challenge).
    pub fn authorize(
        &self,
        auth_url: &Url,
        subject: &str,
        email: Option<&str>,
        email_verified: bool,
    ) -> String {
        self.authorize_user(auth_url, &FakeUser::new(subject, email, email_verified))
    }

    /// [`FakeIdp::authorize`] for a user with profile fields.
    pub fn authorize_user(&self, auth_url: &Url, user: &FakeUser) -> String {
        self.inner
            .authorize(auth_url, user)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The redirect back to the client after the user approved:
    /// `redirect_uri?code=..&state=..&iss=..` (RFC 9207).
    pub fn authorization_response(&self, auth_url: &Url, user: &FakeUser) -> Url {
        let code = self.authorize_user(auth_url, user);
        self.inner.redirect_back(auth_url, &[("code", &code)])
    }

    /// The redirect back to the client after the user refused:
    /// `redirect_uri?error=..&state=..&iss=..`.
    pub fn error_response(&self, auth_url: &Url, error: &str) -> Url {
        self.inner.redirect_back(auth_url, &[("error", error)])
    }

    /// The user `/authorize` signs in (redirecting back with a code); `None`:
    /// it redirects back with `error=access_denied`.
    pub fn set_signed_in_user(&self, user: Option<FakeUser>) {
        self.inner.state().signed_in_user = user;
    }

    /// Rotates the signing key: the next key signs, and the JWKS publishes it
    /// with the previous one.
    pub fn rotate_keys(&self) {
        self.inner.state().generation += 1;
    }

    /// The `kid` of the active signing key.
    pub fn active_kid(&self) -> String {
        format!("key-{}", self.inner.state().generation)
    }

    /// Alters every id_token from now on.
    pub fn set_tamper(&self, tamper: IdTokenTamper) {
        self.inner.state().tamper = tamper;
    }

    /// Back to honest id_tokens.
    pub fn clear_tamper(&self) {
        self.set_tamper(IdTokenTamper::default());
    }

    /// Whether discovery advertises (and the token endpoint enforces) PKCE S256.
    pub fn set_pkce_supported(&self, on: bool) {
        self.inner.state().pkce = on;
    }

    /// The one client-auth method advertised and accepted.
    pub fn set_client_auth(&self, auth: ClientAuth) {
        self.inner.state().client_auth = auth;
    }

    /// Whether id_tokens echo the request's nonce.
    pub fn set_echo_nonce(&self, on: bool) {
        self.inner.state().echo_nonce = on;
    }

    /// Makes the token endpoint answer `400 {"error": error}` (`None`: normal).
    pub fn set_token_error(&self, error: Option<&str>) {
        self.inner.state().token_error = error.map(Into::into);
    }

    /// Makes discovery answer `500`.
    pub fn set_discovery_failure(&self, on: bool) {
        self.inner.state().discovery_failure = on;
    }

    /// Makes discovery answer `302 Location: location`.
    pub fn set_discovery_redirect(&self, location: Option<&str>) {
        self.inner.state().discovery_redirect = location.map(Into::into);
    }

    /// Fields to set in (or, with `Value::Null`, remove from) the discovery
    /// document.
    pub fn set_discovery_overrides(&self, overrides: Value) {
        self.inner.state().discovery_overrides = overrides.as_object().cloned().unwrap_or_default();
    }

    /// How many requests `path` (relative to the issuer, e.g. `/jwks`) received.
    pub fn hits(&self, path: &str) -> usize {
        self.inner.state().hits.get(path).copied().unwrap_or(0)
    }

    /// The last token request.
    pub fn last_token_request(&self) -> Option<TokenRequestSeen> {
        self.inner.state().last_token_request.clone()
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn authorize(&self, auth_url: &Url, user: &FakeUser) -> Result<String, String> {
        let expected = format!("{}/authorize", self.issuer);
        let endpoint = format!(
            "{}{}",
            auth_url.origin().ascii_serialization(),
            auth_url.path()
        );
        if endpoint != expected {
            return Err(format!(
                "not this provider's authorization endpoint: {endpoint}"
            ));
        }
        let q: HashMap<String, String> = auth_url.query_pairs().into_owned().collect();
        let get = |k: &str| q.get(k).cloned();
        if get("response_type").as_deref() != Some("code") {
            return Err("response_type must be code".into());
        }
        if get("client_id").as_deref() != Some(self.client_id.as_str()) {
            return Err("unknown client_id".into());
        }
        if !get("scope")
            .unwrap_or_default()
            .split(' ')
            .any(|s| s == "openid")
        {
            return Err("the openid scope is missing".into());
        }
        get("state").ok_or("state is missing")?;
        let redirect_uri = get("redirect_uri").ok_or("redirect_uri is missing")?;
        let code_challenge = get("code_challenge");
        if code_challenge.is_some() && get("code_challenge_method").as_deref() != Some("S256") {
            return Err("only S256 code challenges".into());
        }
        let code = meetinity_auth::secret::random_token(32);
        self.state().codes.insert(
            code.clone(),
            Grant {
                client_id: self.client_id.clone(),
                redirect_uri,
                nonce: get("nonce"),
                code_challenge,
                user: user.clone(),
            },
        );
        Ok(code)
    }

    fn redirect_back(&self, auth_url: &Url, params: &[(&str, &str)]) -> Url {
        let q: HashMap<String, String> = auth_url.query_pairs().into_owned().collect();
        let mut url = Url::parse(q.get("redirect_uri").expect("redirect_uri")).unwrap();
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in params {
                pairs.append_pair(k, v);
            }
            if let Some(state) = q.get("state") {
                pairs.append_pair("state", state);
            }
            pairs.append_pair("iss", &self.issuer);
        }
        url
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<String> {
        let Some(path) = req.uri().path().strip_prefix(&self.issuer_path) else {
            return json_response(StatusCode::NOT_FOUND, json!({"error": "not_found"}));
        };
        let path = path.to_owned();
        *self.state().hits.entry(path.clone()).or_default() += 1;
        match (req.method(), path.as_str()) {
            (&Method::GET, "/.well-known/openid-configuration") => self.discovery(),
            (&Method::GET, "/jwks") => json_response(StatusCode::OK, self.jwks()),
            (&Method::GET, "/authorize") => self.authorize_endpoint(&req),
            (&Method::POST, "/token") => {
                let auth = req
                    .headers()
                    .get(hyper::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = read_body(req.into_body()).await;
                self.token(auth.as_deref(), &body)
            }
            (&Method::GET, "/userinfo") => self.userinfo(&req),
            _ => json_response(StatusCode::NOT_FOUND, json!({"error": "not_found"})),
        }
    }

    fn discovery(&self) -> Response<String> {
        let s = self.state();
        if s.discovery_failure {
            return json_response(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "down"}));
        }
        if let Some(location) = &s.discovery_redirect {
            return Response::builder()
                .status(StatusCode::FOUND)
                .header(hyper::header::LOCATION, location)
                .body(String::new())
                .unwrap();
        }
        let iss = &self.issuer;
        let mut doc = json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/authorize"),
            "token_endpoint": format!("{iss}/token"),
            "jwks_uri": format!("{iss}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": [match s.client_auth {
                ClientAuth::Basic => "client_secret_basic",
                ClientAuth::Post => "client_secret_post",
            }],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "email", "email_verified", "name", "picture", "locale"],
        });
        let obj = doc.as_object_mut().unwrap();
        if s.userinfo {
            obj.insert("userinfo_endpoint".into(), json!(format!("{iss}/userinfo")));
        }
        if s.pkce {
            obj.insert("code_challenge_methods_supported".into(), json!(["S256"]));
        }
        for (k, v) in &s.discovery_overrides {
            if v.is_null() {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), v.clone());
            }
        }
        json_response(StatusCode::OK, doc)
    }

    fn jwks(&self) -> Value {
        let generation = self.state().generation;
        let mut keys = vec![public_jwk(generation)];
        if generation > 0 {
            keys.push(public_jwk(generation - 1));
        }
        json!({ "keys": keys })
    }

    fn authorize_endpoint(&self, req: &Request<Incoming>) -> Response<String> {
        let origin = self
            .issuer
            .strip_suffix(&self.issuer_path)
            .unwrap_or(&self.issuer);
        let url = Url::parse(&format!("{origin}{}", req.uri())).unwrap();
        let user = self.state().signed_in_user.clone();
        let location = match user {
            Some(user) => match self.authorize(&url, &user) {
                Ok(code) => self.redirect_back(&url, &[("code", &code)]),
                Err(e) => {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        json!({"error": "invalid_request", "error_description": e}),
                    )
                }
            },
            None => self.redirect_back(&url, &[("error", "access_denied")]),
        };
        Response::builder()
            .status(StatusCode::FOUND)
            .header(hyper::header::LOCATION, location.as_str())
            .body(String::new())
            .unwrap()
    }

    fn token(&self, authorization: Option<&str>, body: &[u8]) -> Response<String> {
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        let mut s = self.state();

        let basic = authorization.and_then(parse_basic);
        let used = match (&basic, form.contains_key("client_secret")) {
            (Some(_), _) => Some(ClientAuth::Basic),
            (None, true) => Some(ClientAuth::Post),
            (None, false) => None,
        };
        s.last_token_request = Some(TokenRequestSeen {
            client_auth: used,
            code_verifier: form.contains_key("code_verifier"),
            redirect_uri: form.get("redirect_uri").cloned(),
        });

        if let Some(error) = s.token_error.clone() {
            return oauth_error(StatusCode::BAD_REQUEST, &error);
        }
        let (id, secret) = match (s.client_auth, used, basic) {
            (ClientAuth::Basic, Some(ClientAuth::Basic), Some((id, secret))) => (id, secret),
            (ClientAuth::Post, Some(ClientAuth::Post), _) => (
                form.get("client_id").cloned().unwrap_or_default(),
                form.get("client_secret").cloned().unwrap_or_default(),
            ),
            _ => return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"),
        };
        if id != self.client_id || secret != self.client_secret {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        }
        if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
        }
        // Single use: the code is gone whatever happens next.
        let Some(grant) = form.get("code").and_then(|c| s.codes.remove(c)) else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        };
        if grant.client_id != id || form.get("redirect_uri") != Some(&grant.redirect_uri) {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        }
        match (&grant.code_challenge, form.get("code_verifier")) {
            (Some(challenge), Some(verifier)) => {
                let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
                if &computed != challenge {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                }
            }
            (Some(_), None) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
            // Like LinkedIn: a verifier without a challenge is refused.
            (None, Some(_)) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request"),
            (None, None) => {}
        }

        let access_token = meetinity_auth::secret::random_token(32);
        s.access_tokens
            .insert(access_token.clone(), grant.user.clone());
        let id_token = self.id_token(&s, &grant);
        json_response(
            StatusCode::OK,
            json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": "openid email profile",
                "refresh_token": meetinity_auth::secret::random_token(32),
                "id_token": id_token,
            }),
        )
    }

    fn user_claims(&self, s: &State, user: &FakeUser, claims: &mut Map<String, Value>) {
        claims.insert("sub".into(), json!(user.subject));
        if let Some(email) = &user.email {
            claims.insert("email".into(), json!(email));
            let verified = if s.email_verified_as_string {
                json!(user.email_verified.to_string())
            } else {
                json!(user.email_verified)
            };
            claims.insert("email_verified".into(), verified);
        }
        for (k, v) in [
            ("name", &user.name),
            ("picture", &user.picture),
            ("locale", &user.locale),
        ] {
            if let Some(v) = v {
                claims.insert(k.into(), json!(v));
            }
        }
    }

    fn id_token(&self, s: &State, grant: &Grant) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("aud".into(), json!(self.client_id));
        claims.insert("azp".into(), json!(self.client_id));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + 3600));
        if s.echo_nonce {
            if let Some(nonce) = &grant.nonce {
                claims.insert("nonce".into(), json!(nonce));
            }
        }
        self.user_claims(s, &grant.user, &mut claims);
        let tamper = &s.tamper;
        apply(&mut claims, &tamper.claims);

        let kid = format!("key-{}", s.generation);
        let (alg, key): (&str, Option<(EncodingKey, Algorithm)>) = match tamper.signer {
            Signer::Active => ("RS256", Some((signing_key(s.generation), Algorithm::RS256))),
            Signer::Unpublished => (
                "RS256",
                Some((
                    EncodingKey::from_rsa_pem(ATTACKER_PEM.as_bytes()).unwrap(),
                    Algorithm::RS256,
                )),
            ),
            Signer::AlgNone => ("none", None),
            Signer::HmacWithPublicKey => (
                "HS256",
                Some((
                    EncodingKey::from_secret(PUBLIC_PEMS[s.generation % 2].as_bytes()),
                    Algorithm::HS256,
                )),
            ),
        };
        let mut header = Map::new();
        header.insert("alg".into(), json!(alg));
        header.insert("typ".into(), json!("JWT"));
        header.insert("kid".into(), json!(kid));
        apply(&mut header, &tamper.header);

        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(Value::Object(header).to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
        );
        let signature = match key {
            Some((key, alg)) => jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).unwrap(),
            None => String::new(),
        };
        format!("{input}.{signature}")
    }

    fn userinfo(&self, req: &Request<Incoming>) -> Response<String> {
        let token = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let s = self.state();
        if !s.userinfo {
            return json_response(StatusCode::NOT_FOUND, json!({"error": "not_found"}));
        }
        let Some(user) = token.and_then(|t| s.access_tokens.get(&t).cloned()) else {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
        };
        let mut claims = Map::new();
        self.user_claims(&s, &user, &mut claims);
        json_response(StatusCode::OK, Value::Object(claims))
    }
}

fn apply(target: &mut Map<String, Value>, changes: &Map<String, Value>) {
    for (k, v) in changes {
        if v.is_null() {
            target.remove(k);
        } else {
            target.insert(k.clone(), v.clone());
        }
    }
}

fn signing_key(generation: usize) -> EncodingKey {
    EncodingKey::from_rsa_pem(KEY_PEMS[generation % 2].as_bytes()).unwrap()
}

fn public_jwk(generation: usize) -> Value {
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&signing_key(generation), Algorithm::RS256)
        .unwrap();
    let mut jwk = serde_json::to_value(jwk).unwrap();
    let obj = jwk.as_object_mut().unwrap();
    obj.insert("kid".into(), json!(format!("key-{generation}")));
    obj.insert("use".into(), json!("sig"));
    jwk
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 2.3.1).
fn parse_basic(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

fn json_response(status: StatusCode, body: Value) -> Response<String> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::CACHE_CONTROL, "no-store")
        .body(body.to_string())
        .unwrap()
}

fn oauth_error(status: StatusCode, error: &str) -> Response<String> {
    json_response(status, json!({ "error": error }))
}

async fn read_body(body: Incoming) -> Vec<u8> {
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            Err(_) => break,
        }
    }
    out
}
