//! Connection-pool settings shared by the SQL backends.

use std::time::Duration;

/// How a SQL store sizes and guards its connection pool.
///
/// ```
/// use meetinity_auth::store::PoolSettings;
/// let s = PoolSettings::default();
/// assert_eq!(s.max_connections, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long a caller waits for a free connection before the store
    /// answers [`crate::ErrorKind::Unavailable`].
    pub acquire_timeout: Duration,
    /// Longest a statement may run: PostgreSQL `statement_timeout` on each
    /// connection; SQLite `busy_timeout` (how long to wait for a lock).
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}
