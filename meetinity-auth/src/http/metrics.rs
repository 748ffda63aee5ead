//! `GET /metrics`: the Prometheus text format (version 0.0.4), built with
//! `prometheus-client`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `meetinity_http_requests_total` | counter | `method`, `route` (the template, `unmatched` for 404s), `status` |
//! | `meetinity_http_request_duration_seconds` | histogram | `method`, `route` |
//! | `meetinity_logins_total` | counter | `method` (`password`, `register`, `oidc`), `provider`, `outcome` (`success` or the error `reason`) |
//! | `meetinity_refresh_reuse_detected_total` | counter | |
//! | `meetinity_rate_limited_total` | counter | `route` |
//! | `meetinity_user_cache_hits_total`, `..._misses_total`, `..._errors_total` | counter | |
//! | `meetinity_db_pool_connections` | gauge | `state` (`in_use`, `idle`) |
//!
//! Label values come from fixed sets (route templates, configured provider
//! names, error reasons), so a client cannot grow the number of series.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::Method;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::cache::CacheStats;

/// The `Content-Type` of `GET /metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Latency buckets, in seconds: 1 ms to 10 s (Argon2id hashing sits near 50-100 ms).
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    method: &'static str,
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    method: &'static str,
    provider: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

type HistogramFamily = Family<LatencyLabels, LatencyHistogram, fn() -> LatencyHistogram>;

/// A latency histogram updated with atomics only: `prometheus-client`'s own
/// takes a mutex on every observation, which both cores contended for on
/// every request (benches/README.md).
#[derive(Clone, Debug, Default)]
pub(crate) struct LatencyHistogram(Arc<HistogramCells>);

#[derive(Debug, Default)]
struct HistogramCells {
    /// Per bucket of [`LATENCY_BUCKETS`], then `+Inf` (not cumulative).
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    pub(crate) fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        let cells = &self.0;
        cells.buckets[i].fetch_add(1, Ordering::Relaxed);
        cells.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        cells.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let cells = &self.0;
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(&cells.buckets)
            .map(|(le, n)| (le, n.load(Ordering::Relaxed)))
            .collect();
        // Read the buckets first: `count` then never falls behind them.
        let count = cells.count.load(Ordering::Relaxed);
        let sum = Duration::from_nanos(cells.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The statuses whose request counters are kept at hand (others take the
/// family's lookup).
const COMMON_STATUSES: [u16; 20] = [
    200, 201, 202, 204, 304, 400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 429, 500, 502, 503,
    504,
];

/// The methods of [`method_label`], in a fixed order.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];

/// The handles of one (method, route): resolved on first use, then updated
/// without a lookup, a hash or a lock.
#[derive(Debug, Default)]
struct Slot {
    latency: OnceLock<LatencyHistogram>,
    requests: [OnceLock<Counter>; COMMON_STATUSES.len()],
}

/// The counters and histograms the HTTP layer records.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    logins: Family<LoginLabels, Counter>,
    refresh_reuse: Counter,
    rate_limited: Family<RouteLabels, Counter>,
    /// By route (in [`super::ROUTES`] order, then `unmatched`) and method.
    slots: Vec<Slot>,
}

/// Values read at scrape time from the parts of the service.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snapshot {
    /// Hits and misses of the user cache, when known.
    pub cache: Option<CacheStats>,
    /// Connections in use and idle in the database pool, when known.
    pub pool: Option<(u64, u64)>,
    /// Mails that failed to send, when known.
    pub mail_failures: Option<u64>,
}

fn latency_histogram() -> LatencyHistogram {
    LatencyHistogram::default()
}

/// The method as a label value: the standard ones, else `other` (a client
/// must not be able to create series).
pub(crate) fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "meetinity_http_requests",
            "HTTP requests by method, route template and status",
            requests.clone(),
        );
        let latency = HistogramFamily::new_with_constructor(latency_histogram);
        registry.register(
            "meetinity_http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route template",
            latency.clone(),
        );
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "meetinity_logins",
            "Sign-in attempts by method, provider and outcome (success or the error reason)",
            logins.clone(),
        );
        let refresh_reuse = Counter::default();
        registry.register(
            "meetinity_refresh_reuse_detected",
            "Rotated refresh tokens presented again (the session was revoked)",
            refresh_reuse.clone(),
        );
        let rate_limited = Family::<RouteLabels, Counter>::default();
        registry.register(
            "meetinity_rate_limited",
            "Requests refused with 429 by the per-IP rate limit, by route template",
            rate_limited.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            logins,
            refresh_reuse,
            rate_limited,
            slots: (0..(super::ROUTES.len() + 1) * METHODS.len())
                .map(|_| Slot::default())
                .collect(),
        }
    }

    /// Records one answered request: `route` is its index in
    /// [`super::ROUTES`] (`None`: unmatched), `method` a [`method_label`].
    pub(crate) fn request(
        &self,
        method: &'static str,
        route: Option<usize>,
        status: u16,
        elapsed: Duration,
    ) {
        let r = route
            .filter(|&i| i < super::ROUTES.len())
            .unwrap_or(super::ROUTES.len());
        let route = super::ROUTES.get(r).map_or("unmatched", |t| t.0);
        let m = METHODS
            .iter()
            .position(|&x| x == method)
            .unwrap_or(METHODS.len() - 1);
        let Some(slot) = self.slots.get(r * METHODS.len() + m) else {
            return;
        };
        let labels = RequestLabels {
            method,
            route,
            status,
        };
        match COMMON_STATUSES.iter().position(|&s| s == status) {
            Some(i) => slot.requests[i]
                .get_or_init(|| self.requests.get_or_create(&labels).clone())
                .inc(),
            None => self.requests.get_or_create(&labels).inc(),
        };
        slot.latency
            .get_or_init(|| {
                self.latency
                    .get_or_create(&LatencyLabels { method, route })
                    .clone()
            })
            .observe(elapsed);
    }

    /// Records a sign-in attempt.
    pub(crate) fn login(&self, method: &'static str, provider: &str, outcome: &'static str) {
        self.logins
            .get_or_create(&LoginLabels {
                method,
                provider: provider.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Records a detected refresh-token reuse.
    pub(crate) fn refresh_reuse(&self) {
        self.refresh_reuse.inc();
    }

    /// Records a request refused by the rate limit.
    pub(crate) fn rate_limited(&self, route: &'static str) {
        self.rate_limited
            .get_or_create(&RouteLabels { route })
            .inc();
    }

    /// The whole text exposition, with the values of `snapshot`.
    pub(crate) fn render(&self, snapshot: Snapshot) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(snapshot));
        prometheus_client::encoding::prometheus_text::encode(&mut out, &scrape)?;
        if !out.ends_with('\n') {
            out.write_char('\n')?;
        }
        Ok(out)
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(stats) = self.cache {
            for (name, help, value) in [
                (
                    "meetinity_user_cache_hits",
                    "User profile reads answered by the cache.",
                    stats.hits,
                ),
                (
                    "meetinity_user_cache_misses",
                    "User profile reads that went to the database.",
                    stats.misses,
                ),
                (
                    "meetinity_user_cache_errors",
                    "User cache operations that failed (the database answered).",
                    stats.errors,
                ),
            ] {
                let counter = ConstCounter::new(value);
                counter.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    MetricType::Counter,
                )?)?;
            }
        }
        if let Some(failures) = self.mail_failures {
            ConstCounter::new(failures).encode(encoder.encode_descriptor(
                "meetinity_mail_failures",
                "Mails that could not be sent (the request still succeeded).",
                None,
                MetricType::Counter,
            )?)?;
        }
        if let Some((in_use, idle)) = self.pool {
            let mut family = encoder.encode_descriptor(
                "meetinity_db_pool_connections",
                "Database pool connections by state.",
                None,
                MetricType::Gauge,
            )?;
            for (state, value) in [("in_use", in_use), ("idle", idle)] {
                let labels = [("state", state)];
                ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
