//! Per-client-IP rate limits on the unauthenticated `/auth/*` entry points.
//!
//! A fixed one-minute window per (route, client) counted with
//! [`Cache::incr`]: with Redis as the cache every instance shares the
//! counters. IPv6 clients are counted per /64 (one host usually owns a whole
//! /64). When the cache fails the request goes through (the login throttle
//! of the service still guards accounts) and a warning is logged.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::error::{Error, ErrorKind, Result};

/// The window of `RATE_LIMIT_PER_MINUTE`.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The route templates that are rate limited: every entry point that accepts
/// a secret or creates state for an unauthenticated caller.
pub const LIMITED_ROUTES: &[&str] = &[
    "/auth/register",
    "/auth/login",
    "/auth/refresh",
    "/auth/password/forgot",
    "/auth/password/reset",
    "/auth/email/verify",
    "/auth/{provider}",
    "/auth/{provider}/callback",
];

/// Counts requests per client and route in a [`Cache`].
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    cache: Arc<dyn Cache>,
    per_minute: u64,
}

/// The part of the address that identifies a client: the whole IPv4
/// address, the /64 prefix of an IPv6 one (IPv4-mapped addresses as IPv4).
fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

impl RateLimiter {
    /// `per_minute` requests per client and route; `None` when 0 (disabled).
    pub(crate) fn new(cache: Arc<dyn Cache>, per_minute: u64) -> Option<Self> {
        (per_minute > 0).then_some(Self { cache, per_minute })
    }

    /// Counts one request of `ip` on `route`; past the limit, a 429 with the
    /// time left in the window as `Retry-After`.
    pub(crate) async fn check(&self, route: &str, ip: IpAddr) -> Result<()> {
        let key = format!("ratelimit:{route}:{}", client_key(ip));
        match self.cache.incr(&key, WINDOW).await {
            Ok(n) if n > self.per_minute => {
                let left = match self.cache.ttl(&key).await {
                    Ok(Some(t)) if !t.is_zero() => t.min(WINDOW),
                    _ => WINDOW,
                };
                // Round up: a client that waits `Retry-After` seconds gets through.
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                Err(Error::new(ErrorKind::RateLimited)
                    .with_retry_after(Duration::from_secs(secs.max(1))))
            }
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, cache = self.cache.name(), "rate limit not applied: the cache failed");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1"
            .parse()
            .unwrap_or(IpAddr::from([0; 4]));
        let b: IpAddr = "2001:db8:1:2:bbbb::9"
            .parse()
            .unwrap_or(IpAddr::from([0; 4]));
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(client_key(mapped), "192.0.2.7");
    }
}
