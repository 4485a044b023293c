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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension as _};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, Notify};

use wardgate_protocol::message::Telemetry;
use wardgate_protocol::vitals::VitalKind;

use super::metrics::UplinkMetrics;
use super::seal::OutboxKey;
use super::UplinkError;
use crate::sink::{AcceptFuture, AcceptedTelemetry, SinkError, TelemetrySink};

/// Most commands applied in one transaction.
const MAX_BATCH: usize = 1024;
/// Capacity of the command channel; senders wait (async) when it is full.
const CHANNEL_CAPACITY: usize = 4096;

/// What happens to new telemetry when the outbox is at its bound (a
/// configuration value, `uplink.full_policy`, so it is defined with the
/// other settings).
pub use crate::config::FullPolicy;

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
        /// Devices whose messages were dropped, with the sequence numbers.
        messages: Vec<(String, u64)>,
    },
    /// Messages were refused in one commit.
    Refused {
        /// How many.
        count: u64,
        /// Devices whose messages were refused, with the sequence numbers.
        messages: Vec<(String, u64)>,
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
    /// The device it came from.
    pub device_id: String,
    /// The device's sequence number.
    pub seq: u64,
    /// The device topic it was published on.
    pub topic: String,
    /// When the gateway received it.
    pub received_at: DateTime<Utc>,
    /// The payload as received (decrypted).
    pub payload: Vec<u8>,
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
        message: AcceptedTelemetry,
        critical: bool,
        reply: oneshot::Sender<Result<i64, SinkError>>,
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
            rows: AtomicU64::new(u64::try_from(rows).unwrap_or(0)),
            bytes: AtomicU64::new(u64::try_from(bytes).unwrap_or(0)),
            oldest_ms: AtomicI64::new(i64::MIN),
            metrics,
        });
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let critical_kinds = limits.critical_kinds.clone();
        let mut worker = Worker {
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
            .map_err(|e| UplinkError::Thread(e.to_string()))?;
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
        let critical = is_critical(&message.payload, &self.critical_kinds);
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Append {
                message,
                critical,
                reply,
            })
            .await
            .map_err(|_| SinkError::Storage("outbox is shut down".into()))?;
        rx.await
            .map_err(|_| SinkError::Storage("outbox thread ended".into()))?
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

struct Worker {
    conn: Connection,
    key: OutboxKey,
    limits: OutboxLimits,
    shared: Arc<Shared>,
    notices: Option<NoticeHook>,
    full: AtomicBool,
}

type PendingAppend = (
    AcceptedTelemetry,
    bool,
    oneshot::Sender<Result<i64, SinkError>>,
);
type PendingAck = (Vec<i64>, oneshot::Sender<Result<u64, UplinkError>>);

struct AppendOutcome {
    result: Result<i64, SinkError>,
}

impl Worker {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = Vec::with_capacity(64);
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            self.apply(batch);
        }
        tracing::debug!("outbox thread ending: all handles dropped");
    }

    fn apply(&mut self, batch: Vec<Command>) {
        let mut appends = Vec::new();
        let mut acks = Vec::new();
        let mut fetches = Vec::new();
        for c in batch {
            match c {
                Command::Append {
                    message,
                    critical,
                    reply,
                } => appends.push((message, critical, reply)),
                Command::Ack { ids, reply } => acks.push((ids, reply)),
                Command::Fetch {
                    after_id,
                    limit,
                    reply,
                } => fetches.push((after_id, limit, reply)),
            }
        }
        if !appends.is_empty() || !acks.is_empty() {
            self.write(appends, acks);
        }
        for (after_id, limit, reply) in fetches {
            let _ = reply.send(self.fetch(after_id, limit));
        }
    }

    /// One transaction for every append and ack waiting now.
    fn write(&mut self, appends: Vec<PendingAppend>, acks: Vec<PendingAck>) {
        let before = (
            self.shared.rows.load(Ordering::Relaxed),
            self.shared.bytes.load(Ordering::Relaxed),
        );
        let mut outcomes = Vec::with_capacity(appends.len());
        // Replies are kept outside the transaction closure so that every
        // caller gets an answer even if the transaction fails half-way.
        let (appends, replies): (Vec<_>, Vec<_>) = appends
            .into_iter()
            .map(|(message, critical, reply)| ((message, critical), reply))
            .unzip();
        let mut ack_counts = Vec::with_capacity(acks.len());
        let mut dropped = Vec::new();
        let mut refused = Vec::new();
        let mut refuse_detail = String::new();
        let mut rows = before.0;
        let mut bytes = before.1;

        let limits = &self.limits;
        let key = &self.key;
        let conn = &mut self.conn;
        let result: Result<(), rusqlite::Error> = (|| {
            // IMMEDIATE: take the write lock up front, so a concurrent writer
            // (audit, registry) makes us wait (busy_timeout) instead of
            // failing the upgrade from a read snapshot with SQLITE_BUSY.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                // Acks first: they make room for this batch's appends.
                let mut size_of =
                    tx.prepare_cached("SELECT length(sealed) FROM outbox WHERE id = ?1")?;
                let mut delete = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
                for (ids, _) in &acks {
                    let mut n = 0u64;
                    for id in ids {
                        let len: Option<i64> = size_of.query_row([id], |r| r.get(0)).optional()?;
                        if let Some(len) = len {
                            delete.execute([id])?;
                            n += 1;
                            rows = rows.saturating_sub(1);
                            bytes = bytes.saturating_sub(u64::try_from(len).unwrap_or(0));
                        }
                    }
                    ack_counts.push(n);
                }

                let mut next_id: i64 = tx
                    .query_row(
                        "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'",
                        [],
                        |r| r.get(0),
                    )
                    .optional()?
                    .unwrap_or(0)
                    + 1;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO outbox (id, device_id, seq, topic, received_ms, critical, nonce, sealed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                let mut oldest_droppable = tx.prepare_cached(
                    "SELECT id, device_id, seq, length(sealed) FROM outbox
                     WHERE critical = 0 ORDER BY id LIMIT 64",
                )?;
                for (message, critical) in appends {
                    let id = next_id;
                    let (nonce, sealed) = match key.seal(id, &message.device_id, &message.payload) {
                        Ok(s) => s,
                        Err(e) => {
                            outcomes.push(AppendOutcome {
                                result: Err(SinkError::Storage(e.to_string())),
                            });
                            continue;
                        }
                    };
                    let size = sealed.len() as u64;
                    if !fits(limits, rows, bytes, size)
                        && limits.full_policy == FullPolicy::DropOldest
                    {
                        // Make room from the oldest non-critical rows.
                        'room: while !fits(limits, rows, bytes, size) {
                            let victims: Vec<(i64, String, i64, i64)> = oldest_droppable
                                .query_map([], |r| {
                                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                                })?
                                .collect::<Result<_, _>>()?;
                            if victims.is_empty() {
                                break 'room;
                            }
                            for (vid, vdev, vseq, vlen) in victims {
                                delete.execute([vid])?;
                                rows = rows.saturating_sub(1);
                                bytes = bytes.saturating_sub(u64::try_from(vlen).unwrap_or(0));
                                dropped.push((vdev, u64::try_from(vseq).unwrap_or(0)));
                                if fits(limits, rows, bytes, size) {
                                    break 'room;
                                }
                            }
                        }
                    }
                    if !fits(limits, rows, bytes, size) {
                        refuse_detail = bound_detail(limits, rows, bytes, size);
                        refused.push((message.device_id.clone(), message.seq));
                        outcomes.push(AppendOutcome {
                            result: Err(SinkError::Full {
                                detail: refuse_detail.clone(),
                            }),
                        });
                        continue;
                    }
                    insert.execute(params![
                        id,
                        message.device_id,
                        i64::try_from(message.seq).unwrap_or(i64::MAX),
                        message.topic,
                        message.received_at.timestamp_millis(),
                        critical,
                        &nonce[..],
                        sealed,
                    ])?;
                    next_id += 1;
                    rows += 1;
                    bytes += size;
                    outcomes.push(AppendOutcome { result: Ok(id) });
                }
            }
            tx.commit()
        })();

        match result {
            Ok(()) => {
                let m = &self.shared.metrics;
                m.commits.inc();
                let accepted = outcomes.iter().filter(|o| o.result.is_ok()).count() as u64;
                m.accepted.inc_by(accepted);
                m.delivered.inc_by(ack_counts.iter().sum());
                self.shared.rows.store(rows, Ordering::Relaxed);
                self.shared.bytes.store(bytes, Ordering::Relaxed);
                if let Err(e) = self.refresh_oldest() {
                    tracing::warn!(error = %e, "cannot read oldest outbox row for status");
                }
                self.publish_gauges();
                self.report_full(&dropped, &refused, &refuse_detail, rows);
                for (o, reply) in outcomes.into_iter().zip(replies) {
                    let _ = reply.send(o.result);
                }
                for ((_, reply), n) in acks.into_iter().zip(ack_counts) {
                    let _ = reply.send(Ok(n));
                }
                if accepted > 0 {
                    self.shared.notify.notify_one();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "outbox commit failed; telemetry in this batch was not acknowledged to devices; check disk space and the database file");
                for reply in replies {
                    let _ = reply.send(Err(SinkError::Storage(format!(
                        "outbox commit failed: {e}"
                    ))));
                }
                for (_, reply) in acks {
                    let _ = reply.send(Err(UplinkError::Sql(e.to_string())));
                }
            }
        }
    }

    fn report_full(
        &self,
        dropped: &[(String, u64)],
        refused: &[(String, u64)],
        refuse_detail: &str,
        rows: u64,
    ) {
        let m = &self.shared.metrics;
        let hit = !dropped.is_empty() || !refused.is_empty();
        let was_full = self.full.load(Ordering::Relaxed);
        if hit && !was_full {
            self.full.store(true, Ordering::Relaxed);
            m.full_events.inc();
            let detail = if refuse_detail.is_empty() {
                format!(
                    "limits: {} rows, {} bytes",
                    self.limits.max_rows, self.limits.max_bytes
                )
            } else {
                refuse_detail.to_owned()
            };
            tracing::error!(
                policy = %self.limits.full_policy,
                rows,
                detail = %detail,
                "uplink outbox is full; the hospital broker is not draining it. Check the uplink connection, or raise uplink.outbox_max_rows / outbox_max_bytes"
            );
            self.notice(UplinkNotice::Full {
                policy: self.limits.full_policy,
                detail,
            });
        }
        if !dropped.is_empty() {
            m.dropped.inc_by(dropped.len() as u64);
            tracing::error!(
                count = dropped.len(),
                "dropped oldest non-critical telemetry from the full outbox (policy drop_oldest)"
            );
            self.notice(UplinkNotice::Dropped {
                count: dropped.len() as u64,
                messages: dropped.to_vec(),
            });
        }
        if !refused.is_empty() {
            m.refused.inc_by(refused.len() as u64);
            tracing::warn!(count = refused.len(), detail = %refuse_detail, "refused telemetry: outbox full");
            self.notice(UplinkNotice::Refused {
                count: refused.len() as u64,
                messages: refused.to_vec(),
                detail: refuse_detail.to_owned(),
            });
        }
        if !hit && was_full && rows < self.limits.max_rows {
            self.full.store(false, Ordering::Relaxed);
            tracing::info!(rows, "uplink outbox has room again");
            self.notice(UplinkNotice::Recovered { rows });
        }
    }

    fn notice(&self, n: UplinkNotice) {
        if let Some(hook) = &self.notices {
            hook(n);
        }
    }

    fn refresh_oldest(&mut self) -> Result<(), rusqlite::Error> {
        let oldest: Option<i64> = self
            .conn
            .prepare_cached("SELECT received_ms FROM outbox ORDER BY id LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?;
        self.shared
            .oldest_ms
            .store(oldest.unwrap_or(i64::MIN), Ordering::Relaxed);
        Ok(())
    }

    fn publish_gauges(&self) {
        let m = &self.shared.metrics;
        m.outbox_rows
            .set(i64::try_from(self.shared.rows.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        m.outbox_bytes
            .set(i64::try_from(self.shared.bytes.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
    }

    fn fetch(&mut self, after_id: i64, limit: usize) -> Result<FetchPage, UplinkError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, device_id, seq, topic, received_ms, nonce, sealed FROM outbox
             WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            params![after_id, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                    r.get::<_, Vec<u8>>(6)?,
                ))
            },
        )?;
        let mut out = FetchPage::default();
        for row in rows {
            let (id, device_id, seq, topic, received_ms, nonce, sealed) = row?;
            out.last_id = Some(id);
            out.scanned += 1;
            match self.key.open(id, &device_id, &nonce, &sealed) {
                Ok(payload) => out.messages.push(PendingMessage {
                    id,
                    device_id,
                    seq: u64::try_from(seq).unwrap_or(0),
                    topic,
                    received_at: DateTime::from_timestamp_millis(received_ms).unwrap_or_default(),
                    payload,
                }),
                Err(e) => {
                    self.shared.metrics.unreadable.inc();
                    tracing::error!(row_id = id, device_id = %device_id, error = %e,
                        "outbox row cannot be opened with the current key; it stays in the outbox. Restore the key file the gateway used when it stored it");
                }
            }
        }
        Ok(out)
    }
}
