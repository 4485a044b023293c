//! What the edge records about refused and ended sessions: one audit row,
//! one metric and one log line per outcome, so a refusal is never silent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use wardgate_protocol::DeviceId;

use super::events::EdgeEvent;
use super::peer_refusals::{Noted, Summary};
use super::shared::Shared;
use super::violation::Violation;
use crate::audit::{AuditEvent, Outcome};

/// Append `event` to the audit log; a failure is logged, never fatal to the
/// session (the refusal itself has already happened).
pub(crate) async fn audit(shared: &Shared, event: AuditEvent) {
    if let Err(e) = shared.ctx.audit.append_async(event).await {
        tracing::error!(error = %e, "cannot write audit row; check the gateway database");
    }
}

/// A connection refused before its device is known (TLS, certificate).
pub(crate) async fn refuse_peer(shared: &Shared, peer: SocketAddr, reason: &str, detail: &str) {
    refuse_peer_as(shared, peer, "edge.tls", reason, reason, detail).await;
}

/// A refusal before authentication at `action`, counted as `metric`: the
/// observer always hears of it; the log line and the audit row are written
/// for the peer's first refusal of the interval only, the rest go into its
/// summary ([`super::peer_refusals`]).
pub(crate) async fn refuse_peer_as(
    shared: &Shared,
    peer: SocketAddr,
    action: &str,
    metric: &str,
    reason: &str,
    detail: &str,
) {
    shared.observe(|| EdgeEvent::RefusedBeforeAuth {
        peer,
        reason: reason.to_owned(),
        detail: detail.to_owned(),
    });
    shared.ctx.metrics.edge.connection(metric);
    // At capacity the limit is the gateway's, not the peer's fault.
    let strike = reason != "capacity";
    if shared.peer_refusals.note(peer.ip(), reason, strike) == Noted::Counted {
        return;
    }
    tracing::warn!(%peer, reason, detail, "device connection refused before MQTT");
    audit(
        shared,
        AuditEvent::new(
            format!("peer:{peer}"),
            action,
            peer.ip().to_string(),
            Outcome::Refused,
        )
        .with_detail(serde_json::json!({"reason": reason, "error": detail})),
    )
    .await;
}

/// Write, every interval and once more at shutdown, one audit row per
/// peer that was refused more than once ([`super::peer_refusals`]).
pub(crate) async fn summarise_peer_refusals(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.peer_refusals.interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let force = tokio::select! {
            () = shared.ctx.shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        for summary in shared.peer_refusals.take_summaries(Instant::now(), force) {
            audit(&shared, summary_row(&summary)).await;
        }
        if force {
            break;
        }
    }
}

fn summary_row(s: &Summary) -> AuditEvent {
    let who = s
        .peer
        .map_or_else(|| "other".to_owned(), |ip| ip.to_string());
    tracing::warn!(
        peer = %who,
        refusals = s.tally.refusals(),
        throttled = s.tally.throttled,
        "connections refused before MQTT, summarised"
    );
    AuditEvent::new(
        format!("peer:{who}"),
        "edge.refused.summary",
        who,
        Outcome::Refused,
    )
    .with_detail(serde_json::json!({
        "refusals": s.tally.refusals(),
        "reasons": s.tally.reasons,
        "throttled": s.tally.throttled,
        "interval_seconds": s.interval.as_secs(),
    }))
}

/// A device (known from its certificate) refused at CONNECT.
pub(crate) async fn refuse_device(
    shared: &Shared,
    device: &DeviceId,
    peer: SocketAddr,
    reason: &str,
    detail: &str,
) {
    shared.observe(|| EdgeEvent::ConnectRefused {
        device: device.clone(),
        peer,
        reason: reason.to_owned(),
        detail: detail.to_owned(),
    });
    record_refusal(shared, device, peer, "edge.connect", reason, detail).await;
}

/// Log, count and audit a refusal of `device` at `action`.
async fn record_refusal(
    shared: &Shared,
    device: &DeviceId,
    peer: SocketAddr,
    action: &str,
    reason: &str,
    detail: &str,
) {
    tracing::warn!(reason, detail, "device refused");
    shared.ctx.metrics.edge.connection(reason);
    audit(
        shared,
        AuditEvent::new(
            format!("device:{device}"),
            action,
            device.as_str(),
            Outcome::Refused,
        )
        .with_detail(
            serde_json::json!({"reason": reason, "error": detail, "peer": peer.to_string()}),
        ),
    )
    .await;
}

/// A violation before the session was relayed (in or before CONNECT).
pub(crate) async fn violation_before_connect(
    shared: &Shared,
    device: &DeviceId,
    peer: SocketAddr,
    v: &Violation,
) {
    shared.ctx.metrics.edge.violation(v.reason());
    shared.observe(|| EdgeEvent::Violation {
        device: device.clone(),
        peer,
        violation: v.clone(),
    });
    record_refusal(
        shared,
        device,
        peer,
        "edge.violation",
        v.reason(),
        &v.to_string(),
    )
    .await;
}
