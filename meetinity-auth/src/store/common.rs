//! Row types and helpers shared by the SQL backends (no SQL here: each
//! backend writes its own queries).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::error::{Error, ErrorKind};
use crate::model::{
    AuditEvent, RefreshRecord, Session, SocialAccount, User, UserQuery, Visibility,
};

/// Page size when the caller asks for none.
pub(crate) const DEFAULT_PER_PAGE: u32 = 20;
/// Largest user-listing page.
pub(crate) const MAX_USER_PAGE: u32 = 100;
/// Largest audit-listing page.
pub(crate) const MAX_AUDIT_PAGE: u32 = 1000;
/// How many times `upsert_identity` retries after losing a creation race.
pub(crate) const UPSERT_ATTEMPTS: usize = 8;

/// `(limit, offset)` of a 1-based page; page 0 is page 1, size 0 the default.
pub(crate) fn page_window(page: u32, per_page: u32, max: u32) -> (i64, i64) {
    let per = if per_page == 0 {
        DEFAULT_PER_PAGE.min(max)
    } else {
        per_page.min(max)
    };
    let page = i64::from(page.max(1));
    (i64::from(per), (page - 1) * i64::from(per))
}

/// The `400` for a user listing page that starts past
/// [`UserQuery::count_limit`] matches: paging that deep would read every
/// match before it, so the caller is told to narrow the query instead.
pub(crate) fn page_past_count_limit(cap: u64) -> Error {
    let what = format!(
        "goes past the first {cap} matches, which is as far as listings go: \
         narrow the query (q, industry, location, skills, experience) instead"
    );
    Error::msg(
        ErrorKind::BadRequest,
        format!("Query parameter `page` {what}."),
    )
    .with_details(serde_json::json!({ "page": what }))
}

/// One attempt of a retried operation.
pub(crate) enum Attempt<T> {
    /// The operation finished.
    Done(T),
    /// The operation lost a race; try again.
    Retry(sqlx::Error),
}

/// A fresh opaque id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The words of a free-text query: runs of letters and digits, lower-cased,
/// at most 8 words of at most 64 characters. Anything else (operators,
/// quotes) is dropped, so the words are safe inside a full-text query.
pub(crate) fn search_words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(8)
        .map(|w| w.chars().take(64).collect::<String>().to_lowercase())
        .collect()
}

/// Whether a database error is a unique violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether a database error is a foreign-key violation.
pub(crate) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

/// Maps a foreign-key violation (unknown user or session) to `not_found`.
pub(crate) fn fk_not_found(e: sqlx::Error) -> Error {
    if is_foreign_key_violation(&e) {
        Error::new(ErrorKind::NotFound).with_source(e)
    } else {
        e.into()
    }
}

/// The fields the listing filters of `q` match, for
/// [`UserQuery::public_fields_only`].
pub(crate) fn filtered_fields(q: &UserQuery) -> Vec<&'static str> {
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

/// A `users` row (without the social accounts, loaded separately).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: String,
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
    pub photo_url: Option<String>,
    pub title: Option<String>,
    pub company: Option<String>,
    pub location: Option<String>,
    pub industry: Option<String>,
    pub linkedin_url: Option<String>,
    pub experience_years: Option<i32>,
    pub provider: String,
    pub bio: Option<String>,
    pub timezone: Option<String>,
    pub skills: Json<Vec<String>>,
    pub interests: Json<Vec<String>>,
    pub is_active: bool,
    pub privacy_settings: Json<BTreeMap<String, Visibility>>,
    pub preferences: Json<BTreeMap<String, serde_json::Value>>,
    pub roles: Json<Vec<String>>,
    pub last_login: Option<DateTime<Utc>>,
    pub last_active_at: Option<DateTime<Utc>>,
    pub login_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub erased_at: Option<DateTime<Utc>>,
}

/// The `users` columns [`UserRow`] reads, qualified with the alias `u`.
pub(crate) const USER_COLUMNS: &str = "u.id, u.email, u.email_verified, u.name, u.photo_url, \
    u.title, u.company, u.location, u.industry, u.linkedin_url, u.experience_years, u.provider, \
    u.bio, u.timezone, u.skills, u.interests, u.is_active, u.privacy_settings, u.preferences, \
    u.roles, u.last_login, u.last_active_at, u.login_count, u.created_at, u.updated_at, \
    u.erased_at";

impl UserRow {
    /// The model user, with its social accounts.
    pub(crate) fn into_user(self, social_accounts: Vec<SocialAccount>) -> User {
        User {
            id: self.id,
            email: self.email,
            email_verified: self.email_verified,
            name: self.name,
            photo_url: self.photo_url,
            title: self.title,
            company: self.company,
            location: self.location,
            industry: self.industry,
            linkedin_url: self.linkedin_url,
            experience_years: self.experience_years,
            provider: self.provider,
            bio: self.bio,
            timezone: self.timezone,
            skills: self.skills.0,
            interests: self.interests.0,
            // An erased account is never active, whatever the flag says.
            is_active: self.is_active && self.erased_at.is_none(),
            privacy_settings: self.privacy_settings.0,
            preferences: self.preferences.0,
            social_accounts,
            roles: self.roles.0,
            last_login: self.last_login,
            last_active_at: self.last_active_at,
            login_count: self.login_count,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// An `identities` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct IdentityRow {
    pub user_id: String,
    pub provider: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

/// The `identities` columns [`IdentityRow`] reads.
pub(crate) const IDENTITY_COLUMNS: &str =
    "user_id, provider, subject, email, email_verified, created_at, last_login_at";

impl IdentityRow {
    /// The model social account.
    pub(crate) fn into_account(self) -> SocialAccount {
        SocialAccount {
            provider: self.provider,
            subject: self.subject,
            email: self.email,
            email_verified: self.email_verified,
            created_at: self.created_at,
            last_login_at: self.last_login_at,
        }
    }
}

/// Groups identity rows by user id, keeping their order.
pub(crate) fn group_identities(rows: Vec<IdentityRow>) -> BTreeMap<String, Vec<SocialAccount>> {
    let mut map: BTreeMap<String, Vec<SocialAccount>> = BTreeMap::new();
    for row in rows {
        map.entry(row.user_id.clone())
            .or_default()
            .push(row.into_account());
    }
    map
}

/// A `sessions` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub method: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The `sessions` columns [`SessionRow`] reads.
pub(crate) const SESSION_COLUMNS: &str =
    "id, user_id, method, created_at, last_used_at, expires_at, ip, user_agent, revoked_at";

impl From<SessionRow> for Session {
    fn from(r: SessionRow) -> Self {
        Session {
            id: r.id,
            user_id: r.user_id,
            method: r.method,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
            ip: r.ip,
            user_agent: r.user_agent,
            revoked_at: r.revoked_at,
        }
    }
}

/// A `refresh_tokens` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RefreshRow {
    pub token_hash: String,
    pub session_id: String,
    pub created_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub successor_sealed: Option<String>,
}

/// The `refresh_tokens` columns [`RefreshRow`] reads.
pub(crate) const REFRESH_COLUMNS: &str =
    "token_hash, session_id, created_at, rotated_at, successor_sealed";

impl From<RefreshRow> for RefreshRecord {
    fn from(r: RefreshRow) -> Self {
        RefreshRecord {
            token_hash: r.token_hash,
            session_id: r.session_id,
            created_at: r.created_at,
            rotated_at: r.rotated_at,
            successor_sealed: r.successor_sealed,
        }
    }
}

/// An `audit_events` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AuditRow {
    pub id: String,
    pub event: String,
    pub actor_id: Option<String>,
    pub user_id: Option<String>,
    pub outcome: String,
    pub method: Option<String>,
    pub detail: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The `audit_events` columns [`AuditRow`] reads.
pub(crate) const AUDIT_COLUMNS: &str =
    "id, event, actor_id, user_id, outcome, method, detail, ip, user_agent, created_at";

impl From<AuditRow> for AuditEvent {
    fn from(r: AuditRow) -> Self {
        AuditEvent {
            id: r.id,
            event: r.event,
            actor_id: r.actor_id,
            user_id: r.user_id,
            outcome: r.outcome,
            method: r.method,
            detail: r.detail,
            ip: r.ip,
            user_agent: r.user_agent,
            created_at: r.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_one_based_and_capped() {
        assert_eq!(page_window(0, 0, 100), (20, 0));
        assert_eq!(page_window(1, 10, 100), (10, 0));
        assert_eq!(page_window(3, 10, 100), (10, 20));
        assert_eq!(page_window(2, 500, 100), (100, 100));
    }

    #[test]
    fn search_words_drop_operators() {
        assert_eq!(
            search_words(r#"Rust* "AND" -Go  née"#),
            vec!["rust", "and", "go", "née"]
        );
        assert!(search_words("*** ()").is_empty());
    }
}
