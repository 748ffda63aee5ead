//! Identity providers: who signs people in.
//!
//! [`IdentityProvider`] is the seam; [`OidcProvider`] implements it for any
//! OpenID Connect issuer through discovery, with presets for Google and
//! LinkedIn ([`OidcProviderConfig::google`], [`OidcProviderConfig::linkedin`]).
//! Adding a third provider is configuration: the server reads
//! `OIDC_PROVIDERS=acme` with `ACME_CLIENT_ID`, `ACME_CLIENT_SECRET`,
//! `ACME_REDIRECT_URI`, `ACME_ISSUER_URL` and optionally `ACME_SCOPES`
//! ([`crate::Config::extra_providers`]); an embedder builds an
//! [`OidcProviderConfig::new`] with its issuer, credentials and redirect URI
//! (and [`NoncePolicy::IfPresent`] only if it is known not to echo nonces).
//!
//! A login has two steps:
//!
//! 1. [`IdentityProvider::begin`] returns an [`Authorization`]: the URL to send
//!    the user to, and the `state`, nonce and PKCE verifier to remember in a
//!    [`FlowState`](crate::flow::FlowState).
//! 2. [`IdentityProvider::complete`] exchanges the code from the callback and
//!    validates the id_token against that flow, returning a
//!    [`ProviderIdentity`].
//!
//! Provider access and refresh tokens never leave [`IdentityProvider::complete`]:
//! they are used (for userinfo) and dropped, never stored or logged.

use std::fmt::{self, Debug};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::flow::FlowState;

mod oidc;

pub use oidc::{
    NoncePolicy, OidcProvider, OidcProviderConfig, DEFAULT_HTTP_TIMEOUT, ID_TOKEN_LEEWAY,
    JWKS_REFETCH_INTERVAL, MAX_RESPONSE_BYTES,
};

/// An identity provider that signs people in with the authorization-code flow.
#[async_trait]
pub trait IdentityProvider: Debug + Send + Sync + 'static {
    /// The provider's name, as in `/auth/{provider}` (`google`, `linkedin`).
    fn name(&self) -> &str;

    /// The issuer identifier, exactly as the provider's id_tokens (and,
    /// RFC 9207, authorization responses) carry it in `iss`.
    fn issuer(&self) -> &str;

    /// The configured default redirect URI.
    fn redirect_uri(&self) -> &str;

    /// Starts a login that will come back to `redirect_uri` (already checked
    /// against the allowed list by the caller): fresh state, nonce and (when
    /// the provider supports it) PKCE verifier.
    ///
    /// Errors: [`Unavailable`](crate::ErrorKind::Unavailable) when the provider
    /// cannot be reached (discovery), [`InvalidRedirect`](crate::ErrorKind::InvalidRedirect)
    /// for a malformed `redirect_uri`.
    async fn begin(&self, redirect_uri: &str) -> Result<Authorization>;

    /// Finishes the login started by `flow` with the authorization `code`:
    /// code exchange, then id_token validation.
    ///
    /// Errors: [`ProviderError`](crate::ErrorKind::ProviderError) when the
    /// token endpoint refuses, [`InvalidIdToken`](crate::ErrorKind::InvalidIdToken)
    /// when the id_token fails validation, [`Unavailable`](crate::ErrorKind::Unavailable)
    /// on network failures, [`InvalidState`](crate::ErrorKind::InvalidState)
    /// when the flow belongs to another provider.
    async fn complete(&self, code: &str, flow: &FlowState) -> Result<ProviderIdentity>;

    /// Whether every authorization response of this provider carries `iss`
    /// (RFC 9207: its metadata says
    /// `authorization_response_iss_parameter_supported`), so that a response
    /// without it must be refused. The default is `false`.
    ///
    /// Errors as [`IdentityProvider::begin`] (it may need discovery).
    async fn sends_iss_in_responses(&self) -> Result<bool> {
        Ok(false)
    }
}

/// A shared identity provider handle.
pub type SharedIdentityProvider = Arc<dyn IdentityProvider>;

/// An authorization request, as [`IdentityProvider::begin`] made it.
///
/// `Debug` shows only the URL's origin and path: the query carries the state.
#[derive(Clone)]
pub struct Authorization {
    /// Where to send the user agent; carries `state`, `nonce` and, when used,
    /// `code_challenge`.
    pub url: url::Url,
    /// The `state` parameter (>= 256 random bits).
    pub state: String,
    /// The nonce the id_token must echo.
    pub nonce: String,
    /// The PKCE code verifier, when a challenge was sent.
    pub pkce_verifier: Option<String>,
}

impl Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field(
                "url",
                &format_args!(
                    "{}{}?[redacted]",
                    self.url.origin().ascii_serialization(),
                    self.url.path()
                ),
            )
            .field("state", &"[redacted]")
            .field("nonce", &"[redacted]")
            .field(
                "pkce_verifier",
                &self.pkce_verifier.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Who the provider says signed in: from the validated id_token, completed by
/// the userinfo endpoint when the id_token has no email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderIdentity {
    /// The provider's stable subject identifier (`sub`).
    pub subject: String,
    /// The email address, if the provider shared one.
    pub email: Option<String>,
    /// Whether the provider verified `email` (`false` when absent).
    pub email_verified: bool,
    /// The display name.
    pub name: Option<String>,
    /// A picture URL.
    pub picture: Option<String>,
    /// The locale (a BCP 47 language tag).
    pub locale: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn authorization_debug_is_redacted() {
        let a = Authorization {
            url: url::Url::parse("https://idp.example/auth?state=abc123&nonce=n456").unwrap(),
            state: "abc123".into(),
            nonce: "n456".into(),
            pkce_verifier: Some("v789".into()),
        };
        let dbg = format!("{a:?}");
        assert!(dbg.contains("https://idp.example/auth"));
        for secret in ["abc123", "n456", "v789"] {
            assert!(!dbg.contains(secret), "{dbg}");
        }
    }
}
