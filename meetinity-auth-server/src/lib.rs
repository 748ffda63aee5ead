//! The thin server around [`meetinity_auth`]: configuration, the hyper
//! listener with graceful shutdown, signals, and the command line. All
//! endpoint logic lives in [`meetinity_auth::http::Api`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use meetinity_auth::http::{Api, ApiSettings};
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
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No HTTP/1 timer: hyper would arm a header-read timer for every
    // request. Slow and half-sent headers are cut off by the idle watch
    // (`watch_connections`), after the same `request_timeout`.
    builder.http1().max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let api = Arc::new(api);
    let connections = Arc::new(Connections::default());
    let watcher = tokio::spawn(watch_connections(
        Arc::clone(&connections),
        request_timeout,
        closing_rx.clone(),
    ));
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
                let conn_state = connections.add();
                let seen = Arc::clone(&conn_state);
                let svc = service_fn(move |req: hyper::Request<Incoming>| {
                    let api = Arc::clone(&api);
                    let busy = Busy::new(Arc::clone(&seen));
                    async move {
                        let _busy = busy;
                        // Whether the handler waits for the client's body, to
                        // tell a slow client (408) from a slow server (503).
                        // A request without a body needs no flag.
                        let waiting = (!req.body().is_end_stream())
                            .then(|| Arc::new(AtomicBool::new(false)));
                        let req = req.map(|body| WatchedBody {
                            inner: body,
                            waiting: waiting.clone(),
                        });
                        let handler = std::pin::pin!(api.handle_from(req, peer));
                        let res = within(request_timeout, handler).await;
                        Ok::<_, Infallible>(res.unwrap_or_else(|| timed_out(waiting.as_deref())))
                    }
                });
                let builder = builder.clone();
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
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    match conn_state.serve(conn).await {
                        Ok(Ended::Closed) => {}
                        Ok(Ended::Idle) => tracing::debug!(%peer, "closed an idle connection"),
                        Err(e) => {
                            tracing::debug!(error = %e, %peer, "connection ended with an error");
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
    if tokio::time::timeout(SHUTDOWN_GRACE, watcher).await.is_err() {
        tracing::warn!("some connections did not finish within the grace period");
    }
    Ok(())
}

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

/// The connections being served, for [`watch_connections`]: new ones wait
/// in `added` until its next round.
#[derive(Default)]
struct Connections {
    added: std::sync::Mutex<Vec<Weak<ConnState>>>,
}

impl Connections {
    fn add(&self) -> Arc<ConnState> {
        let state = Arc::new(ConnState::default());
        if let Ok(mut added) = self.added.lock() {
            added.push(Arc::downgrade(&state));
        }
        state
    }

    fn take_added(&self) -> Vec<Weak<ConnState>> {
        self.added
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default()
    }
}

/// What one connection shares with the watch: its requests (counted, no
/// clock read per request) and the watch's word to it.
#[derive(Default)]
struct ConnState {
    /// Requests started on the connection.
    started: AtomicU64,
    /// Requests in flight.
    in_flight: AtomicUsize,
    /// 0 while serving, then [`CLOSE`] or [`IDLE`].
    signal: AtomicU8,
    waker: AtomicWaker,
}

/// The server is shutting down: finish in-flight requests, then close.
const CLOSE: u8 = 1;
/// No request for the request timeout: close now.
const IDLE: u8 = 2;

/// How a connection ended.
enum Ended {
    Closed,
    Idle,
}

impl ConnState {
    /// Serves `conn` until it ends or the watch closes it.
    async fn serve<C>(&self, conn: C) -> std::result::Result<Ended, C::Error>
    where
        C: GracefulConnection,
    {
        let mut conn = std::pin::pin!(conn);
        let mut shutting_down = false;
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            match self.signal.load(Ordering::Acquire) {
                IDLE => return Poll::Ready(Ok(Ended::Idle)),
                CLOSE if !shutting_down => {
                    shutting_down = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ => {}
            }
            conn.as_mut().poll(cx).map_ok(|()| Ended::Closed)
        })
        .await
    }

    fn tell(&self, signal: u8) {
        self.signal.store(signal, Ordering::Release);
        self.waker.wake();
    }
}

/// Closes connections that had no request for `limit` (HTTP/2 has no idle
/// limit of its own, and HTTP/1's header timer is off: this also cuts
/// slow and half-sent headers), looking every `limit / 4`; once `closing`,
/// asks every connection to finish gracefully and returns when all have.
async fn watch_connections(
    connections: Arc<Connections>,
    limit: Duration,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    /// Quiet rounds after which a connection is idle: between `limit` and
    /// `limit * 5 / 4` without a request.
    const QUIET_ROUNDS: u32 = 5;
    /// A connection as last seen: requests started, rounds without any.
    struct Seen {
        conn: Weak<ConnState>,
        started: u64,
        quiet: u32,
    }
    let round = (limit / 4).max(Duration::from_millis(10));
    let mut seen: Vec<Seen> = Vec::new();
    loop {
        let stop = tokio::select! {
            () = tokio::time::sleep(round) => false,
            _ = closing.wait_for(|c| *c) => true,
        };
        seen.extend(connections.take_added().into_iter().map(|conn| Seen {
            conn,
            started: 0,
            quiet: 0,
        }));
        if stop {
            break;
        }
        seen.retain_mut(|s| {
            let Some(conn) = s.conn.upgrade() else {
                return false;
            };
            let started = conn.started.load(Ordering::Relaxed);
            if started != s.started || conn.in_flight.load(Ordering::Relaxed) > 0 {
                s.started = started;
                s.quiet = 0;
                return true;
            }
            s.quiet += 1;
            if s.quiet >= QUIET_ROUNDS {
                conn.tell(IDLE);
                return false;
            }
            true
        });
    }
    for s in &seen {
        if let Some(conn) = s.conn.upgrade() {
            conn.tell(CLOSE);
        }
    }
    // Connections accepted while shutting down see `closing` themselves.
    while seen.iter().any(|s| s.conn.strong_count() > 0) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Counts a request in flight on its connection until dropped.
struct Busy(Arc<ConnState>);

impl Busy {
    fn new(conn: Arc<ConnState>) -> Self {
        conn.started.fetch_add(1, Ordering::Relaxed);
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request body that records whether the handler is waiting for the
/// client to send more of it.
struct WatchedBody {
    inner: Incoming,
    /// `None` for a request without a body.
    waiting: Option<Arc<AtomicBool>>,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Some(waiting) = &self.waiting {
            waiting.store(polled.is_pending(), Ordering::Relaxed);
        }
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
fn timed_out(waiting_for_client: Option<&AtomicBool>) -> hyper::Response<Full<Bytes>> {
    if waiting_for_client.is_some_and(|w| w.load(Ordering::Relaxed)) {
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
