//! The in-process cache of session liveness that keeps `verify` off the
//! database: `sid -> (user, expiry, revoked)`, bounded and short-lived,
//! updated on revocation on this instance and, through the shared cache's
//! fan-out (Redis pub/sub), on every other instance.
//!
//! Revocation is final: a session once revoked never becomes live again, so
//! a revocation (local or received) is recorded as a cached `revoked` state
//! and needs no database read to be honoured.
//!
//! Filling the cache from the database races with revocations: a `verify`
//! may read a session as live just before another request (or instance)
//! revokes it, and store that stale state just after the revocation was
//! recorded. Every revocation therefore bumps an epoch; a fill taken from a
//! read that started under an older epoch is not kept (see
//! [`LivenessCache::fill`]).

use std::sync::atomic::{AtomicU64, Ordering};
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

impl Liveness {
    /// The state of a revoked (or unknown) session.
    pub fn revoked() -> Self {
        Self {
            user_id: Arc::from(""),
            expires_at: 0,
            revoked: true,
        }
    }
}

/// Bounded map of session liveness.
#[derive(Clone)]
pub(crate) struct LivenessCache {
    #[cfg(feature = "moka")]
    inner: moka::sync::Cache<String, Liveness>,
    /// Bumped by every revocation and every `clear`.
    epoch: Arc<AtomicU64>,
}

impl std::fmt::Debug for LivenessCache {
    /// Counts only: moka's own `Debug` would print every session id.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("LivenessCache");
        #[cfg(feature = "moka")]
        d.field("entries", &self.inner.entry_count());
        d.field("epoch", &self.epoch()).finish()
    }
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
            epoch: Arc::new(AtomicU64::new(0)),
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

    /// The current epoch: take it *before* reading a session from the
    /// database, and hand it to [`fill`](Self::fill) with what was read.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Remembers `state` of `sid`, read from the database after
    /// [`epoch`](Self::epoch) returned `epoch`, unless a revocation happened
    /// since (then the next `get` misses and reads the database again).
    pub fn fill(&self, sid: &str, state: Liveness, epoch: u64) {
        if self.epoch() != epoch {
            return;
        }
        #[cfg(feature = "moka")]
        {
            self.inner.insert(sid.to_owned(), state);
            // A revocation between the check above and the insert may have
            // been overwritten: drop what we stored rather than keep it.
            if self.epoch() != epoch {
                self.inner.invalidate(sid);
            }
        }
        #[cfg(not(feature = "moka"))]
        let _ = (sid, state);
    }

    /// Records that `sid` is revoked (final; no database read needed later).
    pub fn revoke(&self, sid: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        #[cfg(feature = "moka")]
        self.inner.insert(sid.to_owned(), Liveness::revoked());
        #[cfg(not(feature = "moka"))]
        let _ = sid;
    }

    /// Forgets everything (after lost fan-out messages).
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        #[cfg(feature = "moka")]
        self.inner.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn live() -> Liveness {
        Liveness {
            user_id: Arc::from("u"),
            expires_at: i64::MAX,
            revoked: false,
        }
    }

    #[cfg(feature = "moka")]
    #[test]
    fn fill_then_get() {
        let c = LivenessCache::new(10, Duration::from_secs(60));
        let e = c.epoch();
        c.fill("secret-looking-sid", live(), e);
        assert!(!c.get("secret-looking-sid").unwrap().revoked);
        // Debug shows counts, never the session ids.
        let debug = format!("{c:?}");
        assert!(!debug.contains("secret-looking-sid"), "{debug}");
        assert!(debug.contains("LivenessCache"), "{debug}");
    }

    #[cfg(feature = "moka")]
    #[test]
    fn a_revocation_during_a_fill_wins() {
        let c = LivenessCache::new(10, Duration::from_secs(60));
        // verify reads the session as live ...
        let e = c.epoch();
        // ... meanwhile it is revoked ...
        c.revoke("s");
        // ... and the stale read must not overwrite the revocation.
        c.fill("s", live(), e);
        assert!(c.get("s").unwrap().revoked);
        // Other sessions read before the revocation are not kept either
        // (they are simply read again).
        c.fill("t", live(), e);
        assert!(c.get("t").is_none());
    }

    #[cfg(feature = "moka")]
    #[test]
    fn clear_forgets_and_invalidates_fills_in_flight() {
        let c = LivenessCache::new(10, Duration::from_secs(60));
        let e = c.epoch();
        c.fill("s", live(), e);
        c.clear();
        assert!(c.get("s").is_none());
        c.fill("s", live(), e);
        assert!(c.get("s").is_none());
    }
}
