//! Injectable time. No logic in the library calls `Utc::now()` directly:
//! it asks a [`Clock`], so tests can move time forward.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};

/// A source of the current time.
pub trait Clock: Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// The current time as seconds since the Unix epoch.
    fn unix(&self) -> i64 {
        self.now().timestamp()
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until moved: for tests.
///
/// ```
/// use meetinity_auth::clock::{Clock, ManualClock};
/// let clock = ManualClock::at_unix(1_000);
/// clock.advance(std::time::Duration::from_secs(60));
/// assert_eq!(clock.unix(), 1_060);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    micros: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock set to the current system time.
    pub fn new() -> Self {
        Self::at(Utc::now())
    }

    /// A clock set to `t`.
    pub fn at(t: DateTime<Utc>) -> Self {
        Self {
            micros: Arc::new(AtomicI64::new(t.timestamp_micros())),
        }
    }

    /// A clock set to `secs` seconds after the Unix epoch.
    pub fn at_unix(secs: i64) -> Self {
        Self {
            micros: Arc::new(AtomicI64::new(secs.saturating_mul(1_000_000))),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.micros.fetch_add(micros, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, t: DateTime<Utc>) {
        self.micros.store(t.timestamp_micros(), Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        let micros = self.micros.load(Ordering::SeqCst);
        Utc.timestamp_micros(micros).single().unwrap_or_default()
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;
