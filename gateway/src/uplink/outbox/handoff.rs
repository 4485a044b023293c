//! The hand-off of freshly committed messages from the outbox thread to the
//! bridge, in memory.
//!
//! Every message is committed to SQLite before its device sees a PUBACK;
//! reading it back (a query, then opening the sealed payload) only to send
//! it upstream a millisecond later would double the outbox thread's work
//! and put a round trip to that thread, queued behind the next group
//! commit, in front of every upstream page. So after each commit the thread
//! also hands the bridge the plaintext of what it just stored, and the
//! bridge reads the database only when it is behind: at the start of a
//! session (the backlog) and after the hand-off overflowed.
//!
//! The hand-off is bounded in messages and bytes. When a commit does not
//! fit, nothing of it is kept and the hand-off is marked *broken*; it stays
//! broken (keeping nothing) until the bridge takes that mark, then goes
//! back to reading from its cursor in the database, which holds every
//! committed row. Because the mark and the queue change under one lock, the
//! bridge never sees a later message without the earlier ones: either every
//! message after its cursor is in the queue (possibly after some it already
//! has, which it skips by row id), or the mark tells it to read the
//! database.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::PendingMessage;

/// Most messages held for the bridge.
pub(super) const MAX_MESSAGES: usize = 8192;
/// Most payload bytes held for the bridge.
pub(super) const MAX_BYTES: usize = 16 * 1024 * 1024;

/// What [`Handoff::take`] found.
#[derive(Debug)]
pub enum Taken {
    /// Messages committed since the last take, in row id order (possibly
    /// none).
    Messages(Vec<PendingMessage>),
    /// Some were not kept: read the database from the cursor instead.
    Broken,
}

#[derive(Default)]
struct Queue {
    messages: VecDeque<PendingMessage>,
    bytes: usize,
    broken: bool,
}

/// The bounded queue between the outbox thread and the bridge.
#[derive(Default)]
pub(super) struct Handoff(Mutex<Queue>);

impl Handoff {
    /// Offer one commit's messages (in row id order). All or nothing.
    pub(super) fn offer(&self, batch: Vec<PendingMessage>) {
        if batch.is_empty() {
            return;
        }
        let mut q = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.broken {
            return;
        }
        let bytes: usize = batch.iter().map(|m| m.payload.len()).sum();
        if q.messages.len() + batch.len() > MAX_MESSAGES || q.bytes + bytes > MAX_BYTES {
            q.messages.clear();
            q.bytes = 0;
            q.broken = true;
            return;
        }
        q.bytes += bytes;
        q.messages.extend(batch);
    }

    /// Everything offered since the last take; [`Taken::Broken`] (once,
    /// with the queue emptied) if something was not kept.
    pub(super) fn take(&self) -> Taken {
        let mut q = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        q.bytes = 0;
        if std::mem::take(&mut q.broken) {
            q.messages.clear();
            return Taken::Broken;
        }
        Taken::Messages(q.messages.drain(..).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardgate_protocol::DeviceId;

    fn message(id: i64, bytes: usize) -> PendingMessage {
        PendingMessage {
            id,
            device_id: DeviceId::parse("pump-01").unwrap(),
            seq: u64::try_from(id).unwrap(),
            topic: "wardgate/v1/devices/pump-01/telemetry".into(),
            received_at: chrono::DateTime::from_timestamp_millis(0).unwrap(),
            payload: vec![b'x'; bytes],
        }
    }

    fn ids(t: Taken) -> Vec<i64> {
        match t {
            Taken::Messages(m) => m.iter().map(|m| m.id).collect(),
            Taken::Broken => panic!("broken"),
        }
    }

    #[test]
    fn messages_come_out_in_order_once() {
        let h = Handoff::default();
        h.offer(vec![message(1, 10), message(2, 10)]);
        h.offer(vec![message(3, 10)]);
        assert_eq!(ids(h.take()), [1, 2, 3]);
        assert_eq!(ids(h.take()), Vec::<i64>::new());
    }

    /// An overflow drops the whole queue and everything offered until the
    /// bridge has seen the mark: no message after a lost one is handed out
    /// before the bridge reads the database.
    #[test]
    fn an_overflow_is_reported_once_and_keeps_nothing_until_taken() {
        let h = Handoff::default();
        h.offer(vec![message(1, 10)]);
        h.offer(vec![message(2, MAX_BYTES)]);
        h.offer(vec![message(3, 10)]);
        assert!(matches!(h.take(), Taken::Broken));
        h.offer(vec![message(4, 10)]);
        assert_eq!(ids(h.take()), [4]);

        let many: Vec<_> = (0..=i64::try_from(MAX_MESSAGES).unwrap())
            .map(|i| message(i, 1))
            .collect();
        h.offer(many);
        assert!(matches!(h.take(), Taken::Broken));
    }
}
