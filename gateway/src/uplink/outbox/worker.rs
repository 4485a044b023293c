//! The outbox thread: the one owner of the outbox's SQLite connection.
//!
//! It takes every command waiting at a moment (up to `MAX_BATCH`) and
//! applies all appends and acks among them in one IMMEDIATE transaction
//! (group commit): acks first, as they make room, then each append sealed
//! under its row id, checked against the bounds and, when the policy is
//! `drop_oldest`, given room from the oldest non-critical rows. Replies go
//! out only after the commit, and every caller gets one even if the
//! transaction fails half-way. Fetches read after the writes of the batch.
//!
//! Each append also carries the device's replay state
//! ([`crate::edge::replay`]): in the same transaction the worker raises
//! `devices.last_seq` and records the payload digest in
//! `device_seq_recent` (pruned to [`REPLAY_WINDOW`] rows per device), so a
//! stored `seq` is never lost in a crash and never ahead of its message.
//! An append whose session predecessor (`after`) was not stored is refused
//! ([`SinkError::OutOfOrder`]), which keeps per-device order when the outbox
//! refuses a message while later ones of the same session are in flight.
//! The worker remembers the last stored `seq` of each device it has seen
//! (one integer per enrolled device).

use std::collections::HashMap;
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
use crate::sink::{AcceptedTelemetry, PayloadDigest, SinkError, StoreRequest};
use crate::stored_seq::REPLAY_WINDOW;
use crate::uplink::error::UplinkError;
use crate::uplink::seal::OutboxKey;

/// Most commands applied in one transaction.
const MAX_BATCH: usize = 1024;
/// Candidates read per step when making room under `drop_oldest`.
const DROP_STEP: i64 = 64;

pub(super) struct Worker {
    /// Last stored `seq` per device seen (read from the database once).
    pub(super) last_seqs: HashMap<DeviceId, u64>,
    pub(super) conn: Connection,
    pub(super) key: OutboxKey,
    pub(super) limits: OutboxLimits,
    pub(super) shared: Arc<Shared>,
    pub(super) notices: Option<NoticeHook>,
    pub(super) full: AtomicBool,
}

type AppendReply = oneshot::Sender<Result<Option<i64>, SinkError>>;
type AckReply = oneshot::Sender<Result<u64, UplinkError>>;

/// What one transaction did, applied to the counters only if it commits.
struct Tally {
    rows: u64,
    bytes: u64,
    /// One per append, in order (`None`: replay state only, no row).
    outcomes: Vec<Result<Option<i64>, SinkError>>,
    /// Last stored `seq` per device after this transaction.
    last_seqs: HashMap<DeviceId, u64>,
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
                    request,
                    critical,
                    reply,
                } => appends.push(((request, critical), reply)),
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
        appends: &[(StoreRequest, bool)],
        acks: &[Vec<i64>],
        append_replies: Vec<AppendReply>,
        ack_replies: Vec<AckReply>,
    ) {
        let mut tally = Tally {
            rows: self.shared.rows.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
            outcomes: Vec::with_capacity(appends.len()),
            last_seqs: HashMap::new(),
            ack_counts: Vec::with_capacity(acks.len()),
            dropped: Vec::new(),
            dropped_unnamed: 0,
            refused: Vec::new(),
            refuse_detail: String::new(),
        };
        let (key, limits, known) = (&self.key, &self.limits, &self.last_seqs);
        let result: Result<(), rusqlite::Error> = (|| {
            // IMMEDIATE: take the write lock up front, so a concurrent writer
            // (audit, registry) makes us wait (the busy handler of `db`) instead of
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
            let mut recent: HashMap<&DeviceId, Vec<(u64, PayloadDigest)>> = HashMap::new();
            for (request, critical) in appends {
                let device = &request.device_id;
                let last = match tally.last_seqs.get(device).or_else(|| known.get(device)) {
                    Some(l) => Some(*l),
                    None => stored_last_seq(&tx, device)?,
                };
                if let Some(after) = request.after {
                    if last.is_none_or(|l| l < after) {
                        tally.outcomes.push(Err(SinkError::OutOfOrder {
                            seq: request.seq,
                            after,
                        }));
                        continue;
                    }
                }
                let outcome = match &request.telemetry {
                    Some(message) => {
                        append(&tx, key, limits, next_id, message, *critical, &mut tally)?.map(Some)
                    }
                    None => Ok(None),
                };
                if let Ok(row) = outcome {
                    if row.is_some() {
                        next_id += 1;
                    }
                    let seq = last.map_or(request.seq, |l| l.max(request.seq));
                    tally.last_seqs.insert(device.clone(), seq);
                    recent
                        .entry(device)
                        .or_default()
                        .push((request.seq, request.digest));
                }
                tally.outcomes.push(outcome);
            }
            for (device, entries) in &recent {
                let last = tally.last_seqs.get(*device).copied().unwrap_or(0);
                write_replay_state(&tx, device, last, entries)?;
            }
            tx.commit()
        })();
        match result {
            Ok(()) => {
                let fresh = committed_messages(appends, &tally.outcomes);
                self.committed(tally, fresh, append_replies, ack_replies);
            }
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

    /// After a commit: counters, gauges, alerts, the bridge's hand-off,
    /// then the replies.
    fn committed(
        &mut self,
        mut tally: Tally,
        fresh: Vec<PendingMessage>,
        append_replies: Vec<AppendReply>,
        ack_replies: Vec<AckReply>,
    ) {
        let m = &self.shared.metrics;
        m.commits.inc();
        let accepted = tally
            .outcomes
            .iter()
            .filter(|o| matches!(o, Ok(Some(_))))
            .count() as u64;
        self.last_seqs.extend(tally.last_seqs.drain());
        m.accepted.inc_by(accepted);
        m.delivered.inc_by(tally.ack_counts.iter().sum());
        self.shared.rows.store(tally.rows, Ordering::Relaxed);
        self.shared.bytes.store(tally.bytes, Ordering::Relaxed);
        if let Err(e) = self.refresh_oldest() {
            tracing::warn!(error = %e, "cannot read oldest outbox row for status");
        }
        self.publish_gauges();
        self.report_full(&tally);
        self.shared.handoff.offer(fresh);
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

/// The messages a transaction stored as rows, as the bridge sends them
/// (the receive time at the millisecond precision of the stored row, so a
/// message renders the same whether it was handed off or read back).
fn committed_messages(
    appends: &[(StoreRequest, bool)],
    outcomes: &[Result<Option<i64>, SinkError>],
) -> Vec<PendingMessage> {
    appends
        .iter()
        .zip(outcomes)
        .filter_map(|((request, _), outcome)| {
            let (Ok(Some(id)), Some(t)) = (outcome, &request.telemetry) else {
                return None;
            };
            Some(PendingMessage {
                id: *id,
                device_id: t.device_id.clone(),
                seq: t.seq,
                topic: t.topic.clone(),
                received_at: DateTime::from_timestamp_millis(t.received_at.timestamp_millis())
                    .unwrap_or_default(),
                payload: t.payload.to_vec(),
            })
        })
        .collect()
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

/// The last stored `seq` of a device the worker has not seen yet: the
/// registry's `last_seq` or its newest digest row, whichever is higher.
fn stored_last_seq(
    tx: &Transaction<'_>,
    device: &DeviceId,
) -> Result<Option<u64>, rusqlite::Error> {
    let registry: Option<i64> = tx
        .prepare_cached("SELECT last_seq FROM devices WHERE id = ?1")?
        .query_row([device.as_str()], |r| r.get(0))
        .optional()?
        .flatten();
    let recent: Option<i64> = tx
        .prepare_cached("SELECT max(seq) FROM device_seq_recent WHERE device_id = ?1")?
        .query_row([device.as_str()], |r| r.get(0))?;
    Ok(registry.max(recent).and_then(|s| u64::try_from(s).ok()))
}

/// Raise `devices.last_seq` to `last` and record the digests of the
/// messages stored in this transaction, keeping the newest
/// [`REPLAY_WINDOW`] per device.
fn write_replay_state(
    tx: &Transaction<'_>,
    device: &DeviceId,
    last: u64,
    entries: &[(u64, PayloadDigest)],
) -> Result<(), rusqlite::Error> {
    let as_db = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
    tx.prepare_cached(
        "UPDATE devices SET last_seq = ?2 WHERE id = ?1 AND (last_seq IS NULL OR last_seq < ?2)",
    )?
    .execute(params![device.as_str(), as_db(last)])?;
    let mut insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO device_seq_recent (device_id, seq, digest) VALUES (?1, ?2, ?3)",
    )?;
    for (seq, digest) in entries {
        insert.execute(params![device.as_str(), as_db(*seq), &digest.0[..]])?;
    }
    tx.prepare_cached(
        "DELETE FROM device_seq_recent WHERE device_id = ?1 AND seq < (
             SELECT seq FROM device_seq_recent WHERE device_id = ?1
             ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
    )?
    .execute(params![
        device.as_str(),
        i64::try_from(REPLAY_WINDOW - 1).unwrap_or(i64::MAX)
    ])?;
    Ok(())
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
