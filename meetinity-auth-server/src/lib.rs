//! The thin server around [`meetinity_auth`]: configuration, the hyper
//! listener with graceful shutdown, signals, and the command line. All
//! endpoint logic lives in [`meetinity_auth::http::Api`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use meetinity_auth::http::{Api, ApiSettings, ClientAddr};
use meetinity_auth::service::{AuthServiceBuilder, Backend};
use meetinity_auth::{Config, Error, ErrorKind, Result};
use tokio::net::TcpListener;

pub mod backup;
pub mod purge;

/// How long in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Builds the service and its HTTP endpoints from the configuration
/// (connecting to the database, applying migrations).
pub async fn build_api(config: &Config) -> Result<(Api, Backend)> {
    let (auth, backend) = AuthServiceBuilder::from_config(config.clone())
        .build_with_backend()
        .await?;
    let api = Api::for_authenticator(auth, ApiSettings::from_config(config))
        .with_backend(backend.clone());
    Ok((api, backend))
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
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No HTTP/1 timer: hyper would arm a header-read timer for every
    // request. Slow and half-sent headers are cut off by the connection's
    // idle watch below (`Activity`), after the same `request_timeout`.
    builder.http1().max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let api = Arc::new(api);
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
                let api = Arc::clone(&api);
                let activity = Arc::new(Activity::new());
                let seen = Arc::clone(&activity);
                let svc = service_fn(move |mut req: hyper::Request<Incoming>| {
                    let api = Arc::clone(&api);
                    let busy = Busy::new(Arc::clone(&seen));
                    async move {
                        let _busy = busy;
                        req.extensions_mut().insert(ClientAddr(peer));
                        let waiting = Arc::new(AtomicBool::new(false));
                        let req = req.map(|body| WatchedBody {
                            inner: body,
                            waiting: waiting.clone(),
                        });
                        // Boxed: the handler's state is moved once, not at
                        // every layer (memcpy showed up in profiles).
                        let res = within(request_timeout, Box::pin(api.handle(req))).await;
                        Ok::<_, Infallible>(res.unwrap_or_else(|| timed_out(&waiting)))
                    }
                });
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let mut closing = closing_rx.clone();
                tokio::spawn(async move {
                    // Protocol detection (HTTP/1 or HTTP/2) waits for the first
                    // bytes without a deadline: a client that connects and sends
                    // nothing would hold the socket for ever.
                    let mut first = [0u8; 1];
                    let sent = tokio::select! {
                        r = tokio::time::timeout(request_timeout, stream.peek(&mut first)) => {
                            matches!(r, Ok(Ok(n)) if n > 0)
                        }
                        _ = closing.wait_for(|c| *c) => false,
                    };
                    if !sent {
                        return;
                    }
                    activity.touch();
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        r = watcher.watch(conn.into_owned()) => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, %peer, "connection ended with an error");
                            }
                        }
                        // HTTP/2 has no idle limit of its own (HTTP/1's is the
                        // header read timeout): close a connection that has had
                        // no request for `request_timeout`.
                        () = activity.idle(request_timeout) => {
                            tracing::debug!(%peer, "closed an idle connection");
                        }
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the grace period");
    }
    Ok(())
}

/// When a connection last started or finished a request, and how many it has
/// in flight.
/// Runs `fut` for at most `limit`; `None` when the time ran out.
///
/// The timer is armed only when the first poll does not finish: most
/// answers (health, a warm verify or profile) are ready at once, and arming
/// and cancelling a Tokio timer on every request was a measurable share of
/// their cost (benches/README.md).
async fn within<F: Future + Unpin>(limit: Duration, mut fut: F) -> Option<F::Output> {
    let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut fut).poll(cx))).await;
    match first {
        Poll::Ready(out) => Some(out),
        // Counted from here: the first poll ran without waiting for anything.
        Poll::Pending => tokio::time::timeout(limit, fut).await.ok(),
    }
}

struct Activity {
    origin: tokio::time::Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Resolves once no request has been in flight for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            let last = self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let quiet_until = last + limit;
            if self.in_flight.load(Ordering::Relaxed) == 0
                && tokio::time::Instant::now() >= quiet_until
            {
                return;
            }
            tokio::time::sleep_until(quiet_until.max(tokio::time::Instant::now() + limit / 4))
                .await;
        }
    }
}

/// Counts a request in flight on its connection until dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Self {
        // No `touch` here: the idle watch never fires while a request is in
        // flight, and the drop below marks the end.
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request body that records whether the handler is waiting for the
/// client to send more of it.
struct WatchedBody {
    inner: Incoming,
    waiting: Arc<AtomicBool>,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.waiting.store(polled.is_pending(), Ordering::Relaxed);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a request that did not finish within `REQUEST_TIMEOUT_SECS`:
/// `408` when the server was still waiting for the client's body (and the
/// connection is closed), `503` when the server itself was too slow.
fn timed_out(waiting_for_client: &AtomicBool) -> hyper::Response<Full<Bytes>> {
    if waiting_for_client.load(Ordering::Relaxed) {
        let mut res = meetinity_auth::http::error_response(&Error::new(ErrorKind::RequestTimeout));
        res.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        res
    } else {
        meetinity_auth::http::error_response(&Error::msg(
            ErrorKind::Unavailable,
            "The request took too long.",
        ))
    }
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
