//! Issue 3 performance: `Authenticator::verify` (HS256, warm session-liveness
//! cache, SQLite store) against a bare `jsonwebtoken::decode` of the same
//! token, in the same run. Target: verify costs at most 1.3x the bare decode.
//!
//! ```text
//! cargo bench -p meetinity-auth-benches --bench verify -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Besides criterion's report, the run ends with an interleaved A/B
//! measurement of both and prints their ratio (`verify / decode`); the line
//! is also written to `target/verify-ratio.txt` when that directory exists.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use meetinity_auth::model::RequestContext;
use meetinity_auth::secret::Password;
use meetinity_auth::service::{AuthServiceBuilder, Authenticator, Registration};
use meetinity_auth::store::SqliteStore;
use meetinity_auth::token::AccessClaims;
use meetinity_auth::{AuthService, Config};

const SECRET: &str = "bench-secret-bench-secret-bench-secret-0123";
const ISSUER: &str = "https://auth.bench.test";
const AUDIENCE: &str = "meetinity";

/// Everything both benchmarks need: the service (warm) and the token.
struct Fixture {
    auth: Authenticator,
    token: String,
    key: DecodingKey,
    validation: Validation,
    _runtime: tokio::runtime::Runtime,
    dir: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls a future that must complete without waiting: the warm verify path
/// makes no database (or any other I/O) call, so it never yields. A verify
/// that yields fails the benchmark rather than measuring something else.
fn ready<T>(fut: impl Future<Output = T>) -> T {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the warm verify path waited (I/O): it must not"),
    }
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "meetinity-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("bench.db");
    let (auth, token) = runtime.block_on(async {
        let store = Arc::new(SqliteStore::open(&db).await.unwrap());
        store.migrate().await.unwrap();
        let config = Config::from_vars([
            ("JWT_SECRET", SECRET),
            ("JWT_ALGO", "HS256"),
            ("JWT_ISSUER", ISSUER),
            ("JWT_AUDIENCE", AUDIENCE),
        ])
        .unwrap();
        let auth = AuthServiceBuilder::from_config(config)
            .store(store)
            .build()
            .await
            .unwrap();
        let set = auth
            .register(
                Registration {
                    email: "bench@example.test".into(),
                    password: Password::new("a long bench passphrase 7"),
                    name: None,
                },
                &RequestContext::default(),
            )
            .await
            .unwrap();
        // One verify through the database path, then the cache is warm.
        auth.verify(&set.token).await.unwrap();
        (auth, set.token)
    });
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let key = DecodingKey::from_secret(SECRET.as_bytes());
    // Both accept the token and agree on it.
    let bare = jsonwebtoken::decode::<AccessClaims>(&token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(ready(auth.verify(&token)).unwrap(), bare);
    Fixture {
        auth,
        token,
        key,
        validation,
        _runtime: runtime,
        dir,
    }
}

fn decode(f: &Fixture) -> AccessClaims {
    jsonwebtoken::decode::<AccessClaims>(black_box(&f.token), &f.key, &f.validation)
        .unwrap()
        .claims
}

fn verify(f: &Fixture) -> AccessClaims {
    ready(f.auth.verify(black_box(&f.token))).unwrap()
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("verify_hs256");
    group.bench_function("jsonwebtoken_decode", |b| b.iter(|| decode(&f)));
    group.bench_function("authenticator_verify_warm", |b| b.iter(|| verify(&f)));
    // Where the difference goes: signature and claims checks alone.
    group.bench_function("token_service_verify", |b| {
        b.iter(|| f.auth.parts().tokens.verify(black_box(&f.token)).unwrap())
    });
    group.finish();
    ratio(&f);
}

/// Interleaved rounds of all three; the ratio of the medians of the
/// per-call times (`verify / decode` is the figure with a target).
fn ratio(f: &Fixture) {
    const ROUNDS: usize = 15;
    const CALLS: u32 = 5_000;
    let time = |run: &dyn Fn()| {
        let t = Instant::now();
        for _ in 0..CALLS {
            run();
        }
        t.elapsed() / CALLS
    };
    let mut bare: Vec<Duration> = Vec::with_capacity(ROUNDS);
    let mut lib: Vec<Duration> = Vec::with_capacity(ROUNDS);
    let mut tokens: Vec<Duration> = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        bare.push(time(&|| {
            black_box(decode(f));
        }));
        lib.push(time(&|| {
            black_box(verify(f));
        }));
        tokens.push(time(&|| {
            black_box(f.auth.parts().tokens.verify(black_box(&f.token)).unwrap());
        }));
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (b, l, t) = (median(&mut bare), median(&mut lib), median(&mut tokens));
    let r = l.as_secs_f64() / b.as_secs_f64();
    let line = format!(
        "verify_hs256 ratio: authenticator_verify_warm {l:?} / jsonwebtoken_decode {b:?} = {r:.3}x \
         (target <= 1.3x) {} [token_service_verify {t:?} = {:.3}x]",
        if r <= 1.3 { "OK" } else { "OVER TARGET" },
        t.as_secs_f64() / b.as_secs_f64(),
    );
    println!("\n{line}");
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    if target.is_dir() {
        let _ = std::fs::write(target.join("verify-ratio.txt"), format!("{line}\n"));
    }
}

criterion_group!(verify_benches, benches);
criterion_main!(verify_benches);
