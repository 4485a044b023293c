//! Per-peer request limit: `limits.requests_per_peer_per_second` with
//! bursts of `limits.request_burst_per_peer`, per client IP address.
//!
//! [`crate::server`] wraps the whole router in [`limit`] and puts each
//! connection's peer address on its requests (`ConnectInfo`), so the limit
//! runs before authentication, the body limit and every handler: a client
//! over it is answered `429 Too Many Requests` with `Retry-After` (whole
//! seconds, at least 1) and the usual JSON error, without a token lookup,
//! a database read or an audit row. A flood costs one lock per request,
//! the `wardgate_ota_refusals_total{code="rate_limited"}` count and one
//! warning per peer per [`NOTICE_INTERVAL`]. At most [`MAX_PEERS`]
//! addresses have a bucket; further new addresses are refused until a
//! tracked one has refilled.
//!
//! Who sends what: a gateway makes a few requests per sync round
//! (assignments, results, the TUF metadata it refreshes, one image
//! download per target for the whole ward: devices download from the
//! gateway's own image server, never from here), so its load does not
//! grow with the ward's devices; the defaults leave a wide margin over
//! the back-to-back rounds of a wave finishing.
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

use crate::config::LimitsConfig;
use crate::http::ApiError;
use crate::metrics::Metrics;

/// Most client addresses with a bucket at once.
pub const MAX_PEERS: usize = 4096;

/// At most one log line per peer over its limit in this interval.
pub const NOTICE_INTERVAL: Duration = Duration::from_secs(60);

/// The stable error code (and `code` label of `wardgate_ota_refusals_total`).
pub const CODE: &str = "rate_limited";

/// The server's per-peer limit and where its refusals are counted.
#[derive(Debug)]
pub struct PeerLimit {
    limit: RequestLimit<IpAddr>,
    rate: u32,
    burst: u32,
    metrics: Arc<Metrics>,
}

impl PeerLimit {
    /// The limit of the `[limits]` section, counting refusals in `metrics`.
    #[must_use]
    pub fn new(limits: &LimitsConfig, metrics: Arc<Metrics>) -> Self {
        let (rate, burst) = (
            limits.requests_per_peer_per_second,
            limits.request_burst_per_peer,
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
        self.metrics.refused(CODE);
        let retry = refusal.retry_after_secs();
        if refusal.notify {
            tracing::warn!(
                %peer,
                limit = self.rate,
                burst = self.burst,
                "client over its request limit; answered 429, further refusals from it in \
                 the next {}s are only counted in wardgate_ota_refusals_total{{code=\"{CODE}\"}}",
                NOTICE_INTERVAL.as_secs()
            );
        }
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            CODE,
            format!(
                "{peer} sent more than {} requests a second (bursts of {}), the limit per \
                 client address; retry after {retry} s. If this is a legitimate client (several \
                 gateways behind one address), the operator can raise \
                 limits.requests_per_peer_per_second and limits.request_burst_per_peer",
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
/// else answer `429` with `Retry-After`. The accept loop always sets the
/// peer address; a request without one is a wiring fault and refused
/// (500) rather than served unlimited.
pub async fn limit(State(limit): State<Arc<PeerLimit>>, req: Request, next: Next) -> Response {
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() else {
        return ApiError::internal(&"request without a peer address (accept loop wiring)")
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

    #[test]
    fn over_the_limit_is_429_with_retry_after_and_counted() {
        let metrics = Arc::new(Metrics::new());
        let limits = LimitsConfig {
            requests_per_peer_per_second: 1,
            request_burst_per_peer: 2,
            ..LimitsConfig::default()
        };
        let limit = PeerLimit::new(&limits, Arc::clone(&metrics));
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
        assert!(
            metrics
                .render()
                .contains("wardgate_ota_refusals_total{code=\"rate_limited\"} 1"),
            "{}",
            metrics.render()
        );
        assert!(limit.check("127.0.0.2".parse().unwrap()).is_none());
    }
}
