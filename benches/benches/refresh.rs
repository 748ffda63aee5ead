//! Refresh-token rotation on SQLite (a WAL file) and PostgreSQL
//! (`TEST_DATABASE_URL`, a fresh schema dropped at the end): at the store
//! (`SessionStore::rotate_refresh`: one transaction) and through the service
//! (`Authenticator::refresh`: rotation + cached user read + a new access
//! token). Each iteration rotates the token the previous one produced.
//!
//! ```text
//! cargo bench -p meetinity-auth-benches --bench refresh
//! ```
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use meetinity_auth::cache::MokaCache;
use meetinity_auth::model::{NewUser, RequestContext, Rotation, Session};
use meetinity_auth::secret::{hash_token, Password, RefreshToken};
use meetinity_auth::service::{AuthServiceBuilder, Authenticator, Registration};
use meetinity_auth::store::{PoolSettings, PostgresStore, SessionStore, SqliteStore, Store};
use meetinity_auth::token::{new_refresh_token, seal_successor};
use meetinity_auth::{AuthService, Config};
use meetinity_auth_benches::{pg_url, runtime, temp_dir, unique};
use tokio::runtime::Runtime;

/// A user and a session whose current refresh token is returned.
async fn session_in<S: Store>(store: &S) -> RefreshToken {
    let user = store
        .create_user(
            &NewUser {
                email: format!("{}@example.test", unique("rotate")),
                email_verified: true,
                name: None,
                photo_url: None,
                provider: "password".into(),
                roles: Vec::new(),
            },
            None,
        )
        .await
        .unwrap();
    let now = Utc::now();
    let first = new_refresh_token();
    let session = Session {
        id: unique("session"),
        user_id: user.id,
        method: "password".into(),
        created_at: now,
        last_used_at: now,
        expires_at: now + chrono::Duration::days(30),
        ip: None,
        user_agent: None,
        revoked_at: None,
    };
    store
        .create_session(&session, &hash_token(first.expose()))
        .await
        .unwrap();
    first
}

/// Rotates `current` `iters` times at the store; returns the time taken.
async fn rotate_n(store: &dyn SessionStore, current: &mut RefreshToken, iters: u64) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        let next = new_refresh_token();
        let sealed = seal_successor(current, &next);
        let r = store
            .rotate_refresh(
                &hash_token(current.expose()),
                &hash_token(next.expose()),
                &sealed,
                Utc::now(),
            )
            .await
            .unwrap();
        assert!(matches!(r, Rotation::Rotated(_)));
        *current = next;
    }
    t.elapsed()
}

async fn service_over<S: Store>(store: Arc<S>) -> (Authenticator, RefreshToken) {
    let config = Config::from_vars([
        ("JWT_SECRET", "bench-secret-bench-secret-bench-secret-0123"),
        ("JWT_ISSUER", "https://auth.bench.test"),
    ])
    .unwrap();
    let auth = AuthServiceBuilder::from_config(config)
        .store(store)
        .cache(Arc::new(MokaCache::with_system_clock(10_000)))
        .build()
        .await
        .unwrap();
    let set = auth
        .register(
            Registration {
                email: format!("{}@example.test", unique("refresh")),
                password: Password::new("a long bench passphrase 7"),
                name: None,
            },
            &RequestContext::default(),
        )
        .await
        .unwrap();
    (auth, set.refresh_token)
}

fn bench_backend<S: Store>(c: &mut Criterion, rt: &Runtime, name: &str, store: Arc<S>) {
    let mut group = c.benchmark_group("refresh");
    let mut current = rt.block_on(session_in(&*store));
    group.bench_function(BenchmarkId::new("store_rotate", name), |b| {
        b.iter_custom(|iters| rt.block_on(rotate_n(&*store, &mut current, iters)))
    });
    let (auth, mut current) = rt.block_on(service_over(store));
    let ctx = RequestContext::default();
    group.bench_function(BenchmarkId::new("service_refresh", name), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    current = auth.refresh(&current, &ctx).await.unwrap().refresh_token;
                }
                t.elapsed()
            })
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let rt = runtime().unwrap();

    let dir = temp_dir("meetinity-bench-refresh").unwrap();
    let sqlite = rt.block_on(async {
        let s = SqliteStore::open(dir.join("bench.db")).await.unwrap();
        s.migrate().await.unwrap();
        Arc::new(s)
    });
    bench_backend(c, &rt, "sqlite", sqlite.clone());
    rt.block_on(sqlite.close());
    let _ = std::fs::remove_dir_all(&dir);

    let schema = unique("bench_refresh");
    let pg = rt.block_on(async {
        let s = PostgresStore::connect_in_schema(&pg_url(), &schema, &PoolSettings::default())
            .await
            .unwrap();
        s.migrate().await.unwrap();
        Arc::new(s)
    });
    bench_backend(c, &rt, "postgres", pg.clone());
    rt.block_on(async {
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(pg.pool())
            .await
            .unwrap();
        pg.close().await;
    });
}

criterion_group! {
    name = refresh_benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = benches
}
criterion_main!(refresh_benches);
