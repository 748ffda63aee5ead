//! The profile seam: preferences, connections, GDPR export and erasure,
//! and the purge of what is due.
//!
//! [`ProfileStore`] covers what the users API needs beyond [`super::UserStore`]:
//! writes that span several tables in one transaction (erasure), atomic
//! read-modify-write of the preferences map, and the connections between
//! users. Writes here that change a user's row do not pass through the
//! caching decorator: the caller invalidates with
//! [`super::UserStore::invalidate_user`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::error::{Error, ErrorKind, Result};
use crate::model::{AuditEvent, Connection, ConnectionStatus, Page, Session};

/// A change applied to a user's preferences inside the store's transaction:
/// it edits the current map in place, or refuses with an error (nothing is
/// written then).
pub type PreferencesEdit<'a> =
    dyn Fn(&mut BTreeMap<String, serde_json::Value>) -> Result<()> + Send + Sync + 'a;

/// What an erasure writes in place of the user's personal data.
#[derive(Debug, Clone)]
pub struct Erasure {
    /// The pseudonymous email that replaces the address (unique per user).
    pub email: String,
    /// The name that replaces the user's name.
    pub name: String,
    /// When the erasure happens.
    pub at: DateTime<Utc>,
    /// When the remaining pseudonymous row is deleted for good.
    pub purge_at: DateTime<Utc>,
}

/// A change to a connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionChange {
    /// New status.
    pub status: Option<ConnectionStatus>,
    /// New attributes (replaced whole).
    pub attributes: Option<serde_json::Value>,
}

/// Preferences, connections, export, erasure and purge.
///
/// Rules every backend keeps: a connection between two users is unique per
/// unordered pair (`A -> B` and `B -> A` cannot both exist), and a connection
/// to an external reference is unique per owner; a second one is
/// [`ErrorKind::Conflict`]. An erasure is one transaction.
#[async_trait]
pub trait ProfileStore: std::fmt::Debug + Send + Sync + 'static {
    /// Applies `edit` to the user's preferences in one transaction and
    /// returns the new map ([`ErrorKind::NotFound`] if the user is unknown).
    async fn update_preferences(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
        edit: &PreferencesEdit<'_>,
    ) -> Result<BTreeMap<String, serde_json::Value>>;

    /// Stores a new connection. A second connection for the same pair is
    /// [`ErrorKind::Conflict`]; an unknown user [`ErrorKind::NotFound`].
    async fn create_connection(&self, connection: &Connection) -> Result<()>;

    /// A connection by id.
    async fn get_connection(&self, id: &str) -> Result<Option<Connection>>;

    /// Applies a change and returns the updated connection
    /// ([`ErrorKind::NotFound`] if unknown).
    async fn update_connection(
        &self,
        id: &str,
        change: &ConnectionChange,
        now: DateTime<Utc>,
    ) -> Result<Connection>;

    /// Deletes a connection; returns whether it existed.
    async fn delete_connection(&self, id: &str) -> Result<bool>;

    /// The connections a user is part of, either side, newest first.
    async fn list_connections(
        &self,
        user_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Connection>>;

    /// Of `among`, the users with an accepted connection to `user_id`
    /// (either direction).
    async fn accepted_connections(&self, user_id: &str, among: &[String]) -> Result<Vec<String>>;

    /// Every session of the user, live, expired or revoked, newest first.
    async fn all_sessions(&self, user_id: &str) -> Result<Vec<Session>>;

    /// Every audit event the user is the subject or the actor of, newest first.
    async fn user_audit_events(&self, user_id: &str) -> Result<Vec<AuditEvent>>;

    /// Pseudonymises the user in one transaction: email and name replaced,
    /// every other profile field, preferences, privacy settings and roles
    /// cleared; identities, password, mailed tokens, sessions and connections
    /// (either side) deleted; IP and user agent removed from the user's audit
    /// events; the purge scheduled. Returns the ids of the sessions deleted,
    /// or `None` (changing nothing) when the user was already erased;
    /// [`ErrorKind::NotFound`] if unknown.
    async fn erase_user(&self, user_id: &str, erasure: &Erasure) -> Result<Option<Vec<String>>>;

    /// Up to `limit` erased users whose purge is due at `now`.
    async fn users_due_for_purge(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<String>>;

    /// Deletes the user and everything that belongs to it, if its purge is
    /// due at `now`; returns whether it did.
    async fn purge_user(&self, user_id: &str, now: DateTime<Utc>) -> Result<bool>;

    /// Deletes the audit events older than `cutoff`; returns how many.
    async fn purge_audit_before(&self, cutoff: DateTime<Utc>) -> Result<u64>;
}

/// A `connections` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ConnectionRow {
    pub id: String,
    pub user_id: String,
    pub target_user_id: Option<String>,
    pub external_reference: Option<String>,
    pub connection_type: String,
    pub status: String,
    pub attributes: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The `connections` columns [`ConnectionRow`] reads.
pub(crate) const CONNECTION_COLUMNS: &str = "id, user_id, target_user_id, external_reference, \
    connection_type, status, attributes, created_at, updated_at";

/// The stored name of a status.
pub(crate) fn status_str(status: ConnectionStatus) -> &'static str {
    match status {
        ConnectionStatus::Pending => "pending",
        ConnectionStatus::Accepted => "accepted",
        ConnectionStatus::Blocked => "blocked",
    }
}

impl ConnectionRow {
    /// The model connection; an unknown stored status is an internal error.
    pub(crate) fn into_connection(self) -> Result<Connection> {
        let status = match self.status.as_str() {
            "pending" => ConnectionStatus::Pending,
            "accepted" => ConnectionStatus::Accepted,
            "blocked" => ConnectionStatus::Blocked,
            _ => {
                return Err(Error::msg(
                    ErrorKind::Internal,
                    "a stored connection has an unknown status",
                ))
            }
        };
        Ok(Connection {
            id: self.id,
            user_id: self.user_id,
            target_user_id: self.target_user_id,
            external_reference: self.external_reference,
            connection_type: self.connection_type,
            status,
            attributes: self.attributes.0,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Converts rows, failing on the first bad one.
pub(crate) fn connections(rows: Vec<ConnectionRow>) -> Result<Vec<Connection>> {
    rows.into_iter()
        .map(ConnectionRow::into_connection)
        .collect()
}
