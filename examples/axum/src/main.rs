//! Meetinity Auth inside an axum service: the standard endpoints mounted
//! as-is, and the service's own `GET /hello` protected by an [`AuthUser`]
//! extractor built on [`AuthService::verify`].
//!
//! Run with:
//!
//! ```sh
//! cargo run -p example-axum
//! ```
//!
//! It listens on 127.0.0.1:3000 (`PORT` to change) with the SQLite file
//! `meetinity.db` and the in-process cache; the server's variables
//! (`JWT_SECRET`, `DATABASE_URL`, ...) apply. Then:
//!
//! ```sh
//! TOKEN=$(curl -s localhost:3000/auth/register -H 'content-type: application/json' \
//!   -d '{"email":"ada@example.com","password":"correct horse battery","name":"Ada"}' | jq -r .token)
//! curl localhost:3000/hello -H "authorization: Bearer $TOKEN"   # Hello, Ada
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use meetinity_auth::http::{bearer_token, error_response, Api, ApiSettings};
use meetinity_auth::service::AuthServiceBuilder;
use meetinity_auth::token::AccessClaims;
use meetinity_auth::{AuthService, Config};

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    auth: Arc<dyn AuthService>,
}

impl FromRef<AppState> for Arc<dyn AuthService> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.auth)
    }
}

/// The signed-in caller: a verified access token whose session is live.
/// Rejects with 401 and `WWW-Authenticate` (the library's error envelope).
struct AuthUser(AccessClaims);

impl<S> FromRequestParts<S> for AuthUser
where
    Arc<dyn AuthService>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Arc::<dyn AuthService>::from_ref(state);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let token = bearer_token(header).map_err(|e| error_response(&e).into_response())?;
        let claims = auth
            .verify(token)
            .await
            .map_err(|e| error_response(&e).into_response())?;
        Ok(Self(claims))
    }
}

async fn hello(
    AuthUser(claims): AuthUser,
    axum::extract::State(state): axum::extract::State<AppState>,
) -> String {
    let name = match state.auth.profile(&claims).await {
        Ok(user) => user.name.unwrap_or(user.email),
        Err(_) => claims.email,
    };
    format!("Hello, {name}")
}

/// The application: `/hello` plus the standard endpoints, mounted on their
/// full paths (the library routes on them).
fn app(auth: Arc<dyn AuthService>, api: Api) -> Router {
    Router::new()
        .route("/hello", get(hello))
        .route_service("/auth/{*rest}", api.clone())
        .route_service("/users", api.clone())
        .route_service("/users/{*rest}", api.clone())
        .route_service("/.well-known/jwks.json", api)
        .with_state(AppState { auth })
}

/// The service and its endpoints from `config`.
async fn build(config: Config) -> meetinity_auth::Result<(Arc<dyn AuthService>, Api)> {
    let settings = ApiSettings::from_config(&config);
    let auth = AuthServiceBuilder::from_config(config).build().await?;
    let api = Api::for_authenticator(auth, settings);
    Ok((Arc::clone(api.service()), api))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (auth, api) = build(Config::from_env()?).await?;
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(auth, api)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    use super::*;

    async fn test_app() -> Router {
        let config = Config::from_vars([("DATABASE_URL", "sqlite::memory:")]).unwrap();
        let (auth, api) = build(config).await.unwrap();
        app(auth, api)
    }

    async fn send(app: &Router, req: Request<Body>) -> (StatusCode, header::HeaderMap, Vec<u8>) {
        let res = app.clone().oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes().to_vec();
        (parts.status, parts.headers, bytes)
    }

    fn hello_with(token: Option<&str>) -> Request<Body> {
        let mut req = Request::get("/hello");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        req.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn hello_needs_a_live_token_from_the_mounted_endpoints() {
        let app = test_app().await;

        // No token: 401 with the challenge.
        let (status, headers, _) = send(&app, hello_with(None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        let (status, headers, _) = send(&app, hello_with(Some("not-a-jwt"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            headers[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );

        // A token issued by the library through the mounted endpoint.
        let register = Request::post("/auth/register")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"email": "ada@example.com", "password": "correct horse battery", "name": "Ada"})
                    .to_string(),
            ))
            .unwrap();
        let (status, _, body) = send(&app, register).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let token = serde_json::from_slice::<Value>(&body).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, _, body) = send(&app, hello_with(Some(&token))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"Hello, Ada");

        // The other mounted routes answer too.
        let jwks = Request::get("/.well-known/jwks.json")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&app, jwks).await.0, StatusCode::OK);

        // Logged out: the same token is refused at once.
        let logout = Request::post("/auth/logout")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&app, logout).await.0, StatusCode::NO_CONTENT);
        let (status, headers, _) = send(&app, hello_with(Some(&token))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            headers[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
    }
}
