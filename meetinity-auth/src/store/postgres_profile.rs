//! [`ProfileStore`](super::ProfileStore) for [`PostgresStore`].
//! Read-modify-write paths lock the user's row (`FOR UPDATE`) so that
//! concurrent writers serialize.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};

use super::common::{filtered_fields, fk_not_found, search_words};
use super::postgres::ts;
use super::profile::{Erasure, PreferencesEdit};
use super::PostgresStore;
use crate::error::{Error, ErrorKind, Result};
use crate::model::UserQuery;

/// "Every searched field is public": the condition that a search by a
/// caller who is not an admin adds, written exactly as the predicate of the
/// partial index `users_public_search_idx` (migration 0004), so that the
/// planner can prove the query implies it and use that index. A missing key
/// and a JSON `null` are public.
const SEARCHED_FIELDS_PUBLIC: &str = "\
    coalesce(u.privacy_settings ->> 'name', 'public') = 'public' \
    AND coalesce(u.privacy_settings ->> 'title', 'public') = 'public' \
    AND coalesce(u.privacy_settings ->> 'company', 'public') = 'public' \
    AND coalesce(u.privacy_settings ->> 'skills', 'public') = 'public' \
    AND coalesce(u.privacy_settings ->> 'bio', 'public') = 'public'";

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
        qb.push(" AND ").push(SEARCHED_FIELDS_PUBLIC);
    }
}

profile_store!(PostgresStore, Postgres {
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
        .bind(ts(e.at))
        .bind(ts(e.purge_at))
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
});

#[cfg(test)]
mod tests {
    /// The privacy condition of a search is the predicate of the partial
    /// index, clause for clause: were they to drift apart, the planner could
    /// no longer use the index and would check every match (a slow search,
    /// not a wrong one, so no other test would notice).
    #[test]
    fn the_search_privacy_condition_is_the_index_predicate() {
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let migration = squash(include_str!(
            "../../migrations/postgres/0004_users_public_search_index.up.sql"
        ));
        let condition = squash(&super::SEARCHED_FIELDS_PUBLIC.replace("u.", ""));
        let predicate = format!("WHERE is_active AND erased_at IS NULL AND {condition};");
        assert!(migration.contains(&predicate), "{predicate}");
    }
}
