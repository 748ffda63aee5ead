//! Starting servers in-process on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use meetinity_auth::http::Api;
use meetinity_auth::service::Backend;
use meetinity_auth::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server running in this process on 127.0.0.1:random.
pub struct TestServer {
    pub addr: SocketAddr,
    #[allow(dead_code)]
    pub api: Api,
    pub backend: Backend,
    pub shutdown: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<meetinity_auth::Result<()>>,
    _dir: TempDir,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops accepting and waits for the server to return.
    pub async fn stop(mut self) -> meetinity_auth::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap()
    }
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("meetinity-test-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// PostgreSQL URL for tests (`TEST_DATABASE_URL`).
#[allow(dead_code)]
pub fn pg_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Redis URL for tests (`TEST_REDIS_URL`).
#[allow(dead_code)]
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// Starts a server on an SQLite file in a fresh directory, with `vars` on top.
pub async fn start(vars: &[(&str, &str)]) -> TestServer {
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("test.db").display());
    let mut all: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), db),
        (
            "JWT_SECRET".into(),
            "test-secret-test-secret-test-secret-0123".into(),
        ),
    ];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::from_vars(all).unwrap();
    start_with(config, dir).await
}

pub async fn start_with(config: Config, dir: TempDir) -> TestServer {
    let (api, backend) = meetinity_auth_server::build_api(&config).await.unwrap();
    serve_api(config, api, backend, dir).await
}

/// Which database a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)]
pub enum Db {
    /// A fresh SQLite file.
    Sqlite,
    /// A fresh schema in `TEST_DATABASE_URL`.
    Postgres,
}

/// Everything a test may want to control about a server.
#[derive(Default)]
#[allow(dead_code)]
pub struct Options {
    /// Configuration variables on top of the test defaults.
    pub vars: Vec<(String, String)>,
    /// SQLite unless set.
    pub db: Option<Db>,
    /// Use this schema instead of a fresh one (two servers sharing a PostgreSQL database).
    pub pg_schema: Option<String>,
    /// Replaces the clock.
    pub clock: Option<Arc<dyn meetinity_auth::clock::Clock>>,
    /// Replaces the cache.
    pub cache: Option<Arc<dyn meetinity_auth::cache::Cache>>,
    /// Replaces the mailer.
    pub mailer: Option<Arc<dyn meetinity_auth::mail::Mailer>>,
    /// Adds identity providers.
    pub providers: Vec<(String, Arc<dyn meetinity_auth::provider::IdentityProvider>)>,
}

#[allow(dead_code)]
impl Options {
    pub fn var(mut self, k: &str, v: &str) -> Self {
        self.vars.push((k.to_owned(), v.to_owned()));
        self
    }
    pub fn db(mut self, db: Db) -> Self {
        self.db = Some(db);
        self
    }
}

/// A fresh PostgreSQL schema name.
#[allow(dead_code)]
pub fn fresh_schema() -> String {
    format!("srv_{}", uuid_like().replace('-', "_"))
}

/// Starts a server with full control over its seams.
#[allow(dead_code)]
pub async fn start_opts(opts: Options) -> TestServer {
    use meetinity_auth::service::{AuthServiceBuilder, Backend};
    use meetinity_auth::store::{PoolSettings, PostgresStore, SqliteStore};
    let dir = TempDir::new();
    let mut all: Vec<(String, String)> = vec![(
        "JWT_SECRET".into(),
        "test-secret-test-secret-test-secret-0123".into(),
    )];
    all.extend(opts.vars);
    let config = Config::from_vars(all).unwrap();
    let mut builder = AuthServiceBuilder::from_config(config.clone());
    let backend = match opts.db.unwrap_or(Db::Sqlite) {
        Db::Sqlite => {
            let store = SqliteStore::connect(
                &format!("sqlite://{}", dir.0.join("test.db").display()),
                &PoolSettings::default(),
            )
            .await
            .unwrap();
            store.migrate().await.unwrap();
            let store = Arc::new(store);
            builder = builder.store(store.clone());
            Backend::Sqlite(store)
        }
        Db::Postgres => {
            let schema = opts.pg_schema.unwrap_or_else(fresh_schema);
            let store =
                PostgresStore::connect_in_schema(&pg_url(), &schema, &PoolSettings::default())
                    .await
                    .unwrap();
            store.migrate().await.unwrap();
            let store = Arc::new(store);
            builder = builder.store(store.clone());
            Backend::Postgres(store)
        }
    };
    if let Some(c) = opts.clock {
        builder = builder.clock(c);
    }
    if let Some(c) = opts.cache {
        builder = builder.cache(c);
    }
    if let Some(m) = opts.mailer {
        builder = builder.mailer(m);
    }
    for (name, p) in opts.providers {
        builder = builder.provider(&name, p);
    }
    let auth = builder.build().await.unwrap();
    let api = meetinity_auth::http::Api::for_authenticator(
        auth,
        meetinity_auth::http::ApiSettings::from_config(&config),
    )
    .with_backend(backend.clone());
    serve_api(config, api, backend, dir).await
}

async fn serve_api(config: Config, api: Api, backend: Backend, dir: TempDir) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(meetinity_auth_server::serve(
        listener,
        api.clone(),
        config.request_timeout,
        async move {
            let _ = rx.await;
        },
    ));
    TestServer {
        addr,
        api,
        backend,
        shutdown: Some(tx),
        task,
        _dir: dir,
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
