//! Sign-in through identity providers: starting a flow and finishing it at
//! the callback.

use super::default::Authenticator;
use super::{Callback, LoginStart, TokenSet};
use crate::error::{Error, ErrorKind, Result};
use crate::flow::{flow_key, new_browser_binding, FlowState, FLOW_TTL};
use crate::model::{IdentityLogin, RequestContext};

impl Authenticator {
    pub(super) async fn start_social(
        &self,
        provider: &str,
        redirect_uri: Option<&str>,
        browser: bool,
        ctx: &RequestContext,
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
        self.audit("login_started", None, "success", Some(provider), None, ctx)
            .await;
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
        let (Some(code), Some(_)) = (cb.code.as_deref(), cb.state.as_deref()) else {
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
        if let Some(iss) = &cb.iss {
            if iss != idp.issuer() {
                return Err(Error::msg(
                    ErrorKind::InvalidState,
                    "The authorization response came from another issuer.",
                ));
            }
        }
        let identity = idp.complete(code, &flow).await?;
        let email = identity
            .email
            .clone()
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| Error::new(ErrorKind::EmailRequired))?;
        let login = IdentityLogin {
            provider: provider.to_owned(),
            subject: identity.subject.clone(),
            email,
            email_verified: identity.email_verified,
            name: identity.name.clone(),
            picture: identity.picture.clone(),
            roles: Vec::new(),
        };
        let outcome = self
            .inner
            .p
            .users
            .upsert_identity(&login, self.now())
            .await?;
        if !outcome.user.is_active {
            return Err(Error::new(ErrorKind::Forbidden));
        }
        let event = if outcome.linked {
            "identity_linked"
        } else {
            "login"
        };
        self.audit(
            event,
            Some(&outcome.user.id),
            "success",
            Some(provider),
            None,
            ctx,
        )
        .await;
        self.open_session(outcome.user, provider, ctx).await
    }
}
