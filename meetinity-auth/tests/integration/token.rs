//! Access tokens: issue/verify round trips per algorithm, every rejection of
//! RFC 8725 / RFC 9068, key rotation and the JWKS; refresh-token sealing.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use meetinity_auth::clock::{Clock, ManualClock};
use meetinity_auth::token::{
    new_refresh_token, open_successor, seal_successor, KeySet, StaticKeySet, TokenService,
};
use meetinity_auth::ErrorKind;
use serde_json::{json, Value};

const ISS: &str = "https://auth.meetinity.test";
const AUD: &str = "meetinity";
const TTL: u64 = 900;
const LEEWAY: u64 = 30;
const SECRET: &[u8] = b"test-only-hs256-secret-0123456789abcdef";
const START: i64 = 1_750_000_000;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn service(keys: StaticKeySet, clock: &ManualClock) -> TokenService {
    TokenService::new(
        Arc::new(keys),
        ISS.to_owned(),
        AUD.to_owned(),
        Duration::from_secs(TTL),
        Duration::from_secs(LEEWAY),
        Arc::new(clock.clone()),
    )
}

fn hs256() -> (TokenService, ManualClock, String) {
    let clock = ManualClock::at_unix(START);
    let keys = StaticKeySet::hs256(SECRET).unwrap();
    let kid = keys.signing_key().0.to_owned();
    (service(keys, &clock), clock, kid)
}

fn rs256() -> (TokenService, ManualClock, String) {
    let clock = ManualClock::at_unix(START);
    let keys = StaticKeySet::from_pem(&fixture("token_rs256.pem"), Algorithm::RS256).unwrap();
    let kid = keys.signing_key().0.to_owned();
    (service(keys, &clock), clock, kid)
}

/// Valid claims at `now`.
fn claims(now: i64) -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "user-1", "sid": "session-1", "jti": "jti-1",
        "iat": now, "exp": now + TTL as i64, "email": "alice@example.com",
        "provider": "password", "roles": ["member"],
    })
}

fn header(alg: Algorithm, kid: &str) -> Header {
    let mut h = Header::new(alg);
    h.typ = Some("at+jwt".to_owned());
    h.kid = Some(kid.to_owned());
    h
}

fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Asserts `InvalidToken`, and that the logged cause names `why`.
#[track_caller]
fn assert_rejected(svc: &TokenService, token: &str, why: &str) {
    let err = svc.verify(token).expect_err("the token must be rejected");
    assert_eq!(err.kind(), ErrorKind::InvalidToken, "{err}");
    assert_eq!(err.status(), 401);
    assert!(
        err.to_string().contains(why),
        "expected cause {why:?}, got: {err}"
    );
    // The cause is for logs; clients see the generic message.
    assert_eq!(
        err.message(),
        meetinity_auth::Error::new(ErrorKind::InvalidToken).message()
    );
}

// ---- round trips -------------------------------------------------------

fn round_trip(keys: StaticKeySet) {
    let clock = ManualClock::at_unix(START);
    let alg = keys.algorithm();
    let kid = keys.signing_key().0.to_owned();
    let svc = service(keys, &clock);
    let roles = vec!["member".to_owned(), "admin".to_owned()];
    let (jwt, issued) = svc
        .issue("user-42", "sid-7", "bob@example.com", "google", &roles)
        .unwrap();

    let h = jsonwebtoken::decode_header(&jwt).unwrap();
    assert_eq!(h.alg, alg);
    assert_eq!(h.typ.as_deref(), Some("at+jwt"));
    assert_eq!(h.kid.as_deref(), Some(kid.as_str()));

    assert_eq!(issued.iss, ISS);
    assert_eq!(issued.aud, AUD);
    assert_eq!(issued.iat, START);
    assert_eq!(issued.exp, START + TTL as i64);
    assert_eq!(issued.nbf, None);
    assert_eq!(issued.jti.len(), 22, "128-bit random jti");

    let verified = svc.verify(&jwt).unwrap();
    assert_eq!(verified, issued);
    assert_eq!(verified.sub, "user-42");
    assert_eq!(verified.sid, "sid-7");
    assert_eq!(verified.email, "bob@example.com");
    assert_eq!(verified.provider, "google");
    assert_eq!(verified.roles, roles);

    // nbf is omitted from the payload when unset.
    let payload = jwt.split('.').nth(1).unwrap();
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert!(payload.get("nbf").is_none());

    let (other, _) = svc
        .issue("user-42", "sid-7", "bob@example.com", "google", &roles)
        .unwrap();
    assert_ne!(
        svc.verify(&other).unwrap().jti,
        verified.jti,
        "fresh jti per token"
    );
}

#[test]
fn hs256_round_trip() {
    round_trip(StaticKeySet::hs256(SECRET).unwrap());
    round_trip(StaticKeySet::generate_hs256());
}

#[test]
fn rs256_round_trip_pkcs8_and_pkcs1() {
    round_trip(StaticKeySet::from_pem(&fixture("token_rs256.pem"), Algorithm::RS256).unwrap());
    round_trip(
        StaticKeySet::from_pem(&fixture("token_rs256_next.pkcs1.pem"), Algorithm::RS256).unwrap(),
    );
}

#[test]
fn es256_round_trip() {
    round_trip(StaticKeySet::from_pem(&fixture("token_es256.pem"), Algorithm::ES256).unwrap());
}

#[test]
fn eddsa_round_trip() {
    round_trip(StaticKeySet::from_pem(&fixture("token_eddsa.pem"), Algorithm::EdDSA).unwrap());
}

#[test]
fn pkcs1_and_pkcs8_forms_of_one_rsa_key_share_the_kid() {
    let a = StaticKeySet::from_pem(&fixture("token_rs256_next.pem"), Algorithm::RS256).unwrap();
    let b =
        StaticKeySet::from_pem(&fixture("token_rs256_next.pkcs1.pem"), Algorithm::RS256).unwrap();
    assert_eq!(a.signing_key().0, b.signing_key().0);
}

#[test]
fn typ_is_case_insensitive_and_may_be_the_media_type() {
    let (svc, _, kid) = hs256();
    let key = EncodingKey::from_secret(SECRET);
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/AT+JWT",
    ] {
        let mut h = header(Algorithm::HS256, &kid);
        h.typ = Some(typ.to_owned());
        svc.verify(&sign(&h, &claims(START), &key))
            .unwrap_or_else(|e| panic!("{typ}: {e}"));
    }
}

// ---- rejections ----------------------------------------------------------

#[test]
fn rejects_alg_none() {
    let (svc, _, kid) = hs256();
    for alg in ["none", "None", "NONE"] {
        let h = json!({"alg": alg, "typ": "at+jwt", "kid": kid});
        let token = format!("{}.{}.", b64json(&h), b64json(&claims(START)));
        assert_rejected(&svc, &token, "alg");
    }
}

#[test]
fn rejects_hs256_signed_with_the_rs256_public_key() {
    // The classic algorithm confusion: the public key PEM used as HMAC secret.
    let (svc, _, kid) = rs256();
    let public_pem = fixture("token_rs256.pub.pem");
    let token = sign(
        &header(Algorithm::HS256, &kid),
        &claims(START),
        &EncodingKey::from_secret(&public_pem),
    );
    assert_rejected(&svc, &token, "unexpected alg");
}

#[test]
fn rejects_any_other_algorithm_than_the_configured_one() {
    let (svc, _, kid) = rs256();
    // A valid ES256 token carrying the RS256 service's kid.
    let es = EncodingKey::from_ec_pem(&fixture("token_es256.pem")).unwrap();
    assert_rejected(
        &svc,
        &sign(&header(Algorithm::ES256, &kid), &claims(START), &es),
        "unexpected alg",
    );
    // The same RSA key, but PS256 / RS512.
    let rsa = EncodingKey::from_rsa_pem(&fixture("token_rs256.pem")).unwrap();
    for alg in [Algorithm::PS256, Algorithm::RS512] {
        assert_rejected(
            &svc,
            &sign(&header(alg, &kid), &claims(START), &rsa),
            "unexpected alg",
        );
    }
}

#[test]
fn rejects_a_bad_signature() {
    let (svc, _, kid) = hs256();
    let (jwt, _) = svc
        .issue("u", "s", "a@example.com", "password", &[])
        .unwrap();
    // One signature character changed.
    let mut bytes = jwt.clone().into_bytes();
    let i = jwt.rfind('.').unwrap() + 5;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    assert_rejected(&svc, &String::from_utf8(bytes).unwrap(), "signature");
    // Payload changed, signature kept.
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut c = claims(START);
    c["roles"] = json!(["admin"]);
    let forged = format!("{}.{}.{}", parts[0], b64json(&c), parts[2]);
    assert_rejected(&svc, &forged, "signature");
    // Signed with another secret under our kid.
    let other = EncodingKey::from_secret(b"another-secret-of-more-than-32-bytes!!");
    assert_rejected(
        &svc,
        &sign(&header(Algorithm::HS256, &kid), &claims(START), &other),
        "signature",
    );
    // No signature at all.
    assert_rejected(&svc, &format!("{}.{}.", parts[0], parts[1]), "signature");
}

#[test]
fn rejects_an_unknown_or_missing_kid() {
    let (svc, _, _) = hs256();
    let key = EncodingKey::from_secret(SECRET);
    assert_rejected(
        &svc,
        &sign(&header(Algorithm::HS256, "nope"), &claims(START), &key),
        "unknown kid",
    );
    let mut h = header(Algorithm::HS256, "x");
    h.kid = None;
    assert_rejected(&svc, &sign(&h, &claims(START), &key), "missing kid");
}

#[test]
fn rejects_a_wrong_issuer_or_audience() {
    let (svc, _, kid) = hs256();
    let key = EncodingKey::from_secret(SECRET);
    let mut c = claims(START);
    c["iss"] = json!("https://evil.test");
    assert_rejected(
        &svc,
        &sign(&header(Algorithm::HS256, &kid), &c, &key),
        "wrong iss",
    );
    let mut c = claims(START);
    c["aud"] = json!("another-api");
    assert_rejected(
        &svc,
        &sign(&header(Algorithm::HS256, &kid), &c, &key),
        "wrong aud",
    );
    let mut c = claims(START);
    c.as_object_mut().unwrap().remove("iss");
    assert_rejected(
        &svc,
        &sign(&header(Algorithm::HS256, &kid), &c, &key),
        "malformed",
    );
}

#[test]
fn rejects_expired_tokens_beyond_the_leeway() {
    let (svc, clock, _) = hs256();
    let (jwt, _) = svc
        .issue("u", "s", "a@example.com", "password", &[])
        .unwrap();
    clock.advance(Duration::from_secs(TTL + LEEWAY - 1));
    svc.verify(&jwt).expect("still inside the leeway");
    clock.advance(Duration::from_secs(1));
    assert_rejected(&svc, &jwt, "expired");
}

#[test]
fn rejects_nbf_in_the_future_beyond_the_leeway() {
    let (svc, clock, kid) = hs256();
    let key = EncodingKey::from_secret(SECRET);
    let now = clock.unix();
    let mut c = claims(now);
    c["nbf"] = json!(now + LEEWAY as i64);
    let inside = svc
        .verify(&sign(&header(Algorithm::HS256, &kid), &c, &key))
        .unwrap();
    assert_eq!(inside.nbf, Some(now + LEEWAY as i64));
    c["nbf"] = json!(now + LEEWAY as i64 + 1);
    assert_rejected(
        &svc,
        &sign(&header(Algorithm::HS256, &kid), &c, &key),
        "nbf",
    );
}

#[test]
fn rejects_iat_in_the_future_beyond_the_leeway() {
    let (svc, clock, kid) = hs256();
    let key = EncodingKey::from_secret(SECRET);
    let now = clock.unix();
    let mut c = claims(now);
    c["iat"] = json!(now + LEEWAY as i64);
    svc.verify(&sign(&header(Algorithm::HS256, &kid), &c, &key))
        .unwrap();
    c["iat"] = json!(now + 3600);
    assert_rejected(
        &svc,
        &sign(&header(Algorithm::HS256, &kid), &c, &key),
        "iat",
    );
}

#[test]
fn rejects_a_missing_or_wrong_typ() {
    let (svc, _, kid) = hs256();
    let key = EncodingKey::from_secret(SECRET);
    for typ in [
        None,
        Some("JWT"),
        Some("jwt"),
        Some("at+jwt+x"),
        Some("application/jwt"),
        Some(""),
    ] {
        let mut h = header(Algorithm::HS256, &kid);
        h.typ = typ.map(str::to_owned);
        assert_rejected(&svc, &sign(&h, &claims(START), &key), "typ");
    }
}

#[test]
fn rejects_a_crit_header() {
    let (svc, _, kid) = hs256();
    let mut h = header(Algorithm::HS256, &kid);
    h.crit = Some(vec!["exp".to_owned()]);
    assert_rejected(
        &svc,
        &sign(&h, &claims(START), &EncodingKey::from_secret(SECRET)),
        "crit",
    );
}

#[test]
fn header_checks_hold_after_the_own_header_is_known() {
    // Verification skips decoding a header it has already checked (the
    // service's own): every other header still goes through every check.
    let (svc, _, kid) = hs256();
    let key = EncodingKey::from_secret(SECRET);
    let (own, _) = svc
        .issue("user-1", "session-1", "a@example.com", "password", &[])
        .unwrap();
    for _ in 0..3 {
        assert_eq!(svc.verify(&own).unwrap().sub, "user-1");
    }
    let mut crit = header(Algorithm::HS256, &kid);
    crit.crit = Some(vec!["exp".to_owned()]);
    assert_rejected(&svc, &sign(&crit, &claims(START), &key), "crit");
    let mut typ = header(Algorithm::HS256, &kid);
    typ.typ = Some("JWT".to_owned());
    assert_rejected(&svc, &sign(&typ, &claims(START), &key), "typ");
    assert_rejected(
        &svc,
        &sign(&header(Algorithm::HS256, "other"), &claims(START), &key),
        "unknown kid",
    );
    // The own header with a bad signature or a forged payload is still refused.
    let (head, rest) = own.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let mut forged = claims(START);
    forged["sub"] = json!("admin");
    assert_rejected(
        &svc,
        &format!("{head}.{}.{sig}", b64json(&forged)),
        "signature",
    );
    assert_eq!(svc.verify(&own).unwrap().sub, "user-1");
}

#[test]
fn rejects_malformed_tokens_without_panicking() {
    let (svc, _, kid) = hs256();
    let good_header = b64json(&json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}));
    let cases = [
        String::new(),
        "abc".to_owned(),
        "a.b".to_owned(),
        "a.b.c".to_owned(),
        "....".to_owned(),
        format!("{good_header}.!!!.xyz"),
        format!("{good_header}.{}.", URL_SAFE_NO_PAD.encode(b"not json")),
        format!("{}.e30.", URL_SAFE_NO_PAD.encode(b"[1,2]")),
        "x".repeat(20_000),
        format!("{}.e30.", "A".repeat(4_000)),
    ];
    for token in &cases {
        let err = svc.verify(token).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidToken, "{token:.40}: {err}");
    }
}

#[tokio::test]
async fn jku_x5u_and_jwk_headers_are_ignored_never_fetched_or_trusted() {
    let clock = ManualClock::at_unix(START);
    let ours = StaticKeySet::from_pem(&fixture("token_es256.pem"), Algorithm::ES256).unwrap();
    let kid = ours.signing_key().0.to_owned();
    let svc = service(ours, &clock);
    let our_key = EncodingKey::from_ec_pem(&fixture("token_es256.pem")).unwrap();

    // A listener that would see any fetch of the jku / x5u URLs.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_url = format!("http://{}/jwks.json", trap.local_addr().unwrap());

    // Attacker key, published inline (jwk) and by URL.
    let attacker_pem = fixture("token_es256_next.pem");
    let attacker_key = EncodingKey::from_ec_pem(&attacker_pem).unwrap();
    let attacker_set = StaticKeySet::from_pem(&attacker_pem, Algorithm::ES256).unwrap();
    let attacker_jwk: Jwk = serde_json::from_value(attacker_set.jwks()["keys"][0].clone()).unwrap();

    let mut h = header(Algorithm::ES256, &kid);
    h.jku = Some(trap_url.clone());
    h.x5u = Some(trap_url.clone());
    h.jwk = Some(attacker_jwk.clone());

    // Signed with our key: the extra headers change nothing.
    svc.verify(&sign(&h, &claims(START), &our_key)).unwrap();
    // Signed with the attacker's key under our kid: bad signature.
    assert_rejected(&svc, &sign(&h, &claims(START), &attacker_key), "signature");
    // Under the attacker's own kid: unknown.
    h.kid = attacker_jwk.common.key_id.clone();
    assert_rejected(
        &svc,
        &sign(&h, &claims(START), &attacker_key),
        "unknown kid",
    );

    let fetched = tokio::time::timeout(Duration::from_millis(200), trap.accept()).await;
    assert!(fetched.is_err(), "verify must never fetch jku/x5u");
}

// ---- keys, JWKS, rotation -----------------------------------------------

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// Checks one published JWK: public members only, kid = RFC 7638
/// thumbprint, and it verifies a token of the set.
fn check_jwk(jwk: &Value, kty: &str, alg: Algorithm, token: &str) {
    assert_eq!(jwk["kty"], kty);
    assert_eq!(jwk["alg"], format!("{alg:?}"));
    assert_eq!(jwk["use"], "sig");
    for m in PRIVATE_MEMBERS {
        assert!(jwk.get(m).is_none(), "private member {m} published: {jwk}");
    }
    let parsed: Jwk = serde_json::from_value(jwk.clone()).unwrap();
    assert_eq!(
        jwk["kid"].as_str().unwrap(),
        parsed.thumbprint(ThumbprintHash::SHA256)
    );
    let mut v = Validation::new(alg);
    v.set_audience(&[AUD]);
    v.validate_exp = false;
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(&parsed).unwrap(), &v)
        .expect("the published key verifies the token");
}

#[test]
fn jwks_publishes_public_keys_only() {
    for (file, alg, kty, params) in [
        (
            "token_rs256.pem",
            Algorithm::RS256,
            "RSA",
            &[("n", None), ("e", Some("AQAB"))][..],
        ),
        (
            "token_es256.pem",
            Algorithm::ES256,
            "EC",
            &[("crv", Some("P-256")), ("x", None), ("y", None)][..],
        ),
        (
            "token_eddsa.pem",
            Algorithm::EdDSA,
            "OKP",
            &[("crv", Some("Ed25519")), ("x", None)][..],
        ),
    ] {
        let keys = StaticKeySet::from_pem(&fixture(file), alg).unwrap();
        let kid = keys.signing_key().0.to_owned();
        let jwks = keys.jwks();
        let list = jwks["keys"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{file}");
        assert_eq!(list[0]["kid"], kid.as_str());
        for (p, expected) in params {
            let value = list[0][p].as_str().unwrap_or_default();
            assert!(!value.is_empty(), "{file}: {p}");
            if let Some(expected) = expected {
                assert_eq!(value, *expected, "{file}: {p}");
            }
        }
        let svc = service(keys, &ManualClock::at_unix(START));
        let (jwt, _) = svc
            .issue("u", "s", "a@example.com", "password", &[])
            .unwrap();
        check_jwk(&list[0], kty, alg, &jwt);
    }
}

#[test]
fn jwks_is_empty_for_hs256_and_the_kid_hides_the_secret() {
    let keys = StaticKeySet::hs256(SECRET)
        .unwrap()
        .add_previous_hs256(&[9u8; 40])
        .unwrap();
    assert_eq!(keys.jwks(), json!({"keys": []}));
    let kid = keys.signing_key().0;
    assert!(!kid.contains(std::str::from_utf8(SECRET).unwrap()));
    assert!(!kid.contains(&URL_SAFE_NO_PAD.encode(SECRET)));
    assert!(!format!("{keys:?}").contains("test-only-hs256-secret"));
    // Same secret, same kid: instances sharing JWT_SECRET accept each other's tokens.
    assert_eq!(StaticKeySet::hs256(SECRET).unwrap().signing_key().0, kid);
    assert_ne!(StaticKeySet::generate_hs256().signing_key().0, kid);
}

fn rotation(alg: Algorithm, old_private: &str, old_verify: &str, new_private: &str) {
    let clock = ManualClock::at_unix(START);
    let old_keys = StaticKeySet::from_pem(&fixture(old_private), alg).unwrap();
    let old_kid = old_keys.signing_key().0.to_owned();
    let old_svc = service(old_keys, &clock);
    let (old_token, _) = old_svc
        .issue("u", "s", "a@example.com", "password", &[])
        .unwrap();

    // Before rotation, the new key alone does not know the old token.
    let new_only = service(
        StaticKeySet::from_pem(&fixture(new_private), alg).unwrap(),
        &clock,
    );
    assert_rejected(&new_only, &old_token, "unknown kid");

    let rotated = StaticKeySet::from_pem(&fixture(new_private), alg)
        .unwrap()
        .add_verification_pem(&fixture(old_verify))
        .unwrap();
    let new_kid = rotated.signing_key().0.to_owned();
    assert_ne!(new_kid, old_kid);
    let kids: Vec<String> = rotated.kids().map(str::to_owned).collect();
    assert_eq!(kids, vec![new_kid.clone(), old_kid.clone()]);
    let jwks = rotated.jwks();
    let listed: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        vec![new_kid.as_str(), old_kid.as_str()],
        "current key first"
    );

    let svc = service(rotated, &clock);
    assert_eq!(
        svc.verify(&old_token).unwrap().sub,
        "u",
        "old tokens keep verifying"
    );
    let (new_token, _) = svc
        .issue("u2", "s2", "b@example.com", "password", &[])
        .unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&new_token)
            .unwrap()
            .kid
            .as_deref(),
        Some(new_kid.as_str())
    );
    assert_eq!(svc.verify(&new_token).unwrap().sub, "u2");
    // The old service does not know the new key.
    assert_rejected(&old_svc, &new_token, "unknown kid");
}

#[test]
fn rs256_rotation_keeps_old_tokens_valid() {
    // Old key given as its public PEM, and as its private PEM.
    rotation(
        Algorithm::RS256,
        "token_rs256.pem",
        "token_rs256.pub.pem",
        "token_rs256_next.pem",
    );
    rotation(
        Algorithm::RS256,
        "token_rs256.pem",
        "token_rs256.pem",
        "token_rs256_next.pkcs1.pem",
    );
}

#[test]
fn es256_rotation_keeps_old_tokens_valid() {
    rotation(
        Algorithm::ES256,
        "token_es256_next.pem",
        "token_es256_next.pub.pem",
        "token_es256.pem",
    );
}

#[test]
fn eddsa_rotation_keeps_old_tokens_valid() {
    rotation(
        Algorithm::EdDSA,
        "token_eddsa_next.pem",
        "token_eddsa_next.pub.pem",
        "token_eddsa.pem",
    );
}

#[test]
fn hs256_rotation_keeps_old_tokens_valid() {
    let clock = ManualClock::at_unix(START);
    let old = b"the-previous-hs256-secret-0123456789abcdef";
    let old_svc = service(StaticKeySet::hs256(old).unwrap(), &clock);
    let (old_token, _) = old_svc
        .issue("u", "s", "a@example.com", "password", &[])
        .unwrap();
    let svc = service(
        StaticKeySet::hs256(SECRET)
            .unwrap()
            .add_previous_hs256(old)
            .unwrap(),
        &clock,
    );
    svc.verify(&old_token).unwrap();
    let (new_token, _) = svc
        .issue("u", "s", "a@example.com", "password", &[])
        .unwrap();
    svc.verify(&new_token).unwrap();
    assert_rejected(&old_svc, &new_token, "unknown kid");
}

#[test]
fn with_verification_key_adds_an_unpublished_key() {
    let clock = ManualClock::at_unix(START);
    let old_svc = service(
        StaticKeySet::from_pem(&fixture("token_eddsa_next.pem"), Algorithm::EdDSA).unwrap(),
        &clock,
    );
    let (token, _) = old_svc
        .issue("u", "s", "a@example.com", "password", &[])
        .unwrap();
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let key = DecodingKey::from_ed_pem(&fixture("token_eddsa_next.pub.pem")).unwrap();
    let keys = StaticKeySet::from_pem(&fixture("token_eddsa.pem"), Algorithm::EdDSA)
        .unwrap()
        .with_verification_key(kid.clone(), key.clone())
        .unwrap();
    assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 1);
    let keys = keys.with_verification_key(kid, key).unwrap_err();
    assert_eq!(keys.kind(), ErrorKind::Config, "duplicate kid");
    let svc = service(
        StaticKeySet::from_pem(&fixture("token_eddsa.pem"), Algorithm::EdDSA)
            .unwrap()
            .with_verification_key(
                jsonwebtoken::decode_header(&token).unwrap().kid.unwrap(),
                DecodingKey::from_ed_pem(&fixture("token_eddsa_next.pub.pem")).unwrap(),
            )
            .unwrap(),
        &clock,
    );
    svc.verify(&token).unwrap();
    // A key of another family is refused.
    let err = StaticKeySet::from_pem(&fixture("token_eddsa.pem"), Algorithm::EdDSA)
        .unwrap()
        .with_verification_key("k", DecodingKey::from_secret(SECRET))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[test]
fn bad_keys_are_configuration_errors() {
    let config = |r: meetinity_auth::Result<StaticKeySet>| {
        assert_eq!(r.map(|_| ()).unwrap_err().kind(), ErrorKind::Config);
    };
    config(StaticKeySet::hs256(b"only-31-bytes-long-secret-12345"));
    config(StaticKeySet::hs256(b""));
    StaticKeySet::hs256(&[1u8; 32]).unwrap();
    config(StaticKeySet::from_pem(
        &fixture("token_rs1024_weak.pem"),
        Algorithm::RS256,
    ));
    config(StaticKeySet::from_pem(
        &fixture("token_es256.pem"),
        Algorithm::RS256,
    ));
    config(StaticKeySet::from_pem(
        &fixture("token_rs256.pem"),
        Algorithm::EdDSA,
    ));
    config(StaticKeySet::from_pem(
        &fixture("token_rs256.pub.pem"),
        Algorithm::RS256,
    ));
    config(StaticKeySet::from_pem(b"not a pem", Algorithm::ES256));
    config(StaticKeySet::from_pem(
        &fixture("token_es256.pem"),
        Algorithm::HS256,
    ));
    config(StaticKeySet::from_pem(
        &fixture("token_rs256.pem"),
        Algorithm::PS256,
    ));
    let rs = || StaticKeySet::from_pem(&fixture("token_rs256.pem"), Algorithm::RS256).unwrap();
    config(rs().add_verification_pem(&fixture("token_es256_next.pub.pem")));
    config(rs().add_verification_pem(&fixture("token_rs256.pub.pem")));
    config(rs().add_previous_hs256(SECRET));
    config(
        StaticKeySet::hs256(SECRET)
            .unwrap()
            .add_previous_hs256(b"short"),
    );
    config(
        StaticKeySet::hs256(SECRET)
            .unwrap()
            .add_previous_hs256(SECRET),
    );
    let err = StaticKeySet::from_pem(b"not a pem", Algorithm::ES256).unwrap_err();
    assert!(
        !err.to_string().contains("not a pem"),
        "the key is not echoed"
    );
}

#[test]
fn generated_pems_are_loadable_pkcs8() {
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let pem = meetinity_auth::token::generate_pem(alg).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{alg:?}");
        round_trip(StaticKeySet::from_pem(pem.as_bytes(), alg).unwrap());
    }
}

// ---- refresh tokens ------------------------------------------------------

#[test]
fn refresh_successor_opens_only_with_the_old_token() {
    let old = new_refresh_token();
    let new = new_refresh_token();
    assert_eq!(old.expose().len(), 43);
    let sealed = seal_successor(&old, &new);
    assert!(
        !sealed.contains(new.expose()),
        "stored value is not the token"
    );
    assert!(open_successor(&old, &sealed).unwrap().ct_eq(new.expose()));
    assert!(open_successor(&new, &sealed).is_none());
    assert!(open_successor(&new_refresh_token(), &sealed).is_none());
    assert!(open_successor(&old, "v1.garbage").is_none());
}
