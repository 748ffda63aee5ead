//! Code shared by the SQL backends, stamped onto each store by macros.
//!
//! The backends keep one impl each behind the store traits; what is the same
//! in both (the inherent plumbing and the trait methods whose SQL is portable)
//! is written once here and expanded per backend. Portable SQL uses `$N`
//! placeholders, which both drivers accept.

/// Stamps the inherent methods every SQL store has: `with_clock`, `migrate`,
/// `undo_last_migration`, `pool`, `close` and the private `now`.
///
/// The store must have the fields `pool: $pool` and `clock: Arc<dyn Clock>`.
macro_rules! store_basics {
    ($store:ident, $pool:ty, $migrator:path) => {
        impl $store {
            /// Uses `clock` for the timestamps the store sets itself
            /// (`created_at`, `updated_at`).
            pub fn with_clock(mut self, clock: ::std::sync::Arc<dyn $crate::clock::Clock>) -> Self {
                self.clock = clock;
                self
            }

            /// Applies the pending migrations (idempotent).
            pub async fn migrate(&self) -> $crate::error::Result<()> {
                $migrator.run(&self.pool).await?;
                Ok(())
            }

            /// Reverts the newest applied migration; returns its version, or
            /// `None` when none is applied.
            pub async fn undo_last_migration(&self) -> $crate::error::Result<Option<i64>> {
                use ::sqlx::migrate::Migrate as _;
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
                $migrator.undo(&self.pool, target).await?;
                Ok(Some(last))
            }

            /// The connection pool.
            pub fn pool(&self) -> &$pool {
                &self.pool
            }

            /// Closes the pool, waiting for connections in use to be returned.
            pub async fn close(&self) {
                self.pool.close().await;
            }

            fn now(&self) -> ::chrono::DateTime<::chrono::Utc> {
                use ::chrono::SubsecRound as _;
                self.clock.now().trunc_subsecs(6)
            }
        }
    };
}

/// Stamps `SessionStore` onto a store: the shared methods plus the ones the
/// backend writes itself (`$own`, here `revoke_user_sessions`).
///
/// Expects in the expanding module: `ts` (a timestamp's stored form),
/// `fk_not_found`, `Self::begin_write` and `Self::session_in`.
macro_rules! session_store {
    ($store:ty { $($own:tt)* }) => {
        #[::async_trait::async_trait]
        impl $crate::store::SessionStore for $store {
            async fn create_session(
                &self,
                session: &$crate::model::Session,
                refresh_hash: &str,
            ) -> $crate::error::Result<()> {
                let mut tx = self.begin_write().await?;
                ::sqlx::query(
                    "INSERT INTO sessions (id, user_id, method, created_at, last_used_at, \
                     expires_at, ip, user_agent, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
                ::sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, session_id, created_at) \
                     VALUES ($1, $2, $3)",
                )
                .bind(refresh_hash)
                .bind(&session.id)
                .bind(ts(session.created_at))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_session(
                &self,
                id: &str,
            ) -> $crate::error::Result<Option<$crate::model::Session>> {
                let mut conn = self.pool.acquire().await?;
                Self::session_in(&mut conn, id).await
            }

            async fn rotate_refresh(
                &self,
                old_hash: &str,
                new_hash: &str,
                successor_sealed: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::error::Result<$crate::model::Rotation> {
                use $crate::model::Rotation;
                use $crate::store::common::{
                    RefreshRow, SessionRow, REFRESH_COLUMNS, SESSION_COLUMNS,
                };
                let now = ts(now);
                // Writers queue on the write lock (SQLite) or the row lock
                // (PostgreSQL); once the winner commits, `rotated_at IS NULL`
                // no longer holds for the others.
                let mut tx = self.begin_write().await?;
                let rotated: Option<(String,)> = ::sqlx::query_as(
                    "UPDATE refresh_tokens SET rotated_at = $1, successor_sealed = $2 \
                     WHERE token_hash = $3 AND rotated_at IS NULL RETURNING session_id",
                )
                .bind(&now)
                .bind(successor_sealed)
                .bind(old_hash)
                .fetch_optional(&mut *tx)
                .await?;

                if let Some((session_id,)) = rotated {
                    ::sqlx::query(
                        "INSERT INTO refresh_tokens (token_hash, session_id, created_at) \
                         VALUES ($1, $2, $3)",
                    )
                    .bind(new_hash)
                    .bind(&session_id)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                    let session: SessionRow = ::sqlx::query_as(&format!(
                        "UPDATE sessions SET last_used_at = $1 WHERE id = $2 \
                         RETURNING {SESSION_COLUMNS}"
                    ))
                    .bind(&now)
                    .bind(&session_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    return Ok(Rotation::Rotated(session.into()));
                }

                let record: Option<RefreshRow> = ::sqlx::query_as(&format!(
                    "SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = $1"
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

            async fn revoke_session(
                &self,
                id: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::error::Result<bool> {
                let done = ::sqlx::query(
                    "UPDATE sessions SET revoked_at = $1 \
                     WHERE id = $2 AND revoked_at IS NULL AND expires_at > $1",
                )
                .bind(ts(now))
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn list_sessions(
                &self,
                user_id: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::error::Result<Vec<$crate::model::Session>> {
                use $crate::store::common::{SessionRow, SESSION_COLUMNS};
                let rows: Vec<SessionRow> = ::sqlx::query_as(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions \
                     WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
                     ORDER BY created_at DESC, id DESC"
                ))
                .bind(user_id)
                .bind(ts(now))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map($crate::model::Session::from).collect())
            }

            $($own)*
        }
    };
}

/// Stamps `OneTimeTokenStore` onto a store.
///
/// Expects in the expanding module: `ts` and `fk_not_found`.
macro_rules! one_time_token_store {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl $crate::store::OneTimeTokenStore for $store {
            async fn create_one_time(
                &self,
                token_hash: &str,
                purpose: $crate::model::OneTimePurpose,
                user_id: &str,
                expires_at: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::error::Result<()> {
                ::sqlx::query(
                    "INSERT INTO one_time_tokens (hash, purpose, user_id, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(token_hash)
                .bind(purpose.as_str())
                .bind(user_id)
                .bind(ts(expires_at))
                .execute(&self.pool)
                .await
                .map_err(fk_not_found)?;
                Ok(())
            }

            async fn consume_one_time(
                &self,
                token_hash: &str,
                purpose: $crate::model::OneTimePurpose,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::error::Result<Option<String>> {
                let user: Option<(String,)> = ::sqlx::query_as(
                    "UPDATE one_time_tokens SET used_at = $1 \
                     WHERE hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 \
                     RETURNING user_id",
                )
                .bind(ts(now))
                .bind(token_hash)
                .bind(purpose.as_str())
                .fetch_optional(&self.pool)
                .await?;
                Ok(user.map(|(u,)| u))
            }
        }
    };
}

/// Stamps `AuditStore` onto a store.
///
/// Expects in the expanding module: `ts` and `push_audit_filters`.
macro_rules! audit_store {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl $crate::store::AuditStore for $store {
            async fn record(&self, event: &$crate::model::AuditEvent) -> $crate::error::Result<()> {
                ::sqlx::query(
                    "INSERT INTO audit_events (id, event, actor_id, user_id, outcome, method, \
                     detail, ip, user_agent, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
                .bind(ts(event.created_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_events(
                &self,
                query: &$crate::model::AuditQuery,
            ) -> $crate::error::Result<$crate::model::Page<$crate::model::AuditEvent>> {
                use $crate::store::common::{page_window, AuditRow, AUDIT_COLUMNS, MAX_AUDIT_PAGE};
                let (limit, offset) = page_window(query.page, query.per_page, MAX_AUDIT_PAGE);
                let mut conn = self.pool.acquire().await?;

                let mut count = ::sqlx::QueryBuilder::new("SELECT COUNT(*)");
                push_audit_filters(&mut count, query);
                let (total,): (i64,) = count.build_query_as().fetch_one(&mut *conn).await?;

                let mut select = ::sqlx::QueryBuilder::new(format!("SELECT {AUDIT_COLUMNS}"));
                push_audit_filters(&mut select, query);
                select.push(" ORDER BY created_at DESC, id DESC LIMIT ");
                select.push_bind(limit).push(" OFFSET ").push_bind(offset);
                let rows: Vec<AuditRow> = select.build_query_as().fetch_all(&mut *conn).await?;
                Ok($crate::model::Page {
                    items: rows
                        .into_iter()
                        .map($crate::model::AuditEvent::from)
                        .collect(),
                    total,
                    total_exact: true,
                })
            }
        }
    };
}

/// Stamps the private row helpers every SQL store uses: `identities_of`,
/// `user_in`, `user_must`, `fill_profile`, `insert_social_user`,
/// `insert_identity`, `unlink_in` and `session_in`, over the
/// backend's connection type.
///
/// Expects in the expanding module: `ts`.
macro_rules! store_helpers {
    ($store:ident, $conn:ty) => {
        impl $store {
            async fn identities_of(
                conn: &mut $conn,
                user_id: &str,
            ) -> $crate::error::Result<Vec<$crate::model::SocialAccount>> {
                use $crate::store::common::{IdentityRow, IDENTITY_COLUMNS};
                let rows: Vec<IdentityRow> = ::sqlx::query_as(&format!(
                    "SELECT {IDENTITY_COLUMNS} FROM identities WHERE user_id = $1 \
                     ORDER BY created_at, provider, subject"
                ))
                .bind(user_id)
                .fetch_all(&mut *conn)
                .await?;
                Ok(rows.into_iter().map(IdentityRow::into_account).collect())
            }

            async fn user_in(
                conn: &mut $conn,
                id: &str,
            ) -> $crate::error::Result<Option<$crate::model::User>> {
                use $crate::store::common::{UserRow, USER_COLUMNS};
                let row: Option<UserRow> = ::sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1"
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

            async fn user_must(
                conn: &mut $conn,
                id: &str,
            ) -> $crate::error::Result<$crate::model::User> {
                Self::user_in(conn, id)
                    .await?
                    .ok_or_else(|| $crate::error::Error::new($crate::error::ErrorKind::NotFound))
            }

            /// Fills the user's empty name and picture from a provider login.
            async fn fill_profile(
                conn: &mut $conn,
                user_id: &str,
                login: &$crate::model::IdentityLogin,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::error::Result<()> {
                for (column, value) in [("name", &login.name), ("photo_url", &login.picture)] {
                    let Some(value) = value.as_deref().filter(|v| !v.trim().is_empty()) else {
                        continue;
                    };
                    ::sqlx::query(&format!(
                        "UPDATE users SET {column} = $1, updated_at = $2 \
                         WHERE id = $3 AND ({column} IS NULL OR {column} = '')"
                    ))
                    .bind(value)
                    .bind(ts(now))
                    .bind(user_id)
                    .execute(&mut *conn)
                    .await?;
                }
                Ok(())
            }

            /// Removes the user's `provider` identity, unless it is the last
            /// way to sign in (no other identity, no password).
            async fn unlink_in(
                conn: &mut $conn,
                user_id: &str,
                provider: &str,
            ) -> $crate::error::Result<()> {
                use $crate::error::{Error, ErrorKind};
                let (this, others, has_password): (i64, i64, bool) = ::sqlx::query_as(
                    "SELECT \
                       (SELECT COUNT(*) FROM identities WHERE user_id = $1 AND provider = $2), \
                       (SELECT COUNT(*) FROM identities WHERE user_id = $1 AND provider <> $2), \
                       EXISTS (SELECT 1 FROM password_credentials WHERE user_id = $1)",
                )
                .bind(user_id)
                .bind(provider)
                .fetch_one(&mut *conn)
                .await?;
                if this == 0 {
                    return Err(Error::new(ErrorKind::NotFound));
                }
                if others == 0 && !has_password {
                    return Err(Error::new(ErrorKind::LastSignInMethod));
                }
                ::sqlx::query("DELETE FROM identities WHERE user_id = $1 AND provider = $2")
                    .bind(user_id)
                    .bind(provider)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            /// Inserts a `users` row (and nothing else) with id `id`.
            async fn insert_user(
                conn: &mut $conn,
                id: &str,
                user: &$crate::model::NewUser,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> ::sqlx::Result<()> {
                ::sqlx::query(
                    "INSERT INTO users (id, email, email_verified, name, photo_url, provider, \
                     roles, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                )
                .bind(id)
                .bind(&user.email)
                .bind(user.email_verified)
                .bind(&user.name)
                .bind(&user.photo_url)
                .bind(&user.provider)
                .bind(::sqlx::types::Json(&user.roles))
                .bind(ts(now))
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            /// Inserts the user of a first social sign-in and returns its id;
            /// `Retry` when a concurrent sign-in created the email first.
            async fn insert_social_user(
                conn: &mut $conn,
                login: &$crate::model::IdentityLogin,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::error::Result<$crate::store::common::Attempt<String>> {
                use $crate::store::common::{is_unique_violation, new_id, Attempt};
                let user_id = new_id();
                let user = $crate::model::NewUser {
                    email: login.email.clone(),
                    email_verified: login.email_verified,
                    name: login.name.clone(),
                    photo_url: login.picture.clone(),
                    provider: login.provider.clone(),
                    roles: login.roles.clone(),
                };
                match Self::insert_user(conn, &user_id, &user, now).await {
                    Err(e) if is_unique_violation(&e) => Ok(Attempt::Retry(e)),
                    Err(e) => Err(e.into()),
                    Ok(()) => Ok(Attempt::Done(user_id)),
                }
            }

            /// Links the login's identity to `user_id`; `Retry` when a
            /// concurrent sign-in linked it first.
            async fn insert_identity(
                conn: &mut $conn,
                login: &$crate::model::IdentityLogin,
                user_id: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::error::Result<$crate::store::common::Attempt<()>> {
                use $crate::store::common::{is_unique_violation, Attempt};
                let inserted = ::sqlx::query(
                    "INSERT INTO identities (provider, subject, user_id, email, email_verified, \
                     created_at, last_login_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
                )
                .bind(&login.provider)
                .bind(&login.subject)
                .bind(user_id)
                .bind(&login.email)
                .bind(login.email_verified)
                .bind(ts(now))
                .execute(&mut *conn)
                .await;
                match inserted {
                    Err(e) if is_unique_violation(&e) => Ok(Attempt::Retry(e)),
                    Err(e) => Err(e.into()),
                    Ok(_) => Ok(Attempt::Done(())),
                }
            }

            async fn session_in(
                conn: &mut $conn,
                id: &str,
            ) -> $crate::error::Result<Option<$crate::model::Session>> {
                use $crate::store::common::{SessionRow, SESSION_COLUMNS};
                let row: Option<SessionRow> = ::sqlx::query_as(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
                Ok(row.map($crate::model::Session::from))
            }
        }
    };
}

/// Stamps `UserStore` onto a store over the database `$db`: the shared
/// methods plus the ones the backend writes itself (`$own`:
/// `get_user_by_email` and `unlink_identity`).
///
/// Expects in the expanding module: `ts`, `fk_not_found`, `user_insert_error`,
/// `push_user_filters`, `user_order`, `Self::begin_write`,
/// `Self::try_upsert_identity`, `Self::identities_for` (the social accounts
/// of a page of users) and the helpers of `store_helpers!`.
macro_rules! user_store {
    ($store:ty, $db:ty { $($own:tt)* }) => {
        #[::async_trait::async_trait]
        impl $crate::store::UserStore for $store {
            async fn create_user(
                &self,
                user: &$crate::model::NewUser,
                password_hash: Option<&str>,
            ) -> $crate::error::Result<$crate::model::User> {
                let now = self.now();
                let id = $crate::store::common::new_id();
                let mut tx = self.begin_write().await?;
                Self::insert_user(&mut tx, &id, user, now)
                    .await
                    .map_err(user_insert_error)?;
                if let Some(hash) = password_hash {
                    ::sqlx::query(
                        "INSERT INTO password_credentials \
                         (user_id, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $3)",
                    )
                    .bind(&id)
                    .bind(hash)
                    .bind(ts(now))
                    .execute(&mut *tx)
                    .await?;
                }
                let created = Self::user_must(&mut tx, &id).await?;
                tx.commit().await?;
                Ok(created)
            }

            async fn get_user(
                &self,
                id: &str,
            ) -> $crate::error::Result<Option<$crate::model::User>> {
                let mut conn = self.pool.acquire().await?;
                Self::user_in(&mut conn, id).await
            }

            async fn update_user(
                &self,
                id: &str,
                patch: &$crate::model::UserPatch,
            ) -> $crate::error::Result<$crate::model::User> {
                use ::sqlx::types::Json;
                let mut qb = ::sqlx::QueryBuilder::<$db>::new("UPDATE users SET updated_at = ");
                qb.push_bind(ts(self.now()));
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

                let mut tx = self.begin_write().await?;
                let done = qb.build().execute(&mut *tx).await?;
                if done.rows_affected() == 0 {
                    return Err($crate::error::Error::new($crate::error::ErrorKind::NotFound));
                }
                let user = Self::user_must(&mut tx, id).await?;
                tx.commit().await?;
                Ok(user)
            }

            async fn delete_user(&self, id: &str) -> $crate::error::Result<bool> {
                let done = ::sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn record_login(
                &self,
                id: &str,
                at: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::error::Result<()> {
                let done = ::sqlx::query(
                    "UPDATE users SET last_login = $1, last_active_at = $1, \
                     login_count = login_count + 1 WHERE id = $2",
                )
                .bind(ts(at))
                .bind(id)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::error::Error::new($crate::error::ErrorKind::NotFound));
                }
                Ok(())
            }

            async fn upsert_identity(
                &self,
                login: &$crate::model::IdentityLogin,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::error::Result<$crate::model::IdentityOutcome> {
                use ::chrono::SubsecRound as _;
                use $crate::error::{Error, ErrorKind};
                use $crate::store::common::{Attempt, UPSERT_ATTEMPTS};
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

            async fn list_identities(
                &self,
                user_id: &str,
            ) -> $crate::error::Result<Vec<$crate::model::SocialAccount>> {
                let mut conn = self.pool.acquire().await?;
                Self::identities_of(&mut conn, user_id).await
            }

            async fn password_hash(&self, user_id: &str) -> $crate::error::Result<Option<String>> {
                let hash: Option<(String,)> = ::sqlx::query_as(
                    "SELECT password_hash FROM password_credentials WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(hash.map(|(h,)| h))
            }

            async fn set_password_hash(
                &self,
                user_id: &str,
                hash: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::error::Result<()> {
                ::sqlx::query(
                    "INSERT INTO password_credentials \
                     (user_id, password_hash, created_at, updated_at) \
                     VALUES ($1, $2, $3, $3) ON CONFLICT (user_id) DO UPDATE \
                     SET password_hash = excluded.password_hash, updated_at = excluded.updated_at",
                )
                .bind(user_id)
                .bind(hash)
                .bind(ts(now))
                .execute(&self.pool)
                .await
                .map_err(fk_not_found)?;
                Ok(())
            }

            async fn remove_password(&self, user_id: &str) -> $crate::error::Result<()> {
                ::sqlx::query("DELETE FROM password_credentials WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn list_users(
                &self,
                query: &$crate::model::UserQuery,
            ) -> $crate::error::Result<$crate::model::Page<$crate::model::User>> {
                use $crate::store::common::{
                    page_window, search_words, UserRow, MAX_USER_PAGE, USER_COLUMNS,
                };
                let (limit, offset) = page_window(query.page, query.per_page, MAX_USER_PAGE);
                let cap = query.count_limit.map(|c| i64::try_from(c).unwrap_or(i64::MAX));
                if let Some(cap) = query.count_limit {
                    if u64::try_from(offset).unwrap_or(u64::MAX) >= cap {
                        return Err($crate::store::common::page_past_count_limit(cap));
                    }
                }
                let mut conn = self.pool.acquire().await?;

                // Every statement here is planned for its values each time
                // (`persistent(false)`): a cached generic plan, made without
                // knowing the words of `q`, would serve a common word with the
                // plan of a rare one (a bitmap of every match) or the reverse.
                let mut rows: Option<Vec<UserRow>> = None;
                let mut counted: Option<(i64, bool)> = None;
                let searching = !search_words(query.q.as_deref().unwrap_or_default()).is_empty();
                if let (Some(cap), true) = (cap, searching) {
                    // A search takes its first `cap` + 1 matches at once.
                    // When that is all of them, the page is sorted among them
                    // and the search (its index scan, the main cost of a rare
                    // word) runs once, not once for the page and once for the
                    // count. Past `cap`, only the count is kept.
                    #[derive(::sqlx::FromRow)]
                    struct Counted {
                        #[sqlx(flatten)]
                        row: UserRow,
                        matches: i64,
                    }
                    let mut first = ::sqlx::QueryBuilder::<$db>::new(format!(
                        "WITH m AS MATERIALIZED (SELECT {USER_COLUMNS}"
                    ));
                    push_user_filters(&mut first, query);
                    first.push(" LIMIT ").push_bind(cap.saturating_add(1));
                    first.push(format!(
                        ") SELECT {USER_COLUMNS}, (SELECT COUNT(*) FROM m) AS matches FROM m u"
                    ));
                    first.push(user_order(query.sort));
                    first.push(" LIMIT ").push_bind(limit);
                    first.push(" OFFSET ").push_bind(offset);
                    let found: Vec<Counted> = first
                        .build_query_as()
                        .persistent(false)
                        .fetch_all(&mut *conn)
                        .await?;
                    match found.first().map(|c| c.matches) {
                        Some(n) if n <= cap => {
                            counted = Some((n, true));
                            rows = Some(found.into_iter().map(|c| c.row).collect());
                        }
                        Some(_) => counted = Some((cap, false)),
                        None if offset == 0 => {
                            counted = Some((0, true));
                            rows = Some(Vec::new());
                        }
                        // A page past the last match: counted below.
                        None => {}
                    }
                }

                let rows = match rows {
                    Some(rows) => rows,
                    None => {
                        let mut select =
                            ::sqlx::QueryBuilder::<$db>::new(format!("SELECT {USER_COLUMNS}"));
                        push_user_filters(&mut select, query);
                        select.push(user_order(query.sort));
                        select.push(" LIMIT ").push_bind(limit);
                        select.push(" OFFSET ").push_bind(offset);
                        select
                            .build_query_as()
                            .persistent(false)
                            .fetch_all(&mut *conn)
                            .await?
                    }
                };

                let seen = offset.saturating_add(i64::try_from(rows.len()).unwrap_or(i64::MAX));
                let (total, total_exact) = match counted {
                    Some(counted) => counted,
                    // A short page is the last one: it tells the total.
                    None if seen < offset.saturating_add(limit)
                        && (offset == 0 || !rows.is_empty()) =>
                    {
                        (seen, true)
                    }
                    None => {
                        // Counts at most `cap` + 1 matches: the work is
                        // bounded however many users match.
                        let mut count =
                            ::sqlx::QueryBuilder::<$db>::new("SELECT COUNT(*) FROM (SELECT 1");
                        push_user_filters(&mut count, query);
                        if let Some(cap) = cap {
                            count.push(" LIMIT ").push_bind(cap.saturating_add(1));
                        }
                        count.push(") AS matches");
                        let (n,): (i64,) = count
                            .build_query_as()
                            .persistent(false)
                            .fetch_one(&mut *conn)
                            .await?;
                        match cap {
                            Some(cap) if n > cap => (cap, false),
                            _ => (n, true),
                        }
                    }
                };

                let mut accounts = if rows.is_empty() {
                    Default::default()
                } else {
                    Self::identities_for(&mut conn, &rows).await?
                };
                let items = rows
                    .into_iter()
                    .map(|row| {
                        let linked = accounts.remove(&row.id).unwrap_or_default();
                        row.into_user(linked)
                    })
                    .collect();
                Ok($crate::model::Page {
                    items,
                    total,
                    total_exact,
                })
            }

            async fn ping(&self) -> $crate::error::Result<()> {
                ::sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            $($own)*
        }
    };
}

/// Stamps `ProfileStore` onto a store over the database `$db`: the shared
/// methods plus the ones the backend writes itself (`$own`:
/// `update_preferences`, `accepted_connections` and `erase_user`).
///
/// Expects in the expanding module: `ts` and `fk_not_found`.
macro_rules! profile_store {
    ($store:ty, $db:ty { $($own:tt)* }) => {
        #[::async_trait::async_trait]
        impl $crate::store::ProfileStore for $store {
            async fn create_connection(
                &self,
                c: &$crate::model::Connection,
            ) -> $crate::error::Result<()> {
                ::sqlx::query(
                    "INSERT INTO connections (id, user_id, target_user_id, external_reference, \
                     connection_type, status, attributes, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&c.id)
                .bind(&c.user_id)
                .bind(&c.target_user_id)
                .bind(&c.external_reference)
                .bind(&c.connection_type)
                .bind($crate::store::profile::status_str(c.status))
                .bind(::sqlx::types::Json(&c.attributes))
                .bind(ts(c.created_at))
                .bind(ts(c.updated_at))
                .execute(self.pool())
                .await
                .map_err(fk_not_found)?;
                Ok(())
            }

            async fn get_connection(
                &self,
                id: &str,
            ) -> $crate::error::Result<Option<$crate::model::Connection>> {
                use $crate::store::profile::{ConnectionRow, CONNECTION_COLUMNS};
                let row: Option<ConnectionRow> = ::sqlx::query_as(&format!(
                    "SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
                row.map(ConnectionRow::into_connection).transpose()
            }

            async fn update_connection(
                &self,
                id: &str,
                change: &$crate::store::ConnectionChange,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::error::Result<$crate::model::Connection> {
                use $crate::store::profile::{status_str, ConnectionRow, CONNECTION_COLUMNS};
                let mut qb =
                    ::sqlx::QueryBuilder::<$db>::new("UPDATE connections SET updated_at = ");
                qb.push_bind(ts(now));
                if let Some(status) = change.status {
                    qb.push(", status = ").push_bind(status_str(status));
                }
                if let Some(attributes) = &change.attributes {
                    qb.push(", attributes = ")
                        .push_bind(::sqlx::types::Json(attributes.clone()));
                }
                qb.push(" WHERE id = ").push_bind(id.to_owned());
                qb.push(format_args!(" RETURNING {CONNECTION_COLUMNS}"));
                let row: Option<ConnectionRow> =
                    qb.build_query_as().fetch_optional(self.pool()).await?;
                row.ok_or_else(|| $crate::error::Error::new($crate::error::ErrorKind::NotFound))?
                    .into_connection()
            }

            async fn delete_connection(&self, id: &str) -> $crate::error::Result<bool> {
                let done = ::sqlx::query("DELETE FROM connections WHERE id = $1")
                    .bind(id)
                    .execute(self.pool())
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn list_connections(
                &self,
                user_id: &str,
                limit: i64,
                offset: i64,
            ) -> $crate::error::Result<$crate::model::Page<$crate::model::Connection>> {
                use $crate::store::profile::{connections, ConnectionRow, CONNECTION_COLUMNS};
                let mut conn = self.pool().acquire().await?;
                let (total,): (i64,) = ::sqlx::query_as(
                    "SELECT COUNT(*) FROM connections WHERE user_id = $1 OR target_user_id = $1",
                )
                .bind(user_id)
                .fetch_one(&mut *conn)
                .await?;
                let rows: Vec<ConnectionRow> = ::sqlx::query_as(&format!(
                    "SELECT {CONNECTION_COLUMNS} FROM connections \
                     WHERE user_id = $1 OR target_user_id = $1 \
                     ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
                ))
                .bind(user_id)
                .bind(limit)
                .bind(offset)
                .fetch_all(&mut *conn)
                .await?;
                Ok($crate::model::Page {
                    items: connections(rows)?,
                    total,
                    total_exact: true,
                })
            }

            async fn all_sessions(
                &self,
                user_id: &str,
            ) -> $crate::error::Result<Vec<$crate::model::Session>> {
                use $crate::store::common::{SessionRow, SESSION_COLUMNS};
                let rows: Vec<SessionRow> = ::sqlx::query_as(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 \
                     ORDER BY created_at DESC, id DESC"
                ))
                .bind(user_id)
                .fetch_all(self.pool())
                .await?;
                Ok(rows.into_iter().map($crate::model::Session::from).collect())
            }

            async fn user_audit_events(
                &self,
                user_id: &str,
            ) -> $crate::error::Result<Vec<$crate::model::AuditEvent>> {
                use $crate::store::common::{AuditRow, AUDIT_COLUMNS};
                let rows: Vec<AuditRow> = ::sqlx::query_as(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE user_id = $1 OR actor_id = $1 \
                     ORDER BY created_at DESC, id DESC"
                ))
                .bind(user_id)
                .fetch_all(self.pool())
                .await?;
                Ok(rows.into_iter().map($crate::model::AuditEvent::from).collect())
            }

            async fn users_due_for_purge(
                &self,
                now: ::chrono::DateTime<::chrono::Utc>,
                limit: i64,
            ) -> $crate::error::Result<Vec<String>> {
                let rows: Vec<(String,)> = ::sqlx::query_as(
                    "SELECT id FROM users \
                     WHERE scheduled_purge_at IS NOT NULL AND scheduled_purge_at <= $1 \
                     ORDER BY scheduled_purge_at, id LIMIT $2",
                )
                .bind(ts(now))
                .bind(limit)
                .fetch_all(self.pool())
                .await?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            async fn purge_user(
                &self,
                user_id: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::error::Result<bool> {
                let done = ::sqlx::query(
                    "DELETE FROM users WHERE id = $1 \
                     AND scheduled_purge_at IS NOT NULL AND scheduled_purge_at <= $2",
                )
                .bind(user_id)
                .bind(ts(now))
                .execute(self.pool())
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn purge_audit_before(
                &self,
                cutoff: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::error::Result<u64> {
                let done = ::sqlx::query("DELETE FROM audit_events WHERE created_at < $1")
                    .bind(ts(cutoff))
                    .execute(self.pool())
                    .await?;
                Ok(done.rows_affected())
            }

            $($own)*
        }
    };
}
