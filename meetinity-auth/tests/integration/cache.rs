//! The cache conformance suite, run against every backend (moka with a
//! manual clock, Redis with real time), Redis outage and recovery, and the
//! `CachingUserStore` decorator over a real SQLite store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use meetinity_auth::cache::{Cache, CachingUserStore, Message};
use meetinity_auth::clock::ManualClock;
use meetinity_auth::model::{IdentityLogin, NewUser, UserPatch};
use meetinity_auth::store::UserStore;
use meetinity_auth::ErrorKind;
use tokio::sync::broadcast;

use crate::support;

/// The topic of [`Harness::bus_ready`]'s probes.
const PROBE: &str = "probe";

/// A backend under test: the cache, a second handle on the same shared state
/// (another instance for Redis, the same one for moka), and how time moves.
struct Harness {
    cache: Arc<dyn Cache>,
    peer: Arc<dyn Cache>,
    time: Time,
}

enum Time {
    /// In-process cache: expiry follows this clock.
    Manual(ManualClock),
    /// Shared cache: real time.
    Real,
}

impl Harness {
    /// Lets `d` pass for the backend.
    async fn pass(&self, d: Duration) {
        match &self.time {
            Time::Manual(clock) => clock.advance(d),
            Time::Real => tokio::time::sleep(d).await,
        }
    }

    /// Waits until the peer receives what is published (Redis: its fan-out
    /// listener has subscribed).
    async fn bus_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut rx = self.peer.subscribe();
        loop {
            self.cache.publish(PROBE, "ready?").await.unwrap();
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the bus never became ready",
                self.cache.name()
            );
        }
    }
}

#[cfg(feature = "moka")]
fn moka_harness() -> Harness {
    use meetinity_auth::cache::MokaCache;
    let clock = ManualClock::at_unix(1_700_000_000);
    let cache: Arc<dyn Cache> = Arc::new(MokaCache::new(10_000, Arc::new(clock.clone())));
    Harness {
        peer: Arc::clone(&cache),
        cache,
        time: Time::Manual(clock),
    }
}

#[cfg(feature = "redis")]
fn redis_cache(prefix: &str) -> meetinity_auth::cache::RedisCache {
    use meetinity_auth::cache::{RedisCache, RedisSettings};
    RedisCache::new(&support::redis_url(), prefix, RedisSettings::default()).unwrap()
}

#[cfg(feature = "redis")]
async fn redis_harness() -> Harness {
    let prefix = support::unique("cache");
    let cache = redis_cache(&prefix);
    // Never skipped: an unreachable Redis fails the test here.
    cache
        .ping()
        .await
        .unwrap_or_else(|e| panic!("Redis at {} is unreachable: {e}", support::redis_url()));
    Harness {
        cache: Arc::new(cache),
        peer: Arc::new(redis_cache(&prefix)),
        time: Time::Real,
    }
}

/// Runs each named test of [`suite`] against every backend: `cache::moka::x`, `cache::redis::x`.
macro_rules! conformance {
    ($($(#[$meta:meta])* $test:ident),* $(,)?) => {
        #[cfg(feature = "moka")]
        mod moka {
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::suite::$test(super::moka_harness()).await;
                }
            )*
        }

        #[cfg(feature = "redis")]
        mod redis {
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::suite::$test(super::redis_harness().await).await;
                }
            )*
        }
    };
}

conformance!(
    get_set_delete,
    set_with_zero_ttl_removes,
    take_is_single_use,
    incr_counts_within_window_and_restarts_after,
    incr_is_atomic,
    incr_on_a_value_is_an_error,
    ttl_and_expiry,
    publish_reaches_subscribers,
    ping_and_name,
    #[cfg(feature = "sqlite")]
    decorator_read_through_and_invalidation,
    #[cfg(feature = "sqlite")]
    decorator_survives_a_corrupt_entry,
);

mod suite {
    use super::*;

    pub async fn get_set_delete(h: Harness) {
        let c = &h.cache;
        assert_eq!(c.get("absent").await.unwrap(), None);
        c.set("k", b"v1", Duration::from_secs(60)).await.unwrap();
        assert_eq!(c.get("k").await.unwrap().as_deref(), Some(&b"v1"[..]));
        // Visible through the other handle on the same state.
        assert_eq!(h.peer.get("k").await.unwrap().as_deref(), Some(&b"v1"[..]));
        c.set("k", b"v2", Duration::from_secs(60)).await.unwrap();
        assert_eq!(c.get("k").await.unwrap().as_deref(), Some(&b"v2"[..]));
        // Binary values round-trip.
        let binary = [0u8, 0xff, 0x80, b'\n', 0];
        c.set("bin", &binary, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(c.get("bin").await.unwrap().as_deref(), Some(&binary[..]));
        c.delete("k").await.unwrap();
        assert_eq!(c.get("k").await.unwrap(), None);
        assert_eq!(c.get("bin").await.unwrap().as_deref(), Some(&binary[..]));
        // Deleting a missing key is fine.
        c.delete("k").await.unwrap();
    }

    pub async fn set_with_zero_ttl_removes(h: Harness) {
        let c = &h.cache;
        c.set("k", b"v", Duration::from_secs(60)).await.unwrap();
        c.set("k", b"w", Duration::ZERO).await.unwrap();
        assert_eq!(c.get("k").await.unwrap(), None);
    }

    pub async fn take_is_single_use(h: Harness) {
        assert_eq!(h.cache.take("absent").await.unwrap(), None);
        for round in 0..3 {
            let key = format!("flow{round}");
            h.cache
                .set(&key, b"state", Duration::from_secs(60))
                .await
                .unwrap();
            let barrier = Arc::new(tokio::sync::Barrier::new(16));
            let takers: Vec<_> = (0..16)
                .map(|i| {
                    // Half through the other handle (another instance for Redis).
                    let c = if i % 2 == 0 {
                        Arc::clone(&h.cache)
                    } else {
                        Arc::clone(&h.peer)
                    };
                    let (key, barrier) = (key.clone(), Arc::clone(&barrier));
                    tokio::spawn(async move {
                        barrier.wait().await;
                        c.take(&key).await.unwrap()
                    })
                })
                .collect();
            let mut winners = 0;
            for t in takers {
                if let Some(v) = t.await.unwrap() {
                    assert_eq!(v, b"state");
                    winners += 1;
                }
            }
            assert_eq!(winners, 1, "exactly one taker gets the value");
            assert_eq!(h.cache.get(&key).await.unwrap(), None);
        }
    }

    pub async fn incr_counts_within_window_and_restarts_after(h: Harness) {
        let c = &h.cache;
        let window = Duration::from_secs(1);
        assert_eq!(c.incr("n", window).await.unwrap(), 1);
        assert_eq!(c.incr("n", window).await.unwrap(), 2);
        assert_eq!(h.peer.incr("n", window).await.unwrap(), 3);
        // The window runs from the first increment, not the last.
        let left = c.ttl("n").await.unwrap().expect("a counter expires");
        assert!(left <= window, "{left:?}");
        assert_eq!(c.get("n").await.unwrap().as_deref(), Some(&b"3"[..]));
        // A longer window on a running counter does not extend it.
        assert_eq!(c.incr("n", Duration::from_secs(3600)).await.unwrap(), 4);
        assert!(c.ttl("n").await.unwrap().expect("a counter expires") <= window);
        h.pass(Duration::from_millis(1_100)).await;
        assert_eq!(
            c.incr("n", window).await.unwrap(),
            1,
            "a new window starts over"
        );
        // Other keys count on their own.
        assert_eq!(c.incr("m", window).await.unwrap(), 1);
    }

    pub async fn incr_is_atomic(h: Harness) {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let c = if i % 2 == 0 {
                    Arc::clone(&h.cache)
                } else {
                    Arc::clone(&h.peer)
                };
                tokio::spawn(async move { c.incr("hits", Duration::from_secs(60)).await.unwrap() })
            })
            .collect();
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap());
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=50).collect::<Vec<u64>>());
    }

    pub async fn incr_on_a_value_is_an_error(h: Harness) {
        h.cache
            .set("text", b"hello", Duration::from_secs(60))
            .await
            .unwrap();
        let err = h
            .cache
            .incr("text", Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
        assert_eq!(
            h.cache.get("text").await.unwrap().as_deref(),
            Some(&b"hello"[..])
        );
    }

    pub async fn ttl_and_expiry(h: Harness) {
        let c = &h.cache;
        assert_eq!(c.ttl("absent").await.unwrap(), None);
        c.set("long", b"v", Duration::from_secs(30)).await.unwrap();
        let left = c.ttl("long").await.unwrap().expect("has a ttl");
        assert!(
            left > Duration::from_secs(28) && left <= Duration::from_secs(30),
            "{left:?}"
        );

        c.set("short", b"v", Duration::from_secs(1)).await.unwrap();
        c.set("taken", b"v", Duration::from_secs(1)).await.unwrap();
        assert!(c.ttl("short").await.unwrap().is_some());
        h.pass(Duration::from_millis(1_100)).await;
        assert_eq!(c.get("short").await.unwrap(), None, "expired");
        assert_eq!(c.ttl("short").await.unwrap(), None);
        assert_eq!(
            c.take("taken").await.unwrap(),
            None,
            "an expired value cannot be taken"
        );
        assert_eq!(c.get("long").await.unwrap().as_deref(), Some(&b"v"[..]));
    }

    pub async fn publish_reaches_subscribers(h: Harness) {
        let mut here = h.cache.subscribe();
        let mut there = h.peer.subscribe();
        h.bus_ready().await;
        drain(&mut here);
        drain(&mut there);

        let started = Instant::now();
        h.cache.publish("session.revoked", "sid-1").await.unwrap();
        h.cache.publish("user", "uid-2").await.unwrap();
        let want = [
            Message {
                topic: "session.revoked".into(),
                payload: "sid-1".into(),
            },
            Message {
                topic: "user".into(),
                payload: "uid-2".into(),
            },
        ];
        for expected in &want {
            assert_eq!(&next(&mut there).await, expected);
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        // The publisher's own subscribers hear it too.
        for expected in &want {
            assert_eq!(&next(&mut here).await, expected);
        }
    }

    pub async fn ping_and_name(h: Harness) {
        h.cache.ping().await.unwrap();
        assert!(matches!(h.cache.name(), "moka" | "redis"));
    }

    #[cfg(feature = "sqlite")]
    pub async fn decorator_read_through_and_invalidation(h: Harness) {
        let db: Arc<dyn UserStore> = Arc::new(support::sqlite_store().await);
        let users = CachingUserStore::new(
            Arc::clone(&db),
            Arc::clone(&h.cache),
            Duration::from_secs(60),
        );
        // Created behind the decorator: no invalidation message is in flight.
        let user = db.create_user(&new_user("ada"), None).await.unwrap();
        let key = format!("user:{}", user.id);

        // Read-through: a miss fills the cache, the next read is a hit.
        let first = users.get_user(&user.id).await.unwrap().unwrap();
        assert_eq!(first.email, user.email);
        assert!(h.cache.get(&key).await.unwrap().is_some(), "filled");
        assert_eq!(
            users.get_user(&user.id).await.unwrap().as_ref(),
            Some(&first)
        );
        let stats = users.stats();
        assert_eq!((stats.hits, stats.misses, stats.errors), (1, 1, 0));
        // Unknown users are not cached.
        assert_eq!(users.get_user("no-such-user").await.unwrap(), None);

        // A write behind the cache's back is not seen until invalidated...
        db.update_user(&user.id, &patch_name("behind"))
            .await
            .unwrap();
        assert_eq!(
            users.get_user(&user.id).await.unwrap().unwrap().name,
            first.name
        );

        // ...and every write through the decorator invalidates.
        let updated = users
            .update_user(&user.id, &patch_name("Ada L."))
            .await
            .unwrap();
        assert_invalidated(&h, &users, &key, &user.id).await;
        assert_eq!(
            users.get_user(&user.id).await.unwrap().unwrap().name,
            updated.name
        );

        users.record_login(&user.id, Utc::now()).await.unwrap();
        assert_invalidated(&h, &users, &key, &user.id).await;
        let logged_in = users.get_user(&user.id).await.unwrap().unwrap();
        assert!(logged_in.last_login.is_some());

        users
            .set_password_hash(
                &user.id,
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
                Utc::now(),
            )
            .await
            .unwrap();
        assert_invalidated(&h, &users, &key, &user.id).await;

        let login = IdentityLogin {
            provider: "google".into(),
            subject: support::unique("sub"),
            email: user.email.clone(),
            email_verified: true,
            name: None,
            picture: None,
            roles: vec![],
        };
        let outcome = users.upsert_identity(&login, Utc::now()).await.unwrap();
        assert_eq!(outcome.user.id, user.id, "linked by verified email");
        assert_invalidated(&h, &users, &key, &user.id).await;
        assert_eq!(
            users
                .get_user(&user.id)
                .await
                .unwrap()
                .unwrap()
                .social_accounts
                .len(),
            1
        );

        users.unlink_identity(&user.id, "google").await.unwrap();
        assert_invalidated(&h, &users, &key, &user.id).await;
        assert!(users
            .get_user(&user.id)
            .await
            .unwrap()
            .unwrap()
            .social_accounts
            .is_empty());

        assert!(users.delete_user(&user.id).await.unwrap());
        assert_eq!(h.cache.get(&key).await.unwrap(), None);
        assert_eq!(users.get_user(&user.id).await.unwrap(), None);

        // A new user read then created again under the same cache is fresh.
        let other = users.create_user(&new_user("bob"), None).await.unwrap();
        assert_eq!(
            users.get_user(&other.id).await.unwrap().unwrap().id,
            other.id
        );
        assert_eq!(users.stats().errors, 0);
    }

    #[cfg(feature = "sqlite")]
    pub async fn decorator_survives_a_corrupt_entry(h: Harness) {
        let db: Arc<dyn UserStore> = Arc::new(support::sqlite_store().await);
        let users = CachingUserStore::new(
            Arc::clone(&db),
            Arc::clone(&h.cache),
            Duration::from_secs(60),
        );
        let user = db.create_user(&new_user("eve"), None).await.unwrap();
        let key = format!("user:{}", user.id);
        h.cache
            .set(&key, b"{not json", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(users.get_user(&user.id).await.unwrap().unwrap().id, user.id);
        assert_eq!(users.stats().errors, 1);
        // Replaced by a good entry, then served from it.
        assert_eq!(users.get_user(&user.id).await.unwrap().unwrap().id, user.id);
        assert_eq!(users.stats().hits, 1);
    }

    /// The cached user is gone, and so the next read misses.
    #[cfg(feature = "sqlite")]
    async fn assert_invalidated(h: &Harness, users: &CachingUserStore, key: &str, id: &str) {
        assert_eq!(h.cache.get(key).await.unwrap(), None, "invalidated");
        let before = users.stats().misses;
        users.get_user(id).await.unwrap().unwrap();
        assert_eq!(users.stats().misses, before + 1);
    }

    fn drain(rx: &mut broadcast::Receiver<Message>) {
        while rx.try_recv().is_ok() {}
    }

    /// The next message that is not a readiness probe, within 1 s.
    async fn next(rx: &mut broadcast::Receiver<Message>) -> Message {
        tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                let m = rx.recv().await.unwrap();
                if m.topic != PROBE {
                    return m;
                }
            }
        })
        .await
        .expect("delivered within 1 s")
    }
}

fn new_user(name: &str) -> NewUser {
    NewUser {
        email: format!("{}@example.com", support::unique(name)),
        email_verified: true,
        name: Some(name.to_owned()),
        photo_url: None,
        provider: "password".into(),
        roles: vec![],
    }
}

fn patch_name(name: &str) -> UserPatch {
    UserPatch {
        name: Some(Some(name.to_owned())),
        ..UserPatch::default()
    }
}

/// In-process caches on several instances learn of writes through a shared bus.
#[cfg(all(feature = "moka", feature = "redis", feature = "sqlite"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decorator_invalidates_other_instances_through_the_bus() {
    use meetinity_auth::cache::MokaCache;

    let db: Arc<dyn UserStore> = Arc::new(support::sqlite_store().await);
    let prefix = support::unique("bus");
    let instance = |bus: Arc<dyn Cache>| {
        let local: Arc<dyn Cache> = Arc::new(MokaCache::with_system_clock(1_000));
        (
            CachingUserStore::with_bus(
                Arc::clone(&db),
                Arc::clone(&local),
                bus,
                Duration::from_secs(60),
            ),
            local,
        )
    };
    let bus_a: Arc<dyn Cache> = Arc::new(redis_cache(&prefix));
    let bus_b = redis_cache(&prefix);
    let (a, _) = instance(bus_a);
    let (b, b_local) = instance(Arc::new(bus_b.clone()));

    let user = db.create_user(&new_user("grace"), None).await.unwrap();
    let key = format!("user:{}", user.id);
    b.get_user(&user.id).await.unwrap().unwrap();
    assert!(
        b_local.get(&key).await.unwrap().is_some(),
        "b caches the user"
    );

    let deadline = Instant::now() + Duration::from_secs(3);
    while !bus_b.is_listening() {
        assert!(Instant::now() < deadline, "b's bus never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let written = Instant::now();
    a.update_user(&user.id, &patch_name("Grace H."))
        .await
        .unwrap();
    while b_local.get(&key).await.unwrap().is_some() {
        assert!(
            written.elapsed() < Duration::from_secs(1),
            "b dropped its copy within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        b.get_user(&user.id).await.unwrap().unwrap().name.as_deref(),
        Some("Grace H.")
    );
}

#[cfg(feature = "redis")]
mod redis_outage {
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use meetinity_auth::cache::{RedisCache, RedisSettings};
    use tokio::net::{TcpListener, TcpSocket, TcpStream};
    use tokio::task::JoinHandle;

    use super::*;

    const CLOSED: &str = "redis://127.0.0.1:1";

    #[tokio::test]
    async fn construction_validates_the_url_and_prefix() {
        for bad in ["not a url", "http://127.0.0.1:6379", "redis://:bad port/"] {
            let err = RedisCache::new(bad, "p", RedisSettings::default()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{bad}: {err}");
        }
        let err = RedisCache::new(&support::redis_url(), "", RedisSettings::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        // The URL, which may hold a password, stays out of errors and Debug.
        let err =
            RedisCache::new("redis://:hunter2@[bad", "p", RedisSettings::default()).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("hunter2"));
        let cache = RedisCache::new(
            "redis://:hunter2@127.0.0.1:1",
            "p",
            RedisSettings::default(),
        )
        .unwrap();
        assert!(!format!("{cache:?}").contains("hunter2"));
    }

    #[test]
    fn construction_outside_a_runtime_is_a_config_error() {
        let err =
            RedisCache::new(&support::redis_url(), "p", RedisSettings::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
    }

    #[tokio::test]
    async fn calls_fail_fast_while_redis_is_down() {
        let cache = RedisCache::new(CLOSED, &support::unique("down"), RedisSettings::default())
            .expect("constructing succeeds while Redis is down");
        for _ in 0..5 {
            let started = Instant::now();
            let err = cache.get("k").await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
            let err = cache
                .set("k", b"v", Duration::from_secs(1))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
            assert_eq!(
                cache.ping().await.unwrap_err().kind(),
                ErrorKind::Unavailable
            );
            assert!(
                started.elapsed() < Duration::from_millis(1_500),
                "{:?}",
                started.elapsed()
            );
        }
        assert!(!cache.is_listening());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn keys_are_isolated_by_prefix() {
        let a = redis_cache(&support::unique("tenant"));
        let b = redis_cache(&support::unique("tenant"));
        a.set("k", b"a", Duration::from_secs(60)).await.unwrap();
        assert_eq!(b.get("k").await.unwrap(), None);
        assert_eq!(b.take("k").await.unwrap(), None);
        assert_eq!(b.incr("k", Duration::from_secs(60)).await.unwrap(), 1);
        assert_eq!(a.get("k").await.unwrap().as_deref(), Some(&b"a"[..]));
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn decorator_serves_from_the_database_while_redis_is_down() {
        let db: Arc<dyn UserStore> = Arc::new(support::sqlite_store().await);
        let cache: Arc<dyn Cache> = Arc::new(
            RedisCache::new(CLOSED, &support::unique("down"), RedisSettings::default()).unwrap(),
        );
        let users = CachingUserStore::new(Arc::clone(&db), cache, Duration::from_secs(60));
        let user = users.create_user(&new_user("linus"), None).await.unwrap();
        for _ in 0..5 {
            let started = Instant::now();
            assert_eq!(users.get_user(&user.id).await.unwrap().unwrap().id, user.id);
            assert!(
                started.elapsed() < Duration::from_millis(1_500),
                "{:?}",
                started.elapsed()
            );
        }
        let started = Instant::now();
        let updated = users
            .update_user(&user.id, &patch_name("Linus"))
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(1_500),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            users.get_user(&user.id).await.unwrap().unwrap().name,
            updated.name
        );
        // The first read went to the database (Redis failing); the next four
        // were answered by the decoded users kept in process, and the read
        // after the update saw the new name.
        let stats = users.stats();
        assert_eq!(stats.hits, 4, "{stats:?}");
        assert!(stats.errors >= 3, "{stats:?}");
    }

    /// A TCP relay to the real Redis that can be cut and restored.
    struct Relay {
        addr: SocketAddr,
        tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    }

    impl Relay {
        async fn start(addr: SocketAddr) -> Self {
            // The previous listener on `addr` may take a moment to close.
            let deadline = Instant::now() + Duration::from_secs(3);
            let listener: TcpListener = loop {
                let socket = TcpSocket::new_v4().unwrap();
                socket.set_reuseaddr(true).unwrap();
                match socket.bind(addr).and_then(|()| socket.listen(64)) {
                    Ok(listener) => break listener,
                    Err(e) => assert!(Instant::now() < deadline, "rebinding {addr}: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let addr = listener.local_addr().unwrap();
            let upstream = redis_addr();
            let tasks = Arc::new(Mutex::new(Vec::new()));
            let registry = Arc::clone(&tasks);
            let acceptor = tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    let conn = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    registry.lock().unwrap().push(conn);
                }
            });
            tasks.lock().unwrap().push(acceptor);
            Self { addr, tasks }
        }

        /// Closes the listener and every relayed connection.
        fn cut(&self) {
            for t in self.tasks.lock().unwrap().drain(..) {
                t.abort();
            }
        }

        fn url(&self) -> String {
            format!("redis://{}/", self.addr)
        }
    }

    fn redis_addr() -> SocketAddr {
        let url = url::Url::parse(&support::redis_url()).unwrap();
        let host = url.host_str().unwrap_or("127.0.0.1");
        let port = url.port().unwrap_or(6379);
        std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .unwrap()
            .next()
            .unwrap()
    }

    async fn eventually<F, Fut>(what: &str, within: Duration, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + within;
        while !f().await {
            assert!(
                Instant::now() < deadline,
                "{what} did not happen within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn recovers_by_itself_when_redis_returns() {
        let relay = Relay::start("127.0.0.1:0".parse().unwrap()).await;
        let prefix = support::unique("relay");
        let cache = RedisCache::new(&relay.url(), &prefix, RedisSettings::default()).unwrap();
        let direct = redis_cache(&prefix);
        let mut rx = cache.subscribe();

        cache.set("k", b"v", Duration::from_secs(60)).await.unwrap();
        assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        eventually(
            "the listener subscribing",
            Duration::from_secs(3),
            || async { cache.is_listening() },
        )
        .await;

        // Redis goes away: calls fail fast, the listener notices.
        relay.cut();
        for _ in 0..5 {
            let started = Instant::now();
            let err = cache.get("k").await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
            assert!(
                started.elapsed() < Duration::from_millis(1_500),
                "{:?}",
                started.elapsed()
            );
        }
        eventually("the listener noticing", Duration::from_secs(3), || async {
            !cache.is_listening()
        })
        .await;

        // Redis comes back on the same address: the cache recovers on its own.
        let relay = Relay::start(relay.addr).await;
        eventually("commands working again", Duration::from_secs(5), || async {
            cache.get("k").await.ok().flatten().as_deref() == Some(&b"v"[..])
        })
        .await;
        eventually(
            "the listener resubscribing",
            Duration::from_secs(5),
            || async { cache.is_listening() },
        )
        .await;
        direct.publish("session.revoked", "sid-9").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                let m = rx.recv().await.unwrap();
                if m.topic == "session.revoked" {
                    return m;
                }
            }
        })
        .await
        .expect("fan-out works again");
        assert_eq!(got.payload, "sid-9");
        relay.cut();
    }
}
