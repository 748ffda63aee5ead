//! Password hashing (Argon2id) and strength rules.
//!
//! Hashing is deliberately slow, so it runs on Tokio's blocking thread pool,
//! never on the async workers, and a semaphore bounds how many hashes run at
//! once: a flood of logins queues up instead of stalling token verification.
//!
//! ```
//! use meetinity_auth::password::check_strength;
//! use meetinity_auth::secret::Password;
//! assert!(check_strength(&Password::new("correct horse battery staple"), "a@example.com").is_ok());
//! let err = check_strength(&Password::new("short"), "a@example.com").unwrap_err();
//! assert_eq!(err.reason(), "weak_password");
//! ```

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use argon2::password_hash::{
    Output, ParamsString, PasswordHash, PasswordVerifier as _, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;
use tokio::sync::Semaphore;

use crate::error::{Error, ErrorKind, Result};
use crate::secret::Password;

/// Argon2id memory cost in KiB (OWASP minimum: 19 MiB).
pub const ARGON2_M_COST_KIB: u32 = 19_456;
/// Argon2id iterations (OWASP minimum with 19 MiB: 2).
pub const ARGON2_T_COST: u32 = 2;
/// Argon2id parallelism.
pub const ARGON2_P_COST: u32 = 1;

/// The fewest characters a password may have.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// The most bytes a password may have.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A PHC string with the parameters above, a random salt and a random
/// output (no known password matches it): verifying against it costs the
/// same as verifying against a real hash.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$7c2KKu2QktllfbaWgSFfxw$6JZi5sOBWtazBwTrx/ayN5X+TOP5Bc8agF0XChpMcXA";

/// The bundled list of common breached passwords (see the header of
/// `data/common-passwords.txt` for its origin and license).
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
});

/// Hashes and verifies passwords with Argon2id (m=19456 KiB, t=2, p=1) on
/// the blocking thread pool, at most `max_concurrent` at a time.
///
/// The 19 MiB of working memory of each hash are reused (at most
/// `max_concurrent` buffers) while hashes keep coming, and given back to the
/// OS when the last running one ends: allocating them afresh each time left
/// glibc holding a copy per thread that ever hashed (RSS 360 MB after a
/// login flood), and keeping them forever held 19 MiB per permit
/// (benches/README.md).
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    running: Arc<AtomicUsize>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("algorithm", &"argon2id")
            .field("m_cost_kib", &ARGON2_M_COST_KIB)
            .field("t_cost", &ARGON2_T_COST)
            .field("p_cost", &ARGON2_P_COST)
            .field("max_concurrent", &self.max_concurrent)
            .finish()
    }
}

fn params() -> Params {
    // The constants are valid Argon2 parameters; the fallback is never taken.
    Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
        .unwrap_or_else(|_| Params::default())
}

/// The capacity of a working-memory buffer, in 1 KiB blocks: above glibc's
/// largest mmap threshold (32 MiB), so that each buffer is a mapping of its
/// own that freeing unmaps. Only the blocks a hash uses are ever touched (and
/// count in RSS).
const BUFFER_CAPACITY_BLOCKS: usize = 33 * 1024;

fn new_buffer() -> Vec<Block> {
    let blocks = params().block_count();
    let mut memory = Vec::with_capacity(BUFFER_CAPACITY_BLOCKS.max(blocks));
    memory.resize(blocks, Block::default());
    memory
}

impl PasswordHasher {
    /// A hasher running at most `max_concurrent` hashes at once (at least 1).
    pub fn new(max_concurrent: usize) -> Self {
        let max_concurrent = max_concurrent.max(1);
        Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params()),
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            memory: Arc::new(Mutex::new(Vec::new())),
            running: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many hashes or verifications are running now.
    pub fn in_flight(&self) -> usize {
        self.max_concurrent - self.permits.available_permits()
    }

    /// Runs `f` on the blocking pool once a permit is free. The permit is
    /// held until `f` finishes, even if the caller stops waiting.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Argon2<'static>, &mut [Block]) -> T + Send + 'static,
    ) -> Result<T> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(Error::internal)?;
        let argon2 = self.argon2.clone();
        let pool = Arc::clone(&self.memory);
        let running = Arc::clone(&self.running);
        tokio::task::spawn_blocking(move || {
            // One buffer per permit at most. The pool is a plain list: a
            // poisoned lock leaves nothing inconsistent.
            let lock = || pool.lock().unwrap_or_else(PoisonError::into_inner);
            running.fetch_add(1, Ordering::SeqCst);
            let taken = lock().pop();
            let mut memory = taken.unwrap_or_else(new_buffer);
            let out = f(&argon2, &mut memory);
            let mut free = lock();
            // The last hash out frees every buffer (a caller still waiting
            // for a permit allocates a new one).
            if running.fetch_sub(1, Ordering::SeqCst) == 1 {
                free.clear();
            } else {
                free.push(memory);
            }
            drop(free);
            drop(permit);
            out
        })
        .await
        .map_err(Error::internal)
    }

    /// The PHC string of `pw` (`$argon2id$v=19$m=19456,t=2,p=1$...`) with a
    /// fresh random salt.
    pub async fn hash(&self, pw: &Password) -> Result<String> {
        let pw = pw.clone();
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        self.run(move |argon2, memory| {
            let salt_b64 =
                SaltString::encode_b64(&salt).map_err(|e| Error::internal(e.to_string()))?;
            let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
            argon2
                .hash_password_into_with_memory(pw.expose().as_bytes(), &salt, &mut out, memory)
                .map_err(|e| Error::internal(e.to_string()))?;
            // The PHC string `Argon2::hash_password` would give.
            let phc = PasswordHash {
                algorithm: argon2::ARGON2ID_IDENT,
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&params())
                    .map_err(|e| Error::internal(e.to_string()))?,
                salt: Some(salt_b64.as_salt()),
                hash: Some(Output::new(&out).map_err(|e| Error::internal(e.to_string()))?),
            };
            Ok(phc.to_string())
        })
        .await?
    }

    /// Whether `pw` matches `hash`. With `hash: None` (unknown account) it
    /// verifies against a fixed dummy hash, so that the answer takes the
    /// same time, and returns `false`. A stored hash that does not parse is
    /// an [`ErrorKind::Internal`] error.
    pub async fn verify(&self, pw: &Password, hash: Option<&str>) -> Result<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or(DUMMY_HASH).to_owned();
        let pw = pw.clone();
        let current = !self.needs_rehash(&hash);
        self.run(move |argon2, memory| {
            let parsed = PasswordHash::new(&hash)
                .map_err(|e| Error::internal(format!("stored password hash: {e}")))?;
            let ok = match (current, &parsed.salt, &parsed.hash) {
                // Today's parameters: recompute in the reused memory.
                (true, Some(salt), Some(expected)) if parsed.version == Some(0x13) => {
                    let mut salt_buf = [0u8; 64];
                    let salt = salt
                        .decode_b64(&mut salt_buf)
                        .map_err(|e| Error::internal(format!("stored password hash: {e}")))?;
                    let mut out = vec![0u8; expected.len()];
                    argon2
                        .hash_password_into_with_memory(
                            pw.expose().as_bytes(),
                            salt,
                            &mut out,
                            memory,
                        )
                        .is_ok()
                        && bool::from(subtle::ConstantTimeEq::ct_eq(
                            out.as_slice(),
                            expected.as_bytes(),
                        ))
                }
                // Older parameters: the library's own verification.
                _ => argon2
                    .verify_password(pw.expose().as_bytes(), &parsed)
                    .is_ok(),
            };
            Ok(known && ok)
        })
        .await?
    }

    /// Whether `hash` was made with other parameters than the current ones
    /// (or does not parse): rehash on the next successful login.
    pub fn needs_rehash(&self, hash: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(hash) else {
            return true;
        };
        let current = params();
        parsed.algorithm != argon2::ARGON2ID_IDENT
            || Params::try_from(&parsed).map_or(true, |p| {
                p.m_cost() != current.m_cost()
                    || p.t_cost() != current.t_cost()
                    || p.p_cost() != current.p_cost()
            })
    }
}

/// Whether `pw` (compared lowercased) is in the bundled list of common
/// breached passwords.
pub fn is_common_password(pw: &str) -> bool {
    COMMON_PASSWORDS.contains(pw.to_lowercase().as_str())
}

/// Checks the password rules: at least [`MIN_PASSWORD_CHARS`] characters, at
/// most [`MAX_PASSWORD_BYTES`] bytes, not the email address or its local
/// part (case-insensitive), not a common breached password.
///
/// Fails with [`ErrorKind::WeakPassword`] and details
/// `{"password": "<every broken rule, in words>"}`.
pub fn check_strength(pw: &Password, email: &str) -> Result<()> {
    let pw = pw.expose();
    let mut problems: Vec<&'static str> = Vec::new();
    if pw.chars().count() < MIN_PASSWORD_CHARS {
        problems.push("Use at least 10 characters.");
    }
    if pw.len() > MAX_PASSWORD_BYTES {
        problems.push("Use at most 1024 bytes.");
    } else {
        let lower = pw.to_lowercase();
        let email = email.trim().to_lowercase();
        let local = email.rsplit_once('@').map_or(email.as_str(), |(l, _)| l);
        if !email.is_empty() && (lower == email || lower == local) {
            problems.push("Do not use your email address.");
        }
        if COMMON_PASSWORDS.contains(lower.as_str()) {
            problems.push("This password is in lists of breached passwords; choose another.");
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::new(ErrorKind::WeakPassword)
        .with_details(serde_json::json!({ "password": problems.join(" ") })))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn bundled_list_is_large_and_lowercase() {
        assert!(
            COMMON_PASSWORDS.len() >= 10_000,
            "{}",
            COMMON_PASSWORDS.len()
        );
        assert!(COMMON_PASSWORDS.iter().all(|p| *p == p.to_lowercase()));
        assert!(is_common_password("PassWord"));
    }

    #[test]
    fn dummy_hash_has_current_params() {
        let hasher = PasswordHasher::new(1);
        assert!(!hasher.needs_rehash(DUMMY_HASH));
        assert!(
            hasher.needs_rehash("$argon2id$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
        );
        assert!(hasher.needs_rehash("not a hash"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn working_memory_is_freed_when_idle() {
        let hasher = PasswordHasher::new(2);
        let pw = Password::new("a long test passphrase 7");
        let (a, b, c) = tokio::join!(hasher.hash(&pw), hasher.hash(&pw), hasher.hash(&pw));
        let hash = a.unwrap();
        assert!(b.is_ok() && c.is_ok());
        // Idle again: no 19 MiB buffer is kept.
        assert_eq!(hasher.memory.lock().unwrap().len(), 0);
        assert!(hasher.verify(&pw, Some(&hash)).await.unwrap());
        assert!(!hasher
            .verify(&Password::new("another passphrase 8"), Some(&hash))
            .await
            .unwrap());
        assert_eq!(hasher.memory.lock().unwrap().len(), 0);
        let buffer = new_buffer();
        assert_eq!(buffer.len(), params().block_count());
        assert!(buffer.capacity() * std::mem::size_of::<Block>() > 32 << 20);
    }
}
