//! Sign-in through identity providers: starting a flow and finishing it at
//! the callback.
//!
//! Start (`POST /auth/{provider}`): the redirect URI must equal the
//! provider's configured one or an `ALLOWED_REDIRECTS` entry, exactly; the
//! provider makes a fresh state, nonce and PKCE verifier; the pending
//! [`FlowState`] goes into the shared cache (moka, or Redis so that any
//! instance can finish it) under [`flow_key`] for [`FLOW_TTL`]; a browser gets
//! a binding cookie whose hash the flow keeps.
//!
//! Callback (`GET /auth/{provider}/callback`): the flow is taken (single use)
//! before anything else, so even a failing callback uses the state up; then
//! the provider's `error`, the flow's provider, age and browser binding, the
//! RFC 9207 `iss`, the code exchange and id_token validation, the email; then
//! the user is found by `(provider, subject)`, created, or linked by verified
//! email.
//!
//! Pre-account takeover: someone may register `victim@example.com` with a
//! password before the victim ever signs in. When the victim later signs in
//! through a provider that verified that address, the identity is linked to
//! that account, and the account is then secured: its password is removed,
//! every identity not verified for the address is unlinked, and every
//! session is revoked, so the registrant keeps no way in.

use super::default::Authenticator;
use super::{Callback, LoginStart, TokenSet};
use crate::error::{Error, ErrorKind, Result};
use crate::flow::{flow_key, new_browser_binding, FlowState, FLOW_TTL};
use crate::model::{IdentityLogin, RequestContext, User, UserPatch};
use crate::provider::ProviderIdentity;

impl Authenticator {
    pub(super) async fn start_social(
        &self,
        provider: &str,
        redirect_uri: Option<&str>,
        browser: bool,
        ctx: &RequestContext,
    ) -> Result<LoginStart> {
        let result = self.try_start_social(provider, redirect_uri, browser).await;
        let (outcome, reason) = match &result {
            Ok(_) => ("success", None),
            Err(e) => ("failure", Some(e.reason())),
        };
        self.audit(
            "login_started",
            None,
            outcome,
            Some(audit_provider(provider)),
            reason,
            ctx,
        )
        .await;
        result
    }

    async fn try_start_social(
        &self,
        provider: &str,
        redirect_uri: Option<&str>,
        browser: bool,
    ) -> Result<LoginStart> {
        let idp = self.provider(provider)?;
        let redirect = match redirect_uri {
            None => idp.redirect_uri().to_owned(),
            Some(r)
                if r == idp.redirect_uri()
                    || self.inner.p.policy.allowed_redirects.iter().any(|a| a == r) =>
            {
                r.to_owned()
            }
            Some(_) => return Err(Error::new(ErrorKind::InvalidRedirect)),
        };
        let auth = idp.begin(&redirect).await?;
        let binding = browser.then(new_browser_binding);
        let flow = FlowState::new(provider, &auth, redirect, self.now(), binding.as_deref());
        let key = flow_key(&auth.state);
        self.inner
            .p
            .cache
            .set(&key, &serde_json::to_vec(&flow)?, FLOW_TTL)
            .await?;
        Ok(LoginStart {
            auth_url: auth.url.to_string(),
            state: auth.state,
            browser_binding: binding,
        })
    }

    pub(super) async fn finish_social(
        &self,
        provider: &str,
        cb: &Callback,
        ctx: &RequestContext,
    ) -> Result<TokenSet> {
        let idp = self.provider(provider)?;
        // Take the flow first, so any callback (even a failing one) uses the state up.
        let flow = match cb.state.as_deref() {
            Some(state) if !state.is_empty() => self.inner.p.cache.take(&flow_key(state)).await?,
            _ => None,
        };
        if let Some(error) = &cb.error {
            let msg: String = error
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            return Err(Error::msg(
                ErrorKind::ProviderError,
                format!("The identity provider answered `{msg}`."),
            ));
        }
        let (Some(code), Some(_)) = (
            cb.code.as_deref().filter(|c| !c.is_empty()),
            cb.state.as_deref().filter(|s| !s.is_empty()),
        ) else {
            return Err(Error::msg(
                ErrorKind::BadRequest,
                "The callback needs `code` and `state` query parameters.",
            ));
        };
        let flow: FlowState = match flow {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|_| Error::new(ErrorKind::InvalidState))?
            }
            None => return Err(Error::new(ErrorKind::InvalidState)),
        };
        if flow.provider != provider || flow.is_expired(self.now()) {
            return Err(Error::new(ErrorKind::InvalidState));
        }
        if !flow.binding_matches(cb.browser_binding.as_deref()) {
            return Err(Error::msg(
                ErrorKind::InvalidState,
                "This login was started in another browser.",
            ));
        }
        // RFC 9207: an authorization response naming another issuer is a
        // mix-up; so is one without `iss` from a provider that always sends it.
        match &cb.iss {
            Some(iss) if iss != idp.issuer() => {
                return Err(Error::msg(
                    ErrorKind::InvalidState,
                    "The authorization response came from another issuer.",
                ));
            }
            Some(_) => {}
            None if idp.sends_iss_in_responses().await? => {
                return Err(Error::msg(
                    ErrorKind::InvalidState,
                    "The authorization response has no `iss`, which this provider always sends.",
                ));
            }
            None => {}
        }
        let identity = idp.complete(code, &flow).await?;
        let email = identity
            .email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .ok_or_else(|| Error::new(ErrorKind::EmailRequired))?
            .to_owned();
        let login = IdentityLogin {
            provider: provider.to_owned(),
            subject: identity.subject.clone(),
            email,
            email_verified: identity.email_verified,
            name: identity.name.clone(),
            picture: identity.picture.clone(),
            roles: Vec::new(),
        };
        let users = &self.inner.p.users;
        // Who owned the address before this sign-in, to know whether a link
        // claims an account nobody proved the address of.
        let before = users.get_user_by_email(&login.email).await?;
        if let Some(owner) = &before {
            refuse_ambiguous_claim(owner, &login)?;
        }
        let outcome = users.upsert_identity(&login, self.now()).await?;
        if !outcome.user.is_active {
            return Err(Error::new(ErrorKind::Forbidden));
        }
        let user_id = outcome.user.id.clone();
        if outcome.linked {
            let proven = before
                .as_ref()
                .is_some_and(|u| u.id == user_id && u.email_verified);
            if !proven {
                self.secure_claimed_account(&outcome.user, &login, ctx)
                    .await?;
            }
        }
        if outcome.created {
            self.fill_locale(&outcome.user, &identity).await;
        }
        let event = if outcome.linked {
            "identity_linked"
        } else {
            "login"
        };
        self.audit(event, Some(&user_id), "success", Some(provider), None, ctx)
            .await;
        self.open_session(outcome.user, provider, ctx).await
    }

    /// A verified identity was just linked to `user`, whose email nobody had
    /// proven: remove what the account's creator may have left (password,
    /// identities not verified for the address, sessions).
    async fn secure_claimed_account(
        &self,
        user: &User,
        login: &IdentityLogin,
        ctx: &RequestContext,
    ) -> Result<()> {
        let users = &self.inner.p.users;
        for account in &user.social_accounts {
            let verified_here = account.email_verified
                && account
                    .email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(&login.email));
            if account.provider != login.provider && !verified_here {
                users
                    .unlink_identity(&user.id, &account.provider)
                    .await
                    .or_else(|e| match e.kind() {
                        ErrorKind::NotFound => Ok(()),
                        _ => Err(e),
                    })?;
            }
        }
        users.remove_password(&user.id).await?;
        self.revoke_all(&user.id, None).await?;
        self.audit(
            "account_claimed",
            Some(&user.id),
            "success",
            Some(&login.provider),
            Some("unverified account claimed by a verified identity: password removed, sessions revoked"),
            ctx,
        )
        .await;
        Ok(())
    }

    /// Puts the provider's locale into a new user's preferences.
    async fn fill_locale(&self, user: &User, identity: &ProviderIdentity) {
        let Some(locale) = identity.locale.as_deref().filter(|l| is_language_tag(l)) else {
            return;
        };
        if user.preferences.contains_key("locale") {
            return;
        }
        let mut preferences = user.preferences.clone();
        preferences.insert("locale".into(), serde_json::Value::from(locale));
        let patch = UserPatch {
            preferences: Some(preferences),
            ..UserPatch::default()
        };
        if let Err(e) = self.inner.p.users.update_user(&user.id, &patch).await {
            tracing::warn!(error = %e, "the provider's locale was not saved");
        }
    }
}

/// An account whose email nobody proved, already holding an unverified
/// identity of the same provider under another subject, cannot be claimed
/// through that provider: unlinking by provider would remove both.
fn refuse_ambiguous_claim(owner: &User, login: &IdentityLogin) -> Result<()> {
    let already_linked = owner
        .social_accounts
        .iter()
        .any(|a| a.provider == login.provider && a.subject == login.subject);
    let rival = owner
        .social_accounts
        .iter()
        .any(|a| a.provider == login.provider && a.subject != login.subject);
    if login.email_verified && !owner.email_verified && !already_linked && rival {
        return Err(Error::new(ErrorKind::EmailNotVerified));
    }
    Ok(())
}

/// The provider name for audit events: configured names as they are,
/// anything else cut short and stripped to safe characters.
fn audit_provider(name: &str) -> &str {
    let safe = name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if safe {
        name
    } else {
        "[invalid]"
    }
}

/// A plausible BCP 47 language tag (`en`, `fr-FR`, `zh-Hant-TW`).
fn is_language_tag(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 35
        && s.split(['-', '_']).all(|part| {
            (1..=8).contains(&part.len()) && part.chars().all(|c| c.is_ascii_alphanumeric())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags() {
        for ok in ["en", "fr-FR", "zh-Hant-TW", "en_US"] {
            assert!(is_language_tag(ok), "{ok}");
        }
        for bad in ["", "en--US", "<script>", "averyveryverylongsubtag", "fr FR"] {
            assert!(!is_language_tag(bad), "{bad}");
        }
    }

    #[test]
    fn audit_provider_names_are_safe() {
        assert_eq!(audit_provider("google"), "google");
        assert_eq!(audit_provider("acme-1"), "acme-1");
        assert_eq!(audit_provider("<x>"), "[invalid]");
        assert_eq!(audit_provider(&"a".repeat(40)), "[invalid]");
    }
}
