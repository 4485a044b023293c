//! What the edge records about refused and ended sessions: one audit row,
//! one metric and one log line per outcome, so a refusal is never silent.

use std::net::SocketAddr;

use wardgate_protocol::DeviceId;

use super::events::EdgeEvent;
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
    tracing::warn!(%peer, reason, detail, "device connection refused before MQTT");
    shared.observe(|| EdgeEvent::RefusedBeforeAuth {
        peer,
        reason: reason.to_owned(),
        detail: detail.to_owned(),
    });
    shared.ctx.metrics.edge.connection(reason);
    audit(
        shared,
        AuditEvent::new(
            format!("peer:{peer}"),
            "edge.tls",
            peer.ip().to_string(),
            Outcome::Refused,
        )
        .with_detail(serde_json::json!({"reason": reason, "error": detail})),
    )
    .await;
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
