//! The [`AuthService`] seam, its default implementation [`Authenticator`]
//! and the [`AuthServiceBuilder`] that wires configuration, store, cache,
//! key set, providers, mailer and clock.
//!
//! ```no_run
//! # async fn run() -> meetinity_auth::Result<()> {
//! use meetinity_auth::{service::AuthServiceBuilder, AuthService, Config};
//! let auth = AuthServiceBuilder::from_config(Config::from_env()?).build().await?;
//! let claims = auth.verify("eyJ...").await?;
//! println!("user {} in session {}", claims.sub, claims.sid);
//! # Ok(()) }
//! ```

use async_trait::async_trait;
use serde::Serialize;

use crate::error::Result;
use crate::model::{RequestContext, User};
use crate::secret::{OneTimeToken, Password, RefreshToken};
use crate::token::AccessClaims;

mod builder;
mod default;
mod liveness;
mod social;
mod user_input;
mod users;

pub use builder::{AuthServiceBuilder, Backend};
pub use default::{Authenticator, Parts, Policy, RESET_PASSWORD_TTL, VERIFY_EMAIL_TTL};
pub use user_input::{
    connection_change_from_json, is_iana_timezone, privacy_from_json, NewConnection,
    PreferenceChanges, ProfileUpdate, HIDEABLE_FIELDS,
};
pub use users::{
    user_view, visibility_of, ErasedUser, PurgeReport, SessionView, UserExport, UserService,
};

/// What a successful sign-in, registration or refresh returns.
#[derive(Debug, Clone, Serialize)]
pub struct TokenSet {
    /// The access token (a JWT).
    pub token: String,
    /// The opaque refresh token (rotated on every use).
    #[serde(serialize_with = "ser_refresh")]
    pub refresh_token: RefreshToken,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The signed-in user.
    pub user: User,
}

fn ser_refresh<S: serde::Serializer>(t: &RefreshToken, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.expose())
}

/// The answer to starting a login with an identity provider.
#[derive(Debug, Clone)]
pub struct LoginStart {
    /// Where to send the user.
    pub auth_url: String,
    /// The opaque state (also inside `auth_url`).
    pub state: String,
    /// A value to set as an HttpOnly cookie binding the flow to this browser,
    /// when the flow was started by a browser.
    pub browser_binding: Option<String>,
}

/// What the provider sent back to the callback.
#[derive(Debug, Clone, Default)]
pub struct Callback {
    /// `code`.
    pub code: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `error`, when the provider refused.
    pub error: Option<String>,
    /// `iss` (RFC 9207), when the provider sends it.
    pub iss: Option<String>,
    /// The flow-binding cookie the browser sent, if any.
    pub browser_binding: Option<String>,
}

/// A registration request.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: Password,
    /// Optional display name.
    pub name: Option<String>,
}

/// The state of one dependency for `/ready`.
#[derive(Debug, Clone, Serialize)]
pub struct DependencyStatus {
    /// `database` or `redis`.
    pub name: &'static str,
    /// Whether it answered.
    pub ok: bool,
    /// Why not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Readiness of the service.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// Every dependency checked.
    pub checks: Vec<DependencyStatus>,
}

impl Readiness {
    /// Whether every dependency answered.
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// Everything the standard endpoints need, behind one `dyn`-usable seam.
///
/// Implemented by [`Authenticator`]; held as `Arc<dyn AuthService>`. The
/// users and admin operations come from the [`UserService`] supertrait.
#[async_trait]
pub trait AuthService: UserService + std::fmt::Debug + Send + Sync + 'static {
    /// Names of the configured identity providers.
    fn providers(&self) -> Vec<String>;

    /// Starts a login with `provider`: a fresh state, nonce and PKCE verifier
    /// kept server-side for 10 minutes. `browser` says whether the caller is a
    /// browser (the flow is then bound to it by a cookie).
    async fn start_login(
        &self,
        provider: &str,
        redirect_uri: Option<&str>,
        browser: bool,
        ctx: &RequestContext,
    ) -> Result<LoginStart>;

    /// Finishes a login: takes the state (single use), exchanges the code,
    /// validates the id_token, finds or creates the user, opens a session.
    async fn finish_login(
        &self,
        provider: &str,
        callback: &Callback,
        ctx: &RequestContext,
    ) -> Result<TokenSet>;

    /// Verifies an access token: signature, `typ`, `iss`, `aud`, times, and
    /// that its session is still live. The warm path makes no database call.
    async fn verify(&self, token: &str) -> Result<AccessClaims>;

    /// The signed-in user's profile.
    async fn profile(&self, claims: &AccessClaims) -> Result<User>;

    /// Rotates a refresh token and issues a new token set.
    async fn refresh(&self, refresh_token: &RefreshToken, ctx: &RequestContext)
        -> Result<TokenSet>;

    /// Revokes the caller's session.
    async fn logout(&self, claims: &AccessClaims, ctx: &RequestContext) -> Result<()>;

    /// Revokes every session of the caller.
    async fn logout_all(&self, claims: &AccessClaims, ctx: &RequestContext) -> Result<()>;

    /// Creates an email + password account, signs it in and mails a verification link.
    async fn register(&self, registration: Registration, ctx: &RequestContext) -> Result<TokenSet>;

    /// Signs in with email and password.
    async fn login(
        &self,
        email: &str,
        password: &Password,
        ctx: &RequestContext,
    ) -> Result<TokenSet>;

    /// Consumes an email-verification token.
    async fn verify_email(&self, token: &OneTimeToken, ctx: &RequestContext) -> Result<User>;

    /// Mails a new verification link to the caller (no-op if already verified).
    async fn resend_verification(&self, claims: &AccessClaims, ctx: &RequestContext) -> Result<()>;

    /// Mails a reset token if the account exists; answers the same either way.
    async fn forgot_password(&self, email: &str, ctx: &RequestContext) -> Result<()>;

    /// Sets a new password with a reset token and revokes every session.
    async fn reset_password(
        &self,
        token: &OneTimeToken,
        password: &Password,
        ctx: &RequestContext,
    ) -> Result<()>;

    /// Changes the caller's password and revokes their other sessions.
    async fn change_password(
        &self,
        claims: &AccessClaims,
        current: &Password,
        new: &Password,
        ctx: &RequestContext,
    ) -> Result<()>;

    /// The public verification keys (`{"keys": [...]}`).
    fn jwks(&self) -> serde_json::Value;

    /// Checks the database (and Redis when configured).
    async fn readiness(&self) -> Readiness;
}
