//! Access-token issue and verify for each algorithm (HS256, RS256, ES256,
//! EdDSA) through [`TokenService`], next to a bare `jsonwebtoken::decode` of
//! the same token with the same key: the library's own cost is the
//! difference (header peek, `typ`/`kid` checks, clock checks).
//!
//! ```text
//! cargo bench -p meetinity-auth-benches --bench tokens
//! ```
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use jsonwebtoken::{Algorithm, Validation};
use meetinity_auth::clock::SystemClock;
use meetinity_auth::token::{generate_pem, AccessClaims, StaticKeySet, TokenService};

const ISSUER: &str = "https://auth.bench.test";
const AUDIENCE: &str = "meetinity";

fn service(alg: Algorithm) -> TokenService {
    let keys = match alg {
        Algorithm::HS256 => StaticKeySet::generate_hs256(),
        other => StaticKeySet::from_pem(generate_pem(other).unwrap().as_bytes(), other).unwrap(),
    };
    TokenService::new(
        Arc::new(keys),
        ISSUER.into(),
        AUDIENCE.into(),
        Duration::from_secs(900),
        Duration::from_secs(30),
        Arc::new(SystemClock),
    )
}

fn issue(svc: &TokenService) -> (String, AccessClaims) {
    svc.issue(
        black_box("7c9e6679-7425-40de-944b-e07fc1f90ae7"),
        "16fd2706-8baf-433b-82eb-8c7fada847da",
        "bench@example.test",
        "password",
        &["member".to_owned()],
    )
    .unwrap()
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("token");
    for (name, alg) in [
        ("HS256", Algorithm::HS256),
        ("RS256", Algorithm::RS256),
        ("ES256", Algorithm::ES256),
        ("EdDSA", Algorithm::EdDSA),
    ] {
        let svc = service(alg);
        let (jwt, claims) = issue(&svc);
        let key = svc.keys().decoding_key(svc.keys().signing_key().0).unwrap();
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let bare = |t: &str| {
            jsonwebtoken::decode::<AccessClaims>(t, key, &validation)
                .unwrap()
                .claims
        };
        assert_eq!(svc.verify(&jwt).unwrap(), claims);
        assert_eq!(bare(&jwt), claims);

        group.bench_function(BenchmarkId::new("issue", name), |b| b.iter(|| issue(&svc)));
        group.bench_function(BenchmarkId::new("verify", name), |b| {
            b.iter(|| svc.verify(black_box(&jwt)).unwrap())
        });
        group.bench_function(BenchmarkId::new("bare_decode", name), |b| {
            b.iter(|| bare(black_box(&jwt)))
        });
    }
    group.finish();
}

criterion_group! {
    name = token_benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(token_benches);
