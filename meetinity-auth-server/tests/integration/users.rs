//! Issue 5 over HTTP: the Users routes and `GET /admin/audit` — the
//! authorization matrix, validation, listing and search, privacy,
//! connections, sessions, GDPR export and erasure, the purge.
//!
//! Every scenario is written once as `async fn scenario(db: Db)` and run on
//! SQLite and on PostgreSQL by `users_on_both_backends!` (modules `sqlite`
//! and `postgres`). Admins are made the contract's way: an email listed in
//! `ADMIN_EMAILS`, verified (here through the backend store), signing in again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use meetinity_auth::clock::{Clock, ManualClock, SystemClock};
use meetinity_auth::model::{AuditQuery, IdentityLogin, NewUser, UserPatch};
use meetinity_auth::service::Backend;
use meetinity_auth::store::{AuditStore, UserStore};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{client, start, start_opts, uuid_like, Db, Options, TempDir, TestServer};

const PASSWORD: &str = "a long and unusual passphrase 42";
const ADMIN_EMAIL: &str = "root-admin@example.com";
const UA: &str = "users-test/1.0";

// ---------------------------------------------------------------- helpers

/// An HTTP answer, read whole.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    #[track_caller]
    fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{self:?}");
        &self.body
    }

    /// Asserts a 422 whose details name exactly `field` (among others).
    #[track_caller]
    fn expect_invalid(&self, field: &str) {
        assert_eq!(self.status, 422, "{self:?}");
        assert_eq!(
            self.body["error"]["reason"], "validation_failed",
            "{self:?}"
        );
        assert!(
            self.body["error"]["details"][field].is_string(),
            "no message for `{field}`: {self:?}"
        );
    }
}

async fn call_as(
    s: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    user_agent: &str,
) -> Answer {
    let mut req = client()
        .request(method, s.url(path))
        .header("user-agent", user_agent);
    if let Some(t) = token {
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

async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    call_as(s, method, path, token, body, UA).await
}

async fn get(s: &TestServer, path: &str, token: &str) -> Answer {
    call(s, Method::GET, path, Some(token), None).await
}

/// A signed-in account.
#[derive(Debug, Clone)]
struct Account {
    id: String,
    email: String,
    token: String,
    sid: String,
}

fn options(db: Db) -> Options {
    Options::default()
        .db(db)
        .var("ADMIN_EMAILS", ADMIN_EMAIL)
        .var("RATE_LIMIT_PER_MINUTE", "0")
        .var("LOGIN_IP_MAX_FAILURES", "100000")
}

async fn server(db: Db) -> TestServer {
    start_opts(options(db)).await
}

/// The backend store behind the server (writes here bypass its cache).
fn store(s: &TestServer) -> Arc<dyn UserStore> {
    match &s.backend {
        Backend::Sqlite(st) => st.clone(),
        Backend::Postgres(st) => st.clone(),
        other => panic!("unexpected backend {other:?}"),
    }
}

fn audit_store(s: &TestServer) -> Arc<dyn AuditStore> {
    match &s.backend {
        Backend::Sqlite(st) => st.clone(),
        Backend::Postgres(st) => st.clone(),
        other => panic!("unexpected backend {other:?}"),
    }
}

async fn session_of(s: &TestServer, token: &str) -> String {
    let v = call(
        s,
        Method::POST,
        "/auth/verify",
        None,
        Some(json!({ "token": token })),
    )
    .await;
    v.expect(200)["sid"].as_str().unwrap().to_owned()
}

async fn account_from(s: &TestServer, body: &Value, email: &str) -> Account {
    let token = body["token"].as_str().unwrap().to_owned();
    Account {
        id: body["user"]["id"].as_str().unwrap().to_owned(),
        email: email.to_owned(),
        sid: session_of(s, &token).await,
        token,
    }
}

async fn register_as(s: &TestServer, email: &str, name: &str, user_agent: &str) -> Account {
    let res = call_as(
        s,
        Method::POST,
        "/auth/register",
        None,
        Some(json!({ "email": email, "password": PASSWORD, "name": name })),
        user_agent,
    )
    .await;
    let body = res.expect(201).clone();
    account_from(s, &body, email).await
}

async fn register(s: &TestServer, label: &str) -> Account {
    let email = format!("{label}-{}@example.com", uuid_like());
    register_as(s, &email, label, UA).await
}

async fn login_as(s: &TestServer, email: &str, user_agent: &str) -> Account {
    let res = call_as(
        s,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({ "email": email, "password": PASSWORD })),
        user_agent,
    )
    .await;
    let body = res.expect(200).clone();
    account_from(s, &body, email).await
}

/// An admin: `ADMIN_EMAILS` lists the address, which gets verified; the
/// next sign-in carries the `admin` role.
async fn admin(s: &TestServer) -> Account {
    let first = register_as(s, ADMIN_EMAIL, "Admin", UA).await;
    let verified = UserPatch {
        email_verified: Some(true),
        ..UserPatch::default()
    };
    store(s).update_user(&first.id, &verified).await.unwrap();
    let admin = login_as(s, ADMIN_EMAIL, UA).await;
    let v = call(
        s,
        Method::POST,
        "/auth/verify",
        None,
        Some(json!({ "token": admin.token })),
    )
    .await;
    assert!(
        v.body["roles"]
            .as_array()
            .unwrap()
            .contains(&json!("admin")),
        "{v:?}"
    );
    admin
}

/// Links a verified Google identity to the account, through the store.
async fn link_google(s: &TestServer, account: &Account, subject: &str) {
    store(s)
        .upsert_identity(
            &IdentityLogin {
                provider: "google".into(),
                subject: subject.into(),
                email: account.email.clone(),
                email_verified: true,
                name: None,
                picture: None,
                roles: vec![],
            },
            SystemClock.now(),
        )
        .await
        .unwrap();
}

/// A user created directly in the store with profile fields, for listings.
async fn seed(s: &TestServer, name: &str, patch: UserPatch) -> String {
    let st = store(s);
    let user = st
        .create_user(
            &NewUser {
                email: format!("seed-{}@example.com", uuid_like()),
                email_verified: true,
                name: Some(name.to_owned()),
                photo_url: None,
                provider: "password".into(),
                roles: vec![],
            },
            None,
        )
        .await
        .unwrap();
    st.update_user(&user.id, &patch).await.unwrap();
    user.id
}

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn connect(s: &TestServer, from: &Account, to: &Account) -> String {
    let res = call(
        s,
        Method::POST,
        &format!("/users/{}/connections", from.id),
        Some(&from.token),
        Some(json!({ "target_user_id": to.id, "connection_type": "colleague" })),
    )
    .await;
    res.expect(201)["connection"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn accept(s: &TestServer, invited: &Account, cid: &str) {
    call(
        s,
        Method::PATCH,
        &format!("/users/{}/connections/{cid}", invited.id),
        Some(&invited.token),
        Some(json!({ "status": "accepted" })),
    )
    .await
    .expect(200);
}

// ------------------------------------------------ authorization matrix

/// A target account with a linked Google identity and one connection it owns.
struct Target {
    account: Account,
    connection_id: String,
}

async fn target(s: &TestServer, other: &Account) -> Target {
    let account = register(s, "target").await;
    link_google(s, &account, &format!("g-{}", uuid_like())).await;
    let connection_id = connect(s, &account, other).await;
    Target {
        account,
        connection_id,
    }
}

/// One route of the matrix: method, path (`{id}`, `{cid}`, `{sid}` are the
/// target's), body, and the expected status for anonymous, self, other, admin.
type Row = (&'static str, &'static str, Option<Value>, [u16; 4]);

fn matrix_rows() -> Vec<Row> {
    let w = [401, 200, 403, 200];
    vec![
        ("GET", "/users", None, [401, 200, 200, 200]),
        ("GET", "/users/search?q=target", None, [401, 200, 200, 200]),
        ("GET", "/users/{id}", None, [401, 200, 200, 200]),
        (
            "PATCH",
            "/users/{id}",
            Some(json!({"title": "Engineer"})),
            w,
        ),
        ("PUT", "/users/{id}", Some(json!({"title": "Engineer"})), w),
        ("DELETE", "/users/{id}", None, [401, 204, 403, 204]),
        (
            "PUT",
            "/users/{id}/preferences",
            Some(json!({"preferences": {"theme": "dark"}})),
            w,
        ),
        (
            "PUT",
            "/users/{id}/privacy",
            Some(json!({"privacy_settings": {"bio": "private"}})),
            w,
        ),
        ("GET", "/users/{id}/social-accounts", None, w),
        (
            "DELETE",
            "/users/{id}/social-accounts/google",
            None,
            [401, 204, 403, 204],
        ),
        ("GET", "/users/{id}/connections", None, w),
        (
            "POST",
            "/users/{id}/connections",
            Some(json!({"external_reference": "crm:42", "connection_type": "lead"})),
            [401, 201, 403, 201],
        ),
        (
            "PATCH",
            "/users/{id}/connections/{cid}",
            Some(json!({"attributes": {"note": "met at a meetup"}})),
            w,
        ),
        (
            "DELETE",
            "/users/{id}/connections/{cid}",
            None,
            [401, 204, 403, 204],
        ),
        ("GET", "/users/{id}/sessions", None, w),
        (
            "DELETE",
            "/users/{id}/sessions/{sid}",
            None,
            [401, 204, 403, 204],
        ),
        ("GET", "/users/{id}/export", None, w),
        ("POST", "/users/{id}/erase", None, w),
        ("GET", "/admin/audit", None, [401, 403, 403, 200]),
    ]
}

async fn authorization_matrix(db: Db) {
    let s = server(db).await;
    let admin = admin(&s).await;
    let other = register(&s, "other").await;
    // Anonymous and other-user calls fail before any change: one shared target.
    let shared = target(&s, &other).await;
    let mut failures = Vec::new();
    for (method, template, body, expected) in matrix_rows() {
        for (who, want) in ["anonymous", "self", "other", "admin"]
            .into_iter()
            .zip(expected)
        {
            // Self and admin calls change things: a fresh target each.
            let fresh;
            let t = if who == "self" || who == "admin" {
                fresh = target(&s, &other).await;
                &fresh
            } else {
                &shared
            };
            let path = template
                .replace("{id}", &t.account.id)
                .replace("{cid}", &t.connection_id)
                .replace("{sid}", &t.account.sid);
            let token = match who {
                "anonymous" => None,
                "self" => Some(t.account.token.as_str()),
                "other" => Some(other.token.as_str()),
                _ => Some(admin.token.as_str()),
            };
            let res = call(&s, method.parse().unwrap(), &path, token, body.clone()).await;
            if res.status != want {
                failures.push(format!(
                    "{method} {template} as {who}: {} (wanted {want}) {}",
                    res.status, res.body
                ));
            }
            if want == 401 {
                assert_eq!(
                    res.headers
                        .get("www-authenticate")
                        .and_then(|v| v.to_str().ok()),
                    Some("Bearer"),
                    "{method} {template}"
                );
            }
            if want == 403 {
                assert_eq!(res.body["error"]["reason"], "forbidden", "{res:?}");
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // No existence leak: a stranger is refused before the lookup; an admin
    // learns that the user does not exist.
    let ghost = "00000000-0000-4000-8000-000000000000";
    let path = format!("/users/{ghost}");
    let body = Some(json!({"title": "x"}));
    let res = call(&s, Method::PATCH, &path, Some(&other.token), body.clone()).await;
    res.expect(403);
    call(&s, Method::PATCH, &path, Some(&admin.token), body)
        .await
        .expect(404);
    get(&s, &path, &other.token).await.expect(404);
    // Unknown routes and methods.
    get(&s, "/users/x/nonsense", &other.token).await.expect(404);
    let res = call(&s, Method::POST, "/users", Some(&other.token), None).await;
    res.expect(405);
    assert!(res.headers["allow"].to_str().unwrap().starts_with("GET"));
    // A tampered token is 401 invalid_token.
    let res = get(&s, "/users", &format!("{}x", other.token)).await;
    res.expect(401);
    assert_eq!(res.body["error"]["reason"], "invalid_token");
    s.stop().await.unwrap();
}

// ------------------------------------------------------------ validation

async fn validation_table(db: Db) {
    let s = server(db).await;
    let me = register(&s, "valid").await;
    let path = format!("/users/{}", me.id);
    let long = |n: usize| "x".repeat(n);
    let many = |n: usize| (0..n).map(|i| format!("s{i}")).collect::<Vec<_>>();
    let invalid: Vec<(Value, &str)> = vec![
        (json!({"name": long(201)}), "name"),
        (json!({"name": 42}), "name"),
        (json!({"title": long(201)}), "title"),
        (json!({"company": "a\u{0007}b"}), "company"),
        (json!({"industry": long(101)}), "industry"),
        (json!({"bio": long(5001)}), "bio"),
        (json!({"photo_url": "javascript:alert(1)"}), "photo_url"),
        (json!({"photo_url": "ftp://example.com/a.png"}), "photo_url"),
        (
            json!({"photo_url": "https://user:pw@example.com/"}),
            "photo_url",
        ),
        (
            json!({"linkedin_url": "linkedin.com/in/me"}),
            "linkedin_url",
        ),
        (json!({"experience_years": 81}), "experience_years"),
        (json!({"experience_years": -1}), "experience_years"),
        (json!({"experience_years": 2.5}), "experience_years"),
        (json!({"experience_years": "5"}), "experience_years"),
        (json!({"skills": "rust"}), "skills"),
        (json!({"skills": [""]}), "skills"),
        (json!({"skills": [long(51)]}), "skills"),
        (json!({"skills": many(51)}), "skills"),
        (json!({"interests": [1, 2]}), "interests"),
        (json!({"timezone": "Mars/Olympus_Mons"}), "timezone"),
        (json!({"timezone": "paris"}), "timezone"),
        (json!({"timezone": "+02:00"}), "timezone"),
        (json!({"id": "x"}), "id"),
        (json!({"email": "new@example.com"}), "email"),
        (json!({"email_verified": true}), "email_verified"),
        (json!({"provider": "google"}), "provider"),
        (json!({"roles": ["admin"]}), "roles"),
        (json!({"created_at": "2020-01-01T00:00:00Z"}), "created_at"),
        (json!({"updated_at": "2020-01-01T00:00:00Z"}), "updated_at"),
        (json!({"last_login": null}), "last_login"),
        (json!({"favourite_colour": "blue"}), "favourite_colour"),
        (json!({"is_active": false}), "is_active"),
        (
            json!({"privacy_settings": {"nickname": "private"}}),
            "privacy_settings",
        ),
        (
            json!({"privacy_settings": {"email": "friends"}}),
            "privacy_settings",
        ),
        (json!({"preferences": ["dark"]}), "preferences"),
    ];
    for (body, field) in &invalid {
        for method in [Method::PATCH, Method::PUT] {
            call(&s, method, &path, Some(&me.token), Some(body.clone()))
                .await
                .expect_invalid(field);
        }
    }
    // Every problem of one body is reported at once, and nothing is written.
    let res = call(
        &s,
        Method::PATCH,
        &path,
        Some(&me.token),
        Some(json!({"title": "Kept out", "email": "x@example.com", "experience_years": 99})),
    )
    .await;
    res.expect_invalid("email");
    res.expect_invalid("experience_years");
    let user = get(&s, &path, &me.token).await;
    assert!(user.expect(200)["user"]["title"].is_null());

    // The boundaries are accepted.
    let ok = json!({
        "name": long(200),
        "title": "Staff Engineer",
        "photo_url": "https://cdn.example.com/me.png",
        "linkedin_url": "http://www.linkedin.com/in/me",
        "experience_years": 80,
        "timezone": "America/Argentina/Buenos_Aires",
        "skills": many(50),
        "interests": ["Climbing", "climbing", " Chess "],
        "bio": "Line one\nLine two",
    });
    let res = call(&s, Method::PATCH, &path, Some(&me.token), Some(ok)).await;
    let user = &res.expect(200)["user"];
    assert_eq!(user["experience_years"], 80);
    assert_eq!(user["timezone"], "America/Argentina/Buenos_Aires");
    assert_eq!(user["interests"], json!(["Climbing", "Chess"]));
    for (body, want) in [
        (json!({"experience_years": 0}), json!(0)),
        (json!({"experience_years": null}), Value::Null),
        (json!({"timezone": "UTC"}), json!("UTC")),
    ] {
        let field = body.as_object().unwrap().keys().next().unwrap().clone();
        let res = call(&s, Method::PUT, &path, Some(&me.token), Some(body)).await;
        assert_eq!(res.expect(200)["user"][&field], want);
    }

    // Preferences: bounded count, key and value size; null deletes.
    let prefs = format!("/users/{}/preferences", me.id);
    let put = |body: Value| call(&s, Method::PUT, &prefs, Some(&me.token), Some(body));
    let hundred_one: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("k{i}"), json!(i))).collect();
    put(json!({"preferences": hundred_one}))
        .await
        .expect_invalid("preferences");
    put(json!({"preferences": {"bad key!": 1}}))
        .await
        .expect_invalid("preferences");
    put(json!({"preferences": {"big": long(2000)}}))
        .await
        .expect_invalid("preferences");
    put(json!({"prefs": {}})).await.expect_invalid("prefs");
    let hundred: serde_json::Map<String, Value> =
        (0..100).map(|i| (format!("k{i}"), json!(i))).collect();
    put(json!({"preferences": hundred})).await.expect(200);
    // One more key would make 101.
    put(json!({"preferences": {"one_more": true}}))
        .await
        .expect_invalid("preferences");
    let res = put(json!({"preferences": {"k0": null, "one_more": true}})).await;
    let map = res.expect(200)["preferences"].as_object().unwrap().clone();
    assert_eq!(map.len(), 100);
    assert!(!map.contains_key("k0") && map["one_more"] == json!(true));

    // Privacy.
    let privacy = format!("/users/{}/privacy", me.id);
    for (body, field) in [
        (
            json!({"privacy_settings": {"shoe_size": "private"}}),
            "privacy_settings",
        ),
        (
            json!({"privacy_settings": {"email": "everyone"}}),
            "privacy_settings",
        ),
        (json!({"privacy_settings": "private"}), "privacy_settings"),
        (json!({}), "privacy_settings"),
        (json!({"privacy_settings": {}, "extra": 1}), "extra"),
    ] {
        call(&s, Method::PUT, &privacy, Some(&me.token), Some(body))
            .await
            .expect_invalid(field);
    }

    // Connections.
    let other = register(&s, "peer").await;
    let conns = format!("/users/{}/connections", me.id);
    for (body, field) in [
        (json!({"connection_type": "colleague"}), "target_user_id"),
        (
            json!({"target_user_id": other.id, "external_reference": "x", "connection_type": "c"}),
            "target_user_id",
        ),
        (json!({"target_user_id": other.id}), "connection_type"),
        (
            json!({"target_user_id": me.id, "connection_type": "self"}),
            "target_user_id",
        ),
        (
            json!({"target_user_id": "no-such-user", "connection_type": "c"}),
            "target_user_id",
        ),
        (
            json!({"target_user_id": other.id, "connection_type": "c", "status": "accepted"}),
            "status",
        ),
        (
            json!({"target_user_id": other.id, "connection_type": "c", "status": "friends"}),
            "status",
        ),
        (
            json!({"external_reference": "crm:1", "connection_type": "c", "attributes": [1]}),
            "attributes",
        ),
        (
            json!({"external_reference": "crm:1", "connection_type": "c", "colour": "red"}),
            "colour",
        ),
    ] {
        call(&s, Method::POST, &conns, Some(&me.token), Some(body))
            .await
            .expect_invalid(field);
    }

    // Bodies that are not JSON objects, and bad query values.
    let res = client()
        .patch(s.url(&path))
        .bearer_auth(&me.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = call(&s, Method::PATCH, &path, Some(&me.token), Some(json!([1]))).await;
    res.expect(400);
    for (query, param) in [
        ("/users?page=0", "page"),
        ("/users?page=two", "page"),
        ("/users?per_page=0", "per_page"),
        ("/users?min_experience=-1", "min_experience"),
        ("/users?max_experience=eighty", "max_experience"),
        ("/users?min_experience=9&max_experience=2", "min_experience"),
        ("/users?sort=email", "sort"),
        ("/users?order=sideways", "order"),
        ("/users/search", "q"),
        ("/users/search?q=%2A%2A", "q"),
        ("/admin/audit?since=yesterday", "since"),
    ] {
        let res = get(&s, query, &me.token).await;
        if param == "since" {
            // Not an admin: refused before the parameters matter.
            res.expect(403);
            continue;
        }
        res.expect(400);
        assert_eq!(res.body["error"]["reason"], "bad_request", "{res:?}");
        assert!(res.body["error"]["details"][param].is_string(), "{res:?}");
        assert!(
            res.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(param),
            "{res:?}"
        );
    }
    s.stop().await.unwrap();
}

// ----------------------------------------------- listing, filters, search

fn seeded_industry(i: i32) -> &'static str {
    ["Software", "Finance", "Health"][(i % 3) as usize]
}

fn seeded_skills(i: i32) -> Vec<String> {
    let s: &[&str] = match i % 4 {
        0 => &["Rust", "SQL"],
        1 => &["Go"],
        2 => &["rust", "Kubernetes"],
        _ => &[],
    };
    s.iter().map(|s| (*s).to_owned()).collect()
}

fn seeded_title(i: i32) -> &'static str {
    if i % 5 == 0 {
        "Rust Engineer"
    } else {
        "Analyst"
    }
}

async fn list_all(s: &TestServer, token: &str, query: &str, per_page: u32) -> (i64, Vec<String>) {
    let mut page = 1;
    let mut all = Vec::new();
    let sep = if query.contains('?') { '&' } else { '?' };
    loop {
        let res = get(
            s,
            &format!("{query}{sep}page={page}&per_page={per_page}"),
            token,
        )
        .await;
        let body = res.expect(200).clone();
        assert_eq!(body["page"], page, "{body}");
        assert_eq!(body["per_page"], per_page, "{body}");
        let got = ids(&body["items"]);
        let total = body["total"].as_i64().unwrap();
        let expected_len = (total - i64::from((page - 1) * per_page)).clamp(0, i64::from(per_page));
        assert_eq!(
            got.len() as i64,
            expected_len,
            "page {page} of {query}: {body}"
        );
        all.extend(got);
        if i64::from(page * per_page) >= total {
            let unique: BTreeSet<_> = all.iter().collect();
            assert_eq!(unique.len(), all.len(), "duplicates across pages");
            assert_eq!(all.len() as i64, total);
            return (total, all);
        }
        page += 1;
    }
}

async fn search_and_filters(db: Db) {
    let s = server(db).await;
    let admin = admin(&s).await;
    let me = register(&s, "lister").await;
    let mut seeded = Vec::new();
    for i in 0..23 {
        let patch = UserPatch {
            title: Some(Some(seeded_title(i).into())),
            industry: Some(Some(seeded_industry(i).into())),
            location: Some(Some(if i % 2 == 0 { "Paris" } else { "Lyon" }.into())),
            experience_years: Some(Some(i)),
            skills: Some(seeded_skills(i)),
            bio: Some((i == 7).then(|| "Loves kubernetes clusters".to_owned())),
            ..UserPatch::default()
        };
        seeded.push(seed(&s, &format!("Seed {i:02}"), patch).await);
    }
    // A deactivated and an erased user that every filter would match.
    let everything = || UserPatch {
        title: Some(Some("Rust Engineer".into())),
        industry: Some(Some("Software".into())),
        location: Some(Some("Paris".into())),
        experience_years: Some(Some(6)),
        skills: Some(vec!["Rust".into(), "SQL".into(), "Kubernetes".into()]),
        ..UserPatch::default()
    };
    let deactivated = seed(
        &s,
        "Ghost Rust",
        UserPatch {
            is_active: Some(false),
            ..everything()
        },
    )
    .await;
    let erased = seed(&s, "Erased Rustacean", everything()).await;
    call(
        &s,
        Method::POST,
        &format!("/users/{erased}/erase"),
        Some(&admin.token),
        None,
    )
    .await
    .expect(200);
    let hidden = [deactivated.clone(), erased.clone()];

    let pick = |f: &dyn Fn(i32) -> bool| -> BTreeSet<String> {
        (0..23)
            .filter(|i| f(*i))
            .map(|i| seeded[i as usize].clone())
            .collect()
    };
    let set = |v: Vec<String>| v.into_iter().collect::<BTreeSet<_>>();

    // Everyone active: the seeded users, the admin and the caller.
    let (total, all) = list_all(&s, &me.token, "/users", 7).await;
    assert_eq!(total, 25);
    assert!(all.iter().all(|id| !hidden.contains(id)));

    let cases: Vec<(&str, BTreeSet<String>)> = vec![
        ("/users?industry=software", pick(&|i| i % 3 == 0)),
        (
            "/users?industry=Software&location=paris",
            pick(&|i| i % 3 == 0 && i % 2 == 0),
        ),
        (
            "/users?min_experience=5&max_experience=9",
            pick(&|i| (5..=9).contains(&i)),
        ),
        ("/users?skills=RUST", pick(&|i| i % 4 == 0 || i % 4 == 2)),
        ("/users?skills=rust,sql", pick(&|i| i % 4 == 0)),
        (
            "/users?skills=rust&skills=kubernetes",
            pick(&|i| i % 4 == 2),
        ),
        (
            "/users/search?q=rust",
            pick(&|i| i % 5 == 0 || i % 4 == 0 || i % 4 == 2),
        ),
        ("/users/search?q=kube", pick(&|i| i % 4 == 2 || i == 7)),
        ("/users/search?q=rust%20engineer", pick(&|i| i % 5 == 0)),
        (
            "/users/search?q=rust&industry=Software",
            pick(&|i| i % 3 == 0 && (i % 5 == 0 || i % 4 == 0 || i % 4 == 2)),
        ),
        ("/users/search?q=nothingmatchesthis", BTreeSet::new()),
    ];
    for (query, want) in cases {
        for per_page in [3, 100] {
            let (total, got) = list_all(&s, &me.token, query, per_page).await;
            assert_eq!(total as usize, want.len(), "{query}");
            assert_eq!(set(got), want, "{query}");
        }
    }
    let res = get(&s, "/users/search?q=rust&per_page=2&page=2", &me.token).await;
    let body = res.expect(200);
    assert_eq!(body["query"], "rust");
    assert_eq!(body["page"], 2);
    assert_eq!(body["per_page"], 2);
    assert_eq!(body["total_exact"], true, "{body}");

    // Sorting.
    let (_, by_exp) = list_all(
        &s,
        &me.token,
        "/users?industry=Finance&sort=experience_years:desc",
        100,
    )
    .await;
    let want: Vec<String> = (0..23)
        .rev()
        .filter(|i| i % 3 == 1)
        .map(|i| seeded[i as usize].clone())
        .collect();
    assert_eq!(by_exp, want);
    let (_, by_exp_asc) = list_all(
        &s,
        &me.token,
        "/users?industry=Finance&sort=experience_years",
        100,
    )
    .await;
    assert_eq!(by_exp_asc, want.iter().rev().cloned().collect::<Vec<_>>());
    let (_, by_name) = list_all(&s, &me.token, "/users?industry=Health&sort=-name", 100).await;
    let want: Vec<String> = (0..23)
        .rev()
        .filter(|i| i % 3 == 2)
        .map(|i| seeded[i as usize].clone())
        .collect();
    assert_eq!(by_name, want);
    let res = get(&s, "/users?per_page=1000", &me.token).await;
    assert_eq!(res.expect(200)["per_page"], 100);
    s.stop().await.unwrap();
}

/// `USERS_MAX_TOTAL`: past it `total` is the limit with `total_exact:
/// false`; below it the count is exact; a page that starts past it is a 400
/// naming `page`. The same for `GET /users` and `GET /users/search`, for
/// users and admins.
async fn totals_are_capped(db: Db) {
    let s = start_opts(options(db).var("USERS_MAX_TOTAL", "5")).await;
    let admin = admin(&s).await;
    let me = register(&s, "counter").await;
    for i in 0..7 {
        let patch = UserPatch {
            title: Some(Some("Capstone Engineer".into())),
            industry: Some(Some(if i < 3 { "Niche" } else { "Broad" }.into())),
            ..UserPatch::default()
        };
        seed(&s, &format!("Capped {i}"), patch).await;
    }
    for token in [&me.token, &admin.token] {
        for path in ["/users?per_page=2", "/users/search?q=capstone&per_page=2"] {
            let res = get(&s, path, token).await;
            let body = res.expect(200);
            assert_eq!(body["total"], 5, "{path}: {body}");
            assert_eq!(body["total_exact"], false, "{path}: {body}");
            assert_eq!(ids(&body["items"]).len(), 2, "{path}: {body}");
            // Offset 4: still within the first 5 matches.
            let res = get(&s, &format!("{path}&page=3"), token).await;
            let body = res.expect(200);
            assert_eq!(ids(&body["items"]).len(), 2, "{path}: {body}");
            assert_eq!(body["total_exact"], false, "{path}: {body}");
            // Offset 6: past them.
            let res = get(&s, &format!("{path}&page=4"), token).await;
            assert_eq!(res.status, 400, "{res:?}");
            assert_eq!(res.body["error"]["reason"], "bad_request", "{res:?}");
            let why = res.body["error"]["details"]["page"].as_str().unwrap();
            assert!(why.contains("narrow"), "{why}");
        }
        // A narrower query is counted exactly.
        for path in [
            "/users?industry=niche&per_page=2",
            "/users/search?q=capstone&industry=Niche&per_page=2",
        ] {
            let res = get(&s, path, token).await;
            let body = res.expect(200);
            assert_eq!(body["total"], 3, "{path}: {body}");
            assert_eq!(body["total_exact"], true, "{path}: {body}");
        }
    }
    s.stop().await.unwrap();
}

// --------------------------------------------------------------- privacy

fn has(user: &Value, field: &str) -> bool {
    user.as_object().unwrap().contains_key(field)
}

async fn privacy_is_honoured(db: Db) {
    let s = server(db).await;
    let admin = admin(&s).await;
    let owner = register(&s, "owner").await;
    let friend = register(&s, "friend").await;
    let pending = register(&s, "pending").await;
    let stranger = register(&s, "stranger").await;
    let open = register(&s, "open").await;

    call(
        &s,
        Method::PATCH,
        &format!("/users/{}", owner.id),
        Some(&owner.token),
        Some(json!({
            "name": "Olive Owner", "title": "CTO", "company": "Hidden Co",
            "location": "Nantes", "industry": "Robotics", "bio": "secret words",
            "skills": ["Welding"], "experience_years": 12,
            "preferences": {"theme": "dark"},
        })),
    )
    .await
    .expect(200);
    let res = call(
        &s,
        Method::PUT,
        &format!("/users/{}/privacy", owner.id),
        Some(&owner.token),
        Some(json!({"privacy_settings": {
            "company": "connections", "bio": "private",
            "experience_years": "private", "skills": "connections",
        }})),
    )
    .await;
    assert_eq!(
        res.expect(200)["privacy_settings"]["bio"],
        "private",
        "{res:?}"
    );
    call(
        &s,
        Method::PATCH,
        &format!("/users/{}", open.id),
        Some(&open.token),
        Some(json!({"name": "Oscar Open", "industry": "Robotics", "title": "Welder"})),
    )
    .await
    .expect(200);
    // Explicitly public searched fields, and a hidden field that search
    // does not look at: still found by search.
    call(
        &s,
        Method::PUT,
        &format!("/users/{}/privacy", open.id),
        Some(&open.token),
        Some(json!({"privacy_settings": {
            "name": "public", "title": "public", "location": "private",
        }})),
    )
    .await
    .expect(200);
    let cid = connect(&s, &friend, &owner).await;
    accept(&s, &owner, &cid).await;
    connect(&s, &owner, &pending).await;

    let view = |viewer: Account| {
        let s = &s;
        let path = format!("/users/{}", owner.id);
        async move { get(s, &path, &viewer.token).await.expect(200)["user"].clone() }
    };
    let owner_only = [
        "preferences",
        "privacy_settings",
        "social_accounts",
        "roles",
        "login_count",
    ];
    for viewer in [stranger.clone(), pending.clone()] {
        let u = view(viewer).await;
        for f in ["id", "name", "title", "location", "industry", "created_at"] {
            assert!(has(&u, f), "{f}: {u}");
        }
        for f in ["email", "company", "bio", "experience_years", "skills"]
            .iter()
            .chain(&owner_only)
        {
            assert!(!has(&u, f), "{f} shown: {u}");
        }
    }
    let u = view(friend.clone()).await;
    assert_eq!(u["company"], "Hidden Co");
    assert_eq!(u["skills"], json!(["Welding"]));
    for f in ["email", "bio", "experience_years", "preferences"] {
        assert!(!has(&u, f), "{f} shown to a connection: {u}");
    }
    for full in [owner.clone(), admin.clone()] {
        let u = view(full).await;
        assert_eq!(u["email"], owner.email);
        assert_eq!(u["bio"], "secret words");
        assert_eq!(u["preferences"]["theme"], "dark");
        assert_eq!(u["privacy_settings"]["bio"], "private");
    }
    // Email is private by default.
    let u = get(&s, &format!("/users/{}", open.id), &stranger.token).await;
    assert!(!has(&u.expect(200)["user"], "email"));

    // Listing honours the same rules, per viewer.
    let find = |items: &Value, id: &str| {
        items
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["id"] == id)
            .cloned()
    };
    let res = get(&s, "/users?industry=Robotics", &stranger.token).await;
    let items = res.expect(200)["items"].clone();
    let o = find(&items, &owner.id).unwrap();
    assert!(!has(&o, "company") && !has(&o, "email") && !has(&o, "bio"));
    let res = get(&s, "/users?industry=Robotics", &friend.token).await;
    let o = find(&res.expect(200)["items"], &owner.id).unwrap();
    assert_eq!(o["company"], "Hidden Co");
    assert!(!has(&o, "bio"));

    // A filter on a hidden field does not reveal it (admins see all).
    let q = "/users?min_experience=12&max_experience=12";
    assert_eq!(get(&s, q, &stranger.token).await.expect(200)["total"], 0);
    let res = get(&s, q, &admin.token).await;
    assert_eq!(ids(&res.expect(200)["items"]), vec![owner.id.clone()]);
    let q = "/users?skills=welding";
    assert_eq!(get(&s, q, &friend.token).await.expect(200)["total"], 0);
    assert_eq!(get(&s, q, &admin.token).await.expect(200)["total"], 1);

    // Search: users hiding a searched field are found by admins only; the
    // others as usual, without their hidden fields.
    assert_eq!(
        get(&s, "/users/search?q=olive", &stranger.token)
            .await
            .expect(200)["total"],
        0
    );
    let res = get(&s, "/users/search?q=olive", &admin.token).await;
    assert_eq!(res.expect(200)["items"][0]["email"], owner.email);
    let res = get(&s, "/users/search?q=oscar", &stranger.token).await;
    let items = res.expect(200)["items"].clone();
    let o = find(&items, &open.id).unwrap();
    assert_eq!(o["title"], "Welder");
    assert!(!has(&o, "email") && !has(&o, "location"));
    // Hiding one searched field from connections is enough to be left out
    // of others' searches (the friend included), whatever the other fields.
    for (field, visibility) in [("title", "connections"), ("skills", "private")] {
        call(
            &s,
            Method::PUT,
            &format!("/users/{}/privacy", open.id),
            Some(&open.token),
            Some(json!({"privacy_settings": { field: visibility }})),
        )
        .await
        .expect(200);
        for viewer in [&stranger, &friend] {
            let res = get(&s, "/users/search?q=oscar", &viewer.token).await;
            assert_eq!(res.expect(200)["total"], 0, "{field}: {res:?}");
        }
        let res = get(&s, "/users/search?q=oscar", &admin.token).await;
        assert_eq!(ids(&res.expect(200)["items"]), vec![open.id.clone()]);
    }
    s.stop().await.unwrap();
}

// ----------------------------------------------------------- connections

async fn connections_are_consistent(db: Db) {
    let s = server(db).await;
    let admin = admin(&s).await;
    let a = register(&s, "alice").await;
    let b = register(&s, "bob").await;
    let cid = connect(&s, &a, &b).await;
    let list = |who: &Account, of: &Account| {
        let s = &s;
        let path = format!("/users/{}/connections", of.id);
        let token = who.token.clone();
        async move { get(s, &path, &token).await.expect(200).clone() }
    };
    // Both sides see the same connection.
    let la = list(&a, &a).await;
    let lb = list(&b, &b).await;
    assert_eq!(la["total"], 1);
    assert_eq!(la["items"], lb["items"]);
    let c = &la["items"][0];
    assert_eq!(c["status"], "pending");
    assert_eq!(c["user_id"], a.id);
    assert_eq!(c["target_user_id"], b.id);
    for f in [
        "id",
        "external_reference",
        "connection_type",
        "attributes",
        "created_at",
        "updated_at",
    ] {
        assert!(has(c, f), "{f}: {c}");
    }
    // Unique per pair, in either direction.
    for (from, to) in [(&a, &b), (&b, &a)] {
        let res = call(
            &s,
            Method::POST,
            &format!("/users/{}/connections", from.id),
            Some(&from.token),
            Some(json!({"target_user_id": to.id, "connection_type": "friend"})),
        )
        .await;
        res.expect(409);
        assert_eq!(res.body["error"]["reason"], "conflict");
    }
    // Only the invited user accepts; only the owner edits the attributes.
    let a_path = format!("/users/{}/connections/{cid}", a.id);
    let b_path = format!("/users/{}/connections/{cid}", b.id);
    let res = call(
        &s,
        Method::PATCH,
        &a_path,
        Some(&a.token),
        Some(json!({"status": "accepted"})),
    )
    .await;
    res.expect(403);
    let res = call(
        &s,
        Method::PATCH,
        &b_path,
        Some(&b.token),
        Some(json!({"attributes": {"x": 1}})),
    )
    .await;
    res.expect(403);
    let res = call(
        &s,
        Method::PATCH,
        &b_path,
        Some(&b.token),
        Some(json!({"status": "accepted"})),
    )
    .await;
    assert_eq!(res.expect(200)["connection"]["status"], "accepted");
    let res = call(
        &s,
        Method::PATCH,
        &a_path,
        Some(&a.token),
        Some(json!({"attributes": {"met": "RustConf"}})),
    )
    .await;
    assert_eq!(
        res.expect(200)["connection"]["attributes"]["met"],
        "RustConf"
    );
    let (la, lb) = (list(&a, &a).await, list(&b, &b).await);
    assert_eq!(la["items"], lb["items"]);
    assert_eq!(la["items"][0]["status"], "accepted");
    // A third user cannot reach it through their own path.
    let c = register(&s, "carol").await;
    let res = call(
        &s,
        Method::DELETE,
        &format!("/users/{}/connections/{cid}", c.id),
        Some(&c.token),
        None,
    )
    .await;
    res.expect(404);
    // External references: unique per owner.
    let ext =
        json!({"external_reference": "crm:7", "connection_type": "lead", "status": "accepted"});
    let path = format!("/users/{}/connections", a.id);
    call(&s, Method::POST, &path, Some(&a.token), Some(ext.clone()))
        .await
        .expect(201);
    call(&s, Method::POST, &path, Some(&a.token), Some(ext))
        .await
        .expect(409);
    // Paging.
    let res = get(&s, &format!("{path}?per_page=1&page=2"), &a.token).await;
    let body = res.expect(200);
    assert_eq!(
        (
            body["total"].as_i64(),
            body["items"].as_array().unwrap().len()
        ),
        (Some(2), 1)
    );
    // Either side deletes; it is gone for both. Admins may act for a user.
    call(&s, Method::DELETE, &b_path, Some(&b.token), None)
        .await
        .expect(204);
    assert_eq!(list(&a, &a).await["total"], 1);
    assert_eq!(list(&b, &b).await["total"], 0);
    assert_eq!(list(&admin, &b).await["total"], 0);
    call(&s, Method::DELETE, &b_path, Some(&b.token), None)
        .await
        .expect(404);
    s.stop().await.unwrap();
}

// ------------------------------------------ social accounts and sessions

async fn social_accounts_and_the_last_sign_in_method(db: Db) {
    let s = server(db).await;
    let admin = admin(&s).await;
    let me = register(&s, "linked").await;
    link_google(&s, &me, "g-linked-1").await;
    let res = get(&s, &format!("/users/{}/social-accounts", me.id), &me.token).await;
    let items = res.expect(200)["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(items[0]["provider"], "google");
    assert_eq!(items[0]["subject"], "g-linked-1");
    // With a password left, unlinking is fine; then there is nothing to unlink.
    let path = format!("/users/{}/social-accounts/google", me.id);
    call(&s, Method::DELETE, &path, Some(&me.token), None)
        .await
        .expect(204);
    call(&s, Method::DELETE, &path, Some(&me.token), None)
        .await
        .expect(404);

    // A Google-only account: its identity is the last way in.
    let st = store(&s);
    let only = st
        .upsert_identity(
            &IdentityLogin {
                provider: "google".into(),
                subject: "g-only".into(),
                email: format!("g-only-{}@example.com", uuid_like()),
                email_verified: true,
                name: Some("Gina".into()),
                picture: None,
                roles: vec![],
            },
            SystemClock.now(),
        )
        .await
        .unwrap()
        .user;
    let res = call(
        &s,
        Method::DELETE,
        &format!("/users/{}/social-accounts/google", only.id),
        Some(&admin.token),
        None,
    )
    .await;
    res.expect(409);
    assert_eq!(res.body["error"]["reason"], "last_sign_in_method");
    s.stop().await.unwrap();
}

async fn sessions_list_and_revoke(db: Db) {
    let s = server(db).await;
    let me = register(&s, "sessions").await;
    let phone = login_as(&s, &me.email, "phone-app/2.0").await;
    let path = format!("/users/{}/sessions", me.id);
    let res = get(&s, &path, &me.token).await;
    let items = res.expect(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    for it in &items {
        for f in [
            "id",
            "created_at",
            "last_used_at",
            "ip",
            "user_agent",
            "current",
        ] {
            assert!(has(it, f), "{f}: {it}");
        }
        assert_eq!(it["ip"], "127.0.0.1");
        assert_eq!(it["current"], it["id"] == me.sid, "{it}");
    }
    let phone_item = items.iter().find(|i| i["id"] == phone.sid).unwrap();
    assert_eq!(phone_item["user_agent"], "phone-app/2.0");

    // Revoking the phone's session: its token stops working at once.
    get(&s, "/auth/profile", &phone.token).await.expect(200);
    call(
        &s,
        Method::DELETE,
        &format!("{path}/{}", phone.sid),
        Some(&me.token),
        None,
    )
    .await
    .expect(204);
    let res = get(&s, "/auth/profile", &phone.token).await;
    res.expect(401);
    assert_eq!(res.body["error"]["reason"], "invalid_token");
    let res = get(&s, &path, &me.token).await;
    assert_eq!(ids(&res.expect(200)["items"]), vec![me.sid.clone()]);
    // Another user's session id is not found under my path.
    let other = register(&s, "other").await;
    call(
        &s,
        Method::DELETE,
        &format!("{path}/{}", other.sid),
        Some(&me.token),
        None,
    )
    .await
    .expect(404);
    get(&s, "/auth/profile", &other.token).await.expect(200);

    // Deleting the account (deactivation) revokes every session and hides it.
    call(
        &s,
        Method::DELETE,
        &format!("/users/{}", me.id),
        Some(&me.token),
        None,
    )
    .await
    .expect(204);
    get(&s, "/auth/profile", &me.token).await.expect(401);
    get(&s, &format!("/users/{}", me.id), &other.token)
        .await
        .expect(404);
    let res = call(
        &s,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({"email": me.email, "password": PASSWORD})),
    )
    .await;
    res.expect(401);
    s.stop().await.unwrap();
}

// ------------------------------------------- cache, audit log, export

async fn profile_reads_follow_every_write(db: Db) {
    let s = server(db).await;
    let me = register(&s, "cached").await;
    let path = format!("/users/{}", me.id);
    // Warm the cache, then write through each route and read again.
    get(&s, &path, &me.token).await.expect(200);
    call(
        &s,
        Method::PUT,
        &format!("{path}/preferences"),
        Some(&me.token),
        Some(json!({"preferences": {"lang": "fr"}})),
    )
    .await
    .expect(200);
    assert_eq!(
        get(&s, &path, &me.token).await.expect(200)["user"]["preferences"]["lang"],
        "fr"
    );
    call(
        &s,
        Method::PUT,
        &format!("{path}/privacy"),
        Some(&me.token),
        Some(json!({"privacy_settings": {"name": "private"}})),
    )
    .await
    .expect(200);
    assert_eq!(
        get(&s, &path, &me.token).await.expect(200)["user"]["privacy_settings"]["name"],
        "private"
    );
    call(
        &s,
        Method::PATCH,
        &path,
        Some(&me.token),
        Some(json!({"company": "Acme", "preferences": {"lang": null, "tz": "x"}})),
    )
    .await
    .expect(200);
    let u = get(&s, &path, &me.token).await.expect(200)["user"].clone();
    assert_eq!(u["company"], "Acme");
    assert_eq!(u["preferences"], json!({"tz": "x"}));
    s.stop().await.unwrap();
}

async fn admin_audit_log(db: Db) {
    let s = server(db).await;
    let admin = admin(&s).await;
    let me = register(&s, "audited").await;
    for title in ["One", "Two", "Three"] {
        call(
            &s,
            Method::PATCH,
            &format!("/users/{}", me.id),
            Some(&me.token),
            Some(json!({"title": title})),
        )
        .await
        .expect(200);
    }
    // An admin acting on someone else is recorded with both ids.
    call(
        &s,
        Method::PUT,
        &format!("/users/{}/preferences", me.id),
        Some(&admin.token),
        Some(json!({"preferences": {"a": 1}})),
    )
    .await
    .expect(200);
    get(&s, "/admin/audit", &me.token).await.expect(403);

    let q = format!(
        "/admin/audit?user_id={}&event=profile_updated&per_page=2",
        me.id
    );
    let res = get(&s, &q, &admin.token).await;
    let body = res.expect(200).clone();
    assert_eq!(body["total"], 3);
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    let e = &body["items"][0];
    for f in [
        "id",
        "event",
        "actor_id",
        "user_id",
        "outcome",
        "ip",
        "user_agent",
        "created_at",
    ] {
        assert!(has(e, f), "{f}: {e}");
    }
    assert_eq!(e["actor_id"], me.id);
    assert_eq!(e["user_agent"], UA);
    assert_eq!(e["outcome"], "success");
    let res = get(&s, &format!("{q}&page=2"), &admin.token).await;
    assert_eq!(res.expect(200)["items"].as_array().unwrap().len(), 1);

    let res = get(
        &s,
        &format!("/admin/audit?user_id={}&event=preferences_updated", me.id),
        &admin.token,
    )
    .await;
    let e = res.expect(200)["items"][0].clone();
    assert_eq!(
        (e["actor_id"].as_str(), e["user_id"].as_str()),
        (Some(admin.id.as_str()), Some(me.id.as_str()))
    );
    // Logins and registrations are there too; time filters bound the list.
    let res = get(
        &s,
        &format!("/admin/audit?user_id={}&event=register", me.id),
        &admin.token,
    )
    .await;
    assert_eq!(res.expect(200)["total"], 1);
    let res = get(&s, "/admin/audit?until=2000-01-01T00:00:00Z", &admin.token).await;
    assert_eq!(res.expect(200)["total"], 0);
    let res = get(
        &s,
        "/admin/audit?since=2000-01-01T00:00:00Z&per_page=1000",
        &admin.token,
    )
    .await;
    let all = res.expect(200)["total"].as_i64().unwrap();
    assert!(all >= 6, "{all}");
    let res = get(
        &s,
        "/admin/audit?since=2100-01-01T00:00:00Z&until=2000-01-01T00:00:00Z",
        &admin.token,
    )
    .await;
    res.expect(400);
    assert!(res.body["error"]["details"]["since"].is_string());
    s.stop().await.unwrap();
}

async fn export_is_complete(db: Db) {
    let s = server(db).await;
    let admin = admin(&s).await;
    let me = register(&s, "exporter").await;
    let second = login_as(&s, &me.email, "second-device/1.0").await;
    let friend = register(&s, "friend").await;
    link_google(&s, &me, "g-export").await;
    let path = format!("/users/{}", me.id);
    call(
        &s,
        Method::PATCH,
        &path,
        Some(&me.token),
        Some(json!({"bio": "Exporter bio", "skills": ["Rust"]})),
    )
    .await
    .expect(200);
    call(
        &s,
        Method::PUT,
        &format!("{path}/preferences"),
        Some(&me.token),
        Some(json!({"preferences": {"theme": "dark"}})),
    )
    .await
    .expect(200);
    call(
        &s,
        Method::PUT,
        &format!("{path}/privacy"),
        Some(&me.token),
        Some(json!({"privacy_settings": {"bio": "private"}})),
    )
    .await
    .expect(200);
    let cid = connect(&s, &me, &friend).await;
    // Someone else's connection stays out of the export.
    connect(&s, &friend, &register(&s, "third").await).await;

    get(&s, &format!("{path}/export"), &friend.token)
        .await
        .expect(403);
    let res = get(&s, &format!("{path}/export"), &me.token).await;
    let x = res.expect(200).clone();
    for key in [
        "user",
        "preferences",
        "privacy_settings",
        "social_accounts",
        "connections",
        "sessions",
        "audit_events",
        "exported_at",
    ] {
        assert!(has(&x, key), "{key}");
    }
    assert_eq!(x["user"]["email"], me.email);
    assert_eq!(x["user"]["bio"], "Exporter bio");
    assert_eq!(x["preferences"]["theme"], "dark");
    assert_eq!(x["privacy_settings"]["bio"], "private");
    assert_eq!(x["social_accounts"][0]["subject"], "g-export");
    assert_eq!(ids(&x["connections"]), vec![cid]);
    let sessions = ids(&x["sessions"]);
    assert!(
        sessions.contains(&me.sid) && sessions.contains(&second.sid),
        "{sessions:?}"
    );
    assert!(x["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["user_agent"] == "second-device/1.0"));
    let events: BTreeSet<&str> = x["audit_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for e in [
        "register",
        "login",
        "profile_updated",
        "preferences_updated",
        "privacy_updated",
        "connection_created",
    ] {
        assert!(events.contains(e), "{e} missing from {events:?}");
    }
    assert!(x["exported_at"].as_str().unwrap().ends_with('Z'));
    // Admins may export anyone; the export itself is audited.
    get(&s, &format!("{path}/export"), &admin.token)
        .await
        .expect(200);
    let res = get(
        &s,
        &format!("/admin/audit?user_id={}&event=data_exported", me.id),
        &admin.token,
    )
    .await;
    assert_eq!(res.expect(200)["total"], 2);
    s.stop().await.unwrap();
}

// --------------------------------------------------------------- erasure

/// The tables (and columns, on SQLite) holding `needle` anywhere, as typed
/// or lower-cased (full-text indexes keep lower-cased words).
async fn rows_holding(s: &TestServer, needle: &str) -> Vec<String> {
    let lower = needle.to_lowercase();
    let mut found = Vec::new();
    match &s.backend {
        Backend::Sqlite(st) => {
            let pool = st.pool();
            let tables: Vec<(String,)> =
                sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(pool)
                    .await
                    .unwrap();
            for (table,) in tables {
                let columns: Vec<(String,)> =
                    sqlx::query_as("SELECT name FROM pragma_table_info(?)")
                        .bind(&table)
                        .fetch_all(pool)
                        .await
                        .unwrap();
                for (column,) in columns {
                    // Text and blobs (FTS5 index pages) alike, byte for byte.
                    let (n,): (i64,) = sqlx::query_as(&format!(
                        "SELECT COUNT(*) FROM \"{table}\" \
                         WHERE instr(CAST(\"{column}\" AS BLOB), CAST(?1 AS BLOB)) > 0 \
                            OR instr(CAST(\"{column}\" AS BLOB), CAST(?2 AS BLOB)) > 0"
                    ))
                    .bind(needle)
                    .bind(&lower)
                    .fetch_one(pool)
                    .await
                    .unwrap();
                    if n > 0 {
                        found.push(format!("{table}.{column}"));
                    }
                }
            }
        }
        Backend::Postgres(st) => {
            let pool = st.pool();
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            assert!(tables.len() >= 8, "{tables:?}");
            for (table,) in tables {
                let (n,): (i64,) = sqlx::query_as(&format!(
                    "SELECT COUNT(*) FROM \"{table}\" t WHERE strpos(lower(t::text), $1) > 0"
                ))
                .bind(&lower)
                .fetch_one(pool)
                .await
                .unwrap();
                if n > 0 {
                    found.push(table);
                }
            }
        }
        other => panic!("unexpected backend {other:?}"),
    }
    found
}

async fn erase_leaves_no_personal_data(db: Db) {
    let s = server(db).await;
    let admin = admin(&s).await;
    let probe = "ErasureProbe/7.1";
    let email = format!("zq-{}@example.com", uuid_like());
    let me = register_as(&s, &email, "Zanzibar Quuxley", probe).await;
    let me2 = login_as(&s, &email, probe).await;
    let friend = register(&s, "friend").await;
    let subject = format!("g-zanzibar-{}", uuid_like());
    link_google(&s, &me, &subject).await;
    let path = format!("/users/{}", me.id);
    let res = call_as(
        &s,
        Method::PATCH,
        &path,
        Some(&me.token),
        Some(json!({
            "title": "Chief Quuxologist", "company": "Sekritcorp", "location": "Quuxville",
            "industry": "Quuxindustry", "bio": "flibbertigibbet marmalade",
            "linkedin_url": "https://www.linkedin.com/in/zanzibar-quuxley",
            "photo_url": "https://cdn.example.com/zanzibar.png",
            "skills": ["Quuxcraft"], "interests": ["Quuxball"], "experience_years": 9,
            "timezone": "Europe/Paris", "preferences": {"nickname": "zanziq"},
            "privacy_settings": {"bio": "private"},
        })),
        probe,
    )
    .await;
    res.expect(200);
    let mine = call_as(
        &s,
        Method::POST,
        &format!("{path}/connections"),
        Some(&me.token),
        Some(
            json!({"target_user_id": friend.id, "connection_type": "colleague",
                    "attributes": {"note": "met at quuxcon"}}),
        ),
        probe,
    )
    .await;
    mine.expect(201);
    let theirs = connect(&s, &friend, &register(&s, "third").await).await;
    let incoming = call(
        &s,
        Method::POST,
        &format!("/users/{}/connections", admin.id),
        Some(&admin.token),
        Some(json!({"target_user_id": me.id, "connection_type": "mentor"})),
    )
    .await;
    incoming.expect(201);
    let markers = [
        email.as_str(),
        "Zanzibar",
        "Quuxley",
        "Quuxologist",
        "Sekritcorp",
        "Quuxville",
        "Quuxindustry",
        "flibbertigibbet",
        "zanzibar-quuxley",
        "zanzibar.png",
        "Quuxcraft",
        "Quuxball",
        "zanziq",
        "quuxcon",
        subject.as_str(),
        probe,
    ];
    // Before: the markers are there (the scan works).
    for m in ["Quuxley", "flibbertigibbet", probe, subject.as_str()] {
        assert!(
            !rows_holding(&s, m).await.is_empty(),
            "{m} not found before"
        );
    }
    get(&s, "/users/search?q=quuxley", &admin.token)
        .await
        .expect(200);

    let res = call_as(
        &s,
        Method::POST,
        &format!("{path}/erase"),
        Some(&me.token),
        None,
        probe,
    )
    .await;
    let body = res.expect(200).clone();
    let u = &body["user"];
    assert_eq!(u["id"], me.id);
    assert_eq!(u["name"], "Erased user");
    assert!(u["email"].as_str().unwrap().starts_with("erased-"), "{u}");
    for f in [
        "title",
        "company",
        "location",
        "bio",
        "photo_url",
        "linkedin_url",
        "experience_years",
        "timezone",
    ] {
        assert!(u[f].is_null(), "{f}: {u}");
    }
    assert_eq!(u["skills"], json!([]));
    assert_eq!(u["preferences"], json!({}));
    assert_eq!(u["social_accounts"], json!([]));
    assert_eq!(u["is_active"], false);
    assert!(body["scheduled_purge_at"].is_string());
    assert_eq!(u["scheduled_purge_at"], body["scheduled_purge_at"]);

    // Every session is gone at once; the password too.
    for t in [&me.token, &me2.token] {
        get(&s, "/auth/profile", t).await.expect(401);
    }
    call(
        &s,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({"email": email, "password": PASSWORD})),
    )
    .await
    .expect(401);
    // Gone for others, in reads, lists and searches; admins see the husk.
    get(&s, &path, &friend.token).await.expect(404);
    assert_eq!(
        get(&s, &path, &admin.token).await.expect(200)["user"]["is_active"],
        false
    );
    assert_eq!(
        get(&s, "/users/search?q=quuxley", &admin.token)
            .await
            .expect(200)["total"],
        0
    );
    let (_, listed) = list_all(&s, &admin.token, "/users", 100).await;
    assert!(!listed.contains(&me.id));
    let res = get(
        &s,
        &format!("/users/{}/connections", friend.id),
        &friend.token,
    )
    .await;
    assert_eq!(ids(&res.expect(200)["items"]), vec![theirs]);
    // Erasing twice is a conflict.
    call(
        &s,
        Method::POST,
        &format!("{path}/erase"),
        Some(&admin.token),
        None,
    )
    .await
    .expect(409);

    // No table holds any of the user's personal data any more.
    for m in markers {
        let found = rows_holding(&s, m).await;
        assert!(found.is_empty(), "`{m}` still in {found:?}");
    }
    // The audit trail keeps the pseudonymous events, without IP or user agent.
    let res = get(
        &s,
        &format!("/admin/audit?user_id={}&per_page=1000", me.id),
        &admin.token,
    )
    .await;
    let events = res.expect(200)["items"].as_array().unwrap().clone();
    assert!(events.iter().any(|e| e["event"] == "account_erased"));
    assert!(
        events
            .iter()
            .all(|e| e["ip"].is_null() && e["user_agent"].is_null()),
        "{events:?}"
    );
    s.stop().await.unwrap();
}

// ----------------------------------------------------------------- purge

async fn purge_deletes_only_what_is_due(db: Db) {
    let clock = ManualClock::new();
    let mut opts = options(db)
        .var("ACCOUNT_RETENTION_DAYS", "30")
        .var("AUDIT_RETENTION_DAYS", "30");
    opts.clock = Some(Arc::new(clock.clone()));
    let s = start_opts(opts).await;
    let day = Duration::from_secs(86_400);
    let a = register(&s, "early").await;
    let b = register(&s, "late").await;
    let keep = register(&s, "kept").await;
    let erase = |who: Account| {
        let s = &s;
        async move { erase_self(s, &who).await["scheduled_purge_at"].clone() }
    };
    erase(a.clone()).await;
    let svc = s.api.service().clone();
    // Nothing is due yet.
    assert_eq!(svc.purge_due(clock.now()).await.unwrap().users, 0);

    clock.advance(20 * day);
    let mid = clock.now();
    let b = login_as(&s, &b.email, UA).await;
    erase(b.clone()).await;

    // Day 31: the first erasure is due, the second is not.
    clock.advance(11 * day);
    let report = svc.purge_due(clock.now()).await.unwrap();
    assert_eq!(report.users, 1);
    assert!(report.audit_events > 0, "{report:?}");
    let st = store(&s);
    assert!(st.get_user(&a.id).await.unwrap().is_none());
    let husk = st.get_user(&b.id).await.unwrap().unwrap();
    assert!(!husk.is_active);
    assert!(st.get_user(&keep.id).await.unwrap().unwrap().is_active);
    // Audit events older than 30 days went; the recent ones stay.
    let audit = audit_store(&s);
    let older = AuditQuery {
        until: Some(mid),
        ..AuditQuery::default()
    };
    assert_eq!(audit.list_events(&older).await.unwrap().total, 0);
    let newer = AuditQuery {
        since: Some(mid),
        ..AuditQuery::default()
    };
    let recent = audit.list_events(&newer).await.unwrap();
    assert!(recent.items.iter().any(|e| e.event == "account_erased"));
    assert!(recent
        .items
        .iter()
        .any(|e| e.event == "account_purged" && e.user_id.as_deref() == Some(a.id.as_str())));
    // Running again deletes nothing more.
    assert_eq!(
        svc.purge_due(clock.now()).await.unwrap(),
        Default::default()
    );

    // Day 51: the second one is due.
    clock.advance(20 * day);
    assert_eq!(svc.purge_due(clock.now()).await.unwrap().users, 1);
    assert!(st.get_user(&b.id).await.unwrap().is_none());
    assert!(st.get_user(&keep.id).await.unwrap().is_some());
    s.stop().await.unwrap();
}

/// `PURGE_INTERVAL_SECS`: the background purge of `serve` deletes a due
/// account without the `purge` command, keeps going when a run fails, and
/// stops when asked.
async fn purge_runs_in_the_background(db: Db) {
    use meetinity_auth_server::purge::Purger;
    let clock = ManualClock::new();
    let mut opts = options(db).var("ACCOUNT_RETENTION_DAYS", "30");
    opts.clock = Some(Arc::new(clock.clone()));
    let s = start_opts(opts).await;
    let gone = register(&s, "bg-gone").await;
    let stays = register(&s, "bg-stays").await;
    erase_self(&s, &gone).await;
    let every = Duration::from_millis(20);
    let purger = Purger::spawn(s.api.service().clone(), Arc::new(clock.clone()), every);
    let st = store(&s);
    // Runs before the retention is over delete nothing.
    tokio::time::sleep(every * 10).await;
    assert!(st.get_user(&gone.id).await.unwrap().is_some());

    clock.advance(Duration::from_secs(31 * 86_400));
    let purged_events = || async {
        audit_store(&s)
            .list_events(&AuditQuery {
                event: Some("account_purged".into()),
                ..AuditQuery::default()
            })
            .await
            .unwrap()
            .total
    };
    // The account goes first, its audit event right after: wait for both.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while st.get_user(&gone.id).await.unwrap().is_some() || purged_events().await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "not purged");
        tokio::time::sleep(every).await;
    }
    assert!(st.get_user(&stays.id).await.unwrap().is_some());
    assert_eq!(purged_events().await, 1);

    // The database goes away: the runs fail, the purge goes on.
    match &s.backend {
        Backend::Sqlite(st) => st.close().await,
        Backend::Postgres(st) => st.close().await,
        other => panic!("unexpected backend {other:?}"),
    }
    tokio::time::sleep(every * 10).await;
    assert!(purger.is_running());
    tokio::time::timeout(Duration::from_secs(5), purger.stop())
        .await
        .expect("the purge stops");
    s.stop().await.unwrap();
}

/// `POST /users/{id}/erase` by the account itself; its 200 body.
async fn erase_self(s: &TestServer, who: &Account) -> Value {
    call(
        s,
        Method::POST,
        &format!("/users/{}/erase", who.id),
        Some(&who.token),
        None,
    )
    .await
    .expect(200)
    .clone()
}

/// Two accounts in the SQLite database `db`, the first erased (due for the
/// purge at once: `ACCOUNT_RETENTION_DAYS=0`), the second kept.
async fn erased_and_kept(db: &str) -> (Account, Account) {
    let s = start(&[
        ("DATABASE_URL", db),
        ("ACCOUNT_RETENTION_DAYS", "0"),
        ("RATE_LIMIT_PER_MINUTE", "0"),
    ])
    .await;
    let gone = register(&s, "gone").await;
    let stays = register(&s, "stays").await;
    erase_self(&s, &gone).await;
    s.stop().await.unwrap();
    (gone, stays)
}

/// `serve` with `PURGE_INTERVAL_SECS` (the real binary) purges a due
/// account by itself, logs it, and still stops cleanly on SIGTERM.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_purges_every_purge_interval_secs() {
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("interval.db").display());
    let (gone, stays) = erased_and_kept(&db).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_meetinity-auth-server"))
        .arg("serve")
        .current_dir(&dir.0)
        .env_clear()
        .env("DATABASE_URL", &db)
        .env("JWT_SECRET", "test-secret-test-secret-test-secret-0123")
        .env("APP_HOST", "127.0.0.1")
        .env("APP_PORT", port.to_string())
        .env("ACCOUNT_RETENTION_DAYS", "0")
        .env("PURGE_INTERVAL_SECS", "1")
        .env("RUST_LOG", "info")
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let st = meetinity_auth::store::SqliteStore::connect(&db, &Default::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while st.get_user(&gone.id).await.unwrap().is_some() {
        if tokio::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "not purged: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(st.get_user(&stays.id).await.unwrap().is_some());

    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{logs}");
    assert!(logs.contains("PURGE_INTERVAL_SECS"), "{logs}");
    assert!(logs.contains("purged what was due"), "{logs}");
}

/// The `purge` subcommand of the real binary deletes a due account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_command_deletes_due_accounts() {
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("purge.db").display());
    let (gone, stays) = erased_and_kept(&db).await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meetinity-auth-server"))
        .arg("purge")
        .current_dir(&dir.0)
        .env_clear()
        .env("DATABASE_URL", &db)
        .env("JWT_SECRET", "test-secret-test-secret-test-secret-0123")
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("purged 1 erased account(s)"), "{stdout}");

    let st = meetinity_auth::store::SqliteStore::connect(&db, &Default::default())
        .await
        .unwrap();
    assert!(st.get_user(&gone.id).await.unwrap().is_none());
    assert!(st.get_user(&stays.id).await.unwrap().is_some());
}

// ---------------------------------------------------------------- indexes

/// The listing and search indexes exist, and the planner can use them.
async fn listing_indexes_exist(db: Db) {
    let s = server(db).await;
    match &s.backend {
        Backend::Sqlite(st) => {
            let names: Vec<(String,)> =
                sqlx::query_as("SELECT name FROM sqlite_master WHERE type IN ('index', 'table')")
                    .fetch_all(st.pool())
                    .await
                    .unwrap();
            let names: BTreeSet<String> = names.into_iter().map(|(n,)| n).collect();
            for n in [
                "users_fts",
                "users_active_created_idx",
                "users_active_name_idx",
                "users_active_experience_idx",
                "users_active_industry_idx",
                "users_purge_idx",
                "connections_pair_key",
                "audit_events_actor_idx",
            ] {
                assert!(names.contains(n), "{n} missing");
            }
            let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
                "EXPLAIN QUERY PLAN SELECT rowid FROM users_fts WHERE users_fts MATCH '\"rust\"*'",
            )
            .fetch_all(st.pool())
            .await
            .unwrap();
            assert!(
                plan.iter().any(|p| p.3.contains("VIRTUAL TABLE INDEX")),
                "{plan:?}"
            );
        }
        Backend::Postgres(st) => {
            let names: Vec<(String,)> = sqlx::query_as(
                "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema()",
            )
            .fetch_all(st.pool())
            .await
            .unwrap();
            let names: BTreeSet<String> = names.into_iter().map(|(n,)| n).collect();
            for n in [
                "users_search_idx",
                "users_public_search_idx",
                "users_skills_lower_idx",
                "users_active_created_idx",
                "users_active_name_idx",
                "users_active_experience_idx",
                "users_active_industry_idx",
                "users_purge_idx",
                "connections_pair_key",
                "audit_events_actor_idx",
            ] {
                assert!(names.contains(n), "{n} missing");
            }
            let mut conn = st.pool().acquire().await.unwrap();
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut *conn)
                .await
                .unwrap();
            // Without the partial-index predicate, only the GIN indexes fit.
            for (query, index) in [
                (
                    "EXPLAIN SELECT id FROM users u \
                     WHERE u.search @@ to_tsquery('simple'::regconfig, 'rust:*')",
                    "users_search_idx",
                ),
                (
                    "EXPLAIN SELECT id FROM users u \
                     WHERE (lower(u.skills::text)::jsonb) @> '[\"rust\"]'::jsonb",
                    "users_skills_lower_idx",
                ),
            ] {
                let plan: Vec<(String,)> =
                    sqlx::query_as(query).fetch_all(&mut *conn).await.unwrap();
                let plan: Vec<String> = plan.into_iter().map(|(l,)| l).collect();
                assert!(plan.iter().any(|l| l.contains(index)), "{plan:?}");
            }
            sqlx::query("RESET enable_seqscan")
                .execute(&mut *conn)
                .await
                .unwrap();
            // A search by a caller who is not an admin (written as the store
            // writes it) implies the predicate of users_public_search_idx:
            // given rows where it pays and without the full index (all
            // rolled back), the planner uses it and checks nothing after.
            let mut tx = st.pool().begin().await.unwrap();
            for sql in [
                "INSERT INTO users (id, email, name, provider, skills, created_at, updated_at) \
                 SELECT 'gen-' || g, 'gen-' || g || '@example.com', 'Generated ' || g, \
                 'password', CASE WHEN g % 100 = 0 THEN '[\"Rust\"]' ELSE '[\"Go\"]' END::jsonb, \
                 now(), now() FROM generate_series(1, 5000) AS g",
                "ANALYZE users",
                "DROP INDEX users_search_idx",
                "SET LOCAL enable_seqscan = off",
            ] {
                sqlx::query(sql).execute(&mut *tx).await.unwrap();
            }
            let plan: Vec<(String,)> = sqlx::query_as(
                "EXPLAIN SELECT id FROM users u \
                 WHERE u.is_active AND u.erased_at IS NULL \
                 AND u.search @@ to_tsquery('simple'::regconfig, 'rust:*') \
                 AND coalesce(u.privacy_settings ->> 'name', 'public') = 'public' \
                 AND coalesce(u.privacy_settings ->> 'title', 'public') = 'public' \
                 AND coalesce(u.privacy_settings ->> 'company', 'public') = 'public' \
                 AND coalesce(u.privacy_settings ->> 'skills', 'public') = 'public' \
                 AND coalesce(u.privacy_settings ->> 'bio', 'public') = 'public'",
            )
            .fetch_all(&mut *tx)
            .await
            .unwrap();
            tx.rollback().await.unwrap();
            let plan: Vec<String> = plan.into_iter().map(|(l,)| l).collect();
            assert!(
                plan.iter()
                    .any(|l| l.contains("Bitmap Index Scan on users_public_search_idx")),
                "{plan:?}"
            );
            assert!(!plan.iter().any(|l| l.contains("Filter")), "{plan:?}");
        }
        other => panic!("unexpected backend {other:?}"),
    }
    s.stop().await.unwrap();
}

// ------------------------------------------------- the scenarios, per backend

macro_rules! users_on_both_backends {
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

users_on_both_backends!(
    authorization_matrix,
    validation_table,
    search_and_filters,
    privacy_is_honoured,
    connections_are_consistent,
    social_accounts_and_the_last_sign_in_method,
    sessions_list_and_revoke,
    profile_reads_follow_every_write,
    admin_audit_log,
    export_is_complete,
    erase_leaves_no_personal_data,
    purge_deletes_only_what_is_due,
    purge_runs_in_the_background,
    totals_are_capped,
    listing_indexes_exist,
);
