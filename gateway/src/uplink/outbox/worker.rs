//! The outbox thread: the one owner of the outbox's SQLite connection.
//!
//! It takes every command waiting at a moment (up to `MAX_BATCH`) and
//! applies all appends and acks among them in one IMMEDIATE transaction
//! (group commit): acks first, as they make room, then each append sealed
//! under its row id, checked against the bounds and, when the policy is
//! `drop_oldest`, given room from the oldest non-critical rows. Replies go
//! out only after the commit, and every caller gets one even if the
//! transaction fails half-way. Fetches read after the writes of the batch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::DateTime;
use rusqlite::{params, Connection, OptionalExtension as _, Transaction};
use tokio::sync::{mpsc, oneshot};
use wardgate_protocol::DeviceId;

use super::{
    bound_detail, fits, Command, FetchPage, FullPolicy, NoticeHook, OutboxLimits, PendingMessage,
    Shared, UplinkNotice,
};
use crate::sink::{AcceptedTelemetry, SinkError};
use crate::uplink::error::UplinkError;
use crate::uplink::seal::OutboxKey;

/// Most commands applied in one transaction.
const MAX_BATCH: usize = 1024;
/// Candidates read per step when making room under `drop_oldest`.
const DROP_STEP: i64 = 64;

pub(super) struct Worker {
    pub(super) conn: Connection,
    pub(super) key: OutboxKey,
    pub(super) limits: OutboxLimits,
    pub(super) shared: Arc<Shared>,
    pub(super) notices: Option<NoticeHook>,
    pub(super) full: AtomicBool,
}

type AppendReply = oneshot::Sender<Result<i64, SinkError>>;
type AckReply = oneshot::Sender<Result<u64, UplinkError>>;

/// What one transaction did, applied to the counters only if it commits.
struct Tally {
    rows: u64,
    bytes: u64,
    /// One per append, in order.
    outcomes: Vec<Result<i64, SinkError>>,
    /// Rows removed, one per ack command, in order.
    ack_counts: Vec<u64>,
    dropped: Vec<(DeviceId, u64)>,
    /// Dropped rows whose stored device id does not parse (not listed).
    dropped_unnamed: u64,
    refused: Vec<(DeviceId, u64)>,
    refuse_detail: String,
}

/// One stored row as read back, before it is opened.
struct StoredRow {
    id: i64,
    device_id: String,
    seq: i64,
    topic: String,
    received_ms: i64,
    nonce: Vec<u8>,
    sealed: Vec<u8>,
}

impl Worker {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
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
                } => appends.push(((message, critical), reply)),
                Command::Ack { ids, reply } => acks.push((ids, reply)),
                Command::Fetch {
                    after_id,
                    limit,
                    reply,
                } => fetches.push((after_id, limit, reply)),
            }
        }
        if !appends.is_empty() || !acks.is_empty() {
            // Replies are kept outside the transaction so that every caller
            // gets an answer even if the transaction fails half-way.
            let (appends, append_replies): (Vec<_>, Vec<_>) = appends.into_iter().unzip();
            let (acks, ack_replies): (Vec<_>, Vec<_>) = acks.into_iter().unzip();
            self.write(&appends, &acks, append_replies, ack_replies);
        }
        for (after_id, limit, reply) in fetches {
            let _ = reply.send(self.fetch(after_id, limit));
        }
    }

    /// One transaction for every append and ack waiting now.
    fn write(
        &mut self,
        appends: &[(AcceptedTelemetry, bool)],
        acks: &[Vec<i64>],
        append_replies: Vec<AppendReply>,
        ack_replies: Vec<AckReply>,
    ) {
        let mut tally = Tally {
            rows: self.shared.rows.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
            outcomes: Vec::with_capacity(appends.len()),
            ack_counts: Vec::with_capacity(acks.len()),
            dropped: Vec::new(),
            dropped_unnamed: 0,
            refused: Vec::new(),
            refuse_detail: String::new(),
        };
        let (key, limits) = (&self.key, &self.limits);
        let result: Result<(), rusqlite::Error> = (|| {
            // IMMEDIATE: take the write lock up front, so a concurrent writer
            // (audit, registry) makes us wait (busy_timeout) instead of
            // failing the upgrade from a read snapshot with SQLITE_BUSY.
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Acks first: they make room for this batch's appends.
            for ids in acks {
                let removed = remove_acked(&tx, ids, &mut tally)?;
                tally.ack_counts.push(removed);
            }
            let mut next_id = next_row_id(&tx)?;
            for (message, critical) in appends {
                let outcome = append(&tx, key, limits, next_id, message, *critical, &mut tally)?;
                if outcome.is_ok() {
                    next_id += 1;
                }
                tally.outcomes.push(outcome);
            }
            tx.commit()
        })();
        match result {
            Ok(()) => self.committed(tally, append_replies, ack_replies),
            Err(e) => {
                tracing::error!(error = %e, "outbox commit failed; telemetry in this batch was not acknowledged to devices; check disk space and the database file");
                for reply in append_replies {
                    let _ = reply.send(Err(SinkError::Storage(format!(
                        "outbox commit failed: {e}"
                    ))));
                }
                let e = Arc::new(e);
                for reply in ack_replies {
                    let _ = reply.send(Err(UplinkError::Sql(e.clone())));
                }
            }
        }
    }

    /// After a commit: counters, gauges, alerts, then the replies.
    fn committed(
        &mut self,
        tally: Tally,
        append_replies: Vec<AppendReply>,
        ack_replies: Vec<AckReply>,
    ) {
        let m = &self.shared.metrics;
        m.commits.inc();
        let accepted = tally.outcomes.iter().filter(|o| o.is_ok()).count() as u64;
        m.accepted.inc_by(accepted);
        m.delivered.inc_by(tally.ack_counts.iter().sum());
        self.shared.rows.store(tally.rows, Ordering::Relaxed);
        self.shared.bytes.store(tally.bytes, Ordering::Relaxed);
        if let Err(e) = self.refresh_oldest() {
            tracing::warn!(error = %e, "cannot read oldest outbox row for status");
        }
        self.publish_gauges();
        self.report_full(&tally);
        for (outcome, reply) in tally.outcomes.into_iter().zip(append_replies) {
            let _ = reply.send(outcome);
        }
        for (reply, n) in ack_replies.into_iter().zip(tally.ack_counts) {
            let _ = reply.send(Ok(n));
        }
        if accepted > 0 {
            self.shared.notify.notify_one();
        }
    }

    fn report_full(&self, tally: &Tally) {
        let m = &self.shared.metrics;
        let dropped = tally.dropped.len() as u64 + tally.dropped_unnamed;
        let hit = dropped > 0 || !tally.refused.is_empty();
        let was_full = self.full.load(Ordering::Relaxed);
        if hit && !was_full {
            self.full.store(true, Ordering::Relaxed);
            m.full_events.inc();
            let detail = if tally.refuse_detail.is_empty() {
                format!(
                    "limits: {} rows, {} bytes",
                    self.limits.max_rows, self.limits.max_bytes
                )
            } else {
                tally.refuse_detail.clone()
            };
            tracing::error!(
                policy = %self.limits.full_policy,
                rows = tally.rows,
                detail = %detail,
                "uplink outbox is full; the hospital broker is not draining it. Check the uplink connection, or raise uplink.outbox_max_rows / outbox_max_bytes"
            );
            self.notice(UplinkNotice::Full {
                policy: self.limits.full_policy,
                detail,
            });
        }
        if dropped > 0 {
            m.dropped.inc_by(dropped);
            tracing::error!(
                count = dropped,
                "dropped oldest non-critical telemetry from the full outbox (policy drop_oldest)"
            );
            self.notice(UplinkNotice::Dropped {
                count: dropped,
                messages: tally.dropped.clone(),
            });
        }
        if !tally.refused.is_empty() {
            let count = tally.refused.len() as u64;
            m.refused.inc_by(count);
            tracing::warn!(count, detail = %tally.refuse_detail, "refused telemetry: outbox full");
            self.notice(UplinkNotice::Refused {
                count,
                messages: tally.refused.clone(),
                detail: tally.refuse_detail.clone(),
            });
        }
        if !hit && was_full && tally.rows < self.limits.max_rows {
            self.full.store(false, Ordering::Relaxed);
            tracing::info!(rows = tally.rows, "uplink outbox has room again");
            self.notice(UplinkNotice::Recovered { rows: tally.rows });
        }
    }

    fn notice(&self, n: UplinkNotice) {
        if let Some(hook) = &self.notices {
            hook(n);
        }
    }

    pub(super) fn refresh_oldest(&mut self) -> Result<(), rusqlite::Error> {
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

    pub(super) fn publish_gauges(&self) {
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
                Ok(StoredRow {
                    id: r.get(0)?,
                    device_id: r.get(1)?,
                    seq: r.get(2)?,
                    topic: r.get(3)?,
                    received_ms: r.get(4)?,
                    nonce: r.get(5)?,
                    sealed: r.get(6)?,
                })
            },
        )?;
        let mut out = FetchPage::default();
        for row in rows {
            let row = row?;
            out.last_id = Some(row.id);
            out.scanned += 1;
            if let Some(message) = self.open_row(row) {
                out.messages.push(message);
            }
        }
        Ok(out)
    }

    /// Turn a stored row into a message: its device id parsed once, its
    /// payload opened with the key. A row that fails either is logged with
    /// its id, counted as unreadable and left in the outbox.
    fn open_row(&self, row: StoredRow) -> Option<PendingMessage> {
        let device_id = match DeviceId::parse(&row.device_id) {
            Ok(d) => d,
            Err(source) => {
                self.shared.metrics.unreadable.inc();
                let e = UplinkError::RowDeviceId { id: row.id, source };
                tracing::error!(row_id = row.id, error = %e, "outbox row skipped; it stays in the outbox");
                return None;
            }
        };
        match self
            .key
            .open(row.id, device_id.as_str(), &row.nonce, &row.sealed)
        {
            Ok(payload) => Some(PendingMessage {
                id: row.id,
                device_id,
                seq: u64::try_from(row.seq).unwrap_or(0),
                topic: row.topic,
                received_at: DateTime::from_timestamp_millis(row.received_ms).unwrap_or_default(),
                payload,
            }),
            Err(e) => {
                self.shared.metrics.unreadable.inc();
                tracing::error!(row_id = row.id, device_id = %device_id, error = %e,
                    "outbox row cannot be opened with the current key; it stays in the outbox. Restore the key file the gateway used when it stored it");
                None
            }
        }
    }
}

/// The id the next appended row gets (ids are never reused).
fn next_row_id(tx: &Transaction<'_>) -> Result<i64, rusqlite::Error> {
    Ok(tx
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0)
        + 1)
}

/// Delete acknowledged rows; how many were still present.
fn remove_acked(
    tx: &Transaction<'_>,
    ids: &[i64],
    tally: &mut Tally,
) -> Result<u64, rusqlite::Error> {
    let mut size_of = tx.prepare_cached("SELECT length(sealed) FROM outbox WHERE id = ?1")?;
    let mut delete = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
    let mut n = 0u64;
    for id in ids {
        let len: Option<i64> = size_of.query_row([id], |r| r.get(0)).optional()?;
        if let Some(len) = len {
            delete.execute([id])?;
            n += 1;
            tally.rows = tally.rows.saturating_sub(1);
            tally.bytes = tally.bytes.saturating_sub(u64::try_from(len).unwrap_or(0));
        }
    }
    Ok(n)
}

/// Seal and insert one message as row `id`, within the bounds; the outer
/// `Err` only for SQL errors, which fail the whole transaction.
fn append(
    tx: &Transaction<'_>,
    key: &OutboxKey,
    limits: &OutboxLimits,
    id: i64,
    message: &AcceptedTelemetry,
    critical: bool,
    tally: &mut Tally,
) -> Result<Result<i64, SinkError>, rusqlite::Error> {
    let (nonce, sealed) = match key.seal(id, message.device_id.as_str(), &message.payload) {
        Ok(s) => s,
        Err(e) => return Ok(Err(SinkError::Storage(e.to_string()))),
    };
    let size = sealed.len() as u64;
    if !fits(limits, tally.rows, tally.bytes, size) && limits.full_policy == FullPolicy::DropOldest
    {
        make_room(tx, limits, size, tally)?;
    }
    if !fits(limits, tally.rows, tally.bytes, size) {
        tally.refuse_detail = bound_detail(limits, tally.rows, tally.bytes, size);
        tally.refused.push((message.device_id.clone(), message.seq));
        return Ok(Err(SinkError::Full {
            detail: tally.refuse_detail.clone(),
        }));
    }
    tx.prepare_cached(
        "INSERT INTO outbox (id, device_id, seq, topic, received_ms, critical, nonce, sealed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        id,
        message.device_id.as_str(),
        i64::try_from(message.seq).unwrap_or(i64::MAX),
        message.topic,
        message.received_at.timestamp_millis(),
        critical,
        &nonce[..],
        sealed,
    ])?;
    tally.rows += 1;
    tally.bytes += size;
    Ok(Ok(id))
}

/// Delete the oldest non-critical rows until a row of `size` fits, or none
/// is left (policy `drop_oldest`).
fn make_room(
    tx: &Transaction<'_>,
    limits: &OutboxLimits,
    size: u64,
    tally: &mut Tally,
) -> Result<(), rusqlite::Error> {
    let mut oldest_droppable = tx.prepare_cached(
        "SELECT id, device_id, seq, length(sealed) FROM outbox
         WHERE critical = 0 ORDER BY id LIMIT ?1",
    )?;
    let mut delete = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
    while !fits(limits, tally.rows, tally.bytes, size) {
        let victims: Vec<(i64, String, i64, i64)> = oldest_droppable
            .query_map([DROP_STEP], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        if victims.is_empty() {
            return Ok(());
        }
        for (vid, vdev, vseq, vlen) in victims {
            delete.execute([vid])?;
            tally.rows = tally.rows.saturating_sub(1);
            tally.bytes = tally.bytes.saturating_sub(u64::try_from(vlen).unwrap_or(0));
            match DeviceId::parse(&vdev) {
                Ok(d) => tally.dropped.push((d, u64::try_from(vseq).unwrap_or(0))),
                Err(source) => {
                    tally.dropped_unnamed += 1;
                    let e = UplinkError::RowDeviceId { id: vid, source };
                    tracing::error!(error = %e, "dropped an outbox row that names no valid device");
                }
            }
            if fits(limits, tally.rows, tally.bytes, size) {
                return Ok(());
            }
        }
    }
    Ok(())
}
