//! The thin server around [`meetinity_auth`]: configuration, the hyper
//! listener with graceful shutdown, signals, and the command line. All
//! endpoint logic lives in [`meetinity_auth::http::Api`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use meetinity_auth::http::{Api, ApiSettings, ClientAddr};
use meetinity_auth::service::{AuthServiceBuilder, Backend};
use meetinity_auth::{Config, Error, ErrorKind, Result};
use tokio::net::TcpListener;

/// How long in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Builds the service and its HTTP endpoints from the configuration
/// (connecting to the database, applying migrations).
pub async fn build_api(config: &Config) -> Result<(Api, Backend)> {
    let (auth, backend) = AuthServiceBuilder::from_config(config.clone())
        .build_with_backend()
        .await?;
    Ok((
        Api::new(Arc::new(auth), ApiSettings::from_config(config)),
        backend,
    ))
}

/// Serves `api` on `listener` until `shutdown` completes, then stops
/// accepting, lets in-flight requests finish (up to [`SHUTDOWN_GRACE`]) and
/// returns.
pub async fn serve(
    listener: TcpListener,
    api: Api,
    request_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(request_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let api = api.clone();
                let svc = service_fn(move |mut req| {
                    let api = api.clone();
                    async move {
                        req.extensions_mut().insert(ClientAddr(peer));
                        let res = tokio::time::timeout(request_timeout, api.handle(req)).await;
                        Ok::<_, Infallible>(res.unwrap_or_else(|_| {
                            meetinity_auth::http::error_response(&Error::msg(
                                ErrorKind::Unavailable,
                                "The request took too long.",
                            ))
                        }))
                    }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the grace period");
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Binds the configured address.
pub async fn bind(config: &Config) -> Result<TcpListener> {
    let addr: SocketAddr = format!("{}:{}", config.host, config.port)
        .parse()
        .map_err(|_| {
            Error::msg(
                ErrorKind::Config,
                format!("APP_HOST: {:?} is not an IP address", config.host),
            )
        })?;
    TcpListener::bind(addr).await.map_err(|e| {
        Error::msg(
            ErrorKind::Config,
            format!("APP_PORT: cannot listen on {addr} ({e})"),
        )
    })
}
