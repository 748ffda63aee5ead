//! One error type for the whole library.
//!
//! Every failure is an [`Error`] carrying an [`ErrorKind`]. The kind decides
//! the HTTP status and the stable, snake_case `reason` that clients read from
//! the contract's envelope `{"error": {"code", "message", "reason"}}`.
//! Backend errors (sqlx, redis, ...) convert with `From`, and a database
//! unique violation becomes [`ErrorKind::Conflict`], never a 500.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, as clients see it: each kind has an HTTP status and a
/// stable `reason` string.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 400 `bad_request`: a malformed request (missing parameter, bad query value).
    BadRequest,
    /// 400 `invalid_json`: the body is not valid JSON or not an object.
    InvalidJson,
    /// 413 `payload_too_large`: the body is larger than `MAX_BODY_BYTES`.
    PayloadTooLarge,
    /// 408 `request_timeout`: the client did not send the whole request
    /// within `REQUEST_TIMEOUT_SECS`.
    RequestTimeout,
    /// 415 `unsupported_media_type`: the body is not `application/json`.
    UnsupportedMediaType,
    /// 422 `validation_failed`: fields failed validation (see the details).
    Validation,
    /// 400 `unknown_provider`: no such identity provider is configured.
    UnknownProvider,
    /// 400 `invalid_redirect`: the redirect URI is not allowed.
    InvalidRedirect,
    /// 401 `invalid_state`: unknown, expired, already used or foreign login state.
    InvalidState,
    /// 401 `provider_error`: the identity provider answered with an error.
    ProviderError,
    /// 401 `invalid_id_token`: the id_token failed validation.
    InvalidIdToken,
    /// 422 `email_required`: the provider did not give an email address.
    EmailRequired,
    /// 409 `email_not_verified`: an unverified provider email matches an
    /// existing account; sign in with the original method and link from there.
    EmailNotVerified,
    /// 401 `missing_token`: no bearer token was sent.
    MissingToken,
    /// 401 `invalid_token`: the access token is malformed, expired, tampered or revoked.
    InvalidToken,
    /// 401 `invalid_refresh_token`: unknown or expired refresh token.
    InvalidRefreshToken,
    /// 401 `refresh_token_reused`: a rotated refresh token was presented again;
    /// the session is revoked.
    RefreshTokenReused,
    /// 401 `invalid_credentials`: wrong email or password.
    InvalidCredentials,
    /// 422 `weak_password`: the password does not meet the rules.
    WeakPassword,
    /// 409 `email_taken`: an account with this email exists.
    EmailTaken,
    /// 400 `invalid_token`: a bad, expired or used verification/reset token.
    InvalidOneTimeToken,
    /// 403 `forbidden`: authenticated, but not allowed.
    Forbidden,
    /// 404 `not_found`.
    NotFound,
    /// 405 `method_not_allowed`.
    MethodNotAllowed,
    /// 409 `conflict`: a uniqueness rule was violated.
    Conflict,
    /// 409 `last_sign_in_method`: refusing to remove the last way to sign in.
    LastSignInMethod,
    /// 429 `rate_limited`: too many attempts; see `retry_after`.
    RateLimited,
    /// 503 `unavailable`: a backend (database, cache, provider) is unavailable.
    Unavailable,
    /// 500 `configuration`: the configuration is invalid.
    Config,
    /// 500 `internal`: a bug or an unexpected failure.
    Internal,
}

impl ErrorKind {
    /// Every kind, for documentation and the OpenAPI document.
    pub const ALL: &'static [ErrorKind] = &[
        Self::BadRequest,
        Self::InvalidJson,
        Self::PayloadTooLarge,
        Self::RequestTimeout,
        Self::UnsupportedMediaType,
        Self::Validation,
        Self::UnknownProvider,
        Self::InvalidRedirect,
        Self::InvalidState,
        Self::ProviderError,
        Self::InvalidIdToken,
        Self::EmailRequired,
        Self::EmailNotVerified,
        Self::MissingToken,
        Self::InvalidToken,
        Self::InvalidRefreshToken,
        Self::RefreshTokenReused,
        Self::InvalidCredentials,
        Self::WeakPassword,
        Self::EmailTaken,
        Self::InvalidOneTimeToken,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::LastSignInMethod,
        Self::RateLimited,
        Self::Unavailable,
        Self::Config,
        Self::Internal,
    ];

    /// The HTTP status code of this kind.
    pub fn status(self) -> u16 {
        use ErrorKind::*;
        match self {
            BadRequest | InvalidJson | UnknownProvider | InvalidRedirect | InvalidOneTimeToken => {
                400
            }
            InvalidState | ProviderError | InvalidIdToken | MissingToken | InvalidToken
            | InvalidRefreshToken | RefreshTokenReused | InvalidCredentials => 401,
            Forbidden => 403,
            NotFound => 404,
            MethodNotAllowed => 405,
            RequestTimeout => 408,
            Conflict | EmailTaken | EmailNotVerified | LastSignInMethod => 409,
            PayloadTooLarge => 413,
            UnsupportedMediaType => 415,
            Validation | WeakPassword | EmailRequired => 422,
            RateLimited => 429,
            Unavailable => 503,
            Config | Internal => 500,
        }
    }

    /// The stable, snake_case reason clients match on.
    pub fn reason(self) -> &'static str {
        use ErrorKind::*;
        match self {
            BadRequest => "bad_request",
            InvalidJson => "invalid_json",
            PayloadTooLarge => "payload_too_large",
            RequestTimeout => "request_timeout",
            UnsupportedMediaType => "unsupported_media_type",
            Validation => "validation_failed",
            UnknownProvider => "unknown_provider",
            InvalidRedirect => "invalid_redirect",
            InvalidState => "invalid_state",
            ProviderError => "provider_error",
            InvalidIdToken => "invalid_id_token",
            EmailRequired => "email_required",
            EmailNotVerified => "email_not_verified",
            MissingToken => "missing_token",
            InvalidToken | InvalidOneTimeToken => "invalid_token",
            InvalidRefreshToken => "invalid_refresh_token",
            RefreshTokenReused => "refresh_token_reused",
            InvalidCredentials => "invalid_credentials",
            WeakPassword => "weak_password",
            EmailTaken => "email_taken",
            Forbidden => "forbidden",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            Conflict => "conflict",
            LastSignInMethod => "last_sign_in_method",
            RateLimited => "rate_limited",
            Unavailable => "unavailable",
            Config => "configuration",
            Internal => "internal",
        }
    }

    fn default_message(self) -> &'static str {
        use ErrorKind::*;
        match self {
            BadRequest => "The request is malformed.",
            InvalidJson => "The body is not a valid JSON object.",
            PayloadTooLarge => "The request body is too large.",
            RequestTimeout => "The request was not received in time.",
            UnsupportedMediaType => "The body must be application/json.",
            Validation => "Some fields are invalid.",
            UnknownProvider => "Unknown or unconfigured identity provider.",
            InvalidRedirect => "The redirect URI is not allowed.",
            InvalidState => "The login state is unknown, expired or already used.",
            ProviderError => "The identity provider refused the sign-in.",
            InvalidIdToken => "The identity provider's id_token is invalid.",
            EmailRequired => "The identity provider did not share an email address.",
            EmailNotVerified => {
                "An account with this email exists and the provider did not verify the email: \
                 sign in with your original method and link this provider from there."
            }
            MissingToken => "A bearer token is required.",
            InvalidToken => "The access token is invalid, expired or revoked.",
            InvalidRefreshToken => "The refresh token is invalid or expired.",
            RefreshTokenReused => "The refresh token was already used; the session is revoked.",
            InvalidCredentials => "Wrong email or password.",
            WeakPassword => "The password is too weak.",
            EmailTaken => "An account with this email already exists.",
            InvalidOneTimeToken => "The token is invalid, expired or already used.",
            Forbidden => "You are not allowed to do this.",
            NotFound => "Not found.",
            MethodNotAllowed => "Method not allowed.",
            Conflict => "This conflicts with existing data.",
            LastSignInMethod => "This is the last way to sign in to the account.",
            RateLimited => "Too many attempts; try again later.",
            Unavailable => "A backend service is unavailable; try again shortly.",
            Config => "The configuration is invalid.",
            Internal => "Internal error.",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// The library's error: a kind, a message for people, optional per-field
/// details, an optional `Retry-After`, and the underlying cause (logged,
/// never shown to clients).
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    details: Option<serde_json::Value>,
    retry_after: Option<Duration>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with its default message.
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            message: Cow::Borrowed(kind.default_message()),
            details: None,
            retry_after: None,
            source: None,
        }
    }

    /// An error of `kind` with a message for people.
    pub fn msg(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
            ..Self::new(kind)
        }
    }

    /// A 422 with per-field messages (`{"field": "message"}`).
    pub fn validation(fields: serde_json::Map<String, serde_json::Value>) -> Self {
        Self::new(ErrorKind::Validation).with_details(serde_json::Value::Object(fields))
    }

    /// A 500 for an unexpected condition; the message is logged, not shown.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::new(ErrorKind::Internal).with_source(cause)
    }

    /// A 503 for an unavailable backend.
    pub fn unavailable(
        cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::new(ErrorKind::Unavailable).with_source(cause)
    }

    /// Attaches structured details (shown to clients as `error.details`).
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Attaches a `Retry-After` duration.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(
        mut self,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(cause.into());
        self
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The stable reason string.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Per-field details, if any.
    pub fn details(&self) -> Option<&serde_json::Value> {
        self.details.as_ref()
    }

    /// How long the client should wait, for 429 and 503.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The contract's envelope: `{"error": {"code", "message", "reason"}}`
    /// (plus `details` when present).
    pub fn to_body(&self) -> serde_json::Value {
        let mut inner = serde_json::json!({
            "code": self.status(),
            "message": self.message,
            "reason": self.reason(),
        });
        if let (Some(d), Some(obj)) = (&self.details, inner.as_object_mut()) {
            obj.insert("details".into(), d.clone());
        }
        serde_json::json!({ "error": inner })
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(details) = &self.details {
            d.field("details", details);
        }
        if let Some(source) = &self.source {
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.reason(), self.message)?;
        if let Some(source) = &self.source {
            write!(f, " ({source})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error::new(kind)
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => Error::new(ErrorKind::NotFound).with_source(e),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Error::new(ErrorKind::Conflict).with_source(e)
            }
            sqlx::Error::Database(db)
                if db.is_foreign_key_violation() || db.is_check_violation() =>
            {
                Error::new(ErrorKind::Conflict).with_source(e)
            }
            // SQLSTATE class 22, data exception: a value the database cannot
            // hold (a NUL character in text for PostgreSQL, a number out of
            // range): the request's fault, not a 500.
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|c| c.len() == 5 && c.starts_with("22")) =>
            {
                Error::msg(
                    ErrorKind::BadRequest,
                    "A value in the request cannot be stored (for example a NUL character).",
                )
                .with_source(e)
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Error::unavailable(e),
            _ => Error::internal(e),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::internal(e)
    }
}

#[cfg(feature = "redis")]
impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Error::unavailable(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_code_message_reason() {
        let body = Error::new(ErrorKind::EmailTaken).to_body();
        assert_eq!(body["error"]["code"], 409);
        assert_eq!(body["error"]["reason"], "email_taken");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }

    #[test]
    fn every_kind_has_a_distinct_reason_or_is_a_known_alias() {
        let mut seen = std::collections::HashMap::new();
        for k in ErrorKind::ALL {
            if let Some(prev) = seen.insert(k.reason(), *k) {
                // The contract uses `invalid_token` for both access tokens (401)
                // and one-time tokens (400).
                assert_eq!(
                    k.reason(),
                    "invalid_token",
                    "{prev:?} and {k:?} share a reason"
                );
            }
        }
    }
}
