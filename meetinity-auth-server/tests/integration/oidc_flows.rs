//! Sign-in with OpenID providers over real HTTP: the server on loopback, an
//! OpenID provider on loopback (`fake_idp`, with its own discovery document,
//! JWKS, authorization and token endpoints and RS256 id_tokens the tests
//! can alter), and reqwest as the client.
//!
//! The tests skip the browser: they take the `auth_url` the server handed
//! out, let the fake provider approve it, and call the server's callback
//! with the query the provider would have redirected to.

use std::sync::Arc;
use std::time::Duration;

use meetinity_auth::clock::{Clock, ManualClock};
use meetinity_auth::model::{AuditQuery, UserPatch};
use meetinity_auth::service::Backend;
use meetinity_auth::store::{AuditStore, UserStore};
use serde_json::{json, Value};
use url::Url;

use crate::fake_idp::{ClientAuth, FakeIdp, FakeIdpOptions, FakeUser, IdTokenTamper, Signer};
use crate::support::{
    client, fresh_schema, redis_url, start_opts, uuid_like, Db, Options, TestServer,
};

const GOOGLE_CB: &str = "https://app.example/auth/google/callback";
const LINKEDIN_CB: &str = "https://app.example/auth/linkedin/callback";

// ---------------------------------------------------------------- helpers

/// The variables that point `prefix` (`GOOGLE`, `LINKEDIN`, `ACME`) at `idp`.
fn provider_vars(prefix: &str, idp: &FakeIdp, redirect: &str) -> Vec<(String, String)> {
    vec![
        (format!("{prefix}_CLIENT_ID"), idp.client_id().to_owned()),
        (
            format!("{prefix}_CLIENT_SECRET"),
            idp.client_secret().to_owned(),
        ),
        (format!("{prefix}_REDIRECT_URI"), redirect.to_owned()),
        (format!("{prefix}_ISSUER_URL"), idp.issuer().to_owned()),
    ]
}

fn google_opts(idp: &FakeIdp) -> Options {
    Options {
        vars: provider_vars("GOOGLE", idp, GOOGLE_CB),
        ..Options::default()
    }
}

async fn google_server(idp: &FakeIdp) -> TestServer {
    start_opts(google_opts(idp)).await
}

fn users(s: &TestServer) -> Arc<dyn UserStore> {
    match &s.backend {
        Backend::Sqlite(store) => store.clone(),
        Backend::Postgres(store) => store.clone(),
        other => panic!("unexpected backend {other:?}"),
    }
}

fn audit(s: &TestServer) -> Arc<dyn AuditStore> {
    match &s.backend {
        Backend::Sqlite(store) => store.clone(),
        Backend::Postgres(store) => store.clone(),
        other => panic!("unexpected backend {other:?}"),
    }
}

fn assert_error(body: &Value, code: u16, reason: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["reason"], reason, "{body}");
}

/// What `POST /auth/{provider}` answered.
struct Started {
    auth_url: Url,
    state: String,
    /// The `mt_flow` cookie value, when one was set.
    cookie: Option<String>,
    set_cookie: Option<String>,
}

/// `POST /auth/{provider}` with `body` and extra headers; must succeed.
async fn start_with(
    s: &TestServer,
    provider: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> Started {
    let mut req = client()
        .post(s.url(&format!("/auth/{provider}")))
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let set_cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("mt_flow="));
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let auth_url = Url::parse(body["auth_url"].as_str().unwrap()).unwrap();
    let state = body["state"].as_str().unwrap().to_owned();
    let cookie = set_cookie.as_deref().map(|c| {
        c.trim_start_matches("mt_flow=")
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    });
    Started {
        auth_url,
        state,
        cookie,
        set_cookie,
    }
}

/// A non-browser start (no `Origin`, no `Sec-Fetch-*`): no cookie binding.
async fn start(s: &TestServer, provider: &str) -> Started {
    start_with(s, provider, json!({}), &[]).await
}

/// `GET /auth/{provider}/callback?{query}` with an optional `mt_flow` cookie.
async fn callback(
    s: &TestServer,
    provider: &str,
    query: &str,
    cookie: Option<&str>,
) -> (u16, Value) {
    let mut req = client().get(s.url(&format!("/auth/{provider}/callback?{query}")));
    if let Some(c) = cookie {
        req = req.header("cookie", format!("mt_flow={c}"));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// The query of the provider's redirect back after `user` approved.
fn approve(idp: &FakeIdp, started: &Started, user: &FakeUser) -> String {
    idp.authorization_response(&started.auth_url, user)
        .query()
        .unwrap()
        .to_owned()
}

fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A whole login; returns the callback's status and body.
async fn login_as(s: &TestServer, idp: &FakeIdp, provider: &str, user: &FakeUser) -> (u16, Value) {
    let started = start(s, provider).await;
    let query = approve(idp, &started, user);
    callback(s, provider, &query, None).await
}

/// A whole login that must succeed; returns the token set.
async fn login_ok(s: &TestServer, idp: &FakeIdp, provider: &str, user: &FakeUser) -> Value {
    let (status, body) = login_as(s, idp, provider, user).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn verified(subject: &str, email: &str) -> FakeUser {
    FakeUser::new(subject, Some(email), true)
}

fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@example.com", uuid_like())
}

/// `POST /auth/verify`: the status and body.
async fn verify(s: &TestServer, token: &str) -> (u16, Value) {
    let res = client()
        .post(s.url("/auth/verify"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// `GET /auth/profile`: the user.
async fn profile(s: &TestServer, token: &str) -> Value {
    let res = client()
        .get(s.url("/auth/profile"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["user"].clone()
}

fn assert_token_set(set: &Value, email: &str, provider: &str) {
    assert!(
        set["token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3),
        "{set}"
    );
    assert!(
        set["refresh_token"].as_str().is_some_and(|t| t.len() >= 32),
        "{set}"
    );
    assert_eq!(set["token_type"], "Bearer", "{set}");
    assert!(set["expires_in"].as_i64().is_some_and(|e| e > 0), "{set}");
    assert_eq!(set["user"]["email"], email, "{set}");
    assert_eq!(set["user"]["email_verified"], true, "{set}");
    assert!(
        set["user"]["social_accounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["provider"] == provider),
        "{set}"
    );
}

async fn register(s: &TestServer, email: &str, password: &str) -> Value {
    let res = client()
        .post(s.url("/auth/register"))
        .json(&json!({"email": email, "password": password, "name": "Registrant"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

async fn password_login(s: &TestServer, email: &str, password: &str) -> u16 {
    client()
        .post(s.url("/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

// ---------------------------------------------------------------- happy paths

#[tokio::test]
async fn google_like_login_with_pkce_and_nonce_returns_the_token_set() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let s = google_server(&idp).await;
    let email = unique_email("ada");

    let started = start(&s, "google").await;
    let url = &started.auth_url;
    assert_eq!(
        format!("{}{}", url.origin().ascii_serialization(), url.path()),
        idp.url("/authorize")
    );
    assert_eq!(query_param(url, "state").as_deref(), Some(&*started.state));
    assert!(started.state.len() >= 22, "state must carry >= 128 bits");
    assert!(query_param(url, "nonce").is_some_and(|n| n.len() >= 22));
    assert_eq!(
        query_param(url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(query_param(url, "code_challenge").is_some());
    assert_eq!(query_param(url, "redirect_uri").as_deref(), Some(GOOGLE_CB));
    assert!(
        started.cookie.is_none(),
        "no browser, no binding cookie: {:?}",
        started.set_cookie
    );

    let mut user = verified("google-ada", &email);
    user.name = Some("Ada Lovelace".into());
    user.picture = Some("https://pics.example/ada.png".into());
    let query = approve(&idp, &started, &user);
    let (status, set) = callback(&s, "google", &query, None).await;
    assert_eq!(status, 200, "{set}");
    assert_token_set(&set, &email, "google");
    assert_eq!(set["user"]["name"], "Ada Lovelace");
    assert_eq!(set["user"]["photo_url"], "https://pics.example/ada.png");
    assert_eq!(set["user"]["provider"], "google");

    let seen = idp.last_token_request().unwrap();
    assert_eq!(seen.client_auth, Some(ClientAuth::Basic));
    assert!(seen.code_verifier);
    assert_eq!(seen.redirect_uri.as_deref(), Some(GOOGLE_CB));

    let token = set["token"].as_str().unwrap();
    let (status, v) = verify(&s, token).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["valid"], true);
    assert_eq!(v["sub"], set["user"]["id"]);
    assert!(v["sid"].is_string() && v["exp"].is_i64(), "{v}");
    let me = profile(&s, token).await;
    assert_eq!(me["id"], set["user"]["id"]);
    assert!(me["last_login"].is_string(), "{me}");
    assert_eq!(me["login_count"], 1, "{me}");

    // A second login finds the same user by (provider, subject) and counts.
    let again = login_ok(&s, &idp, "google", &user).await;
    assert_eq!(again["user"]["id"], set["user"]["id"]);
    assert_eq!(again["user"]["login_count"], 2, "{again}");
}

#[tokio::test]
async fn linkedin_like_login_without_pkce_with_client_secret_post() {
    let idp = FakeIdp::start(FakeIdpOptions::linkedin_like()).await;
    let s = start_opts(Options {
        vars: provider_vars("LINKEDIN", &idp, LINKEDIN_CB),
        ..Options::default()
    })
    .await;
    let email = unique_email("grace");

    let started = start(&s, "linkedin").await;
    assert!(query_param(&started.auth_url, "code_challenge").is_none());
    let scope = query_param(&started.auth_url, "scope").unwrap();
    for s in ["openid", "profile", "email"] {
        assert!(scope.split(' ').any(|x| x == s), "{scope}");
    }
    // LinkedIn sends email_verified as a string and no nonce.
    let query = approve(&idp, &started, &verified("li-grace", &email));
    let (status, set) = callback(&s, "linkedin", &query, None).await;
    assert_eq!(status, 200, "{set}");
    assert_token_set(&set, &email, "linkedin");

    let seen = idp.last_token_request().unwrap();
    assert_eq!(seen.client_auth, Some(ClientAuth::Post));
    assert!(!seen.code_verifier);

    let (status, v) = verify(&s, set["token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["sub"], set["user"]["id"]);
}

// ---------------------------------------------------------------- state

#[tokio::test]
async fn missing_code_or_state_is_400() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let s = google_server(&idp).await;
    for query in [
        "code=abc",
        "state=abc",
        "",
        "code=&state=",
        "state=abc&code=",
    ] {
        let (status, body) = callback(&s, "google", query, None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_error(&body, 400, "bad_request");
    }
}

#[tokio::test]
async fn unknown_or_replayed_state_is_401_invalid_state() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let s = google_server(&idp).await;

    let (status, body) = callback(&s, "google", "code=abc&state=never-issued", None).await;
    assert_eq!(status, 401);
    assert_error(&body, 401, "invalid_state");

    let started = start(&s, "google").await;
    let query = approve(&idp, &started, &verified("replay", &unique_email("replay")));
    let (status, body) = callback(&s, "google", &query, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = callback(&s, "google", &query, None).await;
    assert_eq!(status, 401, "{body}");
    assert_error(&body, 401, "invalid_state");
}

#[tokio::test]
async fn a_state_is_bound_to_its_provider() {
    let google = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let linkedin = FakeIdp::start(FakeIdpOptions::linkedin_like()).await;
    let mut opts = google_opts(&google);
    opts.vars
        .extend(provider_vars("LINKEDIN", &linkedin, LINKEDIN_CB));
    let s = start_opts(opts).await;
    let started = start(&s, "google").await;
    let mut url = google.authorization_response(
        &started.auth_url,
        &verified("cross", &unique_email("cross")),
    );
    // Even with the iss the other callback expects.
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "iss")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let query = url.query().unwrap().to_owned();
    let (status, body) = callback(&s, "linkedin", &query, None).await;
    assert_eq!(status, 401, "{body}");
    assert_error(&body, 401, "invalid_state");
    // Used up by the failed attempt.
    let (status, _) = callback(&s, "google", &query, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_state_older_than_10_minutes_is_401_invalid_state() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let clock = ManualClock::new();
    let s = start_opts(Options {
        clock: Some(Arc::new(clock.clone()) as Arc<dyn Clock>),
        ..google_opts(&idp)
    })
    .await;

    // 9 minutes is still fine.
    let started = start(&s, "google").await;
    let query = approve(&idp, &started, &verified("slow", &unique_email("slow")));
    clock.advance(Duration::from_secs(9 * 60));
    let (status, body) = callback(&s, "google", &query, None).await;
    assert_eq!(status, 200, "{body}");

    // 11 minutes is not.
    let started = start(&s, "google").await;
    let query = approve(&idp, &started, &verified("slower", &unique_email("slower")));
    clock.advance(Duration::from_secs(11 * 60));
    let (status, body) = callback(&s, "google", &query, None).await;
    assert_eq!(status, 401, "{body}");
    assert_error(&body, 401, "invalid_state");
}

#[tokio::test]
async fn a_flow_started_by_a_browser_must_finish_in_that_browser() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let s = google_server(&idp).await;
    let user = verified("browser", &unique_email("browser"));
    let browser = [
        ("origin", "https://app.example"),
        ("sec-fetch-mode", "cors"),
    ];

    let started = start_with(&s, "google", json!({}), &browser).await;
    let set_cookie = started.set_cookie.clone().expect("a binding cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/auth", "Max-Age=600"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "PUBLIC_BASE_URL is http here"
    );
    let cookie = started.cookie.clone().unwrap();
    assert!(cookie.len() >= 43, "{cookie}");

    // No cookie (another user agent finishing the victim's flow): refused.
    let query = approve(&idp, &started, &user);
    let (status, body) = callback(&s, "google", &query, None).await;
    assert_eq!(status, 401, "{body}");
    assert_error(&body, 401, "invalid_state");

    // Another browser's cookie: refused.
    let other = start_with(&s, "google", json!({}), &browser).await;
    let started = start_with(&s, "google", json!({}), &[("sec-fetch-mode", "navigate")]).await;
    assert!(
        started.cookie.is_some(),
        "Sec-Fetch-Mode alone marks a browser"
    );
    let query = approve(&idp, &started, &user);
    let (status, body) = callback(&s, "google", &query, other.cookie.as_deref()).await;
    assert_eq!(status, 401, "{body}");
    assert_error(&body, 401, "invalid_state");

    // The same browser: signed in, and the cookie is cleared.
    let started = start_with(&s, "google", json!({}), &browser).await;
    let query = approve(&idp, &started, &user);
    let res = client()
        .get(s.url(&format!("/auth/google/callback?{query}")))
        .header(
            "cookie",
            format!("theme=dark; mt_flow={}", started.cookie.unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cleared = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("mt_flow="))
        .expect("the cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
async fn the_binding_cookie_is_secure_when_the_public_url_is_https() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let s = start_opts(google_opts(&idp).var("PUBLIC_BASE_URL", "https://auth.example")).await;
    let started = start_with(
        &s,
        "google",
        json!({}),
        &[("origin", "https://app.example")],
    )
    .await;
    let set_cookie = started.set_cookie.unwrap();
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
}

// ---------------------------------------------------------------- mix-up, id_token

#[tokio::test]
async fn an_authorization_response_from_another_issuer_is_rejected() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let s = google_server(&idp).await;
    let user = verified("mixup", &unique_email("mixup"));
    for other in [
        "https://accounts.google.com".to_owned(),
        format!("{}/", idp.issuer()),
        format!("{}.evil.example", idp.issuer()),
    ] {
        let started = start(&s, "google").await;
        let mut url = idp.authorization_response(&started.auth_url, &user);
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "iss" {
                    other.clone()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        let (status, body) = callback(&s, "google", url.query().unwrap(), None).await;
        assert_eq!(status, 401, "{other}: {body}");
        assert_error(&body, 401, "invalid_state");
    }
    assert!(users(&s)
        .get_user_by_email(user.email.as_deref().unwrap())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_provider_that_always_sends_iss_must_send_it() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    idp.set_discovery_overrides(json!({"authorization_response_iss_parameter_supported": true}));
    let s = google_server(&idp).await;
    let user = verified("iss", &unique_email("iss"));

    let started = start(&s, "google").await;
    let mut url = idp.authorization_response(&started.auth_url, &user);
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "iss")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, body) = callback(&s, "google", url.query().unwrap(), None).await;
    assert_eq!(status, 401, "{body}");
    assert_error(&body, 401, "invalid_state");

    // With its iss, the same provider signs in.
    login_ok(&s, &idp, "google", &user).await;

    // A provider that does not promise iss may leave it out.
    let quiet = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let s = google_server(&quiet).await;
    let started = start(&s, "google").await;
    let mut url = quiet.authorization_response(&started.auth_url, &user);
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "iss")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, body) = callback(&s, "google", url.query().unwrap(), None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn invalid_id_tokens_are_401_invalid_id_token_and_create_nobody() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let s = google_server(&idp).await;
    let lookalike = format!("{}.evil.example", idp.issuer());
    let cases: Vec<(&str, IdTokenTamper)> = vec![
        (
            "nonce mismatch",
            IdTokenTamper::claims(json!({"nonce": "another-nonce"})),
        ),
        (
            "nonce missing",
            IdTokenTamper::claims(json!({"nonce": null})),
        ),
        (
            "wrong aud",
            IdTokenTamper::claims(json!({"aud": "another-client", "azp": null})),
        ),
        (
            "wrong azp",
            IdTokenTamper::claims(json!({"aud": [idp.client_id(), "x"], "azp": "x"})),
        ),
        (
            "lookalike iss",
            IdTokenTamper::claims(json!({ "iss": lookalike })),
        ),
        (
            "iss with a trailing slash",
            IdTokenTamper::claims(json!({ "iss": format!("{}/", idp.issuer()) })),
        ),
        ("expired", IdTokenTamper::claims(json!({"exp": 1_000_000}))),
        ("bad signature", IdTokenTamper::signer(Signer::Unpublished)),
        ("alg none", IdTokenTamper::signer(Signer::AlgNone)),
        (
            "HS256 keyed with the public key",
            IdTokenTamper::signer(Signer::HmacWithPublicKey),
        ),
        (
            "attacker key via jku/jwk headers",
            IdTokenTamper::signer(Signer::Unpublished).with_header(json!({
                "jku": "http://127.0.0.1:1/jwks",
                "jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            })),
        ),
    ];
    for (name, tamper) in cases {
        idp.set_tamper(tamper);
        let email = unique_email("tampered");
        let (status, body) = login_as(&s, &idp, "google", &verified("tampered", &email)).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_error(&body, 401, "invalid_id_token");
        assert!(
            users(&s).get_user_by_email(&email).await.unwrap().is_none(),
            "{name}"
        );
    }
    idp.clear_tamper();
    login_ok(
        &s,
        &idp,
        "google",
        &verified("honest", &unique_email("honest")),
    )
    .await;
}

#[tokio::test]
async fn provider_key_rotation_works_at_once_and_unknown_kids_do_not_storm_the_jwks() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let clock = ManualClock::new();
    let s = start_opts(Options {
        clock: Some(Arc::new(clock.clone()) as Arc<dyn Clock>),
        ..google_opts(&idp)
    })
    .await;
    let user = verified("rotating", &unique_email("rotating"));
    login_ok(&s, &idp, "google", &user).await;
    let jwks_hits = idp.hits("/jwks");

    // The provider rotates its key: the unknown kid refetches the JWKS and
    // the next login works at once.
    idp.rotate_keys();
    login_ok(&s, &idp, "google", &user).await;
    assert_eq!(idp.hits("/jwks"), jwks_hits + 1, "one refetch");

    // An id_token under a kid the provider never published: refused, and
    // refetches are rate-limited (no JWKS storm from forged kids).
    idp.set_tamper(
        IdTokenTamper::signer(Signer::Unpublished).with_header(json!({"kid": "unknown-kid"})),
    );
    for _ in 0..3 {
        let (status, body) = login_as(&s, &idp, "google", &user).await;
        assert_eq!(status, 401, "{body}");
        assert_error(&body, 401, "invalid_id_token");
    }
    assert_eq!(idp.hits("/jwks"), jwks_hits + 1, "no refetch storm");
    idp.clear_tamper();

    // Once the limit has passed, the next rotation is picked up again.
    clock.advance(Duration::from_secs(31));
    idp.rotate_keys();
    let set = login_ok(&s, &idp, "google", &user).await;
    assert_eq!(set["user"]["email"], user.email.clone().unwrap());
    assert_eq!(idp.hits("/jwks"), jwks_hits + 2);
    login_ok(&s, &idp, "google", &user).await;
    assert_eq!(idp.hits("/jwks"), jwks_hits + 2, "known keys need no fetch");
}

// ---------------------------------------------------------------- provider answers

#[tokio::test]
async fn a_provider_error_is_401_provider_error_and_uses_the_state_up() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let s = google_server(&idp).await;
    let started = start(&s, "google").await;
    let refused = idp.error_response(&started.auth_url, "access_denied");
    let (status, body) = callback(&s, "google", refused.query().unwrap(), None).await;
    assert_eq!(status, 401, "{body}");
    assert_error(&body, 401, "provider_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("access_denied"),
        "{body}"
    );

    // The same state with a code afterwards: already used.
    let query = approve(&idp, &started, &verified("late", &unique_email("late")));
    let (status, body) = callback(&s, "google", &query, None).await;
    assert_eq!(status, 401, "{body}");
    assert_error(&body, 401, "invalid_state");

    // The token endpoint refusing the code is a provider error too.
    idp.set_token_error(Some("invalid_grant"));
    let (status, body) = login_as(&s, &idp, "google", &verified("x", "x@example.com")).await;
    assert_eq!(status, 401, "{body}");
    assert_error(&body, 401, "provider_error");
}

#[tokio::test]
async fn no_email_is_422_email_required() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let s = google_server(&idp).await;
    let (status, body) =
        login_as(&s, &idp, "google", &FakeUser::new("no-email", None, false)).await;
    assert_eq!(status, 422, "{body}");
    assert_error(&body, 422, "email_required");
}

// ---------------------------------------------------------------- accounts

#[tokio::test]
async fn an_unverified_email_never_takes_over_an_existing_account() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let s = google_server(&idp).await;
    let email = unique_email("owner");
    let registered = register(&s, &email, "correct horse battery staple").await;
    let owner_token = registered["token"].as_str().unwrap().to_owned();

    let attacker = FakeUser::new("attacker", Some(&email), false);
    let (status, body) = login_as(&s, &idp, "google", &attacker).await;
    assert_eq!(status, 409, "{body}");
    assert_error(&body, 409, "email_not_verified");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("original method"),
        "{body}"
    );

    // Untouched: no identity, still unverified, password and session work.
    let user = users(&s).get_user_by_email(&email).await.unwrap().unwrap();
    assert_eq!(user.id, registered["user"]["id"]);
    assert!(user.social_accounts.is_empty());
    assert!(!user.email_verified);
    assert_eq!(user.name.as_deref(), Some("Registrant"));
    assert_eq!(
        password_login(&s, &email, "correct horse battery staple").await,
        200
    );
    assert_eq!(verify(&s, &owner_token).await.0, 200);
}

#[tokio::test]
async fn a_verified_identity_claiming_an_unverified_account_removes_the_registrants_access() {
    claim_an_unverified_account(Db::Sqlite).await;
}

#[tokio::test]
async fn the_same_claim_on_postgresql_removes_the_registrants_access() {
    claim_an_unverified_account(Db::Postgres).await;
}

async fn claim_an_unverified_account(db: Db) {
    let google = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let linkedin = FakeIdp::start(FakeIdpOptions::linkedin_like()).await;
    let mut opts = google_opts(&google).db(db);
    opts.vars
        .extend(provider_vars("LINKEDIN", &linkedin, LINKEDIN_CB));
    let s = start_opts(opts).await;

    // Someone registers the victim's address with a password of theirs...
    let email = unique_email("victim");
    let squatter = register(&s, &email, "squatter password 123").await;
    let squatter_token = squatter["token"].as_str().unwrap().to_owned();
    let squatter_refresh = squatter["refresh_token"].as_str().unwrap().to_owned();
    let user_id = squatter["user"]["id"].as_str().unwrap().to_owned();

    // ...then the victim signs in with a provider that verified the address.
    let set = login_ok(&s, &google, "google", &verified("victim-google", &email)).await;
    assert_eq!(
        set["user"]["id"],
        user_id.as_str(),
        "linked, not duplicated"
    );
    assert_eq!(set["user"]["email_verified"], true);

    // The registrant's password and sessions are gone.
    assert_eq!(
        password_login(&s, &email, "squatter password 123").await,
        401
    );
    assert!(users(&s).password_hash(&user_id).await.unwrap().is_none());
    assert_eq!(verify(&s, &squatter_token).await.0, 401);
    let res = client()
        .post(s.url("/auth/refresh"))
        .json(&json!({ "refresh_token": squatter_refresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // The victim's session works.
    assert_eq!(verify(&s, set["token"].as_str().unwrap()).await.0, 200);
    let events = audit(&s)
        .list_events(&AuditQuery {
            user_id: Some(user_id.clone()),
            event: Some("account_claimed".into()),
            page: 1,
            per_page: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(events.items.len(), 1);

    // Same with an account created through a provider that did not verify
    // the address: that identity is unlinked when a verified one claims it.
    let email = unique_email("victim2");
    let squat = login_ok(
        &s,
        &linkedin,
        "linkedin",
        &FakeUser::new("squatter-li", Some(&email), false),
    )
    .await;
    assert_eq!(squat["user"]["email_verified"], false);
    let claimed = login_ok(&s, &google, "google", &verified("victim2-google", &email)).await;
    assert_eq!(claimed["user"]["id"], squat["user"]["id"]);
    let accounts: Vec<String> = claimed["user"]["social_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["provider"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(accounts, ["google"], "{claimed}");
    assert_eq!(verify(&s, squat["token"].as_str().unwrap()).await.0, 401);
    // The squatter's provider identity no longer signs in to that account.
    let (status, body) = login_as(
        &s,
        &linkedin,
        "linkedin",
        &FakeUser::new("squatter-li", Some(&email), false),
    )
    .await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test]
async fn linking_to_a_verified_account_keeps_its_password_and_sessions() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let s = google_server(&idp).await;
    let email = unique_email("owner");
    let registered = register(&s, &email, "owner password 1234").await;
    let user_id = registered["user"]["id"].as_str().unwrap().to_owned();
    // The owner proved the address (as by the mailed link).
    users(&s)
        .update_user(
            &user_id,
            &UserPatch {
                email_verified: Some(true),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();

    let set = login_ok(&s, &idp, "google", &verified("owner-google", &email)).await;
    assert_eq!(set["user"]["id"], user_id.as_str());
    assert_eq!(password_login(&s, &email, "owner password 1234").await, 200);
    assert_eq!(
        verify(&s, registered["token"].as_str().unwrap()).await.0,
        200
    );
}

#[tokio::test]
async fn a_verified_email_from_a_second_provider_links_and_profile_fields_fill_only_empty_ones() {
    let google = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let linkedin = FakeIdp::start(FakeIdpOptions::linkedin_like()).await;
    let mut opts = google_opts(&google);
    opts.vars
        .extend(provider_vars("LINKEDIN", &linkedin, LINKEDIN_CB));
    let s = start_opts(opts).await;
    let email = unique_email("linked");

    // Google: no name; locale goes to the new user's preferences.
    let mut g = verified("g-sub", &email);
    g.locale = Some("fr-FR".into());
    let first = login_ok(&s, &google, "google", &g).await;
    let id = first["user"]["id"].as_str().unwrap().to_owned();
    assert!(first["user"]["name"].is_null(), "{first}");
    assert_eq!(first["user"]["preferences"]["locale"], "fr-FR", "{first}");

    // LinkedIn, same verified address (differently cased): linked; its
    // name fills the empty one.
    let mut l = verified("l-sub", &email.to_uppercase());
    l.name = Some("Linked Name".into());
    l.picture = Some("https://pics.example/l.png".into());
    let second = login_ok(&s, &linkedin, "linkedin", &l).await;
    assert_eq!(second["user"]["id"], id.as_str());
    assert_eq!(second["user"]["name"], "Linked Name");
    let providers: Vec<&str> = second["user"]["social_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["provider"].as_str().unwrap())
        .collect();
    assert!(
        providers.contains(&"google") && providers.contains(&"linkedin"),
        "{second}"
    );
    let identities = users(&s).list_identities(&id).await.unwrap();
    assert_eq!(identities.len(), 2);

    // What the user edited is never overwritten by a provider.
    users(&s)
        .update_user(
            &id,
            &UserPatch {
                name: Some(Some("Edited By Me".into())),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    let mut g2 = g.clone();
    g2.name = Some("Google Name".into());
    g2.picture = Some("https://pics.example/g.png".into());
    let third = login_ok(&s, &google, "google", &g2).await;
    assert_eq!(third["user"]["name"], "Edited By Me");
    assert_eq!(third["user"]["photo_url"], "https://pics.example/l.png");
    assert!(third["user"]["login_count"].as_i64().unwrap() >= 3);

    // A second account for another verified address stays separate.
    let other = login_ok(
        &s,
        &google,
        "google",
        &verified("g-other", &unique_email("other")),
    )
    .await;
    assert_ne!(other["user"]["id"], id.as_str());
}

// ---------------------------------------------------------------- configuration

#[tokio::test]
async fn unknown_or_unconfigured_providers_are_400_unknown_provider() {
    let s = start_opts(Options::default().var("GOOGLE_ISSUER_URL", "http://127.0.0.1:1")).await;
    let res = client().get(s.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200, "the server starts without credentials");
    for provider in ["google", "linkedin", "nope"] {
        let res = client()
            .post(s.url(&format!("/auth/{provider}")))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{provider}");
        assert_error(&res.json().await.unwrap(), 400, "unknown_provider");
        let (status, body) = callback(&s, provider, "code=a&state=b", None).await;
        assert_eq!(status, 400, "{provider}: {body}");
        assert_error(&body, 400, "unknown_provider");
    }
}

#[tokio::test]
async fn redirect_uris_must_match_exactly() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let allowed = "https://app.example/after-login";
    let s = start_opts(google_opts(&idp).var(
        "ALLOWED_REDIRECTS",
        &format!("{allowed},https://m.example/cb"),
    ))
    .await;

    for ok in [GOOGLE_CB, allowed, "https://m.example/cb"] {
        let started = start_with(&s, "google", json!({ "redirect_uri": ok }), &[]).await;
        assert_eq!(
            query_param(&started.auth_url, "redirect_uri").as_deref(),
            Some(ok)
        );
    }
    for bad in [
        "https://app.example/after-login/",
        "https://app.example/after-login?next=/",
        "https://app.example/after-login#x",
        "https://app.example/after-login/../evil",
        "https://app.example/after-logi",
        "https://app.example/after-login.evil.example",
        "https://app.example.evil.example/after-login",
        "https://evil.example/https://app.example/after-login",
        "https://evil.example/?https://app.example/after-login",
        "HTTPS://APP.EXAMPLE/after-login",
        "http://app.example/after-login",
        "https://app.example:443/after-login",
        "https://user@app.example/after-login",
        "//app.example/after-login",
        "https://app.example/auth/google/callback/",
        " https://app.example/after-login",
        "",
    ] {
        let res = client()
            .post(s.url("/auth/google"))
            .json(&json!({ "redirect_uri": bad }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad:?}");
        assert_error(&res.json().await.unwrap(), 400, "invalid_redirect");
    }

    // A login to an allowed redirect URI sends the same one at the code exchange.
    let started = start_with(&s, "google", json!({ "redirect_uri": allowed }), &[]).await;
    let query = approve(&idp, &started, &verified("redir", &unique_email("redir")));
    let (status, body) = callback(&s, "google", &query, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        idp.last_token_request().unwrap().redirect_uri.as_deref(),
        Some(allowed)
    );
}

#[tokio::test]
async fn a_third_provider_is_configuration_only() {
    let acme = FakeIdp::start(FakeIdpOptions {
        issuer_path: "/realms/acme".into(),
        ..FakeIdpOptions::google_like()
    })
    .await;
    let mut vars = provider_vars("ACME", &acme, "https://app.example/auth/acme/callback");
    vars.push(("ACME_SCOPES".into(), "openid email".into()));
    vars.push(("OIDC_PROVIDERS".into(), "acme, other".into()));
    let s = start_opts(Options {
        vars,
        ..Options::default()
    })
    .await;

    let started = start(&s, "acme").await;
    assert_eq!(
        query_param(&started.auth_url, "scope").as_deref(),
        Some("openid email")
    );
    assert!(query_param(&started.auth_url, "code_challenge").is_some());
    let email = unique_email("acme");
    let query = approve(&acme, &started, &verified("acme-1", &email));
    let (status, set) = callback(&s, "acme", &query, None).await;
    assert_eq!(status, 200, "{set}");
    assert_token_set(&set, &email, "acme");
    assert_eq!(verify(&s, set["token"].as_str().unwrap()).await.0, 200);

    // `other` is listed without credentials: not offered.
    let res = client()
        .post(s.url("/auth/other"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_error(&res.json().await.unwrap(), 400, "unknown_provider");
}

#[tokio::test]
async fn a_login_started_on_one_instance_finishes_on_another() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let schema = fresh_schema();
    let prefix = format!("oidc-{schema}");
    let mk = || {
        let mut o = google_opts(&idp)
            .db(Db::Postgres)
            .var("REDIS_URL", &redis_url())
            .var("REDIS_PREFIX", &prefix);
        o.pg_schema = Some(schema.clone());
        o
    };
    let a = start_opts(mk()).await;
    let b = start_opts(mk()).await;
    let email = unique_email("scale");
    let user = verified("scale", &email);

    // Browser-bound: the cookie set by A is accepted by B.
    let started = start_with(
        &a,
        "google",
        json!({}),
        &[("origin", "https://app.example")],
    )
    .await;
    let query = approve(&idp, &started, &user);
    let (status, set) = callback(&b, "google", &query, started.cookie.as_deref()).await;
    assert_eq!(status, 200, "{set}");
    assert_token_set(&set, &email, "google");
    let token = set["token"].as_str().unwrap();
    assert_eq!(verify(&a, token).await.0, 200);
    assert_eq!(verify(&b, token).await.0, 200);

    // Single use across instances.
    let (status, body) = callback(&a, "google", &query, started.cookie.as_deref()).await;
    assert_eq!(status, 401, "{body}");
    assert_error(&body, 401, "invalid_state");

    // And the other way round, without a browser.
    let started = start(&b, "google").await;
    let query = approve(&idp, &started, &user);
    let (status, again) = callback(&a, "google", &query, None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["user"]["id"], set["user"]["id"]);

    // A flow lives only under the configured prefix: a third instance with
    // another prefix cannot finish a flow of the first two.
    let started = start(&a, "google").await;
    let query = approve(&idp, &started, &user);
    let mut other = google_opts(&idp)
        .db(Db::Postgres)
        .var("REDIS_URL", &redis_url())
        .var("REDIS_PREFIX", &format!("{prefix}-other"));
    other.pg_schema = Some(schema.clone());
    let c = start_opts(other).await;
    let (status, body) = callback(&c, "google", &query, None).await;
    assert_eq!(status, 401, "{body}");
}

// ---------------------------------------------------------------- audit

#[tokio::test]
async fn starts_successes_and_failures_are_audited_without_secrets() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let s = google_server(&idp).await;
    let email = unique_email("audited");

    let started = start(&s, "google").await;
    let query = approve(&idp, &started, &verified("audited", &email));
    let res = client()
        .get(s.url(&format!("/auth/google/callback?{query}")))
        .header("user-agent", "audit-test/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let set: Value = res.json().await.unwrap();
    let (status, _) = callback(&s, "google", &query, None).await;
    assert_eq!(status, 401);
    let res = client()
        .post(s.url("/auth/google"))
        .json(&json!({"redirect_uri": "https://evil.example/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    let all = audit(&s)
        .list_events(&AuditQuery {
            page: 1,
            per_page: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .items;
    let find = |event: &str, outcome: &str| {
        all.iter()
            .find(|e| e.event == event && e.outcome == outcome)
            .unwrap_or_else(|| panic!("no {event}/{outcome} in {all:#?}"))
    };
    let started_ok = find("login_started", "success");
    assert_eq!(started_ok.method.as_deref(), Some("google"));
    assert!(started_ok.ip.is_some());
    let bad_start = find("login_started", "failure");
    assert_eq!(bad_start.detail.as_deref(), Some("invalid_redirect"));
    let ok = find("login", "success");
    assert_eq!(ok.user_id, set["user"]["id"].as_str().map(str::to_owned));
    assert_eq!(ok.user_agent.as_deref(), Some("audit-test/1.0"));
    let failed = find("login_failed", "failure");
    assert_eq!(failed.method.as_deref(), Some("google"));
    assert_eq!(failed.detail.as_deref(), Some("invalid_state"));

    let code = Url::parse(&format!("http://x/?{query}")).unwrap();
    let secrets = [
        query_param(&code, "code").unwrap(),
        started.state.clone(),
        set["token"].as_str().unwrap().to_owned(),
        set["refresh_token"].as_str().unwrap().to_owned(),
    ];
    let dump = format!("{all:?}");
    for secret in secrets {
        assert!(!dump.contains(&secret), "an audit event holds a secret");
    }
}
