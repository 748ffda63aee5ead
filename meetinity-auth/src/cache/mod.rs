//! Caches: the [`Cache`] seam, its backends (moka in-process, Redis), and
//! [`CachingUserStore`], a read-through decorator over a [`UserStore`].
//!
//! The same seam also carries the short-lived shared state: pending login
//! flows ([`Cache::take`] is an atomic get-and-delete), throttling counters
//! ([`Cache::incr`]) and revocation fan-out ([`Cache::publish`] /
//! [`Cache::subscribe`]).
//!
//! [`UserStore`]: crate::store::UserStore

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::error::Result;

mod caching_store;
#[cfg(feature = "moka")]
mod moka;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "moka")]
#[cfg_attr(docsrs, doc(cfg(feature = "moka")))]
pub use self::moka::MokaCache;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{RedisCache, RedisSettings};
pub use caching_store::{CacheStats, CachingUserStore, FRONT_CAPACITY};

/// The topic of the message a shared cache delivers to its local subscribers
/// each time its fan-out listener (re)subscribes: whatever was published
/// while it was not subscribed is lost, so subscribers drop the state such
/// messages would have invalidated.
pub const RESUBSCRIBED_TOPIC: &str = "cache.resubscribed";

/// A message on a fan-out topic (for example a revoked session id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic (channel) name.
    pub topic: String,
    /// The payload.
    pub payload: String,
}

/// A key/value cache with TTLs, atomic take, counters and fan-out.
///
/// Backends: [`MokaCache`] (in-process; fan-out stays in the process) and
/// [`RedisCache`] (shared by every instance; fan-out through Redis pub/sub).
#[async_trait]
pub trait Cache: std::fmt::Debug + Send + Sync + 'static {
    /// The value under `key`, if present and unexpired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Stores `value` under `key` for `ttl`.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()>;

    /// Removes `key`.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Atomically reads and removes `key`: of many concurrent callers, at most
    /// one gets the value.
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Increments the counter under `key` and returns its new value; a new
    /// counter expires after `window`.
    async fn incr(&self, key: &str, window: Duration) -> Result<u64>;

    /// The remaining time to live of `key`, if it exists.
    async fn ttl(&self, key: &str) -> Result<Option<Duration>>;

    /// Publishes a message to every subscriber (on every instance, for shared backends).
    async fn publish(&self, topic: &str, payload: &str) -> Result<()>;

    /// Subscribes to published messages (all topics).
    fn subscribe(&self) -> broadcast::Receiver<Message>;

    /// Checks the backend answers.
    async fn ping(&self) -> Result<()>;

    /// A short name for logs and metrics (`moka`, `redis`).
    fn name(&self) -> &'static str;
}
