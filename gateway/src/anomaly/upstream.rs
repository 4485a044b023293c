//! Alerts upstream: every stored alert is published, QoS 1, to the hospital
//! broker on `<uplink.topic_prefix>/alerts`, store-and-forward like
//! telemetry.
//!
//! A small client of its own (MQTT client id `<uplink.client_id>-alerts`,
//! the uplink's TLS identity and broker), so alerts neither wait behind a
//! telemetry backlog nor touch the outbox. It sends the alerts the upstream
//! broker has not acknowledged yet, oldest first, and marks each one once
//! its PUBACK arrives; an alert raised while the hospital link is down is
//! sent when it is back (at least once; consumers deduplicate on `id`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::alert::upstream_payload;
use super::metrics::AnomalyMetrics;
use super::store::AlertStore;
use crate::uplink::bridge::{backoff, BridgeSettings};

/// Most alerts in flight to the upstream broker.
const WINDOW: usize = 16;

/// The topic alerts are published on under `prefix`.
#[must_use]
pub fn alert_topic(prefix: &str) -> String {
    format!("{prefix}/alerts")
}

/// Start the publisher on `tasks`.
pub fn spawn(
    settings: &BridgeSettings,
    store: AlertStore,
    new_alert: Arc<Notify>,
    metrics: AnomalyMetrics,
    tasks: &tokio_util::task::TaskTracker,
    cancel: CancellationToken,
) {
    let publisher = Publisher {
        options: settings.side_client("alerts"),
        topic: alert_topic(&settings.topic_prefix),
        backoff: (settings.backoff_initial, settings.backoff_max),
        store,
        new_alert,
        metrics,
        cancel,
    };
    tasks.spawn(publisher.run());
}

struct Publisher {
    options: MqttOptions,
    topic: String,
    backoff: (Duration, Duration),
    store: AlertStore,
    new_alert: Arc<Notify>,
    metrics: AnomalyMetrics,
    cancel: CancellationToken,
}

impl Publisher {
    async fn run(self) {
        let mut failures = 0u32;
        loop {
            match self.session().await {
                Ok(()) => break,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "alert uplink session ended; alerts are kept and sent on reconnect (check uplink.broker_host)");
                }
            }
            let wait = backoff(self.backoff.0, self.backoff.1, failures);
            tokio::select! {
                () = self.cancel.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One session: `Ok` on shutdown, `Err` when the connection failed.
    async fn session(&self) -> Result<(), String> {
        let (client, mut events) = AsyncClient::new(self.options.clone(), WINDOW * 2);
        // Sent, waiting for their packet id; then in flight by packet id.
        let mut queued: VecDeque<i64> = VecDeque::new();
        let mut inflight: HashMap<u16, i64> = HashMap::new();
        let mut connected = false;
        let mut sent_up_to = 0i64;
        loop {
            if connected && queued.is_empty() && inflight.len() < WINDOW {
                let room = u32::try_from(WINDOW - inflight.len()).unwrap_or(1);
                let pending = self
                    .store
                    .unpublished_async(room + u32::try_from(inflight.len()).unwrap_or(0))
                    .await
                    .map_err(|e| e.to_string())?;
                let after = sent_up_to;
                for alert in pending.into_iter().filter(|a| a.id > after) {
                    let payload =
                        serde_json::to_vec(&upstream_payload(&alert)).map_err(|e| e.to_string())?;
                    client
                        .try_publish(&self.topic, QoS::AtLeastOnce, false, payload)
                        .map_err(|e| e.to_string())?;
                    queued.push_back(alert.id);
                    sent_up_to = alert.id;
                }
            }
            let idle = queued.is_empty() && inflight.is_empty();
            tokio::select! {
                () = self.cancel.cancelled() => {
                    let _ = client.try_disconnect();
                    return Ok(());
                }
                () = self.new_alert.notified(), if connected && idle => {}
                ev = events.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        tracing::info!("alert uplink connected");
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        if let Some(id) = queued.pop_front() {
                            inflight.insert(pkid, id);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(id) = inflight.remove(&ack.pkid) {
                            self.store.mark_published_async(id).await.map_err(|e| e.to_string())?;
                            self.metrics.published.inc();
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                },
            }
        }
    }
}
