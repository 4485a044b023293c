//! The image server for devices: HTTPS with mutual TLS on its own
//! device-side listener (`ota.image_listen`), serving `GET /images/<sha256>`
//! from the ward's image cache.
//!
//! Who may download what:
//!
//! - The TLS handshake demands a client certificate of the ward device CA
//!   (`edge.ca_cert`), as the edge does; a client without one never gets an
//!   HTTP response. The device id comes from the certificate, and the
//!   registry decides as at the edge ([`check_connect`]): enrolled, not
//!   revoked, the pinned fingerprint if one is pinned. A refused device gets
//!   `403` on every request.
//! - A device gets only an image it holds an open offer for (offered,
//!   downloading or installed in a campaign for that SHA-256); anything else
//!   is `403` and an audit row.
//!
//! HTTP: `Content-Length`, a strong `ETag` (the SHA-256), `If-None-Match`
//! (`304`), single-range `Range` (`206` with `Content-Range`, `416` with
//! `Content-Range: bytes */<len>` beyond the end) and `If-Range` (a
//! different ETag serves the whole image), so an interrupted download
//! resumes across restarts of either side. Multiple ranges and unparsable
//! `Range` headers get the whole image, as RFC 9110 allows.
//!
//! Bounds: at most `ota.image_max_connections` connections (more are closed
//! at once, counted) and `ota.image_max_downloads` bodies in flight (more get
//! `503` with `Retry-After`; counted, not audited: it is back-pressure, not a
//! refusal of the device). Bytes sent are counted in
//! `wardgate_ota_image_bytes_served_total`; download progress is passed to
//! the rollout ([`ImageProgress`]) so a stalled download is noticed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wardgate_protocol::{ByteRange, DeviceId};

use crate::audit::{AuditEvent, AuditLog, Outcome};
use crate::edge::policy::check_connect;
use crate::edge::tls::PeerIdentity;
use crate::ota::device_state::DeviceStates;
use crate::ota::rollout_metrics::RolloutMetrics;
use crate::registry::Registry;

/// Read buffer of an image body (large chunks keep TLS records full).
pub const CHUNK: usize = 256 * 1024;

/// Capacity of the progress channel; notes beyond it are dropped (the next
/// one carries the same news).
pub const PROGRESS_QUEUE: usize = 256;

/// How often a running download reports progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Where verified images are: the ward's image cache.
pub trait ImageSource: Send + Sync + 'static {
    /// The file of a complete, verified image with this SHA-256 (lowercase
    /// hex), if the cache holds one.
    fn image_path(&self, sha256: &str) -> Option<PathBuf>;
}

/// A device received bytes of an image (for the rollout's timeouts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageProgress {
    /// The device.
    pub device: DeviceId,
    /// The image.
    pub sha256: String,
}

/// Settings of the image server.
#[derive(Debug, Clone)]
pub struct ImageServerSettings {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Bodies in flight at once.
    pub max_downloads: usize,
    /// Connections at once.
    pub max_connections: usize,
    /// `Retry-After` of a `503`.
    pub retry_after: Duration,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
}

/// What went wrong starting the image server.
#[derive(Debug, thiserror::Error)]
pub enum ImageServerError {
    /// The listener could not be bound.
    #[error(
        "cannot listen on {addr} (ota.image_listen): {source}; pick a free device-side address"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// What the image server needs from the rest of the gateway.
#[derive(Clone)]
pub struct ImageServerDeps {
    /// The verified images.
    pub images: Arc<dyn ImageSource>,
    /// Who is enrolled.
    pub registry: Registry,
    /// Who holds which offer.
    pub states: DeviceStates,
    /// Refusals are recorded here.
    pub audit: AuditLog,
    /// Counters.
    pub metrics: RolloutMetrics,
    /// Download progress for the rollout.
    pub progress: mpsc::Sender<ImageProgress>,
}

impl std::fmt::Debug for ImageServerDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageServerDeps").finish_non_exhaustive()
    }
}

/// A running image server.
#[derive(Debug, Clone)]
pub struct ImageServerHandle {
    /// The bound address.
    pub addr: SocketAddr,
}

struct Shared {
    deps: ImageServerDeps,
    downloads: Arc<Semaphore>,
    retry_after: Duration,
}

impl Shared {
    /// Counts one response or refused connection in
    /// `wardgate_ota_image_requests_total{outcome}`.
    fn count(&self, outcome: &str) {
        self.deps.metrics.image_requests.inc(outcome);
    }
}

/// Bind and serve until `shutdown`; the accept loop and every connection
/// run in `tasks`.
///
/// # Errors
/// [`ImageServerError::Bind`] if the address cannot be bound.
pub async fn start(
    settings: &ImageServerSettings,
    tls: Arc<rustls::ServerConfig>,
    deps: ImageServerDeps,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> Result<ImageServerHandle, ImageServerError> {
    let listener =
        TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ImageServerError::Bind {
                addr: settings.listen,
                source,
            })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ImageServerError::Bind {
            addr: settings.listen,
            source,
        })?;
    let shared = Arc::new(Shared {
        deps,
        downloads: Arc::new(Semaphore::new(settings.max_downloads)),
        retry_after: settings.retry_after,
    });
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let acceptor = TlsAcceptor::from(tls);
    let handshake_timeout = settings.handshake_timeout;
    let tracker = tasks.clone();
    tasks.spawn(async move {
        tracing::info!(%addr, "OTA image server for devices listening");
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "image server accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                shared.count("connection_limit");
                tracing::warn!(%peer, "image server at its connection limit (ota.image_max_connections); connection closed");
                drop(tcp);
                continue;
            };
            let (shared, acceptor, shutdown) =
                (Arc::clone(&shared), acceptor.clone(), shutdown.clone());
            tracker.spawn(async move {
                connection(shared, acceptor, tcp, peer, handshake_timeout, shutdown).await;
                drop(permit);
            });
        }
        tracing::debug!("image server stopped");
    });
    Ok(ImageServerHandle { addr })
}

/// Who is on the other end, as far as the image server is concerned.
#[derive(Debug, Clone)]
enum Peer {
    /// An enrolled device in good standing.
    Device(DeviceId),
    /// A verified certificate the registry refuses (why, in words).
    Refused(DeviceId, String),
}

async fn audit(shared: &Shared, event: AuditEvent) {
    if let Err(e) = shared.deps.audit.append_async(event).await {
        tracing::error!(error = %e, "cannot write an image server audit row");
    }
}

/// The refused row of whoever the image server turned away: `actor`
/// (`peer:<addr>` or `device:<id>`) at `action` on `subject`, with why in
/// `detail`. Every refusal of the image server is audited through here.
async fn audit_refused(
    shared: &Shared,
    actor: String,
    action: &str,
    subject: &str,
    detail: serde_json::Value,
) {
    let event = AuditEvent::new(actor, action, subject, Outcome::Refused).with_detail(detail);
    audit(shared, event).await;
}

/// The `ota.image` refused row of a known device (at the handshake or at
/// a request).
async fn audit_device_refused(shared: &Shared, device: &DeviceId, detail: serde_json::Value) {
    let actor = format!("device:{device}");
    audit_refused(shared, actor, "ota.image", device.as_str(), detail).await;
}

async fn connection(
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    handshake_timeout: Duration,
    shutdown: CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let words = wardgate_tls::describe::handshake_error(
                &e,
                &wardgate_tls::describe::Context {
                    side: wardgate_tls::describe::Side::Server,
                    peer: "device",
                    trust_field: "edge.ca_cert",
                    own_cert_field: Some("edge.server_cert"),
                    reissue: "issue one with `gateway pki device`",
                },
            );
            refuse_handshake(&shared, peer, "tls_handshake", &words).await;
            return;
        }
        Err(_) => {
            refuse_handshake(
                &shared,
                peer,
                "tls_timeout",
                "handshake not completed in time",
            )
            .await;
            return;
        }
    };
    let Some(device) = identify(&shared, &tls, peer).await else {
        return;
    };
    let service_shared = Arc::clone(&shared);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = Arc::clone(&service_shared);
        let device = device.clone();
        async move { Ok::<_, Infallible>(handle(&shared, &device, &req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(tls), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "image server connection ended");
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

async fn refuse_handshake(shared: &Shared, peer: SocketAddr, reason: &str, detail: &str) {
    tracing::warn!(%peer, reason, detail, "image server refused a connection");
    shared.count(reason);
    audit_refused(
        shared,
        format!("peer:{peer}"),
        "ota.image.tls",
        &peer.ip().to_string(),
        serde_json::json!({"reason": reason, "error": detail}),
    )
    .await;
}

/// The device id from the verified certificate, checked against the
/// registry as the edge does. `None`: the peer was refused and recorded.
async fn identify(
    shared: &Shared,
    tls: &tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
) -> Option<Peer> {
    let Some(der) = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
    else {
        // Unreachable with client certificates required; refuse anyway.
        refuse_handshake(
            shared,
            peer,
            "no_client_certificate",
            "no client certificate",
        )
        .await;
        return None;
    };
    let identity = match wardgate_tls::identity_from_cert(&der, wardgate_tls::DEVICE_URN_PREFIX)
        .map_err(|e| e.to_string())
        .and_then(|id| {
            DeviceId::parse(&id.name)
                .map(|device_id| PeerIdentity {
                    device_id,
                    fingerprint: id.fingerprint,
                })
                .map_err(|e| e.to_string())
        }) {
        Ok(i) => i,
        Err(e) => {
            refuse_handshake(shared, peer, "certificate_identity", &e).await;
            return None;
        }
    };
    let record = shared
        .deps
        .registry
        .get_async(identity.device_id.clone())
        .await;
    let device = identity.device_id.clone();
    let verdict = match record {
        Ok(record) => check_connect(&identity, device.as_str(), record.as_ref(), false)
            .map(|_| ())
            .map_err(|r| (r.reason(), r.to_string())),
        Err(e) => Err(("registry_error", e.to_string())),
    };
    match verdict {
        Ok(()) => Some(Peer::Device(device)),
        Err((reason, words)) => {
            shared.count(reason);
            tracing::warn!(device_id = %device, %peer, reason, "image server refused a device");
            audit_device_refused(
                shared,
                &device,
                serde_json::json!({"reason": reason, "error": words, "peer": peer.to_string()}),
            )
            .await;
            Some(Peer::Refused(device, words))
        }
    }
}

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync()
}

fn text(status: StatusCode, message: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(message + "\n"))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

async fn handle(shared: &Shared, peer: &Peer, req: &Request<Incoming>) -> Response<Body> {
    let device = match peer {
        Peer::Device(d) => d,
        Peer::Refused(d, words) => {
            shared.count("forbidden");
            return text(
                StatusCode::FORBIDDEN,
                format!("device {d} may not download images: {words}"),
            );
        }
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        shared.count("method_not_allowed");
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD /images/<sha256>".into(),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(sha) = req
        .uri()
        .path()
        .strip_prefix("/images/")
        .filter(|s| is_sha256_hex(s))
    else {
        shared.count("not_found");
        return text(
            StatusCode::NOT_FOUND,
            "no such resource; images are at /images/<sha256 in lowercase hex>".into(),
        );
    };
    let (states, d, s) = (shared.deps.states.clone(), device.clone(), sha.to_owned());
    let offered = states.run(move |st| st.holds_offer(&d, &s)).await;
    match offered {
        Ok(true) => {}
        Ok(false) => {
            shared.count("not_offered");
            tracing::warn!(device_id = %device, sha256 = sha, "image requested without an open offer; refused");
            audit_device_refused(
                shared,
                device,
                serde_json::json!({"reason": "not_offered", "sha256": sha}),
            )
            .await;
            return text(
                StatusCode::FORBIDDEN,
                format!("device {device} holds no offer of image {sha}"),
            );
        }
        Err(e) => {
            shared.count("error");
            tracing::error!(error = %e, "image server cannot read the rollout state");
            return busy(shared, "the rollout state is unavailable; try again");
        }
    }
    let Some(path) = shared.deps.images.image_path(sha) else {
        shared.count("not_cached");
        return busy(
            shared,
            "the image is not in the gateway's cache yet; try again",
        );
    };
    serve_file(
        shared,
        device,
        sha,
        &path,
        req.method() == Method::HEAD,
        req.headers(),
    )
    .await
}

fn busy(shared: &Shared, why: &str) -> Response<Body> {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, why.to_owned());
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(shared.retry_after.as_secs().max(1)),
    );
    r
}

fn header_str<'h>(headers: &'h HeaderMap, name: &header::HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn etag_listed(value: Option<&str>, etag: &str) -> bool {
    value.is_some_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|t| t == etag || t == "*" || t.strip_prefix("W/") == Some(etag))
    })
}

async fn serve_file(
    shared: &Shared,
    device: &DeviceId,
    sha: &str,
    path: &std::path::Path,
    head: bool,
    headers: &HeaderMap,
) -> Response<Body> {
    let etag = format!("\"{sha}\"");
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => {
            shared.count("not_cached");
            tracing::error!(path = %path.display(), error = %e, "cached image cannot be opened");
            return busy(shared, "the image cannot be read from the cache; try again");
        }
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => {
            shared.count("not_cached");
            tracing::error!(path = %path.display(), error = %e, "cached image cannot be read");
            return busy(shared, "the image cannot be read from the cache; try again");
        }
    };
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if etag_listed(header_str(headers, &header::IF_NONE_MATCH), &etag) {
        shared.count("not_modified");
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        *r.headers_mut() = h;
        return r;
    }
    // If-Range with another validator (or a date: there is no
    // Last-Modified to compare) means the client's partial copy is of
    // something else: the whole image.
    let range = ByteRange::requested(
        header_str(headers, &header::RANGE),
        header_str(headers, &header::IF_RANGE),
        &etag,
        len,
    );
    let content_range = range
        .content_range(len)
        .and_then(|v| HeaderValue::from_str(&v).ok());
    let (status, start, count) = match range {
        ByteRange::Full => (StatusCode::OK, 0, len),
        ByteRange::Part { start, end } => {
            if let Some(v) = content_range {
                h.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        ByteRange::Unsatisfiable => {
            shared.count("range_not_satisfiable");
            let mut r = text(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the image has {len} bytes; ask for a range inside it"),
            );
            if let Some(v) = content_range {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if head {
        shared.count("head");
        let mut r = Response::new(empty());
        *r.status_mut() = status;
        *r.headers_mut() = h;
        return r;
    }
    let Ok(permit) = Arc::clone(&shared.downloads).try_acquire_owned() else {
        shared.count("busy");
        return busy(
            shared,
            "the gateway is serving its maximum of downloads (ota.image_max_downloads); try again",
        );
    };
    if start > 0 {
        if let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await {
            shared.count("error");
            tracing::error!(path = %path.display(), error = %e, "cannot seek in a cached image");
            return busy(shared, "the image cannot be read from the cache; try again");
        }
    }
    shared.count(if status == StatusCode::OK {
        "ok"
    } else {
        "partial"
    });
    tracing::info!(device_id = %device, sha256 = sha, start, bytes = count, "serving image");
    let note = ImageProgress {
        device: device.clone(),
        sha256: sha.to_owned(),
    };
    let _ = shared.deps.progress.try_send(note.clone());
    let body = Counted {
        inner: tokio_util::io::ReaderStream::with_capacity(file.take(count), CHUNK).boxed(),
        metrics: shared.deps.metrics.clone(),
        progress: shared.deps.progress.clone(),
        note,
        last_note: Instant::now(),
        _permit: DownloadPermit::new(permit, shared.deps.metrics.clone()),
    };
    let mut r = Response::new(BodyExt::boxed_unsync(StreamBody::new(body)));
    *r.status_mut() = status;
    *r.headers_mut() = h;
    r
}

/// Holds a download slot while the body lives and keeps the gauge right.
struct DownloadPermit {
    _permit: OwnedSemaphorePermit,
    metrics: RolloutMetrics,
}

impl DownloadPermit {
    fn new(permit: OwnedSemaphorePermit, metrics: RolloutMetrics) -> Self {
        metrics.image_downloads_active.inc();
        Self {
            _permit: permit,
            metrics,
        }
    }
}

impl Drop for DownloadPermit {
    fn drop(&mut self) {
        self.metrics.image_downloads_active.dec();
    }
}

/// An image body that counts the bytes it hands to the connection.
struct Counted {
    inner: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    metrics: RolloutMetrics,
    progress: mpsc::Sender<ImageProgress>,
    note: ImageProgress,
    last_note: Instant,
    _permit: DownloadPermit,
}

impl Stream for Counted {
    type Item = Result<Frame<Bytes>, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.metrics.image_bytes_served.inc_by(chunk.len() as u64);
                if self.last_note.elapsed() >= PROGRESS_EVERY {
                    self.last_note = Instant::now();
                    let _ = self.progress.try_send(self.note.clone());
                }
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The `Range` parsing itself is tested in `wardgate_protocol::byte_range`.
    #[test]
    fn etags_and_image_names() {
        assert!(etag_listed(Some("\"a\", \"b\""), "\"b\""));
        assert!(etag_listed(Some("*"), "\"b\""));
        assert!(!etag_listed(Some("\"a\""), "\"b\""));
        assert!(is_sha256_hex(&"ab".repeat(32)));
        assert!(!is_sha256_hex(&"AB".repeat(32)));
        assert!(!is_sha256_hex("../etc/passwd"));
    }
}
