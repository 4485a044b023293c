//! Audit rows as RFC 5424 syslog messages, for a SIEM that reads syslog
//! rather than JSON lines (`gateway audit export --format syslog`).
//!
//! One message per row: facility `log audit` (13), severity `warning` for
//! a refusal and `notice` otherwise; APP-NAME `wardgate-gateway`; MSGID the
//! action (`device.enroll`, `edge.refused`, ...); the row's fields as
//! structured data `[wardgate@32473 ...]` with stable names (the same as
//! the JSON export's); the detail JSON as the message. 32473 is the
//! enterprise number RFC 5612 reserves for documentation: a site that
//! registers its own number may rewrite the SD-ID in its collector.

use chrono::SecondsFormat;

use super::AuditRecord;

/// Facility `log audit` (RFC 5424 section 6.2.1).
const FACILITY_LOG_AUDIT: u8 = 13;
/// Severity `warning`.
const WARNING: u8 = 4;
/// Severity `notice`.
const NOTICE: u8 = 5;

/// The structured-data id of the row's fields.
pub const SD_ID: &str = "wardgate@32473";

/// `record` as one RFC 5424 line (without the newline), from `hostname`.
#[must_use]
pub fn line(record: &AuditRecord, hostname: &str) -> String {
    let severity = if record.outcome == "refused" {
        WARNING
    } else {
        NOTICE
    };
    let pri = u16::from(FACILITY_LOG_AUDIT) * 8 + u16::from(severity);
    let ts = record.ts.to_rfc3339_opts(SecondsFormat::Millis, true);
    let params = [
        ("id", record.id.to_string()),
        ("actor", record.actor.clone()),
        ("subject", record.subject.clone()),
        ("outcome", record.outcome.clone()),
        ("prev_hash", record.prev_hash.clone()),
        ("hash", record.hash.clone()),
    ]
    .iter()
    .map(|(name, value)| format!(" {name}=\"{}\"", param_value(value)))
    .collect::<String>();
    format!(
        "<{pri}>1 {ts} {} wardgate-gateway - {} [{SD_ID}{params}] {}",
        header_field(hostname),
        header_field(&record.action),
        record.detail
    )
}

/// A PARAM-VALUE: `"`, `\` and `]` escaped with a backslash (section 6.3.3).
fn param_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A header field: printable US-ASCII without spaces, at most 48
/// characters (MSGID's limit, the shortest), else `-` (the nil value).
fn header_field(value: &str) -> String {
    let ok =
        !value.is_empty() && value.len() <= 48 && value.bytes().all(|b| (33..=126).contains(&b));
    if ok {
        value.to_owned()
    } else {
        "-".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn record(outcome: &str, subject: &str) -> AuditRecord {
        AuditRecord {
            id: 7,
            ts: chrono::Utc.timestamp_millis_opt(1_800_000_000_250).unwrap(),
            actor: "admin:ops".into(),
            action: "device.quarantine".into(),
            subject: subject.into(),
            outcome: outcome.into(),
            detail: r#"{"reason":"drill"}"#.into(),
            prev_hash: "a".repeat(64),
            hash: "b".repeat(64),
        }
    }

    #[test]
    fn a_row_is_one_rfc5424_message_with_its_fields_as_structured_data() {
        let l = line(&record("allowed", "device:pump-01"), "ward-3");
        assert!(
            l.starts_with("<109>1 2027-01-15T08:00:00.250Z ward-3 wardgate-gateway - device.quarantine [wardgate@32473 id=\"7\" actor=\"admin:ops\" subject=\"device:pump-01\" outcome=\"allowed\""),
            "{l}"
        );
        assert!(l.ends_with(r#"] {"reason":"drill"}"#), "{l}");
        // A refusal is a warning.
        assert!(line(&record("refused", "x"), "h").starts_with("<108>1 "));
    }

    #[test]
    fn values_that_would_break_the_framing_are_escaped_or_nil() {
        let l = line(&record("allowed", "peer:\"]\\"), "host with spaces");
        assert!(l.contains(r#"subject="peer:\"\]\\""#), "{l}");
        assert!(l.contains(" - wardgate-gateway - "), "{l}");
    }
}
