//! Offers out, status and update reports in, over the embedded broker's
//! local link `gateway.ota`.
//!
//! The rollout never talks MQTT to a device directly: it publishes
//! [`OtaOffer`]s on `wardgate/v1/devices/<id>/ota/offer` and subscribes to
//! every device's `status` and `ota/report`. `rumqttd` 0.20 lets a local
//! link publish at QoS 0 only, so an offer is delivered at most once and
//! not retained; the rollout makes up for it by offering again when the
//! device reconnects (its new `status`) and when an offer times out
//! ([`crate::ota::device_state::Timeouts`]), and devices treat a repeated
//! offer of what they are already doing as a no-op. Those arrive only through the edge, which has already
//! checked the sender's certificate, topic, schema and `seq`; they are
//! parsed again here into [`DeviceEvent`]s. The subscription also delivers
//! each device's retained status, so a rollout that starts after its
//! devices connected still learns what they are doing.
//!
//! Queues: device events go to the rollout through a bounded channel
//! ([`EVENT_QUEUE`]); when it is full the reader waits, the broker stops
//! forwarding to this link and keeps the messages in its log (back-pressure,
//! nothing dropped here). Publishing runs on the blocking pool because the
//! link's sender blocks while the router's queue is full.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::Notification;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wardgate_protocol::{topic, DeviceId, DeviceTopic, OtaOffer, OtaReport, Status, TopicKind};

use crate::broker::{BrokerError, BrokerHandle};
use crate::ota::rollout_metrics::RolloutMetrics;

/// Client id of the rollout's local link (a `.`, so no device can take it).
pub const LINK_CLIENT_ID: &str = "gateway.ota";

/// Capacity of the device event channel.
pub const EVENT_QUEUE: usize = 1024;

/// What went wrong on the offer link.
#[derive(Debug, thiserror::Error)]
pub enum OffersError {
    /// The broker refused the link.
    #[error(transparent)]
    Link(#[from] BrokerError),
    /// The broker is gone (the gateway is shutting down).
    #[error("embedded broker refused an OTA message on {topic}: {source}; the gateway is probably shutting down")]
    Publish {
        /// The topic (or subscription filter).
        topic: String,
        /// The broker's error.
        #[source]
        source: Box<rumqttd::local::LinkError>,
    },
    /// The blocking task that hands the offer to the broker failed.
    #[error("OTA offer task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// An offer could not be encoded.
    #[error("cannot encode the offer for {device}: {source}")]
    Encode {
        /// The device.
        device: DeviceId,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
}

/// A message from a device that the rollout cares about.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceEvent {
    /// A status (also the retained one on subscription).
    Status {
        /// Which device (from the topic, which the edge bound to its certificate).
        device: DeviceId,
        /// What it said.
        status: Status,
    },
    /// An update report.
    Report {
        /// Which device.
        device: DeviceId,
        /// What it said.
        report: OtaReport,
    },
}

/// Sends offers; cheap to clone.
#[derive(Clone)]
pub struct OfferSender {
    tx: Arc<Mutex<LinkTx>>,
}

impl std::fmt::Debug for OfferSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfferSender").finish_non_exhaustive()
    }
}

impl OfferSender {
    /// Publish `offer` to `device` (QoS 0, not retained; see the module doc).
    ///
    /// # Errors
    /// [`OffersError`] if it cannot be encoded or the broker refuses it.
    pub async fn send(&self, device: &DeviceId, offer: &OtaOffer) -> Result<(), OffersError> {
        let payload = serde_json::to_vec(offer).map_err(|source| OffersError::Encode {
            device: device.clone(),
            source,
        })?;
        let topic = topic(device, TopicKind::OtaOffer);
        let tx = Arc::clone(&self.tx);
        let t = topic.clone();
        tokio::task::spawn_blocking(move || {
            let mut tx = tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Queues the packet and signals the router; blocks (hence the
            // blocking pool) only while the router's queue is full.
            tx.publish(Bytes::from(t.into_bytes()), Bytes::from(payload))
                .map(|_| ())
                .map_err(Box::new)
        })
        .await?
        .map_err(|source| OffersError::Publish { topic, source })
    }
}

/// Open the link: subscribe to every device's status and reports. Returns
/// the sender, the event receiver and the reader task to spawn.
///
/// # Errors
/// [`OffersError`] if the broker refuses the link or the subscriptions.
pub fn open(
    broker: &BrokerHandle,
    metrics: RolloutMetrics,
    shutdown: CancellationToken,
) -> Result<
    (
        OfferSender,
        mpsc::Receiver<DeviceEvent>,
        impl std::future::Future<Output = ()> + Send + 'static,
    ),
    OffersError,
> {
    let (mut tx, rx) = broker.link(LINK_CLIENT_ID)?;
    for leaf in [TopicKind::Status, TopicKind::OtaReport] {
        let filter = format!("{}+/{}", wardgate_protocol::TOPIC_PREFIX, leaf.suffix());
        tx.subscribe(filter.clone())
            .map_err(|source| OffersError::Publish {
                topic: filter,
                source: Box::new(source),
            })?;
    }
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let reader = read_events(rx, events_tx, metrics, shutdown);
    Ok((
        OfferSender {
            tx: Arc::new(Mutex::new(tx)),
        },
        events_rx,
        reader,
    ))
}

/// Parse one forwarded message into an event (`None`: not for the rollout,
/// or it does not parse).
#[must_use]
pub fn parse_event(topic_name: &[u8], payload: &[u8]) -> Option<Result<DeviceEvent, String>> {
    let topic_name = std::str::from_utf8(topic_name).ok()?;
    let t = DeviceTopic::parse(topic_name).ok()?;
    Some(match t.kind {
        TopicKind::Status => Status::from_json(payload)
            .map(|status| DeviceEvent::Status {
                device: t.device,
                status,
            })
            .map_err(|e| e.to_string()),
        TopicKind::OtaReport => OtaReport::from_json(payload)
            .map(|report| DeviceEvent::Report {
                device: t.device,
                report,
            })
            .map_err(|e| e.to_string()),
        _ => return None,
    })
}

async fn read_events(
    mut rx: LinkRx,
    events: mpsc::Sender<DeviceEvent>,
    metrics: RolloutMetrics,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => break,
            n = rx.next() => n,
        };
        let f = match next {
            Ok(Some(Notification::Forward(f))) => f,
            // The router pauses a link whose outgoing buffer filled until
            // it is woken again.
            Ok(Some(Notification::Unschedule)) => {
                if rx.wake().await.is_err() {
                    break;
                }
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                if !shutdown.is_cancelled() {
                    tracing::error!(error = %e, "OTA link to the embedded broker closed; offers and reports stop until restart");
                }
                break;
            }
        };
        match parse_event(&f.publish.topic, &f.publish.payload) {
            None => {}
            Some(Ok(event)) => {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    sent = events.send(event) => if sent.is_err() { break },
                }
            }
            Some(Err(reason)) => {
                metrics.invalid_messages.inc();
                tracing::warn!(
                    topic = %String::from_utf8_lossy(&f.publish.topic),
                    %reason,
                    "OTA: device message does not parse; ignored"
                );
            }
        }
    }
    tracing::debug!("OTA link reader stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_reports_and_ignores_the_rest() {
        let s = br#"{"schema":1,"seq":4,"ts":"2026-01-01T00:00:00Z","activity":"therapy_in_progress","firmware_version":"1.0.0"}"#;
        match parse_event(b"wardgate/v1/devices/pump-01/status", s) {
            Some(Ok(DeviceEvent::Status { device, status })) => {
                assert_eq!(device.as_str(), "pump-01");
                assert_eq!(status.firmware_version, "1.0.0");
            }
            other => panic!("{other:?}"),
        }
        let r = br#"{"schema":1,"seq":5,"ts":"2026-01-01T00:00:00Z","campaign_id":"c1","version":"2.0.0","outcome":"rolled_back","detail":"self-test failed"}"#;
        assert!(matches!(
            parse_event(b"wardgate/v1/devices/pump-01/ota/report", r),
            Some(Ok(DeviceEvent::Report { .. }))
        ));
        assert!(matches!(
            parse_event(b"wardgate/v1/devices/pump-01/ota/report", b"{"),
            Some(Err(_))
        ));
        assert!(parse_event(b"wardgate/v1/devices/pump-01/telemetry", s).is_none());
        assert!(parse_event(b"elsewhere", s).is_none());
        assert!(parse_event(&[0xff, 0xfe], s).is_none());
    }
}
