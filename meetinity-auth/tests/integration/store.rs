//! The store conformance suite: written once, run against SQLite (a fresh
//! file per test) and PostgreSQL (a fresh schema per test).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use meetinity_auth::clock::{Clock, ManualClock};
use meetinity_auth::model::{
    AuditEvent, AuditQuery, IdentityLogin, NewUser, OneTimePurpose, Rotation, Session, UserPatch,
    UserQuery, UserSort, Visibility,
};
use meetinity_auth::store::Store;
use meetinity_auth::ErrorKind;

use crate::support;

/// What the suite needs beyond the store traits.
trait Backend: Store + Clone {
    async fn migrate_again(&self) -> meetinity_auth::Result<()>;
    async fn undo_last(&self) -> meetinity_auth::Result<Option<i64>>;
}

#[cfg(feature = "sqlite")]
impl Backend for meetinity_auth::store::SqliteStore {
    async fn migrate_again(&self) -> meetinity_auth::Result<()> {
        self.migrate().await
    }
    async fn undo_last(&self) -> meetinity_auth::Result<Option<i64>> {
        self.undo_last_migration().await
    }
}

#[cfg(feature = "postgres")]
impl Backend for meetinity_auth::store::PostgresStore {
    async fn migrate_again(&self) -> meetinity_auth::Result<()> {
        self.migrate().await
    }
    async fn undo_last(&self) -> meetinity_auth::Result<Option<i64>> {
        self.undo_last_migration().await
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap()
}

fn new_user(email: &str) -> NewUser {
    NewUser {
        email: email.to_owned(),
        email_verified: false,
        name: None,
        photo_url: None,
        provider: "password".to_owned(),
        roles: vec![],
    }
}

fn login(provider: &str, subject: &str, email: &str, verified: bool) -> IdentityLogin {
    IdentityLogin {
        provider: provider.to_owned(),
        subject: subject.to_owned(),
        email: email.to_owned(),
        email_verified: verified,
        name: None,
        picture: None,
        roles: vec![],
    }
}

fn session(id: &str, user_id: &str, created: DateTime<Utc>, ttl_days: i64) -> Session {
    Session {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        method: "password".to_owned(),
        created_at: created,
        last_used_at: created,
        expires_at: created + chrono::Duration::days(ttl_days),
        ip: Some("203.0.113.7".to_owned()),
        user_agent: Some("test-agent".to_owned()),
        revoked_at: None,
    }
}

fn event(id: &str, name: &str, user: Option<&str>, at: DateTime<Utc>) -> AuditEvent {
    AuditEvent {
        id: id.to_owned(),
        event: name.to_owned(),
        actor_id: user.map(str::to_owned),
        user_id: user.map(str::to_owned),
        outcome: "success".to_owned(),
        method: Some("password".to_owned()),
        detail: None,
        ip: Some("198.51.100.1".to_owned()),
        user_agent: None,
        created_at: at,
    }
}

async fn crud<S: Backend>(store: S, clock: ManualClock) {
    let mut nu = new_user("Ada@Example.com");
    nu.name = Some("Ada".to_owned());
    nu.roles = vec!["admin".to_owned()];
    let created = store
        .create_user(&nu, Some("$argon2id$hash1"))
        .await
        .unwrap();
    assert_eq!(created.email, "Ada@Example.com");
    assert_eq!(created.name.as_deref(), Some("Ada"));
    assert_eq!(created.roles, vec!["admin"]);
    assert_eq!(created.provider, "password");
    assert!(created.is_active);
    assert!(!created.email_verified);
    assert_eq!(created.login_count, 0);
    assert_eq!(created.created_at, t0());
    assert_eq!(created.updated_at, t0());
    assert!(created.social_accounts.is_empty());

    let fetched = store.get_user(&created.id).await.unwrap().unwrap();
    assert_eq!(fetched, created);
    let by_email = store.get_user_by_email("ada@EXAMPLE.com").await.unwrap();
    assert_eq!(by_email.as_ref().map(|u| &u.id), Some(&created.id));
    assert!(store.get_user("no-such-id").await.unwrap().is_none());
    assert!(store
        .get_user_by_email("nobody@example.com")
        .await
        .unwrap()
        .is_none());

    assert_eq!(
        store.password_hash(&created.id).await.unwrap().as_deref(),
        Some("$argon2id$hash1")
    );
    store
        .set_password_hash(&created.id, "$argon2id$hash2", t0())
        .await
        .unwrap();
    assert_eq!(
        store.password_hash(&created.id).await.unwrap().as_deref(),
        Some("$argon2id$hash2")
    );
    let err = store
        .set_password_hash("no-such-id", "$argon2id$x", t0())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    clock.advance(Duration::from_secs(60));
    let patch = UserPatch {
        title: Some(Some("Engineer".to_owned())),
        company: Some(Some("Analytical Engines".to_owned())),
        experience_years: Some(Some(12)),
        skills: Some(vec!["Rust".to_owned(), "Math".to_owned()]),
        interests: Some(vec!["looms".to_owned()]),
        privacy_settings: Some(BTreeMap::from([("email".to_owned(), Visibility::Private)])),
        preferences: Some(BTreeMap::from([(
            "theme".to_owned(),
            serde_json::json!({"dark": true}),
        )])),
        email_verified: Some(true),
        ..UserPatch::default()
    };
    let updated = store.update_user(&created.id, &patch).await.unwrap();
    assert_eq!(updated.title.as_deref(), Some("Engineer"));
    assert_eq!(updated.experience_years, Some(12));
    assert_eq!(updated.skills, vec!["Rust", "Math"]);
    assert_eq!(updated.interests, vec!["looms"]);
    assert_eq!(updated.privacy_settings["email"], Visibility::Private);
    assert_eq!(
        updated.preferences["theme"],
        serde_json::json!({"dark": true})
    );
    assert!(updated.email_verified);
    assert_eq!(
        updated.name.as_deref(),
        Some("Ada"),
        "None leaves a field alone"
    );
    assert_eq!(updated.created_at, t0());
    assert_eq!(updated.updated_at, clock.now(), "updated_at is bumped");

    let cleared = store
        .update_user(
            &created.id,
            &UserPatch {
                name: Some(None),
                experience_years: Some(None),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cleared.name, None, "Some(None) clears a field");
    assert_eq!(cleared.experience_years, None);
    assert_eq!(cleared.title.as_deref(), Some("Engineer"));
    assert_eq!(store.get_user(&created.id).await.unwrap().unwrap(), cleared);

    let err = store
        .update_user("no-such-id", &UserPatch::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    let at = t0() + chrono::Duration::hours(1);
    store.record_login(&created.id, at).await.unwrap();
    store.record_login(&created.id, at).await.unwrap();
    let logged = store.get_user(&created.id).await.unwrap().unwrap();
    assert_eq!(logged.login_count, 2);
    assert_eq!(logged.last_login, Some(at));
    assert_eq!(logged.last_active_at, Some(at));
    let err = store.record_login("no-such-id", at).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // Deleting removes what belongs to the user.
    store
        .create_session(&session("s-crud", &created.id, t0(), 30), "h-crud")
        .await
        .unwrap();
    // Other unique violations are conflicts, never internal errors.
    let err = store
        .create_session(&session("s-crud", &created.id, t0(), 30), "h-crud-2")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(store.delete_user(&created.id).await.unwrap());
    assert!(store.get_user(&created.id).await.unwrap().is_none());
    assert!(store.get_session("s-crud").await.unwrap().is_none());
    assert!(store.password_hash(&created.id).await.unwrap().is_none());
    assert!(!store.delete_user(&created.id).await.unwrap());
    let err = store
        .create_session(&session("s-orphan", &created.id, t0(), 30), "h-orphan")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    store.ping().await.unwrap();
}

async fn unique_email_ignoring_case<S: Backend>(store: S, _clock: ManualClock) {
    store
        .create_user(&new_user("grace@example.com"), Some("$argon2id$h"))
        .await
        .unwrap();
    for taken in ["grace@example.com", "GRACE@Example.COM"] {
        let err = store.create_user(&new_user(taken), None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::EmailTaken, "{taken}");
        assert_eq!(err.status(), 409);
    }
    store
        .create_user(&new_user("grace2@example.com"), None)
        .await
        .unwrap();
    // An identity login whose email is taken by another account and not
    // verified is refused, and creates nothing.
    let err = store
        .upsert_identity(
            &login("google", "g-grace", "Grace@example.com", false),
            t0(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EmailNotVerified);
    let page = store
        .list_users(&UserQuery {
            per_page: 10,
            ..UserQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 2);
}

async fn concurrent_upserts_one_user<S: Backend>(store: S, _clock: ManualClock) {
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut l = login("google", "g-race", "race@example.com", true);
            l.name = Some("Racer".to_owned());
            store.upsert_identity(&l, t0()).await
        }));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        ids.insert(outcome.user.id.clone());
        created += usize::from(outcome.created);
        assert!(!outcome.linked);
    }
    assert_eq!(ids.len(), 1, "one user for one identity");
    assert_eq!(created, 1, "exactly one call created the user");
    let id = ids.into_iter().next().unwrap();
    assert_eq!(store.list_identities(&id).await.unwrap().len(), 1);
    let page = store
        .list_users(&UserQuery {
            per_page: 50,
            ..UserQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.items[0].social_accounts.len(), 1);
}

async fn identity_linking_rules<S: Backend>(store: S, _clock: ManualClock) {
    let mut nu = new_user("Lin@Example.com");
    nu.name = Some("Lin Original".to_owned());
    let original = store.create_user(&nu, Some("$argon2id$h")).await.unwrap();

    // Unverified provider email matching an account: refused.
    let err = store
        .upsert_identity(&login("linkedin", "li-1", "lin@example.com", false), t0())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EmailNotVerified);
    assert!(store
        .list_identities(&original.id)
        .await
        .unwrap()
        .is_empty());

    // Verified: linked; empty fields filled, set fields kept.
    let mut google = login("google", "g-1", "LIN@example.com", true);
    google.name = Some("Lin From Google".to_owned());
    google.picture = Some("https://img.example/lin.png".to_owned());
    google.roles = vec!["admin".to_owned()];
    let linked = store.upsert_identity(&google, t0()).await.unwrap();
    assert!(linked.linked);
    assert!(!linked.created);
    assert_eq!(linked.user.id, original.id);
    assert_eq!(linked.user.name.as_deref(), Some("Lin Original"));
    assert_eq!(
        linked.user.photo_url.as_deref(),
        Some("https://img.example/lin.png")
    );
    assert!(linked.user.email_verified);
    assert!(
        linked.user.roles.is_empty(),
        "login roles apply to new users only"
    );
    assert_eq!(linked.user.social_accounts.len(), 1);
    let account = &linked.user.social_accounts[0];
    assert_eq!(
        (account.provider.as_str(), account.subject.as_str()),
        ("google", "g-1")
    );
    assert!(account.email_verified);
    assert_eq!(account.created_at, t0());

    // Found again by (provider, subject), even when the email changed.
    let later = t0() + chrono::Duration::hours(2);
    let mut again = login("google", "g-1", "other@example.com", true);
    again.name = Some("Another Name".to_owned());
    let second = store.upsert_identity(&again, later).await.unwrap();
    assert_eq!(second.user.id, original.id);
    assert!(!second.created && !second.linked);
    assert_eq!(second.user.name.as_deref(), Some("Lin Original"));
    assert_eq!(second.user.social_accounts[0].last_login_at, Some(later));
    assert!(store
        .get_user_by_email("other@example.com")
        .await
        .unwrap()
        .is_none());

    // A new identity with a new email creates a user with the login's data.
    let mut fresh = login("google", "g-2", "new@example.com", false);
    fresh.name = Some("Newcomer".to_owned());
    fresh.roles = vec!["member".to_owned()];
    let made = store.upsert_identity(&fresh, t0()).await.unwrap();
    assert!(made.created && !made.linked);
    assert_ne!(made.user.id, original.id);
    assert_eq!(made.user.provider, "google");
    assert!(!made.user.email_verified);
    assert_eq!(made.user.name.as_deref(), Some("Newcomer"));
    assert_eq!(made.user.roles, vec!["member"]);
    assert!(store.password_hash(&made.user.id).await.unwrap().is_none());
}

async fn unlink_last_sign_in_method<S: Backend>(store: S, _clock: ManualClock) {
    let user = store
        .upsert_identity(&login("google", "g-u", "u@example.com", true), t0())
        .await
        .unwrap()
        .user;
    let err = store.unlink_identity(&user.id, "google").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LastSignInMethod);
    let err = store.unlink_identity(&user.id, "github").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = store
        .unlink_identity("no-such-id", "google")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // With a second identity, one can go.
    store
        .upsert_identity(&login("linkedin", "li-u", "u@example.com", true), t0())
        .await
        .unwrap();
    store.unlink_identity(&user.id, "google").await.unwrap();
    let left = store.list_identities(&user.id).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].provider, "linkedin");
    let err = store
        .unlink_identity(&user.id, "linkedin")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LastSignInMethod);

    // With a password, the last identity can go too.
    store
        .set_password_hash(&user.id, "$argon2id$h", t0())
        .await
        .unwrap();
    store.unlink_identity(&user.id, "linkedin").await.unwrap();
    assert!(store.list_identities(&user.id).await.unwrap().is_empty());
}

async fn migrations_are_idempotent_and_reversible<S: Backend>(store: S, _clock: ManualClock) {
    store.migrate_again().await.unwrap();
    store.migrate_again().await.unwrap();
    let user = store
        .create_user(&new_user("m@example.com"), None)
        .await
        .unwrap();

    // Revert the newer migrations, then the first one.
    let mut reverted = store.undo_last().await.unwrap();
    while reverted.is_some_and(|v| v > 1) {
        reverted = store.undo_last().await.unwrap();
    }
    assert_eq!(reverted, Some(1));
    assert!(
        store.get_user(&user.id).await.is_err(),
        "the tables are gone"
    );
    assert_eq!(store.undo_last().await.unwrap(), None);

    store.migrate_again().await.unwrap();
    assert!(store.get_user(&user.id).await.unwrap().is_none());
    store
        .create_user(&new_user("m@example.com"), None)
        .await
        .unwrap();
    let err = store
        .create_user(&new_user("M@example.com"), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EmailTaken);
}

async fn rotate_refresh_exactly_once<S: Backend>(store: S, _clock: ManualClock) {
    let user = store
        .create_user(&new_user("r@example.com"), None)
        .await
        .unwrap();
    store
        .create_session(&session("s-rot", &user.id, t0(), 30), "h0")
        .await
        .unwrap();
    let now = t0() + chrono::Duration::minutes(20);

    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let rotation = store
                .rotate_refresh("h0", &format!("h1-{i}"), &format!("sealed-{i}"), now)
                .await
                .unwrap();
            (i, rotation)
        }));
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (i, Rotation::Rotated(s)) => winners.push((i, s)),
            (_, Rotation::AlreadyRotated(record, s)) => losers.push((record, s)),
            (_, Rotation::Unknown) => panic!("a known token was reported unknown"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one caller rotates");
    assert_eq!(losers.len(), 15);
    let (winner, session) = &winners[0];
    assert_eq!(session.id, "s-rot");
    assert_eq!(session.last_used_at, now);
    for (record, s) in &losers {
        assert_eq!(record.token_hash, "h0");
        assert_eq!(record.session_id, "s-rot");
        assert_eq!(record.rotated_at, Some(now));
        assert_eq!(record.created_at, t0());
        assert_eq!(
            record.successor_sealed.as_deref(),
            Some(format!("sealed-{winner}").as_str())
        );
        assert_eq!(s.id, "s-rot");
    }

    // The successor rotates in turn; unknown tokens are unknown.
    let next = format!("h1-{winner}");
    match store
        .rotate_refresh(&next, "h2", "sealed-2", now + chrono::Duration::minutes(1))
        .await
        .unwrap()
    {
        Rotation::Rotated(s) => assert_eq!(s.last_used_at, now + chrono::Duration::minutes(1)),
        other => panic!("expected a rotation, got {other:?}"),
    }
    assert!(matches!(
        store.rotate_refresh("nope", "h3", "x", now).await.unwrap(),
        Rotation::Unknown
    ));
    let stored = store.get_session("s-rot").await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, now + chrono::Duration::minutes(1));
}

async fn revoke_sessions<S: Backend>(store: S, _clock: ManualClock) {
    let user = store
        .create_user(&new_user("s@example.com"), None)
        .await
        .unwrap();
    let other = store
        .create_user(&new_user("other@example.com"), None)
        .await
        .unwrap();
    for (i, id) in ["s-a", "s-b", "s-c"].iter().enumerate() {
        let created = t0() + chrono::Duration::minutes(i as i64);
        store
            .create_session(&session(id, &user.id, created, 30), &format!("h-{id}"))
            .await
            .unwrap();
    }
    store
        .create_session(
            &session("s-old", &user.id, t0() - chrono::Duration::days(40), 30),
            "h-old",
        )
        .await
        .unwrap();
    store
        .create_session(&session("s-other", &other.id, t0(), 30), "h-other")
        .await
        .unwrap();
    let now = t0() + chrono::Duration::hours(1);

    let live: Vec<String> = store
        .list_sessions(&user.id, now)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(live, vec!["s-c", "s-b", "s-a"], "live only, newest first");
    let fetched = store.get_session("s-a").await.unwrap().unwrap();
    assert_eq!(fetched, session("s-a", &user.id, t0(), 30));

    assert!(store.revoke_session("s-b", now).await.unwrap());
    assert!(
        !store.revoke_session("s-b", now).await.unwrap(),
        "already revoked"
    );
    assert!(!store.revoke_session("no-such", now).await.unwrap());
    let revoked = store.get_session("s-b").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(now), "revoked, not deleted");
    assert!(!revoked.is_live(now));

    let mut gone = store
        .revoke_user_sessions(&user.id, Some("s-c"), now)
        .await
        .unwrap();
    gone.sort();
    assert_eq!(gone, vec!["s-a"]);
    let live: Vec<String> = store
        .list_sessions(&user.id, now)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(live, vec!["s-c"]);
    assert_eq!(
        store.list_sessions(&other.id, now).await.unwrap().len(),
        1,
        "other users keep their sessions"
    );

    let gone = store
        .revoke_user_sessions(&user.id, None, now)
        .await
        .unwrap();
    assert_eq!(gone, vec!["s-c"]);
    assert!(store.list_sessions(&user.id, now).await.unwrap().is_empty());
}

async fn one_time_tokens<S: Backend>(store: S, _clock: ManualClock) {
    let user = store
        .create_user(&new_user("o@example.com"), None)
        .await
        .unwrap();
    let expires = t0() + chrono::Duration::hours(24);
    store
        .create_one_time("verify-1", OneTimePurpose::VerifyEmail, &user.id, expires)
        .await
        .unwrap();
    store
        .create_one_time(
            "reset-1",
            OneTimePurpose::ResetPassword,
            &user.id,
            t0() + chrono::Duration::minutes(30),
        )
        .await
        .unwrap();

    // Wrong purpose: not consumed.
    assert_eq!(
        store
            .consume_one_time("verify-1", OneTimePurpose::ResetPassword, t0())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .consume_one_time("verify-1", OneTimePurpose::VerifyEmail, t0())
            .await
            .unwrap()
            .as_deref(),
        Some(user.id.as_str())
    );
    assert_eq!(
        store
            .consume_one_time("verify-1", OneTimePurpose::VerifyEmail, t0())
            .await
            .unwrap(),
        None,
        "single use"
    );
    // Expired at `now`.
    assert_eq!(
        store
            .consume_one_time(
                "reset-1",
                OneTimePurpose::ResetPassword,
                t0() + chrono::Duration::minutes(31)
            )
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .consume_one_time("unknown", OneTimePurpose::ResetPassword, t0())
            .await
            .unwrap(),
        None
    );

    // Concurrent consumers: exactly one wins.
    store
        .create_one_time("verify-2", OneTimePurpose::VerifyEmail, &user.id, expires)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .consume_one_time("verify-2", OneTimePurpose::VerifyEmail, t0())
                .await
                .unwrap()
        }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap().is_some());
    }
    assert_eq!(wins, 1);

    let err = store
        .create_one_time(
            "verify-3",
            OneTimePurpose::VerifyEmail,
            "no-such-id",
            expires,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

async fn audit_log<S: Backend>(store: S, _clock: ManualClock) {
    let minute = |m: i64| t0() + chrono::Duration::minutes(m);
    let events = [
        event("e1", "login", Some("u1"), minute(1)),
        event("e2", "login_failed", Some("u1"), minute(2)),
        event("e3", "login", Some("u2"), minute(3)),
        event("e4", "logout", Some("u1"), minute(4)),
        event("e5", "login", None, minute(5)),
    ];
    for e in &events {
        store.record(e).await.unwrap();
    }
    let ids = |page: &meetinity_auth::model::Page<AuditEvent>| -> Vec<String> {
        page.items.iter().map(|e| e.id.clone()).collect()
    };

    let all = store
        .list_events(&AuditQuery {
            per_page: 50,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.total, 5);
    assert_eq!(ids(&all), vec!["e5", "e4", "e3", "e2", "e1"]);
    assert_eq!(all.items[4], events[0]);

    let u1 = store
        .list_events(&AuditQuery {
            user_id: Some("u1".to_owned()),
            per_page: 50,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (u1.total, ids(&u1)),
        (3, vec!["e4".into(), "e2".into(), "e1".into()])
    );

    let logins = store
        .list_events(&AuditQuery {
            event: Some("login".to_owned()),
            since: Some(minute(2)),
            until: Some(minute(5)),
            per_page: 50,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!((logins.total, ids(&logins)), (1, vec!["e3".to_owned()]));

    let page2 = store
        .list_events(&AuditQuery {
            page: 2,
            per_page: 2,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (page2.total, ids(&page2)),
        (5, vec!["e3".into(), "e2".into()])
    );
    let page3 = store
        .list_events(&AuditQuery {
            page: 3,
            per_page: 2,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!((page3.total, ids(&page3)), (5, vec!["e1".to_owned()]));
}

/// Creates a profile for the listing tests.
#[allow(clippy::too_many_arguments)]
async fn profile<S: Backend>(
    store: &S,
    clock: &ManualClock,
    email: &str,
    name: &str,
    title: &str,
    company: &str,
    industry: &str,
    location: &str,
    years: Option<i32>,
    skills: &[&str],
    bio: &str,
) -> String {
    clock.advance(Duration::from_secs(60));
    let id = store.create_user(&new_user(email), None).await.unwrap().id;
    store
        .update_user(
            &id,
            &UserPatch {
                name: Some(Some(name.to_owned())),
                title: Some(Some(title.to_owned())),
                company: Some(Some(company.to_owned())),
                industry: Some(Some(industry.to_owned())),
                location: Some(Some(location.to_owned())),
                experience_years: Some(years),
                skills: Some(skills.iter().map(|s| (*s).to_owned()).collect()),
                bio: Some(Some(bio.to_owned())),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    id
}

async fn list_users_filters_sort_and_search<S: Backend>(store: S, clock: ManualClock) {
    let alice = profile(
        &store,
        &clock,
        "alice@example.com",
        "alice",
        "Backend Engineer",
        "Acme",
        "Software",
        "Paris",
        Some(5),
        &["Rust", "PostgreSQL"],
        "Builds databases.",
    )
    .await;
    let bob = profile(
        &store,
        &clock,
        "bob@example.com",
        "Bob",
        "Designer",
        "Globex",
        "Design",
        "Lyon",
        Some(12),
        &["Figma"],
        "Loves typography and rust belts.",
    )
    .await;
    let carol = profile(
        &store,
        &clock,
        "carol@example.com",
        "Carol",
        "CTO",
        "Initech",
        "software",
        "paris",
        Some(20),
        &["rust", "Go", "Leadership"],
        "Scaling teams.",
    )
    .await;
    let dave = profile(
        &store,
        &clock,
        "dave@example.com",
        "Dave",
        "Data Scientist",
        "Acme",
        "Software",
        "Berlin",
        None,
        &["Python"],
        "Statistics.",
    )
    .await;
    let eve = profile(
        &store,
        &clock,
        "eve@example.com",
        "Eve",
        "Rust Engineer",
        "Hooli",
        "Software",
        "Paris",
        Some(8),
        &["Rust"],
        "Inactive account.",
    )
    .await;
    store
        .update_user(
            &eve,
            &UserPatch {
                is_active: Some(false),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();

    let list = |q: UserQuery| {
        let store = store.clone();
        async move {
            let page = store.list_users(&q).await.unwrap();
            let ids: Vec<String> = page.items.into_iter().map(|u| u.id).collect();
            (page.total, ids)
        }
    };
    let base = || UserQuery {
        per_page: 50,
        ..UserQuery::default()
    };

    // Default: active only, newest first.
    let (total, ids) = list(base()).await;
    assert_eq!(total, 4, "inactive users are excluded");
    assert_eq!(
        ids,
        vec![dave.clone(), carol.clone(), bob.clone(), alice.clone()]
    );
    let (_, ids) = list(UserQuery {
        sort: UserSort::CreatedAsc,
        ..base()
    })
    .await;
    assert_eq!(
        ids,
        vec![alice.clone(), bob.clone(), carol.clone(), dave.clone()]
    );

    // Sorts.
    let (_, ids) = list(UserQuery {
        sort: UserSort::NameAsc,
        ..base()
    })
    .await;
    assert_eq!(
        ids,
        vec![alice.clone(), bob.clone(), carol.clone(), dave.clone()],
        "name ignores case"
    );
    let (_, ids) = list(UserQuery {
        sort: UserSort::NameDesc,
        ..base()
    })
    .await;
    assert_eq!(
        ids,
        vec![dave.clone(), carol.clone(), bob.clone(), alice.clone()]
    );
    let (_, ids) = list(UserQuery {
        sort: UserSort::ExperienceAsc,
        ..base()
    })
    .await;
    assert_eq!(
        ids,
        vec![alice.clone(), bob.clone(), carol.clone(), dave.clone()],
        "unknown last"
    );
    let (_, ids) = list(UserQuery {
        sort: UserSort::ExperienceDesc,
        ..base()
    })
    .await;
    assert_eq!(
        ids,
        vec![carol.clone(), bob.clone(), alice.clone(), dave.clone()],
        "unknown last"
    );

    // Filters.
    let (total, ids) = list(UserQuery {
        industry: Some("SOFTWARE".to_owned()),
        location: Some("Paris".to_owned()),
        ..base()
    })
    .await;
    assert_eq!((total, ids), (2, vec![carol.clone(), alice.clone()]));
    let (total, ids) = list(UserQuery {
        min_experience: Some(5),
        max_experience: Some(12),
        ..base()
    })
    .await;
    assert_eq!((total, ids), (2, vec![bob.clone(), alice.clone()]));
    let (total, ids) = list(UserQuery {
        skills: vec!["RUST".to_owned(), "postgresql".to_owned()],
        ..base()
    })
    .await;
    assert_eq!((total, ids), (1, vec![alice.clone()]), "has all skills");
    let (total, ids) = list(UserQuery {
        skills: vec!["rust".to_owned()],
        ..base()
    })
    .await;
    assert_eq!((total, ids), (2, vec![carol.clone(), alice.clone()]));

    // Search over name, title, company, skills and bio.
    let (total, ids) = list(UserQuery {
        q: Some("rust".to_owned()),
        ..base()
    })
    .await;
    assert_eq!(
        (total, ids),
        (3, vec![carol.clone(), bob.clone(), alice.clone()])
    );
    let (_, ids) = list(UserQuery {
        q: Some("acme".to_owned()),
        ..base()
    })
    .await;
    assert_eq!(ids, vec![dave.clone(), alice.clone()]);
    let (_, ids) = list(UserQuery {
        q: Some("typo".to_owned()),
        ..base()
    })
    .await;
    assert_eq!(ids, vec![bob.clone()], "prefix match in the bio");
    let (_, ids) = list(UserQuery {
        q: Some("backend engineer".to_owned()),
        ..base()
    })
    .await;
    assert_eq!(ids, vec![alice.clone()], "every word must match");
    let (total, _) = list(UserQuery {
        q: Some("Hooli".to_owned()),
        ..base()
    })
    .await;
    assert_eq!(total, 0, "inactive users are not found");
    let (total, _) = list(UserQuery {
        q: Some("\"' OR 1=1 --*".to_owned()),
        ..base()
    })
    .await;
    assert_eq!(total, 0, "operators are plain words");

    // Paging keeps the total.
    let (total, ids) = list(UserQuery {
        page: 2,
        per_page: 3,
        ..UserQuery::default()
    })
    .await;
    assert_eq!((total, ids), (4, vec![alice.clone()]));
    let (total, ids) = list(UserQuery {
        page: 9,
        per_page: 3,
        ..UserQuery::default()
    })
    .await;
    assert_eq!((total, ids.len()), (4, 0));
}

/// `count_limit` caps `total` (then `total_exact` is false), a short last
/// page tells the total without counting, and a page that starts past the
/// limit is refused naming `page`; filters and `q` are counted the same way.
async fn list_users_count_limit<S: Backend>(store: S, clock: ManualClock) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = store
            .create_user(&new_user(&format!("capped{i}@example.com")), None)
            .await
            .unwrap()
            .id;
        ids.push(id.clone());
        let patch = UserPatch {
            name: Some(Some(format!("Capped Person {i}"))),
            industry: Some(Some(if i < 2 { "Rare" } else { "Common" }.to_owned())),
            ..UserPatch::default()
        };
        store.update_user(&id, &patch).await.unwrap();
        clock.advance(Duration::from_secs(1));
    }
    let page = |page: u32, per_page: u32, limit: Option<u64>| UserQuery {
        page,
        per_page,
        count_limit: limit,
        ..UserQuery::default()
    };
    let list = |q: UserQuery| {
        let store = store.clone();
        async move {
            let p = store.list_users(&q).await.unwrap();
            (p.items.len(), p.total, p.total_exact)
        }
    };
    assert_eq!(list(page(1, 2, Some(3))).await, (2, 3, false), "capped");
    assert_eq!(list(page(2, 2, Some(3))).await, (2, 3, false), "capped");
    assert_eq!(
        list(page(1, 2, Some(5))).await,
        (2, 5, true),
        "at the limit"
    );
    assert_eq!(list(page(1, 2, None)).await, (2, 5, true), "no limit");
    assert_eq!(list(page(1, 10, Some(3))).await, (5, 5, true), "short page");
    assert_eq!(
        list(page(3, 2, None)).await,
        (1, 5, true),
        "short last page"
    );
    for q in [
        UserQuery {
            industry: Some("rare".to_owned()),
            ..page(1, 1, Some(3))
        },
        UserQuery {
            q: Some("capped person".to_owned()),
            industry: Some("Rare".to_owned()),
            ..page(1, 1, Some(3))
        },
    ] {
        assert_eq!(list(q).await, (1, 2, true), "below the limit");
    }
    let q = UserQuery {
        q: Some("capped".to_owned()),
        ..page(1, 1, Some(3))
    };
    assert_eq!(list(q).await, (1, 3, false), "a search is capped too");
    let q = UserQuery {
        q: Some("capped".to_owned()),
        industry: Some("Rare".to_owned()),
        ..page(3, 1, Some(3))
    };
    assert_eq!(list(q).await, (0, 2, true), "a page past the last match");
    // A search below the limit sorts its page among all its matches.
    let q = UserQuery {
        q: Some("capped".to_owned()),
        sort: UserSort::NameDesc,
        ..page(2, 2, Some(10))
    };
    let found = store.list_users(&q).await.unwrap();
    let got: Vec<String> = found.items.into_iter().map(|u| u.id).collect();
    assert_eq!(got, vec![ids[2].clone(), ids[1].clone()]);
    assert_eq!((found.total, found.total_exact), (5, true));

    // Offset 4 of at most 3 counted matches.
    let e = store.list_users(&page(3, 2, Some(3))).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadRequest);
    assert!(e.details().unwrap()["page"].is_string(), "{e:?}");
    assert!(e.message().contains("narrow"), "{}", e.message());
}

macro_rules! conformance {
    ($backend:ident, $make:path) => {
        mod $backend {
            use super::*;

            async fn store() -> (impl Backend, ManualClock) {
                let clock = ManualClock::at(t0());
                let store = $make().await.with_clock(Arc::new(clock.clone()));
                (store, clock)
            }

            conformance!(@tests
                crud,
                unique_email_ignoring_case,
                concurrent_upserts_one_user,
                identity_linking_rules,
                unlink_last_sign_in_method,
                migrations_are_idempotent_and_reversible,
                rotate_refresh_exactly_once,
                revoke_sessions,
                one_time_tokens,
                audit_log,
                list_users_filters_sort_and_search,
                list_users_count_limit,
            );
        }
    };
    (@tests $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (store, clock) = store().await;
                super::$name(store, clock).await;
            }
        )*
    };
}

#[cfg(feature = "sqlite")]
conformance!(sqlite, support::sqlite_store);
#[cfg(feature = "postgres")]
conformance!(postgres, support::pg_store);

/// SQLite-only: the URL forms and an in-memory database behind a pool.
#[cfg(feature = "sqlite")]
mod sqlite_urls {
    use meetinity_auth::store::{PoolSettings, SqliteStore, UserStore};

    use super::*;

    #[tokio::test]
    async fn memory_and_file_urls() {
        let store = SqliteStore::connect("sqlite::memory:", &PoolSettings::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let user = store
            .create_user(&new_user("mem@example.com"), None)
            .await
            .unwrap();
        // Many callers share the one in-memory database.
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let store = store.clone();
            let id = user.id.clone();
            tasks.push(tokio::spawn(async move {
                store.get_user(&id).await.unwrap().is_some()
            }));
        }
        for task in tasks {
            assert!(task.await.unwrap());
        }
        store.close().await;

        let dir = std::env::temp_dir().join("meetinity-auth-tests");
        std::fs::create_dir_all(&dir).unwrap();
        for prefix in ["sqlite://", "sqlite:"] {
            let path = dir.join(format!("{}.db", support::unique("url")));
            let url = format!("{prefix}{}", path.display());
            let store = SqliteStore::connect(&url, &PoolSettings::default())
                .await
                .unwrap();
            store.migrate().await.unwrap();
            assert!(path.exists(), "{url} creates the file");
            let mode: (String,) = sqlx::query_as("PRAGMA journal_mode")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(mode.0, "wal");
            let fk: (i64,) = sqlx::query_as("PRAGMA foreign_keys")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(fk.0, 1);
            store.close().await;
        }

        let err = SqliteStore::connect("postgres://x@y/z", &PoolSettings::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
    }
}

/// PostgreSQL-only: URL schemes, schema isolation and the statement timeout.
#[cfg(feature = "postgres")]
mod postgres_urls {
    use meetinity_auth::store::{PoolSettings, PostgresStore, UserStore};

    use super::*;

    #[tokio::test]
    async fn schemes_schema_and_timeout() {
        let url = support::pg_url();
        let rest = url.split_once("://").unwrap().1;
        for scheme in ["postgres", "postgresql", "postgresql+psycopg"] {
            let store =
                PostgresStore::connect(&format!("{scheme}://{rest}"), &PoolSettings::default())
                    .await
                    .unwrap();
            store.ping().await.unwrap();
            store.close().await;
        }
        // Unreachable: `unavailable` (503), not an internal error.
        let quick = PoolSettings {
            acquire_timeout: Duration::from_secs(2),
            ..PoolSettings::default()
        };
        let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/test", &quick)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        let err = PostgresStore::connect("mysql://x@y/z", &PoolSettings::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let err = PostgresStore::connect_in_schema(&url, "bad; drop", &PoolSettings::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);

        let settings = PoolSettings {
            max_connections: 2,
            statement_timeout: Duration::from_millis(200),
            ..PoolSettings::default()
        };
        let schema = support::unique("t");
        let store = PostgresStore::connect_in_schema(&url, &schema, &settings)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let (path,): (String,) = sqlx::query_as("SELECT current_schema()::text")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(path, schema);
        let slow = sqlx::query("SELECT pg_sleep(2)")
            .execute(store.pool())
            .await
            .unwrap_err();
        assert!(slow.to_string().contains("statement timeout"), "{slow}");

        // Another schema sees none of this one's users.
        store
            .create_user(&new_user("iso@example.com"), None)
            .await
            .unwrap();
        let other = support::pg_store().await;
        assert!(other
            .get_user_by_email("iso@example.com")
            .await
            .unwrap()
            .is_none());
        store.close().await;
        other.close().await;
    }
}
