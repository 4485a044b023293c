//! The hand-off of accepted telemetry from the edge to durable storage.
//!
//! The edge calls [`TelemetrySink::accept`] for every telemetry PUBLISH that
//! passed policy and waits for it before the device's PUBACK can leave the
//! gateway: a message a device saw acknowledged is already committed. The
//! uplink's outbox is the production implementation.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use wardgate_protocol::DeviceId;

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
}

/// Boxed future returned by [`TelemetrySink::accept`].
pub type AcceptFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// Durable destination for accepted telemetry.
pub trait TelemetrySink: Send + Sync + 'static {
    /// Commit `message`; resolves once it is durable (or refused).
    fn accept(&self, message: AcceptedTelemetry) -> AcceptFuture<'_>;
}
