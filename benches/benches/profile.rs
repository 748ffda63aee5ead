//! Profile reads (`UserStore::get_user`): the bare stores (SQLite file,
//! PostgreSQL) against `CachingUserStore` warm in moka (in-process) and in
//! Redis (`TEST_REDIS_URL`, a fresh key prefix).
//!
//! ```text
//! cargo bench -p meetinity-auth-benches --bench profile
//! ```
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use meetinity_auth::cache::{Cache, CachingUserStore, MokaCache, RedisCache, RedisSettings};
use meetinity_auth::model::NewUser;
use meetinity_auth::store::{PoolSettings, PostgresStore, SqliteStore, UserStore};
use meetinity_auth_benches::{pg_url, redis_url, runtime, temp_dir, unique};
use tokio::runtime::Runtime;

async fn a_user(store: &dyn UserStore) -> String {
    store
        .create_user(
            &NewUser {
                email: format!("{}@example.test", unique("profile")),
                email_verified: true,
                name: Some("Ada Lovelace".into()),
                photo_url: Some("https://example.test/ada.png".into()),
                provider: "password".into(),
                roles: vec!["member".into()],
            },
            None,
        )
        .await
        .unwrap()
        .id
}

fn read(c: &mut Criterion, rt: &Runtime, name: &str, store: &dyn UserStore, id: &str) {
    // Warm (fills the cache of a caching store) and check the user is there.
    assert!(rt.block_on(store.get_user(id)).unwrap().is_some());
    c.benchmark_group("profile_read")
        .bench_function(BenchmarkId::new("get_user", name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        std::hint::black_box(store.get_user(id).await.unwrap());
                    }
                    t.elapsed()
                })
            })
        });
}

fn benches(c: &mut Criterion) {
    let rt = runtime().unwrap();
    let ttl = Duration::from_secs(300);

    let dir = temp_dir("meetinity-bench-profile").unwrap();
    let sqlite: Arc<dyn UserStore> = rt.block_on(async {
        let s = SqliteStore::open(dir.join("bench.db")).await.unwrap();
        s.migrate().await.unwrap();
        Arc::new(s)
    });
    let id = rt.block_on(a_user(&*sqlite));
    read(c, &rt, "sqlite_uncached", &*sqlite, &id);
    let moka = rt.block_on(async {
        let cache: Arc<dyn Cache> = Arc::new(MokaCache::with_system_clock(10_000));
        CachingUserStore::new(sqlite.clone(), cache, ttl)
    });
    read(c, &rt, "sqlite_moka", &moka, &id);
    drop(moka);

    let schema = unique("bench_profile");
    let pg = rt.block_on(async {
        let s = PostgresStore::connect_in_schema(&pg_url(), &schema, &PoolSettings::default())
            .await
            .unwrap();
        s.migrate().await.unwrap();
        Arc::new(s)
    });
    let pg_users: Arc<dyn UserStore> = pg.clone();
    let id = rt.block_on(a_user(&*pg_users));
    read(c, &rt, "postgres_uncached", &*pg_users, &id);
    let moka = rt.block_on(async {
        let cache: Arc<dyn Cache> = Arc::new(MokaCache::with_system_clock(10_000));
        CachingUserStore::new(pg_users.clone(), cache, ttl)
    });
    read(c, &rt, "postgres_moka", &moka, &id);
    drop(moka);
    let redis = rt.block_on(async {
        let cache: Arc<dyn Cache> = Arc::new(
            RedisCache::new(
                &redis_url(),
                &unique("bench_profile"),
                RedisSettings::default(),
            )
            .unwrap(),
        );
        cache.ping().await.unwrap();
        CachingUserStore::new(pg_users.clone(), cache, ttl)
    });
    read(c, &rt, "postgres_redis", &redis, &id);
    assert!(redis.stats().hits > 0 && redis.stats().errors == 0);
    drop(redis);

    rt.block_on(async {
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(pg.pool())
            .await
            .unwrap();
        pg.close().await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = profile_benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(profile_benches);
