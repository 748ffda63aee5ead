//! The shared cache: [`RedisCache`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError, RedisResult};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, OnceCell};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Cache, Message};
use crate::error::{Error, ErrorKind, Result};

/// How many published messages a slow local subscriber may fall behind.
const BUS_CAPACITY: usize = 1024;
/// First and longest pause after Redis failed (calls fail fast meanwhile).
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often the fan-out listener checks that its connection is alive.
const LISTENER_PING: Duration = Duration::from_secs(10);

/// Timeouts of a [`RedisCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisSettings {
    /// Longest wait to open a connection.
    pub connect_timeout: Duration,
    /// Longest wait for any call, connecting included.
    pub command_timeout: Duration,
}

impl Default for RedisSettings {
    /// One second each.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
        }
    }
}

/// A [`Cache`] in Redis, shared by every server instance.
///
/// Keys live under `{prefix}:` so that several deployments (or tests) share
/// one Redis. Fan-out goes through the Redis channel `{prefix}:bus`: a
/// message published on any instance reaches the subscribers of every
/// instance with the same prefix, this one included.
///
/// Construction does not touch the network: the connection opens on first
/// use and reopens by itself after Redis went away. While Redis is down every
/// call fails fast with [`ErrorKind::Unavailable`] (never slower than
/// [`RedisSettings::command_timeout`]), and the service recovers on its own
/// when Redis is back. Messages published while the fan-out listener is
/// disconnected are lost (Redis pub/sub keeps nothing).
///
/// ```no_run
/// # async fn demo() -> meetinity_auth::Result<()> {
/// use std::time::Duration;
/// use meetinity_auth::cache::{Cache, RedisCache, RedisSettings};
///
/// let cache = RedisCache::new("redis://127.0.0.1:6379/0", "auth", RedisSettings::default())?;
/// let attempts = cache.incr("login:alice@example.com", Duration::from_secs(60)).await?;
/// # let _ = attempts;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    prefix: String,
    /// The fan-out channel, `{prefix}:bus`.
    channel: String,
    settings: RedisSettings,
    conn: OnceCell<ConnectionManager>,
    breaker: Breaker,
    bus: broadcast::Sender<Message>,
    listening: Arc<AtomicBool>,
    listener: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The message as it travels on the Redis channel.
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    topic: std::borrow::Cow<'a, str>,
    payload: std::borrow::Cow<'a, str>,
}

impl RedisCache {
    /// A cache at `url` (`redis://[user:password@]host[:port][/db]`) with keys
    /// under `{prefix}:`.
    ///
    /// Succeeds while Redis is down; a malformed URL or an empty prefix is an
    /// [`ErrorKind::Config`] error. Call it inside a Tokio runtime: it starts
    /// the task that listens for published messages (else [`ErrorKind::Config`]).
    pub fn new(url: &str, prefix: &str, settings: RedisSettings) -> Result<Self> {
        // The URL may hold a password: never put it in an error.
        let client = redis::Client::open(url)
            .map_err(|_| Error::msg(ErrorKind::Config, "the Redis URL is invalid"))?;
        if prefix.is_empty() {
            return Err(Error::msg(
                ErrorKind::Config,
                "the Redis key prefix is empty",
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::msg(
                ErrorKind::Config,
                "RedisCache::new must be called inside a Tokio runtime",
            )
        })?;
        let (bus, _) = broadcast::channel(BUS_CAPACITY);
        let listening = Arc::new(AtomicBool::new(false));
        let channel = format!("{prefix}:bus");
        let listener = runtime.spawn(listen(
            client.clone(),
            channel.clone(),
            settings,
            bus.clone(),
            Arc::clone(&listening),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                prefix: prefix.to_owned(),
                channel,
                settings,
                conn: OnceCell::new(),
                breaker: Breaker::new(),
                bus,
                listening,
                listener,
            }),
        })
    }

    /// Whether the fan-out listener is subscribed right now: messages
    /// published elsewhere reach this instance only while it is.
    pub fn is_listening(&self) -> bool {
        self.inner.listening.load(Ordering::SeqCst)
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.inner.prefix)
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        let s = self.inner.settings;
        ConnectionManagerConfig::new()
            .set_connection_timeout(s.connect_timeout)
            .set_response_timeout(s.command_timeout)
            // One attempt per call: the breaker paces the retries.
            .set_number_of_retries(0)
    }

    /// Runs `req` on the (lazily opened) connection, bounded by the command
    /// timeout, failing fast while the breaker is open.
    async fn run<T: FromRedisValue + Send>(&self, op: &'static str, req: Request) -> Result<T> {
        let inner = &self.inner;
        inner.breaker.check()?;
        let call = async {
            match self.attempt(&req).await {
                // Refused: the command was never sent, and the failure has
                // just started a reconnection; try once more on it.
                Err(e) if e.is_connection_refusal() => self.attempt(&req).await,
                other => other,
            }
        };
        match tokio::time::timeout(inner.settings.command_timeout, call).await {
            Ok(Ok(value)) => {
                inner.breaker.success();
                Ok(value)
            }
            Ok(Err(e)) if is_connection_error(&e) => {
                let retry = inner.breaker.failure();
                tracing::debug!(op, error = %e, "redis unavailable");
                Err(Error::msg(ErrorKind::Unavailable, "Redis is unavailable")
                    .with_retry_after(retry)
                    .with_source(e))
            }
            Ok(Err(e)) => {
                inner.breaker.success();
                Err(Error::msg(ErrorKind::Internal, format!("Redis {op} failed")).with_source(e))
            }
            Err(_) => {
                let retry = inner.breaker.failure();
                tracing::debug!(op, "redis timed out");
                Err(
                    Error::msg(ErrorKind::Unavailable, "Redis did not answer in time")
                        .with_retry_after(retry),
                )
            }
        }
    }

    async fn attempt<T: FromRedisValue>(&self, req: &Request) -> RedisResult<T> {
        let inner = &self.inner;
        let mut conn = inner
            .conn
            .get_or_try_init(|| {
                ConnectionManager::new_with_config(inner.client.clone(), self.manager_config())
            })
            .await?
            .clone();
        match req {
            Request::Cmd(cmd) => cmd.query_async(&mut conn).await,
            Request::Pipe(pipe) => pipe.query_async(&mut conn).await,
        }
    }
}

/// A command or an atomic pipeline.
enum Request {
    Cmd(redis::Cmd),
    Pipe(redis::Pipeline),
}

fn cmd(name: &str, key: String) -> redis::Cmd {
    let mut c = redis::cmd(name);
    c.arg(key);
    c
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("RedisCache")
            .field("prefix", &self.inner.prefix)
            .field("settings", &self.inner.settings)
            .field("listening", &self.is_listening())
            .finish()
    }
}

fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

/// Milliseconds for `PX`, at least 1 (Redis refuses 0).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.run("GET", Request::Cmd(cmd("GET", self.key(key))))
            .await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        if ttl.is_zero() {
            return self.delete(key).await;
        }
        let mut set = cmd("SET", self.key(key));
        set.arg(value).arg("PX").arg(millis(ttl));
        self.run("SET", Request::Cmd(set)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.run("DEL", Request::Cmd(cmd("DEL", self.key(key))))
            .await
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.run("GETDEL", Request::Cmd(cmd("GETDEL", self.key(key))))
            .await
    }

    async fn incr(&self, key: &str, window: Duration) -> Result<u64> {
        let k = self.key(key);
        // MULTI: create the counter with its expiry only if absent, then count.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&k)
            .arg(0)
            .arg("PX")
            .arg(millis(window))
            .arg("NX")
            .ignore()
            .cmd("INCR")
            .arg(&k);
        let (n,): (u64,) = self.run("INCR", Request::Pipe(pipe)).await?;
        Ok(n)
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        let ms: i64 = self
            .run("PTTL", Request::Cmd(cmd("PTTL", self.key(key))))
            .await?;
        // -2: no such key; -1: no expiry.
        Ok(u64::try_from(ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis))
    }

    async fn publish(&self, topic: &str, payload: &str) -> Result<()> {
        let wire = serde_json::to_string(&Wire {
            topic: topic.into(),
            payload: payload.into(),
        })?;
        let mut publish = cmd("PUBLISH", self.inner.channel.clone());
        publish.arg(wire);
        let _receivers: u64 = self.run("PUBLISH", Request::Cmd(publish)).await?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Message> {
        self.inner.bus.subscribe()
    }

    async fn ping(&self) -> Result<()> {
        let _pong: String = self.run("PING", Request::Cmd(redis::cmd("PING"))).await?;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}

/// Fails calls fast for a short, growing pause after Redis failed, so that a
/// dead Redis costs callers nothing; the first call after the pause tries again.
struct Breaker {
    origin: Instant,
    /// Milliseconds after `origin` until which calls fail fast (0: closed).
    open_until: AtomicU64,
    failures: AtomicU32,
}

impl Breaker {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            open_until: AtomicU64::new(0),
            failures: AtomicU32::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn check(&self) -> Result<()> {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Ok(());
        }
        let now = self.now_ms();
        if now < until {
            return Err(Error::msg(ErrorKind::Unavailable, "Redis is unavailable")
                .with_retry_after(Duration::from_millis(until - now)));
        }
        Ok(())
    }

    fn success(&self) {
        if self.open_until.load(Ordering::Relaxed) != 0 {
            self.open_until.store(0, Ordering::Release);
        }
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Opens the breaker after a failure; returns how long it stays open.
    fn failure(&self) -> Duration {
        let now = self.now_ms();
        let until = self.open_until.load(Ordering::Acquire);
        if until > now {
            // Already open: a concurrent call failed too; do not escalate.
            return Duration::from_millis(until - now);
        }
        let n = self.failures.fetch_add(1, Ordering::Relaxed).min(16);
        let pause = BACKOFF_MIN.saturating_mul(1 << n).min(BACKOFF_MAX);
        self.open_until
            .store(now.saturating_add(millis(pause)).max(1), Ordering::Release);
        pause
    }
}

/// Subscribes to `channel` and forwards its messages to `bus`, reconnecting
/// with backoff whenever the connection is lost.
async fn listen(
    client: redis::Client,
    channel: String,
    settings: RedisSettings,
    bus: broadcast::Sender<Message>,
    listening: Arc<AtomicBool>,
) {
    let mut pause = BACKOFF_MIN;
    loop {
        match subscribe_once(&client, &channel, settings).await {
            Ok(pubsub) => {
                pause = BACKOFF_MIN;
                listening.store(true, Ordering::SeqCst);
                tracing::debug!("redis fan-out listener subscribed");
                // Messages published while unsubscribed are lost: say so locally.
                let _ = bus.send(Message {
                    topic: super::RESUBSCRIBED_TOPIC.to_owned(),
                    payload: String::new(),
                });
                forward(pubsub, &bus, settings).await;
                listening.store(false, Ordering::SeqCst);
                tracing::warn!("redis fan-out listener lost its connection; resubscribing");
            }
            Err(e) => {
                tracing::debug!(error = %e, "redis fan-out listener could not subscribe");
            }
        }
        tokio::time::sleep(pause).await;
        pause = pause.saturating_mul(2).min(BACKOFF_MAX);
    }
}

async fn subscribe_once(
    client: &redis::Client,
    channel: &str,
    settings: RedisSettings,
) -> Result<redis::aio::PubSub> {
    let mut pubsub = tokio::time::timeout(settings.connect_timeout, client.get_async_pubsub())
        .await
        .map_err(|_| Error::msg(ErrorKind::Unavailable, "Redis connect timed out"))??;
    tokio::time::timeout(settings.command_timeout, pubsub.subscribe(channel))
        .await
        .map_err(|_| Error::msg(ErrorKind::Unavailable, "Redis SUBSCRIBE timed out"))??;
    Ok(pubsub)
}

/// Forwards messages until the connection ends or stops answering pings.
async fn forward(
    pubsub: redis::aio::PubSub,
    bus: &broadcast::Sender<Message>,
    settings: RedisSettings,
) {
    let (mut sink, mut stream) = pubsub.split();
    let mut ticker = tokio::time::interval(LISTENER_PING);
    ticker.reset();
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return };
                let Ok(bytes) = msg.get_payload::<Vec<u8>>() else { continue };
                match serde_json::from_slice::<Wire<'_>>(&bytes) {
                    Ok(wire) => {
                        // No local subscriber is not an error.
                        let _ = bus.send(Message {
                            topic: wire.topic.into_owned(),
                            payload: wire.payload.into_owned(),
                        });
                    }
                    Err(_) => tracing::warn!("ignoring a malformed message on the redis bus"),
                }
            }
            _ = ticker.tick() => {
                let alive = tokio::time::timeout(settings.command_timeout, sink.ping::<String>()).await;
                if !matches!(alive, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}
