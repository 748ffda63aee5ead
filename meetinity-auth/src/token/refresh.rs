//! Refresh-token helpers.
//!
//! Refresh tokens are opaque 256-bit random strings, stored only as hashes
//! (see [`crate::secret::hash_token`]). When a token is rotated, the server
//! may keep its successor for a short grace window, so that a client whose
//! response was lost can retry with the old token and receive the same
//! successor. The successor is then stored *sealed* under a key derived
//! from the old token: only a holder of the old token can open it, and the
//! database never holds a usable token.
//!
//! Construction (v1): `k = SHA-512("meetinity-auth/refresh-successor/v1\0" || old)`
//! is the HMAC-SHA-256 key; a random 128-bit nonce; the keystream is
//! `HMAC(k, "enc" || nonce || counter)`, XORed with the successor; the tag is
//! `HMAC(k, "mac" || nonce || ciphertext)` truncated to 128 bits and checked
//! in constant time. Output: `v1.` + base64url(nonce || ciphertext || tag).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256, Sha512};

use crate::secret::{random_token, RefreshToken};

type HmacSha256 = Hmac<Sha256>;

const DOMAIN: &[u8] = b"meetinity-auth/refresh-successor/v1\0";
const PREFIX: &str = "v1.";
const NONCE_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// Successors longer than this are not sealed tokens of ours.
const MAX_SEALED_LEN: usize = 4096;

/// A new refresh token: 256 random bits, base64url (43 characters).
pub fn new_refresh_token() -> RefreshToken {
    RefreshToken::new(random_token(32))
}

fn keyed(old: &RefreshToken) -> HmacSha256 {
    let mut h = Sha512::new();
    h.update(DOMAIN);
    h.update(old.expose().as_bytes());
    // A 64-byte key: exactly SHA-256's block size, so `new` is infallible.
    <HmacSha256 as Mac>::new(&h.finalize())
}

fn apply_keystream(key: &HmacSha256, nonce: &[u8], data: &mut [u8]) {
    for (counter, chunk) in (0u32..).zip(data.chunks_mut(32)) {
        let mut mac = key.clone();
        mac.update(b"enc");
        mac.update(nonce);
        mac.update(&counter.to_be_bytes());
        let block = mac.finalize().into_bytes();
        for (b, k) in chunk.iter_mut().zip(block.iter()) {
            *b ^= k;
        }
    }
}

fn tag(key: &HmacSha256, nonce: &[u8], ciphertext: &[u8]) -> HmacSha256 {
    let mut mac = key.clone();
    mac.update(b"mac");
    mac.update(nonce);
    mac.update(ciphertext);
    mac
}

/// Seals `new` (the successor) under a key derived from `old`, for storage
/// next to the old token's hash during the refresh grace window.
pub fn seal_successor(old: &RefreshToken, new: &RefreshToken) -> String {
    let key = keyed(old);
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let successor = new.expose().as_bytes();
    let mut out = Vec::with_capacity(NONCE_LEN + successor.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(successor);
    apply_keystream(&key, &nonce, &mut out[NONCE_LEN..]);
    let mac = tag(&key, &nonce, &out[NONCE_LEN..]).finalize().into_bytes();
    out.extend_from_slice(&mac[..TAG_LEN]);
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
}

/// Opens a value made by [`seal_successor`]: the successor if `old` is the
/// token it was sealed with and the value is intact, `None` otherwise.
pub fn open_successor(old: &RefreshToken, sealed: &str) -> Option<RefreshToken> {
    if sealed.len() > MAX_SEALED_LEN {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(sealed.strip_prefix(PREFIX)?).ok()?;
    if raw.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, rest) = raw.split_at(NONCE_LEN);
    let (ciphertext, given_tag) = rest.split_at(rest.len() - TAG_LEN);
    let key = keyed(old);
    // Constant-time comparison of the truncated tag.
    tag(&key, nonce, ciphertext)
        .verify_truncated_left(given_tag)
        .ok()?;
    let mut plain = ciphertext.to_vec();
    apply_keystream(&key, nonce, &mut plain);
    String::from_utf8(plain).ok().map(RefreshToken::new)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn refresh_tokens_are_256_bit() {
        let a = new_refresh_token();
        let b = new_refresh_token();
        assert_eq!(a.expose().len(), 43);
        assert!(!b.ct_eq(a.expose()));
    }

    #[test]
    fn only_the_old_token_opens_the_successor() {
        let old = new_refresh_token();
        let new = new_refresh_token();
        let sealed = seal_successor(&old, &new);
        assert!(!sealed.contains(new.expose()));
        assert!(open_successor(&old, &sealed).unwrap().ct_eq(new.expose()));
        assert!(open_successor(&new_refresh_token(), &sealed).is_none());
        // Two seals of the same successor differ (random nonce).
        assert_ne!(sealed, seal_successor(&old, &new));
    }

    #[test]
    fn tampered_or_malformed_values_do_not_open() {
        let old = new_refresh_token();
        let sealed = seal_successor(&old, &new_refresh_token());
        let mut bytes = sealed.clone().into_bytes();
        let i = bytes.len() - 20;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(open_successor(&old, &tampered).is_none());
        for bad in [
            "",
            "v1.",
            "v1.AAAA",
            "v2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "v1.!!",
        ] {
            assert!(open_successor(&old, bad).is_none(), "{bad}");
        }
        assert!(open_successor(&old, &"A".repeat(10_000)).is_none());
    }

    #[test]
    fn long_successors_round_trip() {
        let old = new_refresh_token();
        let new = RefreshToken::new("x".repeat(200));
        let sealed = seal_successor(&old, &new);
        assert_eq!(
            open_successor(&old, &sealed).unwrap().expose(),
            new.expose()
        );
    }
}
