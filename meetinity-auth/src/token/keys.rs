//! Key sets: the key that signs access tokens, the keys that verify them
//! (the current one plus older ones during a rotation), and the JWKS
//! document that publishes the public ones.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rand::RngCore;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};

/// The smallest HMAC secret accepted for HS256 (RFC 7518 §3.2: a key of the
/// same size as the hash output, 256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// The smallest RSA modulus accepted, in bits (RFC 7518 §3.3).
pub const MIN_RSA_BITS: usize = 2048;

/// The keys of one signing algorithm: one signs, several verify.
///
/// Implementations are cheap to query: [`KeySet::decoding_key`] runs on
/// every verification.
pub trait KeySet: fmt::Debug + Send + Sync + 'static {
    /// The one algorithm every key of the set uses; tokens with any other
    /// `alg` are rejected.
    fn algorithm(&self) -> Algorithm;

    /// The key id and key that sign new tokens.
    fn signing_key(&self) -> (&str, &EncodingKey);

    /// The verification key with this `kid`, if the set has one.
    fn decoding_key(&self, kid: &str) -> Option<&DecodingKey>;

    /// The public keys as a JWK Set (`{"keys": [...]}`), current key first.
    /// Symmetric (HS256) keys are never published: the set is then empty.
    fn jwks(&self) -> serde_json::Value;
}

/// One verification key.
struct VerificationKey {
    kid: String,
    key: DecodingKey,
    /// The public JWK, for asymmetric keys.
    jwk: Option<serde_json::Value>,
}

/// A fixed [`KeySet`], built at start from a secret or PEM keys.
///
/// ```
/// use meetinity_auth::token::{KeySet, StaticKeySet};
/// let keys = StaticKeySet::generate_hs256();
/// assert_eq!(keys.algorithm(), jsonwebtoken::Algorithm::HS256);
/// assert_eq!(keys.jwks()["keys"].as_array().map(Vec::len), Some(0));
/// assert!(StaticKeySet::hs256(b"too short").is_err());
/// ```
///
/// Rotation: sign with the new key and keep the old one for verification
/// until the tokens it signed have expired.
///
/// ```
/// use meetinity_auth::token::{generate_pem, KeySet, StaticKeySet};
/// use jsonwebtoken::Algorithm;
/// let old = generate_pem(Algorithm::EdDSA).unwrap();
/// let new = generate_pem(Algorithm::EdDSA).unwrap();
/// let keys = StaticKeySet::from_pem(new.as_bytes(), Algorithm::EdDSA)
///     .and_then(|k| k.add_verification_pem(old.as_bytes()))
///     .unwrap();
/// assert_eq!(keys.jwks()["keys"].as_array().map(Vec::len), Some(2));
/// ```
pub struct StaticKeySet {
    alg: Algorithm,
    signing_kid: String,
    signing: EncodingKey,
    /// The current key first, then older ones.
    verification: Vec<VerificationKey>,
}

impl fmt::Debug for StaticKeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.verification.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("StaticKeySet")
            .field("alg", &self.alg)
            .field("signing_kid", &self.signing_kid)
            .field("verification_kids", &kids)
            .finish_non_exhaustive()
    }
}

fn config(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::msg(ErrorKind::Config, message)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The key id of an HS256 secret: a domain-separated SHA-256 of it,
/// truncated. It names the key without revealing it.
fn hs256_kid(secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"meetinity-auth/hs256-kid/v1\0");
    h.update(secret);
    format!("hs256-{}", b64(&h.finalize()[..12]))
}

/// The public half of an asymmetric key.
enum PublicParts {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256 { x: Vec<u8>, y: Vec<u8> },
    Ed25519 { x: [u8; 32] },
}

impl PublicParts {
    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): the key id.
    fn thumbprint(&self) -> String {
        // Required members only, in lexicographic order, no whitespace.
        let canonical = match self {
            Self::Rsa { n, e } => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n)),
            Self::P256 { x, y } => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                b64(x),
                b64(y)
            ),
            Self::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(x)),
        };
        b64(&Sha256::digest(canonical.as_bytes()))
    }

    fn jwk(&self, alg: Algorithm, kid: &str) -> serde_json::Value {
        let alg = alg_name(alg);
        match self {
            Self::Rsa { n, e } => serde_json::json!({
                "kty": "RSA", "kid": kid, "alg": alg, "use": "sig", "n": b64(n), "e": b64(e),
            }),
            Self::P256 { x, y } => serde_json::json!({
                "kty": "EC", "kid": kid, "alg": alg, "use": "sig", "crv": "P-256",
                "x": b64(x), "y": b64(y),
            }),
            Self::Ed25519 { x } => serde_json::json!({
                "kty": "OKP", "kid": kid, "alg": alg, "use": "sig", "crv": "Ed25519", "x": b64(x),
            }),
        }
    }

    fn decoding_key(&self) -> DecodingKey {
        match self {
            Self::Rsa { n, e } => DecodingKey::from_rsa_raw_components(n, e),
            Self::P256 { x, y } => {
                // SEC1 uncompressed point, what the ES256 verifier reads.
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(0x04);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                DecodingKey::from_ec_der(&point)
            }
            Self::Ed25519 { x } => DecodingKey::from_ed_der(x),
        }
    }

    fn into_verification(self, alg: Algorithm) -> VerificationKey {
        let kid = self.thumbprint();
        VerificationKey {
            key: self.decoding_key(),
            jwk: Some(self.jwk(alg, &kid)),
            kid,
        }
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

fn pem_str(pem: &[u8]) -> Result<&str> {
    std::str::from_utf8(pem).map_err(|_| config("the PEM key is not valid UTF-8 text"))
}

fn rsa_public(key: &rsa::RsaPublicKey) -> Result<PublicParts> {
    let bits = key.size() * 8;
    if bits < MIN_RSA_BITS {
        return Err(config(format!(
            "RSA keys must have at least {MIN_RSA_BITS} bits (this one has {bits})"
        )));
    }
    Ok(PublicParts::Rsa {
        n: key.n().to_bytes_be(),
        e: key.e().to_bytes_be(),
    })
}

fn p256_public(key: &p256::PublicKey) -> Result<PublicParts> {
    use p256::elliptic_curve::sec1::{Coordinates, ToEncodedPoint};
    let point = key.to_encoded_point(false);
    match point.coordinates() {
        Coordinates::Uncompressed { x, y } => Ok(PublicParts::P256 {
            x: x.to_vec(),
            y: y.to_vec(),
        }),
        _ => Err(config("unexpected P-256 point encoding")),
    }
}

/// Parses a private PEM of `alg`: the signing key and its public half.
fn parse_private(pem: &[u8], alg: Algorithm) -> Result<(EncodingKey, PublicParts)> {
    let text = pem_str(pem)?;
    match alg {
        Algorithm::RS256 => {
            let key = rsa::RsaPrivateKey::from_pkcs8_pem(text)
                .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(text))
                .map_err(|_| config("not an RSA private key in PKCS#8 or PKCS#1 PEM"))?;
            let public = rsa_public(&key.to_public_key())?;
            let der = key
                .to_pkcs1_der()
                .map_err(|e| config("cannot encode the RSA key").with_source(e.to_string()))?;
            Ok((EncodingKey::from_rsa_der(der.as_bytes()), public))
        }
        Algorithm::ES256 => {
            let key = p256::SecretKey::from_pkcs8_pem(text)
                .or_else(|_| p256::SecretKey::from_sec1_pem(text))
                .map_err(|_| config("not a P-256 private key in PKCS#8 (or SEC1) PEM"))?;
            let public = p256_public(&key.public_key())?;
            let der = key
                .to_pkcs8_der()
                .map_err(|e| config("cannot encode the P-256 key").with_source(e.to_string()))?;
            Ok((EncodingKey::from_ec_der(der.as_bytes()), public))
        }
        Algorithm::EdDSA => {
            let key = ed25519_dalek::SigningKey::from_pkcs8_pem(text)
                .map_err(|_| config("not an Ed25519 private key in PKCS#8 PEM"))?;
            let public = PublicParts::Ed25519 {
                x: key.verifying_key().to_bytes(),
            };
            let der = key
                .to_pkcs8_der()
                .map_err(|e| config("cannot encode the Ed25519 key").with_source(e.to_string()))?;
            Ok((EncodingKey::from_ed_der(der.as_bytes()), public))
        }
        Algorithm::HS256 => Err(config("HS256 takes a secret, not a PEM key")),
        other => Err(config(format!(
            "unsupported algorithm {other:?}: use HS256, RS256, ES256 or EdDSA"
        ))),
    }
}

/// Parses a public PEM (SPKI, or PKCS#1 for RSA) or a private PEM of `alg`:
/// the public half only.
fn parse_public(pem: &[u8], alg: Algorithm) -> Result<PublicParts> {
    if let Ok((_, public)) = parse_private(pem, alg) {
        return Ok(public);
    }
    let text = pem_str(pem)?;
    match alg {
        Algorithm::RS256 => {
            let key = rsa::RsaPublicKey::from_public_key_pem(text)
                .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(text))
                .map_err(|_| config("not an RSA key in PEM"))?;
            rsa_public(&key)
        }
        Algorithm::ES256 => {
            let key = p256::PublicKey::from_public_key_pem(text)
                .map_err(|_| config("not a P-256 key in PEM"))?;
            p256_public(&key)
        }
        Algorithm::EdDSA => {
            let key = ed25519_dalek::VerifyingKey::from_public_key_pem(text)
                .map_err(|_| config("not an Ed25519 key in PEM"))?;
            Ok(PublicParts::Ed25519 { x: key.to_bytes() })
        }
        Algorithm::HS256 => Err(config("HS256 takes a secret, not a PEM key")),
        other => Err(config(format!(
            "unsupported algorithm {other:?}: use HS256, RS256, ES256 or EdDSA"
        ))),
    }
}

impl StaticKeySet {
    /// An HS256 key set from a raw secret of at least
    /// [`MIN_HS256_SECRET_BYTES`] bytes ([`ErrorKind::Config`] otherwise).
    pub fn hs256(secret: &[u8]) -> Result<Self> {
        check_hs256_secret(secret)?;
        let kid = hs256_kid(secret);
        Ok(Self {
            alg: Algorithm::HS256,
            signing_kid: kid.clone(),
            signing: EncodingKey::from_secret(secret),
            verification: vec![VerificationKey {
                kid,
                key: DecodingKey::from_secret(secret),
                jwk: None,
            }],
        })
    }

    /// An HS256 key set with a fresh random 256-bit secret (tokens do not
    /// survive a restart).
    pub fn generate_hs256() -> Self {
        let mut secret = [0u8; MIN_HS256_SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let kid = hs256_kid(&secret);
        Self {
            alg: Algorithm::HS256,
            signing_kid: kid.clone(),
            signing: EncodingKey::from_secret(&secret),
            verification: vec![VerificationKey {
                kid,
                key: DecodingKey::from_secret(&secret),
                jwk: None,
            }],
        }
    }

    /// A key set signing with a private PEM key: RS256 (PKCS#8 or PKCS#1,
    /// at least 2048 bits), ES256 (PKCS#8, or SEC1) or EdDSA (Ed25519,
    /// PKCS#8). The key id is the RFC 7638 thumbprint of the public key.
    pub fn from_pem(pem: &[u8], alg: Algorithm) -> Result<Self> {
        let (signing, public) = parse_private(pem, alg)?;
        let verification = public.into_verification(alg);
        Ok(Self {
            alg,
            signing_kid: verification.kid.clone(),
            signing,
            verification: vec![verification],
        })
    }

    /// Adds a verification key under `kid` (builder style). It is not
    /// published in the JWKS. [`ErrorKind::Config`] if the key is of
    /// another algorithm family or the `kid` is taken.
    pub fn with_verification_key(
        mut self,
        kid: impl Into<String>,
        key: DecodingKey,
    ) -> Result<Self> {
        if key.family() != self.alg.family() {
            return Err(config(
                "the verification key is of another algorithm family",
            ));
        }
        self.push(VerificationKey {
            kid: kid.into(),
            key,
            jwk: None,
        })?;
        Ok(self)
    }

    /// Keeps accepting tokens signed with an older HS256 secret (builder
    /// style). [`ErrorKind::Config`] if the set is not HS256 or the secret is
    /// too short.
    pub fn add_previous_hs256(mut self, secret: &[u8]) -> Result<Self> {
        if self.alg != Algorithm::HS256 {
            return Err(config(
                "an HS256 secret cannot verify tokens of this key set",
            ));
        }
        check_hs256_secret(secret)?;
        self.push(VerificationKey {
            kid: hs256_kid(secret),
            key: DecodingKey::from_secret(secret),
            jwk: None,
        })?;
        Ok(self)
    }

    /// Keeps accepting tokens signed with an older key of the same
    /// algorithm, given as a public PEM (SPKI, or PKCS#1 for RSA) or the old
    /// private PEM (builder style). The key is published in the JWKS.
    pub fn add_verification_pem(mut self, pem: &[u8]) -> Result<Self> {
        let public = parse_public(pem, self.alg)?;
        self.push(public.into_verification(self.alg))?;
        Ok(self)
    }

    /// The ids of the verification keys, current first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.verification.iter().map(|k| k.kid.as_str())
    }

    fn push(&mut self, key: VerificationKey) -> Result<()> {
        if self.verification.iter().any(|k| k.kid == key.kid) {
            return Err(config(format!("duplicate verification key id {}", key.kid)));
        }
        self.verification.push(key);
        Ok(())
    }
}

fn check_hs256_secret(secret: &[u8]) -> Result<()> {
    if secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(config(format!(
            "the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes (JWT_SECRET)"
        )));
    }
    Ok(())
}

impl KeySet for StaticKeySet {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }

    fn signing_key(&self) -> (&str, &EncodingKey) {
        (&self.signing_kid, &self.signing)
    }

    fn decoding_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.verification
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| &k.key)
    }

    fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .verification
            .iter()
            .filter_map(|k| k.jwk.clone())
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// A new private key as PKCS#8 PEM: RS256 (RSA 2048 bits), ES256 (P-256) or
/// EdDSA (Ed25519). For the `keys generate` command.
pub fn generate_pem(alg: Algorithm) -> Result<String> {
    let mut rng = rand::rngs::OsRng;
    let pem = match alg {
        Algorithm::RS256 => rsa::RsaPrivateKey::new(&mut rng, MIN_RSA_BITS)
            .map_err(|e| Error::internal(e.to_string()))?
            .to_pkcs8_pem(LineEnding::LF),
        Algorithm::ES256 => p256::SecretKey::random(&mut rng).to_pkcs8_pem(LineEnding::LF),
        Algorithm::EdDSA => {
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            ed25519_dalek::SigningKey::from_bytes(&seed).to_pkcs8_pem(LineEnding::LF)
        }
        Algorithm::HS256 => return Err(config("HS256 takes a secret, not a PEM key")),
        other => {
            return Err(config(format!(
                "unsupported algorithm {other:?}: use RS256, ES256 or EdDSA"
            )))
        }
    };
    pem.map(|p| p.to_string())
        .map_err(|e| Error::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn rfc7638_thumbprint_example() {
        // The RSA key of RFC 7638 §3.1.
        let n = URL_SAFE_NO_PAD
            .decode(
                "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            )
            .unwrap();
        let e = URL_SAFE_NO_PAD.decode("AQAB").unwrap();
        assert_eq!(
            PublicParts::Rsa { n, e }.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn hs256_kid_does_not_contain_the_secret() {
        let secret = [7u8; 32];
        let kid = hs256_kid(&secret);
        assert!(!kid.contains(&b64(&secret)));
        assert_eq!(kid, hs256_kid(&secret), "deterministic across instances");
    }

    #[test]
    fn generated_pems_load() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA] {
            let pem = generate_pem(alg).unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            let keys = StaticKeySet::from_pem(pem.as_bytes(), alg).unwrap();
            assert_eq!(keys.jwks()["keys"][0]["kid"], keys.signing_key().0);
        }
        assert_eq!(
            generate_pem(Algorithm::HS256).unwrap_err().kind(),
            ErrorKind::Config
        );
    }
}
