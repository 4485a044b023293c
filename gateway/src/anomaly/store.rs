//! Stored alerts: the `anomaly_alerts` table (migration 0007), each insert,
//! acknowledgement and release with its audit row in the same transaction.
//!
//! The store owns its own connection (SQLite in WAL serves the gateway's
//! several connections); its methods block, so async code calls the
//! `_async` variants. The upstream publisher reads unpublished alerts in id
//! order and marks them once the upstream broker acknowledged them, so an
//! alert raised while the uplink is down is sent when it comes back.

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use wardgate_protocol::DeviceId;

use super::alert::{Alert, AlertKind, Finding};
use crate::audit::{append_in, AuditEvent, Outcome};
use crate::config::ResponseAction;

/// Actor of the detector's audit rows.
pub const DETECTOR_ACTOR: &str = "gateway:anomaly";

/// What went wrong with the alert store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Open(#[from] crate::db::DbError),
    /// A query failed.
    #[error(
        "alert store database error: {0}; check disk space and permissions of storage.data_dir"
    )]
    Sqlite(#[from] rusqlite::Error),
    /// The audit row could not be written (the change was rolled back).
    #[error("alert audit row could not be written")]
    Audit(#[source] crate::audit::AuditError),
    /// No alert has this id.
    #[error("no alert with id {0}; list alerts with GET /api/v1/alerts")]
    NotFound(i64),
    /// The connection lock was poisoned.
    #[error("alert store lock poisoned; restart the gateway")]
    Poisoned,
    /// The blocking task failed.
    #[error("alert store task failed: {0}")]
    Join(String),
}

/// Handle on the alert table; cheap to clone.
#[derive(Clone)]
pub struct AlertStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for AlertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertStore").finish_non_exhaustive()
    }
}

fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

const SELECT: &str = "SELECT id, ts, device_id, subject, kind, score, evidence, response, quarantined, acknowledged_at, acknowledged_by, released_at, released_by FROM anomaly_alerts";

fn row_to_alert(r: &rusqlite::Row<'_>) -> rusqlite::Result<Alert> {
    let bad = |col: usize, what: String| {
        rusqlite::Error::FromSqlConversionFailure(
            col,
            rusqlite::types::Type::Text,
            Box::new(std::io::Error::other(what)),
        )
    };
    let device: Option<String> = r.get(2)?;
    let kind: String = r.get(4)?;
    let evidence: String = r.get(6)?;
    let response: String = r.get(7)?;
    Ok(Alert {
        id: r.get(0)?,
        at: ms_to_time(r.get(1)?),
        device: device
            .map(|d| DeviceId::parse(&d).map_err(|e| bad(2, e.to_string())))
            .transpose()?,
        subject: r.get(3)?,
        kind: AlertKind::parse(&kind).ok_or_else(|| bad(4, format!("unknown kind {kind}")))?,
        score: r.get(5)?,
        evidence: serde_json::from_str(&evidence).map_err(|e| bad(6, e.to_string()))?,
        response: match response.as_str() {
            "quarantine" => ResponseAction::Quarantine,
            _ => ResponseAction::Alert,
        },
        quarantined: r.get::<_, i64>(8)? == 1,
        acknowledged_at: r.get::<_, Option<i64>>(9)?.map(ms_to_time),
        acknowledged_by: r.get(10)?,
        released_at: r.get::<_, Option<i64>>(11)?.map(ms_to_time),
        released_by: r.get(12)?,
    })
}

fn response_str(r: ResponseAction) -> &'static str {
    match r {
        ResponseAction::Alert => "alert",
        ResponseAction::Quarantine => "quarantine",
    }
}

impl AlertStore {
    /// Open the store in the gateway database at `path`.
    ///
    /// # Errors
    /// [`StoreError::Open`] if the database cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: Arc::new(Mutex::new(crate::db::open(path)?)),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
    }

    /// Store `finding` with its configured `response`, and its
    /// `anomaly.alert` audit row, in one transaction.
    ///
    /// # Errors
    /// A database or audit error (nothing is stored then).
    pub fn insert(&self, finding: &Finding, response: ResponseAction) -> Result<Alert, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO anomaly_alerts (ts, device_id, subject, kind, score, evidence, response)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                finding.at.timestamp_millis(),
                finding.device.as_ref().map(DeviceId::as_str),
                finding.subject,
                finding.kind.as_str(),
                finding.score,
                finding.evidence.to_string(),
                response_str(response),
            ],
        )?;
        let id = tx.last_insert_rowid();
        append_in(
            &tx,
            &AuditEvent::new(
                DETECTOR_ACTOR,
                "anomaly.alert",
                finding
                    .device
                    .as_ref()
                    .map_or(finding.subject.clone(), ToString::to_string),
                Outcome::Info,
            )
            .with_detail(serde_json::json!({
                "alert_id": id,
                "kind": finding.kind,
                "score": finding.score,
                "evidence": finding.evidence,
                "response": response_str(response),
            })),
        )
        .map_err(StoreError::Audit)?;
        let alert = tx.query_row(&format!("{SELECT} WHERE id = ?1"), [id], row_to_alert)?;
        tx.commit()?;
        Ok(alert)
    }

    /// As [`AlertStore::insert`], from async code.
    ///
    /// # Errors
    /// As [`AlertStore::insert`].
    pub async fn insert_async(
        &self,
        finding: Finding,
        response: ResponseAction,
    ) -> Result<Alert, StoreError> {
        self.blocking(move |s| s.insert(&finding, response)).await
    }

    /// Record that the response quarantined the alert's device.
    ///
    /// # Errors
    /// A database error.
    pub fn mark_quarantined(&self, id: i64) -> Result<(), StoreError> {
        self.lock()?.execute(
            "UPDATE anomaly_alerts SET quarantined = 1 WHERE id = ?1",
            [id],
        )?;
        Ok(())
    }

    /// One alert.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] or a database error.
    pub fn get(&self, id: i64) -> Result<Alert, StoreError> {
        self.lock()?
            .query_row(&format!("{SELECT} WHERE id = ?1"), [id], row_to_alert)
            .optional()?
            .ok_or(StoreError::NotFound(id))
    }

    /// The newest `limit` alerts, newest first; only unacknowledged ones
    /// when `open_only`.
    ///
    /// # Errors
    /// A database error.
    pub fn list(&self, limit: u32, open_only: bool) -> Result<Vec<Alert>, StoreError> {
        let conn = self.lock()?;
        let filter = if open_only {
            " WHERE acknowledged_at IS NULL"
        } else {
            ""
        };
        let mut stmt =
            conn.prepare_cached(&format!("{SELECT}{filter} ORDER BY id DESC LIMIT ?1"))?;
        let rows = stmt.query_map([limit], row_to_alert)?;
        rows.map(|r| r.map_err(StoreError::from)).collect()
    }

    /// As [`AlertStore::list`], from async code.
    ///
    /// # Errors
    /// As [`AlertStore::list`].
    pub async fn list_async(&self, limit: u32, open_only: bool) -> Result<Vec<Alert>, StoreError> {
        self.blocking(move |s| s.list(limit, open_only)).await
    }

    /// Acknowledge alert `id` as `actor` (audited, with `note`). Acknowledging
    /// again changes nothing and writes no row; returns whether it changed.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] or a database / audit error.
    pub fn acknowledge(&self, id: i64, actor: &str, note: &str) -> Result<bool, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<Option<i64>> = tx
            .query_row(
                "SELECT acknowledged_at FROM anomaly_alerts WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        match current {
            None => return Err(StoreError::NotFound(id)),
            Some(Some(_)) => return Ok(false),
            Some(None) => {}
        }
        tx.execute(
            "UPDATE anomaly_alerts SET acknowledged_at = ?2, acknowledged_by = ?3 WHERE id = ?1",
            params![id, Utc::now().timestamp_millis(), actor],
        )?;
        audit_operator(&tx, actor, "anomaly.acknowledge", id, note)?;
        tx.commit()?;
        Ok(true)
    }

    /// Record that `actor` released the device of alert `id` (the registry
    /// change itself is audited by the registry); also acknowledges it.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] or a database / audit error.
    pub fn mark_released(&self, id: i64, actor: &str, note: &str) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = Utc::now().timestamp_millis();
        let n = tx.execute(
            "UPDATE anomaly_alerts SET released_at = ?2, released_by = ?3,
                 acknowledged_at = COALESCE(acknowledged_at, ?2),
                 acknowledged_by = COALESCE(acknowledged_by, ?3)
             WHERE id = ?1",
            params![id, now, actor],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(id));
        }
        audit_operator(&tx, actor, "anomaly.release", id, note)?;
        tx.commit()?;
        Ok(())
    }

    /// Up to `limit` alerts not yet acknowledged by the upstream broker,
    /// oldest first.
    ///
    /// # Errors
    /// A database error.
    pub fn unpublished(&self, limit: u32) -> Result<Vec<Alert>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(&format!(
            "{SELECT} WHERE published_at IS NULL ORDER BY id LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit], row_to_alert)?;
        rows.map(|r| r.map_err(StoreError::from)).collect()
    }

    /// Mark alert `id` as acknowledged by the upstream broker.
    ///
    /// # Errors
    /// A database error.
    pub fn mark_published(&self, id: i64) -> Result<(), StoreError> {
        self.lock()?.execute(
            "UPDATE anomaly_alerts SET published_at = ?2 WHERE id = ?1 AND published_at IS NULL",
            params![id, Utc::now().timestamp_millis()],
        )?;
        Ok(())
    }

    /// As [`AlertStore::unpublished`], from async code.
    ///
    /// # Errors
    /// As [`AlertStore::unpublished`].
    pub async fn unpublished_async(&self, limit: u32) -> Result<Vec<Alert>, StoreError> {
        self.blocking(move |s| s.unpublished(limit)).await
    }

    /// As [`AlertStore::mark_published`], from async code.
    ///
    /// # Errors
    /// As [`AlertStore::mark_published`].
    pub async fn mark_published_async(&self, id: i64) -> Result<(), StoreError> {
        self.blocking(move |s| s.mark_published(id)).await
    }
}

/// The audit row of an operator's action on alert `id`, written in the
/// same transaction as the change.
fn audit_operator(
    tx: &rusqlite::Transaction<'_>,
    actor: &str,
    action: &str,
    id: i64,
    note: &str,
) -> Result<(), StoreError> {
    let event = AuditEvent::new(actor, action, format!("alert:{id}"), Outcome::Allowed)
        .with_detail(serde_json::json!({"alert_id": id, "note": note}));
    append_in(tx, &event).map_err(StoreError::Audit)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;

    fn finding() -> Finding {
        Finding {
            at: Utc::now(),
            device: Some(DeviceId::parse("pump-01").unwrap()),
            subject: "device:pump-01".into(),
            kind: AlertKind::MessageFlood,
            score: 3.5,
            evidence: serde_json::json!({"recent_per_second": 40.0}),
        }
    }

    #[test]
    fn insert_acknowledge_release_are_stored_and_audited() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("gw.db");
        let store = AlertStore::open(&db).unwrap();
        let a = store
            .insert(&finding(), ResponseAction::Quarantine)
            .unwrap();
        assert_eq!(a.kind, AlertKind::MessageFlood);
        assert_eq!(a.response, ResponseAction::Quarantine);
        store.mark_quarantined(a.id).unwrap();
        assert!(store.get(a.id).unwrap().quarantined);
        assert_eq!(store.unpublished(10).unwrap().len(), 1);
        store.mark_published(a.id).unwrap();
        assert!(store.unpublished(10).unwrap().is_empty());
        assert!(store.acknowledge(a.id, "admin:t1", "seen").unwrap());
        assert!(!store.acknowledge(a.id, "admin:t1", "again").unwrap());
        assert_eq!(store.list(10, true).unwrap().len(), 0);
        store.mark_released(a.id, "admin:t1", "checked").unwrap();
        let got = store.get(a.id).unwrap();
        assert_eq!(got.released_by.as_deref(), Some("admin:t1"));
        assert!(matches!(
            store.acknowledge(99, "x", ""),
            Err(StoreError::NotFound(99))
        ));

        let audit = AuditLog::open(&db).unwrap();
        let actions: Vec<String> = audit
            .recent(10)
            .unwrap()
            .into_iter()
            .map(|r| r.action)
            .collect();
        for a in ["anomaly.alert", "anomaly.acknowledge", "anomaly.release"] {
            assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
        }
        assert!(audit.verify().unwrap().is_intact());
    }
}
