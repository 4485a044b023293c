//! The running gateway's audit anchors ([`crate::audit::anchor`]): at
//! start, every `audit.anchor_interval` while the chain grows, and at
//! shutdown, the chain head is signed and
//!
//! - appended as one JSON line to `audit.anchor_file` (created 0640 if
//!   missing, `fsync`ed), for the operator to ship to a SIEM;
//! - published retained, QoS 1, on `<uplink.topic_prefix>/audit/anchor` at
//!   the hospital broker when the uplink is enabled and
//!   `audit.anchor_upstream` is set, from a client of its own
//!   (`<uplink.client_id>-audit`). The broker keeps the latest; a newer
//!   anchor supersedes one that could not be sent, so nothing queues.
//!
//! Anchoring writes no audit row (a row per anchor would move the head it
//! anchors). Failures are logged and counted in
//! `wardgate_audit_anchors_total{outcome}` and never stop the gateway:
//! the next interval tries again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rumqttc::{AsyncClient, ConnectionError, Event, Outgoing, Packet, QoS};
use tokio_util::sync::CancellationToken;

use crate::audit::anchor::{self, Anchor, AnchorError, AnchorKey};
use crate::audit::AuditLog;
use crate::context::GatewayContext;
use crate::metrics::CounterBy;
use crate::uplink::bridge::{backoff, BridgeSettings};
use crate::uplink::UplinkError;

/// The topic anchors are published on under `prefix`.
#[must_use]
pub fn anchor_topic(prefix: &str) -> String {
    format!("{prefix}/audit/anchor")
}

/// Why anchoring could not start.
#[derive(Debug, thiserror::Error)]
pub enum AnchoringError {
    /// The anchor key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] AnchorError),
    /// The uplink's TLS settings could not be loaded for the publisher.
    #[error("audit anchor publisher: {0}")]
    Upstream(#[from] UplinkError),
}

/// Start anchoring for the gateway `ctx` on its task tracker.
///
/// # Errors
/// [`AnchoringError`] when the key is unusable or the upstream client's
/// settings cannot be loaded.
pub fn spawn(ctx: &Arc<GatewayContext>) -> Result<(), AnchoringError> {
    let config = &ctx.config;
    let key = AnchorKey::load_or_create(&ctx.data_dir)?;
    let outcomes = CounterBy::new("outcome");
    ctx.metrics.register(
        "wardgate_audit_anchors",
        "Audit chain anchors, by outcome (written, write_failed, published, publish_failed)",
        outcomes.clone(),
    );
    let upstream = if config.audit.anchor_upstream && config.uplink.enabled {
        let settings = BridgeSettings::from_config(&config.uplink)?;
        Some(Upstream::start(&settings, &outcomes, ctx))
    } else {
        None
    };
    let file = config.audit.anchor_path(&config.storage);
    tracing::info!(
        key = %key.public_hex(),
        file = %file.display(),
        upstream = upstream.is_some(),
        "audit anchoring on; record the key to check anchors with `gateway audit verify --anchor`"
    );
    let anchorer = Anchorer {
        key,
        gateway: config.uplink.client_id.clone(),
        log: ctx.audit.clone(),
        file,
        interval: config.audit.anchor_interval,
        upstream,
        outcomes,
        last_row: None,
    };
    ctx.tasks.spawn(anchorer.run(ctx.shutdown.child_token()));
    Ok(())
}

struct Anchorer {
    key: AnchorKey,
    gateway: String,
    log: AuditLog,
    file: PathBuf,
    interval: Duration,
    upstream: Option<Upstream>,
    outcomes: CounterBy,
    /// The row the last anchor named; an unchanged head is not re-anchored.
    last_row: Option<i64>,
}

impl Anchorer {
    async fn run(mut self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => self.anchor().await,
            }
        }
        // The head at shutdown, so that the last rows are anchored too.
        self.anchor().await;
        if let Some(up) = self.upstream.take() {
            up.stop().await;
        }
    }

    async fn anchor(&mut self) {
        let log = self.log.clone();
        let head = match tokio::task::spawn_blocking(move || log.head()).await {
            Ok(Ok(Some(head))) => head,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the audit chain head to anchor it; retrying next interval");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit anchor task failed; retrying next interval");
                return;
            }
        };
        if self.last_row == Some(head.row_id) {
            return;
        }
        let anchor = self.key.sign(&self.gateway, &head, Utc::now());
        let line = match serde_json::to_string(&anchor) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an audit anchor");
                return;
            }
        };
        let file = self.file.clone();
        let written = {
            let line = line.clone();
            tokio::task::spawn_blocking(move || anchor::append_line(&file, &line)).await
        };
        match written {
            Ok(Ok(())) => self.outcomes.inc("written"),
            Ok(Err(e)) => {
                self.outcomes.inc("write_failed");
                tracing::warn!(file = %self.file.display(), error = %e, "cannot append the audit anchor; check audit.anchor_file and free disk space");
            }
            Err(e) => tracing::warn!(error = %e, "audit anchor write task failed"),
        }
        if let Some(up) = &self.upstream {
            up.publish(&anchor, line.into_bytes());
        }
        self.last_row = Some(head.row_id);
    }
}

/// The anchor publisher's client and the task driving its connection.
struct Upstream {
    client: AsyncClient,
    topic: String,
    outcomes: CounterBy,
    driver: tokio::task::JoinHandle<()>,
    /// Ends the driver; not the gateway's shutdown token, so that the
    /// anchor taken at shutdown can still leave.
    done: CancellationToken,
}

impl Upstream {
    fn start(settings: &BridgeSettings, outcomes: &CounterBy, ctx: &GatewayContext) -> Self {
        let (client, mut events) = AsyncClient::new(settings.side_client("audit"), 8);
        let (initial, max) = (settings.backoff_initial, settings.backoff_max);
        let acks = outcomes.clone();
        let done = CancellationToken::new();
        let stop = done.clone();
        // rumqttc reconnects on the next poll after an error and resends
        // what was in flight; the loop only paces the retries. It ends on
        // `done`, after the DISCONNECT it was asked for, or when the client
        // is gone.
        let driver = ctx.tasks.spawn(async move {
            let mut failures = 0u32;
            loop {
                let event = tokio::select! {
                    () = stop.cancelled() => break,
                    ev = events.poll() => ev,
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => failures = 0,
                    Ok(Event::Incoming(Packet::PubAck(_))) => acks.inc("published"),
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(ConnectionError::RequestsDone) => break,
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(error = %e, "audit anchor uplink down; the next anchor supersedes (check uplink.broker_host)");
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = tokio::time::sleep(backoff(initial, max, failures)) => {}
                        }
                    }
                }
            }
        });
        Self {
            client,
            topic: anchor_topic(&settings.topic_prefix),
            outcomes: outcomes.clone(),
            driver,
            done,
        }
    }

    fn publish(&self, anchor: &Anchor, payload: Vec<u8>) {
        if let Err(e) = self
            .client
            .try_publish(&self.topic, QoS::AtLeastOnce, true, payload)
        {
            self.outcomes.inc("publish_failed");
            tracing::warn!(row = anchor.row_id, error = %e, "audit anchor not queued for the hospital broker; the next one supersedes it");
        }
    }

    /// Give the last anchor up to two seconds to leave, then disconnect.
    async fn stop(self) {
        let _ = self.client.try_disconnect();
        let mut driver = self.driver;
        if tokio::time::timeout(Duration::from_secs(2), &mut driver)
            .await
            .is_err()
        {
            self.done.cancel();
            let _ = driver.await;
        }
    }
}
