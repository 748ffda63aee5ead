//! The in-process cache of session liveness that keeps `verify` off the
//! database: `sid -> (user, expiry, revoked)`, bounded and short-lived,
//! invalidated on revocation on this instance and, through the shared
//! cache's fan-out (Redis pub/sub), on every other instance.

use std::sync::Arc;
use std::time::Duration;

/// The topic on which revoked session ids are published.
pub(crate) const REVOKED_TOPIC: &str = "session.revoked";

/// What is known about a session.
#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    /// Owner.
    pub user_id: Arc<str>,
    /// Absolute expiry (unix seconds).
    pub expires_at: i64,
    /// Revoked sessions are cached too, so replays stay off the database.
    pub revoked: bool,
}

/// Bounded map of session liveness.
#[derive(Debug, Clone)]
pub(crate) struct LivenessCache {
    #[cfg(feature = "moka")]
    inner: moka::sync::Cache<String, Liveness>,
}

impl LivenessCache {
    /// A cache holding at most `capacity` sessions for at most `ttl` each
    /// (the bound on staleness if a revocation message is ever lost).
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        #[cfg(not(feature = "moka"))]
        let _ = (capacity, ttl);
        Self {
            #[cfg(feature = "moka")]
            inner: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The cached state of `sid`, if any.
    pub fn get(&self, sid: &str) -> Option<Liveness> {
        #[cfg(feature = "moka")]
        {
            self.inner.get(sid)
        }
        #[cfg(not(feature = "moka"))]
        {
            let _ = sid;
            None
        }
    }

    /// Remembers the state of `sid`.
    pub fn put(&self, sid: &str, state: Liveness) {
        #[cfg(feature = "moka")]
        self.inner.insert(sid.to_owned(), state);
        #[cfg(not(feature = "moka"))]
        let _ = (sid, state);
    }

    /// Forgets `sid` (it will be read from the database next time).
    pub fn forget(&self, sid: &str) {
        #[cfg(feature = "moka")]
        self.inner.invalidate(sid);
        #[cfg(not(feature = "moka"))]
        let _ = sid;
    }

    /// Forgets everything (after a lost fan-out connection).
    #[allow(dead_code)]
    pub fn clear(&self) {
        #[cfg(feature = "moka")]
        self.inner.invalidate_all();
    }
}
