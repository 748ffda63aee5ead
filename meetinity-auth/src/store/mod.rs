//! Persistence seams and their backends.
//!
//! Each trait is one seam, `dyn`-usable and held as `Arc<dyn ...>`. One
//! backend struct ([`SqliteStore`], [`PostgresStore`]) implements all of
//! them; wrappers such as [`crate::cache::CachingUserStore`] compose by
//! wrapping one trait.
//!
//! Rules every backend keeps (checked by one conformance suite run against
//! each): emails are unique ignoring case; `(provider, subject)` is unique; a
//! unique violation is a domain error (`email_taken` / `conflict`), never a
//! 500; concurrent [`UserStore::upsert_identity`] calls for the same identity
//! yield exactly one user.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::model::{
    AuditEvent, AuditQuery, IdentityLogin, IdentityOutcome, NewUser, OneTimePurpose, Page,
    Rotation, Session, SocialAccount, User, UserPatch, UserQuery,
};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod common;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[macro_use]
mod shared;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod postgres_profile;
mod profile;
mod settings;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_profile;

pub use profile::{ConnectionChange, Erasure, PreferencesEdit, ProfileStore};
pub use settings::PoolSettings;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::SqliteStore;

/// Users, their identities and password hashes.
#[async_trait]
pub trait UserStore: std::fmt::Debug + Send + Sync + 'static {
    /// Creates a user, with a password hash for email + password accounts.
    /// A taken email (ignoring case) is [`crate::ErrorKind::EmailTaken`].
    async fn create_user(&self, user: &NewUser, password_hash: Option<&str>) -> Result<User>;

    /// A user by id, with its social accounts; `None` if unknown.
    async fn get_user(&self, id: &str) -> Result<Option<User>>;

    /// A user by email, ignoring case.
    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>>;

    /// Applies a partial update and returns the updated user
    /// ([`crate::ErrorKind::NotFound`] if unknown).
    async fn update_user(&self, id: &str, patch: &UserPatch) -> Result<User>;

    /// Deletes a user and everything that belongs to it. Returns whether it existed.
    async fn delete_user(&self, id: &str) -> Result<bool>;

    /// Records a successful sign-in (`last_login`, `last_active_at`, login count).
    async fn record_login(&self, id: &str, at: DateTime<Utc>) -> Result<()>;

    /// Finds or creates the user of a provider identity, in one transaction.
    ///
    /// Found by `(provider, subject)` first, never by email alone. A new
    /// identity whose email matches an existing user links to it only when
    /// `email_verified`; otherwise [`crate::ErrorKind::EmailNotVerified`].
    /// Provider profile fields fill empty fields only.
    async fn upsert_identity(
        &self,
        login: &IdentityLogin,
        now: DateTime<Utc>,
    ) -> Result<IdentityOutcome>;

    /// The identities linked to a user.
    async fn list_identities(&self, user_id: &str) -> Result<Vec<SocialAccount>>;

    /// Unlinks a provider identity. Refused with
    /// [`crate::ErrorKind::LastSignInMethod`] when it is the last way to sign in.
    async fn unlink_identity(&self, user_id: &str, provider: &str) -> Result<()>;

    /// The user's Argon2id password hash, if the account has a password.
    async fn password_hash(&self, user_id: &str) -> Result<Option<String>>;

    /// Sets (or replaces) the password hash.
    async fn set_password_hash(&self, user_id: &str, hash: &str, now: DateTime<Utc>) -> Result<()>;

    /// Removes the user's password credential, if any (the account keeps
    /// its other sign-in methods; the caller makes sure one remains). Used
    /// when a verified provider identity claims an account whose email was
    /// never verified: whoever set that password did not prove the address.
    async fn remove_password(&self, user_id: &str) -> Result<()>;

    /// Lists active users with filters, sort and paging.
    async fn list_users(&self, query: &UserQuery) -> Result<Page<User>>;

    /// Checks the backend answers.
    async fn ping(&self) -> Result<()>;

    /// Drops any cached copy of the user, here and on every instance. Stores
    /// without a cache do nothing. Called after a write that reached the
    /// user's row through another seam (such as [`ProfileStore`]).
    async fn invalidate_user(&self, _id: &str) {}

    /// Hit and miss counts when this store is a cache in front of another
    /// ([`crate::cache::CachingUserStore`]), for metrics; `None` otherwise.
    fn cache_stats(&self) -> Option<crate::cache::CacheStats> {
        None
    }
}

/// Sessions and their refresh tokens.
#[async_trait]
pub trait SessionStore: std::fmt::Debug + Send + Sync + 'static {
    /// Stores a new session with its first refresh token (by hash).
    async fn create_session(&self, session: &Session, refresh_hash: &str) -> Result<()>;

    /// A session by id, revoked or not.
    async fn get_session(&self, id: &str) -> Result<Option<Session>>;

    /// Atomically rotates a refresh token: marks `old_hash` used (with the
    /// sealed successor, for the grace window), stores `new_hash`, touches the
    /// session. Exactly one of many concurrent callers gets
    /// [`Rotation::Rotated`]; the others get [`Rotation::AlreadyRotated`].
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        successor_sealed: &str,
        now: DateTime<Utc>,
    ) -> Result<Rotation>;

    /// Revokes one session. Returns whether it was live.
    async fn revoke_session(&self, id: &str, now: DateTime<Utc>) -> Result<bool>;

    /// Revokes every live session of a user except `except`; returns the ids revoked.
    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>>;

    /// The user's live sessions, newest first.
    async fn list_sessions(&self, user_id: &str, now: DateTime<Utc>) -> Result<Vec<Session>>;
}

/// Single-use tokens sent by mail, stored as hashes.
#[async_trait]
pub trait OneTimeTokenStore: std::fmt::Debug + Send + Sync + 'static {
    /// Stores a token hash for a user and purpose.
    async fn create_one_time(
        &self,
        token_hash: &str,
        purpose: OneTimePurpose,
        user_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;

    /// Atomically consumes a token: returns its user if it exists, has this
    /// purpose, is unused and unexpired at `now`; marks it used.
    async fn consume_one_time(
        &self,
        token_hash: &str,
        purpose: OneTimePurpose,
        now: DateTime<Utc>,
    ) -> Result<Option<String>>;
}

/// The audit log.
#[async_trait]
pub trait AuditStore: std::fmt::Debug + Send + Sync + 'static {
    /// Appends an event.
    async fn record(&self, event: &AuditEvent) -> Result<()>;

    /// Lists events, newest first.
    async fn list_events(&self, query: &AuditQuery) -> Result<Page<AuditEvent>>;
}

/// Everything a backend provides; implemented for any type that has all seams.
pub trait Store: UserStore + SessionStore + OneTimeTokenStore + AuditStore + ProfileStore {}

impl<T: UserStore + SessionStore + OneTimeTokenStore + AuditStore + ProfileStore> Store for T {}
