//! Access-token verification on arbitrary input: never a panic, and a token
//! that verifies is one the service could have issued (right `alg`, `typ`,
//! `kid`, issuer, audience, and inside its validity window).
//!
//! Input: first byte even: the rest is the token text as is. Odd: its bits
//! pick a header (alg, typ, kid, crit: valid or not), the rest is the claims
//! JSON, and the token is signed with the service's own HS256 key, so that
//! libFuzzer reaches the claim checks behind the signature.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use meetinity_auth::clock::ManualClock;
use meetinity_auth::token::{KeySet, StaticKeySet, TokenService};
use sha2::Sha256;

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret-0123";
const NOW: i64 = 1_800_000_000;
const LEEWAY: i64 = 30;

struct Fixture {
    tokens: TokenService,
    kid: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let keys = StaticKeySet::hs256(SECRET).expect("key");
        let kid = keys.kids().next().expect("a kid").to_owned();
        let keys: Arc<dyn KeySet> = Arc::new(keys);
        let tokens = TokenService::new(
            keys,
            "https://auth.example".into(),
            "meetinity".into(),
            Duration::from_secs(900),
            Duration::from_secs(LEEWAY as u64),
            Arc::new(ManualClock::at_unix(NOW)),
        );
        Fixture { tokens, kid }
    })
}

fn sign(header: &str, claims: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("hmac key");
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    if first % 2 == 0 {
        let token = String::from_utf8_lossy(rest);
        if let Ok(claims) = f.tokens.verify(&token) {
            // Only a token signed with our key can pass: impossible to forge here.
            panic!("an arbitrary string verified: {token:?} -> {claims:?}");
        }
        return;
    }
    let alg = ["HS256", "none", "RS256", "hs256", "HS384", "EdDSA"][(first as usize >> 1) % 6];
    let typ = [
        Some("at+jwt"),
        Some("application/at+jwt"),
        Some("JWT"),
        None,
    ][(first as usize >> 4) % 4];
    let kid_ok = first & 0x40 == 0;
    let crit = first & 0x80 != 0 && first & 0x20 != 0;
    let mut header = serde_json::json!({ "alg": alg });
    if let Some(t) = typ {
        header["typ"] = t.into();
    }
    header["kid"] = if kid_ok {
        f.kid.clone().into()
    } else {
        "other".into()
    };
    if crit {
        header["crit"] = serde_json::json!(["exp"]);
    }
    let token = sign(&header.to_string(), rest);
    if let Ok(claims) = f.tokens.verify(&token) {
        assert_eq!(alg, "HS256", "{token}");
        assert!(
            matches!(typ, Some("at+jwt") | Some("application/at+jwt")),
            "{token}"
        );
        assert!(kid_ok && !crit, "{token}");
        assert_eq!(claims.iss, "https://auth.example");
        assert_eq!(claims.aud, "meetinity");
        assert!(
            NOW < claims.exp.saturating_add(LEEWAY),
            "expired: {claims:?}"
        );
        assert!(claims.iat <= NOW + LEEWAY, "iat in the future: {claims:?}");
        assert!(
            claims.nbf.is_none_or(|nbf| nbf <= NOW + LEEWAY),
            "{claims:?}"
        );
    }
});
