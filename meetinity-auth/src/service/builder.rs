//! [`AuthServiceBuilder`]: configuration in, a ready [`Authenticator`] out.

use std::collections::HashMap;
use std::sync::Arc;

use super::default::{Authenticator, Parts, Policy};
use crate::cache::{Cache, CachingUserStore};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, DatabaseUrl, JwtAlgorithm};
use crate::error::{Error, ErrorKind, Result};
use crate::mail::{LogMailer, Mailer, SmtpMailer};
use crate::password::PasswordHasher;
use crate::provider::{IdentityProvider, OidcProvider, OidcProviderConfig};
use crate::store::{
    AuditStore, OneTimeTokenStore, PoolSettings, ProfileStore, SessionStore, Store, UserStore,
};
use crate::token::{KeySet, StaticKeySet, TokenService};

/// The backend store, kept so callers can reach its pool (migrations, backups).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite(Arc<crate::store::SqliteStore>),
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(Arc<crate::store::PostgresStore>),
    /// A store supplied by the embedder.
    Custom,
}

struct Seams {
    users: Arc<dyn UserStore>,
    sessions: Arc<dyn SessionStore>,
    one_time: Arc<dyn OneTimeTokenStore>,
    audit: Arc<dyn AuditStore>,
    profiles: Arc<dyn ProfileStore>,
}

impl Seams {
    fn of<S: Store>(s: Arc<S>) -> Self {
        Self {
            users: s.clone(),
            sessions: s.clone(),
            one_time: s.clone(),
            audit: s.clone(),
            profiles: s,
        }
    }
}

/// Builds an [`Authenticator`] from a [`Config`], with any seam replaceable.
///
/// ```no_run
/// # async fn run() -> meetinity_auth::Result<()> {
/// use std::sync::Arc;
/// use meetinity_auth::{service::AuthServiceBuilder, store::SqliteStore, Config};
/// let store = Arc::new(SqliteStore::open("app.db").await?);
/// store.migrate().await?;
/// let auth = AuthServiceBuilder::from_config(Config::from_vars([("JWT_SECRET", "a very long secret of at least 32 bytes")])?)
///     .store(store)
///     .build()
///     .await?;
/// # let _ = auth; Ok(()) }
/// ```
pub struct AuthServiceBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
    seams: Option<Seams>,
    backend: Option<Backend>,
    cache: Option<Arc<dyn Cache>>,
    keys: Option<Arc<dyn KeySet>>,
    mailer: Option<Arc<dyn Mailer>>,
    providers: HashMap<String, Arc<dyn IdentityProvider>>,
    migrate: bool,
}

impl std::fmt::Debug for AuthServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServiceBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AuthServiceBuilder {
    /// Starts from a configuration; every seam not set explicitly is built from it.
    pub fn from_config(config: Config) -> Self {
        Self {
            config,
            clock: Arc::new(SystemClock),
            seams: None,
            backend: None,
            cache: None,
            keys: None,
            mailer: None,
            providers: HashMap::new(),
            migrate: true,
        }
    }

    /// Uses this clock (tests move time with [`crate::clock::ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Uses this store for every persistence seam instead of `DATABASE_URL`.
    pub fn store<S: Store>(mut self, store: Arc<S>) -> Self {
        self.seams = Some(Seams::of(store));
        self.backend = Some(Backend::Custom);
        self
    }

    /// Uses this cache (flows, counters, fan-out, profiles) instead of
    /// `REDIS_URL` / the in-process default.
    pub fn cache(mut self, cache: Arc<dyn Cache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Uses this key set instead of `JWT_*`.
    pub fn keys(mut self, keys: Arc<dyn KeySet>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Uses this mailer instead of `SMTP_URL` / the log mailer.
    pub fn mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    /// Adds (or replaces) an identity provider under `name`.
    pub fn provider(mut self, name: &str, provider: Arc<dyn IdentityProvider>) -> Self {
        self.providers.insert(name.to_owned(), provider);
        self
    }

    /// Whether to apply migrations when connecting to `DATABASE_URL` (default true).
    pub fn migrate(mut self, yes: bool) -> Self {
        self.migrate = yes;
        self
    }

    /// Connects to the database (and Redis), applies migrations and builds the service.
    pub async fn build(self) -> Result<Authenticator> {
        Ok(self.build_with_backend().await?.0)
    }

    /// Like [`build`](Self::build), also returning the backend store.
    pub async fn build_with_backend(self) -> Result<(Authenticator, Backend)> {
        let c = &self.config;
        let clock = self.clock.clone();
        let (seams, backend) = match self.seams {
            Some(s) => (s, self.backend.unwrap_or(Backend::Custom)),
            None => connect_store(c, self.migrate).await?,
        };
        let cache: Arc<dyn Cache> = match self.cache {
            Some(cache) => cache,
            None => default_cache(c, clock.clone())?,
        };
        // Profiles are cached in-process; with a shared cache (Redis) its
        // fan-out tells every instance to drop a user on write.
        let users: Arc<dyn UserStore> =
            match local_cache(clock.clone()) {
                Some(local) if cache.name() != local.name() => Arc::new(
                    CachingUserStore::with_bus(seams.users, local, cache.clone(), c.cache_ttl),
                ),
                _ => Arc::new(CachingUserStore::new(
                    seams.users,
                    cache.clone(),
                    c.cache_ttl,
                )),
            };
        let keys = match self.keys {
            Some(k) => k,
            None => key_set(c)?,
        };
        let tokens = Arc::new(TokenService::new(
            keys,
            c.jwt_issuer.clone(),
            c.jwt_audience.clone(),
            c.jwt_ttl,
            c.jwt_leeway,
            clock.clone(),
        ));
        let mailer: Arc<dyn Mailer> = match self.mailer {
            Some(m) => m,
            None => match &c.smtp_url {
                Some(url) => Arc::new(SmtpMailer::new(url.expose(), &c.mail_from, c.smtp_timeout)?),
                None => Arc::new(LogMailer::default()),
            },
        };
        let mut providers = configured_providers(c, &clock)?;
        providers.extend(self.providers);
        let parts = Parts {
            users,
            sessions: seams.sessions,
            one_time: seams.one_time,
            audit: seams.audit,
            profiles: seams.profiles,
            cache,
            tokens,
            hasher: Arc::new(PasswordHasher::new(c.hash_concurrency)),
            mailer,
            providers,
            clock,
            policy: Policy {
                allowed_redirects: c.allowed_redirects.clone(),
                admin_emails: c.admin_emails.clone(),
                refresh_ttl: c.refresh_ttl,
                refresh_grace: c.refresh_grace,
                public_base_url: c.public_base_url.clone(),
                login_max_failures: c.login_max_failures,
                login_ip_max_failures: c.login_ip_max_failures,
                login_failure_window: c.login_failure_window,
                account_retention: c.account_retention,
                audit_retention: c.audit_retention,
                users_max_total: c.users_max_total,
            },
        };
        Ok((Authenticator::new(parts), backend))
    }
}

fn pool_settings(c: &Config) -> PoolSettings {
    PoolSettings {
        max_connections: c.db_max_connections,
        acquire_timeout: c.db_acquire_timeout,
        statement_timeout: c.db_statement_timeout,
    }
}

async fn connect_store(c: &Config, migrate: bool) -> Result<(Seams, Backend)> {
    match &c.database_url {
        #[cfg(feature = "sqlite")]
        DatabaseUrl::Sqlite(url) => {
            let store = Arc::new(crate::store::SqliteStore::connect(url, &pool_settings(c)).await?);
            if migrate {
                store.migrate().await?;
            }
            Ok((Seams::of(store.clone()), Backend::Sqlite(store)))
        }
        #[cfg(feature = "postgres")]
        DatabaseUrl::Postgres(url) => {
            let store = Arc::new(
                crate::store::PostgresStore::connect(url.expose(), &pool_settings(c)).await?,
            );
            if migrate {
                store.migrate().await?;
            }
            Ok((Seams::of(store.clone()), Backend::Postgres(store)))
        }
        #[allow(unreachable_patterns)]
        other => Err(Error::msg(
            ErrorKind::Config,
            format!(
                "DATABASE_URL: {} needs a crate feature that is not enabled",
                other.redacted()
            ),
        )),
    }
}

fn default_cache(c: &Config, clock: Arc<dyn Clock>) -> Result<Arc<dyn Cache>> {
    if let Some(url) = &c.redis_url {
        #[cfg(feature = "redis")]
        {
            let settings = crate::cache::RedisSettings {
                connect_timeout: c.redis_timeout,
                command_timeout: c.redis_timeout,
            };
            return Ok(Arc::new(crate::cache::RedisCache::new(
                url.expose(),
                &c.redis_prefix,
                settings,
            )?));
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = url;
            return Err(Error::msg(
                ErrorKind::Config,
                "REDIS_URL is set but the `redis` feature is not enabled",
            ));
        }
    }
    #[cfg(feature = "moka")]
    {
        Ok(Arc::new(crate::cache::MokaCache::new(100_000, clock)))
    }
    #[cfg(not(feature = "moka"))]
    {
        let _ = clock;
        Err(Error::msg(
            ErrorKind::Config,
            "no cache: enable the `moka` feature or set REDIS_URL",
        ))
    }
}

fn local_cache(clock: Arc<dyn Clock>) -> Option<Arc<dyn Cache>> {
    #[cfg(feature = "moka")]
    {
        Some(Arc::new(crate::cache::MokaCache::new(100_000, clock)))
    }
    #[cfg(not(feature = "moka"))]
    {
        let _ = clock;
        None
    }
}

fn key_set(c: &Config) -> Result<Arc<dyn KeySet>> {
    let mut keys = match c.jwt_algorithm {
        JwtAlgorithm::Hs256 => match &c.jwt_secret {
            Some(secret) => StaticKeySet::hs256(secret.expose().as_bytes())?,
            None => {
                tracing::warn!(
                    "JWT_SECRET is not set: using a random key; tokens will not survive a restart \
                     and instances will not accept each other's tokens"
                );
                StaticKeySet::generate_hs256()
            }
        },
        alg => {
            let pem = c.jwt_private_key_pem.as_ref().ok_or_else(|| {
                Error::msg(
                    ErrorKind::Config,
                    "JWT_PRIVATE_KEY_FILE: required for this JWT_ALGO",
                )
            })?;
            StaticKeySet::from_pem(pem.expose().as_bytes(), alg.to_jwt()).map_err(|e| {
                Error::msg(
                    ErrorKind::Config,
                    format!("JWT_PRIVATE_KEY_FILE: {}", e.message()),
                )
            })?
        }
    };
    for old in &c.jwt_previous_secrets {
        keys = keys.add_previous_hs256(old.expose().as_bytes())?;
    }
    for pem in &c.jwt_verify_key_pems {
        keys = keys
            .add_verification_pem(pem.expose().as_bytes())
            .map_err(|e| {
                Error::msg(
                    ErrorKind::Config,
                    format!("JWT_VERIFY_KEY_FILES: {}", e.message()),
                )
            })?;
    }
    Ok(Arc::new(keys))
}

/// The identity providers of the configuration: `google`, `linkedin` and
/// every provider of `OIDC_PROVIDERS`, all on the same [`OidcProvider`].
fn configured_providers(
    c: &Config,
    clock: &Arc<dyn Clock>,
) -> Result<HashMap<String, Arc<dyn IdentityProvider>>> {
    let mut out: HashMap<String, Arc<dyn IdentityProvider>> = HashMap::new();
    let presets: [(&str, &Option<crate::config::ProviderConfig>); 2] =
        [("google", &c.google), ("linkedin", &c.linkedin)];
    let configured = presets
        .into_iter()
        .filter_map(|(name, p)| p.as_ref().map(|p| (name, p)))
        .chain(c.extra_providers.iter().map(|(n, p)| (n.as_str(), p)));
    for (name, p) in configured {
        let secret = p.client_secret.clone();
        let (id, redirect) = (p.client_id.clone(), p.redirect_uri.clone());
        let mut cfg = match name {
            "google" => OidcProviderConfig::google(id, secret, redirect),
            "linkedin" => OidcProviderConfig::linkedin(id, secret, redirect),
            _ => OidcProviderConfig::new(name, p.issuer_url.clone(), id, secret, redirect),
        };
        cfg.issuer_url = p.issuer_url.clone();
        if !p.scopes.is_empty() {
            cfg.scopes = p.scopes.clone();
        }
        cfg.http_timeout = c.http_timeout;
        let provider = OidcProvider::new(cfg)?.with_clock(clock.clone());
        out.insert(name.to_owned(), Arc::new(provider));
    }
    Ok(out)
}
