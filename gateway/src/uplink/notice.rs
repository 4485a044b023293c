//! Outbox alerts into the hash-chained audit log.
//!
//! Every [`OutboxNotice`] becomes one audit row (actor `gateway`), so a full
//! outbox, each refused or dropped batch (with the device ids and sequence
//! numbers concerned) and the recovery are on record; never the vitals.

use serde_json::json;

use super::outbox::{NoticeHook, OutboxNotice};
use crate::audit::{AuditEvent, AuditLog, Outcome};

/// Most (device, seq) pairs listed in one audit row; the count is exact.
const MAX_LISTED: usize = 200;

/// The audit event for `notice`.
#[must_use]
pub fn audit_event(notice: &OutboxNotice) -> AuditEvent {
    let listed = |m: &[(String, u64)]| {
        m.iter()
            .take(MAX_LISTED)
            .map(|(d, s)| json!({"device": d, "seq": s}))
            .collect::<Vec<_>>()
    };
    let subject = |m: &[(String, u64)]| match m.first() {
        Some((d, _)) if m.iter().all(|(x, _)| x == d) => d.clone(),
        _ => "outbox".to_owned(),
    };
    match notice {
        OutboxNotice::Full { policy, detail } => {
            AuditEvent::new("gateway", "uplink.outbox_full", "outbox", Outcome::Info)
                .with_detail(json!({"policy": policy.to_string(), "bound": detail}))
        }
        OutboxNotice::Refused {
            count,
            messages,
            detail,
        } => AuditEvent::new(
            "gateway",
            "uplink.telemetry_refused",
            subject(messages),
            Outcome::Refused,
        )
        .with_detail(json!({"count": count, "reason": format!("outbox full: {detail}"), "messages": listed(messages)})),
        OutboxNotice::Dropped { count, messages } => AuditEvent::new(
            "gateway",
            "uplink.telemetry_dropped",
            subject(messages),
            Outcome::Info,
        )
        .with_detail(json!({"count": count, "policy": "drop_oldest", "messages": listed(messages)})),
        OutboxNotice::Recovered { rows } => {
            AuditEvent::new("gateway", "uplink.outbox_recovered", "outbox", Outcome::Info)
                .with_detail(json!({"rows": rows}))
        }
    }
}

/// A [`NoticeHook`] appending each notice to `audit`. It runs on the outbox
/// thread (a blocking context), after the outbox transaction committed.
#[must_use]
pub fn audit_hook(audit: AuditLog) -> NoticeHook {
    std::sync::Arc::new(move |notice: OutboxNotice| {
        if let Err(e) = audit.append(&audit_event(&notice)) {
            tracing::error!(error = %e, ?notice, "cannot write outbox alert to the audit log");
        }
    })
}
