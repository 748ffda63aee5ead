//! Pending login flows: what the server remembers between
//! `POST /auth/{provider}` and the provider's callback.
//!
//! A flow is created when a login starts and taken (single use) when the
//! callback arrives. It is stored under [`flow_key`]`(state)`, the SHA-256 of
//! the `state` parameter, so the state itself (a bearer value while the flow
//! is pending) is never stored. Flows live [`FLOW_TTL`].
//!
//! ```
//! use meetinity_auth::flow::{flow_key, new_state, FLOW_TTL};
//! let state = new_state();
//! let key = flow_key(&state);
//! assert!(key.starts_with("flow:"));
//! assert!(!key.contains(&state));
//! assert_eq!(FLOW_TTL.as_secs(), 600);
//! ```

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::provider::Authorization;
use crate::secret;

/// How long a pending login may wait for its callback.
pub const FLOW_TTL: Duration = Duration::from_secs(10 * 60);

/// The prefix of flow keys in a cache or flow store.
pub const FLOW_KEY_PREFIX: &str = "flow:";

/// A fresh `state` value: 256 random bits, base64url.
pub fn new_state() -> String {
    secret::random_token(32)
}

/// The key a flow is stored under: `flow:` + SHA-256(`state`), so the state
/// itself never reaches the store.
pub fn flow_key(state: &str) -> String {
    format!("{FLOW_KEY_PREFIX}{}", secret::hash_token(state))
}

/// A fresh browser-binding value (256 random bits) to put in an HttpOnly
/// cookie when a browser starts a login; only its hash goes into the flow.
pub fn new_browser_binding() -> String {
    secret::random_token(32)
}

/// The hash of a browser-binding cookie value, as stored in
/// [`FlowState::browser_binding`].
pub fn browser_binding_hash(cookie_value: &str) -> String {
    secret::hash_token(cookie_value)
}

/// A pending login, stored server-side between the start of a login and its
/// callback.
///
/// `Debug` redacts the nonce, the PKCE verifier and the browser binding.
#[derive(Clone, Serialize, Deserialize)]
pub struct FlowState {
    /// The provider's name (`google`, `linkedin`, ...).
    pub provider: String,
    /// The nonce sent in the authorization request; the id_token must echo it.
    pub nonce: String,
    /// The PKCE code verifier, when a `code_challenge` was sent.
    pub pkce_verifier: Option<String>,
    /// The redirect URI sent in the authorization request (sent again with
    /// the code exchange).
    pub redirect_uri: String,
    /// When the login started.
    pub created_at: DateTime<Utc>,
    /// The hash ([`browser_binding_hash`]) of the cookie that binds the flow
    /// to the browser that started it; `None` for non-browser clients.
    pub browser_binding: Option<String>,
}

impl FlowState {
    /// The flow for an authorization request `auth` just made by `provider`.
    /// `browser_binding` is the raw cookie value (hashed here), if any.
    pub fn new(
        provider: impl Into<String>,
        auth: &Authorization,
        redirect_uri: impl Into<String>,
        created_at: DateTime<Utc>,
        browser_binding: Option<&str>,
    ) -> Self {
        Self {
            provider: provider.into(),
            nonce: auth.nonce.clone(),
            pkce_verifier: auth.pkce_verifier.clone(),
            redirect_uri: redirect_uri.into(),
            created_at,
            browser_binding: browser_binding.map(browser_binding_hash),
        }
    }

    /// Whether the flow is older than [`FLOW_TTL`] at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        let ttl = chrono::Duration::from_std(FLOW_TTL).unwrap_or(chrono::Duration::MAX);
        now >= self.created_at + ttl
    }

    /// Whether the callback's browser-binding cookie matches, in constant
    /// time. A flow started without a binding (a non-browser client) matches
    /// any request; a bound flow requires the same cookie.
    pub fn binding_matches(&self, cookie_value: Option<&str>) -> bool {
        match (&self.browser_binding, cookie_value) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(expected), Some(cookie)) => {
                secret::ct_eq(expected.as_bytes(), browser_binding_hash(cookie).as_bytes())
            }
        }
    }
}

impl fmt::Debug for FlowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowState")
            .field("provider", &self.provider)
            .field("nonce", &"[redacted]")
            .field(
                "pkce_verifier",
                &self.pkce_verifier.as_ref().map(|_| "[redacted]"),
            )
            .field("redirect_uri", &self.redirect_uri)
            .field("created_at", &self.created_at)
            .field(
                "browser_binding",
                &self.browser_binding.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn flow(binding: Option<&str>) -> FlowState {
        let auth = Authorization {
            url: url::Url::parse("https://idp.example/authorize?state=s").unwrap(),
            state: new_state(),
            nonce: "nonce-secret".into(),
            pkce_verifier: Some("verifier-secret".into()),
        };
        FlowState::new(
            "google",
            &auth,
            "https://app.example/cb",
            DateTime::<Utc>::from_timestamp(1_000_000, 0).unwrap(),
            binding,
        )
    }

    #[test]
    fn states_are_256_bit_and_keys_hide_them() {
        let (a, b) = (new_state(), new_state());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(flow_key(&a), flow_key(&a));
        assert_ne!(flow_key(&a), flow_key(&b));
        assert!(!flow_key(&a).contains(&a));
    }

    #[test]
    fn debug_redacts_secrets() {
        let f = flow(Some("cookie-secret"));
        let dbg = format!("{f:?}");
        assert!(!dbg.contains("nonce-secret"));
        assert!(!dbg.contains("verifier-secret"));
        assert!(!dbg.contains(f.browser_binding.as_deref().unwrap()));
        assert!(dbg.contains("google"));
    }

    #[test]
    fn expiry_and_binding() {
        let f = flow(Some("cookie-secret"));
        let ttl = chrono::Duration::from_std(FLOW_TTL).unwrap();
        assert!(!f.is_expired(f.created_at + ttl - chrono::Duration::seconds(1)));
        assert!(f.is_expired(f.created_at + ttl));
        assert_ne!(f.browser_binding.as_deref(), Some("cookie-secret"));
        assert!(f.binding_matches(Some("cookie-secret")));
        assert!(!f.binding_matches(Some("other")));
        assert!(!f.binding_matches(None));
        assert!(flow(None).binding_matches(None));
    }

    #[test]
    fn round_trips_through_json() {
        let f = flow(None);
        let back: FlowState = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back.nonce, f.nonce);
        assert_eq!(back.created_at, f.created_at);
    }
}
