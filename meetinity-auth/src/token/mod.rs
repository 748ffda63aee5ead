//! Access tokens (JWT, RFC 9068 profile), key sets with rotation and JWKS,
//! and refresh-token helpers.
//!
//! Access tokens are signed with one algorithm (HS256, RS256, ES256 or
//! EdDSA) chosen by configuration; verification follows RFC 8725: the
//! algorithm is fixed by the server (never taken from the token), the key is
//! chosen by `kid` among the server's own keys (`jku`, `x5u` and `jwk`
//! headers are ignored), the `typ` must be `at+jwt`, and `iss`, `aud`,
//! `exp`, `nbf` and `iat` are checked against the injected [`Clock`].
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use meetinity_auth::clock::ManualClock;
//! use meetinity_auth::token::{StaticKeySet, TokenService};
//!
//! let clock = ManualClock::at_unix(1_700_000_000);
//! let tokens = TokenService::new(
//!     Arc::new(StaticKeySet::generate_hs256()),
//!     "https://auth.example".into(),
//!     "meetinity".into(),
//!     Duration::from_secs(900),
//!     Duration::from_secs(30),
//!     Arc::new(clock.clone()),
//! );
//! let (jwt, claims) = tokens.issue("user-1", "session-1", "a@example.com", "password", &[]).unwrap();
//! assert_eq!(tokens.verify(&jwt).unwrap().jti, claims.jti);
//! clock.advance(Duration::from_secs(900 + 30));
//! assert!(tokens.verify(&jwt).is_err());
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::secret::random_token;

mod keys;
mod refresh;

pub use keys::{generate_pem, KeySet, StaticKeySet, MIN_HS256_SECRET_BYTES, MIN_RSA_BITS};
pub use refresh::{new_refresh_token, open_successor, seal_successor};

/// The `typ` header of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Tokens longer than this are rejected before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: `JWT_ISSUER`.
    pub iss: String,
    /// Audience: `JWT_AUDIENCE`.
    pub aud: String,
    /// Subject: the user id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    /// A unique token id.
    pub jti: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: i64,
    /// Not before, seconds since the Unix epoch (not set by [`TokenService::issue`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The user's email.
    pub email: String,
    /// How the session signed in: `password`, `google`, `linkedin`, ...
    pub provider: String,
    /// The user's roles.
    pub roles: Vec<String>,
}

/// The header fields verification looks at, borrowed from the decoded header.
#[derive(Deserialize)]
struct PeekHeader<'a> {
    alg: Algorithm,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    /// RFC 7515 §4.1.11: we understand no extension, so any `crit` is refused.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Issues and verifies access tokens.
pub struct TokenService {
    keys: Arc<dyn KeySet>,
    alg: Algorithm,
    issuer: String,
    audience: String,
    ttl_secs: i64,
    leeway_secs: i64,
    clock: Arc<dyn Clock>,
    validation: Validation,
    /// The encoded header of the tokens this service signs, and its `kid`,
    /// once one has passed the header checks: the same bytes always pass
    /// them with the same `kid`, so they are not decoded again.
    own_header: OnceLock<(Box<str>, Box<str>)>,
}

impl fmt::Debug for TokenService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenService")
            .field("keys", &self.keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl_secs", &self.ttl_secs)
            .field("leeway_secs", &self.leeway_secs)
            .finish_non_exhaustive()
    }
}

fn reject(why: &'static str) -> Error {
    Error::new(ErrorKind::InvalidToken).with_source(why)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn is_access_token_typ(typ: &str) -> bool {
    // RFC 9068 §4: "at+jwt", or the full media type; compared case-insensitively.
    typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || typ.eq_ignore_ascii_case("application/at+jwt")
}

impl TokenService {
    /// A token service signing with `keys`, for `issuer` and `audience`,
    /// issuing tokens valid for `ttl`, tolerating `leeway` of clock skew on
    /// `exp`, `nbf` and `iat`.
    pub fn new(
        keys: Arc<dyn KeySet>,
        issuer: String,
        audience: String,
        ttl: Duration,
        leeway: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let alg = keys.algorithm();
        let mut validation = Validation::new(alg);
        // Time is checked against the injected clock in `verify`.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[&audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            keys,
            alg,
            issuer,
            audience,
            ttl_secs: secs(ttl),
            leeway_secs: secs(leeway),
            clock,
            validation,
            own_header: OnceLock::new(),
        }
    }

    /// The key set (for the JWKS endpoint).
    pub fn keys(&self) -> &Arc<dyn KeySet> {
        &self.keys
    }

    /// The public keys as a JWK Set (`GET /.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        self.keys.jwks()
    }

    /// The lifetime of issued tokens.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs.unsigned_abs())
    }

    /// Issues an access token: `typ: at+jwt`, the signing key's `kid`, a
    /// fresh random `jti`, `iat`/`exp` from the clock.
    pub fn issue(
        &self,
        sub: &str,
        sid: &str,
        email: &str,
        provider: &str,
        roles: &[String],
    ) -> Result<(String, AccessClaims)> {
        let now = self.clock.unix();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: sub.to_owned(),
            sid: sid.to_owned(),
            jti: random_token(16),
            iat: now,
            exp: now.saturating_add(self.ttl_secs),
            nbf: None,
            email: email.to_owned(),
            provider: provider.to_owned(),
            roles: roles.to_vec(),
        };
        let (kid, key) = self.keys.signing_key();
        let mut header = Header::new(self.alg);
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(kid.to_owned());
        let token = jsonwebtoken::encode(&header, &claims, key)
            .map_err(|e| Error::internal(format!("cannot sign the access token: {e}")))?;
        Ok((token, claims))
    }

    /// Checks an encoded header (alg, typ, crit, kid) and returns the key of
    /// its `kid`.
    fn check_header(&self, header_b64: &str) -> Result<&jsonwebtoken::DecodingKey> {
        // Peek at the header without allocating (headers are small).
        let mut stack = [0u8; 512];
        let heap;
        let header_json: &[u8] = match URL_SAFE_NO_PAD.decode_slice(header_b64, &mut stack) {
            Ok(n) => &stack[..n],
            Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
                heap = URL_SAFE_NO_PAD
                    .decode(header_b64)
                    .map_err(|_| reject("header is not base64url"))?;
                &heap
            }
            Err(_) => return Err(reject("header is not base64url")),
        };
        let header: PeekHeader<'_> =
            serde_json::from_slice(header_json).map_err(|_| reject("unreadable header or alg"))?;
        if header.alg != self.alg {
            return Err(reject("unexpected alg"));
        }
        if !header.typ.as_deref().is_some_and(is_access_token_typ) {
            return Err(reject("typ is not at+jwt"));
        }
        if header.crit.is_some() {
            return Err(reject("unsupported crit header"));
        }
        let Some(kid) = header.kid.as_deref() else {
            return Err(reject("missing kid"));
        };
        let Some(key) = self.keys.decoding_key(kid) else {
            return Err(reject("unknown kid"));
        };
        if self.own_header.get().is_none() && self.keys.signing_key().0 == kid {
            let _ = self.own_header.set((header_b64.into(), kid.into()));
        }
        Ok(key)
    }

    /// Verifies an access token and returns its claims.
    ///
    /// [`ErrorKind::InvalidToken`] when the token is malformed; its `alg` is
    /// not the configured one (`none` included); its `typ` is not `at+jwt`;
    /// its `kid` is missing or unknown; it has a `crit` header; the
    /// signature is bad; `iss` or `aud` is wrong; it expired more than the
    /// leeway ago; or `nbf`/`iat` lie further in the future than the leeway.
    pub fn verify(&self, token: &str) -> Result<AccessClaims> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(reject("token too long"));
        }
        let Some((header_b64, _)) = token.split_once('.') else {
            return Err(reject("not a JWS compact serialization"));
        };

        let key = match self.own_header.get() {
            Some((known, kid)) if **known == *header_b64 => self.keys.decoding_key(kid),
            _ => Some(self.check_header(header_b64)?),
        };
        let Some(key) = key else {
            return Err(reject("unknown kid"));
        };

        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as J;
                let why = match e.kind() {
                    J::InvalidSignature => "bad signature",
                    J::InvalidIssuer => "wrong iss",
                    J::InvalidAudience => "wrong aud",
                    J::InvalidAlgorithm => "unexpected alg",
                    J::MissingRequiredClaim(_) => "missing claim",
                    _ => "malformed token",
                };
                reject(why)
            })?
            .claims;

        let now = self.clock.unix();
        let leeway = self.leeway_secs;
        if now >= claims.exp.saturating_add(leeway) {
            return Err(reject("expired"));
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(reject("nbf in the future"));
        }
        if claims.iat > now.saturating_add(leeway) {
            return Err(reject("iat in the future"));
        }
        Ok(claims)
    }
}
