//! Shared helpers: where the test services are.

/// PostgreSQL URL for tests (`TEST_DATABASE_URL`).
pub fn pg_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Redis URL for tests (`TEST_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// A unique name for isolating a test (schema, key prefix, file).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A migrated SQLite store on a fresh database file under the temp dir.
#[cfg(feature = "sqlite")]
pub async fn sqlite_store() -> meetinity_auth::store::SqliteStore {
    let dir = std::env::temp_dir().join("meetinity-auth-tests");
    std::fs::create_dir_all(&dir).expect("create the test database directory");
    let path = dir.join(format!("{}.db", unique("store")));
    let store = meetinity_auth::store::SqliteStore::open(&path)
        .await
        .expect("open a SQLite test database");
    store
        .migrate()
        .await
        .expect("migrate the SQLite test database");
    store
}

/// A migrated PostgreSQL store in a fresh schema of [`pg_url`]'s database.
/// Fails (never skips) when PostgreSQL is unreachable.
#[cfg(feature = "postgres")]
pub async fn pg_store() -> meetinity_auth::store::PostgresStore {
    let settings = meetinity_auth::store::PoolSettings {
        max_connections: 8,
        ..Default::default()
    };
    let store =
        meetinity_auth::store::PostgresStore::connect_in_schema(&pg_url(), &unique("t"), &settings)
            .await
            .expect("connect to the PostgreSQL test database (TEST_DATABASE_URL)");
    store
        .migrate()
        .await
        .expect("migrate the PostgreSQL test schema");
    store
}
