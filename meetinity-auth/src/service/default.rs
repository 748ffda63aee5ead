//! [`Authenticator`]: the default [`AuthService`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::liveness::{Liveness, LivenessCache, REVOKED_TOPIC};
use super::{
    AuthService, Callback, DependencyStatus, LoginStart, Readiness, Registration, TokenSet,
};
use crate::cache::Cache;
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::mail::{Mail, Mailer};
use crate::model::{
    AuditEvent, NewUser, OneTimePurpose, RequestContext, Rotation, Session, User, UserPatch,
};
use crate::password::{check_strength, PasswordHasher};
use crate::provider::IdentityProvider;
use crate::secret::{hash_token, random_token, OneTimeToken, Password, RefreshToken};
use crate::store::{AuditStore, OneTimeTokenStore, ProfileStore, SessionStore, UserStore};
use crate::token::{new_refresh_token, open_successor, seal_successor, AccessClaims, TokenService};

/// Lifetime of an email-verification token.
pub const VERIFY_EMAIL_TTL: Duration = Duration::from_secs(24 * 3600);
/// Lifetime of a password-reset token.
pub const RESET_PASSWORD_TTL: Duration = Duration::from_secs(30 * 60);
/// At most this many password-reset mails per account per [`RESET_MAIL_WINDOW`].
const RESET_MAILS_PER_WINDOW: u64 = 5;
/// The window of [`RESET_MAILS_PER_WINDOW`].
const RESET_MAIL_WINDOW: Duration = Duration::from_secs(3600);

/// Policy knobs of [`Authenticator`], from [`crate::Config`].
#[derive(Debug, Clone)]
pub struct Policy {
    /// Extra redirect URIs accepted (exact match).
    pub allowed_redirects: Vec<String>,
    /// Verified emails that get the `admin` role (lowercase).
    pub admin_emails: Vec<String>,
    /// Absolute session lifetime.
    pub refresh_ttl: Duration,
    /// Grace window for concurrent refreshes.
    pub refresh_grace: Duration,
    /// Base of links in mails.
    pub public_base_url: String,
    /// Login attempts per account per window before 429.
    pub login_max_failures: u64,
    /// Login attempts per IP per window before 429.
    pub login_ip_max_failures: u64,
    /// The throttling window.
    pub login_failure_window: Duration,
    /// How long an erased account's pseudonymous row is kept before the
    /// purge deletes it (`ACCOUNT_RETENTION_DAYS`).
    pub account_retention: Duration,
    /// How long audit events are kept (`AUDIT_RETENTION_DAYS`).
    pub audit_retention: Duration,
    /// User listings and searches count at most this many matches and
    /// refuse pages past them (`USERS_MAX_TOTAL`).
    pub users_max_total: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allowed_redirects: Vec::new(),
            admin_emails: Vec::new(),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            refresh_grace: Duration::from_secs(5),
            public_base_url: "http://localhost:5001".into(),
            login_max_failures: 5,
            login_ip_max_failures: 50,
            login_failure_window: Duration::from_secs(900),
            account_retention: Duration::from_secs(30 * 86_400),
            audit_retention: Duration::from_secs(365 * 86_400),
            users_max_total: 1000,
        }
    }
}

/// The parts [`Authenticator`] is made of; see [`super::AuthServiceBuilder`].
#[derive(Debug, Clone)]
pub struct Parts {
    /// Users (usually a caching decorator over the store).
    pub users: Arc<dyn UserStore>,
    /// Sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Mailed tokens.
    pub one_time: Arc<dyn OneTimeTokenStore>,
    /// Audit log.
    pub audit: Arc<dyn AuditStore>,
    /// Preferences, connections, export, erasure and purge.
    pub profiles: Arc<dyn ProfileStore>,
    /// Shared short-lived state: flows, counters, fan-out.
    pub cache: Arc<dyn Cache>,
    /// Access tokens.
    pub tokens: Arc<TokenService>,
    /// Argon2id.
    pub hasher: Arc<PasswordHasher>,
    /// Outgoing mail.
    pub mailer: Arc<dyn Mailer>,
    /// Identity providers by name.
    pub providers: HashMap<String, Arc<dyn IdentityProvider>>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Policy.
    pub policy: Policy,
}

/// The default [`AuthService`].
#[derive(Debug, Clone)]
pub struct Authenticator {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) p: Parts,
    pub(super) liveness: LivenessCache,
}

fn dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// A syntactically plausible email address (the mail proves the rest).
pub(crate) fn validate_email(raw: &str) -> Result<String> {
    let email = raw.trim();
    let invalid = || {
        let mut m = serde_json::Map::new();
        m.insert("email".into(), "must be a valid email address".into());
        Error::validation(m)
    };
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
    if local.is_empty()
        || local.len() > 64
        || domain.len() < 3
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains('@')
    {
        return Err(invalid());
    }
    Ok(email.to_owned())
}

impl Authenticator {
    /// Assembles the service and starts listening for revocations published
    /// by other instances.
    pub fn new(parts: Parts) -> Self {
        let inner = Arc::new(Inner {
            p: parts,
            liveness: LivenessCache::new(1_000_000, Duration::from_secs(60)),
        });
        let mut rx = inner.p.cache.subscribe();
        let weak = Arc::downgrade(&inner);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                "Authenticator::new was called outside a Tokio runtime: revocations published by \
                 other instances will not be heard"
            );
            return Self { inner };
        };
        runtime.spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(msg) => {
                        let Some(inner) = weak.upgrade() else { break };
                        if msg.topic == REVOKED_TOPIC {
                            // Revocation is final: record it, no database read needed.
                            inner.liveness.revoke(&msg.payload);
                        } else if msg.topic == crate::cache::RESUBSCRIBED_TOPIC {
                            // Revocations may have been missed: re-read from the database.
                            inner.liveness.clear();
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Messages were lost: forget everything rather than trust stale state.
                        let Some(inner) = weak.upgrade() else { break };
                        inner.liveness.clear();
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Self { inner }
    }

    /// The parts this service is made of.
    pub fn parts(&self) -> &Parts {
        &self.inner.p
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        self.inner.p.clock.now()
    }

    pub(super) fn roles_for(&self, user: &User) -> Vec<String> {
        let mut roles = user.roles.clone();
        if user.email_verified
            && self
                .inner
                .p
                .policy
                .admin_emails
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&user.email))
            && !roles.iter().any(|r| r == "admin")
        {
            roles.push("admin".into());
        }
        roles
    }

    pub(super) async fn audit(
        &self,
        event: &str,
        user_id: Option<&str>,
        outcome: &str,
        method: Option<&str>,
        detail: Option<&str>,
        ctx: &RequestContext,
    ) {
        let ev = AuditEvent {
            id: uuid::Uuid::new_v4().to_string(),
            event: event.to_owned(),
            actor_id: user_id.map(str::to_owned),
            user_id: user_id.map(str::to_owned),
            outcome: outcome.to_owned(),
            method: method.map(str::to_owned),
            detail: detail.map(str::to_owned),
            ip: ctx.ip.clone(),
            user_agent: ctx.user_agent.clone(),
            created_at: self.now(),
        };
        if let Err(e) = self.inner.p.audit.record(&ev).await {
            tracing::warn!(event, error = %e, "audit event not recorded");
        }
    }

    pub(super) fn issue_access(
        &self,
        user: &User,
        session: &Session,
    ) -> Result<(String, AccessClaims)> {
        let roles = self.roles_for(user);
        self.inner
            .p
            .tokens
            .issue(&user.id, &session.id, &user.email, &session.method, &roles)
    }

    pub(super) fn token_set(
        &self,
        user: User,
        session: &Session,
        refresh: RefreshToken,
    ) -> Result<TokenSet> {
        let (token, claims) = self.issue_access(&user, session)?;
        Ok(TokenSet {
            token,
            refresh_token: refresh,
            token_type: "Bearer",
            expires_in: claims.exp - claims.iat,
            user,
        })
    }

    /// Opens a session for `user` and issues its first token set.
    pub(super) async fn open_session(
        &self,
        user: User,
        method: &str,
        ctx: &RequestContext,
    ) -> Result<TokenSet> {
        let now = self.now();
        let session = Session {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user.id.clone(),
            method: method.to_owned(),
            created_at: now,
            last_used_at: now,
            expires_at: now + dur(self.inner.p.policy.refresh_ttl),
            ip: ctx.ip.clone(),
            user_agent: ctx
                .user_agent
                .clone()
                .map(|ua| ua.chars().take(512).collect()),
            revoked_at: None,
        };
        let refresh = new_refresh_token();
        let epoch = self.inner.liveness.epoch();
        self.inner
            .p
            .sessions
            .create_session(&session, &hash_token(refresh.expose()))
            .await?;
        self.inner.liveness.fill(
            &session.id,
            Liveness {
                user_id: user.id.as_str().into(),
                expires_at: session.expires_at.timestamp(),
                revoked: false,
            },
            epoch,
        );
        if let Err(e) = self.inner.p.users.record_login(&user.id, now).await {
            tracing::warn!(error = %e, "last_login not recorded");
        }
        let user = self.inner.p.users.get_user(&user.id).await?.unwrap_or(user);
        self.token_set(user, &session, refresh)
    }

    /// Marks sessions revoked in the local liveness cache and tells every
    /// other instance.
    pub(super) async fn announce_revoked(&self, sids: &[String]) {
        for sid in sids {
            self.inner.liveness.revoke(sid);
            if let Err(e) = self.inner.p.cache.publish(REVOKED_TOPIC, sid).await {
                tracing::warn!(error = %e, "revocation not published to other instances");
            }
        }
    }

    pub(super) async fn revoke_all(&self, user_id: &str, except: Option<&str>) -> Result<()> {
        let sids = self
            .inner
            .p
            .sessions
            .revoke_user_sessions(user_id, except, self.now())
            .await?;
        self.announce_revoked(&sids).await;
        Ok(())
    }

    /// Hands `mail` to the mailer in the background: a slow or dead relay
    /// neither delays nor fails the request. A failure is logged (without
    /// the body, which carries a token) and counted by the mailer.
    pub(super) async fn send_mail(&self, mail: Mail) {
        let mailer = Arc::clone(&self.inner.p.mailer);
        let deliver = async move {
            if let Err(e) = mailer.send(&mail).await {
                tracing::error!(
                    to_domain = mail.to.rsplit('@').next().unwrap_or(""),
                    subject = %mail.subject,
                    error = %e,
                    "mail not sent"
                );
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(deliver);
            }
            Err(_) => deliver.await,
        }
    }

    pub(super) async fn send_verification(&self, user: &User) -> Result<()> {
        let token = random_token(32);
        let expires = self.now() + dur(VERIFY_EMAIL_TTL);
        self.inner
            .p
            .one_time
            .create_one_time(
                &hash_token(&token),
                OneTimePurpose::VerifyEmail,
                &user.id,
                expires,
            )
            .await?;
        let base = &self.inner.p.policy.public_base_url;
        let mail = Mail {
            to: user.email.clone(),
            subject: "Confirm your email address".into(),
            text: format!(
                "Welcome to Meetinity!\n\nConfirm your email address by opening this link within 24 hours:\n\n\
                 {base}/auth/email/verify?token={token}\n\n\
                 (or POST {{\"token\": \"{token}\"}} to {base}/auth/email/verify)\n\n\
                 If you did not sign up, ignore this mail.\n"
            ),
        };
        self.send_mail(mail).await;
        Ok(())
    }

    /// Throttles login attempts per account and per IP; returns the keys to
    /// clear on success.
    pub(super) async fn throttle_login(&self, email: &str, ctx: &RequestContext) -> Result<String> {
        let pol = &self.inner.p.policy;
        let cache = &self.inner.p.cache;
        let acct_key = format!("throttle:login:acct:{}", hash_token(&email.to_lowercase()));
        let mut limited: Option<Duration> = None;
        match cache.incr(&acct_key, pol.login_failure_window).await {
            Ok(n) if n > pol.login_max_failures => {
                limited = Some(
                    cache
                        .ttl(&acct_key)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or(pol.login_failure_window),
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "login throttle unavailable"),
        }
        // Per IP, only failures count (an office behind one address logs in
        // many times); the counter is read here and bumped on failure.
        if let Some(ip_key) = Self::ip_throttle_key(ctx) {
            let failures = match cache.get(&ip_key).await {
                Ok(v) => v
                    .and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse::<u64>().ok())
                    .unwrap_or(0),
                Err(e) => {
                    tracing::warn!(error = %e, "login throttle unavailable");
                    0
                }
            };
            if failures >= pol.login_ip_max_failures {
                let t = cache
                    .ttl(&ip_key)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(pol.login_failure_window);
                limited = Some(limited.map_or(t, |l| l.max(t)));
            }
        }
        if let Some(after) = limited {
            let secs = after.as_secs().max(1);
            return Err(
                Error::new(ErrorKind::RateLimited).with_retry_after(Duration::from_secs(secs))
            );
        }
        Ok(acct_key)
    }

    fn ip_throttle_key(ctx: &RequestContext) -> Option<String> {
        ctx.ip.as_ref().map(|ip| format!("throttle:login:ip:{ip}"))
    }

    /// Counts a failed password check against the client's IP.
    pub(super) async fn record_login_failure(&self, ctx: &RequestContext) {
        if let Some(ip_key) = Self::ip_throttle_key(ctx) {
            let window = self.inner.p.policy.login_failure_window;
            if let Err(e) = self.inner.p.cache.incr(&ip_key, window).await {
                tracing::warn!(error = %e, "login throttle unavailable");
            }
        }
    }

    pub(super) fn provider(&self, name: &str) -> Result<&Arc<dyn IdentityProvider>> {
        self.inner
            .p
            .providers
            .get(name)
            .ok_or_else(|| Error::new(ErrorKind::UnknownProvider))
    }

    pub(super) async fn active_user(&self, id: &str) -> Result<User> {
        match self.inner.p.users.get_user(id).await? {
            Some(u) if u.is_active => Ok(u),
            _ => Err(Error::new(ErrorKind::InvalidToken)),
        }
    }
}

#[async_trait]
impl AuthService for Authenticator {
    fn providers(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.p.providers.keys().cloned().collect();
        names.sort();
        names
    }

    async fn start_login(
        &self,
        provider: &str,
        redirect_uri: Option<&str>,
        browser: bool,
        ctx: &RequestContext,
    ) -> Result<LoginStart> {
        self.start_social(provider, redirect_uri, browser, ctx)
            .await
    }

    async fn finish_login(
        &self,
        provider: &str,
        cb: &Callback,
        ctx: &RequestContext,
    ) -> Result<TokenSet> {
        let result = self.finish_social(provider, cb, ctx).await;
        if let Err(e) = &result {
            self.audit(
                "login_failed",
                None,
                "failure",
                Some(provider),
                Some(e.reason()),
                ctx,
            )
            .await;
        }
        result
    }

    async fn verify(&self, token: &str) -> Result<AccessClaims> {
        let claims = self.inner.p.tokens.verify(token)?;
        let now = self.inner.p.clock.unix();
        let state = match self.inner.liveness.get(&claims.sid) {
            Some(s) => s,
            None => {
                // Cold: the database is the source of truth.
                let epoch = self.inner.liveness.epoch();
                let session = self.inner.p.sessions.get_session(&claims.sid).await?;
                let state = match session {
                    Some(s) => Liveness {
                        user_id: s.user_id.as_str().into(),
                        expires_at: s.expires_at.timestamp(),
                        revoked: s.revoked_at.is_some(),
                    },
                    None => Liveness::revoked(),
                };
                self.inner.liveness.fill(&claims.sid, state.clone(), epoch);
                state
            }
        };
        if state.revoked || now >= state.expires_at || *state.user_id != *claims.sub {
            return Err(Error::new(ErrorKind::InvalidToken));
        }
        Ok(claims)
    }

    async fn profile(&self, claims: &AccessClaims) -> Result<User> {
        self.active_user(&claims.sub).await
    }

    async fn refresh(&self, presented: &RefreshToken, ctx: &RequestContext) -> Result<TokenSet> {
        let p = &self.inner.p;
        let now = self.now();
        let old_hash = hash_token(presented.expose());
        let successor = new_refresh_token();
        let sealed = seal_successor(presented, &successor);
        let rotation = p
            .sessions
            .rotate_refresh(&old_hash, &hash_token(successor.expose()), &sealed, now)
            .await?;
        match rotation {
            Rotation::Unknown => Err(Error::new(ErrorKind::InvalidRefreshToken)),
            Rotation::Rotated(session) => {
                if !session.is_live(now) {
                    return Err(Error::new(ErrorKind::InvalidRefreshToken));
                }
                let user = match p.users.get_user(&session.user_id).await? {
                    Some(u) if u.is_active => u,
                    _ => return Err(Error::new(ErrorKind::InvalidRefreshToken)),
                };
                self.token_set(user, &session, successor)
            }
            Rotation::AlreadyRotated(record, session) => {
                if !session.is_live(now) {
                    return Err(Error::new(ErrorKind::InvalidRefreshToken));
                }
                let within_grace = record
                    .rotated_at
                    .is_some_and(|at| now - at <= dur(p.policy.refresh_grace));
                let recovered = record
                    .successor_sealed
                    .as_deref()
                    .and_then(|s| open_successor(presented, s));
                if let (true, Some(next)) = (within_grace, recovered) {
                    let user = match p.users.get_user(&session.user_id).await? {
                        Some(u) if u.is_active => u,
                        _ => return Err(Error::new(ErrorKind::InvalidRefreshToken)),
                    };
                    return self.token_set(user, &session, next);
                }
                // Reuse of a rotated token: someone holds a copy. Kill the session.
                if p.sessions.revoke_session(&session.id, now).await? {
                    self.announce_revoked(std::slice::from_ref(&session.id))
                        .await;
                }
                self.audit(
                    "refresh_reuse",
                    Some(&session.user_id),
                    "failure",
                    Some(&session.method),
                    Some("session revoked"),
                    ctx,
                )
                .await;
                Err(Error::new(ErrorKind::RefreshTokenReused))
            }
        }
    }

    async fn logout(&self, claims: &AccessClaims, ctx: &RequestContext) -> Result<()> {
        self.inner
            .p
            .sessions
            .revoke_session(&claims.sid, self.now())
            .await?;
        self.announce_revoked(std::slice::from_ref(&claims.sid))
            .await;
        self.audit(
            "logout",
            Some(&claims.sub),
            "success",
            Some(&claims.provider),
            None,
            ctx,
        )
        .await;
        Ok(())
    }

    async fn logout_all(&self, claims: &AccessClaims, ctx: &RequestContext) -> Result<()> {
        self.revoke_all(&claims.sub, None).await?;
        self.audit(
            "logout_all",
            Some(&claims.sub),
            "success",
            Some(&claims.provider),
            None,
            ctx,
        )
        .await;
        Ok(())
    }

    async fn register(&self, reg: Registration, ctx: &RequestContext) -> Result<TokenSet> {
        let email = validate_email(&reg.email)?;
        check_strength(&reg.password, &email)?;
        let name = match reg.name.map(|n| n.trim().to_owned()) {
            Some(n) if n.chars().count() > 200 => {
                let mut m = serde_json::Map::new();
                m.insert("name".into(), "must be at most 200 characters".into());
                return Err(Error::validation(m));
            }
            Some(n) if n.is_empty() => None,
            other => other,
        };
        let hash = self.inner.p.hasher.hash(&reg.password).await?;
        let new = NewUser {
            email,
            email_verified: false,
            name,
            photo_url: None,
            provider: "password".into(),
            roles: Vec::new(),
        };
        let user = match self.inner.p.users.create_user(&new, Some(&hash)).await {
            Ok(u) => u,
            Err(e) if matches!(e.kind(), ErrorKind::EmailTaken | ErrorKind::Conflict) => {
                self.audit(
                    "register",
                    None,
                    "failure",
                    Some("password"),
                    Some("email_taken"),
                    ctx,
                )
                .await;
                return Err(Error::new(ErrorKind::EmailTaken));
            }
            Err(e) => return Err(e),
        };
        self.audit(
            "register",
            Some(&user.id),
            "success",
            Some("password"),
            None,
            ctx,
        )
        .await;
        if let Err(e) = self.send_verification(&user).await {
            tracing::error!(error = %e, "verification token not stored; the user can ask for a new mail");
        }
        self.open_session(user, "password", ctx).await
    }

    async fn login(
        &self,
        email: &str,
        password: &Password,
        ctx: &RequestContext,
    ) -> Result<TokenSet> {
        let email = email.trim();
        if email.len() > 254 || password.expose().len() > 1024 {
            return Err(Error::new(ErrorKind::InvalidCredentials));
        }
        let acct_key = self.throttle_login(email, ctx).await?;
        let p = &self.inner.p;
        let user = p.users.get_user_by_email(email).await?;
        let hash = match &user {
            Some(u) => p.users.password_hash(&u.id).await?,
            None => None,
        };
        let ok = p.hasher.verify(password, hash.as_deref()).await?;
        match user {
            Some(user) if ok && user.is_active => {
                if let Err(e) = p.cache.delete(&acct_key).await {
                    tracing::warn!(error = %e, "login throttle not reset");
                }
                self.audit(
                    "login",
                    Some(&user.id),
                    "success",
                    Some("password"),
                    None,
                    ctx,
                )
                .await;
                self.open_session(user, "password", ctx).await
            }
            other => {
                self.record_login_failure(ctx).await;
                self.audit(
                    "login_failed",
                    other.as_ref().map(|u| u.id.as_str()),
                    "failure",
                    Some("password"),
                    Some("invalid_credentials"),
                    ctx,
                )
                .await;
                Err(Error::new(ErrorKind::InvalidCredentials))
            }
        }
    }

    async fn verify_email(&self, token: &OneTimeToken, ctx: &RequestContext) -> Result<User> {
        let p = &self.inner.p;
        let user_id = p
            .one_time
            .consume_one_time(
                &hash_token(token.expose()),
                OneTimePurpose::VerifyEmail,
                self.now(),
            )
            .await?
            .ok_or_else(|| Error::new(ErrorKind::InvalidOneTimeToken))?;
        let patch = UserPatch {
            email_verified: Some(true),
            ..UserPatch::default()
        };
        let user = p.users.update_user(&user_id, &patch).await?;
        self.audit("email_verified", Some(&user.id), "success", None, None, ctx)
            .await;
        Ok(user)
    }

    async fn resend_verification(&self, claims: &AccessClaims, ctx: &RequestContext) -> Result<()> {
        let user = self.active_user(&claims.sub).await?;
        if !user.email_verified {
            self.send_verification(&user).await?;
            self.audit(
                "verification_resent",
                Some(&user.id),
                "success",
                None,
                None,
                ctx,
            )
            .await;
        }
        Ok(())
    }

    async fn forgot_password(&self, email: &str, ctx: &RequestContext) -> Result<()> {
        let Ok(email) = validate_email(email) else {
            return Ok(());
        };
        let this = self.clone();
        let ctx = ctx.clone();
        // Done in the background so the answer's timing says nothing about
        // whether the account exists.
        tokio::spawn(async move {
            let p = &this.inner.p;
            let user = match p.users.get_user_by_email(&email).await {
                Ok(Some(u)) if u.is_active => u,
                Ok(_) => return,
                Err(e) => {
                    tracing::error!(error = %e, "password reset lookup failed");
                    return;
                }
            };
            // A bounded number of reset mails per account, so that nobody can
            // flood someone's mailbox through this endpoint.
            let budget_key = format!("throttle:reset-mail:{}", hash_token(&user.id));
            match p.cache.incr(&budget_key, RESET_MAIL_WINDOW).await {
                Ok(n) if n > RESET_MAILS_PER_WINDOW => {
                    tracing::info!("password reset mail not sent: too many for this account");
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reset mail budget unavailable"),
            }
            let token = random_token(32);
            let expires = this.now() + dur(RESET_PASSWORD_TTL);
            if let Err(e) = p
                .one_time
                .create_one_time(
                    &hash_token(&token),
                    OneTimePurpose::ResetPassword,
                    &user.id,
                    expires,
                )
                .await
            {
                tracing::error!(error = %e, "reset token not stored");
                return;
            }
            let base = &p.policy.public_base_url;
            this.send_mail(Mail {
                to: user.email.clone(),
                subject: "Reset your password".into(),
                text: format!(
                    "Someone asked to reset the password of your Meetinity account.\n\n\
                     Your reset token (valid 30 minutes, single use): {token}\n\n\
                     Send it with your new password: POST {base}/auth/password/reset \
                     {{\"token\": \"{token}\", \"password\": \"...\"}}\n\n\
                     If it was not you, ignore this mail: your password is unchanged.\n"
                ),
            })
            .await;
            this.audit(
                "password_reset_requested",
                Some(&user.id),
                "success",
                None,
                None,
                &ctx,
            )
            .await;
        });
        Ok(())
    }

    async fn reset_password(
        &self,
        token: &OneTimeToken,
        password: &Password,
        ctx: &RequestContext,
    ) -> Result<()> {
        let p = &self.inner.p;
        let now = self.now();
        // The rules that do not depend on the account are checked before the
        // token is consumed, so a weak password does not burn it.
        check_strength(password, "")?;
        let user_id = p
            .one_time
            .consume_one_time(
                &hash_token(token.expose()),
                OneTimePurpose::ResetPassword,
                now,
            )
            .await?
            .ok_or_else(|| Error::new(ErrorKind::InvalidOneTimeToken))?;
        let user = p
            .users
            .get_user(&user_id)
            .await?
            .ok_or_else(|| Error::new(ErrorKind::InvalidOneTimeToken))?;
        check_strength(password, &user.email)?;
        let hash = p.hasher.hash(password).await?;
        p.users.set_password_hash(&user.id, &hash, now).await?;
        // Every session goes, whoever opened it (a reset is how the owner of
        // the mailbox takes an account back).
        self.revoke_all(&user.id, None).await?;
        if !user.email_verified {
            // The reset token came through the mailbox: that proves the address.
            let patch = UserPatch {
                email_verified: Some(true),
                ..UserPatch::default()
            };
            if let Err(e) = p.users.update_user(&user.id, &patch).await {
                tracing::warn!(error = %e, "email not marked verified after a reset");
            }
        }
        self.audit("password_reset", Some(&user.id), "success", None, None, ctx)
            .await;
        Ok(())
    }

    async fn change_password(
        &self,
        claims: &AccessClaims,
        current: &Password,
        new: &Password,
        ctx: &RequestContext,
    ) -> Result<()> {
        let p = &self.inner.p;
        let user = self.active_user(&claims.sub).await?;
        // Guessing the current password with a stolen access token counts
        // against the same per-account (and per-IP) limit as logins.
        let acct_key = self.throttle_login(&user.email, ctx).await?;
        let hash = p.users.password_hash(&user.id).await?;
        if !p.hasher.verify(current, hash.as_deref()).await? {
            self.record_login_failure(ctx).await;
            self.audit(
                "password_change",
                Some(&user.id),
                "failure",
                Some("password"),
                Some("invalid_credentials"),
                ctx,
            )
            .await;
            return Err(Error::new(ErrorKind::InvalidCredentials));
        }
        if let Err(e) = p.cache.delete(&acct_key).await {
            tracing::warn!(error = %e, "login throttle not reset");
        }
        check_strength(new, &user.email)?;
        let new_hash = p.hasher.hash(new).await?;
        p.users
            .set_password_hash(&user.id, &new_hash, self.now())
            .await?;
        self.revoke_all(&user.id, Some(&claims.sid)).await?;
        self.audit(
            "password_change",
            Some(&user.id),
            "success",
            Some("password"),
            None,
            ctx,
        )
        .await;
        Ok(())
    }

    fn jwks(&self) -> serde_json::Value {
        self.inner.p.tokens.keys().jwks()
    }

    async fn readiness(&self) -> Readiness {
        let p = &self.inner.p;
        let mut checks = Vec::new();
        let db = tokio::time::timeout(Duration::from_secs(2), p.users.ping()).await;
        checks.push(status("database", db));
        if p.cache.name() != "moka" {
            let c = tokio::time::timeout(Duration::from_secs(2), p.cache.ping()).await;
            checks.push(status("redis", c));
        }
        Readiness { checks }
    }
}

fn status(
    name: &'static str,
    r: std::result::Result<Result<()>, tokio::time::error::Elapsed>,
) -> DependencyStatus {
    let error = match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("timed out".to_owned()),
    };
    DependencyStatus {
        name,
        ok: error.is_none(),
        error,
    }
}
