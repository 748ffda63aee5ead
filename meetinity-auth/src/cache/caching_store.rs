//! [`CachingUserStore`]: a read-through cache in front of a [`UserStore`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use super::Cache;
use crate::error::Result;
use crate::model::{
    IdentityLogin, IdentityOutcome, NewUser, Page, SocialAccount, User, UserPatch, UserQuery,
};
use crate::store::UserStore;

/// The fan-out topic on which user invalidations travel; the payload is the user id.
pub(crate) const USER_TOPIC: &str = "user";

/// Hit, miss and error counts of a [`CachingUserStore`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads that went to the inner store because the cache had nothing.
    pub misses: u64,
    /// Cache operations that failed (the store answered instead).
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
}

/// A [`UserStore`] that caches [`UserStore::get_user`] in a [`Cache`].
///
/// Reads go through the cache (`user:{id}`, JSON, for `ttl`). With the
/// `moka` feature, decoded users are also kept in process (at most
/// [`FRONT_CAPACITY`] of them, for `ttl` at most), so a warm read neither
/// reaches the cache nor decodes JSON; writes and fan-out messages drop them
/// the same way, and a read that raced with a write is not kept. Every write
/// removes the user's entry and publishes the id on the bus's `user` topic, so that other instances holding the user in an in-process cache drop
/// it too. Cache failures are logged and fall through to the inner store: the
/// store keeps answering while the cache is down. A failed invalidation
/// leaves a stale entry for at most `ttl`, as does a read that fetched the
/// user just before a write and stored it just after; so keep `ttl` short.
///
/// ```
/// # #[cfg(feature = "moka")] {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use meetinity_auth::cache::{Cache, CachingUserStore, MokaCache};
/// use meetinity_auth::store::UserStore;
///
/// fn cached(database: Arc<dyn UserStore>) -> CachingUserStore {
///     let cache: Arc<dyn Cache> = Arc::new(MokaCache::with_system_clock(10_000));
///     CachingUserStore::new(database, cache, Duration::from_secs(30))
/// }
/// # }
/// ```
pub struct CachingUserStore {
    inner: Arc<dyn UserStore>,
    cache: Arc<dyn Cache>,
    bus: Arc<dyn Cache>,
    ttl: Duration,
    counters: Arc<Counters>,
    front: Arc<Front>,
    listener: Option<JoinHandle<()>>,
}

/// How many decoded users a [`CachingUserStore`] keeps in process.
pub const FRONT_CAPACITY: u64 = 100_000;

/// Decoded users in process, in front of the byte cache.
///
/// Filling races with invalidations the way session liveness does (see
/// `service::liveness`): every invalidation bumps `epoch`, and a user read
/// under an older epoch is not kept.
struct Front {
    #[cfg(feature = "moka")]
    users: moka::sync::Cache<String, Arc<User>>,
    epoch: AtomicU64,
}

impl Front {
    fn new(ttl: Duration) -> Self {
        #[cfg(not(feature = "moka"))]
        let _ = ttl;
        Self {
            #[cfg(feature = "moka")]
            users: moka::sync::Cache::builder()
                .max_capacity(FRONT_CAPACITY)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build(),
            epoch: AtomicU64::new(0),
        }
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn get(&self, id: &str) -> Option<Arc<User>> {
        #[cfg(feature = "moka")]
        {
            self.users.get(id)
        }
        #[cfg(not(feature = "moka"))]
        {
            let _ = id;
            None
        }
    }

    /// Keeps `user`, read after [`epoch`](Self::epoch) returned `epoch`,
    /// unless an invalidation happened since.
    fn fill(&self, user: &User, epoch: u64) {
        if self.epoch() != epoch {
            return;
        }
        #[cfg(feature = "moka")]
        {
            self.users.insert(user.id.clone(), Arc::new(user.clone()));
            // An invalidation between the check and the insert: undo.
            if self.epoch() != epoch {
                self.users.invalidate(&user.id);
            }
        }
    }

    fn invalidate(&self, id: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        #[cfg(feature = "moka")]
        self.users.invalidate(id);
        #[cfg(not(feature = "moka"))]
        let _ = id;
    }

    /// Forgets everything (fan-out messages may have been lost).
    fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        #[cfg(feature = "moka")]
        self.users.invalidate_all();
    }
}

impl CachingUserStore {
    /// Caches `inner`'s users in `cache` for `ttl`; invalidations travel on
    /// the same `cache`'s bus.
    ///
    /// Call it inside a Tokio runtime: it starts the task that applies
    /// invalidations published by other instances.
    pub fn new(inner: Arc<dyn UserStore>, cache: Arc<dyn Cache>, ttl: Duration) -> Self {
        let bus = Arc::clone(&cache);
        Self::with_bus(inner, cache, bus, ttl)
    }

    /// Caches `inner`'s users in `cache` for `ttl`; invalidations are published
    /// to, and received from, `bus` (for example an in-process moka cache with
    /// Redis as the bus between instances).
    pub fn with_bus(
        inner: Arc<dyn UserStore>,
        cache: Arc<dyn Cache>,
        bus: Arc<dyn Cache>,
        ttl: Duration,
    ) -> Self {
        let counters = Arc::new(Counters::default());
        let front = Arc::new(Front::new(ttl));
        let listener = match tokio::runtime::Handle::try_current() {
            Ok(rt) => Some(rt.spawn(listen(
                bus.subscribe(),
                Arc::clone(&cache),
                Arc::clone(&front),
                Arc::clone(&counters),
            ))),
            Err(_) => {
                tracing::warn!(
                    cache = cache.name(),
                    "no Tokio runtime: invalidations from other instances are not applied"
                );
                None
            }
        };
        Self {
            inner,
            cache,
            bus,
            ttl,
            counters,
            front,
            listener,
        }
    }

    /// Hit, miss and error counts so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
        }
    }

    fn error(&self, op: &'static str, e: &crate::Error) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(cache = self.cache.name(), op, error = %e, "user cache failed; using the store");
    }

    /// Drops the cached user here and tells every instance to drop it.
    async fn invalidate(&self, id: &str) {
        self.front.invalidate(id);
        if let Err(e) = self.cache.delete(&key(id)).await {
            self.error("delete", &e);
        }
        if let Err(e) = self.bus.publish(USER_TOPIC, id).await {
            self.error("publish", &e);
        }
    }
}

fn key(id: &str) -> String {
    format!("user:{id}")
}

/// The JSON of a [`User`], with timestamps at full precision: the contract's
/// serializer keeps whole seconds, and a cached user must equal the stored one.
fn encode(user: &User) -> serde_json::Result<Vec<u8>> {
    fn precise(t: &DateTime<Utc>) -> serde_json::Value {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true).into()
    }
    fn precise_opt(t: &Option<DateTime<Utc>>) -> serde_json::Value {
        t.as_ref().map_or(serde_json::Value::Null, precise)
    }
    let mut json = serde_json::to_value(user)?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("created_at".into(), precise(&user.created_at));
        obj.insert("updated_at".into(), precise(&user.updated_at));
        obj.insert("last_login".into(), precise_opt(&user.last_login));
        obj.insert("last_active_at".into(), precise_opt(&user.last_active_at));
        if let Some(accounts) = obj
            .get_mut("social_accounts")
            .and_then(serde_json::Value::as_array_mut)
        {
            for (json, account) in accounts.iter_mut().zip(&user.social_accounts) {
                if let Some(obj) = json.as_object_mut() {
                    obj.insert("created_at".into(), precise(&account.created_at));
                    obj.insert("last_login_at".into(), precise_opt(&account.last_login_at));
                }
            }
        }
    }
    serde_json::to_vec(&json)
}

/// Applies invalidations published on the bus to `cache`.
async fn listen(
    mut rx: tokio::sync::broadcast::Receiver<super::Message>,
    cache: Arc<dyn Cache>,
    front: Arc<Front>,
    counters: Arc<Counters>,
) {
    loop {
        match rx.recv().await {
            Ok(msg) if msg.topic == USER_TOPIC => {
                front.invalidate(&msg.payload);
                if let Err(e) = cache.delete(&key(&msg.payload)).await {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(cache = cache.name(), error = %e, "user cache invalidation failed");
                }
            }
            Ok(msg) if msg.topic == super::RESUBSCRIBED_TOPIC => front.clear(),
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                front.clear();
                tracing::warn!(
                    cache = cache.name(),
                    missed,
                    "missed user cache invalidations; entries may be stale until they expire"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}

impl Drop for CachingUserStore {
    fn drop(&mut self) {
        if let Some(task) = &self.listener {
            task.abort();
        }
    }
}

impl fmt::Debug for CachingUserStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingUserStore")
            .field("inner", &self.inner)
            .field("cache", &self.cache.name())
            .field("bus", &self.bus.name())
            .field("ttl", &self.ttl)
            .field("stats", &self.stats())
            .finish()
    }
}

#[async_trait]
impl UserStore for CachingUserStore {
    async fn create_user(&self, user: &NewUser, password_hash: Option<&str>) -> Result<User> {
        let created = self.inner.create_user(user, password_hash).await?;
        self.invalidate(&created.id).await;
        Ok(created)
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>> {
        if let Some(user) = self.front.get(id) {
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(User::clone(&user)));
        }
        let epoch = self.front.epoch();
        let k = key(id);
        match self.cache.get(&k).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<User>(&bytes) {
                Ok(user) => {
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    self.front.fill(&user, epoch);
                    return Ok(Some(user));
                }
                Err(e) => {
                    self.error("decode", &e.into());
                    if let Err(e) = self.cache.delete(&k).await {
                        self.error("delete", &e);
                    }
                }
            },
            Ok(None) => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.error("get", &e),
        }
        let user = self.inner.get_user(id).await?;
        if let Some(user) = &user {
            self.front.fill(user, epoch);
            match encode(user) {
                Ok(bytes) => {
                    if let Err(e) = self.cache.set(&k, &bytes, self.ttl).await {
                        self.error("set", &e);
                    }
                }
                Err(e) => self.error("encode", &e.into()),
            }
        }
        Ok(user)
    }

    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.inner.get_user_by_email(email).await
    }

    async fn update_user(&self, id: &str, patch: &UserPatch) -> Result<User> {
        let result = self.inner.update_user(id, patch).await;
        self.invalidate(id).await;
        result
    }

    async fn delete_user(&self, id: &str) -> Result<bool> {
        let result = self.inner.delete_user(id).await;
        self.invalidate(id).await;
        result
    }

    async fn record_login(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        let result = self.inner.record_login(id, at).await;
        self.invalidate(id).await;
        result
    }

    async fn upsert_identity(
        &self,
        login: &IdentityLogin,
        now: DateTime<Utc>,
    ) -> Result<IdentityOutcome> {
        let outcome = self.inner.upsert_identity(login, now).await?;
        self.invalidate(&outcome.user.id).await;
        Ok(outcome)
    }

    async fn list_identities(&self, user_id: &str) -> Result<Vec<SocialAccount>> {
        self.inner.list_identities(user_id).await
    }

    async fn unlink_identity(&self, user_id: &str, provider: &str) -> Result<()> {
        let result = self.inner.unlink_identity(user_id, provider).await;
        self.invalidate(user_id).await;
        result
    }

    async fn password_hash(&self, user_id: &str) -> Result<Option<String>> {
        self.inner.password_hash(user_id).await
    }

    async fn set_password_hash(&self, user_id: &str, hash: &str, now: DateTime<Utc>) -> Result<()> {
        let result = self.inner.set_password_hash(user_id, hash, now).await;
        self.invalidate(user_id).await;
        result
    }

    async fn remove_password(&self, user_id: &str) -> Result<()> {
        let result = self.inner.remove_password(user_id).await;
        self.invalidate(user_id).await;
        result
    }

    async fn list_users(&self, query: &UserQuery) -> Result<Page<User>> {
        self.inner.list_users(query).await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    async fn invalidate_user(&self, id: &str) {
        self.invalidate(id).await;
    }

    fn cache_stats(&self) -> Option<CacheStats> {
        Some(self.stats())
    }
}

#[cfg(all(test, feature = "moka"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn user(id: &str, name: &str) -> User {
        serde_json::from_value(serde_json::json!({
            "id": id, "email": format!("{id}@example.com"), "email_verified": true,
            "name": name, "photo_url": null, "title": null, "company": null,
            "location": null, "industry": null, "linkedin_url": null,
            "experience_years": null, "provider": "password", "bio": null,
            "timezone": null, "skills": [], "interests": [], "is_active": true,
            "privacy_settings": {}, "preferences": {}, "social_accounts": [],
            "last_login": null, "last_active_at": null,
            "created_at": "2026-12-04T00:00:00Z", "updated_at": "2026-12-04T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn a_read_that_raced_with_an_invalidation_is_not_kept() {
        let front = Front::new(Duration::from_secs(60));
        // A read starts, a write invalidates the user, the read then fills.
        let epoch = front.epoch();
        front.invalidate("u1");
        front.fill(&user("u1", "old"), epoch);
        assert!(front.get("u1").is_none());
        // A read that started after the write is kept.
        let epoch = front.epoch();
        front.fill(&user("u1", "new"), epoch);
        assert_eq!(front.get("u1").unwrap().name.as_deref(), Some("new"));
        // Invalidation and clear drop it.
        front.invalidate("u1");
        assert!(front.get("u1").is_none());
        let epoch = front.epoch();
        front.fill(&user("u1", "new"), epoch);
        front.clear();
        assert!(front.get("u1").is_none());
    }
}
