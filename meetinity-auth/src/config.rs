//! Configuration from the environment (and a `.env` file if present).
//!
//! Every variable of the HTTP contract is read here; each field documents its
//! variable and default. An invalid value stops start-up with one message
//! naming every bad variable and its problem. Secrets (`JWT_SECRET`, client
//! secrets, passwords inside `DATABASE_URL`, `REDIS_URL` or `SMTP_URL`) never
//! appear in `Debug` output or logs.
//!
//! ```
//! use meetinity_auth::Config;
//! let config = Config::from_vars([("APP_PORT", "8080"), ("JWT_ALGO", "HS256")]).unwrap();
//! assert_eq!(config.port, 8080);
//! assert!(Config::from_vars([("APP_PORT", "eighty")]).is_err());
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::error::{Error, ErrorKind, Result};
use crate::secret::SecretString;

/// The signing algorithm of access tokens (`JWT_ALGO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `JWT_SECRET`.
    Hs256,
    /// RSA PKCS#1 v1.5 SHA-256 with `JWT_PRIVATE_KEY_FILE`.
    Rs256,
    /// ECDSA P-256 SHA-256 with `JWT_PRIVATE_KEY_FILE`.
    Es256,
    /// Ed25519 with `JWT_PRIVATE_KEY_FILE`.
    EdDsa,
}

impl JwtAlgorithm {
    /// Parses `HS256`, `RS256`, `ES256`, `EdDSA` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "HS256" => Some(Self::Hs256),
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            "EDDSA" | "ED25519" => Some(Self::EdDsa),
            _ => None,
        }
    }

    /// The matching jsonwebtoken algorithm.
    pub fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Hs256 => jsonwebtoken::Algorithm::HS256,
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
            Self::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

/// Where data lives (`DATABASE_URL`).
#[derive(Clone)]
pub enum DatabaseUrl {
    /// An SQLite database (`sqlite://path`); the default is `sqlite://meetinity.db`.
    Sqlite(String),
    /// A PostgreSQL database (`postgres://`, `postgresql://`, or the seed's
    /// `postgresql+psycopg://`, normalized to `postgres://`).
    Postgres(SecretString),
}

impl DatabaseUrl {
    /// Parses and normalizes a `DATABASE_URL` value.
    pub fn parse(raw: &str) -> std::result::Result<Self, String> {
        let raw = raw.trim();
        if let Some(rest) = raw.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            if path.is_empty() {
                return Err("an sqlite URL needs a path, e.g. sqlite://meetinity.db".into());
            }
            return Ok(Self::Sqlite(format!("sqlite://{path}")));
        }
        let (scheme, rest) = raw.split_once("://").ok_or_else(|| {
            "expected postgres://..., postgresql://... or sqlite://...".to_owned()
        })?;
        let scheme = scheme.to_ascii_lowercase();
        let base = scheme.split('+').next().unwrap_or_default();
        if base != "postgres" && base != "postgresql" {
            return Err(format!(
                "unsupported scheme `{scheme}`; expected postgres, postgresql, postgresql+psycopg or sqlite"
            ));
        }
        let normalized = format!("postgres://{rest}");
        let url = Url::parse(&normalized).map_err(|e| format!("not a valid URL ({e})"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL has no host".into());
        }
        Ok(Self::Postgres(SecretString::new(normalized)))
    }

    /// The URL with any password replaced by `***`, for logs.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => redact_url(s.expose()),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Replaces the password of a URL with `***`.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "[unparsable url]".to_owned(),
    }
}

/// An OAuth/OpenID Connect client configured for one provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// `{NAME}_CLIENT_ID`.
    pub client_id: String,
    /// `{NAME}_CLIENT_SECRET`.
    pub client_secret: SecretString,
    /// `{NAME}_REDIRECT_URI`: the callback registered with the provider.
    pub redirect_uri: String,
    /// `{NAME}_ISSUER_URL`.
    pub issuer_url: String,
    /// `{NAME}_SCOPES` (space- or comma-separated; `openid` is always
    /// requested); empty: the provider's defaults.
    pub scopes: Vec<String>,
}

/// Names that cannot be identity providers: they are other `/auth/...` routes.
pub const RESERVED_PROVIDER_NAMES: &[&str] = &[
    "email",
    "login",
    "logout",
    "logout-all",
    "password",
    "profile",
    "refresh",
    "register",
    "verify",
    "google",
    "linkedin",
];

/// The whole configuration. Defaults are those of the contract.
#[derive(Clone)]
pub struct Config {
    /// `APP_PORT` (default 5001).
    pub port: u16,
    /// `APP_HOST` (default `0.0.0.0`).
    pub host: String,
    /// `CORS_ORIGINS`, comma-separated (default `*`).
    pub cors_origins: Vec<String>,
    /// `DATABASE_URL` (default `sqlite://meetinity.db` in the working directory).
    pub database_url: DatabaseUrl,
    /// `DB_MAX_CONNECTIONS` (default 10).
    pub db_max_connections: u32,
    /// `DB_ACQUIRE_TIMEOUT_MS` (default 3000): waiting for a pooled connection.
    pub db_acquire_timeout: Duration,
    /// `DB_STATEMENT_TIMEOUT_MS` (default 5000).
    pub db_statement_timeout: Duration,
    /// `REDIS_URL` (default: none, in-process cache only).
    pub redis_url: Option<SecretString>,
    /// `REDIS_TIMEOUT_MS` (default 500): connect and command timeout.
    pub redis_timeout: Duration,
    /// `REDIS_PREFIX` (default `meetinity`): the prefix of every Redis key and
    /// channel, so several deployments (or tests) can share one Redis.
    pub redis_prefix: String,
    /// `REDIS_CACHE_TTL` in seconds (default 300): profile cache lifetime.
    pub cache_ttl: Duration,
    /// `ALLOWED_REDIRECTS`, comma-separated: extra exact redirect URIs.
    pub allowed_redirects: Vec<String>,
    /// `JWT_SECRET`: the raw HMAC key (UTF-8 bytes) for HS256, at least 32 bytes.
    /// Unset: a random key is generated at start (tokens do not survive a restart).
    pub jwt_secret: Option<SecretString>,
    /// `JWT_PREVIOUS_SECRETS`, comma-separated: older HS256 keys still accepted for verification.
    pub jwt_previous_secrets: Vec<SecretString>,
    /// `JWT_ALGO` (default HS256): HS256, RS256, ES256 or EdDSA.
    pub jwt_algorithm: JwtAlgorithm,
    /// `JWT_TTL_MIN` (default 15): access token lifetime in minutes.
    pub jwt_ttl: Duration,
    /// `JWT_ISSUER` (default `PUBLIC_BASE_URL`).
    pub jwt_issuer: String,
    /// `JWT_AUDIENCE` (default `meetinity`).
    pub jwt_audience: String,
    /// `JWT_LEEWAY_SECS` (default 30): clock skew tolerated on `exp`/`nbf`/`iat`.
    pub jwt_leeway: Duration,
    /// `JWT_PRIVATE_KEY_FILE`: PEM private key for RS256/ES256/EdDSA (read at start).
    pub jwt_private_key_file: Option<PathBuf>,
    /// The PEM read from `JWT_PRIVATE_KEY_FILE`.
    pub jwt_private_key_pem: Option<SecretString>,
    /// `JWT_VERIFY_KEY_FILES`, comma-separated PEMs still accepted for verification (rotation).
    pub jwt_verify_key_pems: Vec<SecretString>,
    /// `REFRESH_TTL_DAYS` (default 30): absolute session lifetime.
    pub refresh_ttl: Duration,
    /// `REFRESH_GRACE_SECS` (default 5): window in which a just-rotated refresh
    /// token gets the same successor instead of revoking the session.
    pub refresh_grace: Duration,
    /// `ADMIN_EMAILS`, comma-separated, lowercased: verified emails that get the `admin` role.
    pub admin_emails: Vec<String>,
    /// `SMTP_URL` (e.g. `smtp://127.0.0.1:2525`); unset: mails go to the log.
    pub smtp_url: Option<SecretString>,
    /// `SMTP_TIMEOUT_SECS` (default 10).
    pub smtp_timeout: Duration,
    /// `MAIL_FROM` (default `Meetinity <no-reply@localhost>`).
    pub mail_from: String,
    /// `PUBLIC_BASE_URL` (default `http://localhost:{APP_PORT}`): links in mails.
    pub public_base_url: String,
    /// `MAX_BODY_BYTES` (default 1048576).
    pub max_body_bytes: usize,
    /// `REQUEST_TIMEOUT_SECS` (default 30): reading a request (headers and body).
    pub request_timeout: Duration,
    /// `HTTP_TIMEOUT_SECS` (default 10): outbound calls to identity providers.
    pub http_timeout: Duration,
    /// `HASH_CONCURRENCY` (default: number of CPUs): concurrent Argon2id hashes.
    pub hash_concurrency: usize,
    /// `LOGIN_MAX_FAILURES` (default 5): failed logins per account per window before 429.
    pub login_max_failures: u64,
    /// `LOGIN_IP_MAX_FAILURES` (default 50): failed logins per IP per window before 429.
    pub login_ip_max_failures: u64,
    /// `LOGIN_FAILURE_WINDOW_SECS` (default 900).
    pub login_failure_window: Duration,
    /// `ACCOUNT_RETENTION_DAYS` (default 30): erased accounts are purged after this.
    pub account_retention: Duration,
    /// `AUDIT_RETENTION_DAYS` (default 365).
    pub audit_retention: Duration,
    /// `PURGE_INTERVAL_SECS` (default 0 = off): `serve` also runs the
    /// `purge` command's work every this many seconds, in the background.
    pub purge_interval: Option<Duration>,
    /// `USERS_MAX_TOTAL` (default 1000, 1-1000000): user listings and
    /// searches count at most this many matches for `total` (beyond it
    /// `total_exact` is false) and refuse pages past them.
    pub users_max_total: u64,
    /// `TRUSTED_PROXIES`, comma-separated IPs whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// `RATE_LIMIT_PER_MINUTE` (default 60; 0 = off): requests per minute per
    /// client IP on each `/auth/*` entry point (register, login, refresh,
    /// password forgot/reset, email verify, provider start and callback).
    pub rate_limit_per_minute: u64,
    /// Google (`GOOGLE_CLIENT_ID`, `GOOGLE_CLIENT_SECRET`, `GOOGLE_REDIRECT_URI`,
    /// `GOOGLE_ISSUER_URL` default `https://accounts.google.com`); `None` without credentials.
    pub google: Option<ProviderConfig>,
    /// LinkedIn (`LINKEDIN_*`, issuer default `https://www.linkedin.com/oauth`).
    pub linkedin: Option<ProviderConfig>,
    /// Further OpenID Connect providers, by name: `OIDC_PROVIDERS=acme,other`
    /// with `ACME_CLIENT_ID`, `ACME_CLIENT_SECRET`, `ACME_REDIRECT_URI`,
    /// `ACME_ISSUER_URL` (required) and optionally `ACME_SCOPES` for each
    /// (the prefix is the name in upper case, `-` as `_`). A listed provider
    /// without any credentials is left out.
    pub extra_providers: Vec<(String, ProviderConfig)>,
    /// `RUST_LOG` (default `info`).
    pub log_filter: String,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("host", &self.host)
            .field("cors_origins", &self.cors_origins)
            .field("database_url", &self.database_url)
            .field(
                "redis_url",
                &self.redis_url.as_ref().map(|u| redact_url(u.expose())),
            )
            .field("cache_ttl", &self.cache_ttl)
            .field("allowed_redirects", &self.allowed_redirects)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("jwt_algorithm", &self.jwt_algorithm)
            .field("jwt_ttl", &self.jwt_ttl)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_private_key_file", &self.jwt_private_key_file)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("admin_emails", &self.admin_emails)
            .field(
                "smtp_url",
                &self.smtp_url.as_ref().map(|u| redact_url(u.expose())),
            )
            .field("mail_from", &self.mail_from)
            .field("public_base_url", &self.public_base_url)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("db_max_connections", &self.db_max_connections)
            .field("db_acquire_timeout", &self.db_acquire_timeout)
            .field("db_statement_timeout", &self.db_statement_timeout)
            .field("redis_timeout", &self.redis_timeout)
            .field("jwt_previous_secrets", &self.jwt_previous_secrets.len())
            .field("jwt_verify_keys", &self.jwt_verify_key_pems.len())
            .field("jwt_leeway", &self.jwt_leeway)
            .field("refresh_grace", &self.refresh_grace)
            .field("smtp_timeout", &self.smtp_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("http_timeout", &self.http_timeout)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("login_max_failures", &self.login_max_failures)
            .field("login_ip_max_failures", &self.login_ip_max_failures)
            .field("login_failure_window", &self.login_failure_window)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("account_retention", &self.account_retention)
            .field("audit_retention", &self.audit_retention)
            .field("purge_interval", &self.purge_interval)
            .field("users_max_total", &self.users_max_total)
            .field("log_filter", &self.log_filter)
            .field("google", &self.google)
            .field("linkedin", &self.linkedin)
            .field("extra_providers", &self.extra_providers)
            .finish_non_exhaustive()
    }
}

struct Vars {
    map: HashMap<String, String>,
    problems: Vec<String>,
}

impl Vars {
    fn get(&self, name: &str) -> Option<&str> {
        self.map
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn number<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
        &mut self,
        name: &str,
        default: T,
        min: T,
        max: T,
    ) -> T {
        match self.get(name) {
            None => default,
            Some(raw) => match raw.parse::<T>() {
                Ok(v) if v >= min && v <= max => v,
                Ok(_) => {
                    self.problems
                        .push(format!("{name}: {raw:?} is out of range ({min}-{max})"));
                    default
                }
                Err(_) => {
                    self.problems.push(format!(
                        "{name}: expected a number ({min}-{max}), got {raw:?}"
                    ));
                    default
                }
            },
        }
    }

    fn secs(&mut self, name: &str, default: u64, min: u64, max: u64) -> Duration {
        Duration::from_secs(self.number(name, default, min, max))
    }

    fn millis(&mut self, name: &str, default: u64, min: u64, max: u64) -> Duration {
        Duration::from_millis(self.number(name, default, min, max))
    }

    fn read_file(&mut self, var: &str, path: &str) -> Option<SecretString> {
        match std::fs::read_to_string(path) {
            Ok(pem) => Some(SecretString::new(pem)),
            Err(e) => {
                self.problems
                    .push(format!("{var}: cannot read {path:?} ({e})"));
                None
            }
        }
    }

    fn provider(&mut self, prefix: &str, default_issuer: &str) -> Option<ProviderConfig> {
        let id = self.get(&format!("{prefix}_CLIENT_ID")).map(str::to_owned);
        let secret = self
            .get(&format!("{prefix}_CLIENT_SECRET"))
            .map(str::to_owned);
        let redirect = self
            .get(&format!("{prefix}_REDIRECT_URI"))
            .map(str::to_owned);
        let issuer = self.string(&format!("{prefix}_ISSUER_URL"), default_issuer);
        match (id, secret, redirect) {
            (None, None, None) => None,
            (Some(client_id), Some(secret), Some(redirect_uri)) => {
                if let Err(p) = check_absolute_url(&redirect_uri) {
                    self.problems.push(format!("{prefix}_REDIRECT_URI: {p}"));
                }
                if let Err(p) = check_issuer(&issuer) {
                    self.problems.push(format!("{prefix}_ISSUER_URL: {p}"));
                }
                let scopes = self
                    .get(&format!("{prefix}_SCOPES"))
                    .map(|v| {
                        v.split([' ', ','])
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                Some(ProviderConfig {
                    client_id,
                    client_secret: SecretString::new(secret),
                    redirect_uri,
                    issuer_url: issuer.trim_end_matches('/').to_owned(),
                    scopes,
                })
            }
            _ => {
                self.problems.push(format!(
                    "{prefix}_CLIENT_ID, {prefix}_CLIENT_SECRET and {prefix}_REDIRECT_URI must be set together"
                ));
                None
            }
        }
    }
}

impl Vars {
    /// `OIDC_PROVIDERS` and the variables of each provider it names.
    fn extra_providers(&mut self) -> Vec<(String, ProviderConfig)> {
        let mut out: Vec<(String, ProviderConfig)> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for raw in self.list("OIDC_PROVIDERS") {
            let name = raw.to_ascii_lowercase();
            let valid = name.len() <= 32
                && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                self.problems.push(format!(
                    "OIDC_PROVIDERS: {raw:?} is not a valid provider name (letters, digits, `-`, `_`; at most 32)"
                ));
                continue;
            }
            if RESERVED_PROVIDER_NAMES.contains(&name.as_str()) {
                self.problems.push(format!(
                    "OIDC_PROVIDERS: {name:?} is reserved (google and linkedin have their own variables)"
                ));
                continue;
            }
            if seen.contains(&name) {
                self.problems
                    .push(format!("OIDC_PROVIDERS: {name:?} is listed twice"));
                continue;
            }
            seen.push(name.clone());
            let prefix = name.to_ascii_uppercase().replace('-', "_");
            let configured = ["CLIENT_ID", "CLIENT_SECRET", "REDIRECT_URI"]
                .iter()
                .any(|v| self.get(&format!("{prefix}_{v}")).is_some());
            if configured && self.get(&format!("{prefix}_ISSUER_URL")).is_none() {
                self.problems.push(format!(
                    "{prefix}_ISSUER_URL: required for provider {name:?}"
                ));
                continue;
            }
            if let Some(p) = self.provider(&prefix, "") {
                out.push((name, p));
            }
        }
        out
    }
}

fn check_absolute_url(raw: &str) -> std::result::Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("{raw:?} is not an absolute URL ({e})"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!("{raw:?} must be an http(s) URL"));
    }
    Ok(url)
}

/// Whether `host` is a loopback host (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// An issuer must be https, or http on a loopback host.
fn check_issuer(raw: &str) -> std::result::Result<(), String> {
    let url = check_absolute_url(raw)?;
    if url.scheme() == "http" && !url.host().as_ref().is_some_and(is_loopback_host) {
        return Err(format!(
            "{raw:?}: plain http:// issuers are accepted only on loopback hosts"
        ));
    }
    Ok(())
}

impl Config {
    /// Reads the process environment, after loading `.env` from the working
    /// directory if it exists (real environment variables win).
    pub fn from_env() -> Result<Self> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => {
                return Err(Error::msg(
                    ErrorKind::Config,
                    format!(".env: cannot be read ({e})"),
                ))
            }
        }
        Self::from_vars(std::env::vars())
    }

    /// Builds the configuration from explicit variables (tests, embedding).
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut v = Vars {
            map: vars
                .into_iter()
                .map(|(k, val)| (k.into(), val.into()))
                .collect(),
            problems: Vec::new(),
        };

        let port = v.number("APP_PORT", 5001u16, 1, u16::MAX);
        let host = v.string("APP_HOST", "0.0.0.0");
        let mut cors_origins = v.list("CORS_ORIGINS");
        if cors_origins.is_empty() {
            cors_origins.push("*".into());
        }
        let database_url = match v.get("DATABASE_URL").map(str::to_owned) {
            None => DatabaseUrl::Sqlite("sqlite://meetinity.db".into()),
            Some(raw) => DatabaseUrl::parse(&raw).unwrap_or_else(|p| {
                v.problems.push(format!("DATABASE_URL: {p}"));
                DatabaseUrl::Sqlite("sqlite://meetinity.db".into())
            }),
        };
        let redis_url = v.get("REDIS_URL").map(str::to_owned);
        if let Some(raw) = &redis_url {
            match Url::parse(raw) {
                Ok(u) if matches!(u.scheme(), "redis" | "rediss" | "redis+unix" | "unix") => {}
                _ => v
                    .problems
                    .push("REDIS_URL: expected redis://host:port/db or rediss://...".to_owned()),
            }
        }
        let redis_prefix = v.string("REDIS_PREFIX", "meetinity");
        if !redis_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            v.problems.push(format!(
                "REDIS_PREFIX: {redis_prefix:?} may only hold letters, digits, `-`, `_`, `.` and `:`"
            ));
        }
        let jwt_algorithm = match v.get("JWT_ALGO").map(str::to_owned) {
            None => JwtAlgorithm::Hs256,
            Some(raw) => JwtAlgorithm::parse(&raw).unwrap_or_else(|| {
                v.problems.push(format!(
                    "JWT_ALGO: unknown algorithm {raw:?}; expected HS256, RS256, ES256 or EdDSA"
                ));
                JwtAlgorithm::Hs256
            }),
        };
        let jwt_secret = v.get("JWT_SECRET").map(SecretString::new);
        if let Some(secret) = &jwt_secret {
            if secret.expose().len() < 32 {
                v.problems.push(
                    "JWT_SECRET: must be at least 32 bytes (256 bits); generate one with `openssl rand -base64 48`"
                        .to_owned(),
                );
            }
        }
        let jwt_previous_secrets: Vec<SecretString> = v
            .list("JWT_PREVIOUS_SECRETS")
            .into_iter()
            .map(SecretString::new)
            .collect();
        let jwt_private_key_file = v.get("JWT_PRIVATE_KEY_FILE").map(PathBuf::from);
        let jwt_private_key_pem = match &jwt_private_key_file {
            Some(path) => v.read_file("JWT_PRIVATE_KEY_FILE", &path.to_string_lossy()),
            None => None,
        };
        if jwt_algorithm != JwtAlgorithm::Hs256 && jwt_private_key_file.is_none() {
            v.problems.push(format!(
                "JWT_PRIVATE_KEY_FILE: required with JWT_ALGO={jwt_algorithm:?} (generate one with `meetinity-auth-server keys generate`)"
            ));
        }
        let jwt_verify_key_pems = v
            .list("JWT_VERIFY_KEY_FILES")
            .into_iter()
            .filter_map(|p| v.read_file("JWT_VERIFY_KEY_FILES", &p))
            .collect();
        let public_base_url = v
            .string("PUBLIC_BASE_URL", &format!("http://localhost:{port}"))
            .trim_end_matches('/')
            .to_owned();
        if let Err(p) = check_absolute_url(&public_base_url) {
            v.problems.push(format!("PUBLIC_BASE_URL: {p}"));
        }
        let allowed_redirects = v.list("ALLOWED_REDIRECTS");
        for r in &allowed_redirects {
            if let Err(p) = check_absolute_url(r) {
                v.problems.push(format!("ALLOWED_REDIRECTS: {p}"));
            }
        }
        let smtp_url = v.get("SMTP_URL").map(SecretString::new);
        if let Some(raw) = &smtp_url {
            match Url::parse(raw.expose()) {
                Ok(u) if matches!(u.scheme(), "smtp" | "smtps") => {}
                _ => v.problems.push(
                    "SMTP_URL: expected smtp://host:port or smtps://user:pass@host:port".into(),
                ),
            }
        }
        let mut trusted_proxies = Vec::new();
        for raw in v.list("TRUSTED_PROXIES") {
            match raw.parse() {
                Ok(ip) => trusted_proxies.push(ip),
                Err(_) => v
                    .problems
                    .push(format!("TRUSTED_PROXIES: {raw:?} is not an IP address")),
            }
        }
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());

        let config = Config {
            port,
            host,
            cors_origins,
            database_url,
            db_max_connections: v.number("DB_MAX_CONNECTIONS", 10u32, 1, 1000),
            db_acquire_timeout: v.millis("DB_ACQUIRE_TIMEOUT_MS", 3000, 10, 600_000),
            db_statement_timeout: v.millis("DB_STATEMENT_TIMEOUT_MS", 5000, 10, 3_600_000),
            redis_url: redis_url.map(SecretString::new),
            redis_timeout: v.millis("REDIS_TIMEOUT_MS", 500, 10, 60_000),
            redis_prefix,
            cache_ttl: v.secs("REDIS_CACHE_TTL", 300, 0, 86_400 * 30),
            allowed_redirects,
            jwt_secret,
            jwt_previous_secrets,
            jwt_algorithm,
            jwt_ttl: Duration::from_secs(60 * v.number("JWT_TTL_MIN", 15u64, 1, 60 * 24)),
            jwt_issuer: v.string("JWT_ISSUER", &public_base_url),
            jwt_audience: v.string("JWT_AUDIENCE", "meetinity"),
            jwt_leeway: v.secs("JWT_LEEWAY_SECS", 30, 0, 300),
            jwt_private_key_file,
            jwt_private_key_pem,
            jwt_verify_key_pems,
            refresh_ttl: Duration::from_secs(86_400 * v.number("REFRESH_TTL_DAYS", 30u64, 1, 365)),
            refresh_grace: v.secs("REFRESH_GRACE_SECS", 5, 0, 60),
            admin_emails: v
                .list("ADMIN_EMAILS")
                .into_iter()
                .map(|e| e.to_lowercase())
                .collect(),
            smtp_url,
            smtp_timeout: v.secs("SMTP_TIMEOUT_SECS", 10, 1, 300),
            mail_from: v.string("MAIL_FROM", "Meetinity <no-reply@localhost>"),
            public_base_url,
            max_body_bytes: v.number("MAX_BODY_BYTES", 1_048_576usize, 64, 64 * 1_048_576),
            request_timeout: v.secs("REQUEST_TIMEOUT_SECS", 30, 1, 3600),
            http_timeout: v.secs("HTTP_TIMEOUT_SECS", 10, 1, 300),
            hash_concurrency: v.number("HASH_CONCURRENCY", cpus, 1, 256),
            login_max_failures: v.number("LOGIN_MAX_FAILURES", 5u64, 1, 10_000),
            login_ip_max_failures: v.number("LOGIN_IP_MAX_FAILURES", 50u64, 1, 1_000_000),
            login_failure_window: v.secs("LOGIN_FAILURE_WINDOW_SECS", 900, 1, 86_400),
            account_retention: Duration::from_secs(
                86_400 * v.number("ACCOUNT_RETENTION_DAYS", 30u64, 0, 3650),
            ),
            audit_retention: Duration::from_secs(
                86_400 * v.number("AUDIT_RETENTION_DAYS", 365u64, 1, 36_500),
            ),
            purge_interval: Some(v.secs("PURGE_INTERVAL_SECS", 0, 0, 30 * 86_400))
                .filter(|d| !d.is_zero()),
            users_max_total: v.number("USERS_MAX_TOTAL", 1000u64, 1, 1_000_000),
            trusted_proxies,
            rate_limit_per_minute: v.number("RATE_LIMIT_PER_MINUTE", 60u64, 0, 1_000_000),
            google: v.provider("GOOGLE", "https://accounts.google.com"),
            linkedin: v.provider("LINKEDIN", "https://www.linkedin.com/oauth"),
            extra_providers: v.extra_providers(),
            log_filter: v.string("RUST_LOG", "info"),
        };
        if v.problems.is_empty() {
            Ok(config)
        } else {
            Err(Error::msg(
                ErrorKind::Config,
                format!("invalid configuration: {}", v.problems.join("; ")),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn err(vars: &[(&str, &str)]) -> String {
        Config::from_vars(vars.iter().copied())
            .unwrap_err()
            .message()
            .to_owned()
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::from_vars(Vec::<(String, String)>::new()).unwrap();
        assert_eq!(c.port, 5001);
        assert_eq!(c.cors_origins, vec!["*"]);
        assert!(matches!(&c.database_url, DatabaseUrl::Sqlite(p) if p == "sqlite://meetinity.db"));
        assert_eq!(c.cache_ttl, Duration::from_secs(300));
        assert_eq!(c.jwt_algorithm, JwtAlgorithm::Hs256);
        assert_eq!(c.refresh_ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(c.max_body_bytes, 1_048_576);
        assert!(c.google.is_none() && c.linkedin.is_none());
    }

    #[test]
    fn invalid_values_name_the_variable() {
        assert!(err(&[("APP_PORT", "abc")]).contains("APP_PORT"));
        assert!(err(&[("APP_PORT", "70000")]).contains("APP_PORT"));
        assert!(err(&[("JWT_ALGO", "HS512x")]).contains("JWT_ALGO"));
        assert!(err(&[("DATABASE_URL", "mysql://x")]).contains("DATABASE_URL"));
        assert!(err(&[("DATABASE_URL", "postgres://")]).contains("DATABASE_URL"));
        assert!(err(&[("JWT_SECRET", "short")]).contains("JWT_SECRET"));
        let e = err(&[
            ("JWT_ALGO", "RS256"),
            ("JWT_PRIVATE_KEY_FILE", "/nonexistent/key.pem"),
        ]);
        assert!(
            e.contains("JWT_PRIVATE_KEY_FILE") && e.contains("cannot read"),
            "{e}"
        );
        assert!(err(&[("GOOGLE_CLIENT_ID", "x")]).contains("GOOGLE_CLIENT_SECRET"));
        let e = err(&[
            ("LINKEDIN_CLIENT_ID", "x"),
            ("LINKEDIN_CLIENT_SECRET", "y"),
            ("LINKEDIN_REDIRECT_URI", "https://app/cb"),
            ("LINKEDIN_ISSUER_URL", "http://evil.example"),
        ]);
        assert!(e.contains("LINKEDIN_ISSUER_URL"), "{e}");
    }

    #[test]
    fn purge_interval_and_users_max_total() {
        let c = Config::from_vars(Vec::<(String, String)>::new()).unwrap();
        assert_eq!((c.purge_interval, c.users_max_total), (None, 1000));
        let c = Config::from_vars([("PURGE_INTERVAL_SECS", "3600"), ("USERS_MAX_TOTAL", "50")])
            .unwrap();
        assert_eq!(c.purge_interval, Some(Duration::from_secs(3600)));
        assert_eq!(c.users_max_total, 50);
        assert_eq!(
            Config::from_vars([("PURGE_INTERVAL_SECS", "0")])
                .unwrap()
                .purge_interval,
            None
        );
        assert!(err(&[("PURGE_INTERVAL_SECS", "-1")]).contains("PURGE_INTERVAL_SECS"));
        assert!(err(&[("PURGE_INTERVAL_SECS", "hourly")]).contains("PURGE_INTERVAL_SECS"));
        assert!(err(&[("USERS_MAX_TOTAL", "0")]).contains("USERS_MAX_TOTAL"));
        assert!(err(&[("USERS_MAX_TOTAL", "2000000")]).contains("USERS_MAX_TOTAL"));
    }

    #[test]
    fn seed_database_url_is_normalized_and_redacted() {
        let c = Config::from_vars([(
            "DATABASE_URL",
            "postgresql+psycopg://meetinity:s3cret@localhost:5432/meetinity",
        )])
        .unwrap();
        match &c.database_url {
            DatabaseUrl::Postgres(u) => {
                assert_eq!(
                    u.expose(),
                    "postgres://meetinity:s3cret@localhost:5432/meetinity"
                )
            }
            other => panic!("{other:?}"),
        }
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn secrets_never_in_debug() {
        let c = Config::from_vars([
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-secret"),
            ("GOOGLE_CLIENT_ID", "id"),
            ("GOOGLE_CLIENT_SECRET", "google-client-secret"),
            ("GOOGLE_REDIRECT_URI", "https://app.example/cb"),
            ("SMTP_URL", "smtp://user:mailpass@127.0.0.1:2525"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        for s in ["0123456789abcdef", "google-client-secret", "mailpass"] {
            assert!(!debug.contains(s), "{s} leaked in {debug}");
        }
        assert!(c.google.is_some());
    }

    #[test]
    fn extra_oidc_providers_and_redis_prefix() {
        let acme = [
            ("OIDC_PROVIDERS", "Acme, my-idp, unused"),
            ("ACME_CLIENT_ID", "acme-id"),
            ("ACME_CLIENT_SECRET", "acme-secret-value"),
            (
                "ACME_REDIRECT_URI",
                "https://app.example/auth/acme/callback",
            ),
            ("ACME_ISSUER_URL", "https://id.acme.example/realms/main/"),
            ("ACME_SCOPES", "openid email,profile"),
            ("MY_IDP_CLIENT_ID", "mine"),
            ("MY_IDP_CLIENT_SECRET", "s"),
            (
                "MY_IDP_REDIRECT_URI",
                "https://app.example/auth/my-idp/callback",
            ),
            ("MY_IDP_ISSUER_URL", "http://127.0.0.1:8080"),
        ];
        let c = Config::from_vars(acme).unwrap();
        let names: Vec<&str> = c.extra_providers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["acme", "my-idp"], "unused has no credentials");
        let p = &c.extra_providers[0].1;
        assert_eq!(p.issuer_url, "https://id.acme.example/realms/main");
        assert_eq!(p.scopes, ["openid", "email", "profile"]);
        assert!(!format!("{c:?}").contains("acme-secret-value"));
        assert_eq!(c.redis_prefix, "meetinity");

        let e = err(&[
            ("OIDC_PROVIDERS", "acme"),
            ("ACME_CLIENT_ID", "x"),
            ("ACME_CLIENT_SECRET", "y"),
            ("ACME_REDIRECT_URI", "https://app/cb"),
        ]);
        assert!(e.contains("ACME_ISSUER_URL"), "{e}");
        for bad in ["login", "google", "a/b", "-x", "acme,acme"] {
            assert!(
                err(&[("OIDC_PROVIDERS", bad)]).contains("OIDC_PROVIDERS"),
                "{bad}"
            );
        }
        assert!(err(&[("REDIS_PREFIX", "a b")]).contains("REDIS_PREFIX"));
        let c = Config::from_vars([("REDIS_PREFIX", "tenant-1")]).unwrap();
        assert_eq!(c.redis_prefix, "tenant-1");
    }
}
