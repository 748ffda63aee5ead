//! Argon2id hashing on the blocking pool, and the strength rules.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meetinity_auth::password::{check_strength, is_common_password, PasswordHasher};
use meetinity_auth::secret::Password;
use meetinity_auth::ErrorKind;

fn pw(s: &str) -> Password {
    Password::new(s)
}

#[tokio::test]
async fn hash_then_verify() {
    let hasher = PasswordHasher::new(2);
    let hash = hasher.hash(&pw("Tr0ub4dor&3-horse")).await.unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!hash.contains("Tr0ub4dor"));
    assert!(hasher
        .verify(&pw("Tr0ub4dor&3-horse"), Some(&hash))
        .await
        .unwrap());
    assert!(!hasher
        .verify(&pw("Tr0ub4dor&3-Horse"), Some(&hash))
        .await
        .unwrap());
    assert!(!hasher.verify(&pw(""), Some(&hash)).await.unwrap());
    // A fresh salt each time.
    let again = hasher.hash(&pw("Tr0ub4dor&3-horse")).await.unwrap();
    assert_ne!(hash, again);
    assert!(!hasher.needs_rehash(&hash));
}

#[tokio::test]
async fn unknown_account_verifies_against_a_dummy_and_is_false() {
    let hasher = PasswordHasher::new(2);
    let hash = hasher.hash(&pw("some long password")).await.unwrap();

    // Fastest of several tries each: the machine may be busy with other work.
    let mut known = std::time::Duration::MAX;
    let mut unknown = std::time::Duration::MAX;
    for _ in 0..4 {
        let t = Instant::now();
        assert!(hasher
            .verify(&pw("some long password"), Some(&hash))
            .await
            .unwrap());
        known = known.min(t.elapsed());
        let t = Instant::now();
        assert!(!hasher
            .verify(&pw("some long password"), None)
            .await
            .unwrap());
        unknown = unknown.min(t.elapsed());
    }
    // Same work: an unknown account is not answered measurably faster.
    assert!(
        unknown * 3 > known,
        "unknown {unknown:?} vs known {known:?}"
    );
}

#[tokio::test]
async fn corrupt_stored_hash_is_an_internal_error() {
    let hasher = PasswordHasher::new(1);
    for corrupt in [
        "not a phc string",
        "",
        "$argon2id$v=19$m=19456,t=2,p=1$!!$!!",
    ] {
        let err = hasher
            .verify(&pw("whatever password"), Some(corrupt))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{corrupt}");
    }
}

fn weak(password: &str, email: &str) -> String {
    let err = check_strength(&pw(password), email).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WeakPassword);
    assert_eq!(err.status(), 422);
    err.details().unwrap()["password"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn strength_length_rules() {
    assert!(weak("xK9#mQ2!v", "a@example.com").contains("at least 10 characters"));
    check_strength(&pw("xK9#mQ2!vZ"), "a@example.com").unwrap();
    // Characters, not bytes: nine accented letters are 18 bytes but too short.
    assert!(weak(&"é".repeat(9), "a@example.com").contains("at least 10"));
    check_strength(&pw("ééééébbbbb"), "a@example.com").unwrap();
    // At most 1024 bytes.
    let long_ok = format!("{}{}", "zQ7!", "x".repeat(1020));
    assert_eq!(long_ok.len(), 1024);
    check_strength(&pw(&long_ok), "a@example.com").unwrap();
    assert!(weak(&format!("{long_ok}y"), "a@example.com").contains("at most 1024 bytes"));
}

#[test]
fn strength_rejects_the_email_and_its_local_part() {
    let email = "Alice.Longname@Example.com";
    assert!(weak("alice.longname@example.COM", email).contains("email"));
    assert!(weak("ALICE.LONGNAME", email).contains("email"));
    check_strength(&pw("alice.longname!"), email).unwrap();
}

#[test]
fn strength_rejects_common_breached_passwords() {
    for common in [
        "qwertyuiop",
        "1q2w3e4r5t",
        "password123",
        "PassWord123",
        "1234567890",
    ] {
        assert!(is_common_password(common), "{common}");
        assert!(
            weak(common, "someone@example.com").contains("breached"),
            "{common}"
        );
    }
    assert!(!is_common_password("violet-tractor-lagoon-42"));
    check_strength(&pw("violet-tractor-lagoon-42"), "someone@example.com").unwrap();
}

#[test]
fn strength_reports_every_broken_rule() {
    // "password" is short *and* common.
    let details = weak("password", "x@example.com");
    assert!(details.contains("at least 10"), "{details}");
    assert!(details.contains("breached"), "{details}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_is_bounded_and_does_not_stall_async_workers() {
    let hasher = Arc::new(PasswordHasher::new(2));
    let running = Arc::new(AtomicUsize::new(1));

    // A timer task on the async workers: it must keep ticking on time.
    let ticker = {
        let hasher = Arc::clone(&hasher);
        let running = Arc::clone(&running);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(10));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut ticks, mut max_gap, mut max_in_flight) = (0u32, Duration::ZERO, 0usize);
            let mut last = Instant::now();
            while running.load(Ordering::SeqCst) == 1 {
                interval.tick().await;
                let now = Instant::now();
                max_gap = max_gap.max(now - last);
                last = now;
                ticks += 1;
                max_in_flight = max_in_flight.max(hasher.in_flight());
            }
            (ticks, max_gap, max_in_flight)
        })
    };

    let started = Instant::now();
    let jobs: Vec<_> = (0..8)
        .map(|i| {
            let hasher = Arc::clone(&hasher);
            tokio::spawn(async move {
                hasher
                    .hash(&Password::new(format!("password number {i}")))
                    .await
            })
        })
        .collect();
    for job in jobs {
        job.await.unwrap().unwrap();
    }
    let elapsed = started.elapsed();
    running.store(0, Ordering::SeqCst);
    let (ticks, max_gap, max_in_flight) = ticker.await.unwrap();

    assert!(max_in_flight <= 2, "{max_in_flight} hashes ran at once");
    assert_eq!(max_in_flight, 2, "the two permits were used");
    assert_eq!(hasher.in_flight(), 0);
    assert!(ticks >= 5, "{ticks} ticks in {elapsed:?}");
    assert!(
        max_gap < Duration::from_millis(250),
        "timer stalled for {max_gap:?} during {elapsed:?}"
    );
}
