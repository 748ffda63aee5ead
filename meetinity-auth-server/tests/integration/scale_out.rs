//! Two server instances over one PostgreSQL schema and one Redis behave as
//! one service: a login on one is good on the other, a logout, a profile
//! change or a detected refresh-token reuse on one is seen by the other at
//! once (Redis fan-out), never after a cache lifetime.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use meetinity_auth::mail::{Mail, Mailer};
use serde_json::{json, Value};

use crate::support::{client, fresh_schema, redis_url, start_opts, Db, Options, TestServer};

/// Keeps every mail, for the links inside.
#[derive(Debug, Default)]
struct Outbox(Mutex<Vec<Mail>>);

#[async_trait]
impl Mailer for Outbox {
    async fn send(&self, mail: &Mail) -> meetinity_auth::Result<()> {
        self.0.lock().unwrap().push(mail.clone());
        Ok(())
    }
}

impl Outbox {
    /// The `token=` of the newest mail to `to`.
    fn token_for(&self, to: &str) -> String {
        let mails = self.0.lock().unwrap();
        let mail = mails
            .iter()
            .rev()
            .find(|m| m.to == to)
            .unwrap_or_else(|| panic!("no mail to {to}"));
        let start = mail.text.find("token=").expect("a token link") + "token=".len();
        mail.text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }
}

/// Two instances on one fresh schema and the shared Redis, both mailing into `outbox`.
async fn pair(outbox: &Arc<Outbox>) -> (TestServer, TestServer) {
    let schema = fresh_schema();
    let prefix = format!("scale-{schema}");
    let mk = || {
        let mut o = Options::default()
            .db(Db::Postgres)
            .var("REDIS_URL", &redis_url())
            // Harmless if the variable does not exist; isolates the keys if it does.
            .var("REDIS_PREFIX", &prefix)
            .var("REFRESH_GRACE_SECS", "0");
        o.pg_schema = Some(schema.clone());
        o.mailer = Some(outbox.clone() as Arc<dyn Mailer>);
        o
    };
    let a = start_opts(mk()).await;
    let b = start_opts(mk()).await;
    (a, b)
}

async fn post(s: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let res = client().post(s.url(path)).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn verify(s: &TestServer, token: &str) -> u16 {
    post(s, "/auth/verify", json!({ "token": token })).await.0
}

async fn profile(s: &TestServer, token: &str) -> (u16, Value) {
    let res = client()
        .get(s.url("/auth/profile"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Polls `f` until it returns `want` or `within` passes; returns how long it took.
async fn until<F, Fut>(within: Duration, want: u16, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let started = Instant::now();
    loop {
        let got = f().await;
        if got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "still {got} (want {want}) after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn register(s: &TestServer, email: &str) -> Value {
    let (status, body) = post(
        s,
        "/auth/register",
        json!({"email": email, "password": "correct horse battery staple 9", "name": "Ada"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn login(s: &TestServer, email: &str) -> Value {
    let (status, body) = post(
        s,
        "/auth/login",
        json!({"email": email, "password": "correct horse battery staple 9"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@example.com", crate::support::uuid_like())
}

#[tokio::test]
async fn a_password_login_on_one_instance_is_good_on_the_other() {
    let outbox = Arc::new(Outbox::default());
    let (a, b) = pair(&outbox).await;
    let email = unique_email("ada");
    register(&b, &email).await;
    let set = login(&a, &email).await;
    let token = set["token"].as_str().unwrap();
    assert_eq!(verify(&b, token).await, 200);
    let (status, body) = profile(&b, token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["email"], email.as_str());
    // The refresh token works on the other instance too.
    let (status, body) = post(
        &b,
        "/auth/refresh",
        json!({"refresh_token": set["refresh_token"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(verify(&a, body["token"].as_str().unwrap()).await, 200);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn a_logout_on_one_instance_is_honoured_by_the_other_within_a_second() {
    let outbox = Arc::new(Outbox::default());
    let (a, b) = pair(&outbox).await;
    let email = unique_email("logout");
    register(&a, &email).await;
    let set = login(&a, &email).await;
    let token = set["token"].as_str().unwrap().to_owned();
    // B has seen the session live: it is in B's liveness cache now.
    assert_eq!(verify(&b, &token).await, 200);
    assert_eq!(verify(&b, &token).await, 200);
    let res = client()
        .post(a.url("/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let took = until(Duration::from_secs(1), 401, || verify(&b, &token)).await;
    eprintln!("logout on A refused on B after {took:?}");
    assert_eq!(verify(&a, &token).await, 401);
    // The refresh token died with the session, on both.
    let (status, _) = post(
        &b,
        "/auth/refresh",
        json!({"refresh_token": set["refresh_token"]}),
    )
    .await;
    assert_eq!(status, 401);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn a_profile_change_on_one_instance_is_read_at_once_on_the_other() {
    let outbox = Arc::new(Outbox::default());
    let (a, b) = pair(&outbox).await;
    let email = unique_email("profile");
    let set = register(&a, &email).await;
    let token = set["token"].as_str().unwrap().to_owned();
    // B reads (and caches) the profile: not verified yet.
    for _ in 0..2 {
        let (status, body) = profile(&b, &token).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["user"]["email_verified"], false, "{body}");
    }
    // A changes it: the verification link of the registration mail.
    let link = outbox.token_for(&email);
    let (status, body) = post(&a, "/auth/email/verify", json!({ "token": link })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["email_verified"], true, "{body}");
    // B shows the change at once (no waiting for REDIS_CACHE_TTL).
    let took = until(Duration::from_secs(1), 200, || async {
        let (status, body) = profile(&b, &token).await;
        if status == 200 && body["user"]["email_verified"] == true {
            200
        } else {
            status.max(1)
        }
    })
    .await;
    eprintln!("profile change on A read on B after {took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");

    // The same with the profile endpoints: read on B, PATCH on A, read on B.
    let id = set["user"]["id"].as_str().unwrap().to_owned();
    let read_title = |s: &TestServer| {
        let (url, token) = (s.url(&format!("/users/{id}")), token.clone());
        async move {
            let res = client().get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(res.status(), 200);
            let body: Value = res.json().await.unwrap();
            body["user"]["title"].clone()
        }
    };
    assert_eq!(read_title(&b).await, Value::Null);
    assert_eq!(read_title(&b).await, Value::Null);
    let res = client()
        .patch(a.url(&format!("/users/{id}")))
        .bearer_auth(&token)
        .json(&json!({"title": "Chief Scale-Out Officer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let started = Instant::now();
    while read_title(&b).await != "Chief Scale-Out Officer" {
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "B still shows the old profile"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("PATCH on A read on B after {:?}", started.elapsed());
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn refresh_token_reuse_detected_on_one_instance_revokes_the_session_on_the_other() {
    let outbox = Arc::new(Outbox::default());
    let (a, b) = pair(&outbox).await;
    let email = unique_email("reuse");
    register(&a, &email).await;
    let first = login(&a, &email).await;
    let old_refresh = first["refresh_token"].as_str().unwrap().to_owned();
    // A rotates the refresh token and uses the new access token (live in A's cache).
    let (status, second) = post(&a, "/auth/refresh", json!({ "refresh_token": old_refresh })).await;
    assert_eq!(status, 200, "{second}");
    let token = second["token"].as_str().unwrap().to_owned();
    assert_eq!(verify(&a, &token).await, 200);
    assert_eq!(verify(&a, &token).await, 200);
    // Past the (zero) grace window, someone replays the old refresh token on B.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, body) = post(&b, "/auth/refresh", json!({ "refresh_token": old_refresh })).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["reason"], "refresh_token_reused", "{body}");
    // A refuses the session's access token within a second, and its refresh token.
    let took = until(Duration::from_secs(1), 401, || verify(&a, &token)).await;
    eprintln!("reuse on B revoked the session on A after {took:?}");
    let (status, body) = post(
        &a,
        "/auth/refresh",
        json!({ "refresh_token": second["refresh_token"] }),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
