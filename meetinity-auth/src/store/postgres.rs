//! The PostgreSQL backend: the source of truth for multi-instance
//! deployments.
//!
//! Every connection carries `statement_timeout`; with
//! [`PostgresStore::connect_in_schema`] also a `search_path`, which isolates
//! tests (and tenants) in their own schema. Emails are unique on
//! `lower(email)`; search uses a generated `tsvector` with a GIN index.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{ConnectOptions, Connection, Postgres, QueryBuilder};

use super::common::{
    fk_not_found, group_identities, is_unique_violation, search_words, Attempt, IdentityRow,
    UserRow, IDENTITY_COLUMNS,
};
use super::PoolSettings;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    AuditQuery, IdentityLogin, IdentityOutcome, SocialAccount, User, UserQuery, UserSort,
};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// The name of the case-insensitive unique index on `users.email`.
const EMAIL_INDEX: &str = "users_email_lower_key";

/// A store over one PostgreSQL database (or one schema of it), implementing
/// every store seam.
///
/// ```no_run
/// # async fn demo() -> meetinity_auth::Result<()> {
/// use meetinity_auth::store::{PoolSettings, PostgresStore};
/// let store =
///     PostgresStore::connect("postgres://auth@db/auth", &PoolSettings::default()).await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    clock: Arc<dyn Clock>,
}

/// The stored form of a timestamp: to the microsecond, as PostgreSQL keeps
/// them.
pub(super) fn ts(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// Accepts `postgres://`, `postgresql://` and driver-qualified schemes such
/// as `postgresql+psycopg://`; returns a `postgresql://` URL.
fn normalize_url(url: &str) -> Result<String> {
    let url = url.trim();
    let bad = || Error::msg(ErrorKind::Config, "not a PostgreSQL URL (postgres://...)");
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let base = scheme.split_once('+').map_or(scheme, |(base, _)| base);
    if !base.eq_ignore_ascii_case("postgres") && !base.eq_ignore_ascii_case("postgresql") {
        return Err(bad());
    }
    Ok(format!("postgresql://{rest}"))
}

/// A schema name safe to use unquoted: `[a-z_][a-z0-9_]*`, at most 63 bytes.
fn check_schema(schema: &str) -> Result<()> {
    let mut chars = schema.chars();
    let ok = schema.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::msg(
            ErrorKind::Config,
            "a schema name is lower-case letters, digits and `_` (at most 63)",
        ))
    }
}

/// Whether a unique violation is the case-insensitive email index.
fn is_email_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.is_unique_violation() && db.constraint() == Some(EMAIL_INDEX))
}

/// Maps an error of a user insert: a taken email is `email_taken`.
fn user_insert_error(e: sqlx::Error) -> Error {
    if is_email_violation(&e) {
        Error::new(ErrorKind::EmailTaken).with_source(e)
    } else {
        e.into()
    }
}

store_helpers!(PostgresStore, PgConnection);

store_basics!(PostgresStore, PgPool, MIGRATOR);

impl PostgresStore {
    /// Connects to a `postgres://`, `postgresql://` or
    /// `postgresql+<driver>://` URL.
    pub async fn connect(url: &str, opts: &PoolSettings) -> Result<Self> {
        let options = Self::options(url, opts)?;
        Self::with_options(options, opts).await
    }

    /// Connects with every connection's `search_path` set to `schema`,
    /// creating the schema if missing. Tables, including the migrations
    /// table, then live in that schema: one schema per test isolates tests.
    pub async fn connect_in_schema(url: &str, schema: &str, opts: &PoolSettings) -> Result<Self> {
        check_schema(schema)?;
        let options = Self::options(url, opts)?;
        let mut conn = PgConnection::connect_with(&options).await?;
        let created = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .execute(&mut conn)
            .await;
        // A concurrent creator may win the race on the catalog: that is fine.
        match created {
            Err(e) if !is_unique_violation(&e) => return Err(e.into()),
            _ => {}
        }
        conn.close().await?;
        Self::with_options(options.options([("search_path", schema)]), opts).await
    }

    fn options(url: &str, opts: &PoolSettings) -> Result<PgConnectOptions> {
        let url = normalize_url(url)?;
        let options = PgConnectOptions::from_str(&url).map_err(|e| {
            Error::msg(ErrorKind::Config, "invalid PostgreSQL database URL").with_source(e)
        })?;
        let timeout_ms = opts.statement_timeout.as_millis().to_string();
        Ok(options
            .options([("statement_timeout", timeout_ms)])
            .disable_statement_logging())
    }

    async fn with_options(options: PgConnectOptions, opts: &PoolSettings) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            clock: Arc::new(SystemClock),
        })
    }

    /// Begins a transaction that writes: a plain `BEGIN`; writers lock the rows they change.
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, Postgres>> {
        self.pool.begin().await
    }

    /// The social accounts of a page of users, by user id.
    async fn identities_for(
        conn: &mut PgConnection,
        rows: &[UserRow],
    ) -> Result<BTreeMap<String, Vec<SocialAccount>>> {
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let found: Vec<IdentityRow> = sqlx::query_as(&format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE user_id = ANY($1) \
             ORDER BY created_at, provider, subject"
        ))
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
        Ok(group_identities(found))
    }

    async fn try_upsert_identity(
        &self,
        login: &IdentityLogin,
        now: DateTime<Utc>,
    ) -> Result<Attempt<IdentityOutcome>> {
        let mut tx = self.begin_write().await?;

        let existing: Option<(String,)> = sqlx::query_as(
            "UPDATE identities SET last_login_at = $1, email = $2, email_verified = $3 \
             WHERE provider = $4 AND subject = $5 RETURNING user_id",
        )
        .bind(now)
        .bind(&login.email)
        .bind(login.email_verified)
        .bind(&login.provider)
        .bind(&login.subject)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((user_id,)) = existing {
            Self::fill_profile(&mut tx, &user_id, login, now).await?;
            let user = Self::user_must(&mut tx, &user_id).await?;
            tx.commit().await?;
            return Ok(Attempt::Done(IdentityOutcome {
                user,
                created: false,
                linked: false,
            }));
        }

        // Lock the matching user, so that linking and unlinking serialize.
        let by_email: Option<(String,)> =
            sqlx::query_as("SELECT id FROM users WHERE lower(email) = lower($1) FOR UPDATE")
                .bind(&login.email)
                .fetch_optional(&mut *tx)
                .await?;
        let (user_id, created, linked) = match by_email {
            Some(_) if !login.email_verified => {
                return Err(Error::new(ErrorKind::EmailNotVerified));
            }
            Some((user_id,)) => {
                // The provider proved ownership of the account's address.
                sqlx::query(
                    "UPDATE users SET email_verified = TRUE, updated_at = $1 WHERE id = $2",
                )
                .bind(now)
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
fn push_user_filters(qb: &mut QueryBuilder<'_, Postgres>, q: &UserQuery) {
    qb.push(" FROM users u WHERE u.is_active AND u.erased_at IS NULL");
    if let Some(industry) = q.industry.as_deref().map(str::trim) {
        qb.push(" AND lower(u.industry) = lower(")
            .push_bind(industry.to_owned())
            .push(")");
    }
    if let Some(location) = q.location.as_deref().map(str::trim) {
        qb.push(" AND lower(u.location) = lower(")
            .push_bind(location.to_owned())
            .push(")");
    }
    if let Some(min) = q.min_experience {
        qb.push(" AND u.experience_years >= ").push_bind(min);
    }
    if let Some(max) = q.max_experience {
        qb.push(" AND u.experience_years <= ").push_bind(max);
    }
    let skills: Vec<String> = q
        .skills
        .iter()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if !skills.is_empty() {
        // Matches the GIN index on the lower-cased skills.
        qb.push(" AND (lower(u.skills::text)::jsonb) @> ")
            .push_bind(Json(skills));
    }
    let words = search_words(q.q.as_deref().unwrap_or_default());
    if !words.is_empty() {
        // Each word is a prefix term; all must match.
        let terms: Vec<String> = words.iter().map(|w| format!("{w}:*")).collect();
        qb.push(" AND u.search @@ to_tsquery('simple'::regconfig, ")
            .push_bind(terms.join(" & "))
            .push(")");
    }
    super::postgres_profile::push_privacy_filters(qb, q);
}

fn user_order(sort: UserSort) -> &'static str {
    match sort {
        UserSort::CreatedDesc => " ORDER BY u.created_at DESC, u.id DESC",
        UserSort::CreatedAsc => " ORDER BY u.created_at ASC, u.id ASC",
        UserSort::NameAsc => " ORDER BY lower(u.name) ASC NULLS LAST, u.id ASC",
        UserSort::NameDesc => " ORDER BY lower(u.name) DESC NULLS LAST, u.id DESC",
        UserSort::ExperienceAsc => " ORDER BY u.experience_years ASC NULLS LAST, u.id ASC",
        UserSort::ExperienceDesc => " ORDER BY u.experience_years DESC NULLS LAST, u.id DESC",
    }
}

/// Appends the `FROM ... WHERE ...` of an audit listing.
fn push_audit_filters(qb: &mut QueryBuilder<'_, Postgres>, q: &AuditQuery) {
    qb.push(" FROM audit_events WHERE TRUE");
    if let Some(user_id) = &q.user_id {
        qb.push(" AND user_id = ").push_bind(user_id.clone());
    }
    if let Some(event) = &q.event {
        qb.push(" AND event = ").push_bind(event.clone());
    }
    if let Some(since) = q.since {
        qb.push(" AND created_at >= ").push_bind(since);
    }
    if let Some(until) = q.until {
        qb.push(" AND created_at < ").push_bind(until);
    }
}

user_store!(PostgresStore, Postgres {
    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>> {
        let mut conn = self.pool.acquire().await?;
        let id: Option<(String,)> =
            sqlx::query_as("SELECT id FROM users WHERE lower(email) = lower($1)")
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
        // Lock the user: concurrent unlinks must not remove both last methods.
        let user: Option<(String,)> =
            sqlx::query_as("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        if user.is_none() {
            return Err(Error::new(ErrorKind::NotFound));
        }
        Self::unlink_in(&mut tx, user_id, provider).await?;
        tx.commit().await?;
        Ok(())
    }
});

session_store!(PostgresStore {
    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "UPDATE sessions SET revoked_at = $1 \
             WHERE user_id = $2 AND revoked_at IS NULL AND expires_at > $1 \
               AND ($3::text IS NULL OR id <> $3) \
             RETURNING id",
        )
        .bind(now.trunc_subsecs(6))
        .bind(user_id)
        .bind(except)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
});

one_time_token_store!(PostgresStore);

audit_store!(PostgresStore);
