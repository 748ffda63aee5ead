//! The in-process cache: [`MokaCache`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache as Moka;
use moka::ops::compute::Op;
use moka::Expiry;
use tokio::sync::broadcast;

use super::{Cache, Message};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, ErrorKind, Result};

/// How many published messages a slow subscriber may fall behind before it
/// sees [`broadcast::error::RecvError::Lagged`].
const BUS_CAPACITY: usize = 1024;

/// An in-process [`Cache`] backed by [moka](https://docs.rs/moka).
///
/// Expiry follows the injected [`Clock`]: every entry records the instant it
/// expires at, checked on each read, so tests can move time forward with a
/// [`crate::clock::ManualClock`]. moka's own per-entry expiry frees the memory
/// of expired entries in the background (after the same duration of real time).
///
/// Fan-out ([`Cache::publish`] / [`Cache::subscribe`]) stays inside the
/// process: for several server instances, pair it with a shared bus such as
/// the Redis cache (see [`crate::cache::CachingUserStore::with_bus`]).
///
/// ```
/// # tokio_test_block_on(async {
/// use std::time::Duration;
/// use meetinity_auth::cache::{Cache, MokaCache};
///
/// let cache = MokaCache::with_system_clock(10_000);
/// cache.set("greeting", b"hello", Duration::from_secs(60)).await?;
/// assert_eq!(cache.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
/// assert_eq!(cache.take("greeting").await?.as_deref(), Some(&b"hello"[..]));
/// assert_eq!(cache.get("greeting").await?, None);
/// # Ok::<(), meetinity_auth::Error>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct MokaCache {
    entries: Moka<String, Entry>,
    clock: Arc<dyn Clock>,
    bus: broadcast::Sender<Message>,
}

/// A stored value and when it expires, by the injected clock.
#[derive(Clone)]
struct Entry {
    data: Arc<[u8]>,
    /// Expiry instant, in microseconds since the Unix epoch (injected clock).
    expires_at: i64,
    /// How long moka keeps the entry in memory, from the time it was written.
    lifetime: Duration,
}

impl Entry {
    fn new(data: Arc<[u8]>, now: i64, ttl: Duration) -> Self {
        Self {
            data,
            expires_at: now.saturating_add(micros(ttl)),
            lifetime: ttl,
        }
    }

    fn live_at(&self, now: i64) -> bool {
        now < self.expires_at
    }

    fn remaining(&self, now: i64) -> Option<Duration> {
        let left = self.expires_at.saturating_sub(now);
        (left > 0).then(|| Duration::from_micros(left.unsigned_abs()))
    }
}

/// moka's own expiry: frees entries once their lifetime has passed.
struct EntryExpiry;

impl Expiry<String, Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Entry,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.lifetime)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Entry,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.lifetime)
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The shortest counter window: a zero window would expire at once.
const MIN_WINDOW: Duration = Duration::from_millis(1);

impl MokaCache {
    /// A cache holding at most `max_capacity` entries, with expiry read from `clock`.
    pub fn new(max_capacity: u64, clock: Arc<dyn Clock>) -> Self {
        let entries = Moka::builder()
            .name("meetinity-auth")
            .max_capacity(max_capacity)
            .expire_after(EntryExpiry)
            .build();
        let (bus, _) = broadcast::channel(BUS_CAPACITY);
        Self {
            entries,
            clock,
            bus,
        }
    }

    /// A cache holding at most `max_capacity` entries, on the system clock.
    pub fn with_system_clock(max_capacity: u64) -> Self {
        Self::new(max_capacity, Arc::new(SystemClock))
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp_micros()
    }
}

impl fmt::Debug for MokaCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MokaCache")
            .field("entries", &self.entries.entry_count())
            .field("clock", &self.clock)
            .field("subscribers", &self.bus.receiver_count())
            .finish()
    }
}

#[async_trait]
impl Cache for MokaCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let now = self.now();
        Ok(self
            .entries
            .get(key)
            .await
            .filter(|e| e.live_at(now))
            .map(|e| e.data.to_vec()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        if ttl.is_zero() {
            self.entries.invalidate(key).await;
            return Ok(());
        }
        let entry = Entry::new(Arc::from(value), self.now(), ttl);
        self.entries.insert(key.to_owned(), entry).await;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.entries.invalidate(key).await;
        Ok(())
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let now = self.now();
        Ok(self
            .entries
            .remove(key)
            .await
            .filter(|e| e.live_at(now))
            .map(|e| e.data.to_vec()))
    }

    async fn incr(&self, key: &str, window: Duration) -> Result<u64> {
        let window = window.max(MIN_WINDOW);
        let now = self.now();
        let mut outcome: Result<u64> = Err(Error::msg(ErrorKind::Internal, "counter not updated"));
        let slot = &mut outcome;
        self.entries
            .entry_by_ref(key)
            .and_compute_with(|current| {
                let op = match current.map(|e| e.into_value()).filter(|e| e.live_at(now)) {
                    Some(e) => match parse_counter(&e.data).and_then(|n| {
                        n.checked_add(1).ok_or_else(|| {
                            Error::msg(ErrorKind::Internal, "cache counter overflow")
                        })
                    }) {
                        Ok(n) => {
                            *slot = Ok(n);
                            let lifetime = e.remaining(now).unwrap_or(MIN_WINDOW);
                            Op::Put(Entry {
                                data: Arc::from(n.to_string().into_bytes()),
                                expires_at: e.expires_at,
                                lifetime,
                            })
                        }
                        Err(err) => {
                            *slot = Err(err);
                            Op::Nop
                        }
                    },
                    None => {
                        *slot = Ok(1);
                        Op::Put(Entry::new(Arc::from(&b"1"[..]), now, window))
                    }
                };
                std::future::ready(op)
            })
            .await;
        outcome
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        let now = self.now();
        Ok(self.entries.get(key).await.and_then(|e| e.remaining(now)))
    }

    async fn publish(&self, topic: &str, payload: &str) -> Result<()> {
        // No subscriber is not an error: nobody needed the message.
        let _ = self.bus.send(Message {
            topic: topic.to_owned(),
            payload: payload.to_owned(),
        });
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Message> {
        self.bus.subscribe()
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "moka"
    }
}

/// A counter is stored as its decimal digits (as Redis does).
fn parse_counter(data: &[u8]) -> Result<u64> {
    std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Error::msg(ErrorKind::Internal, "cache value is not a counter"))
}
