//! Benchmarks of Meetinity Auth: criterion benches (`benches/*.rs`), the
//! hyper-only baseline servers and the helpers of the HTTP load benchmark
//! (`src/bin/*.rs`, driven by `load/run.sh`). See `README.md`.
//!
//! This library holds the little the criterion benches share: where the
//! services are and how to name what a run creates.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// The PostgreSQL URL: `TEST_DATABASE_URL`, else the local test database.
pub fn pg_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The Redis URL: `TEST_REDIS_URL`, else the local Redis.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A name unique to this run (process id and time): `{tag}_{pid}_{nanos}`,
/// usable as a PostgreSQL schema, a Redis prefix or a file name.
pub fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{tag}_{}_{nanos}", std::process::id())
}

/// A fresh directory under the system temporary directory.
pub fn temp_dir(tag: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(unique(tag));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The runtime the async benches run on: multi-threaded with two workers,
/// like the server on this two-core machine.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}
