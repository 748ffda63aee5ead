//! Configuration parsing on arbitrary values: `Config::from_vars` never
//! panics, and an accepted configuration keeps its invariants.
//!
//! Input: pairs of (one byte: which variable, bytes up to the next NUL: its
//! value, lossily UTF-8). The two variables that name files to read
//! (`JWT_PRIVATE_KEY_FILE`, `JWT_VERIFY_KEY_FILES`) are left out: reading
//! arbitrary paths (a FIFO, /dev/zero) is not parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meetinity_auth::Config;

const VARS: &[&str] = &[
    "APP_PORT",
    "APP_HOST",
    "CORS_ORIGINS",
    "DATABASE_URL",
    "DB_MAX_CONNECTIONS",
    "DB_ACQUIRE_TIMEOUT_MS",
    "DB_STATEMENT_TIMEOUT_MS",
    "REDIS_URL",
    "REDIS_TIMEOUT_MS",
    "REDIS_CACHE_TTL",
    "REDIS_PREFIX",
    "ALLOWED_REDIRECTS",
    "JWT_SECRET",
    "JWT_PREVIOUS_SECRETS",
    "JWT_ALGO",
    "JWT_TTL_MIN",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_LEEWAY_SECS",
    "REFRESH_TTL_DAYS",
    "REFRESH_GRACE_SECS",
    "ADMIN_EMAILS",
    "SMTP_URL",
    "SMTP_TIMEOUT_SECS",
    "MAIL_FROM",
    "PUBLIC_BASE_URL",
    "MAX_BODY_BYTES",
    "REQUEST_TIMEOUT_SECS",
    "HTTP_TIMEOUT_SECS",
    "HASH_CONCURRENCY",
    "LOGIN_MAX_FAILURES",
    "LOGIN_IP_MAX_FAILURES",
    "LOGIN_FAILURE_WINDOW_SECS",
    "ACCOUNT_RETENTION_DAYS",
    "AUDIT_RETENTION_DAYS",
    "TRUSTED_PROXIES",
    "RATE_LIMIT_PER_MINUTE",
    "GOOGLE_CLIENT_ID",
    "GOOGLE_CLIENT_SECRET",
    "GOOGLE_REDIRECT_URI",
    "GOOGLE_ISSUER_URL",
    "LINKEDIN_CLIENT_ID",
    "LINKEDIN_CLIENT_SECRET",
    "LINKEDIN_REDIRECT_URI",
    "LINKEDIN_ISSUER_URL",
    "OIDC_PROVIDERS",
    "RUST_LOG",
];

fuzz_target!(|data: &[u8]| {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut rest = data;
    while let Some((&which, tail)) = rest.split_first() {
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let name = VARS[which as usize % VARS.len()];
        vars.push((
            name.to_owned(),
            String::from_utf8_lossy(&tail[..end]).into_owned(),
        ));
        rest = tail.get(end + 1..).unwrap_or_default();
    }
    let others: Vec<String> = vars
        .iter()
        .filter(|(k, _)| k != "JWT_SECRET")
        .map(|(_, v)| v.clone())
        .collect();
    match Config::from_vars(vars) {
        Ok(c) => {
            assert!(c.port >= 1);
            assert!(!c.cors_origins.is_empty());
            assert!(c.max_body_bytes >= 64);
            assert!(!c.request_timeout.is_zero());
            assert!(c.jwt_secret.as_ref().is_none_or(|s| s.expose().len() >= 32));
            // Debug never shows a secret.
            let debug = format!("{c:?}");
            if let Some(s) = &c.jwt_secret {
                let elsewhere = others.iter().any(|v| v.contains(s.expose()));
                assert!(
                    elsewhere || !debug.contains(s.expose()),
                    "JWT_SECRET in Debug"
                );
            }
        }
        Err(e) => {
            assert_eq!(e.kind(), meetinity_auth::ErrorKind::Config);
            assert!(!e.message().is_empty());
        }
    }
});
