//! [`Api`] as a `tower_service::Service`, so tower-based frameworks mount it
//! as-is.
//!
//! [`Api`] routes on the full path (`/auth/login`, `/users/{id}`, ...), so
//! mount it where the path is kept whole: in axum with
//! `Router::route_service("/auth/{*rest}", api.clone())` (one per prefix) or
//! `Router::fallback_service(api)`, not with `nest_service`, which strips
//! the prefix.
//!
//! ```
//! # async fn run(auth: std::sync::Arc<dyn meetinity_auth::AuthService>) {
//! use meetinity_auth::http::{Api, ApiSettings};
//! use tower_service::Service;
//! let mut api = Api::new(auth, ApiSettings::default());
//! let req = http::Request::get("/health").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
//! let res = api.call(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;

use super::Api;

impl<B> tower_service::Service<Request<B>> for Api
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let api = self.clone();
        Box::pin(async move { Ok(api.handle(req).await) })
    }
}
