//! [`ProfileStore`] for [`PostgresStore`]. Read-modify-write paths lock the
//! user's row (`FOR UPDATE`) so that concurrent writers serialize.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};

use super::common::{
    is_foreign_key_violation, search_words, AuditRow, SessionRow, AUDIT_COLUMNS, SESSION_COLUMNS,
};
use super::profile::{
    connections, status_str, ConnectionChange, ConnectionRow, Erasure, PreferencesEdit,
    ProfileStore, CONNECTION_COLUMNS,
};
use super::PostgresStore;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{AuditEvent, Connection, Page, Session, UserQuery};

/// Timestamps are stored to the microsecond, as PostgreSQL keeps them.
fn us(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// The fields the listing filters of `q` match, for
/// [`UserQuery::public_fields_only`].
fn filtered_fields(q: &UserQuery) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if q.industry.is_some() {
        fields.push("industry");
    }
    if q.location.is_some() {
        fields.push("location");
    }
    if q.min_experience.is_some() || q.max_experience.is_some() {
        fields.push("experience_years");
    }
    if q.skills.iter().any(|s| !s.trim().is_empty()) {
        fields.push("skills");
    }
    fields
}

/// Appends the privacy conditions of a listing (see
/// [`UserQuery::public_fields_only`]) to its `WHERE`.
pub(super) fn push_privacy_filters(qb: &mut QueryBuilder<'_, Postgres>, q: &UserQuery) {
    if !q.public_fields_only {
        return;
    }
    for field in filtered_fields(q) {
        qb.push(format_args!(
            " AND coalesce(u.privacy_settings ->> '{field}', 'public') = 'public'"
        ));
    }
    if !search_words(q.q.as_deref().unwrap_or_default()).is_empty() {
        qb.push(
            " AND NOT EXISTS (SELECT 1 FROM jsonb_each_text(u.privacy_settings) p \
             WHERE p.key IN ('name', 'title', 'company', 'skills', 'bio') \
             AND p.value <> 'public')",
        );
    }
}

fn fk_not_found(e: sqlx::Error) -> Error {
    if is_foreign_key_violation(&e) {
        Error::new(ErrorKind::NotFound).with_source(e)
    } else {
        e.into()
    }
}

#[async_trait]
impl ProfileStore for PostgresStore {
    async fn update_preferences(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
        edit: &PreferencesEdit<'_>,
    ) -> Result<BTreeMap<String, serde_json::Value>> {
        let mut tx = self.pool().begin().await?;
        let row: Option<(Json<BTreeMap<String, serde_json::Value>>,)> =
            sqlx::query_as("SELECT preferences FROM users WHERE id = $1 FOR UPDATE")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((Json(mut prefs),)) = row else {
            return Err(Error::new(ErrorKind::NotFound));
        };
        edit(&mut prefs)?;
        sqlx::query("UPDATE users SET preferences = $1, updated_at = $2 WHERE id = $3")
            .bind(Json(&prefs))
            .bind(us(now))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(prefs)
    }

    async fn create_connection(&self, c: &Connection) -> Result<()> {
        sqlx::query(
            "INSERT INTO connections (id, user_id, target_user_id, external_reference, \
             connection_type, status, attributes, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&c.id)
        .bind(&c.user_id)
        .bind(&c.target_user_id)
        .bind(&c.external_reference)
        .bind(&c.connection_type)
        .bind(status_str(c.status))
        .bind(Json(&c.attributes))
        .bind(us(c.created_at))
        .bind(us(c.updated_at))
        .execute(self.pool())
        .await
        .map_err(fk_not_found)?;
        Ok(())
    }

    async fn get_connection(&self, id: &str) -> Result<Option<Connection>> {
        let row: Option<ConnectionRow> = sqlx::query_as(&format!(
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
        change: &ConnectionChange,
        now: DateTime<Utc>,
    ) -> Result<Connection> {
        let mut qb = QueryBuilder::<Postgres>::new("UPDATE connections SET updated_at = ");
        qb.push_bind(us(now));
        if let Some(status) = change.status {
            qb.push(", status = ").push_bind(status_str(status));
        }
        if let Some(attributes) = &change.attributes {
            qb.push(", attributes = ")
                .push_bind(Json(attributes.clone()));
        }
        qb.push(" WHERE id = ").push_bind(id.to_owned());
        qb.push(format_args!(" RETURNING {CONNECTION_COLUMNS}"));
        let row: Option<ConnectionRow> = qb.build_query_as().fetch_optional(self.pool()).await?;
        row.ok_or_else(|| Error::new(ErrorKind::NotFound))?
            .into_connection()
    }

    async fn delete_connection(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM connections WHERE id = $1")
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
    ) -> Result<Page<Connection>> {
        let mut conn = self.pool().acquire().await?;
        let (total,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM connections WHERE user_id = $1 OR target_user_id = $1",
        )
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await?;
        let rows: Vec<ConnectionRow> = sqlx::query_as(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections \
             WHERE user_id = $1 OR target_user_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(user_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
        Ok(Page {
            items: connections(rows)?,
            total,
        })
    }

    async fn accepted_connections(&self, user_id: &str, among: &[String]) -> Result<Vec<String>> {
        if among.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT CASE WHEN user_id = $1 THEN target_user_id ELSE user_id END \
             FROM connections WHERE status = 'accepted' \
             AND ((user_id = $1 AND target_user_id = ANY($2)) \
               OR (target_user_id = $1 AND user_id = ANY($2)))",
        )
        .bind(user_id)
        .bind(among)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn all_sessions(&self, user_id: &str) -> Result<Vec<Session>> {
        let rows: Vec<SessionRow> = sqlx::query_as(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 \
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(Session::from).collect())
    }

    async fn user_audit_events(&self, user_id: &str) -> Result<Vec<AuditEvent>> {
        let rows: Vec<AuditRow> = sqlx::query_as(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE user_id = $1 OR actor_id = $1 \
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(AuditEvent::from).collect())
    }

    async fn erase_user(&self, user_id: &str, e: &Erasure) -> Result<Option<Vec<String>>> {
        let mut tx = self.pool().begin().await?;
        let erased: Option<(bool,)> =
            sqlx::query_as("SELECT erased_at IS NOT NULL FROM users WHERE id = $1 FOR UPDATE")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        match erased {
            None => return Err(Error::new(ErrorKind::NotFound)),
            Some((true,)) => return Ok(None),
            Some((false,)) => {}
        }
        sqlx::query(
            "UPDATE users SET email = $1, name = $2, photo_url = NULL, title = NULL, \
             company = NULL, location = NULL, industry = NULL, linkedin_url = NULL, \
             experience_years = NULL, bio = NULL, timezone = NULL, skills = '[]'::jsonb, \
             interests = '[]'::jsonb, privacy_settings = '{}'::jsonb, \
             preferences = '{}'::jsonb, roles = '[]'::jsonb, is_active = FALSE, \
             last_login = NULL, last_active_at = NULL, login_count = 0, \
             erased_at = $3, scheduled_purge_at = $4, updated_at = $3 WHERE id = $5",
        )
        .bind(&e.email)
        .bind(&e.name)
        .bind(us(e.at))
        .bind(us(e.purge_at))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        // Refresh tokens go with their sessions (ON DELETE CASCADE).
        let sessions: Vec<(String,)> =
            sqlx::query_as("DELETE FROM sessions WHERE user_id = $1 RETURNING id")
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
        for sql in [
            "DELETE FROM identities WHERE user_id = $1",
            "DELETE FROM password_credentials WHERE user_id = $1",
            "DELETE FROM one_time_tokens WHERE user_id = $1",
            "DELETE FROM connections WHERE user_id = $1 OR target_user_id = $1",
            "UPDATE audit_events SET ip = NULL, user_agent = NULL \
             WHERE user_id = $1 OR actor_id = $1",
        ] {
            sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(Some(sessions.into_iter().map(|(id,)| id).collect()))
    }

    async fn users_due_for_purge(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM users \
             WHERE scheduled_purge_at IS NOT NULL AND scheduled_purge_at <= $1 \
             ORDER BY scheduled_purge_at, id LIMIT $2",
        )
        .bind(us(now))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn purge_user(&self, user_id: &str, now: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM users WHERE id = $1 \
             AND scheduled_purge_at IS NOT NULL AND scheduled_purge_at <= $2",
        )
        .bind(user_id)
        .bind(us(now))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn purge_audit_before(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM audit_events WHERE created_at < $1")
            .bind(us(cutoff))
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
