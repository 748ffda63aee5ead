//! Argon2id (m=19 MiB, t=2, p=1) hash and verify through
//! [`PasswordHasher`], including the hop to the blocking pool.
//!
//! ```text
//! cargo bench -p meetinity-auth-benches --bench password
//! ```
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use meetinity_auth::password::PasswordHasher;
use meetinity_auth::secret::Password;
use meetinity_auth_benches::runtime;

fn benches(c: &mut Criterion) {
    let rt = runtime().unwrap();
    let hasher = PasswordHasher::new(1);
    let pw = Password::new("a long bench passphrase 7");
    let hash = rt.block_on(hasher.hash(&pw)).unwrap();
    assert!(rt.block_on(hasher.verify(&pw, Some(&hash))).unwrap());

    let mut group = c.benchmark_group("argon2id");
    group.sample_size(10);
    group.bench_function("hash", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    black_box(hasher.hash(&pw).await.unwrap());
                }
                t.elapsed()
            })
        })
    });
    group.bench_function("verify", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    assert!(hasher.verify(&pw, Some(&hash)).await.unwrap());
                }
                t.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = password_benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = benches
}
criterion_main!(password_benches);
