//! Per-peer request limit of the admin API: `admin.requests_per_peer_per_second`
//! with bursts of `admin.request_burst_per_peer`, per client IP address.
//!
//! The middleware wraps the whole router ([`super::server`] applies it
//! where the router becomes a service), so it runs before the body limit,
//! the concurrency limit and the guard: a client guessing tokens is
//! throttled like any other, and a request over the limit is answered
//! `429 Too Many Requests` with `Retry-After` (whole seconds, at least 1)
//! without a token lookup or a database write.
//!
//! A refusal must cost nothing, or a flood would turn into work: it writes
//! **no audit row** (unlike the guard's refusals), only counts
//! `wardgate_admin_refusals_total{reason="rate_limited"}`, and logs one
//! warning per peer per [`NOTICE_INTERVAL`]. Memory is bounded: at most
//! [`MAX_PEERS`] addresses have a bucket, as for the edge's refusals
//! ([`crate::edge::peer_refusals::MAX_PEERS`]); further new addresses are
//! refused until a tracked one has refilled.
//!
//! The key is the IP address without the port, IPv4-mapped IPv6 addresses
//! folded to IPv4, so reconnecting from a new port does not refill it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use wardgate_protocol::token_bucket::{RequestLimit, Verdict};

use super::error::ApiError;
use super::metrics::AdminMetrics;
use crate::config::AdminConfig;

/// Most client addresses with a bucket at once.
pub const MAX_PEERS: usize = crate::edge::peer_refusals::MAX_PEERS;

/// At most one log line per peer over its limit in this interval.
pub const NOTICE_INTERVAL: Duration = Duration::from_secs(60);

/// The `reason` label of refusals over the limit in
/// `wardgate_admin_refusals_total`.
pub const REASON: &str = "rate_limited";

/// The admin API's per-peer limit and where its refusals are counted.
#[derive(Debug)]
pub struct PeerLimit {
    limit: RequestLimit<IpAddr>,
    rate: u32,
    burst: u32,
    metrics: AdminMetrics,
}

impl PeerLimit {
    /// The limit of the `[admin]` section, counting refusals in `metrics`.
    #[must_use]
    pub fn new(config: &AdminConfig, metrics: AdminMetrics) -> Self {
        let (rate, burst) = (
            config.requests_per_peer_per_second,
            config.request_burst_per_peer,
        );
        Self {
            limit: RequestLimit::new(f64::from(rate), burst, MAX_PEERS, NOTICE_INTERVAL),
            rate,
            burst,
            metrics,
        }
    }

    /// The answer to a request from `peer` now: `None` to serve it, else
    /// the `429`.
    fn check(&self, peer: IpAddr) -> Option<Response> {
        let Verdict::Refused(refusal) = self.limit.check(&peer, Instant::now()) else {
            return None;
        };
        self.metrics.refusal(REASON);
        let retry = refusal.retry_after_secs();
        if refusal.notify {
            tracing::warn!(
                %peer,
                limit = self.rate,
                burst = self.burst,
                "admin API client over its request limit; answered 429, further refusals \
                 from it in the next {}s are only counted in \
                 wardgate_admin_refusals_total{{reason=\"{REASON}\"}}",
                NOTICE_INTERVAL.as_secs()
            );
        }
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            REASON,
            format!(
                "{peer} sent more than {} requests a second (bursts of {}), the admin API's \
                 limit per client address; retry after {retry} s. If this is a legitimate \
                 client (several consoles behind one address), an administrator can raise \
                 admin.requests_per_peer_per_second and admin.request_burst_per_peer",
                self.rate, self.burst
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry));
        Some(response)
    }
}

/// Middleware body: serve the request if its peer is under the limit,
/// else answer `429` with `Retry-After`. The peer address comes from
/// `ConnectInfo`, which the server always sets; a request without one is
/// a wiring fault and refused (500) rather than served unlimited.
pub async fn limit(State(limit): State<Arc<PeerLimit>>, req: Request, next: Next) -> Response {
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() else {
        return ApiError::internal(&"request without a peer address (admin API wiring)")
            .into_response();
    };
    match limit.check(peer.ip().to_canonical()) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn over_the_limit_is_429_with_retry_after_and_counted() {
        let metrics = AdminMetrics::register(&Metrics::new());
        let config = AdminConfig {
            requests_per_peer_per_second: 1,
            request_burst_per_peer: 2,
            ..AdminConfig::default()
        };
        let limit = PeerLimit::new(&config, metrics.clone());
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(limit.check(peer).is_none());
        assert!(limit.check(peer).is_none());
        let refused = limit.check(peer).expect("third request of a burst of 2");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = refused.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(retry, 1);
        assert_eq!(metrics.refusal_count(REASON), 1);
        // Another address is not affected.
        assert!(limit.check("127.0.0.2".parse().unwrap()).is_none());
        assert_eq!(metrics.refusal_count(REASON), 1);
    }
}
