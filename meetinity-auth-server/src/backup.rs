//! `meetinity-auth-server backup <file>`: an online, consistent copy of the
//! SQLite database while the server keeps serving.
//!
//! SQLite's `VACUUM INTO` writes a compact copy of the database as of one
//! read transaction: writers go on meanwhile (WAL), and the copy is a plain
//! database file that a server opens as is. PostgreSQL is backed up with its
//! own tools (`pg_dump` / `pg_restore`, see the README's "Backups").

use std::path::{Path, PathBuf};

use meetinity_auth::config::DatabaseUrl;
use meetinity_auth::store::{PoolSettings, SqliteStore};
use meetinity_auth::{Config, Error, ErrorKind, Result};

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The file written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Users in the copy.
    pub users: i64,
    /// Sessions in the copy.
    pub sessions: i64,
}

/// The file of a `sqlite://path[?params]` URL.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Copies the configured SQLite database to `dest` without stopping the
/// server, then checks the copy (`PRAGMA integrity_check`).
///
/// Refuses to overwrite `dest`, to back up a database file that does not
/// exist (rather than create an empty one), and PostgreSQL databases (use
/// `pg_dump`).
pub async fn backup(config: &Config, dest: &Path) -> Result<BackupReport> {
    let url = match &config.database_url {
        DatabaseUrl::Sqlite(url) => url.clone(),
        DatabaseUrl::Postgres(_) => {
            return Err(Error::msg(
                ErrorKind::Config,
                "backup copies SQLite databases; for PostgreSQL use pg_dump and pg_restore \
                 (see the README, \"Backups\")",
            ))
        }
    };
    let source = sqlite_file(&url).ok_or_else(|| {
        Error::msg(
            ErrorKind::Config,
            "DATABASE_URL: an in-memory SQLite database cannot be backed up",
        )
    })?;
    if !source.is_file() {
        return Err(Error::msg(
            ErrorKind::Config,
            format!("DATABASE_URL: {} does not exist", source.display()),
        ));
    }
    if dest.exists() {
        return Err(Error::msg(
            ErrorKind::Config,
            format!("{} exists; refusing to overwrite it", dest.display()),
        ));
    }
    let dest_str = dest
        .to_str()
        .ok_or_else(|| Error::msg(ErrorKind::Config, "the backup path must be valid UTF-8"))?;
    let settings = PoolSettings {
        max_connections: 1,
        acquire_timeout: config.db_acquire_timeout,
        // Waiting for a writer's lock: be patient, a backup is not a request.
        statement_timeout: config
            .db_statement_timeout
            .max(std::time::Duration::from_secs(30)),
    };
    let store = SqliteStore::connect(&url, &settings).await?;
    let copied = sqlx::query("VACUUM INTO ?")
        .bind(dest_str)
        .execute(store.pool())
        .await;
    store.close().await;
    copied?;
    check_copy(dest, dest_str).await
}

/// Opens the copy on its own and checks it is whole.
async fn check_copy(dest: &Path, dest_str: &str) -> Result<BackupReport> {
    let copy =
        SqliteStore::connect(&format!("sqlite://{dest_str}"), &PoolSettings::default()).await?;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(copy.pool())
        .await?;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(copy.pool())
        .await?;
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(copy.pool())
        .await?;
    copy.close().await;
    if integrity != "ok" {
        return Err(Error::msg(
            ErrorKind::Internal,
            format!("the copy failed its integrity check: {integrity}"),
        ));
    }
    let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        path: dest.to_path_buf(),
        bytes,
        users,
        sessions,
    })
}

#[cfg(test)]
mod tests {
    use super::sqlite_file;
    use std::path::PathBuf;

    #[test]
    fn sqlite_file_of_urls() {
        assert_eq!(
            sqlite_file("sqlite://meetinity.db"),
            Some(PathBuf::from("meetinity.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:///var/lib/a.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/a.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://x"), None);
    }
}
