//! The data model: users, identities, sessions, connections, audit events.
//!
//! Field names follow the HTTP contract; timestamps serialize as ISO 8601 UTC
//! (`2026-12-04T15:22:27Z`).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};

/// Serializes a timestamp as `2026-12-04T15:22:27Z` (seconds, `Z`).
pub fn ser_ts<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Serializes an optional timestamp as `2026-12-04T15:22:27Z` or `null`.
pub fn ser_opt_ts<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_ts(t, s),
        None => s.serialize_none(),
    }
}

/// Who may see a profile field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Everyone signed in.
    Public,
    /// Users with an accepted connection to the owner.
    Connections,
    /// The owner and admins only.
    Private,
}

/// A user, with every field of the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Opaque id (a UUID); the JWT `sub`.
    pub id: String,
    /// Email address (unique, case-insensitively).
    pub email: String,
    /// Whether the email was verified (by mail or by the identity provider).
    pub email_verified: bool,
    /// Display name.
    pub name: Option<String>,
    /// Picture URL.
    pub photo_url: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Company.
    pub company: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// LinkedIn profile URL.
    pub linkedin_url: Option<String>,
    /// Years of experience (0-80).
    pub experience_years: Option<i32>,
    /// How the account was first created: `password`, `google`, `linkedin`, ...
    pub provider: String,
    /// Free-text biography.
    pub bio: Option<String>,
    /// IANA time zone name.
    pub timezone: Option<String>,
    /// Skills.
    pub skills: Vec<String>,
    /// Interests.
    pub interests: Vec<String>,
    /// False once deactivated or erased.
    pub is_active: bool,
    /// Per-field visibility chosen by the owner.
    pub privacy_settings: BTreeMap<String, Visibility>,
    /// Free key/value preferences.
    pub preferences: BTreeMap<String, serde_json::Value>,
    /// Linked provider identities.
    pub social_accounts: Vec<SocialAccount>,
    /// Roles (`admin`, ...). Not a profile field: carried in tokens.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Last successful sign-in.
    #[serde(serialize_with = "ser_opt_ts")]
    pub last_login: Option<DateTime<Utc>>,
    /// Last authenticated activity.
    #[serde(serialize_with = "ser_opt_ts")]
    pub last_active_at: Option<DateTime<Utc>>,
    /// Number of successful sign-ins.
    #[serde(default)]
    pub login_count: i64,
    /// Creation time.
    #[serde(serialize_with = "ser_ts")]
    pub created_at: DateTime<Utc>,
    /// Last update time.
    #[serde(serialize_with = "ser_ts")]
    pub updated_at: DateTime<Utc>,
}

/// A provider identity linked to a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocialAccount {
    /// Provider name (`google`, `linkedin`, ...).
    pub provider: String,
    /// The provider's subject identifier.
    pub subject: String,
    /// The email the provider reported.
    pub email: Option<String>,
    /// Whether the provider said the email is verified.
    pub email_verified: bool,
    /// When the identity was linked.
    #[serde(serialize_with = "ser_ts")]
    pub created_at: DateTime<Utc>,
    /// Last sign-in through this identity.
    #[serde(serialize_with = "ser_opt_ts")]
    pub last_login_at: Option<DateTime<Utc>>,
}

/// What is needed to create a user.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Email address.
    pub email: String,
    /// Whether the email is already verified.
    pub email_verified: bool,
    /// Display name.
    pub name: Option<String>,
    /// Picture URL.
    pub photo_url: Option<String>,
    /// `password` or the provider name.
    pub provider: String,
    /// Initial roles.
    pub roles: Vec<String>,
}

/// A partial update of profile fields. `None` leaves a field alone;
/// `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
#[allow(clippy::option_option)]
pub struct UserPatch {
    /// Display name.
    pub name: Option<Option<String>>,
    /// Picture URL.
    pub photo_url: Option<Option<String>>,
    /// Job title.
    pub title: Option<Option<String>>,
    /// Company.
    pub company: Option<Option<String>>,
    /// Location.
    pub location: Option<Option<String>>,
    /// Industry.
    pub industry: Option<Option<String>>,
    /// LinkedIn profile URL.
    pub linkedin_url: Option<Option<String>>,
    /// Years of experience.
    pub experience_years: Option<Option<i32>>,
    /// Biography.
    pub bio: Option<Option<String>>,
    /// IANA time zone.
    pub timezone: Option<Option<String>>,
    /// Skills (replaced whole).
    pub skills: Option<Vec<String>>,
    /// Interests (replaced whole).
    pub interests: Option<Vec<String>>,
    /// Privacy settings (replaced whole).
    pub privacy_settings: Option<BTreeMap<String, Visibility>>,
    /// Preferences (replaced whole).
    pub preferences: Option<BTreeMap<String, serde_json::Value>>,
    /// Email verification flag.
    pub email_verified: Option<bool>,
    /// Roles (replaced whole).
    pub roles: Option<Vec<String>>,
    /// Active flag.
    pub is_active: Option<bool>,
}

/// A sign-in through an identity provider, as the store sees it.
#[derive(Debug, Clone)]
pub struct IdentityLogin {
    /// Provider name.
    pub provider: String,
    /// The provider's stable subject id.
    pub subject: String,
    /// Email the provider reported (required).
    pub email: String,
    /// Whether the provider verified the email.
    pub email_verified: bool,
    /// Name from the provider (fills an empty profile field only).
    pub name: Option<String>,
    /// Picture from the provider (fills an empty profile field only).
    pub picture: Option<String>,
    /// Roles to grant when creating the user.
    pub roles: Vec<String>,
}

/// The outcome of [`crate::store::UserStore::upsert_identity`].
#[derive(Debug, Clone)]
pub struct IdentityOutcome {
    /// The user signed in.
    pub user: User,
    /// Whether the user was created by this sign-in.
    pub created: bool,
    /// Whether the identity was linked to an existing user by verified email.
    pub linked: bool,
}

/// A sign-in session; refresh tokens and access tokens belong to one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Session id (the JWT `sid`).
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// How it was created: `password` or the provider name.
    pub method: String,
    /// Creation time.
    #[serde(serialize_with = "ser_ts")]
    pub created_at: DateTime<Utc>,
    /// Last refresh.
    #[serde(serialize_with = "ser_ts")]
    pub last_used_at: DateTime<Utc>,
    /// Absolute end of the session (`REFRESH_TTL_DAYS` after creation).
    #[serde(serialize_with = "ser_ts")]
    pub expires_at: DateTime<Utc>,
    /// Client IP at creation.
    pub ip: Option<String>,
    /// Client user agent at creation.
    pub user_agent: Option<String>,
    /// When revoked, if it was.
    #[serde(serialize_with = "ser_opt_ts")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Session {
    /// Live at `now`: not revoked and not past its absolute lifetime.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// What the store knows about a presented refresh token.
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    /// SHA-256 of the token.
    pub token_hash: String,
    /// Its session.
    pub session_id: String,
    /// Issue time.
    pub created_at: DateTime<Utc>,
    /// When it was rotated (used), if it was.
    pub rotated_at: Option<DateTime<Utc>>,
    /// The successor, sealed with a key derived from this token (see `token::refresh`).
    pub successor_sealed: Option<String>,
}

/// The result of an atomic refresh-token rotation attempt.
#[derive(Debug, Clone)]
pub enum Rotation {
    /// Rotated: the old token is now marked used, the new one stored.
    Rotated(Session),
    /// The token was already rotated; here is its record (for the grace window
    /// or reuse detection).
    AlreadyRotated(RefreshRecord, Session),
    /// Unknown token.
    Unknown,
}

/// Purposes of single-use mailed tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OneTimePurpose {
    /// Email verification (24 h).
    VerifyEmail,
    /// Password reset (30 min).
    ResetPassword,
}

impl OneTimePurpose {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }
}

/// Status of a connection between users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// Requested, not yet accepted.
    Pending,
    /// Accepted.
    Accepted,
    /// Blocked.
    Blocked,
}

/// A connection from a user to another user or an external reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    /// Connection id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Target user, if internal.
    pub target_user_id: Option<String>,
    /// External reference, if not.
    pub external_reference: Option<String>,
    /// Type (`colleague`, `follow`, ...).
    pub connection_type: String,
    /// Status.
    pub status: ConnectionStatus,
    /// Free attributes.
    pub attributes: serde_json::Value,
    /// Creation time.
    #[serde(serialize_with = "ser_ts")]
    pub created_at: DateTime<Utc>,
    /// Update time.
    #[serde(serialize_with = "ser_ts")]
    pub updated_at: DateTime<Utc>,
}

/// One audited event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Event id.
    pub id: String,
    /// Event name (`login`, `login_failed`, `refresh_reuse`, ...).
    pub event: String,
    /// Who acted (user id), if known.
    pub actor_id: Option<String>,
    /// Whom it concerned (user id), if any.
    pub user_id: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// Method or provider (`password`, `google`, ...).
    pub method: Option<String>,
    /// Failure reason or other detail (never secrets).
    pub detail: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// When.
    #[serde(serialize_with = "ser_ts")]
    pub created_at: DateTime<Utc>,
}

/// Filters for listing audit events.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only events concerning this user.
    pub user_id: Option<String>,
    /// Only this event name.
    pub event: Option<String>,
    /// Only events at or after.
    pub since: Option<DateTime<Utc>>,
    /// Only events before.
    pub until: Option<DateTime<Utc>>,
    /// 1-based page.
    pub page: u32,
    /// Page size.
    pub per_page: u32,
}

/// Sort orders for user listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserSort {
    /// Newest first (default).
    #[default]
    CreatedDesc,
    /// Oldest first.
    CreatedAsc,
    /// By name, A-Z.
    NameAsc,
    /// By name, Z-A.
    NameDesc,
    /// Least experienced first.
    ExperienceAsc,
    /// Most experienced first.
    ExperienceDesc,
}

/// Filters and paging for user listing and search.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Full-text query over name, title, company, skills and bio.
    pub q: Option<String>,
    /// Exact industry (case-insensitive).
    pub industry: Option<String>,
    /// Exact location (case-insensitive).
    pub location: Option<String>,
    /// Minimum years of experience.
    pub min_experience: Option<i32>,
    /// Maximum years of experience.
    pub max_experience: Option<i32>,
    /// Users having all of these skills (case-insensitive).
    pub skills: Vec<String>,
    /// Order.
    pub sort: UserSort,
    /// 1-based page.
    pub page: u32,
    /// Page size (1-100).
    pub per_page: u32,
    /// Match the filters and `q` only against values their owners made
    /// public, so that a filter cannot reveal a hidden field (for callers
    /// who are not admins). `q` then skips users who hide any of the
    /// searched fields.
    pub public_fields_only: bool,
    /// Count at most this many matches for [`Page::total`] (`None`: count
    /// them all). Counting every match of a common word among a million
    /// users reads every matching row; a cap bounds that work, the way
    /// search engines report "at least N" hits (`USERS_MAX_TOTAL`). A page
    /// that starts at or past this many matches is refused
    /// ([`ErrorKind::BadRequest`](crate::ErrorKind::BadRequest) naming `page`).
    pub count_limit: Option<u64>,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Total matching items, or the count limit when there are more
    /// ([`UserQuery::count_limit`]; then `total_exact` is false).
    pub total: i64,
    /// Whether `total` is the exact number of matches (false: there are
    /// more than `total`).
    pub total_exact: bool,
}

/// Where a request came from, for sessions, throttling and audit.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// Client IP.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
}
