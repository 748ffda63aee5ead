//! [`UserService`]: profiles, privacy, preferences, connections, social
//! accounts, sessions, GDPR export and erasure, the purge, and the audit log
//! for admins — with the authorization rules of the HTTP contract.
//!
//! Rules: any signed-in user may read and list profiles; only the user
//! themself or an `admin` may write, or read what is not a profile (social
//! accounts, connections, sessions, export); anyone else gets
//! [`ErrorKind::Forbidden`] whether or not the user exists. Fields the owner
//! hid with `privacy_settings` are left out for others: `public` fields are
//! shown to every signed-in user, `connections` fields to users with an
//! accepted connection (either direction), `private` fields to the owner and
//! admins; unlisted fields are public except `email`, private by default.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::default::Authenticator;
use super::user_input::{NewConnection, PreferenceChanges, ProfileUpdate, HIDEABLE_FIELDS};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    ser_ts, AuditEvent, AuditQuery, Connection, ConnectionStatus, Page, RequestContext, Session,
    SocialAccount, User, UserPatch, UserQuery, Visibility,
};
use crate::store::{ConnectionChange, Erasure};
use crate::token::AccessClaims;

/// Largest page of connections.
pub const MAX_CONNECTION_PAGE: u32 = 100;
/// The name that replaces an erased user's name.
pub const ERASED_NAME: &str = "Erased user";
/// Users purged per batch.
const PURGE_BATCH: i64 = 500;

/// Fields never shown to anyone but the owner and admins.
const OWNER_ONLY: &[&str] = &[
    "preferences",
    "privacy_settings",
    "social_accounts",
    "roles",
    "login_count",
];

/// One of the user's sessions, as the sessions list shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionView {
    /// Session id (the JWT `sid`).
    pub id: String,
    /// How it signed in: `password` or the provider name.
    pub method: String,
    /// Creation time.
    #[serde(serialize_with = "ser_ts")]
    pub created_at: DateTime<Utc>,
    /// Last refresh.
    #[serde(serialize_with = "ser_ts")]
    pub last_used_at: DateTime<Utc>,
    /// Absolute end of the session.
    #[serde(serialize_with = "ser_ts")]
    pub expires_at: DateTime<Utc>,
    /// Client IP at creation.
    pub ip: Option<String>,
    /// Client user agent at creation.
    pub user_agent: Option<String>,
    /// Whether this is the caller's own session.
    pub current: bool,
}

/// Everything held about a user (`GET /users/{id}/export`).
#[derive(Debug, Clone, Serialize)]
pub struct UserExport {
    /// The whole profile.
    pub user: User,
    /// Preferences.
    pub preferences: BTreeMap<String, Value>,
    /// Privacy settings.
    pub privacy_settings: BTreeMap<String, Visibility>,
    /// Linked provider identities.
    pub social_accounts: Vec<SocialAccount>,
    /// Connections, either side.
    pub connections: Vec<Connection>,
    /// Every session, live or not, with IP and user agent.
    pub sessions: Vec<Session>,
    /// Every audit event the user is the subject or the actor of.
    pub audit_events: Vec<AuditEvent>,
    /// When the export was made.
    #[serde(serialize_with = "ser_ts")]
    pub exported_at: DateTime<Utc>,
}

/// The outcome of an erasure.
#[derive(Debug, Clone, Serialize)]
pub struct ErasedUser {
    /// The pseudonymised user.
    pub user: User,
    /// When the pseudonymous remains are deleted for good.
    #[serde(serialize_with = "ser_ts")]
    pub scheduled_purge_at: DateTime<Utc>,
}

/// What a purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Erased accounts deleted for good.
    pub users: u64,
    /// Audit events older than the retention deleted.
    pub audit_events: u64,
}

/// The users and admin operations of the HTTP contract, with its
/// authorization rules. Every method takes the verified caller.
#[async_trait]
pub trait UserService: Send + Sync {
    /// Active users matching the filters, as the caller may see them.
    /// Deactivated and erased users never appear. For callers who are not
    /// admins, filters and `q` match only public values
    /// ([`UserQuery::public_fields_only`]). `total` counts at most
    /// `USERS_MAX_TOTAL` matches ([`UserQuery::count_limit`]); a page past
    /// them is a `BadRequest` naming `page`.
    async fn list_users(&self, caller: &AccessClaims, query: &UserQuery) -> Result<Page<Value>>;

    /// One user, as the caller may see it. Inactive users are not found,
    /// except by admins.
    async fn get_user(&self, caller: &AccessClaims, id: &str) -> Result<Value>;

    /// Applies a validated profile update (self or admin); returns the whole user.
    async fn update_user(
        &self,
        caller: &AccessClaims,
        id: &str,
        update: &ProfileUpdate,
        ctx: &RequestContext,
    ) -> Result<User>;

    /// Deactivates the account and revokes its sessions (self or admin).
    async fn deactivate_user(
        &self,
        caller: &AccessClaims,
        id: &str,
        ctx: &RequestContext,
    ) -> Result<()>;

    /// Merges preference changes (self or admin); returns the whole map.
    async fn update_preferences(
        &self,
        caller: &AccessClaims,
        id: &str,
        changes: &PreferenceChanges,
        ctx: &RequestContext,
    ) -> Result<BTreeMap<String, Value>>;

    /// Replaces the privacy settings (self or admin).
    async fn update_privacy(
        &self,
        caller: &AccessClaims,
        id: &str,
        settings: &BTreeMap<String, Visibility>,
        ctx: &RequestContext,
    ) -> Result<BTreeMap<String, Visibility>>;

    /// The linked provider identities (self or admin).
    async fn social_accounts(&self, caller: &AccessClaims, id: &str) -> Result<Vec<SocialAccount>>;

    /// Unlinks a provider identity (self or admin); refused with
    /// [`ErrorKind::LastSignInMethod`] when it is the last way to sign in.
    async fn unlink_social_account(
        &self,
        caller: &AccessClaims,
        id: &str,
        provider: &str,
        ctx: &RequestContext,
    ) -> Result<()>;

    /// The user's connections, either side, newest first (self or admin).
    async fn connections(
        &self,
        caller: &AccessClaims,
        id: &str,
        page: u32,
        per_page: u32,
    ) -> Result<Page<Connection>>;

    /// Creates a connection owned by `id` (self or admin). A connection to
    /// another user starts `pending`: only that user (or an admin) accepts it.
    async fn create_connection(
        &self,
        caller: &AccessClaims,
        id: &str,
        new: &NewConnection,
        ctx: &RequestContext,
    ) -> Result<Connection>;

    /// Changes a connection `id` is part of (self or admin). Between two
    /// users, only the invited user changes the status; only the owner
    /// changes the attributes.
    async fn update_connection(
        &self,
        caller: &AccessClaims,
        id: &str,
        connection_id: &str,
        change: &ConnectionChange,
        ctx: &RequestContext,
    ) -> Result<Connection>;

    /// Deletes a connection `id` is part of, either side (self or admin).
    async fn delete_connection(
        &self,
        caller: &AccessClaims,
        id: &str,
        connection_id: &str,
        ctx: &RequestContext,
    ) -> Result<()>;

    /// The user's live sessions, with `current` set on the caller's own (self or admin).
    async fn sessions(&self, caller: &AccessClaims, id: &str) -> Result<Vec<SessionView>>;

    /// Revokes one of the user's sessions: its tokens stop working at once,
    /// on every instance (self or admin).
    async fn revoke_session(
        &self,
        caller: &AccessClaims,
        id: &str,
        session_id: &str,
        ctx: &RequestContext,
    ) -> Result<()>;

    /// Everything held about the user (self or admin).
    async fn export_user(
        &self,
        caller: &AccessClaims,
        id: &str,
        ctx: &RequestContext,
    ) -> Result<UserExport>;

    /// Pseudonymises the account at once, revokes every session and
    /// schedules the purge after the account retention (self or admin).
    async fn erase_user(
        &self,
        caller: &AccessClaims,
        id: &str,
        ctx: &RequestContext,
    ) -> Result<ErasedUser>;

    /// Audit events, newest first (admins only).
    async fn audit_events(
        &self,
        caller: &AccessClaims,
        query: &AuditQuery,
    ) -> Result<Page<AuditEvent>>;

    /// Deletes the erased accounts whose purge is due at `now`, and the audit
    /// events older than the audit retention.
    async fn purge_due(&self, now: DateTime<Utc>) -> Result<PurgeReport>;
}

fn is_admin(c: &AccessClaims) -> bool {
    c.roles.iter().any(|r| r == "admin")
}

fn is_self_or_admin(c: &AccessClaims, id: &str) -> bool {
    c.sub == id || is_admin(c)
}

/// Refuses anyone but the user themself and admins.
fn self_or_admin(c: &AccessClaims, id: &str) -> Result<()> {
    if is_self_or_admin(c, id) {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Forbidden))
    }
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn field_error(field: &str, message: &str) -> Error {
    let mut m = serde_json::Map::new();
    m.insert(field.to_owned(), message.into());
    Error::validation(m)
}

/// How visible `field` of `user` is to others.
pub fn visibility_of(user: &User, field: &str) -> Visibility {
    match user.privacy_settings.get(field) {
        Some(v) => *v,
        None if field == "email" => Visibility::Private,
        None => Visibility::Public,
    }
}

/// The JSON of `user` as a viewer sees it: everything for the owner and
/// admins (`full`); for others, without the owner-only fields and without
/// the fields hidden from them (`connected`: the viewer has an accepted
/// connection with the user).
pub fn user_view(user: &User, full: bool, connected: bool) -> Value {
    let mut json = serde_json::to_value(user).unwrap_or(Value::Null);
    if full {
        return json;
    }
    if let Some(obj) = json.as_object_mut() {
        for field in OWNER_ONLY {
            obj.remove(*field);
        }
        for field in HIDEABLE_FIELDS {
            let shown = match visibility_of(user, field) {
                Visibility::Public => true,
                Visibility::Connections => connected,
                Visibility::Private => false,
            };
            if !shown {
                obj.remove(*field);
            }
        }
    }
    json
}

impl Authenticator {
    /// Records an audit event with its actor and subject.
    async fn audit_as(
        &self,
        event: &str,
        actor: Option<&str>,
        subject: &str,
        detail: Option<String>,
        ctx: &RequestContext,
    ) {
        let ev = AuditEvent {
            id: uuid::Uuid::new_v4().to_string(),
            event: event.to_owned(),
            actor_id: actor.map(str::to_owned),
            user_id: Some(subject.to_owned()),
            outcome: "success".to_owned(),
            method: None,
            detail,
            ip: ctx.ip.clone(),
            user_agent: ctx.user_agent.clone(),
            created_at: self.now(),
        };
        if let Err(e) = self.parts().audit.record(&ev).await {
            tracing::warn!(event, error = %e, "audit event not recorded");
        }
    }

    /// The user `id`, which must exist.
    async fn existing_user(&self, id: &str) -> Result<User> {
        self.parts()
            .users
            .get_user(id)
            .await?
            .ok_or_else(|| Error::new(ErrorKind::NotFound))
    }

    /// Which of `users` the caller has an accepted connection with, when
    /// any of them shows a field to connections only.
    async fn connected_among(
        &self,
        caller: &AccessClaims,
        users: &[&User],
    ) -> Result<HashSet<String>> {
        let ids: Vec<String> = users
            .iter()
            .filter(|u| u.id != caller.sub)
            .filter(|u| {
                u.privacy_settings
                    .values()
                    .any(|v| *v == Visibility::Connections)
            })
            .map(|u| u.id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        Ok(self
            .parts()
            .profiles
            .accepted_connections(&caller.sub, &ids)
            .await?
            .into_iter()
            .collect())
    }

    /// A connection that `id` is part of.
    async fn connection_of(&self, id: &str, connection_id: &str) -> Result<Connection> {
        match self.parts().profiles.get_connection(connection_id).await? {
            Some(c) if c.user_id == id || c.target_user_id.as_deref() == Some(id) => Ok(c),
            _ => Err(Error::new(ErrorKind::NotFound)),
        }
    }
}

#[async_trait]
impl UserService for Authenticator {
    async fn list_users(&self, caller: &AccessClaims, query: &UserQuery) -> Result<Page<Value>> {
        let admin = is_admin(caller);
        let query = UserQuery {
            public_fields_only: !admin,
            count_limit: Some(self.parts().policy.users_max_total),
            ..query.clone()
        };
        let page = self.parts().users.list_users(&query).await?;
        let refs: Vec<&User> = page.items.iter().collect();
        let connected = if admin {
            HashSet::new()
        } else {
            self.connected_among(caller, &refs).await?
        };
        let items = page
            .items
            .iter()
            .map(|u| user_view(u, admin || u.id == caller.sub, connected.contains(&u.id)))
            .collect();
        Ok(Page {
            items,
            total: page.total,
            total_exact: page.total_exact,
        })
    }

    async fn get_user(&self, caller: &AccessClaims, id: &str) -> Result<Value> {
        let user = self.existing_user(id).await?;
        let full = is_self_or_admin(caller, id);
        if !user.is_active && !is_admin(caller) {
            return Err(Error::new(ErrorKind::NotFound));
        }
        let connected = !full && self.connected_among(caller, &[&user]).await?.contains(id);
        Ok(user_view(&user, full, connected))
    }

    async fn update_user(
        &self,
        caller: &AccessClaims,
        id: &str,
        update: &ProfileUpdate,
        ctx: &RequestContext,
    ) -> Result<User> {
        self_or_admin(caller, id)?;
        let mut user = self.existing_user(id).await?;
        if update.patch.is_active.is_some() && !is_admin(caller) {
            return Err(field_error("is_active", "can be changed by an admin only"));
        }
        if update.is_empty() {
            return Ok(user);
        }
        let p = self.parts();
        if update.patch != UserPatch::default() {
            user = p.users.update_user(id, &update.patch).await?;
        }
        if let Some(changes) = &update.preferences {
            p.profiles
                .update_preferences(id, self.now(), &|prefs| changes.apply(prefs))
                .await?;
            p.users.invalidate_user(id).await;
            user = self.existing_user(id).await?;
        }
        if update.patch.is_active == Some(false) {
            self.revoke_all(id, None).await?;
        }
        self.audit_as(
            "profile_updated",
            Some(&caller.sub),
            id,
            Some(update.fields.join(",")),
            ctx,
        )
        .await;
        Ok(user)
    }

    async fn deactivate_user(
        &self,
        caller: &AccessClaims,
        id: &str,
        ctx: &RequestContext,
    ) -> Result<()> {
        self_or_admin(caller, id)?;
        self.existing_user(id).await?;
        let patch = UserPatch {
            is_active: Some(false),
            ..UserPatch::default()
        };
        self.parts().users.update_user(id, &patch).await?;
        self.revoke_all(id, None).await?;
        self.audit_as("account_deactivated", Some(&caller.sub), id, None, ctx)
            .await;
        Ok(())
    }

    async fn update_preferences(
        &self,
        caller: &AccessClaims,
        id: &str,
        changes: &PreferenceChanges,
        ctx: &RequestContext,
    ) -> Result<BTreeMap<String, Value>> {
        self_or_admin(caller, id)?;
        self.existing_user(id).await?;
        let p = self.parts();
        let prefs = p
            .profiles
            .update_preferences(id, self.now(), &|prefs| changes.apply(prefs))
            .await?;
        p.users.invalidate_user(id).await;
        self.audit_as("preferences_updated", Some(&caller.sub), id, None, ctx)
            .await;
        Ok(prefs)
    }

    async fn update_privacy(
        &self,
        caller: &AccessClaims,
        id: &str,
        settings: &BTreeMap<String, Visibility>,
        ctx: &RequestContext,
    ) -> Result<BTreeMap<String, Visibility>> {
        self_or_admin(caller, id)?;
        self.existing_user(id).await?;
        let patch = UserPatch {
            privacy_settings: Some(settings.clone()),
            ..UserPatch::default()
        };
        let user = self.parts().users.update_user(id, &patch).await?;
        self.audit_as("privacy_updated", Some(&caller.sub), id, None, ctx)
            .await;
        Ok(user.privacy_settings)
    }

    async fn social_accounts(&self, caller: &AccessClaims, id: &str) -> Result<Vec<SocialAccount>> {
        self_or_admin(caller, id)?;
        self.existing_user(id).await?;
        self.parts().users.list_identities(id).await
    }

    async fn unlink_social_account(
        &self,
        caller: &AccessClaims,
        id: &str,
        provider: &str,
        ctx: &RequestContext,
    ) -> Result<()> {
        self_or_admin(caller, id)?;
        self.existing_user(id).await?;
        self.parts().users.unlink_identity(id, provider).await?;
        self.audit_as(
            "social_account_unlinked",
            Some(&caller.sub),
            id,
            Some(provider.to_owned()),
            ctx,
        )
        .await;
        Ok(())
    }

    async fn connections(
        &self,
        caller: &AccessClaims,
        id: &str,
        page: u32,
        per_page: u32,
    ) -> Result<Page<Connection>> {
        self_or_admin(caller, id)?;
        self.existing_user(id).await?;
        let per = i64::from(per_page.clamp(1, MAX_CONNECTION_PAGE));
        let offset = (i64::from(page.max(1)) - 1) * per;
        self.parts()
            .profiles
            .list_connections(id, per, offset)
            .await
    }

    async fn create_connection(
        &self,
        caller: &AccessClaims,
        id: &str,
        new: &NewConnection,
        ctx: &RequestContext,
    ) -> Result<Connection> {
        self_or_admin(caller, id)?;
        let owner = self.existing_user(id).await?;
        if !owner.is_active {
            return Err(Error::new(ErrorKind::NotFound));
        }
        if let Some(target) = &new.target_user_id {
            if target == id {
                return Err(field_error(
                    "target_user_id",
                    "cannot connect a user to themself",
                ));
            }
            match self.parts().users.get_user(target).await? {
                Some(t) if t.is_active => {}
                _ => return Err(field_error("target_user_id", "no such user")),
            }
            if new.status == Some(ConnectionStatus::Accepted) && !is_admin(caller) {
                return Err(field_error(
                    "status",
                    "a connection to another user starts pending: only that user can accept it",
                ));
            }
        }
        let now = self.now();
        let connection = Connection {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: id.to_owned(),
            target_user_id: new.target_user_id.clone(),
            external_reference: new.external_reference.clone(),
            connection_type: new.connection_type.clone(),
            status: new.status.unwrap_or(ConnectionStatus::Pending),
            attributes: new.attributes.clone(),
            created_at: now,
            updated_at: now,
        };
        match self.parts().profiles.create_connection(&connection).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Conflict => {
                return Err(Error::msg(
                    ErrorKind::Conflict,
                    "A connection between these two already exists.",
                ))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(field_error("target_user_id", "no such user"))
            }
            Err(e) => return Err(e),
        }
        self.audit_as(
            "connection_created",
            Some(&caller.sub),
            id,
            Some(connection.id.clone()),
            ctx,
        )
        .await;
        // Read it back: the stored timestamps are what both users will see.
        Ok(self
            .parts()
            .profiles
            .get_connection(&connection.id)
            .await?
            .unwrap_or(connection))
    }

    async fn update_connection(
        &self,
        caller: &AccessClaims,
        id: &str,
        connection_id: &str,
        change: &ConnectionChange,
        ctx: &RequestContext,
    ) -> Result<Connection> {
        self_or_admin(caller, id)?;
        let current = self.connection_of(id, connection_id).await?;
        if !is_admin(caller) {
            let invited = current.target_user_id.as_deref() == Some(id);
            if change.status.is_some() && current.target_user_id.is_some() && !invited {
                return Err(Error::msg(
                    ErrorKind::Forbidden,
                    "Only the invited user can change the status of this connection.",
                ));
            }
            if change.attributes.is_some() && current.user_id != id {
                return Err(Error::msg(
                    ErrorKind::Forbidden,
                    "Only the owner of this connection can change its attributes.",
                ));
            }
        }
        let updated = self
            .parts()
            .profiles
            .update_connection(connection_id, change, self.now())
            .await?;
        self.audit_as(
            "connection_updated",
            Some(&caller.sub),
            id,
            Some(connection_id.to_owned()),
            ctx,
        )
        .await;
        Ok(updated)
    }

    async fn delete_connection(
        &self,
        caller: &AccessClaims,
        id: &str,
        connection_id: &str,
        ctx: &RequestContext,
    ) -> Result<()> {
        self_or_admin(caller, id)?;
        self.connection_of(id, connection_id).await?;
        if !self
            .parts()
            .profiles
            .delete_connection(connection_id)
            .await?
        {
            return Err(Error::new(ErrorKind::NotFound));
        }
        self.audit_as(
            "connection_deleted",
            Some(&caller.sub),
            id,
            Some(connection_id.to_owned()),
            ctx,
        )
        .await;
        Ok(())
    }

    async fn sessions(&self, caller: &AccessClaims, id: &str) -> Result<Vec<SessionView>> {
        self_or_admin(caller, id)?;
        self.existing_user(id).await?;
        let sessions = self.parts().sessions.list_sessions(id, self.now()).await?;
        Ok(sessions
            .into_iter()
            .map(|s| SessionView {
                current: s.id == caller.sid,
                id: s.id,
                method: s.method,
                created_at: s.created_at,
                last_used_at: s.last_used_at,
                expires_at: s.expires_at,
                ip: s.ip,
                user_agent: s.user_agent,
            })
            .collect())
    }

    async fn revoke_session(
        &self,
        caller: &AccessClaims,
        id: &str,
        session_id: &str,
        ctx: &RequestContext,
    ) -> Result<()> {
        self_or_admin(caller, id)?;
        let p = self.parts();
        match p.sessions.get_session(session_id).await? {
            Some(s) if s.user_id == id => {}
            _ => return Err(Error::new(ErrorKind::NotFound)),
        }
        if p.sessions.revoke_session(session_id, self.now()).await? {
            self.announce_revoked(&[session_id.to_owned()]).await;
        }
        self.audit_as(
            "session_revoked",
            Some(&caller.sub),
            id,
            Some(session_id.to_owned()),
            ctx,
        )
        .await;
        Ok(())
    }

    async fn export_user(
        &self,
        caller: &AccessClaims,
        id: &str,
        ctx: &RequestContext,
    ) -> Result<UserExport> {
        self_or_admin(caller, id)?;
        let p = self.parts();
        let user = self.existing_user(id).await?;
        let mut connections = Vec::new();
        loop {
            let offset = i64::try_from(connections.len()).unwrap_or(i64::MAX);
            let page = p.profiles.list_connections(id, 1000, offset).await?;
            let done = page.items.len() < 1000;
            connections.extend(page.items);
            if done {
                break;
            }
        }
        let sessions = p.profiles.all_sessions(id).await?;
        let audit_events = p.profiles.user_audit_events(id).await?;
        let export = UserExport {
            preferences: user.preferences.clone(),
            privacy_settings: user.privacy_settings.clone(),
            social_accounts: p.users.list_identities(id).await?,
            user,
            connections,
            sessions,
            audit_events,
            exported_at: self.now(),
        };
        self.audit_as("data_exported", Some(&caller.sub), id, None, ctx)
            .await;
        Ok(export)
    }

    async fn erase_user(
        &self,
        caller: &AccessClaims,
        id: &str,
        ctx: &RequestContext,
    ) -> Result<ErasedUser> {
        self_or_admin(caller, id)?;
        self.existing_user(id).await?;
        let p = self.parts();
        let now = self.now();
        let erasure = Erasure {
            email: format!("erased-{id}@erased.invalid"),
            name: ERASED_NAME.to_owned(),
            at: now,
            purge_at: now + chrono_dur(p.policy.account_retention),
        };
        // Revoke first, so every instance refuses the tokens before the rows go.
        self.revoke_all(id, None).await?;
        let erased = p.profiles.erase_user(id, &erasure).await;
        p.users.invalidate_user(id).await;
        let Some(deleted_sessions) = erased? else {
            return Err(Error::msg(
                ErrorKind::Conflict,
                "This account is already erased.",
            ));
        };
        // A session opened between the revocation and the erasure is gone
        // too: tell every instance.
        self.announce_revoked(&deleted_sessions).await;
        // The user's own request data is personal data too: keep it only
        // when someone else (an admin) erased the account.
        let own = caller.sub == id;
        let ctx = if own {
            RequestContext::default()
        } else {
            ctx.clone()
        };
        self.audit_as("account_erased", Some(&caller.sub), id, None, &ctx)
            .await;
        let user = self.existing_user(id).await?;
        Ok(ErasedUser {
            user,
            scheduled_purge_at: erasure.purge_at,
        })
    }

    async fn audit_events(
        &self,
        caller: &AccessClaims,
        query: &AuditQuery,
    ) -> Result<Page<AuditEvent>> {
        if !is_admin(caller) {
            return Err(Error::new(ErrorKind::Forbidden));
        }
        self.parts().audit.list_events(query).await
    }

    async fn purge_due(&self, now: DateTime<Utc>) -> Result<PurgeReport> {
        let p = self.parts();
        let mut report = PurgeReport::default();
        loop {
            let due = p.profiles.users_due_for_purge(now, PURGE_BATCH).await?;
            for id in &due {
                if p.profiles.purge_user(id, now).await? {
                    p.users.invalidate_user(id).await;
                    report.users += 1;
                    self.audit_as("account_purged", None, id, None, &RequestContext::default())
                        .await;
                }
            }
            if due.len() < usize::try_from(PURGE_BATCH).unwrap_or(usize::MAX) {
                break;
            }
        }
        let cutoff = now - chrono_dur(p.policy.audit_retention);
        report.audit_events = p.profiles.purge_audit_before(cutoff).await?;
        if report != PurgeReport::default() {
            tracing::info!(
                users = report.users,
                audit_events = report.audit_events,
                "purged what was due"
            );
        }
        Ok(report)
    }
}
