//! The SQLite backend: the zero-configuration, single-node default.
//!
//! One file, WAL journal, `busy_timeout`, foreign keys on. Writers that read
//! before they write take the write lock up front (`BEGIN IMMEDIATE`), so
//! concurrent callers queue on the lock instead of failing a lock upgrade.
//! Timestamps are stored as fixed-width UTC text (`2026-12-04T15:22:27.000000Z`)
//! so that text order is time order. Case-insensitive matching (emails,
//! industry, location, skills) folds ASCII letters only.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::common::{
    fk_not_found, group_identities, search_words, Attempt, UserRow, IDENTITY_COLUMNS,
};
use super::PoolSettings;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    AuditQuery, IdentityLogin, IdentityOutcome, SocialAccount, User, UserQuery, UserSort,
};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// A store over one SQLite database, implementing every store seam.
///
/// ```no_run
/// # async fn demo() -> meetinity_auth::Result<()> {
/// use meetinity_auth::store::{PoolSettings, SqliteStore};
/// let store = SqliteStore::connect("sqlite://auth.db", &PoolSettings::default()).await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
}

/// The stored form of a timestamp: fixed-width UTC text, microseconds.
pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Whether a unique violation is the case-insensitive email index.
fn is_email_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.is_unique_violation() && db.message().contains("users.email"))
}

/// Maps an error of a user insert: a taken email is `email_taken`.
fn user_insert_error(e: sqlx::Error) -> Error {
    if is_email_violation(&e) {
        Error::new(ErrorKind::EmailTaken).with_source(e)
    } else {
        e.into()
    }
}

store_helpers!(SqliteStore, SqliteConnection);

store_basics!(SqliteStore, SqlitePool, MIGRATOR);

impl SqliteStore {
    /// Opens (creating if missing) the database at a `sqlite://path`,
    /// `sqlite:path` or `sqlite::memory:` URL.
    ///
    /// An in-memory database lives as long as the store and is served by one
    /// connection.
    pub async fn connect(url: &str, opts: &PoolSettings) -> Result<Self> {
        let url = url.trim();
        if !url.starts_with("sqlite:") {
            return Err(Error::msg(
                ErrorKind::Config,
                "a SQLite URL starts with `sqlite:`",
            ));
        }
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url).map_err(|e| {
            Error::msg(ErrorKind::Config, "invalid SQLite database URL").with_source(e)
        })?;
        Self::with_options(options, memory, opts).await
    }

    /// Opens (creating if missing) the database file at `path` with default
    /// pool settings.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let options = SqliteConnectOptions::new().filename(path.as_ref());
        Self::with_options(options, false, &PoolSettings::default()).await
    }

    async fn with_options(
        options: SqliteConnectOptions,
        memory: bool,
        opts: &PoolSettings,
    ) -> Result<Self> {
        let options = options
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(opts.statement_timeout)
            .journal_mode(if memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(SqliteSynchronous::Normal);
        let mut pool = SqlitePoolOptions::new().acquire_timeout(opts.acquire_timeout);
        pool = if memory {
            // The database disappears with its last connection: keep one.
            pool.max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            pool.max_connections(opts.max_connections.max(1))
        };
        let pool = pool.connect_with(options).await?;
        Ok(Self {
            pool,
            clock: Arc::new(SystemClock),
        })
    }

    /// Begins a transaction that writes: takes the write lock up front.
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// The social accounts of a page of users, by user id.
    async fn identities_for(
        conn: &mut SqliteConnection,
        rows: &[UserRow],
    ) -> Result<BTreeMap<String, Vec<SocialAccount>>> {
        let mut ids = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE user_id IN ("
        ));
        let mut list = ids.separated(", ");
        for row in rows {
            list.push_bind(row.id.clone());
        }
        ids.push(") ORDER BY created_at, provider, subject");
        Ok(group_identities(
            ids.build_query_as().fetch_all(&mut *conn).await?,
        ))
    }

    async fn try_upsert_identity(
        &self,
        login: &IdentityLogin,
        now: DateTime<Utc>,
    ) -> Result<Attempt<IdentityOutcome>> {
        let mut tx = self.begin_write().await?;

        let existing: Option<(String,)> =
            sqlx::query_as("SELECT user_id FROM identities WHERE provider = ? AND subject = ?")
                .bind(&login.provider)
                .bind(&login.subject)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((user_id,)) = existing {
            sqlx::query(
                "UPDATE identities SET last_login_at = ?, email = ?, email_verified = ? \
                 WHERE provider = ? AND subject = ?",
            )
            .bind(ts(now))
            .bind(&login.email)
            .bind(login.email_verified)
            .bind(&login.provider)
            .bind(&login.subject)
            .execute(&mut *tx)
            .await?;
            Self::fill_profile(&mut tx, &user_id, login, now).await?;
            let user = Self::user_must(&mut tx, &user_id).await?;
            tx.commit().await?;
            return Ok(Attempt::Done(IdentityOutcome {
                user,
                created: false,
                linked: false,
            }));
        }

        let by_email: Option<(String,)> = sqlx::query_as("SELECT id FROM users WHERE email = ?")
            .bind(&login.email)
            .fetch_optional(&mut *tx)
            .await?;
        let (user_id, created, linked) = match by_email {
            Some(_) if !login.email_verified => {
                return Err(Error::new(ErrorKind::EmailNotVerified));
            }
            Some((user_id,)) => {
                // The provider proved ownership of the account's address.
                sqlx::query("UPDATE users SET email_verified = 1, updated_at = ? WHERE id = ?")
                    .bind(ts(now))
                    .bind(&user_id)
                    .execute(&mut *tx)
                    .await?;
                Self::fill_profile(&mut tx, &user_id, login, now).await?;
                (user_id, false, true)
            }
            None => match Self::insert_social_user(&mut tx, login, now).await? {
                Attempt::Done(user_id) => (user_id, true, false),
                Attempt::Retry(e) => return Ok(Attempt::Retry(e)),
            },
        };

        if let Attempt::Retry(e) = Self::insert_identity(&mut tx, login, &user_id, now).await? {
            return Ok(Attempt::Retry(e));
        }
        let user = Self::user_must(&mut tx, &user_id).await?;
        tx.commit().await?;
        Ok(Attempt::Done(IdentityOutcome {
            user,
            created,
            linked,
        }))
    }
}

/// Appends the `FROM ... WHERE ...` of a user listing.
fn push_user_filters(qb: &mut QueryBuilder<'_, Sqlite>, q: &UserQuery) {
    qb.push(" FROM users u WHERE u.is_active = 1 AND u.erased_at IS NULL");
    // The columns collate NOCASE, so `=` ignores (ASCII) case.
    if let Some(industry) = q.industry.as_deref().map(str::trim) {
        qb.push(" AND u.industry = ").push_bind(industry.to_owned());
    }
    if let Some(location) = q.location.as_deref().map(str::trim) {
        qb.push(" AND u.location = ").push_bind(location.to_owned());
    }
    if let Some(min) = q.min_experience {
        qb.push(" AND u.experience_years >= ").push_bind(min);
    }
    if let Some(max) = q.max_experience {
        qb.push(" AND u.experience_years <= ").push_bind(max);
    }
    for skill in q.skills.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        qb.push(" AND EXISTS (SELECT 1 FROM json_each(u.skills) s WHERE lower(s.value) = lower(")
            .push_bind(skill.to_owned())
            .push("))");
    }
    let words = search_words(q.q.as_deref().unwrap_or_default());
    if !words.is_empty() {
        // Each word is a quoted prefix term; all must match.
        let fts: Vec<String> = words.iter().map(|w| format!("\"{w}\"*")).collect();
        qb.push(" AND u.rid IN (SELECT rowid FROM users_fts WHERE users_fts MATCH ")
            .push_bind(fts.join(" "))
            .push(")");
    }
    super::sqlite_profile::push_privacy_filters(qb, q);
}

fn user_order(sort: UserSort) -> &'static str {
    match sort {
        UserSort::CreatedDesc => " ORDER BY u.created_at DESC, u.id DESC",
        UserSort::CreatedAsc => " ORDER BY u.created_at ASC, u.id ASC",
        UserSort::NameAsc => " ORDER BY u.name ASC NULLS LAST, u.id ASC",
        UserSort::NameDesc => " ORDER BY u.name DESC NULLS LAST, u.id DESC",
        UserSort::ExperienceAsc => " ORDER BY u.experience_years ASC NULLS LAST, u.id ASC",
        UserSort::ExperienceDesc => " ORDER BY u.experience_years DESC NULLS LAST, u.id DESC",
    }
}

/// Appends the `FROM ... WHERE ...` of an audit listing.
fn push_audit_filters(qb: &mut QueryBuilder<'_, Sqlite>, q: &AuditQuery) {
    qb.push(" FROM audit_events WHERE 1 = 1");
    if let Some(user_id) = &q.user_id {
        qb.push(" AND user_id = ").push_bind(user_id.clone());
    }
    if let Some(event) = &q.event {
        qb.push(" AND event = ").push_bind(event.clone());
    }
    if let Some(since) = q.since {
        qb.push(" AND created_at >= ").push_bind(ts(since));
    }
    if let Some(until) = q.until {
        qb.push(" AND created_at < ").push_bind(ts(until));
    }
}

user_store!(SqliteStore, Sqlite {
    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>> {
        let mut conn = self.pool.acquire().await?;
        let id: Option<(String,)> = sqlx::query_as("SELECT id FROM users WHERE email = ?")
            .bind(email.trim())
            .fetch_optional(&mut *conn)
            .await?;
        match id {
            Some((id,)) => Self::user_in(&mut conn, &id).await,
            None => Ok(None),
        }
    }

    async fn unlink_identity(&self, user_id: &str, provider: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Self::unlink_in(&mut tx, user_id, provider).await?;
        tx.commit().await?;
        Ok(())
    }
});

session_store!(SqliteStore {
    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let now = ts(now.trunc_subsecs(6));
        let rows: Vec<(String,)> = sqlx::query_as(
            "UPDATE sessions SET revoked_at = ?1 \
             WHERE user_id = ?2 AND revoked_at IS NULL AND expires_at > ?1 \
               AND (?3 IS NULL OR id <> ?3) \
             RETURNING id",
        )
        .bind(&now)
        .bind(user_id)
        .bind(except)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
});

one_time_token_store!(SqliteStore);

audit_store!(SqliteStore);
