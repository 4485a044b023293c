//! Outbox and upstream-link alerts into the hash-chained audit log.
//!
//! Every [`UplinkNotice`] becomes one audit row (actor `gateway`), so a full
//! outbox, each refused or dropped batch (with the device ids and sequence
//! numbers concerned), the recovery, and each upstream link up / down (or
//! refused, e.g. a TLS failure) are on record; never the vitals.

use serde_json::json;
use wardgate_protocol::DeviceId;

use super::outbox::{NoticeHook, UplinkNotice};
use crate::audit::{AuditEvent, AuditLog, Outcome};

/// Most (device, seq) pairs listed in one audit row; the count is exact.
const MAX_LISTED: usize = 200;

/// The audit event for `notice`.
#[must_use]
pub fn audit_event(notice: &UplinkNotice) -> AuditEvent {
    let listed = |m: &[(DeviceId, u64)]| {
        m.iter()
            .take(MAX_LISTED)
            .map(|(d, s)| json!({"device": d, "seq": s}))
            .collect::<Vec<_>>()
    };
    let subject = |m: &[(DeviceId, u64)]| match m.first() {
        Some((d, _)) if m.iter().all(|(x, _)| x == d) => d.to_string(),
        _ => "outbox".to_owned(),
    };
    match notice {
        UplinkNotice::Full { policy, detail } => {
            AuditEvent::new("gateway", "uplink.outbox_full", "outbox", Outcome::Info)
                .with_detail(json!({"policy": policy.to_string(), "bound": detail}))
        }
        UplinkNotice::Refused {
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
        UplinkNotice::Dropped { count, messages } => AuditEvent::new(
            "gateway",
            "uplink.telemetry_dropped",
            subject(messages),
            Outcome::Info,
        )
        .with_detail(json!({"count": count, "policy": "drop_oldest", "messages": listed(messages)})),
        UplinkNotice::LinkUp { broker, backlog } => {
            AuditEvent::new("gateway", "uplink.connect", broker.clone(), Outcome::Allowed)
                .with_detail(json!({"outbox_rows": backlog}))
        }
        UplinkNotice::LinkDown {
            broker,
            was_connected,
            error,
        } => {
            if *was_connected {
                AuditEvent::new("gateway", "uplink.disconnect", broker.clone(), Outcome::Info)
                    .with_detail(json!({"error": error}))
            } else {
                AuditEvent::new("gateway", "uplink.connect", broker.clone(), Outcome::Refused)
                    .with_detail(json!({"error": error}))
            }
        }
        UplinkNotice::Recovered { rows } => {
            AuditEvent::new("gateway", "uplink.outbox_recovered", "outbox", Outcome::Info)
                .with_detail(json!({"rows": rows}))
        }
    }
}

/// A [`NoticeHook`] appending each notice to `audit`. It runs on the outbox
/// thread (a blocking context), after the outbox transaction committed.
#[must_use]
pub fn audit_hook(audit: AuditLog) -> NoticeHook {
    std::sync::Arc::new(move |notice: UplinkNotice| {
        if let Err(e) = audit.append(&audit_event(&notice)) {
            tracing::error!(error = %e, ?notice, "cannot write outbox alert to the audit log");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::id;
    use crate::uplink::FullPolicy;

    #[test]
    fn notices_map_to_audit_events_without_vitals() {
        let refused = audit_event(&UplinkNotice::Refused {
            count: 2,
            messages: vec![(id("pump-1"), 7), (id("pump-1"), 8)],
            detail: "20 rows waiting, limit uplink.outbox_max_rows = 20".into(),
        });
        assert_eq!(refused.action, "uplink.telemetry_refused");
        assert_eq!(refused.subject, "pump-1");
        assert_eq!(refused.outcome, Outcome::Refused);
        assert_eq!(refused.detail["messages"][1]["seq"], 8);
        let mixed = audit_event(&UplinkNotice::Dropped {
            count: 2,
            messages: vec![(id("a"), 1), (id("b"), 1)],
        });
        assert_eq!(mixed.subject, "outbox");
        let full = audit_event(&UplinkNotice::Full {
            policy: FullPolicy::DropOldest,
            detail: "x".into(),
        });
        assert_eq!(full.detail["policy"], "drop_oldest");
        let down = audit_event(&UplinkNotice::LinkDown {
            broker: "h:8883".into(),
            was_connected: false,
            error: "tls".into(),
        });
        assert_eq!(
            (down.action.as_str(), down.outcome),
            ("uplink.connect", Outcome::Refused)
        );
        // Long lists are capped, the count stays exact.
        let many: Vec<(DeviceId, u64)> = (0..1000).map(|i| (id("d"), i)).collect();
        let big = audit_event(&UplinkNotice::Dropped {
            count: 1000,
            messages: many,
        });
        assert_eq!(big.detail["count"], 1000);
        assert_eq!(
            big.detail["messages"].as_array().map(Vec::len),
            Some(MAX_LISTED)
        );
    }
}
