//! The OpenID Connect identity provider, on the `openidconnect` crate.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreIdToken, CoreIdTokenClaims, CoreIdTokenVerifier,
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType, CoreUserInfoClaims,
};
use openidconnect::{
    AccessToken, AdditionalProviderMetadata, AsyncHttpClient, AuthType, AuthorizationCode,
    ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, DiscoveryError, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IssuerUrl, JsonWebKeySetUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl,
    RequestTokenError, Scope, SignatureVerificationError, SubjectIdentifier, TokenResponse,
    UserInfoError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, OnceCell, RwLock};
use url::{Host, Url};

use super::{Authorization, IdentityProvider, ProviderIdentity};
use crate::clock::{SharedClock, SystemClock};
use crate::error::{Error, ErrorKind, Result};
use crate::flow::{self, FlowState};
use crate::secret::{self, SecretString};

/// Clock skew tolerated on the id_token's `exp` and `iat`.
pub const ID_TOKEN_LEEWAY: Duration = Duration::from_secs(60);

/// The provider's JWKS is refetched for an unknown `kid` at most this often
/// (the first refetch is immediate).
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Default total timeout of one outbound request to a provider.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response body accepted from a provider (discovery, JWKS, token,
/// userinfo).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The longest connect timeout, whatever the total timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the id_token's `nonce` is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoncePolicy {
    /// The id_token must carry the nonce sent in the authorization request
    /// (OpenID Connect Core; Google).
    #[default]
    Required,
    /// A nonce in the id_token must match, but an id_token without one is
    /// tolerated: only for providers known not to echo it (LinkedIn).
    IfPresent,
}

/// Configuration of one OpenID Connect provider.
#[derive(Debug, Clone)]
pub struct OidcProviderConfig {
    /// The provider's name, as in `/auth/{provider}`.
    pub name: String,
    /// The issuer identifier; discovery reads
    /// `{issuer_url}/.well-known/openid-configuration`. Must be `https://`,
    /// or `http://` on a loopback host (tests, local development).
    pub issuer_url: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: SecretString,
    /// The default redirect URI registered with the provider.
    pub redirect_uri: String,
    /// Scopes to request (`openid` is always requested).
    pub scopes: Vec<String>,
    /// How the id_token's nonce is checked.
    pub nonce: NoncePolicy,
    /// Total timeout of each outbound request (the connect timeout is at most
    /// 5 s of it).
    pub http_timeout: Duration,
}

impl OidcProviderConfig {
    /// Google's issuer.
    pub const GOOGLE_ISSUER: &'static str = "https://accounts.google.com";
    /// LinkedIn's issuer ("Sign In with LinkedIn using OpenID Connect").
    pub const LINKEDIN_ISSUER: &'static str = "https://www.linkedin.com/oauth";

    /// Any OpenID Connect issuer: scopes `openid email profile`, nonce
    /// required, [`DEFAULT_HTTP_TIMEOUT`].
    pub fn new(
        name: impl Into<String>,
        issuer_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            issuer_url: issuer_url.into(),
            client_id: client_id.into(),
            client_secret,
            redirect_uri: redirect_uri.into(),
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            nonce: NoncePolicy::Required,
            http_timeout: DEFAULT_HTTP_TIMEOUT,
        }
    }

    /// Google (`google`, issuer `https://accounts.google.com`): scopes
    /// `openid email profile`, nonce required; PKCE and the client
    /// authentication method follow discovery.
    pub fn google(
        client_id: impl Into<String>,
        client_secret: SecretString,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self::new(
            "google",
            Self::GOOGLE_ISSUER,
            client_id,
            client_secret,
            redirect_uri,
        )
    }

    /// LinkedIn (`linkedin`, issuer `https://www.linkedin.com/oauth`): scopes
    /// `openid profile email`, nonce checked when present. LinkedIn's
    /// discovery advertises neither PKCE nor `client_secret_basic`, so no
    /// `code_challenge` is sent and the secret goes in the request body.
    pub fn linkedin(
        client_id: impl Into<String>,
        client_secret: SecretString,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            nonce: NoncePolicy::IfPresent,
            ..Self::new(
                "linkedin",
                Self::LINKEDIN_ISSUER,
                client_id,
                client_secret,
                redirect_uri,
            )
        }
    }

    /// Replaces the issuer (e.g. from `GOOGLE_ISSUER_URL`).
    pub fn with_issuer(mut self, issuer_url: impl Into<String>) -> Self {
        self.issuer_url = issuer_url.into();
        self
    }
}

/// Discovery fields beyond OpenID Connect Discovery 1.0 (RFC 8414).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ExtraMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 9207.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authorization_response_iss_parameter_supported: Option<bool>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type DiscoveredClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What discovery taught us, cached for the life of the provider.
struct Discovered {
    client: DiscoveredClient,
    jwks_uri: JsonWebKeySetUrl,
    pkce_s256: bool,
    /// RFC 9207: authorization responses always carry `iss`.
    iss_in_responses: bool,
    signing_algs: Vec<CoreJwsSigningAlgorithm>,
    jwks: RwLock<Arc<CoreJsonWebKeySet>>,
    /// When the JWKS was last refetched for an unknown `kid`.
    last_refetch: Mutex<Option<DateTime<Utc>>>,
}

/// An OpenID Connect identity provider: any issuer, through discovery.
///
/// [`OidcProvider::new`] does no network I/O, so a server starts even when the
/// provider is unreachable. Discovery (and the provider's JWKS) is fetched on
/// first use and cached; a failed discovery is retried on the next use.
/// Outbound requests have connect and total timeouts, a body size limit, and
/// never follow redirects.
///
/// id_token validation (OpenID Connect Core 3.1.3.7, RFC 8725): signature
/// against the keys of the discovered `jwks_uri` only (`jku`, `x5u`, `jwk`
/// headers are ignored), asymmetric algorithms only (no `none`, no `HS*`),
/// exact `iss`, `aud` containing the client id, `azp` equal to it when
/// present or when there are several audiences, `exp`/`iat` with
/// [`ID_TOKEN_LEEWAY`], and the nonce per [`NoncePolicy`]. An unknown `kid`
/// refetches the JWKS (at most every [`JWKS_REFETCH_INTERVAL`], the first
/// time immediately), so provider key rotation just works.
pub struct OidcProvider {
    config: OidcProviderConfig,
    issuer: IssuerUrl,
    http: OutboundHttp,
    clock: SharedClock,
    discovered: OnceCell<Arc<Discovered>>,
}

impl fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcProvider")
            .field("name", &self.config.name)
            .field("issuer", &self.config.issuer_url)
            .field("client_id", &self.config.client_id)
            .field("redirect_uri", &self.config.redirect_uri)
            .field("discovered", &self.discovered.initialized())
            .finish_non_exhaustive()
    }
}

impl OidcProvider {
    /// Checks `config` and builds the provider, without network I/O.
    ///
    /// Errors ([`ErrorKind::Config`]): an issuer that is not an absolute
    /// `https://` URL (or `http://` on a loopback host) without query or
    /// fragment, an invalid redirect URI, an empty name, client id or secret.
    ///
    /// ```
    /// use meetinity_auth::provider::{IdentityProvider, OidcProvider, OidcProviderConfig};
    /// use meetinity_auth::secret::SecretString;
    ///
    /// let google = OidcProvider::new(OidcProviderConfig::google(
    ///     "client-id.apps.googleusercontent.com",
    ///     SecretString::new("client-secret"),
    ///     "https://app.example/auth/google/callback",
    /// ))?;
    /// assert_eq!(google.issuer(), "https://accounts.google.com");
    ///
    /// let plain_http = OidcProviderConfig::google("id", SecretString::new("s"), "https://app.example/cb")
    ///     .with_issuer("http://idp.example");
    /// assert!(OidcProvider::new(plain_http).is_err());
    /// # Ok::<(), meetinity_auth::Error>(())
    /// ```
    pub fn new(config: OidcProviderConfig) -> Result<Self> {
        if config.name.trim().is_empty() {
            return Err(config_error(&config.name, "the provider name is empty"));
        }
        if config.client_id.trim().is_empty() || config.client_secret.expose().is_empty() {
            return Err(config_error(
                &config.name,
                "the client id and client secret are required",
            ));
        }
        let issuer_url = Url::parse(&config.issuer_url)
            .map_err(|e| config_error(&config.name, format!("invalid issuer URL: {e}")))?;
        if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
            return Err(config_error(
                &config.name,
                "the issuer URL must not have a query or fragment",
            ));
        }
        check_endpoint(&config.name, "issuer", &issuer_url)?;
        let issuer = IssuerUrl::new(config.issuer_url.clone())
            .map_err(|e| config_error(&config.name, format!("invalid issuer URL: {e}")))?;
        RedirectUrl::new(config.redirect_uri.clone())
            .map_err(|e| config_error(&config.name, format!("invalid redirect URI: {e}")))?;
        if config.http_timeout.is_zero() {
            return Err(config_error(&config.name, "the HTTP timeout is zero"));
        }

        let client = reqwest::Client::builder()
            .connect_timeout(config.http_timeout.min(MAX_CONNECT_TIMEOUT))
            .timeout(config.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("meetinity-auth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::msg(ErrorKind::Config, "cannot build the HTTP client").with_source(e)
            })?;

        Ok(Self {
            config,
            issuer,
            http: OutboundHttp { client },
            clock: Arc::new(SystemClock),
            discovered: OnceCell::new(),
        })
    }

    /// Uses `clock` for id_token time checks and the JWKS refetch limit.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &OidcProviderConfig {
        &self.config
    }

    /// Fetches the discovery document (and JWKS) now, if not yet cached:
    /// e.g. to warm up at start-up. Errors as [`IdentityProvider::begin`].
    pub async fn discover(&self) -> Result<()> {
        self.discovered().await.map(|_| ())
    }

    async fn discovered(&self) -> Result<&Arc<Discovered>> {
        self.discovered
            .get_or_try_init(|| async { self.fetch_discovery().await.map(Arc::new) })
            .await
    }

    async fn fetch_discovery(&self) -> Result<Discovered> {
        let name = &self.config.name;
        let metadata = Metadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| discovery_error(name, "discovery", e))?;

        check_endpoint(
            name,
            "authorization_endpoint",
            metadata.authorization_endpoint().url(),
        )?;
        check_endpoint(name, "jwks_uri", metadata.jwks_uri().url())?;
        match metadata.token_endpoint() {
            Some(token) => check_endpoint(name, "token_endpoint", token.url())?,
            None => {
                return Err(config_error(
                    name,
                    "the discovery document has no token_endpoint",
                ))
            }
        }
        if let Some(userinfo) = metadata.userinfo_endpoint() {
            check_endpoint(name, "userinfo_endpoint", userinfo.url())?;
        }

        let pkce_s256 = metadata
            .additional_metadata()
            .code_challenge_methods_supported
            .iter()
            .flatten()
            .any(|m| m == "S256");

        let iss_in_responses = metadata
            .additional_metadata()
            .authorization_response_iss_parameter_supported
            .unwrap_or(false);

        let auth_type = match metadata.token_endpoint_auth_methods_supported() {
            // The default of OpenID Connect Discovery 1.0.
            None => AuthType::BasicAuth,
            Some(methods) if methods.contains(&CoreClientAuthMethod::ClientSecretBasic) => {
                AuthType::BasicAuth
            }
            Some(methods) if methods.contains(&CoreClientAuthMethod::ClientSecretPost) => {
                AuthType::RequestBody
            }
            Some(_) => {
                return Err(config_error(
                    name,
                    "the provider supports neither client_secret_basic nor client_secret_post",
                ))
            }
        };

        let advertised = metadata.id_token_signing_alg_values_supported();
        let mut signing_algs: Vec<CoreJwsSigningAlgorithm> = ASYMMETRIC_ALGS
            .iter()
            .filter(|alg| advertised.contains(alg))
            .cloned()
            .collect();
        if signing_algs.is_empty() {
            signing_algs.push(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256);
        }

        let jwks = Arc::new(metadata.jwks().clone());
        let jwks_uri = metadata.jwks_uri().clone();
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose().to_owned(),
            )),
        )
        .set_auth_type(auth_type);

        tracing::debug!(provider = %name, pkce = pkce_s256, "OpenID provider discovered");
        Ok(Discovered {
            client,
            jwks_uri,
            pkce_s256,
            iss_in_responses,
            signing_algs,
            jwks: RwLock::new(jwks),
            last_refetch: Mutex::new(None),
        })
    }

    /// Validates the id_token, refetching the JWKS once for an unknown key.
    async fn verify_id_token<'t>(
        &self,
        d: &Discovered,
        id_token: &'t CoreIdToken,
        flow: &FlowState,
    ) -> Result<&'t CoreIdTokenClaims> {
        let jwks = d.jwks.read().await.clone();
        let claims = match self.verify_with(d, &jwks, id_token, flow) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => match self.refetch_jwks(d, &jwks).await? {
                Some(fresh) => self.verify_with(d, &fresh, id_token, flow),
                None => Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )),
            },
            other => other,
        }
        .map_err(|e| match e {
            ClaimsVerificationError::SignatureVerification(inner) => {
                invalid_id_token(format!("the id_token's signature is invalid: {inner}"))
            }
            other => invalid_id_token(format!("the id_token is invalid: {other}")),
        })?;

        // OpenID Connect Core 3.1.3.7 steps 4 and 5.
        let client_id = self.config.client_id.as_str();
        match claims.authorized_party() {
            Some(azp) if azp.as_str() != client_id => {
                return Err(invalid_id_token("the id_token's azp is not this client"))
            }
            None if claims.audiences().len() > 1 => {
                return Err(invalid_id_token(
                    "the id_token has several audiences and no azp",
                ))
            }
            _ => {}
        }
        Ok(claims)
    }

    fn verify_with<'t>(
        &self,
        d: &Discovered,
        jwks: &CoreJsonWebKeySet,
        id_token: &'t CoreIdToken,
        flow: &FlowState,
    ) -> std::result::Result<&'t CoreIdTokenClaims, ClaimsVerificationError> {
        let now = self.clock.now();
        let leeway = chrono::Duration::from_std(ID_TOKEN_LEEWAY).unwrap_or(chrono::Duration::MAX);
        // Public-client verifier: without a client secret, HS* id_tokens are refused.
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.config.client_id.clone()),
            self.issuer.clone(),
            jwks.clone(),
        )
        .set_allowed_algs(d.signing_algs.iter().cloned())
        // `exp` must be after now - leeway.
        .set_time_fn(move || now - leeway)
        .set_issue_time_verifier_fn(move |iat| {
            if iat > now + leeway {
                Err(format!("the id_token is issued in the future ({iat})"))
            } else {
                Ok(())
            }
        })
        // `aud` must contain the client id; other audiences are accepted only
        // with `azp` equal to the client id (checked by the caller).
        .set_other_audience_verifier_fn(|_| true);

        let expected = Nonce::new(flow.nonce.clone());
        match self.config.nonce {
            NoncePolicy::Required => id_token.claims(&verifier, &expected),
            NoncePolicy::IfPresent => {
                id_token.claims(&verifier, |nonce: Option<&Nonce>| match nonce {
                    None => Ok(()),
                    Some(nonce) if nonce_eq(nonce, &expected) => Ok(()),
                    Some(_) => Err("nonce mismatch".to_owned()),
                })
            }
        }
    }

    /// Refetches the JWKS after an unknown `kid`, unless another task just did
    /// (returns its set) or the last refetch is under
    /// [`JWKS_REFETCH_INTERVAL`] old (returns `None`).
    async fn refetch_jwks(
        &self,
        d: &Discovered,
        seen: &Arc<CoreJsonWebKeySet>,
    ) -> Result<Option<Arc<CoreJsonWebKeySet>>> {
        let mut last = d.last_refetch.lock().await;
        {
            let current = d.jwks.read().await;
            if !Arc::ptr_eq(&current, seen) {
                return Ok(Some(current.clone()));
            }
        }
        let now = self.clock.now();
        let interval =
            chrono::Duration::from_std(JWKS_REFETCH_INTERVAL).unwrap_or(chrono::Duration::MAX);
        if let Some(at) = *last {
            if now < at + interval {
                tracing::debug!(provider = %self.config.name, "unknown kid; JWKS refetch rate-limited");
                return Ok(None);
            }
        }
        *last = Some(now);
        let fresh = CoreJsonWebKeySet::fetch_async(&d.jwks_uri, &self.http)
            .await
            .map_err(|e| discovery_error(&self.config.name, "JWKS", e))?;
        let fresh = Arc::new(fresh);
        *d.jwks.write().await = fresh.clone();
        tracing::info!(provider = %self.config.name, "JWKS refetched after an unknown kid");
        Ok(Some(fresh))
    }

    async fn userinfo(
        &self,
        d: &Discovered,
        access_token: &AccessToken,
        subject: &SubjectIdentifier,
    ) -> Result<Option<CoreUserInfoClaims>> {
        let Ok(request) = d
            .client
            .user_info(access_token.clone(), Some(subject.clone()))
        else {
            return Ok(None);
        };
        let claims: CoreUserInfoClaims = request.request_async(&self.http).await.map_err(|e| {
            let kind = match e {
                UserInfoError::Request(_) => ErrorKind::Unavailable,
                _ => ErrorKind::ProviderError,
            };
            Error::msg(kind, format!("the userinfo request failed: {e}"))
        })?;
        Ok(Some(claims))
    }
}

#[async_trait]
impl IdentityProvider for OidcProvider {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn issuer(&self) -> &str {
        &self.config.issuer_url
    }

    fn redirect_uri(&self) -> &str {
        &self.config.redirect_uri
    }

    async fn begin(&self, redirect_uri: &str) -> Result<Authorization> {
        let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| {
            Error::msg(
                ErrorKind::InvalidRedirect,
                "the redirect URI is not a valid URL",
            )
        })?;
        let d = self.discovered().await?;

        let state = flow::new_state();
        let nonce = secret::random_token(32);
        let (state_param, nonce_param) = (state.clone(), nonce.clone());
        let mut request = d
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state_param),
                move || Nonce::new(nonce_param),
            )
            .set_redirect_uri(Cow::Owned(redirect));
        for scope in self.config.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let pkce_verifier = if d.pkce_s256 {
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            request = request.set_pkce_challenge(challenge);
            Some(verifier.into_secret())
        } else {
            None
        };
        let (url, _, _) = request.url();
        Ok(Authorization {
            url,
            state,
            nonce,
            pkce_verifier,
        })
    }

    async fn sends_iss_in_responses(&self) -> Result<bool> {
        Ok(self.discovered().await?.iss_in_responses)
    }

    async fn complete(&self, code: &str, flow: &FlowState) -> Result<ProviderIdentity> {
        if flow.provider != self.config.name {
            return Err(Error::msg(
                ErrorKind::InvalidState,
                "the login was started with another provider",
            ));
        }
        if code.is_empty() {
            return Err(Error::msg(ErrorKind::BadRequest, "the code is empty"));
        }
        let redirect = RedirectUrl::new(flow.redirect_uri.clone()).map_err(|_| {
            Error::msg(
                ErrorKind::InvalidState,
                "the login's redirect URI is invalid",
            )
        })?;
        let d = self.discovered().await?;

        let mut request = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| config_error(&self.config.name, format!("{e}")))?
            .set_redirect_uri(Cow::Owned(redirect));
        if let Some(verifier) = &flow.pkce_verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier.clone()));
        }
        let response = request
            .request_async(&self.http)
            .await
            .map_err(token_error)?;

        let id_token = response
            .id_token()
            .ok_or_else(|| invalid_id_token("the token response has no id_token"))?;
        let claims = self.verify_id_token(d, id_token, flow).await?;

        let mut identity = ProviderIdentity {
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email().is_some() && claims.email_verified().unwrap_or(false),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
            picture: claims
                .picture()
                .and_then(|p| p.get(None))
                .map(|p| p.as_str().to_owned()),
            locale: claims.locale().map(|l| l.as_str().to_owned()),
        };

        if identity.email.is_none() {
            if let Some(info) = self
                .userinfo(d, response.access_token(), claims.subject())
                .await?
            {
                identity.email = info.email().map(|e| e.as_str().to_owned());
                identity.email_verified =
                    identity.email.is_some() && info.email_verified().unwrap_or(false);
                if identity.name.is_none() {
                    identity.name = info
                        .name()
                        .and_then(|n| n.get(None))
                        .map(|n| n.as_str().to_owned());
                }
                if identity.picture.is_none() {
                    identity.picture = info
                        .picture()
                        .and_then(|p| p.get(None))
                        .map(|p| p.as_str().to_owned());
                }
                if identity.locale.is_none() {
                    identity.locale = info.locale().map(|l| l.as_str().to_owned());
                }
            }
        }
        Ok(identity)
    }
}

/// The id_token algorithms ever accepted (intersected with discovery's list).
const ASYMMETRIC_ALGS: &[CoreJwsSigningAlgorithm] = &[
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EcdsaP521Sha512,
    CoreJwsSigningAlgorithm::EdDsa,
];

fn nonce_eq(a: &Nonce, b: &Nonce) -> bool {
    secret::ct_eq(
        secret::hash_token(a.secret()).as_bytes(),
        secret::hash_token(b.secret()).as_bytes(),
    )
}

/// Whether `url` is on a loopback host (127.0.0.0/8, ::1, `localhost`).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `https://`, or `http://` on loopback; anything else is a configuration error.
fn check_endpoint(provider: &str, what: &str, url: &Url) -> Result<()> {
    let ok = match url.scheme() {
        "https" => url.host().is_some(),
        "http" => is_loopback(url),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(config_error(
            provider,
            format!("the {what} must be https:// (plain http:// only on loopback): {url}"),
        ))
    }
}

fn config_error(provider: &str, message: impl fmt::Display) -> Error {
    Error::msg(
        ErrorKind::Config,
        format!("identity provider `{provider}`: {message}"),
    )
}

fn invalid_id_token(message: impl Into<Cow<'static, str>>) -> Error {
    Error::msg(ErrorKind::InvalidIdToken, message)
}

fn discovery_error(provider: &str, what: &str, e: DiscoveryError<OutboundError>) -> Error {
    let detail = match &e {
        DiscoveryError::Request(inner) => format!("request failed: {inner}"),
        DiscoveryError::Response(status, _, _) => format!("HTTP status {status}"),
        other => other.to_string(),
    };
    Error::msg(
        ErrorKind::Unavailable,
        format!("identity provider `{provider}`: {what} failed: {detail}"),
    )
}

/// Maps a token-endpoint failure without echoing the response body (it may
/// hold tokens).
fn token_error(
    e: RequestTokenError<
        OutboundError,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> Error {
    match e {
        RequestTokenError::ServerResponse(err) => Error::msg(
            ErrorKind::ProviderError,
            format!("the token endpoint refused the code: {}", err.error()),
        ),
        RequestTokenError::Request(inner) => Error::msg(
            ErrorKind::Unavailable,
            format!("the token endpoint is unreachable: {inner}"),
        ),
        RequestTokenError::Parse(err, body) => {
            // serde's flatten hides the failing field's path: look at the
            // id_token on its own.
            let id_token_malformed = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("id_token").cloned())
                .is_some_and(|t| serde_json::from_value::<CoreIdToken>(t).is_err());
            if id_token_malformed {
                invalid_id_token("the id_token is malformed")
            } else {
                Error::msg(
                    ErrorKind::ProviderError,
                    format!(
                        "the token endpoint's response is malformed (at `{}`)",
                        err.path()
                    ),
                )
            }
        }
        RequestTokenError::Other(message) => Error::msg(
            ErrorKind::ProviderError,
            format!("the token endpoint failed: {message}"),
        ),
    }
}

/// The outbound HTTP client handed to `openidconnect`: reqwest with timeouts,
/// no redirects, and a bounded response body.
#[derive(Clone)]
struct OutboundHttp {
    client: reqwest::Client,
}

/// An outbound request failure.
#[derive(Debug, thiserror::Error)]
enum OutboundError {
    #[error("{0}")]
    Network(#[source] reqwest::Error),
    #[error("the response is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("invalid HTTP message: {0}")]
    Http(String),
}

impl<'c> AsyncHttpClient<'c> for OutboundHttp {
    type Error = OutboundError;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<HttpResponse, OutboundError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(OutboundError::Network)?;
            let mut response = self
                .client
                .execute(request)
                .await
                .map_err(|e| OutboundError::Network(e.without_url()))?;
            if response
                .content_length()
                .is_some_and(|len| len > MAX_RESPONSE_BYTES as u64)
            {
                return Err(OutboundError::TooLarge);
            }
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| OutboundError::Network(e.without_url()))?
            {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(OutboundError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            let mut builder = http::Response::builder()
                .status(response.status())
                .version(response.version());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            builder
                .body(body)
                .map_err(|e| OutboundError::Http(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn config(issuer: &str) -> OidcProviderConfig {
        OidcProviderConfig::new(
            "test",
            issuer,
            "client",
            SecretString::new("secret"),
            "https://app.example/cb",
        )
    }

    #[test]
    fn issuer_scheme_rules() {
        for ok in [
            "https://accounts.google.com",
            "https://www.linkedin.com/oauth",
            "http://127.0.0.1:8080",
            "http://127.1.2.3/realm",
            "http://[::1]:9000",
            "http://localhost:3000",
        ] {
            assert!(OidcProvider::new(config(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "http://accounts.google.com",
            "http://10.0.0.1",
            "http://[::2]",
            "http://localhost.evil.example",
            "ftp://127.0.0.1",
            "https://idp.example/?x=1",
            "https://idp.example/#f",
            "not a url",
        ] {
            let e = OidcProvider::new(config(bad)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad}");
        }
    }

    #[test]
    fn presets() {
        let g = OidcProviderConfig::google("id", SecretString::new("s"), "https://a/cb");
        assert_eq!(g.name, "google");
        assert_eq!(g.issuer_url, "https://accounts.google.com");
        assert_eq!(g.nonce, NoncePolicy::Required);
        let l =
            OidcProviderConfig::linkedin("id", SecretString::new("hunter2-secret"), "https://a/cb");
        assert_eq!(l.name, "linkedin");
        assert_eq!(l.issuer_url, "https://www.linkedin.com/oauth");
        assert_eq!(l.scopes, ["openid", "profile", "email"]);
        assert_eq!(l.nonce, NoncePolicy::IfPresent);
        assert!(!format!("{l:?}").contains("hunter2-secret"));
    }

    #[test]
    fn missing_credentials_are_a_config_error() {
        let mut c = config("https://idp.example");
        c.client_secret = SecretString::new("");
        assert_eq!(OidcProvider::new(c).unwrap_err().kind(), ErrorKind::Config);
    }
}
