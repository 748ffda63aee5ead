//! Meetinity Auth inside an actix-web service: the standard endpoints
//! mounted through a small adapter (actix has its own request types), and
//! the service's own `GET /hello` protected by an [`AuthUser`] extractor
//! (`FromRequest`) built on [`AuthService::verify`], with the service in
//! `web::Data`.
//!
//! Run with:
//!
//! ```sh
//! cargo run -p example-actix
//! ```
//!
//! It listens on 127.0.0.1:3001 (`PORT` to change) with the SQLite file
//! `meetinity.db` and the in-process cache; the server's variables
//! (`JWT_SECRET`, `DATABASE_URL`, ...) apply. Then:
//!
//! ```sh
//! TOKEN=$(curl -s localhost:3001/auth/register -H 'content-type: application/json' \
//!   -d '{"email":"ada@example.com","password":"correct horse battery","name":"Ada"}' | jq -r .token)
//! curl localhost:3001/hello -H "authorization: Bearer $TOKEN"   # Hello, Ada
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::error::InternalError;
use actix_web::{web, App, FromRequest, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use meetinity_auth::http::{bearer_token, error_response, Api, ApiSettings, ClientAddr};
use meetinity_auth::service::AuthServiceBuilder;
use meetinity_auth::token::AccessClaims;
use meetinity_auth::{AuthService, Config};

/// The library's `http` response as an actix response.
async fn to_actix(res: http::Response<Full<Bytes>>) -> HttpResponse {
    let (parts, body) = res.into_parts();
    let status = actix_web::http::StatusCode::from_u16(parts.status.as_u16())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = HttpResponse::build(status);
    for (name, value) in &parts.headers {
        out.append_header((name.as_str(), value.as_bytes()));
    }
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    out.body(bytes)
}

/// The standard endpoints: the actix request as an `http` one, answered by [`Api`].
async fn mount(req: HttpRequest, body: Bytes, api: web::Data<Api>) -> HttpResponse {
    let mut builder = http::Request::builder()
        .method(req.method().as_str())
        .uri(req.uri().to_string());
    for (name, value) in req.headers() {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    let Ok(mut request) = builder.body(Full::new(body)) else {
        return HttpResponse::BadRequest().finish();
    };
    if let Some(peer) = req.peer_addr() {
        request.extensions_mut().insert(ClientAddr(peer));
    }
    to_actix(api.handle(request).await).await
}

/// The signed-in caller: a verified access token whose session is live.
/// Rejects with 401 and `WWW-Authenticate` (the library's error envelope).
struct AuthUser(AccessClaims);

impl FromRequest for AuthUser {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let auth = req.app_data::<web::Data<dyn AuthService>>().cloned();
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("").to_owned());
        Box::pin(async move {
            let auth =
                auth.ok_or_else(|| actix_web::error::ErrorInternalServerError("no AuthService"))?;
            let verified = match bearer_token(header.as_deref()) {
                Ok(token) => auth.verify(token).await,
                Err(e) => Err(e),
            };
            match verified {
                Ok(claims) => Ok(Self(claims)),
                Err(e) => {
                    let res = to_actix(error_response(&e)).await;
                    Err(InternalError::from_response(e, res).into())
                }
            }
        })
    }
}

async fn hello(AuthUser(claims): AuthUser, auth: web::Data<dyn AuthService>) -> String {
    let name = match auth.profile(&claims).await {
        Ok(user) => user.name.unwrap_or(user.email),
        Err(_) => claims.email,
    };
    format!("Hello, {name}")
}

/// The routes: `/hello` plus the standard endpoints on their full paths.
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/hello", web::get().to(hello))
        .route("/auth/{tail:.*}", web::to(mount))
        .route("/users{tail:.*}", web::to(mount))
        .route("/.well-known/jwks.json", web::to(mount));
}

/// The service (as `web::Data<dyn AuthService>`) and its endpoints from `config`.
async fn build(
    config: Config,
) -> meetinity_auth::Result<(web::Data<dyn AuthService>, web::Data<Api>)> {
    let settings = ApiSettings::from_config(&config);
    let auth = AuthServiceBuilder::from_config(config).build().await?;
    let api = Api::for_authenticator(auth, settings);
    Ok((
        web::Data::from(Arc::clone(api.service())),
        web::Data::new(api),
    ))
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let limit = config.max_body_bytes;
    let (auth, api) = build(config).await?;
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3001);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(auth.clone())
            .app_data(api.clone())
            .app_data(web::PayloadConfig::new(limit))
            .configure(routes)
    })
    .bind(("127.0.0.1", port))?;
    println!("listening on http://127.0.0.1:{port}");
    server.run().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use actix_web::http::{header, StatusCode};
    use actix_web::test;
    use serde_json::{json, Value};

    use super::*;

    #[actix_web::test]
    async fn hello_needs_a_live_token_from_the_mounted_endpoints() {
        let config = Config::from_vars([("DATABASE_URL", "sqlite::memory:")]).unwrap();
        let (auth, api) = build(config).await.unwrap();
        let app =
            test::init_service(App::new().app_data(auth).app_data(api).configure(routes)).await;
        let hello = |token: Option<&str>| {
            let mut req = test::TestRequest::get().uri("/hello");
            if let Some(t) = token {
                req = req.insert_header((header::AUTHORIZATION, format!("Bearer {t}")));
            }
            req.to_request()
        };

        // No token, or a bad one: 401 with the challenge.
        let res = test::call_service(&app, hello(None)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer"
        );
        let res = test::call_service(&app, hello(Some("not-a-jwt"))).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer error=\"invalid_token\""
        );

        // A token issued by the library through the mounted endpoint.
        let register = test::TestRequest::post()
            .uri("/auth/register")
            .set_json(json!({"email": "ada@example.com", "password": "correct horse battery", "name": "Ada"}))
            .to_request();
        let res = test::call_service(&app, register).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        assert!(res.headers().contains_key("x-request-id"));
        let body: Value = test::read_body_json(res).await;
        let token = body["token"].as_str().unwrap().to_owned();
        let res = test::call_service(&app, hello(Some(&token))).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(test::read_body(res).await, "Hello, Ada");

        let jwks = test::TestRequest::get()
            .uri("/.well-known/jwks.json")
            .to_request();
        assert_eq!(
            test::call_service(&app, jwks).await.status(),
            StatusCode::OK
        );

        // Logged out: the same token is refused at once.
        let logout = test::TestRequest::post()
            .uri("/auth/logout")
            .insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
            .to_request();
        assert_eq!(
            test::call_service(&app, logout).await.status(),
            StatusCode::NO_CONTENT
        );
        let res = test::call_service(&app, hello(Some(&token))).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer error=\"invalid_token\""
        );
    }
}
