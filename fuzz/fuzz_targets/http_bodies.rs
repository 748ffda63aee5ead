//! Every endpoint's JSON body parsing, through the real endpoints: arbitrary
//! bodies on each POST/PATCH/PUT route of `Api::handle`, over an in-memory
//! SQLite `Authenticator` with a signed-in user. Never a panic, never a 5xx.
//!
//! Input: first byte: the route; second: the content type; the rest: the body.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use meetinity_auth::http::{Api, ApiSettings};
use meetinity_auth::service::AuthServiceBuilder;
use meetinity_auth::Config;

struct Fixture {
    rt: tokio::runtime::Runtime,
    api: Api,
    token: String,
    user_id: String,
}

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/auth/verify"),
    ("POST", "/auth/refresh"),
    ("POST", "/auth/register"),
    ("POST", "/auth/login"),
    ("POST", "/auth/email/verify"),
    ("POST", "/auth/password/forgot"),
    ("POST", "/auth/password/reset"),
    ("POST", "/auth/password/change"),
    ("POST", "/auth/google"),
    ("PATCH", "/users/{id}"),
    ("PUT", "/users/{id}"),
    ("PUT", "/users/{id}/preferences"),
    ("PUT", "/users/{id}/privacy"),
    ("POST", "/users/{id}/connections"),
    ("PATCH", "/users/{id}/connections/c1"),
];

const CONTENT_TYPES: &[Option<&str>] = &[
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    None,
    Some("application/merge-patch+json"),
    Some("text/plain"),
];

async fn call(
    api: &Api,
    method: &str,
    path: &str,
    token: Option<&str>,
    ct: Option<&str>,
    body: Bytes,
) -> (u16, Bytes) {
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    let req = req.body(Full::new(body)).expect("request");
    let res = api.handle(req).await;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (status, body)
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let config = Config::from_vars([
            ("DATABASE_URL", "sqlite::memory:"),
            ("JWT_SECRET", "fuzz-secret-fuzz-secret-fuzz-secret-0123"),
            ("RATE_LIMIT_PER_MINUTE", "0"),
            ("LOGIN_MAX_FAILURES", "10000"),
            ("LOGIN_IP_MAX_FAILURES", "1000000"),
            ("RUST_LOG", "off"),
        ])
        .expect("config");
        let (api, token, user_id) = rt.block_on(async {
            let auth = AuthServiceBuilder::from_config(config.clone())
                .build()
                .await
                .expect("service");
            let api = Api::for_authenticator(auth, ApiSettings::from_config(&config));
            let (status, body) = call(
                &api,
                "POST",
                "/auth/register",
                None,
                Some("application/json"),
                Bytes::from_static(
                    br#"{"email":"fuzz@example.com","password":"correct horse battery staple 9"}"#,
                ),
            )
            .await;
            assert_eq!(status, 201, "{body:?}");
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            (
                api,
                v["token"].as_str().expect("token").to_owned(),
                v["user"]["id"].as_str().expect("id").to_owned(),
            )
        });
        Fixture {
            rt,
            api,
            token,
            user_id,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let [route, ct, body @ ..] = data else {
        return;
    };
    let (method, template) = ROUTES[*route as usize % ROUTES.len()];
    let path = template.replace("{id}", &f.user_id);
    let ct = CONTENT_TYPES[*ct as usize % CONTENT_TYPES.len()];
    let body = Bytes::copy_from_slice(body);
    let (status, answer) = f.rt.block_on(call(
        &f.api,
        method,
        &path,
        Some(&f.token),
        ct,
        body.clone(),
    ));
    assert!(
        status < 500,
        "{method} {path} {ct:?} {:?} -> {status} {}",
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&answer)
    );
});
