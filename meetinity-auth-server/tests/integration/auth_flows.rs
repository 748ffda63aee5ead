//! Issue 3 end to end over HTTP: email + password accounts with a real SMTP
//! server on loopback, sessions, refresh rotation (reuse detection, grace
//! window, absolute lifetime), token rejections, and revocation across two
//! instances sharing PostgreSQL and Redis.
//!
//! Every scenario is written once as `async fn scenario(db: Db)` and run on
//! SQLite and on PostgreSQL by `on_both_backends!` (modules `sqlite` and
//! `postgres`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use meetinity_auth::cache::{Cache, MokaCache, RedisCache, RedisSettings, RESUBSCRIBED_TOPIC};
use meetinity_auth::clock::{Clock, ManualClock};
use meetinity_auth::mail::SmtpMailer;
use meetinity_auth::service::Backend;
use meetinity_auth::store::SessionStore;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use crate::smtp_sink::SmtpSink;
use crate::support::{
    client, fresh_schema, redis_url, start_opts, uuid_like, Db, Options, TestServer,
};

const PASSWORD: &str = "a long and unusual passphrase 42";
const NEW_PASSWORD: &str = "another long passphrase, also 43";
const MAIL_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- helpers

/// An HTTP answer, read whole.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn reason(&self) -> &str {
        self.body["error"]["reason"].as_str().unwrap_or("")
    }

    /// Asserts the status (and the envelope's reason, when it is an error).
    #[track_caller]
    fn expect(&self, status: u16, reason: Option<&str>) -> &Self {
        assert_eq!(self.status, status, "{self:?}");
        if let Some(reason) = reason {
            assert_eq!(self.body["error"]["code"], status, "{self:?}");
            assert_eq!(self.reason(), reason, "{self:?}");
        }
        self
    }

    /// Asserts a 401 for a bad access token, with RFC 6750's header.
    #[track_caller]
    fn expect_invalid_token(&self) {
        self.expect(401, Some("invalid_token"));
        assert_eq!(
            self.headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer error=\"invalid_token\""),
            "{self:?}"
        );
    }

    fn str(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string `{field}` in {:?}", self.body))
            .to_owned()
    }
}

async fn call(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut req = client()
        .request(method, s.url(path))
        .header("user-agent", "auth-flows-test");
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Answer {
        status,
        headers,
        body,
    }
}

async fn post(s: &TestServer, path: &str, body: Value) -> Answer {
    call(s, reqwest::Method::POST, path, None, Some(body)).await
}

async fn post_bearer(s: &TestServer, path: &str, token: &str, body: Option<Value>) -> Answer {
    call(s, reqwest::Method::POST, path, Some(token), body).await
}

async fn profile(s: &TestServer, token: &str) -> Answer {
    call(s, reqwest::Method::GET, "/auth/profile", Some(token), None).await
}

async fn verify(s: &TestServer, token: &str) -> Answer {
    post(s, "/auth/verify", json!({ "token": token })).await
}

async fn refresh(s: &TestServer, refresh_token: &str) -> Answer {
    post(
        s,
        "/auth/refresh",
        json!({ "refresh_token": refresh_token }),
    )
    .await
}

async fn register(s: &TestServer, email: &str, password: &str) -> Answer {
    post(
        s,
        "/auth/register",
        json!({ "email": email, "password": password, "name": "Ada" }),
    )
    .await
}

async fn login(s: &TestServer, email: &str, password: &str) -> Answer {
    post(
        s,
        "/auth/login",
        json!({ "email": email, "password": password }),
    )
    .await
}

/// A fresh, unique email address.
fn fresh_email() -> String {
    format!("user-{}@example.test", uuid_like())
}

/// Checks the shape of a token set (register, login, refresh).
#[track_caller]
fn assert_token_set(a: &Answer, email: &str) {
    assert!(a.str("token").split('.').count() == 3, "{a:?}");
    assert_eq!(a.str("refresh_token").len(), 43, "{a:?}");
    assert_eq!(a.body["token_type"], "Bearer", "{a:?}");
    assert!(a.body["expires_in"].as_i64().unwrap() > 0, "{a:?}");
    assert_eq!(
        a.body["user"]["email"].as_str().unwrap().to_lowercase(),
        email.to_lowercase(),
        "{a:?}"
    );
}

/// The single-use token of a mail (both mails carry `{"token": "..."}`).
fn token_in(mail_body: &str) -> String {
    let marker = "{\"token\": \"";
    let start = mail_body
        .find(marker)
        .unwrap_or_else(|| panic!("no token in {mail_body:?}"))
        + marker.len();
    let token: String = mail_body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert!(token.len() >= 40, "{mail_body:?}");
    token
}

async fn mailed_token(sink: &SmtpSink, to: &str, subject_has: &str) -> String {
    let mail = sink
        .wait_for(to, MAIL_WAIT)
        .await
        .unwrap_or_else(|| panic!("no mail for {to}"));
    let subject = mail.header("Subject").unwrap_or_default();
    assert!(subject.contains(subject_has), "{subject:?}");
    token_in(&mail.body())
}

/// Options for `db` with the SMTP sink as `SMTP_URL`.
fn opts(db: Db, sink: &SmtpSink) -> Options {
    Options::default()
        .db(db)
        .var("SMTP_URL", &sink.url())
        .var("MAIL_FROM", "Meetinity <no-reply@meetinity.test>")
        .var("PUBLIC_BASE_URL", "http://auth.example.test")
}

/// Registers `email` and verifies it with the mailed token; returns the
/// registration's token set.
async fn register_verified(s: &TestServer, sink: &SmtpSink, email: &str) -> Answer {
    let reg = register(s, email, PASSWORD).await;
    reg.expect(201, None);
    let token = mailed_token(sink, email, "Confirm").await;
    post(s, "/auth/email/verify", json!({ "token": token }))
        .await
        .expect(200, None);
    reg
}

/// A server on `db` with a manual clock (no SMTP: mails go to the log).
async fn with_clock(db: Db, vars: &[(&str, &str)]) -> (TestServer, ManualClock) {
    let clock = ManualClock::new();
    let mut o = Options::default().db(db);
    for (k, v) in vars {
        o = o.var(k, v);
    }
    o.clock = Some(Arc::new(clock.clone()));
    (start_opts(o).await, clock)
}

// ------------------------------------------------- the scenarios, per backend

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::Db::Postgres).await
                }
            )*
        }
    };
}

on_both_backends!(
    register_verify_login_refresh_logout,
    verification_mail_can_be_resent,
    forgot_and_reset_password,
    change_password_revokes_the_other_sessions,
    register_rejects_bad_input,
    login_failures_look_alike,
    login_is_throttled_then_recovers,
    ip_throttle_counts_failures_only,
    unsendable_mail_does_not_lose_the_account,
    refresh_rotates_and_detects_reuse,
    refresh_grace_window_gives_the_same_successor,
    refresh_token_has_an_absolute_lifetime,
    verify_rejects_none_expired_and_revoked_tokens,
    logout_all_revokes_every_session,
    lost_revocations_are_reread_when_the_bus_resubscribes,
);

async fn register_verify_login_refresh_logout(db: Db) {
    let sink = SmtpSink::start().await;
    let s = start_opts(opts(db, &sink)).await;
    let email = fresh_email();

    // Register: 201, a token set, not verified yet; a mail arrives.
    let reg = register(&s, &email, PASSWORD).await;
    reg.expect(201, None);
    assert_token_set(&reg, &email);
    assert_eq!(reg.body["user"]["email_verified"], false, "{reg:?}");
    assert_eq!(reg.body["user"]["name"], "Ada");
    let mail = sink
        .wait_for(&email, MAIL_WAIT)
        .await
        .expect("verification mail");
    assert_eq!(
        mail.header("From").unwrap(),
        "Meetinity <no-reply@meetinity.test>"
    );
    let body = mail.body();
    assert!(
        body.contains("http://auth.example.test/auth/email/verify?token="),
        "{body}"
    );
    let token = token_in(&body);

    // Verify the email: 200 with email_verified; a second use is refused.
    let v = post(&s, "/auth/email/verify", json!({ "token": token })).await;
    v.expect(200, None);
    assert_eq!(v.body["user"]["email_verified"], true, "{v:?}");
    assert_eq!(v.body["user"]["email"], email.as_str());
    post(&s, "/auth/email/verify", json!({ "token": token }))
        .await
        .expect(400, Some("invalid_token"));
    post(&s, "/auth/email/verify", json!({ "token": "not-a-token" }))
        .await
        .expect(400, Some("invalid_token"));

    // Log in (the email ignoring case), read the profile.
    let li = login(&s, &email.to_uppercase(), PASSWORD).await;
    li.expect(200, None);
    assert_token_set(&li, &email);
    let access = li.str("token");
    let p = profile(&s, &access).await;
    p.expect(200, None);
    assert_eq!(p.body["user"]["email"], email.as_str());
    assert_eq!(p.body["user"]["email_verified"], true);
    assert_eq!(p.body["user"]["id"], reg.body["user"]["id"]);
    let v = verify(&s, &access).await;
    v.expect(200, None);
    assert_eq!(v.body["valid"], true);
    assert_eq!(v.body["sub"], reg.body["user"]["id"]);
    let sid = v.str("sid");
    assert_ne!(sid, verify(&s, &reg.str("token")).await.str("sid"));

    // Refresh: a new token set in the same session.
    let r = refresh(&s, &li.str("refresh_token")).await;
    r.expect(200, None);
    assert_token_set(&r, &email);
    assert_ne!(r.str("refresh_token"), li.str("refresh_token"));
    let access2 = r.str("token");
    assert_eq!(verify(&s, &access2).await.str("sid"), sid);

    // Log out: 204; every access token of the session and its refresh token stop working.
    post_bearer(&s, "/auth/logout", &access2, None)
        .await
        .expect(204, None);
    for t in [&access, &access2] {
        verify(&s, t).await.expect_invalid_token();
        profile(&s, t).await.expect_invalid_token();
        // As a Bearer header on /auth/verify too.
        post_bearer(&s, "/auth/verify", t, None)
            .await
            .expect_invalid_token();
    }
    refresh(&s, &r.str("refresh_token"))
        .await
        .expect(401, Some("invalid_refresh_token"));
    // Logging out again with the dead token is refused.
    post_bearer(&s, "/auth/logout", &access2, None)
        .await
        .expect_invalid_token();
    // The registration's own session is untouched.
    verify(&s, &reg.str("token")).await.expect(200, None);
    // No Bearer at all: 401 with a bare challenge.
    let none = call(&s, reqwest::Method::GET, "/auth/profile", None, None).await;
    none.expect(401, None);
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    s.stop().await.unwrap();
}

async fn verification_mail_can_be_resent(db: Db) {
    let sink = SmtpSink::start().await;
    let s = start_opts(opts(db, &sink)).await;
    let email = fresh_email();
    let reg = register(&s, &email, PASSWORD).await;
    reg.expect(201, None);
    let first = mailed_token(&sink, &email, "Confirm").await;
    let access = reg.str("token");
    post_bearer(&s, "/auth/email/verify/resend", &access, None)
        .await
        .expect(202, None);
    let second = mailed_token(&sink, &email, "Confirm").await;
    assert_ne!(first, second);
    // Either token verifies once.
    let v = post(&s, "/auth/email/verify", json!({ "token": second })).await;
    v.expect(200, None);
    assert_eq!(v.body["user"]["email_verified"], true);
    // Already verified: resend is accepted and sends nothing.
    post_bearer(&s, "/auth/email/verify/resend", &access, None)
        .await
        .expect(202, None);
    assert!(sink
        .wait_for(&email, Duration::from_millis(500))
        .await
        .is_none());
    // Resend needs a Bearer.
    post(&s, "/auth/email/verify/resend", json!({}))
        .await
        .expect(401, Some("missing_token"));
    s.stop().await.unwrap();
}

async fn forgot_and_reset_password(db: Db) {
    let sink = SmtpSink::start().await;
    let s = start_opts(opts(db, &sink)).await;
    let email = fresh_email();
    let reg = register_verified(&s, &sink, &email).await;
    let second = login(&s, &email, PASSWORD).await;
    second.expect(200, None);

    // Known and unknown emails get the same answer; only the known one gets a mail.
    let stranger = fresh_email();
    let known = post(&s, "/auth/password/forgot", json!({ "email": email })).await;
    let unknown = post(&s, "/auth/password/forgot", json!({ "email": stranger })).await;
    known.expect(202, None);
    unknown.expect(202, None);
    assert_eq!(known.body, unknown.body);
    post(
        &s,
        "/auth/password/forgot",
        json!({ "email": "not an email" }),
    )
    .await
    .expect(202, None);
    let token = mailed_token(&sink, &email, "Reset").await;
    assert!(sink
        .wait_for(&stranger, Duration::from_millis(500))
        .await
        .is_none());

    // A weak new password is refused without burning the token.
    post(
        &s,
        "/auth/password/reset",
        json!({ "token": token, "password": "short" }),
    )
    .await
    .expect(422, Some("weak_password"));
    // Reset: 204, every session of the user is revoked.
    post(
        &s,
        "/auth/password/reset",
        json!({ "token": token, "password": NEW_PASSWORD }),
    )
    .await
    .expect(204, None);
    for set in [&reg, &second] {
        verify(&s, &set.str("token")).await.expect_invalid_token();
        profile(&s, &set.str("token")).await.expect_invalid_token();
        refresh(&s, &set.str("refresh_token"))
            .await
            .expect(401, Some("invalid_refresh_token"));
    }
    // The new password works, the old one does not.
    login(&s, &email, NEW_PASSWORD).await.expect(200, None);
    login(&s, &email, PASSWORD)
        .await
        .expect(401, Some("invalid_credentials"));
    // The token is single use.
    post(
        &s,
        "/auth/password/reset",
        json!({ "token": token, "password": "yet another fine passphrase" }),
    )
    .await
    .expect(400, Some("invalid_token"));
    post(
        &s,
        "/auth/password/reset",
        json!({ "token": "bogus", "password": "yet another fine passphrase" }),
    )
    .await
    .expect(400, Some("invalid_token"));
    // A verification token is no reset token.
    post(&s, "/auth/password/forgot", json!({ "email": email }))
        .await
        .expect(202, None);
    let reset = mailed_token(&sink, &email, "Reset").await;
    post(&s, "/auth/email/verify", json!({ "token": reset }))
        .await
        .expect(400, Some("invalid_token"));
    s.stop().await.unwrap();
}

async fn change_password_revokes_the_other_sessions(db: Db) {
    let sink = SmtpSink::start().await;
    let s = start_opts(opts(db, &sink)).await;
    let email = fresh_email();
    let first = register(&s, &email, PASSWORD).await;
    first.expect(201, None);
    let current = login(&s, &email, PASSWORD).await;
    current.expect(200, None);
    let access = current.str("token");

    let change = |current_password: &'static str, new_password: &'static str| {
        let s = &s;
        let access = access.clone();
        async move {
            post_bearer(
                s,
                "/auth/password/change",
                &access,
                Some(json!({ "current_password": current_password, "new_password": new_password })),
            )
            .await
        }
    };
    change("not my password at all", NEW_PASSWORD)
        .await
        .expect(401, Some("invalid_credentials"));
    change(PASSWORD, "password1")
        .await
        .expect(422, Some("weak_password"));
    // Nothing changed so far.
    verify(&s, &first.str("token")).await.expect(200, None);

    change(PASSWORD, NEW_PASSWORD).await.expect(204, None);
    // The other session is gone (access and refresh) ...
    verify(&s, &first.str("token")).await.expect_invalid_token();
    refresh(&s, &first.str("refresh_token"))
        .await
        .expect(401, Some("invalid_refresh_token"));
    // ... the current one is not.
    verify(&s, &access).await.expect(200, None);
    profile(&s, &access).await.expect(200, None);
    refresh(&s, &current.str("refresh_token"))
        .await
        .expect(200, None);
    login(&s, &email, NEW_PASSWORD).await.expect(200, None);
    login(&s, &email, PASSWORD)
        .await
        .expect(401, Some("invalid_credentials"));
    // Without a Bearer: 401.
    post(
        &s,
        "/auth/password/change",
        json!({ "current_password": NEW_PASSWORD, "new_password": PASSWORD }),
    )
    .await
    .expect(401, Some("missing_token"));
    s.stop().await.unwrap();
}

async fn register_rejects_bad_input(db: Db) {
    let sink = SmtpSink::start().await;
    let s = start_opts(opts(db, &sink)).await;
    for bad in [
        "",
        "plainaddress",
        "@example.test",
        "a@b",
        "a b@example.test",
    ] {
        register(&s, bad, PASSWORD)
            .await
            .expect(422, Some("validation_failed"));
    }
    let email = fresh_email();
    for weak in [
        "short",        // under 10 characters
        email.as_str(), // the email itself
        "password123",  // a common breached password
        "qwertyuiop",   // another
    ] {
        register(&s, &email, weak)
            .await
            .expect(422, Some("weak_password"));
    }
    // Nothing was created by the refusals: the email is still free.
    register(&s, &email, PASSWORD).await.expect(201, None);
    // Taken, ignoring case.
    register(&s, &email.to_uppercase(), PASSWORD)
        .await
        .expect(409, Some("email_taken"));
    // Missing fields are 422, never 500.
    post(&s, "/auth/register", json!({ "email": email }))
        .await
        .expect(422, None);
    s.stop().await.unwrap();
}

async fn login_failures_look_alike(db: Db) {
    let sink = SmtpSink::start().await;
    let s = start_opts(opts(db, &sink).var("LOGIN_MAX_FAILURES", "1000")).await;
    let email = fresh_email();
    register(&s, &email, PASSWORD).await.expect(201, None);
    let stranger = fresh_email();

    let mut wrong_times = Vec::new();
    let mut unknown_times = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let wrong = login(&s, &email, "a wrong but long password").await;
        wrong_times.push(t.elapsed());
        let t = Instant::now();
        let unknown = login(&s, &stranger, "a wrong but long password").await;
        unknown_times.push(t.elapsed());
        wrong.expect(401, Some("invalid_credentials"));
        unknown.expect(401, Some("invalid_credentials"));
        assert_eq!(wrong.headers.get("www-authenticate"), None);
        bodies.push((wrong.body, unknown.body));
    }
    for (wrong, unknown) in &bodies {
        assert_eq!(wrong, unknown);
    }
    // The fastest of each series: other tests share the CPU, and noise only
    // ever adds time, so the minimum is the fairest estimate of the cost.
    let w = *wrong_times.iter().min().unwrap();
    let u = *unknown_times.iter().min().unwrap();
    let ratio = w.as_secs_f64().max(u.as_secs_f64()) / w.as_secs_f64().min(u.as_secs_f64());
    assert!(
        ratio <= 2.0,
        "fastest login: wrong password {w:?}, unknown email {u:?} \
         (all: {wrong_times:?} vs {unknown_times:?})"
    );
    s.stop().await.unwrap();
}

async fn ip_throttle_counts_failures_only(db: Db) {
    let o = Options::default()
        .db(db)
        .var("LOGIN_IP_MAX_FAILURES", "3")
        .var("RATE_LIMIT_PER_MINUTE", "0");
    let s = start_opts(o).await;
    let email = fresh_email();
    register(&s, &email, PASSWORD).await.expect(201, None);
    // Many good logins from one address (an office behind NAT) are never throttled.
    for _ in 0..6 {
        login(&s, &email, PASSWORD).await.expect(200, None);
    }
    // Failures on different accounts from that address are.
    for _ in 0..3 {
        login(&s, &fresh_email(), "a wrong but long password")
            .await
            .expect(401, Some("invalid_credentials"));
    }
    let a = login(&s, &fresh_email(), "a wrong but long password").await;
    a.expect(429, Some("rate_limited"));
    assert!(a.headers.contains_key("retry-after"), "{a:?}");
    s.stop().await.unwrap();
}

async fn login_is_throttled_then_recovers(db: Db) {
    let clock = ManualClock::new();
    let mut o = Options::default()
        .db(db)
        .var("LOGIN_MAX_FAILURES", "3")
        .var("LOGIN_FAILURE_WINDOW_SECS", "600");
    o.clock = Some(Arc::new(clock.clone()));
    let s = start_opts(o).await;
    let email = fresh_email();
    register(&s, &email, PASSWORD).await.expect(201, None);
    // A success resets the account's counter.
    login(&s, &email, PASSWORD).await.expect(200, None);

    for _ in 0..3 {
        login(&s, &email, "a wrong but long password")
            .await
            .expect(401, Some("invalid_credentials"));
    }
    // Over the limit: 429 with Retry-After, even with the right password.
    for pw in ["a wrong but long password", PASSWORD] {
        let a = login(&s, &email, pw).await;
        a.expect(429, Some("rate_limited"));
        let after: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=600).contains(&after), "{a:?}");
    }
    // Other accounts are not affected; unknown emails are throttled alike.
    let other = fresh_email();
    register(&s, &other, PASSWORD).await.expect(201, None);
    login(&s, &other, PASSWORD).await.expect(200, None);
    let stranger = fresh_email();
    for _ in 0..3 {
        login(&s, &stranger, PASSWORD)
            .await
            .expect(401, Some("invalid_credentials"));
    }
    login(&s, &stranger, PASSWORD)
        .await
        .expect(429, Some("rate_limited"));
    // No permanent lockout: after the window, the right password works again.
    clock.advance(Duration::from_secs(601));
    login(&s, &email, PASSWORD).await.expect(200, None);
    s.stop().await.unwrap();
}

async fn unsendable_mail_does_not_lose_the_account(db: Db) {
    // A port that was just free: nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mailer = Arc::new(
        SmtpMailer::new(
            &format!("smtp://127.0.0.1:{closed}"),
            "Meetinity <no-reply@meetinity.test>",
            Duration::from_secs(2),
        )
        .unwrap(),
    );
    let mut o = Options::default().db(db);
    o.mailer = Some(mailer.clone());
    let s = start_opts(o).await;
    let email = fresh_email();
    let reg = register(&s, &email, PASSWORD).await;
    reg.expect(201, None);
    assert_eq!(reg.body["user"]["email_verified"], false);
    // The failure is counted (delivery happens after the answer).
    let deadline = Instant::now() + Duration::from_secs(5);
    while mailer.failures() < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mailer.failures(), 1);
    // The account exists and works; the user can ask for another mail.
    login(&s, &email, PASSWORD).await.expect(200, None);
    register(&s, &email, PASSWORD)
        .await
        .expect(409, Some("email_taken"));
    post_bearer(&s, "/auth/email/verify/resend", &reg.str("token"), None)
        .await
        .expect(202, None);
    let deadline = Instant::now() + Duration::from_secs(5);
    while mailer.failures() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mailer.failures(), 2);
    // Operators see it in /metrics.
    let text = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines().any(|l| l == "meetinity_mail_failures_total 2"),
        "{text}"
    );
    s.stop().await.unwrap();
}

async fn refresh_rotates_and_detects_reuse(db: Db) {
    let (s, clock) = with_clock(db, &[("REFRESH_GRACE_SECS", "5")]).await;
    let email = fresh_email();
    let reg = register(&s, &email, PASSWORD).await;
    reg.expect(201, None);
    let r0 = reg.str("refresh_token");
    let r1 = refresh(&s, &r0).await;
    r1.expect(200, None);
    assert_token_set(&r1, &email);
    let r2 = refresh(&s, &r1.str("refresh_token")).await;
    r2.expect(200, None);
    let tokens = [&r0, &r1.str("refresh_token"), &r2.str("refresh_token")];
    assert!(tokens[0] != tokens[1] && tokens[1] != tokens[2] && tokens[0] != tokens[2]);
    verify(&s, &r2.str("token")).await.expect(200, None);
    // An unrelated session of the same user survives what follows.
    let other = login(&s, &email, PASSWORD).await;
    other.expect(200, None);

    // Unknown tokens.
    refresh(&s, "definitely-not-a-refresh-token")
        .await
        .expect(401, Some("invalid_refresh_token"));
    post(&s, "/auth/refresh", json!({})).await.expect(422, None);

    // r1 was rotated; presented again after the grace window, it is a reuse.
    clock.advance(Duration::from_secs(6));
    refresh(&s, &r1.str("refresh_token"))
        .await
        .expect(401, Some("refresh_token_reused"));
    // The whole session is revoked: its access tokens and its newest refresh token.
    for t in [reg.str("token"), r1.str("token"), r2.str("token")] {
        verify(&s, &t).await.expect_invalid_token();
    }
    refresh(&s, &r2.str("refresh_token"))
        .await
        .expect(401, Some("invalid_refresh_token"));
    // Presenting the reused token again does not resurrect anything.
    refresh(&s, &r0)
        .await
        .expect(401, Some("invalid_refresh_token"));
    // The other session is untouched.
    verify(&s, &other.str("token")).await.expect(200, None);
    refresh(&s, &other.str("refresh_token"))
        .await
        .expect(200, None);
    s.stop().await.unwrap();
}

async fn refresh_grace_window_gives_the_same_successor(db: Db) {
    let (s, clock) = with_clock(db, &[("REFRESH_GRACE_SECS", "5")]).await;
    let email = fresh_email();
    let reg = register(&s, &email, PASSWORD).await;
    reg.expect(201, None);
    let r0 = reg.str("refresh_token");

    // Two tabs refresh with the same token at once: both get the same successor.
    let (a, b) = tokio::join!(refresh(&s, &r0), refresh(&s, &r0));
    a.expect(200, None);
    b.expect(200, None);
    let r1 = a.str("refresh_token");
    assert_eq!(b.str("refresh_token"), r1);
    // And once more, a little later but within the window.
    clock.advance(Duration::from_secs(4));
    let c = refresh(&s, &r0).await;
    c.expect(200, None);
    assert_eq!(c.str("refresh_token"), r1);
    verify(&s, &c.str("token")).await.expect(200, None);

    // The successor carries on normally.
    let r2 = refresh(&s, &r1).await;
    r2.expect(200, None);
    assert_ne!(r2.str("refresh_token"), r1);

    // After the window, the old token is a reuse: the session dies.
    clock.advance(Duration::from_secs(2));
    refresh(&s, &r0)
        .await
        .expect(401, Some("refresh_token_reused"));
    verify(&s, &r2.str("token")).await.expect_invalid_token();
    refresh(&s, &r2.str("refresh_token"))
        .await
        .expect(401, Some("invalid_refresh_token"));
    s.stop().await.unwrap();
}

async fn refresh_token_has_an_absolute_lifetime(db: Db) {
    let (s, clock) = with_clock(db, &[("REFRESH_TTL_DAYS", "2")]).await;
    let email = fresh_email();
    let reg = register(&s, &email, PASSWORD).await;
    reg.expect(201, None);
    // Refreshing keeps the session going, but not past its absolute lifetime.
    clock.advance(Duration::from_secs(86_400));
    let r1 = refresh(&s, &reg.str("refresh_token")).await;
    r1.expect(200, None);
    clock.advance(Duration::from_secs(86_400 - 10));
    let r2 = refresh(&s, &r1.str("refresh_token")).await;
    r2.expect(200, None);
    verify(&s, &r2.str("token")).await.expect(200, None);
    clock.advance(Duration::from_secs(11));
    refresh(&s, &r2.str("refresh_token"))
        .await
        .expect(401, Some("invalid_refresh_token"));
    // Its access tokens die with it, even before their own expiry.
    verify(&s, &r2.str("token")).await.expect_invalid_token();
    // A new login opens a new session.
    let li = login(&s, &email, PASSWORD).await;
    li.expect(200, None);
    refresh(&s, &li.str("refresh_token"))
        .await
        .expect(200, None);
    s.stop().await.unwrap();
}

/// A token with `alg: none` carrying the claims of `valid`, unsigned.
fn alg_none(valid: &str) -> String {
    let mut parts = valid.split('.');
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    let claims = parts.next().unwrap();
    let forged = json!({ "alg": "none", "typ": "at+jwt", "kid": header["kid"] });
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap()),
        claims
    )
}

async fn verify_rejects_none_expired_and_revoked_tokens(db: Db) {
    let (s, clock) = with_clock(db, &[("JWT_TTL_MIN", "15"), ("JWT_LEEWAY_SECS", "30")]).await;
    let email = fresh_email();
    let reg = register(&s, &email, PASSWORD).await;
    reg.expect(201, None);
    let access = reg.str("token");
    verify(&s, &access).await.expect(200, None);

    // alg none, with and without a signature part.
    let none = alg_none(&access);
    verify(&s, &none).await.expect_invalid_token();
    profile(&s, &none).await.expect_invalid_token();
    let sig = access.rsplit('.').next().unwrap();
    verify(&s, &format!("{none}{sig}"))
        .await
        .expect_invalid_token();
    // Garbage and a missing token.
    verify(&s, "not.a.jwt").await.expect_invalid_token();
    post(&s, "/auth/verify", json!({})).await.expect(400, None);

    // Expired: within the leeway still fine, beyond it refused.
    clock.advance(Duration::from_secs(15 * 60 + 10));
    verify(&s, &access).await.expect(200, None);
    clock.advance(Duration::from_secs(25));
    verify(&s, &access).await.expect_invalid_token();
    profile(&s, &access).await.expect_invalid_token();

    // Revoked: a live token of a session that is then logged out.
    let li = login(&s, &email, PASSWORD).await;
    li.expect(200, None);
    let live = li.str("token");
    verify(&s, &live).await.expect(200, None);
    post_bearer(&s, "/auth/logout", &live, None)
        .await
        .expect(204, None);
    verify(&s, &live).await.expect_invalid_token();
    s.stop().await.unwrap();
}

async fn logout_all_revokes_every_session(db: Db) {
    let (s, _clock) = with_clock(db, &[]).await;
    let email = fresh_email();
    let a = register(&s, &email, PASSWORD).await;
    a.expect(201, None);
    let b = login(&s, &email, PASSWORD).await;
    b.expect(200, None);
    let other_user = fresh_email();
    let c = register(&s, &other_user, PASSWORD).await;
    c.expect(201, None);
    for t in [&a, &b, &c] {
        verify(&s, &t.str("token")).await.expect(200, None);
    }
    post_bearer(&s, "/auth/logout-all", &b.str("token"), None)
        .await
        .expect(204, None);
    for t in [&a, &b] {
        verify(&s, &t.str("token")).await.expect_invalid_token();
        refresh(&s, &t.str("refresh_token"))
            .await
            .expect(401, Some("invalid_refresh_token"));
    }
    // Someone else's session is untouched.
    verify(&s, &c.str("token")).await.expect(200, None);
    s.stop().await.unwrap();
}

async fn lost_revocations_are_reread_when_the_bus_resubscribes(db: Db) {
    let clock = ManualClock::new();
    let cache = Arc::new(MokaCache::new(10_000, Arc::new(clock.clone())));
    let mut o = Options::default().db(db);
    o.clock = Some(Arc::new(clock.clone()));
    o.cache = Some(cache.clone());
    let s = start_opts(o).await;
    let reg = register(&s, &fresh_email(), PASSWORD).await;
    reg.expect(201, None);
    let access = reg.str("token");
    let sid = verify(&s, &access).await.str("sid");

    // The session is revoked behind the service's back, as when another
    // instance's revocation message was lost while the bus was down.
    let revoked = match &s.backend {
        Backend::Sqlite(store) => store.revoke_session(&sid, clock.now()).await,
        Backend::Postgres(store) => store.revoke_session(&sid, clock.now()).await,
        other => panic!("unexpected backend {other:?}"),
    };
    assert!(revoked.unwrap());
    // The warm cache answers without the database (hence the stale answer) ...
    verify(&s, &access).await.expect(200, None);
    // ... until the bus says it (re)subscribed: then the database is asked again.
    cache.publish(RESUBSCRIBED_TOPIC, "").await.unwrap();
    rejected_within(&s, &access, Duration::from_secs(1)).await;
    s.stop().await.unwrap();
}

// ------------------------------------- two instances: PostgreSQL + Redis

/// A Redis cache under `prefix`, once its fan-out listener is subscribed.
async fn listening_cache(prefix: &str) -> Arc<RedisCache> {
    let cache = Arc::new(RedisCache::new(&redis_url(), prefix, RedisSettings::default()).unwrap());
    cache
        .ping()
        .await
        .expect("Redis must be reachable for this test");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cache.is_listening() {
        assert!(
            Instant::now() < deadline,
            "the Redis fan-out listener never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cache
}

/// Polls `/auth/verify` on `s` until `token` is refused; returns how long it took.
async fn rejected_within(s: &TestServer, token: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let a = verify(s, token).await;
        if a.status == 401 {
            a.expect_invalid_token();
            return start.elapsed();
        }
        a.expect(200, None);
        assert!(
            start.elapsed() < limit,
            "still accepted after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_revocation_through_postgres_and_redis() {
    let schema = fresh_schema();
    let prefix = format!("test-auth-flows-{}", uuid_like());
    let server = |cache: Arc<RedisCache>| {
        let mut o = Options::default().db(Db::Postgres);
        o.pg_schema = Some(schema.clone());
        o.cache = Some(cache);
        start_opts(o)
    };
    let a = server(listening_cache(&prefix).await).await;
    let b = server(listening_cache(&prefix).await).await;

    let email = fresh_email();
    let first = register(&a, &email, PASSWORD).await;
    first.expect(201, None);
    let second = login(&a, &email, PASSWORD).await;
    second.expect(200, None);
    let (t1, t2) = (first.str("token"), second.str("token"));
    // B knows nothing yet: its first verify reads the database; then it is warm.
    for t in [&t1, &t2] {
        verify(&b, t).await.expect(200, None);
        verify(&b, t).await.expect(200, None);
    }
    // B's profile works with A's token (shared database and key).
    profile(&b, &t2).await.expect(200, None);

    // A password change on A revokes the other session; B hears of it.
    post_bearer(
        &a,
        "/auth/password/change",
        &t2,
        Some(json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD })),
    )
    .await
    .expect(204, None);
    let took = rejected_within(&b, &t1, Duration::from_secs(1)).await;
    eprintln!("password change on A: B refused the token after {took:?}");
    verify(&b, &t2).await.expect(200, None);

    // Warm verify on B makes no database round trip: with B's database pool
    // closed, B still answers for t2 from its session-liveness cache.
    match &b.backend {
        Backend::Postgres(store) => store.close().await,
        other => panic!("expected postgres, got {other:?}"),
    }
    for _ in 0..3 {
        verify(&b, &t2).await.expect(200, None);
    }
    // A (database open) logs t2 out; B, still without a database, refuses it
    // within a second: the revocation came over Redis pub/sub.
    post_bearer(&a, "/auth/logout", &t2, None)
        .await
        .expect(204, None);
    let took = rejected_within(&b, &t2, Duration::from_secs(1)).await;
    eprintln!("logout on A: B refused the token after {took:?}");
    verify(&a, &t2).await.expect_invalid_token();
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
