//! [`ProfileStore`](super::ProfileStore) for [`SqliteStore`]. Writers that
//! read first take the write lock up front (`BEGIN IMMEDIATE`), as in the
//! rest of the backend.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Sqlite};

use super::common::{filtered_fields, fk_not_found, search_words};
use super::profile::{Erasure, PreferencesEdit};
use super::sqlite::ts;
use super::SqliteStore;
use crate::error::{Error, ErrorKind, Result};
use crate::model::UserQuery;

/// Appends the privacy conditions of a listing (see
/// [`UserQuery::public_fields_only`]) to its `WHERE`.
pub(super) fn push_privacy_filters(qb: &mut QueryBuilder<'_, Sqlite>, q: &UserQuery) {
    if !q.public_fields_only {
        return;
    }
    for field in filtered_fields(q) {
        qb.push(format_args!(
            " AND coalesce(json_extract(u.privacy_settings, '$.{field}'), 'public') = 'public'"
        ));
    }
    if !search_words(q.q.as_deref().unwrap_or_default()).is_empty() {
        qb.push(
            " AND NOT EXISTS (SELECT 1 FROM json_each(u.privacy_settings) p \
             WHERE p.key IN ('name', 'title', 'company', 'skills', 'bio') \
             AND p.value <> 'public')",
        );
    }
}

profile_store!(SqliteStore, Sqlite {
    async fn update_preferences(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
        edit: &PreferencesEdit<'_>,
    ) -> Result<BTreeMap<String, serde_json::Value>> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let row: Option<(Json<BTreeMap<String, serde_json::Value>>,)> =
            sqlx::query_as("SELECT preferences FROM users WHERE id = ?")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((Json(mut prefs),)) = row else {
            return Err(Error::new(ErrorKind::NotFound));
        };
        edit(&mut prefs)?;
        sqlx::query("UPDATE users SET preferences = ?, updated_at = ? WHERE id = ?")
            .bind(Json(&prefs))
            .bind(ts(now))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(prefs)
    }

    async fn accepted_connections(&self, user_id: &str, among: &[String]) -> Result<Vec<String>> {
        if among.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT other FROM (SELECT CASE WHEN user_id = ");
        qb.push_bind(user_id.to_owned())
            .push(
                " THEN target_user_id ELSE user_id END AS other FROM connections \
                   WHERE status = 'accepted' AND (user_id = ",
            )
            .push_bind(user_id.to_owned())
            .push(" OR target_user_id = ")
            .push_bind(user_id.to_owned())
            .push(")) WHERE other IN (");
        let mut list = qb.separated(", ");
        for id in among {
            list.push_bind(id.clone());
        }
        qb.push(")");
        let rows: Vec<(String,)> = qb.build_query_as().fetch_all(self.pool()).await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn erase_user(&self, user_id: &str, e: &Erasure) -> Result<Option<Vec<String>>> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let erased: Option<(bool,)> =
            sqlx::query_as("SELECT erased_at IS NOT NULL FROM users WHERE id = ?")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        match erased {
            None => return Err(Error::new(ErrorKind::NotFound)),
            Some((true,)) => return Ok(None),
            Some((false,)) => {}
        }
        sqlx::query(
            "UPDATE users SET email = ?, name = ?, photo_url = NULL, title = NULL, \
             company = NULL, location = NULL, industry = NULL, linkedin_url = NULL, \
             experience_years = NULL, bio = NULL, timezone = NULL, skills = '[]', \
             interests = '[]', privacy_settings = '{}', preferences = '{}', roles = '[]', \
             is_active = 0, last_login = NULL, last_active_at = NULL, login_count = 0, \
             erased_at = ?, scheduled_purge_at = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&e.email)
        .bind(&e.name)
        .bind(ts(e.at))
        .bind(ts(e.purge_at))
        .bind(ts(e.at))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        // Refresh tokens go with their sessions (ON DELETE CASCADE).
        let sessions: Vec<(String,)> =
            sqlx::query_as("DELETE FROM sessions WHERE user_id = ?1 RETURNING id")
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
        for sql in [
            "DELETE FROM identities WHERE user_id = ?1",
            "DELETE FROM password_credentials WHERE user_id = ?1",
            "DELETE FROM one_time_tokens WHERE user_id = ?1",
            "DELETE FROM connections WHERE user_id = ?1 OR target_user_id = ?1",
            "UPDATE audit_events SET ip = NULL, user_agent = NULL \
             WHERE user_id = ?1 OR actor_id = ?1",
        ] {
            sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
        }
        // Deleting from FTS5 writes the old terms as delete markers; merging
        // the index drops them, so the erased words leave the database now.
        sqlx::query("INSERT INTO users_fts (users_fts) VALUES ('optimize')")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(sessions.into_iter().map(|(id,)| id).collect()))
    }
});
