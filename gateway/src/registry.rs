//! The device registry: which devices are enrolled, their identity data and
//! their state (active, quarantined, revoked).
//!
//! Every change writes an audit row in the same transaction and is announced
//! on a broadcast channel ([`Registry::subscribe`]); the edge reacts to it on
//! the live connection at once (a revoked device is disconnected, a
//! quarantined one confined). Methods block on SQLite: call them from
//! `spawn_blocking` or a thread, or use the `_async` variants.

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use wardgate_protocol::DeviceId;

use crate::audit::{append_in, AuditEvent, AuditRecord, Outcome};

/// Capacity of the change channel; a subscriber that falls further behind
/// gets `Lagged` and must re-read the states it cares about.
pub const CHANGE_CHANNEL_CAPACITY: usize = 1024;

/// What went wrong in the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The database could not be opened.
    #[error(transparent)]
    Open(#[from] crate::db::DbError),
    /// A query failed.
    #[error("device registry database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The audit row could not be written (the change was rolled back).
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The device is not enrolled.
    #[error("device {0} is not enrolled; enrol it with `gateway device enroll`")]
    NotFound(DeviceId),
    /// The device is already enrolled.
    #[error("device {0} is already enrolled; use `gateway device activate` or pick another id")]
    AlreadyEnrolled(DeviceId),
    /// A field is invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A revoked device cannot be re-activated or quarantined.
    #[error("device {0} is revoked; revocation is final: enrol the device under a new id with a new certificate")]
    Revoked(DeviceId),
    /// The connection lock was poisoned.
    #[error("registry connection lock poisoned; restart the gateway")]
    Poisoned,
    /// The blocking task failed.
    #[error("registry task failed: {0}")]
    Join(String),
}

/// Registry state of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// May connect and use its whole subtree.
    Active,
    /// May connect, but only publish status and receive cmd / OTA offers.
    Quarantined,
    /// Refused and disconnected. Final.
    Revoked,
}

impl DeviceState {
    /// The stored text.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Active => "active",
            DeviceState::Quarantined => "quarantined",
            DeviceState::Revoked => "revoked",
        }
    }

    /// Parse the stored text.
    #[must_use]
    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "quarantined" => Some(Self::Quarantined),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

impl std::fmt::Display for DeviceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Data to enrol a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewDevice {
    /// Device id (must match its certificate).
    #[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{1,64}$", example = "pump-01")]
    pub id: DeviceId,
    /// Model name.
    pub model: String,
    /// Hardware id firmware is built for.
    pub hardware_id: String,
    /// Manufacturer (its TUF delegation name).
    pub manufacturer: String,
    /// Installed firmware version.
    pub firmware_version: String,
    /// SHA-256 (hex) of the device's DER certificate; `None` accepts any
    /// certificate the device CA issued for this id.
    pub cert_fingerprint: Option<String>,
}

/// An enrolled device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceRecord {
    /// Device id.
    #[schema(value_type = String)]
    pub id: DeviceId,
    /// Model name.
    pub model: String,
    /// Hardware id.
    pub hardware_id: String,
    /// Manufacturer.
    pub manufacturer: String,
    /// Installed firmware version.
    pub firmware_version: String,
    /// Pinned certificate fingerprint, if any.
    pub cert_fingerprint: Option<String>,
    /// Current state.
    pub state: DeviceState,
    /// When enrolled.
    pub enrolled_at: DateTime<Utc>,
    /// Last registry change.
    pub updated_at: DateTime<Utc>,
    /// Last time the device connected or sent traffic.
    pub last_seen: Option<DateTime<Utc>>,
    /// Highest `seq` accepted in a finished session.
    pub last_seq: Option<u64>,
}

/// A state change, as broadcast to live connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceChange {
    /// Which device.
    pub device: DeviceId,
    /// Its new state.
    pub state: DeviceState,
}

/// Handle on the registry; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    conn: Arc<Mutex<Connection>>,
    changes: broadcast::Sender<DeviceChange>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn check_text(field: &'static str, value: &str) -> Result<(), RegistryError> {
    if value.is_empty() || value.len() > 128 || value.chars().any(char::is_control) {
        return Err(RegistryError::Invalid {
            field,
            reason: "must be 1-128 characters without control characters".into(),
        });
    }
    Ok(())
}

const SELECT: &str = "SELECT id, model, hardware_id, manufacturer, firmware_version, cert_fingerprint, state, enrolled_at, updated_at, last_seen, last_seq FROM devices";

fn row_to_device(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let id: String = r.get(0)?;
    let state: String = r.get(6)?;
    let bad = |col: usize, what: String| {
        rusqlite::Error::FromSqlConversionFailure(
            col,
            rusqlite::types::Type::Text,
            Box::new(std::io::Error::other(what)),
        )
    };
    Ok(DeviceRecord {
        id: DeviceId::parse(&id).map_err(|e| bad(0, e.to_string()))?,
        model: r.get(1)?,
        hardware_id: r.get(2)?,
        manufacturer: r.get(3)?,
        firmware_version: r.get(4)?,
        cert_fingerprint: r.get(5)?,
        state: DeviceState::from_db(&state)
            .ok_or_else(|| bad(6, format!("unknown state {state}")))?,
        enrolled_at: ms_to_time(r.get(7)?),
        updated_at: ms_to_time(r.get(8)?),
        last_seen: r.get::<_, Option<i64>>(9)?.map(ms_to_time),
        last_seq: r
            .get::<_, Option<i64>>(10)?
            .and_then(|v| u64::try_from(v).ok()),
    })
}

impl Registry {
    /// Open the registry in the gateway database at `path`.
    ///
    /// # Errors
    /// [`RegistryError::Open`] if the database cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        Ok(Self::from_connection(crate::db::open(path)?))
    }

    /// Wrap an already opened and migrated connection.
    #[must_use]
    pub fn from_connection(conn: Connection) -> Self {
        let (changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        Self {
            conn: Arc::new(Mutex::new(conn)),
            changes,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, RegistryError> {
        self.conn.lock().map_err(|_| RegistryError::Poisoned)
    }

    /// Receive every state change made through this handle (or its clones).
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<DeviceChange> {
        self.changes.subscribe()
    }

    /// Enrol a device as active; `actor` is recorded in the audit row.
    ///
    /// # Errors
    /// [`RegistryError::AlreadyEnrolled`], [`RegistryError::Invalid`], or a
    /// database error.
    pub fn enroll(&self, device: &NewDevice, actor: &str) -> Result<DeviceRecord, RegistryError> {
        check_text("model", &device.model)?;
        check_text("hardware_id", &device.hardware_id)?;
        check_text("manufacturer", &device.manufacturer)?;
        check_text("firmware_version", &device.firmware_version)?;
        let fingerprint = match &device.cert_fingerprint {
            Some(f) => {
                let f = f.to_ascii_lowercase().replace(':', "");
                if f.len() != 64 || !f.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(RegistryError::Invalid {
                        field: "cert_fingerprint",
                        reason: "must be a SHA-256 in hex (64 digits)".into(),
                    });
                }
                Some(f)
            }
            None => None,
        };
        let now = Utc::now().timestamp_millis();
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: bool = tx
            .query_row(
                "SELECT 1 FROM devices WHERE id = ?1",
                [device.id.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if exists {
            return Err(RegistryError::AlreadyEnrolled(device.id.clone()));
        }
        tx.execute(
            "INSERT INTO devices (id, model, hardware_id, manufacturer, firmware_version, cert_fingerprint, state, enrolled_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'active', ?7, ?7)",
            params![
                device.id.as_str(),
                device.model,
                device.hardware_id,
                device.manufacturer,
                device.firmware_version,
                fingerprint,
                now
            ],
        )?;
        append_in(
            &tx,
            &AuditEvent::new(
                actor,
                "registry.enroll",
                device.id.as_str(),
                Outcome::Allowed,
            )
            .with_detail(serde_json::json!({
                "model": device.model,
                "manufacturer": device.manufacturer,
                "hardware_id": device.hardware_id,
                "firmware_version": device.firmware_version,
                "cert_pinned": fingerprint.is_some(),
            })),
        )?;
        let record = tx.query_row(
            &format!("{SELECT} WHERE id = ?1"),
            [device.id.as_str()],
            row_to_device,
        )?;
        tx.commit()?;
        tracing::info!(device_id = %device.id, %actor, "device enrolled");
        Ok(record)
    }

    /// Look a device up.
    ///
    /// # Errors
    /// A database error; an unknown device is `Ok(None)`.
    pub fn get(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, RegistryError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(&format!("{SELECT} WHERE id = ?1"))?;
        Ok(stmt.query_row([id.as_str()], row_to_device).optional()?)
    }

    /// Look a device up from async code.
    ///
    /// # Errors
    /// As [`Registry::get`].
    pub async fn get_async(&self, id: DeviceId) -> Result<Option<DeviceRecord>, RegistryError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.get(&id))
            .await
            .map_err(|e| RegistryError::Join(e.to_string()))?
    }

    /// All enrolled devices, by id.
    ///
    /// # Errors
    /// A database error.
    pub fn list(&self) -> Result<Vec<DeviceRecord>, RegistryError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY id"))?;
        let rows = stmt.query_map([], row_to_device)?;
        rows.map(|r| r.map_err(RegistryError::from)).collect()
    }

    /// Change a device's state, write the audit row (with `reason`) and
    /// announce the change to live connections. Setting the current state
    /// again is a no-op without an audit row.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], [`RegistryError::Revoked`] (revocation
    /// is final), or a database error.
    pub fn set_state(
        &self,
        id: &DeviceId,
        state: DeviceState,
        actor: &str,
        reason: &str,
    ) -> Result<Option<AuditRecord>, RegistryError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<String> = tx
            .query_row(
                "SELECT state FROM devices WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        let current = current
            .and_then(|s| DeviceState::from_db(&s))
            .ok_or_else(|| RegistryError::NotFound(id.clone()))?;
        if current == state {
            return Ok(None);
        }
        if current == DeviceState::Revoked {
            return Err(RegistryError::Revoked(id.clone()));
        }
        tx.execute(
            "UPDATE devices SET state = ?2, updated_at = ?3 WHERE id = ?1",
            params![id.as_str(), state.as_str(), Utc::now().timestamp_millis()],
        )?;
        let action = match state {
            DeviceState::Active => "registry.activate",
            DeviceState::Quarantined => "registry.quarantine",
            DeviceState::Revoked => "registry.revoke",
        };
        let record = append_in(
            &tx,
            &AuditEvent::new(actor, action, id.as_str(), Outcome::Allowed).with_detail(
                serde_json::json!({"from": current.as_str(), "to": state.as_str(), "reason": reason}),
            ),
        )?;
        tx.commit()?;
        drop(conn);
        tracing::info!(device_id = %id, from = %current, to = %state, %actor, "device state changed");
        // No receivers is fine: nobody is connected.
        let _ = self.changes.send(DeviceChange {
            device: id.clone(),
            state,
        });
        Ok(Some(record))
    }

    /// [`Registry::set_state`] from async code.
    ///
    /// # Errors
    /// As [`Registry::set_state`].
    pub async fn set_state_async(
        &self,
        id: DeviceId,
        state: DeviceState,
        actor: String,
        reason: String,
    ) -> Result<Option<AuditRecord>, RegistryError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.set_state(&id, state, &actor, &reason))
            .await
            .map_err(|e| RegistryError::Join(e.to_string()))?
    }

    /// Announce a change made elsewhere (another process) to live sessions.
    pub fn announce(&self, change: DeviceChange) {
        let _ = self.changes.send(change);
    }

    /// Record that the device was seen now.
    ///
    /// # Errors
    /// A database error.
    pub fn touch_last_seen(&self, id: &DeviceId) -> Result<(), RegistryError> {
        let conn = self.lock()?;
        conn.prepare_cached("UPDATE devices SET last_seen = ?2 WHERE id = ?1")?
            .execute(params![id.as_str(), Utc::now().timestamp_millis()])?;
        Ok(())
    }

    /// What is stored about `id`'s recent messages for replay protection:
    /// the highest stored `seq` and the digests of the newest messages
    /// (written by the outbox thread with each message, see
    /// [`crate::stored_seq`]; the edge decides with it in `crate::edge::replay`).
    ///
    /// # Errors
    /// A database error.
    pub fn stored_seqs(
        &self,
        id: &DeviceId,
    ) -> Result<crate::stored_seq::StoredSeqs, RegistryError> {
        use crate::stored_seq::{PayloadDigest, StoredSeqs};
        let conn = self.lock()?;
        let last: Option<i64> = conn
            .prepare_cached("SELECT last_seq FROM devices WHERE id = ?1")?
            .query_row([id.as_str()], |r| r.get(0))
            .optional()?
            .flatten();
        let mut stored = StoredSeqs::default();
        let mut recent = conn.prepare_cached(
            "SELECT seq, digest FROM device_seq_recent WHERE device_id = ?1 ORDER BY seq",
        )?;
        let rows = recent.query_map([id.as_str()], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        for row in rows {
            let (seq, digest) = row?;
            if let (Ok(seq), Some(digest)) =
                (u64::try_from(seq), PayloadDigest::from_slice(&digest))
            {
                stored.push(seq, digest);
            }
        }
        if let Some(last) = last.and_then(|l| u64::try_from(l).ok()) {
            stored.last = Some(stored.last.map_or(last, |s| s.max(last)));
        }
        Ok(stored)
    }

    /// Save the highest accepted `seq` (never lowers it).
    ///
    /// # Errors
    /// A database error.
    pub fn save_last_seq(&self, id: &DeviceId, seq: u64) -> Result<(), RegistryError> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let conn = self.lock()?;
        conn.prepare_cached(
            "UPDATE devices SET last_seq = ?2 WHERE id = ?1 AND (last_seq IS NULL OR last_seq < ?2)",
        )?
        .execute(params![id.as_str(), seq])?;
        Ok(())
    }

    /// Update the recorded firmware version (after a successful update).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] or a database error.
    pub fn set_firmware_version(
        &self,
        id: &DeviceId,
        version: &str,
        actor: &str,
    ) -> Result<(), RegistryError> {
        check_text("firmware_version", version)?;
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE devices SET firmware_version = ?2, updated_at = ?3 WHERE id = ?1",
            params![id.as_str(), version, Utc::now().timestamp_millis()],
        )?;
        if n == 0 {
            return Err(RegistryError::NotFound(id.clone()));
        }
        append_in(
            &tx,
            &AuditEvent::new(actor, "registry.firmware", id.as_str(), Outcome::Info)
                .with_detail(serde_json::json!({"firmware_version": version})),
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// A subscription of a persistent device session: topic filter and QoS.
pub type StoredSubscription = (String, u8);

/// Persistent MQTT sessions of devices, kept so that they survive a gateway
/// crash (`crate::edge::persistent_session` decides with them).
impl Registry {
    /// Record that `id` connected: with `persistent` (clean session off) its
    /// session begins unless one is stored; without, any stored session of
    /// it ends.
    ///
    /// # Errors
    /// A database error.
    pub fn session_connected(&self, id: &DeviceId, persistent: bool) -> Result<(), RegistryError> {
        let conn = self.lock()?;
        if persistent {
            conn.prepare_cached(
                "INSERT INTO device_sessions (device_id, started_at) VALUES (?1, ?2) \
                 ON CONFLICT (device_id) DO NOTHING",
            )?
            .execute(params![id.as_str(), Utc::now().to_rfc3339()])?;
        } else {
            conn.prepare_cached("DELETE FROM device_sessions WHERE device_id = ?1")?
                .execute([id.as_str()])?;
        }
        Ok(())
    }

    /// The subscriptions of `id`'s stored persistent session, or `None` if
    /// it has none.
    ///
    /// # Errors
    /// A database error.
    pub fn session_subscriptions(
        &self,
        id: &DeviceId,
    ) -> Result<Option<Vec<StoredSubscription>>, RegistryError> {
        let conn = self.lock()?;
        let exists = conn
            .prepare_cached("SELECT 1 FROM device_sessions WHERE device_id = ?1")?
            .query_row([id.as_str()], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let mut stmt = conn.prepare_cached(
            "SELECT filter, qos FROM device_session_subscriptions WHERE device_id = ?1 ORDER BY filter",
        )?;
        let subs = stmt
            .query_map([id.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u8>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(subs))
    }

    /// Record subscriptions (`subscribed`) and unsubscriptions
    /// (`unsubscribed`) of `id`'s persistent session, if it has one.
    ///
    /// # Errors
    /// A database error.
    pub fn session_subscriptions_changed(
        &self,
        id: &DeviceId,
        subscribed: &[StoredSubscription],
        unsubscribed: &[String],
    ) -> Result<(), RegistryError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        {
            let mut add = tx.prepare_cached(
                "INSERT INTO device_session_subscriptions (device_id, filter, qos) \
                 SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM device_sessions WHERE device_id = ?1) \
                 ON CONFLICT (device_id, filter) DO UPDATE SET qos = excluded.qos",
            )?;
            for (filter, qos) in subscribed {
                add.execute(params![id.as_str(), filter, qos])?;
            }
            let mut remove = tx.prepare_cached(
                "DELETE FROM device_session_subscriptions WHERE device_id = ?1 AND filter = ?2",
            )?;
            for filter in unsubscribed {
                remove.execute(params![id.as_str(), filter])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;

    fn new_device(id: &str) -> NewDevice {
        NewDevice {
            id: DeviceId::parse(id).unwrap(),
            model: "P-100".into(),
            hardware_id: "acme-p100-revB".into(),
            manufacturer: "acme".into(),
            firmware_version: "1.0.0".into(),
            cert_fingerprint: None,
        }
    }

    #[test]
    fn enroll_state_changes_audit_and_notify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db");
        let reg = Registry::open(&path).unwrap();
        let mut rx = reg.subscribe();
        let dev = reg.enroll(&new_device("pump-01"), "cli").unwrap();
        assert_eq!(dev.state, DeviceState::Active);
        assert!(matches!(
            reg.enroll(&new_device("pump-01"), "cli"),
            Err(RegistryError::AlreadyEnrolled(_))
        ));
        let id = dev.id.clone();
        reg.set_state(&id, DeviceState::Quarantined, "cli", "odd traffic")
            .unwrap();
        assert_eq!(
            rx.try_recv().unwrap(),
            DeviceChange {
                device: id.clone(),
                state: DeviceState::Quarantined
            }
        );
        assert!(reg
            .set_state(&id, DeviceState::Quarantined, "cli", "again")
            .unwrap()
            .is_none());
        reg.set_state(&id, DeviceState::Revoked, "cli", "stolen")
            .unwrap();
        assert!(matches!(
            reg.set_state(&id, DeviceState::Active, "cli", "oops"),
            Err(RegistryError::Revoked(_))
        ));
        reg.touch_last_seen(&id).unwrap();
        let got = reg.get(&id).unwrap().unwrap();
        assert_eq!(got.state, DeviceState::Revoked);
        assert!(got.last_seen.is_some());
        assert_eq!(reg.list().unwrap().len(), 1);

        let audit = AuditLog::open(&path).unwrap();
        let actions: Vec<String> = audit
            .find("pump-01", None)
            .unwrap()
            .into_iter()
            .map(|r| r.action)
            .collect();
        assert_eq!(
            actions,
            ["registry.enroll", "registry.quarantine", "registry.revoke"]
        );
        assert!(audit.verify().unwrap().is_intact());
    }

    #[test]
    fn refuses_bad_fields_and_unknown_devices() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(&dir.path().join("gw.db")).unwrap();
        let mut d = new_device("pump-02");
        d.cert_fingerprint = Some("zz".into());
        assert!(matches!(
            reg.enroll(&d, "cli"),
            Err(RegistryError::Invalid {
                field: "cert_fingerprint",
                ..
            })
        ));
        let mut d = new_device("pump-02");
        d.model = String::new();
        assert!(reg.enroll(&d, "cli").is_err());
        let ghost = DeviceId::parse("ghost").unwrap();
        assert!(matches!(
            reg.set_state(&ghost, DeviceState::Revoked, "cli", ""),
            Err(RegistryError::NotFound(_))
        ));
        assert!(reg.get(&ghost).unwrap().is_none());
    }
}
