//! Secrets as newtypes: `Debug` prints `[redacted]`, there is no derived
//! `PartialEq`, and comparisons go through hashes or constant-time equality.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The secret itself. Call sites that expose it are easy to audit.
            pub fn expose(&self) -> &str {
                &self.0
            }

            /// Whether the secret equals `other`, in constant time.
            pub fn ct_eq(&self, other: &str) -> bool {
                ct_eq(self.0.as_bytes(), other.as_bytes())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }
    };
}

secret_type!(
    /// A user's password, as typed.
    Password
);
secret_type!(
    /// An opaque refresh token.
    RefreshToken
);
secret_type!(
    /// A single-use token from a mail (email verification, password reset).
    OneTimeToken
);
secret_type!(
    /// Any other secret value: client secrets, HMAC keys, connection URLs with passwords.
    SecretString
);
secret_type!(
    /// An OAuth authorization code.
    AuthorizationCode
);
secret_type!(
    /// A PKCE code verifier.
    PkceVerifier
);

/// Constant-time byte comparison (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// `n` random bytes from the OS-seeded CSPRNG, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The SHA-256 of a high-entropy token, base64url: how tokens are stored at rest.
/// (Tokens are 256-bit random, so a fast hash is safe; passwords use Argon2id.)
pub fn hash_token(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let p = Password::new("hunter2hunter2");
        assert_eq!(format!("{p:?}"), "Password([redacted])");
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn random_tokens_are_256_bit_and_distinct() {
        let a = random_token(32);
        let b = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_ne!(hash_token(&a), a);
        assert!(ct_eq(hash_token(&a).as_bytes(), hash_token(&a).as_bytes()));
    }
}
