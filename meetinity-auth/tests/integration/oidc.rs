//! The OpenID Connect provider against an OpenID provider on loopback
//! (`fake_idp`): discovery, PKCE, client authentication, id_token validation,
//! key rotation, failures.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use meetinity_auth::clock::ManualClock;
use meetinity_auth::flow::FlowState;
use meetinity_auth::provider::{
    IdentityProvider, NoncePolicy, OidcProvider, OidcProviderConfig, ProviderIdentity,
};
use meetinity_auth::secret::SecretString;
use meetinity_auth::{Error, ErrorKind};
use serde_json::json;
use url::Url;

use crate::fake_idp::{
    ClientAuth, FakeIdp, FakeIdpOptions, FakeUser, IdTokenTamper, Signer, TokenRequestSeen,
};

const REDIRECT: &str = "https://app.example/auth/test/callback";

fn config(idp: &FakeIdp, nonce: NoncePolicy) -> OidcProviderConfig {
    OidcProviderConfig {
        nonce,
        http_timeout: Duration::from_secs(5),
        ..OidcProviderConfig::new(
            "test",
            idp.issuer(),
            idp.client_id(),
            SecretString::new(idp.client_secret()),
            REDIRECT,
        )
    }
}

fn provider(idp: &FakeIdp) -> OidcProvider {
    OidcProvider::new(config(idp, NoncePolicy::Required)).unwrap()
}

fn ada() -> FakeUser {
    FakeUser {
        subject: "ada-123".into(),
        email: Some("ada@example.com".into()),
        email_verified: true,
        name: Some("Ada Lovelace".into()),
        picture: Some("https://img.example/ada.png".into()),
        locale: Some("en-GB".into()),
    }
}

fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// One full login: begin, the user approves, complete.
async fn login(
    provider: &OidcProvider,
    idp: &FakeIdp,
    user: &FakeUser,
) -> Result<ProviderIdentity, Error> {
    let auth = provider.begin(REDIRECT).await?;
    let code = idp.authorize_user(&auth.url, user);
    let flow = FlowState::new(provider.name(), &auth, REDIRECT, Utc::now(), None);
    provider.complete(&code, &flow).await
}

async fn login_fails(provider: &OidcProvider, idp: &FakeIdp, kind: ErrorKind) -> Error {
    match login(provider, idp, &ada()).await {
        Ok(identity) => panic!("expected {kind:?}, the login succeeded: {identity:?}"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{e}");
            e
        }
    }
}

#[tokio::test]
async fn google_like_happy_path_uses_pkce_nonce_and_basic_auth() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let provider = provider(&idp);
    let auth = provider.begin(REDIRECT).await.unwrap();

    let q = query(&auth.url);
    assert!(auth
        .url
        .as_str()
        .starts_with(&format!("{}/authorize?", idp.issuer())));
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], idp.client_id());
    assert_eq!(q["redirect_uri"], REDIRECT);
    assert_eq!(q["state"], auth.state);
    assert_eq!(q["nonce"], auth.nonce);
    assert!(auth.state.len() >= 22, "state has >= 128 bits");
    assert_ne!(auth.state, auth.nonce);
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    for s in ["openid", "email", "profile"] {
        assert!(scopes.contains(&s), "{scopes:?}");
    }
    assert_eq!(scopes.iter().filter(|s| **s == "openid").count(), 1);
    assert_eq!(q["code_challenge_method"], "S256");
    let verifier = auth.pkce_verifier.clone().expect("a PKCE verifier");
    assert_eq!(
        q["code_challenge"],
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            <sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes())
        )
    );

    let code = idp.authorize_user(&auth.url, &ada());
    let flow = FlowState::new("test", &auth, REDIRECT, Utc::now(), None);
    let identity = provider.complete(&code, &flow).await.unwrap();
    assert_eq!(
        identity,
        ProviderIdentity {
            subject: "ada-123".into(),
            email: Some("ada@example.com".into()),
            email_verified: true,
            name: Some("Ada Lovelace".into()),
            picture: Some("https://img.example/ada.png".into()),
            locale: Some("en-GB".into()),
        }
    );
    assert_eq!(
        idp.last_token_request(),
        Some(TokenRequestSeen {
            client_auth: Some(ClientAuth::Basic),
            code_verifier: true,
            redirect_uri: Some(REDIRECT.into()),
        })
    );
    // The email was in the id_token: no userinfo call.
    assert_eq!(idp.hits("/userinfo"), 0);

    // The code is single use at the provider: a replay is a provider error.
    let replay = provider.complete(&code, &flow).await.unwrap_err();
    assert_eq!(replay.kind(), ErrorKind::ProviderError, "{replay}");

    // Discovery and JWKS are fetched once and cached.
    login(&provider, &idp, &ada()).await.unwrap();
    assert_eq!(idp.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(idp.hits("/jwks"), 1);
}

#[tokio::test]
async fn linkedin_like_happy_path_without_pkce_with_post_auth_and_no_nonce() {
    let idp = FakeIdp::start(FakeIdpOptions::linkedin_like()).await;
    let provider = OidcProvider::new(config(&idp, NoncePolicy::IfPresent)).unwrap();
    let auth = provider.begin(REDIRECT).await.unwrap();
    let q = query(&auth.url);
    assert!(!q.contains_key("code_challenge"), "{q:?}");
    assert!(!q.contains_key("code_challenge_method"));
    assert!(q.contains_key("nonce"));
    assert!(auth.pkce_verifier.is_none());

    let code = idp.authorize(&auth.url, "li-42", Some("grace@example.com"), true);
    let flow = FlowState::new("test", &auth, REDIRECT, Utc::now(), None);
    let identity = provider.complete(&code, &flow).await.unwrap();
    assert_eq!(identity.subject, "li-42");
    assert_eq!(identity.email.as_deref(), Some("grace@example.com"));
    // `email_verified` came as the string "true".
    assert!(identity.email_verified);
    assert_eq!(
        idp.last_token_request(),
        Some(TokenRequestSeen {
            client_auth: Some(ClientAuth::Post),
            code_verifier: false,
            redirect_uri: Some(REDIRECT.into()),
        })
    );

    // "false" as a string is false.
    let identity = login(
        &provider,
        &idp,
        &FakeUser::new("li-43", Some("h@example.com"), false),
    )
    .await
    .unwrap();
    assert!(!identity.email_verified);

    // A nonce, when present, must still match.
    idp.set_tamper(IdTokenTamper::claims(json!({"nonce": "someone-elses"})));
    login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;
}

#[tokio::test]
async fn nonce_mismatch_or_missing_is_rejected_when_required() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let provider = provider(&idp);
    login(&provider, &idp, &ada()).await.unwrap();

    idp.set_tamper(IdTokenTamper::claims(
        json!({"nonce": "not-the-flows-nonce"}),
    ));
    login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;

    idp.clear_tamper();
    idp.set_echo_nonce(false);
    login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;

    // The flow's nonce is what counts: an id_token echoing the request's
    // nonce does not validate against another flow.
    idp.set_echo_nonce(true);
    let first = provider.begin(REDIRECT).await.unwrap();
    let second = provider.begin(REDIRECT).await.unwrap();
    let code = idp.authorize_user(&first.url, &ada());
    let mut flow = FlowState::new("test", &first, REDIRECT, Utc::now(), None);
    flow.nonce = second.nonce.clone();
    let e = provider.complete(&code, &flow).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidIdToken, "{e}");
}

#[tokio::test]
async fn wrong_audience_or_authorized_party_is_rejected() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let provider = provider(&idp);

    for claims in [
        json!({"aud": "another-client", "azp": null}),
        json!({"aud": "another-client"}),
        json!({"aud": ["another-client", "third"], "azp": null}),
        // Several audiences need `azp` = this client.
        json!({"aud": [idp.client_id(), "another-client"], "azp": null}),
        json!({"aud": [idp.client_id(), "another-client"], "azp": "another-client"}),
        json!({"azp": "another-client"}),
        json!({"aud": null}),
    ] {
        idp.set_tamper(IdTokenTamper::claims(claims.clone()));
        let e = login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;
        assert!(!e.message().is_empty(), "{claims}");
    }

    // Several audiences are fine when this client is the authorized party.
    idp.set_tamper(IdTokenTamper::claims(
        json!({"aud": [idp.client_id(), "another-client"]}),
    ));
    login(&provider, &idp, &ada()).await.unwrap();
}

#[tokio::test]
async fn lookalike_issuer_is_rejected() {
    // Google-like (issuer without a path) and LinkedIn-like (`{origin}/oauth`).
    for (options, nonce) in [
        (FakeIdpOptions::google_like(), NoncePolicy::Required),
        (FakeIdpOptions::linkedin_like(), NoncePolicy::IfPresent),
    ] {
        let idp = FakeIdp::start(options).await;
        let provider = OidcProvider::new(config(&idp, nonce)).unwrap();
        login(&provider, &idp, &ada()).await.unwrap();
        let issuer = idp.issuer();
        for iss in [
            format!("{issuer}-evil"),
            format!("{issuer}/evil"),
            format!("{issuer}/"),
            issuer.replacen("http://", "https://", 1),
            issuer.replacen("127.0.0.1", "localhost", 1),
            issuer.to_uppercase(),
            format!("http://evil.example/{issuer}"),
        ] {
            idp.set_tamper(IdTokenTamper::claims(json!({ "iss": iss })));
            let e = login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;
            // Some lookalikes are not even URLs (`:port-evil`).
            assert!(
                e.message().contains("issuer") || e.message().contains("malformed"),
                "{iss}: {e}"
            );
        }
        idp.set_tamper(IdTokenTamper::claims(json!({ "iss": null })));
        login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;
    }
}

#[tokio::test]
async fn bad_signature_alg_none_and_hmac_with_the_public_key_are_rejected() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let provider = provider(&idp);
    login(&provider, &idp, &ada()).await.unwrap();

    // Signed by a key that is not the provider's, under the provider's kid.
    idp.set_tamper(IdTokenTamper::signer(Signer::Unpublished));
    let e = login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;
    assert!(e.message().contains("signature"), "{e}");

    // `alg: none`, with and without a kid.
    idp.set_tamper(IdTokenTamper::signer(Signer::AlgNone));
    login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;
    idp.set_tamper(IdTokenTamper::signer(Signer::AlgNone).with_header(json!({"kid": null})));
    login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;

    // HS256 keyed with the provider's public key.
    idp.set_tamper(IdTokenTamper::signer(Signer::HmacWithPublicKey));
    let e = login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;
    assert!(e.message().contains("algorithm"), "{e}");

    // A valid signature with the header's alg changed.
    idp.set_tamper(IdTokenTamper::signer(Signer::Active).with_header(json!({"alg": "RS512"})));
    login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;

    // Honest tokens still pass.
    idp.clear_tamper();
    login(&provider, &idp, &ada()).await.unwrap();
}

#[tokio::test]
async fn keys_named_in_jku_or_jwk_headers_are_never_used() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let attacker = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let provider = provider(&idp);
    login(&provider, &idp, &ada()).await.unwrap();

    let attacker_jwk = json!({"kty": "RSA", "kid": "evil", "n": "AQAB", "e": "AQAB"});
    idp.set_tamper(
        IdTokenTamper::signer(Signer::Unpublished).with_header(json!({
            "kid": "evil",
            "jku": attacker.url("/jwks"),
            "x5u": attacker.url("/cert.pem"),
            "jwk": attacker_jwk,
        })),
    );
    login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;
    assert_eq!(attacker.hits("/jwks"), 0);
    assert_eq!(attacker.hits("/cert.pem"), 0);
}

#[tokio::test]
async fn provider_key_rotation_just_works() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let provider = provider(&idp);
    login(&provider, &idp, &ada()).await.unwrap();
    assert_eq!(idp.hits("/jwks"), 1);

    // The provider rotates: the next id_token has a kid the cached JWKS lacks,
    // which triggers an immediate refetch.
    let old_kid = idp.active_kid();
    idp.rotate_keys();
    assert_ne!(idp.active_kid(), old_kid);
    login(&provider, &idp, &ada()).await.unwrap();
    assert_eq!(idp.hits("/jwks"), 2);

    // The new key is cached now.
    login(&provider, &idp, &ada()).await.unwrap();
    assert_eq!(idp.hits("/jwks"), 2);
}

#[tokio::test]
async fn unknown_kid_refetches_at_most_every_30_s_then_rotation_works() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let clock = ManualClock::new();
    let provider = provider(&idp).with_clock(Arc::new(clock.clone()));
    login(&provider, &idp, &ada()).await.unwrap();
    assert_eq!(idp.hits("/jwks"), 1);

    // An unknown kid: refetched at once, still unknown, rejected.
    idp.set_tamper(
        IdTokenTamper::signer(Signer::Unpublished).with_header(json!({"kid": "unknown-1"})),
    );
    login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;
    assert_eq!(idp.hits("/jwks"), 2);

    // More unknown kids within 30 s: no refetch (no amplification).
    idp.set_tamper(
        IdTokenTamper::signer(Signer::Unpublished).with_header(json!({"kid": "unknown-2"})),
    );
    login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;
    assert_eq!(idp.hits("/jwks"), 2);

    // The provider rotates right then: a login within the window cannot see
    // the new key yet...
    idp.clear_tamper();
    idp.rotate_keys();
    login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;
    assert_eq!(idp.hits("/jwks"), 2);

    // ...and once the window has passed, the next login refetches and works.
    clock.advance(Duration::from_secs(31));
    login(&provider, &idp, &ada()).await.unwrap();
    assert_eq!(idp.hits("/jwks"), 3);
}

#[tokio::test]
async fn expired_or_future_id_tokens_are_rejected_within_a_small_leeway() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let provider = provider(&idp);
    let now = Utc::now().timestamp();

    for claims in [
        json!({"exp": now - 120, "iat": now - 3600}),
        json!({"exp": now - 3600, "iat": now - 7200}),
        json!({"iat": now + 600}),
        json!({"exp": null}),
    ] {
        idp.set_tamper(IdTokenTamper::claims(claims.clone()));
        login_fails(&provider, &idp, ErrorKind::InvalidIdToken).await;
    }

    // Within the leeway (clock skew): accepted.
    for claims in [
        json!({"exp": now - 20, "iat": now - 3600}),
        json!({"iat": now + 20}),
    ] {
        idp.set_tamper(IdTokenTamper::claims(claims.clone()));
        login(&provider, &idp, &ada())
            .await
            .unwrap_or_else(|e| panic!("{claims}: {e}"));
    }

    // The provider's clock is what the injected clock says.
    idp.clear_tamper();
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(2 * 3600));
    let late = provider_for_clock(&idp, clock);
    login_fails(&late, &idp, ErrorKind::InvalidIdToken).await;
}

fn provider_for_clock(idp: &FakeIdp, clock: ManualClock) -> OidcProvider {
    OidcProvider::new(config(idp, NoncePolicy::Required))
        .unwrap()
        .with_clock(Arc::new(clock))
}

#[tokio::test]
async fn token_endpoint_errors_are_provider_errors() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let provider = provider(&idp);

    idp.set_token_error(Some("invalid_grant"));
    let e = login_fails(&provider, &idp, ErrorKind::ProviderError).await;
    assert!(e.message().contains("invalid_grant"), "{e}");
    idp.set_token_error(None);

    // A wrong PKCE verifier.
    let auth = provider.begin(REDIRECT).await.unwrap();
    let code = idp.authorize_user(&auth.url, &ada());
    let mut flow = FlowState::new("test", &auth, REDIRECT, Utc::now(), None);
    flow.pkce_verifier = Some(meetinity_auth::secret::random_token(32));
    let e = provider.complete(&code, &flow).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProviderError, "{e}");

    // Another redirect_uri than the authorization request's.
    let auth = provider.begin(REDIRECT).await.unwrap();
    let code = idp.authorize_user(&auth.url, &ada());
    let flow = FlowState::new("test", &auth, "https://app.example/other", Utc::now(), None);
    let e = provider.complete(&code, &flow).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProviderError, "{e}");

    // The client authenticates the way discovery says: a provider that only
    // takes client_secret_post refuses Basic, so follow discovery.
    idp.set_client_auth(ClientAuth::Post);
    let fresh = OidcProvider::new(config(&idp, NoncePolicy::Required)).unwrap();
    login(&fresh, &idp, &ada()).await.unwrap();
    assert_eq!(
        idp.last_token_request().unwrap().client_auth,
        Some(ClientAuth::Post)
    );
    // The first provider discovered Basic: the provider now refuses it.
    let e = login_fails(&provider, &idp, ErrorKind::ProviderError).await;
    assert!(e.message().contains("invalid_client"), "{e}");

    // A flow from another provider is refused before any request.
    let auth = fresh.begin(REDIRECT).await.unwrap();
    let flow = FlowState::new("google", &auth, REDIRECT, Utc::now(), None);
    let e = fresh.complete("code", &flow).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
}

#[tokio::test]
async fn missing_email_gives_no_email_and_userinfo_fills_it_when_it_can() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let provider = provider(&idp);

    // No email anywhere: identity without email (the service answers 422).
    let identity = login(&provider, &idp, &FakeUser::new("no-mail", None, false))
        .await
        .unwrap();
    assert_eq!(identity.subject, "no-mail");
    assert_eq!(identity.email, None);
    assert!(!identity.email_verified);
    assert_eq!(idp.hits("/userinfo"), 1);

    // The id_token lacks the email, userinfo has it.
    idp.set_tamper(IdTokenTamper::claims(
        json!({"email": null, "email_verified": null, "name": null}),
    ));
    let identity = login(&provider, &idp, &ada()).await.unwrap();
    assert_eq!(identity.email.as_deref(), Some("ada@example.com"));
    assert!(identity.email_verified);
    assert_eq!(identity.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(idp.hits("/userinfo"), 2);

    // A userinfo answer for another subject is refused.
    idp.set_tamper(IdTokenTamper::claims(
        json!({"email": null, "sub": "someone-else"}),
    ));
    let e = login(&provider, &idp, &ada()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProviderError, "{e}");
}

#[tokio::test]
async fn plain_http_issuers_and_endpoints_are_refused_off_loopback() {
    for issuer in [
        "http://accounts.google.com",
        "http://192.168.1.10:8080",
        "http://localhost.example",
    ] {
        let config =
            OidcProviderConfig::google("id", SecretString::new("s"), REDIRECT).with_issuer(issuer);
        let e = OidcProvider::new(config).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{issuer}");
    }

    // A loopback issuer whose discovery points a token endpoint off loopback
    // over plain http.
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    idp.set_discovery_overrides(json!({"token_endpoint": "http://10.1.2.3/token"}));
    let e = provider(&idp).begin(REDIRECT).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

#[tokio::test]
async fn unreachable_discovery_is_unavailable_fast_and_retried() {
    // A closed port.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = OidcProviderConfig::new(
        "test",
        format!("http://127.0.0.1:{port}"),
        "id",
        SecretString::new("s"),
        REDIRECT,
    );
    // Construction does no I/O.
    let provider = OidcProvider::new(config).unwrap();
    let started = Instant::now();
    let e = provider.begin(REDIRECT).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A failing discovery is not cached: the next use retries.
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    idp.set_discovery_failure(true);
    let provider = provider_for_clock(&idp, ManualClock::new());
    let e = provider.begin(REDIRECT).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    idp.set_discovery_failure(false);
    login(&provider, &idp, &ada()).await.unwrap();
    assert_eq!(idp.hits("/.well-known/openid-configuration"), 2);

    // A discovery document for another issuer is refused.
    let other = FakeIdp::start(FakeIdpOptions::google_like()).await;
    other.set_discovery_overrides(json!({"issuer": idp.issuer()}));
    let e = provider_for_clock(&other, ManualClock::new())
        .begin(REDIRECT)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

#[tokio::test]
async fn a_silent_provider_times_out() {
    // Accepts connections, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let config = OidcProviderConfig {
        http_timeout: Duration::from_millis(300),
        ..OidcProviderConfig::new(
            "test",
            format!("http://{addr}"),
            "id",
            SecretString::new("s"),
            REDIRECT,
        )
    };
    let provider = OidcProvider::new(config).unwrap();
    let started = Instant::now();
    let e = provider.begin(REDIRECT).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    hold.abort();
}

#[tokio::test]
async fn redirects_from_the_provider_are_not_followed() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let elsewhere = FakeIdp::start(FakeIdpOptions::google_like()).await;
    idp.set_discovery_redirect(Some(&elsewhere.url("/.well-known/openid-configuration")));
    let e = provider(&idp).begin(REDIRECT).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(idp.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(elsewhere.hits("/.well-known/openid-configuration"), 0);
}

#[tokio::test]
async fn pkce_follows_discovery_per_provider() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    idp.set_pkce_supported(false);
    let provider = provider(&idp);
    let auth = provider.begin(REDIRECT).await.unwrap();
    assert!(!query(&auth.url).contains_key("code_challenge"));
    assert!(auth.pkce_verifier.is_none());
    login(&provider, &idp, &ada()).await.unwrap();
    assert!(!idp.last_token_request().unwrap().code_verifier);
}

#[tokio::test]
async fn the_fake_idp_authorize_endpoint_redirects_back_with_code_state_and_iss() {
    let idp = FakeIdp::start(FakeIdpOptions::google_like()).await;
    let provider = provider(&idp);
    let auth = provider.begin(REDIRECT).await.unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    idp.set_signed_in_user(Some(ada()));
    let response = client.get(auth.url.clone()).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let location = Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(REDIRECT));
    let q = query(&location);
    assert_eq!(q["state"], auth.state);
    assert_eq!(q["iss"], idp.issuer());
    assert_eq!(q["iss"], provider.issuer());
    let flow = FlowState::new("test", &auth, REDIRECT, Utc::now(), None);
    let identity = provider.complete(&q["code"], &flow).await.unwrap();
    assert_eq!(identity.subject, "ada-123");

    idp.set_signed_in_user(None);
    let response = client.get(auth.url.clone()).send().await.unwrap();
    let location = Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(query(&location)["error"], "access_denied");
    assert_eq!(
        idp.error_response(&auth.url, "access_denied"),
        location,
        "error_response builds the same redirect"
    );
}
