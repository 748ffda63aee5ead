//! The SQLite backend: the zero-configuration, single-node default.
//!
//! One file, WAL journal, `busy_timeout`, foreign keys on. Writers that read
//! before they write take the write lock up front (`BEGIN IMMEDIATE`), so
//! concurrent callers queue on the lock instead of failing a lock upgrade.
//! Timestamps are stored as fixed-width UTC text (`2026-12-04T15:22:27.000000Z`)
//! so that text order is time order. Case-insensitive matching (emails,
//! industry, location, skills) folds ASCII letters only.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use sqlx::migrate::{Migrate, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::common::{
    group_identities, is_foreign_key_violation, is_unique_violation, new_id, page_window,
    search_words, AuditRow, IdentityRow, RefreshRow, SessionRow, UserRow, AUDIT_COLUMNS,
    IDENTITY_COLUMNS, MAX_AUDIT_PAGE, MAX_USER_PAGE, REFRESH_COLUMNS, SESSION_COLUMNS,
    UPSERT_ATTEMPTS, USER_COLUMNS,
};
use super::{AuditStore, OneTimeTokenStore, PoolSettings, SessionStore, UserStore};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    AuditEvent, AuditQuery, IdentityLogin, IdentityOutcome, NewUser, OneTimePurpose, Page,
    Rotation, Session, SocialAccount, User, UserPatch, UserQuery, UserSort,
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
fn ts(t: DateTime<Utc>) -> String {
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

/// Maps a foreign-key violation (unknown user or session) to `not_found`.
fn fk_not_found(e: sqlx::Error) -> Error {
    if is_foreign_key_violation(&e) {
        Error::new(ErrorKind::NotFound).with_source(e)
    } else {
        e.into()
    }
}

/// One attempt of a retried operation.
enum Attempt<T> {
    Done(T),
    Retry(sqlx::Error),
}

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

    /// Uses `clock` for the timestamps the store sets itself (`created_at`,
    /// `updated_at`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Applies the pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Reverts the newest applied migration; returns its version, or `None`
    /// when none is applied.
    pub async fn undo_last_migration(&self) -> Result<Option<i64>> {
        let mut conn = self.pool.acquire().await?;
        conn.ensure_migrations_table().await?;
        let mut versions: Vec<i64> = conn
            .list_applied_migrations()
            .await?
            .iter()
            .map(|m| m.version)
            .collect();
        drop(conn);
        versions.sort_unstable();
        let Some(last) = versions.pop() else {
            return Ok(None);
        };
        let target = versions.pop().unwrap_or(0);
        MIGRATOR.undo(&self.pool, target).await?;
        Ok(Some(last))
    }

    /// The connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now().trunc_subsecs(6)
    }

    async fn identities_of(
        conn: &mut SqliteConnection,
        user_id: &str,
    ) -> Result<Vec<SocialAccount>> {
        let rows: Vec<IdentityRow> = sqlx::query_as(&format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE user_id = ? \
             ORDER BY created_at, provider, subject"
        ))
        .bind(user_id)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows.into_iter().map(IdentityRow::into_account).collect())
    }

    async fn user_in(conn: &mut SqliteConnection, id: &str) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?"
        ))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(row) => {
                let accounts = Self::identities_of(conn, &row.id).await?;
                Ok(Some(row.into_user(accounts)))
            }
            None => Ok(None),
        }
    }

    async fn user_must(conn: &mut SqliteConnection, id: &str) -> Result<User> {
        Self::user_in(conn, id)
            .await?
            .ok_or_else(|| Error::new(ErrorKind::NotFound))
    }

    /// Fills the user's empty name and picture from a provider login.
    async fn fill_profile(
        conn: &mut SqliteConnection,
        user_id: &str,
        login: &IdentityLogin,
        now: DateTime<Utc>,
    ) -> Result<()> {
        for (column, value) in [("name", &login.name), ("photo_url", &login.picture)] {
            let Some(value) = value.as_deref().filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            sqlx::query(&format!(
                "UPDATE users SET {column} = ?, updated_at = ? \
                 WHERE id = ? AND ({column} IS NULL OR {column} = '')"
            ))
            .bind(value)
            .bind(ts(now))
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    async fn try_upsert_identity(
        &self,
        login: &IdentityLogin,
        now: DateTime<Utc>,
    ) -> Result<Attempt<IdentityOutcome>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;

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
            None => {
                let user_id = new_id();
                let inserted = sqlx::query(
                    "INSERT INTO users (id, email, email_verified, name, photo_url, provider, \
                     roles, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&user_id)
                .bind(&login.email)
                .bind(login.email_verified)
                .bind(&login.name)
                .bind(&login.picture)
                .bind(&login.provider)
                .bind(Json(&login.roles))
                .bind(ts(now))
                .bind(ts(now))
                .execute(&mut *tx)
                .await;
                match inserted {
                    Err(e) if is_unique_violation(&e) => return Ok(Attempt::Retry(e)),
                    other => other?,
                };
                (user_id, true, false)
            }
        };

        let inserted = sqlx::query(
            "INSERT INTO identities (provider, subject, user_id, email, email_verified, \
             created_at, last_login_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&login.provider)
        .bind(&login.subject)
        .bind(&user_id)
        .bind(&login.email)
        .bind(login.email_verified)
        .bind(ts(now))
        .bind(ts(now))
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Ok(Attempt::Retry(e)),
            other => other?,
        };
        let user = Self::user_must(&mut tx, &user_id).await?;
        tx.commit().await?;
        Ok(Attempt::Done(IdentityOutcome {
            user,
            created,
            linked,
        }))
    }

    async fn session_in(conn: &mut SqliteConnection, id: &str) -> Result<Option<Session>> {
        let row: Option<SessionRow> = sqlx::query_as(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(Session::from))
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

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &NewUser, password_hash: Option<&str>) -> Result<User> {
        let now = self.now();
        let id = new_id();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO users (id, email, email_verified, name, photo_url, provider, roles, \
             created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(&user.email)
        .bind(user.email_verified)
        .bind(&user.name)
        .bind(&user.photo_url)
        .bind(&user.provider)
        .bind(Json(&user.roles))
        .bind(ts(now))
        .bind(ts(now))
        .execute(&mut *tx)
        .await
        .map_err(user_insert_error)?;
        if let Some(hash) = password_hash {
            sqlx::query(
                "INSERT INTO password_credentials (user_id, password_hash, created_at, updated_at) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(&id)
            .bind(hash)
            .bind(ts(now))
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
        }
        let created = Self::user_must(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>> {
        let mut conn = self.pool.acquire().await?;
        Self::user_in(&mut conn, id).await
    }

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

    async fn update_user(&self, id: &str, patch: &UserPatch) -> Result<User> {
        let now = self.now();
        let mut qb = QueryBuilder::<Sqlite>::new("UPDATE users SET updated_at = ");
        qb.push_bind(ts(now));
        let texts = [
            ("name", &patch.name),
            ("photo_url", &patch.photo_url),
            ("title", &patch.title),
            ("company", &patch.company),
            ("location", &patch.location),
            ("industry", &patch.industry),
            ("linkedin_url", &patch.linkedin_url),
            ("bio", &patch.bio),
            ("timezone", &patch.timezone),
        ];
        for (column, value) in texts {
            if let Some(value) = value {
                qb.push(format_args!(", {column} = "))
                    .push_bind(value.clone());
            }
        }
        if let Some(years) = patch.experience_years {
            qb.push(", experience_years = ").push_bind(years);
        }
        for (column, value) in [
            ("skills", &patch.skills),
            ("interests", &patch.interests),
            ("roles", &patch.roles),
        ] {
            if let Some(value) = value {
                qb.push(format_args!(", {column} = "))
                    .push_bind(Json(value.clone()));
            }
        }
        if let Some(privacy) = &patch.privacy_settings {
            qb.push(", privacy_settings = ")
                .push_bind(Json(privacy.clone()));
        }
        if let Some(prefs) = &patch.preferences {
            qb.push(", preferences = ").push_bind(Json(prefs.clone()));
        }
        if let Some(verified) = patch.email_verified {
            qb.push(", email_verified = ").push_bind(verified);
        }
        if let Some(active) = patch.is_active {
            qb.push(", is_active = ").push_bind(active);
        }
        qb.push(" WHERE id = ").push_bind(id.to_owned());

        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = qb.build().execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(Error::new(ErrorKind::NotFound));
        }
        let user = Self::user_must(&mut tx, id).await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn delete_user(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_login(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        let at = ts(at.trunc_subsecs(6));
        let done = sqlx::query(
            "UPDATE users SET last_login = ?, last_active_at = ?, login_count = login_count + 1 \
             WHERE id = ?",
        )
        .bind(&at)
        .bind(&at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::new(ErrorKind::NotFound));
        }
        Ok(())
    }

    async fn upsert_identity(
        &self,
        login: &IdentityLogin,
        now: DateTime<Utc>,
    ) -> Result<IdentityOutcome> {
        let now = now.trunc_subsecs(6);
        let mut last = None;
        for _ in 0..UPSERT_ATTEMPTS {
            match self.try_upsert_identity(login, now).await? {
                Attempt::Done(outcome) => return Ok(outcome),
                Attempt::Retry(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(|| Error::new(ErrorKind::Conflict), Error::from))
    }

    async fn list_identities(&self, user_id: &str) -> Result<Vec<SocialAccount>> {
        let mut conn = self.pool.acquire().await?;
        Self::identities_of(&mut conn, user_id).await
    }

    async fn unlink_identity(&self, user_id: &str, provider: &str) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let (this, others, has_password): (i64, i64, bool) = sqlx::query_as(
            "SELECT \
               (SELECT COUNT(*) FROM identities WHERE user_id = ?1 AND provider = ?2), \
               (SELECT COUNT(*) FROM identities WHERE user_id = ?1 AND provider <> ?2), \
               EXISTS (SELECT 1 FROM password_credentials WHERE user_id = ?1)",
        )
        .bind(user_id)
        .bind(provider)
        .fetch_one(&mut *tx)
        .await?;
        if this == 0 {
            return Err(Error::new(ErrorKind::NotFound));
        }
        if others == 0 && !has_password {
            return Err(Error::new(ErrorKind::LastSignInMethod));
        }
        sqlx::query("DELETE FROM identities WHERE user_id = ? AND provider = ?")
            .bind(user_id)
            .bind(provider)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn password_hash(&self, user_id: &str) -> Result<Option<String>> {
        let hash: Option<(String,)> =
            sqlx::query_as("SELECT password_hash FROM password_credentials WHERE user_id = ?")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(hash.map(|(h,)| h))
    }

    async fn set_password_hash(&self, user_id: &str, hash: &str, now: DateTime<Utc>) -> Result<()> {
        let now = ts(now.trunc_subsecs(6));
        sqlx::query(
            "INSERT INTO password_credentials (user_id, password_hash, created_at, updated_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE \
             SET password_hash = excluded.password_hash, updated_at = excluded.updated_at",
        )
        .bind(user_id)
        .bind(hash)
        .bind(&now)
        .bind(&now)
        .execute(&self.pool)
        .await
        .map_err(fk_not_found)?;
        Ok(())
    }

    async fn remove_password(&self, user_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM password_credentials WHERE user_id = ?")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_users(&self, query: &UserQuery) -> Result<Page<User>> {
        let (limit, offset) = page_window(query.page, query.per_page, MAX_USER_PAGE);
        let mut conn = self.pool.acquire().await?;

        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*)");
        push_user_filters(&mut count, query);
        let (total,): (i64,) = count.build_query_as().fetch_one(&mut *conn).await?;

        let mut select = QueryBuilder::<Sqlite>::new(format!("SELECT {USER_COLUMNS}"));
        push_user_filters(&mut select, query);
        select.push(user_order(query.sort));
        select.push(" LIMIT ").push_bind(limit);
        select.push(" OFFSET ").push_bind(offset);
        let rows: Vec<UserRow> = select.build_query_as().fetch_all(&mut *conn).await?;

        let mut accounts = if rows.is_empty() {
            Default::default()
        } else {
            let mut ids = QueryBuilder::<Sqlite>::new(format!(
                "SELECT {IDENTITY_COLUMNS} FROM identities WHERE user_id IN ("
            ));
            let mut list = ids.separated(", ");
            for row in &rows {
                list.push_bind(row.id.clone());
            }
            ids.push(") ORDER BY created_at, provider, subject");
            group_identities(ids.build_query_as().fetch_all(&mut *conn).await?)
        };
        let items = rows
            .into_iter()
            .map(|row| {
                let linked = accounts.remove(&row.id).unwrap_or_default();
                row.into_user(linked)
            })
            .collect();
        Ok(Page { items, total })
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, session: &Session, refresh_hash: &str) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, method, created_at, last_used_at, expires_at, \
             ip, user_agent, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&session.id)
        .bind(&session.user_id)
        .bind(&session.method)
        .bind(ts(session.created_at))
        .bind(ts(session.last_used_at))
        .bind(ts(session.expires_at))
        .bind(&session.ip)
        .bind(&session.user_agent)
        .bind(session.revoked_at.map(ts))
        .execute(&mut *tx)
        .await
        .map_err(fk_not_found)?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES (?, ?, ?)",
        )
        .bind(refresh_hash)
        .bind(&session.id)
        .bind(ts(session.created_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>> {
        let mut conn = self.pool.acquire().await?;
        Self::session_in(&mut conn, id).await
    }

    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        successor_sealed: &str,
        now: DateTime<Utc>,
    ) -> Result<Rotation> {
        let now = ts(now.trunc_subsecs(6));
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rotated: Option<(String,)> = sqlx::query_as(
            "UPDATE refresh_tokens SET rotated_at = ?, successor_sealed = ? \
             WHERE token_hash = ? AND rotated_at IS NULL RETURNING session_id",
        )
        .bind(&now)
        .bind(successor_sealed)
        .bind(old_hash)
        .fetch_optional(&mut *tx)
        .await?;

        if let Some((session_id,)) = rotated {
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES (?, ?, ?)",
            )
            .bind(new_hash)
            .bind(&session_id)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            let session: SessionRow = sqlx::query_as(&format!(
                "UPDATE sessions SET last_used_at = ? WHERE id = ? RETURNING {SESSION_COLUMNS}"
            ))
            .bind(&now)
            .bind(&session_id)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Rotation::Rotated(session.into()));
        }

        let record: Option<RefreshRow> = sqlx::query_as(&format!(
            "SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = ?"
        ))
        .bind(old_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match record {
            Some(record) => match Self::session_in(&mut tx, &record.session_id).await? {
                Some(session) => Rotation::AlreadyRotated(record.into(), session),
                None => Rotation::Unknown,
            },
            None => Rotation::Unknown,
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn revoke_session(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let now = ts(now.trunc_subsecs(6));
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = ?1 \
             WHERE id = ?2 AND revoked_at IS NULL AND expires_at > ?1",
        )
        .bind(&now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

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

    async fn list_sessions(&self, user_id: &str, now: DateTime<Utc>) -> Result<Vec<Session>> {
        let rows: Vec<SessionRow> = sqlx::query_as(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions \
             WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? \
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(user_id)
        .bind(ts(now.trunc_subsecs(6)))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Session::from).collect())
    }
}

#[async_trait]
impl OneTimeTokenStore for SqliteStore {
    async fn create_one_time(
        &self,
        token_hash: &str,
        purpose: OneTimePurpose,
        user_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO one_time_tokens (hash, purpose, user_id, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(purpose.as_str())
        .bind(user_id)
        .bind(ts(expires_at.trunc_subsecs(6)))
        .execute(&self.pool)
        .await
        .map_err(fk_not_found)?;
        Ok(())
    }

    async fn consume_one_time(
        &self,
        token_hash: &str,
        purpose: OneTimePurpose,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        let now = ts(now.trunc_subsecs(6));
        let user: Option<(String,)> = sqlx::query_as(
            "UPDATE one_time_tokens SET used_at = ?1 \
             WHERE hash = ?2 AND purpose = ?3 AND used_at IS NULL AND expires_at > ?1 \
             RETURNING user_id",
        )
        .bind(&now)
        .bind(token_hash)
        .bind(purpose.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(user.map(|(u,)| u))
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record(&self, event: &AuditEvent) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_events (id, event, actor_id, user_id, outcome, method, detail, \
             ip, user_agent, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&event.id)
        .bind(&event.event)
        .bind(&event.actor_id)
        .bind(&event.user_id)
        .bind(&event.outcome)
        .bind(&event.method)
        .bind(&event.detail)
        .bind(&event.ip)
        .bind(&event.user_agent)
        .bind(ts(event.created_at.trunc_subsecs(6)))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_events(&self, query: &AuditQuery) -> Result<Page<AuditEvent>> {
        let (limit, offset) = page_window(query.page, query.per_page, MAX_AUDIT_PAGE);
        let mut conn = self.pool.acquire().await?;

        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*)");
        push_audit_filters(&mut count, query);
        let (total,): (i64,) = count.build_query_as().fetch_one(&mut *conn).await?;

        let mut select = QueryBuilder::<Sqlite>::new(format!("SELECT {AUDIT_COLUMNS}"));
        push_audit_filters(&mut select, query);
        select.push(" ORDER BY created_at DESC, id DESC LIMIT ");
        select.push_bind(limit).push(" OFFSET ").push_bind(offset);
        let rows: Vec<AuditRow> = select.build_query_as().fetch_all(&mut *conn).await?;
        Ok(Page {
            items: rows.into_iter().map(AuditEvent::from).collect(),
            total,
        })
    }
}
