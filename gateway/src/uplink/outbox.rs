//! The durable, encrypted, bounded telemetry outbox.
//!
//! A dedicated thread owns the outbox's SQLite connection. Callers send it
//! commands over a bounded channel; it takes every command waiting at that
//! moment and applies them in one transaction (group commit), so a burst of
//! devices costs one fsync, not one per message. [`Outbox::append`] (and the
//! [`TelemetrySink`] impl the edge awaits) resolves only after that commit:
//! a message a device saw acknowledged is on disk.
//!
//! Rows leave only through [`Outbox::ack`], which the bridge calls after the
//! upstream broker acknowledged every rendering of the row. Row ids grow
//! monotonically (SQLite `AUTOINCREMENT`), and the bridge sends in id order,
//! so per-device order is kept.
//!
//! The outbox is bounded in rows and bytes. When an append does not fit, the
//! configured [`FullPolicy`] decides: `refuse` the new message with a reason
//! the edge passes on, or `drop_oldest` non-critical rows to make room.
//! Either way the event is logged at error, counted, and reported through
//! the [`NoticeHook`] that the gateway turns into an audit row: never a
//! silent loss.

mod handoff;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, Notify};

use wardgate_protocol::message::Telemetry;
use wardgate_protocol::vitals::VitalKind;
use wardgate_protocol::DeviceId;

use super::error::UplinkError;
use super::metrics::UplinkMetrics;
use super::seal::OutboxKey;
use crate::sink::{
    AcceptFuture, AcceptedTelemetry, PayloadDigest, SinkError, StoreRequest, StoredFuture,
    SubmitFuture, TelemetrySink,
};

/// Capacity of the command channel; senders wait (async) when it is full.
const CHANNEL_CAPACITY: usize = 4096;

/// What happens to new telemetry when the outbox is at its bound (a
/// configuration value, `uplink.full_policy`, so it is defined with the
/// other settings).
pub use crate::config::FullPolicy;
pub use handoff::Taken;

/// Bounds and policy of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Most rows kept.
    pub max_rows: u64,
    /// Most sealed payload bytes kept.
    pub max_bytes: u64,
    /// Behaviour when an append does not fit.
    pub full_policy: FullPolicy,
    /// Messages carrying any reading of these kinds are critical: never
    /// dropped by `drop_oldest`.
    pub critical_kinds: Vec<VitalKind>,
}

/// An event of the outbox or the upstream link the operator must see in
/// the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkNotice {
    /// The outbox reached its bound (sent once per episode).
    Full {
        /// The configured policy now in effect.
        policy: FullPolicy,
        /// Which bound was hit.
        detail: String,
    },
    /// Non-critical messages were deleted to make room (one per commit).
    Dropped {
        /// How many rows.
        count: u64,
        /// Devices whose messages were dropped, with the sequence numbers
        /// (a row whose stored device id is not valid is counted, not
        /// listed).
        messages: Vec<(DeviceId, u64)>,
    },
    /// Messages were refused in one commit.
    Refused {
        /// How many.
        count: u64,
        /// Devices whose messages were refused, with the sequence numbers.
        messages: Vec<(DeviceId, u64)>,
        /// Which bound was hit.
        detail: String,
    },
    /// The outbox has room again after being full.
    Recovered {
        /// Rows waiting now.
        rows: u64,
    },
    /// A session with the upstream broker came up.
    LinkUp {
        /// `host:port` of the upstream broker.
        broker: String,
        /// Rows waiting in the outbox at that moment.
        backlog: u64,
    },
    /// The upstream link went down, or could not be established (sent once
    /// per outage, not per retry).
    LinkDown {
        /// `host:port` of the upstream broker.
        broker: String,
        /// Whether a session had been up (else: the first attempt failed).
        was_connected: bool,
        /// The error (TLS refusal, connection refused, ...).
        error: String,
    },
}

/// Receives [`UplinkNotice`]s (on the outbox thread, or a blocking thread
/// of the bridge); the gateway writes them to the audit log. Must not block
/// for long.
pub type NoticeHook = Arc<dyn Fn(UplinkNotice) + Send + Sync>;

/// One message waiting to go upstream, opened for sending.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    /// Outbox row id (monotonic).
    pub id: i64,
    /// The device it came from (parsed when the row was read back).
    pub device_id: DeviceId,
    /// The device's sequence number.
    pub seq: u64,
    /// The device topic it was published on.
    pub topic: String,
    /// When the gateway received it.
    pub received_at: DateTime<Utc>,
    /// The payload as received (decrypted).
    pub payload: Vec<u8>,
}

impl PendingMessage {
    /// The message as the renderers read it.
    #[must_use]
    pub fn message(&self) -> crate::render::Message<'_> {
        crate::render::Message {
            device_id: &self.device_id,
            received_at: self.received_at,
            payload: &self.payload,
        }
    }
}

/// A page of waiting messages from [`Outbox::fetch`].
#[derive(Debug, Clone, Default)]
pub struct FetchPage {
    /// The messages that decrypted, in id order.
    pub messages: Vec<PendingMessage>,
    /// Highest row id read (including rows that did not decrypt).
    pub last_id: Option<i64>,
    /// Rows read, including those that did not decrypt.
    pub scanned: usize,
}

/// A snapshot of the outbox, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct OutboxDepth {
    /// Rows waiting.
    pub rows: u64,
    /// Sealed bytes waiting.
    pub bytes: u64,
    /// Receive time of the oldest waiting row, Unix ms.
    pub oldest_received_ms: Option<i64>,
}

enum Command {
    Append {
        request: StoreRequest,
        critical: bool,
        reply: oneshot::Sender<Result<Option<i64>, SinkError>>,
    },
    Ack {
        ids: Vec<i64>,
        reply: oneshot::Sender<Result<u64, UplinkError>>,
    },
    Fetch {
        after_id: i64,
        limit: usize,
        reply: oneshot::Sender<Result<FetchPage, UplinkError>>,
    },
}

struct Shared {
    notify: Notify,
    /// What the last commits stored, for the bridge.
    handoff: handoff::Handoff,
    rows: AtomicU64,
    bytes: AtomicU64,
    /// Oldest row's receive time (Unix ms), `i64::MIN` when empty.
    oldest_ms: AtomicI64,
    metrics: UplinkMetrics,
}

/// Handle to the outbox thread. Cheap to clone; the thread ends when the
/// last handle is dropped.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Command>,
    critical_kinds: Arc<Vec<VitalKind>>,
    shared: Arc<Shared>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.path)
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// Open the outbox in the gateway database at `db_path` (applying
    /// migrations) and start its thread.
    ///
    /// # Errors
    /// [`UplinkError::Db`] / [`UplinkError::Sql`] if the database cannot be
    /// opened or read.
    pub fn open(
        db_path: &Path,
        key: OutboxKey,
        limits: OutboxLimits,
        metrics: UplinkMetrics,
        notices: Option<NoticeHook>,
    ) -> Result<Self, UplinkError> {
        let conn = crate::db::open(db_path)?;
        let (rows, bytes): (i64, i64) = conn.query_row(
            "SELECT count(*), coalesce(sum(length(sealed)), 0) FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let shared = Arc::new(Shared {
            notify: Notify::new(),
            handoff: handoff::Handoff::default(),
            rows: AtomicU64::new(u64::try_from(rows).unwrap_or(0)),
            bytes: AtomicU64::new(u64::try_from(bytes).unwrap_or(0)),
            oldest_ms: AtomicI64::new(i64::MIN),
            metrics,
        });
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let critical_kinds = limits.critical_kinds.clone();
        let mut worker = worker::Worker {
            last_seqs: std::collections::HashMap::new(),
            conn,
            key,
            limits,
            shared: shared.clone(),
            notices,
            full: AtomicBool::new(false),
        };
        worker.refresh_oldest()?;
        worker.publish_gauges();
        if rows > 0 {
            tracing::info!(
                rows,
                bytes,
                "outbox holds messages from a previous run; they will be sent first"
            );
        }
        std::thread::Builder::new()
            .name("wardgate-outbox".into())
            .spawn(move || worker.run(rx))
            .map_err(UplinkError::Thread)?;
        Ok(Self {
            tx,
            critical_kinds: Arc::new(critical_kinds),
            shared,
            path: Arc::new(db_path.to_path_buf()),
        })
    }

    /// Commit one accepted message; resolves after the transaction holding
    /// it committed. Returns the row id.
    ///
    /// # Errors
    /// [`SinkError::Full`] if the outbox is full and the policy refused it;
    /// [`SinkError::Storage`] if the commit failed or the outbox is closed.
    pub async fn append(&self, message: AcceptedTelemetry) -> Result<i64, SinkError> {
        let request = StoreRequest {
            device_id: message.device_id.clone(),
            seq: message.seq,
            digest: PayloadDigest::of(&message.payload),
            after: None,
            telemetry: Some(message),
        };
        self.store_request(request).await?.ok_or_else(|| {
            SinkError::Storage("outbox stored no row for a telemetry message".into())
        })
    }

    /// Commit `request`: its outbox row (if it carries telemetry) and the
    /// device's replay state (`devices.last_seq`, `device_seq_recent`) in
    /// one transaction. Returns the row id, if a row was stored.
    ///
    /// # Errors
    /// As [`Outbox::append`], and [`SinkError::OutOfOrder`] if the
    /// session's previous message (`request.after`) was not stored.
    pub async fn store_request(&self, request: StoreRequest) -> Result<Option<i64>, SinkError> {
        let rx = self.enqueue(request).await?;
        rx.await
            .map_err(|_| SinkError::Storage("outbox thread ended".into()))?
    }

    /// Queue `request` for the next group commit; the receiver gets its
    /// outcome after the commit.
    async fn enqueue(
        &self,
        request: StoreRequest,
    ) -> Result<oneshot::Receiver<Result<Option<i64>, SinkError>>, SinkError> {
        let critical = request
            .telemetry
            .as_ref()
            .is_some_and(|t| is_critical(&t.payload, &self.critical_kinds));
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Append {
                request,
                critical,
                reply,
            })
            .await
            .map_err(|_| SinkError::Storage("outbox is shut down".into()))?;
        Ok(rx)
    }

    /// [`TelemetrySink::submit`] for the outbox and its ledger: queued now,
    /// committed in the next group commit.
    #[allow(clippy::async_yields_async)] // the commit in progress is the result, awaited later
    fn submit_request(&self, request: StoreRequest) -> SubmitFuture<'_> {
        Box::pin(async move {
            match self.enqueue(request).await {
                Ok(rx) => Box::pin(async move {
                    rx.await
                        .map_err(|_| SinkError::Storage("outbox thread ended".into()))?
                        .map(|_| ())
                }) as StoredFuture,
                Err(e) => Box::pin(std::future::ready(Err(e))),
            }
        })
    }

    /// A sink that stores the replay state of every message but no
    /// outbox rows: the edge's store when the uplink is off.
    #[must_use]
    pub fn seq_ledger(&self) -> SeqLedger {
        SeqLedger(self.clone())
    }

    /// Remove rows the upstream broker acknowledged; returns how many were
    /// still present.
    ///
    /// # Errors
    /// [`UplinkError`] if the delete failed or the outbox is closed.
    pub async fn ack(&self, ids: Vec<i64>) -> Result<u64, UplinkError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Ack { ids, reply })
            .await
            .map_err(|_| UplinkError::Closed)?;
        rx.await.map_err(|_| UplinkError::Closed)?
    }

    /// Up to `limit` waiting rows with id greater than `after_id`, in id
    /// order, decrypted (rows that do not decrypt are logged, counted and
    /// skipped, and stay in the outbox).
    ///
    /// # Errors
    /// [`UplinkError`] if the read failed or the outbox is closed.
    pub async fn fetch(&self, after_id: i64, limit: usize) -> Result<FetchPage, UplinkError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Fetch {
                after_id,
                limit,
                reply,
            })
            .await
            .map_err(|_| UplinkError::Closed)?;
        rx.await.map_err(|_| UplinkError::Closed)?
    }

    /// Resolves when new rows were committed since the last call (or right
    /// away if a commit happened while nobody was waiting).
    pub async fn changed(&self) {
        self.shared.notify.notified().await;
    }

    /// The messages committed since the last call, without reading the
    /// database; [`Taken::Broken`] if some did not fit the hand-off, and the
    /// caller must read them with [`Outbox::fetch`] from its cursor
    /// (see [`handoff`]).
    #[must_use]
    pub fn take_committed(&self) -> Taken {
        self.shared.handoff.take()
    }

    /// Current depth, from counters kept by the outbox thread.
    #[must_use]
    pub fn depth(&self) -> OutboxDepth {
        let oldest = self.shared.oldest_ms.load(Ordering::Relaxed);
        OutboxDepth {
            rows: self.shared.rows.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
            oldest_received_ms: (oldest != i64::MIN).then_some(oldest),
        }
    }

    /// The metric families this outbox updates.
    #[must_use]
    pub fn metrics(&self) -> &UplinkMetrics {
        &self.shared.metrics
    }
}

impl TelemetrySink for Outbox {
    fn accept(&self, message: AcceptedTelemetry) -> AcceptFuture<'_> {
        Box::pin(async move { self.append(message).await.map(|_| ()) })
    }

    fn store(&self, request: StoreRequest) -> AcceptFuture<'_> {
        Box::pin(async move { self.store_request(request).await.map(|_| ()) })
    }

    fn submit(&self, request: StoreRequest) -> SubmitFuture<'_> {
        self.submit_request(request)
    }
}

/// The edge's store when the uplink is off (`uplink.enabled = false`):
/// every message's replay state is committed by the outbox thread, with
/// the same group commit and guarantee, but no telemetry row is kept.
#[derive(Debug, Clone)]
pub struct SeqLedger(Outbox);

impl TelemetrySink for SeqLedger {
    fn accept(&self, message: AcceptedTelemetry) -> AcceptFuture<'_> {
        let request = StoreRequest {
            device_id: message.device_id,
            seq: message.seq,
            digest: PayloadDigest::of(&message.payload),
            after: None,
            telemetry: None,
        };
        self.store(request)
    }

    fn store(&self, mut request: StoreRequest) -> AcceptFuture<'_> {
        request.telemetry = None;
        Box::pin(async move { self.0.store_request(request).await.map(|_| ()) })
    }

    fn submit(&self, mut request: StoreRequest) -> SubmitFuture<'_> {
        request.telemetry = None;
        self.0.submit_request(request)
    }
}

/// Whether a telemetry payload is critical (never dropped by
/// `drop_oldest`): it carries a reading of one of `critical_kinds`. A
/// payload that does not parse as telemetry counts as critical, so doubt
/// never leads to a drop.
#[must_use]
pub fn is_critical(payload: &[u8], critical_kinds: &[VitalKind]) -> bool {
    match Telemetry::from_json(payload) {
        Ok(t) => t.readings.iter().any(|r| critical_kinds.contains(&r.kind)),
        Err(_) => true,
    }
}

fn fits(limits: &OutboxLimits, rows: u64, bytes: u64, size: u64) -> bool {
    rows < limits.max_rows && bytes.saturating_add(size) <= limits.max_bytes
}

fn bound_detail(limits: &OutboxLimits, rows: u64, bytes: u64, size: u64) -> String {
    if rows >= limits.max_rows {
        format!(
            "{rows} rows waiting, limit uplink.outbox_max_rows = {}",
            limits.max_rows
        )
    } else {
        format!(
            "{bytes} bytes waiting + {size} new, limit uplink.outbox_max_bytes = {}",
            limits.max_bytes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telemetry(device: &str, seq: u64) -> AcceptedTelemetry {
        let payload = format!(
            r#"{{"schema":1,"seq":{seq},"ts":"2026-11-29T04:00:00Z","readings":[{{"kind":"heart_rate","value":70}}]}}"#
        );
        AcceptedTelemetry {
            device_id: DeviceId::parse(device).unwrap(),
            seq,
            topic: format!("wardgate/v1/devices/{device}/telemetry"),
            payload: payload.into_bytes().into(),
            received_at: Utc::now(),
        }
    }

    /// A row whose stored device id does not parse is not handed out: it
    /// is counted as unreadable, left in the outbox, and the next row still
    /// goes; the error names the row.
    #[tokio::test]
    async fn a_row_with_an_invalid_device_id_is_refused_by_row() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("gateway.db");
        let metrics = UplinkMetrics::default();
        let limits = OutboxLimits {
            max_rows: 100,
            max_bytes: 1 << 20,
            full_policy: FullPolicy::Refuse,
            critical_kinds: vec![],
        };
        let outbox = Outbox::open(
            &db,
            OutboxKey::from_bytes(&[7; 32]),
            limits,
            metrics.clone(),
            None,
        )
        .unwrap();
        let first = outbox.append(telemetry("pump_01", 1)).await.unwrap();
        let second = outbox.append(telemetry("pump-01", 2)).await.unwrap();
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute(
                "UPDATE outbox SET device_id = 'pump/01' WHERE id = ?1",
                [first],
            )
            .unwrap();

        let page = outbox.fetch(0, 10).await.unwrap();
        assert_eq!((page.scanned, page.last_id), (2, Some(second)));
        assert_eq!(page.messages.len(), 1);
        assert_eq!(page.messages[0].device_id.as_str(), "pump-01");
        assert_eq!(metrics.unreadable.get(), 1);
        assert_eq!(outbox.depth().rows, 2, "the bad row stays");

        let e = UplinkError::RowDeviceId {
            id: first,
            source: DeviceId::parse("pump/01").unwrap_err(),
        };
        assert!(
            e.to_string().starts_with(&format!("outbox row {first} ")),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
