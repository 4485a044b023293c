//! The hand-off of accepted telemetry from the edge to durable storage.
//!
//! The edge calls [`TelemetrySink::store`] for every new PUBLISH that
//! passed policy (telemetry with its payload, status and OTA reports with
//! their `seq` only) and waits for it before the device's PUBACK can leave
//! the gateway: a message a device saw acknowledged is already committed,
//! and so is the device's replay state ([`crate::edge::replay`]), in the
//! same transaction. The uplink's outbox is the production implementation
//! ([`crate::uplink::Outbox`]; with the uplink off, its replay-state-only
//! [`crate::uplink::outbox::SeqLedger`]). Calls are pipelined: a session
//! keeps reading while its earlier messages commit.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use wardgate_protocol::DeviceId;

pub use crate::stored_seq::PayloadDigest;

/// One telemetry message that passed the edge's policy checks.
#[derive(Debug, Clone)]
pub struct AcceptedTelemetry {
    /// Device id taken from the verified client certificate.
    pub device_id: DeviceId,
    /// The device's monotonic sequence number from the payload.
    pub seq: u64,
    /// The MQTT topic it was published on.
    pub topic: String,
    /// The payload exactly as received.
    pub payload: Bytes,
    /// When the gateway received it.
    pub received_at: DateTime<Utc>,
}

/// Why a sink did not take a message.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The outbox is at its configured bound and the policy is to refuse.
    #[error("outbox full ({detail}); telemetry refused until the uplink drains it")]
    Full {
        /// Which bound was hit, for the operator.
        detail: String,
    },
    /// Storage failed (disk full, I/O error).
    #[error("telemetry storage failed: {0}")]
    Storage(String),
    /// An earlier message of the same session was not stored (refused or
    /// failed), so this later one is not either: per-device order is kept
    /// and the device can resend both.
    #[error("seq {seq} not stored because the device's earlier message seq {after} was not; the device may resend both")]
    OutOfOrder {
        /// This message's `seq`.
        seq: u64,
        /// The earlier message's `seq`.
        after: u64,
    },
}

/// One new message to store with the device's replay state.
#[derive(Debug, Clone)]
pub struct StoreRequest {
    /// The device.
    pub device_id: DeviceId,
    /// Its `seq`.
    pub seq: u64,
    /// Digest of its payload, kept for resend detection.
    pub digest: PayloadDigest,
    /// The `seq` of the session's previous new message, which must have
    /// been stored for this one to be.
    pub after: Option<u64>,
    /// For telemetry (when the edge collects it): the row to store.
    pub telemetry: Option<AcceptedTelemetry>,
}

/// Boxed future returned by [`TelemetrySink::accept`].
pub type AcceptFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// A commit in progress, from [`TelemetrySink::submit`]: resolves once the
/// message is durable (or refused).
pub type StoredFuture = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'static>>;

/// Boxed future returned by [`TelemetrySink::submit`]: resolves once the
/// request is queued for its commit, in call order.
pub type SubmitFuture<'a> = Pin<Box<dyn Future<Output = StoredFuture> + Send + 'a>>;

/// Durable destination for accepted telemetry.
pub trait TelemetrySink: Send + Sync + 'static {
    /// Commit `message`; resolves once it is durable (or refused).
    fn accept(&self, message: AcceptedTelemetry) -> AcceptFuture<'_>;

    /// Commit a new message and the device's replay state in one
    /// transaction; resolves once both are durable (or refused). A sink
    /// that keeps no replay state (the default) stores the telemetry only.
    fn store(&self, request: StoreRequest) -> AcceptFuture<'_> {
        match request.telemetry {
            Some(t) => self.accept(t),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }

    /// Queue `request` for its commit and return the commit in progress,
    /// so the caller can go on while it runs (the edge's pipelined
    /// ingest). Requests are committed in the order they were queued, which
    /// keeps per-device order. The default waits for the whole
    /// [`TelemetrySink::store`] before it returns.
    #[allow(clippy::async_yields_async)] // the commit in progress is the result, awaited later
    fn submit(&self, request: StoreRequest) -> SubmitFuture<'_> {
        Box::pin(async move {
            let result = self.store(request).await;
            Box::pin(std::future::ready(result)) as StoredFuture
        })
    }
}
