//! The outbox on its own: encryption at rest (reading the database file
//! directly), group commit, and both full-outbox policies with their alert,
//! metric and notice.

mod support;

use std::sync::{Arc, Mutex};

use gateway::sink::{SinkError, TelemetrySink};
use gateway::uplink::{FullPolicy, Outbox, OutboxKey, OutboxLimits, UplinkMetrics, UplinkNotice};
use support::accepted;
use wardgate_protocol::vitals::VitalKind;
use wardgate_protocol::DeviceId;

fn open(
    dir: &std::path::Path,
    limits: OutboxLimits,
) -> (Outbox, UplinkMetrics, Arc<Mutex<Vec<UplinkNotice>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let hook_notices = notices.clone();
    let metrics = UplinkMetrics::default();
    let outbox = Outbox::open(
        &dir.join("gateway.db"),
        OutboxKey::load_or_create_file(&dir.join("outbox.key")).unwrap(),
        limits,
        metrics.clone(),
        Some(Arc::new(move |n| hook_notices.lock().unwrap().push(n))),
    )
    .unwrap();
    (outbox, metrics, notices)
}

fn limits(max_rows: u64, policy: FullPolicy) -> OutboxLimits {
    OutboxLimits {
        max_rows,
        max_bytes: 64 * 1024 * 1024,
        full_policy: policy,
        critical_kinds: vec![VitalKind::Spo2],
    }
}

// control: confidentiality-at-rest
#[tokio::test]
async fn outbox_database_file_holds_no_vital_or_payload_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, _, _) = open(dir.path(), limits(1000, FullPolicy::Refuse));
    // Distinctive values that cannot occur by chance in SQLite pages.
    let mut payloads = Vec::new();
    for seq in 1..=50u64 {
        let m = accepted(
            "monitor-17",
            seq,
            &[
                (VitalKind::HeartRate, 131.0 + seq as f64 / 1000.0),
                (VitalKind::Temperature, 38.123),
            ],
        );
        payloads.push(m.payload.clone());
        outbox.accept(m).await.unwrap();
    }
    // Both the main file and the WAL, before and after a checkpoint.
    let db = dir.path().join("gateway.db");
    let scan = |when: &str| {
        for file in [db.clone(), dir.path().join("gateway.db-wal")] {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            for needle in [
                "heart_rate",
                "temperature",
                "readings",
                "38.123",
                "131.001",
                "\"schema\"",
            ] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{when}: {} contains {needle:?} in clear",
                    file.display()
                );
            }
            for p in &payloads {
                assert!(
                    !bytes.windows(p.len()).any(|w| w == &p[..]),
                    "{when}: payload in clear"
                );
            }
        }
    };
    scan("in WAL");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .unwrap();
        // Every column of every row, as SQL sees it.
        let mut stmt = conn.prepare("SELECT * FROM outbox").unwrap();
        let ncols = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        let mut n = 0;
        while let Some(row) = rows.next().unwrap() {
            n += 1;
            for i in 0..ncols {
                let text = match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                    other => format!("{other:?}"),
                };
                assert!(
                    !text.contains("heart_rate") && !text.contains("131.0"),
                    "column {i}: {text}"
                );
            }
        }
        assert_eq!(n, 50);
    }
    scan("after checkpoint");
    // And with the key, the outbox gives them back intact.
    let page = outbox.fetch(0, 100).await.unwrap();
    assert_eq!(page.messages.len(), 50);
    for (m, p) in page.messages.iter().zip(&payloads) {
        assert_eq!(&m.payload[..], &p[..]);
    }
    // A different key opens nothing.
    drop(outbox);
    let other = Outbox::open(
        &db,
        OutboxKey::from_bytes(&[9u8; 32]),
        limits(1000, FullPolicy::Refuse),
        UplinkMetrics::default(),
        None,
    )
    .unwrap();
    let page = other.fetch(0, 100).await.unwrap();
    assert!(page.messages.is_empty());
    assert_eq!(page.scanned, 50);
    assert_eq!(other.metrics().unreadable.get(), 50);
    assert_eq!(
        other.depth().rows,
        50,
        "unreadable rows stay, never silently lost"
    );
}

#[tokio::test]
async fn concurrent_appends_are_group_committed_and_ordered_per_device() {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, metrics, _) = open(dir.path(), limits(100_000, FullPolicy::Refuse));
    let mut tasks = Vec::new();
    for d in 0..20 {
        let outbox = outbox.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 1..=50u64 {
                outbox
                    .append(accepted(
                        &format!("dev-{d}"),
                        seq,
                        &[(VitalKind::HeartRate, 70.0)],
                    ))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(metrics.accepted.get(), 1000);
    let commits = metrics.commits.get();
    println!("1000 appends from 20 concurrent devices in {commits} commits");
    assert!(
        commits < 1000,
        "group commit should batch concurrent appends ({commits} commits)"
    );
    let page = outbox.fetch(0, 2000).await.unwrap();
    assert_eq!(page.messages.len(), 1000);
    for d in 0..20 {
        let seqs: Vec<u64> = page
            .messages
            .iter()
            .filter(|m| m.device_id.as_str() == format!("dev-{d}"))
            .map(|m| m.seq)
            .collect();
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>(), "order of dev-{d}");
    }
    // Ack removes, and only what is acked.
    let ids: Vec<i64> = page.messages.iter().take(10).map(|m| m.id).collect();
    assert_eq!(outbox.ack(ids.clone()).await.unwrap(), 10);
    assert_eq!(outbox.ack(ids).await.unwrap(), 0);
    assert_eq!(outbox.depth().rows, 990);
}

#[tokio::test]
async fn full_outbox_refuse_policy_refuses_new_keeps_old_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, metrics, notices) = open(dir.path(), limits(5, FullPolicy::Refuse));
    for seq in 1..=5 {
        outbox
            .accept(accepted("pump-1", seq, &[(VitalKind::Temperature, 37.0)]))
            .await
            .unwrap();
    }
    // The sixth is refused with a reason that names the bound.
    let err = outbox
        .accept(accepted("pump-1", 6, &[(VitalKind::Temperature, 37.0)]))
        .await
        .unwrap_err();
    match &err {
        SinkError::Full { detail } => assert!(detail.contains("outbox_max_rows = 5"), "{detail}"),
        other => panic!("expected Full, got {other:?}"),
    }
    // Recorded: metrics and notices (the gateway turns notices into audit rows).
    assert_eq!(metrics.refused.get(), 1);
    assert_eq!(metrics.full_events.get(), 1);
    assert_eq!(metrics.dropped.get(), 0);
    {
        let n = notices.lock().unwrap();
        assert!(
            matches!(
                &n[0],
                UplinkNotice::Full {
                    policy: FullPolicy::Refuse,
                    ..
                }
            ),
            "{n:?}"
        );
        assert!(
            matches!(&n[1], UplinkNotice::Refused { count: 1, messages, .. } if messages == &vec![(DeviceId::parse("pump-1").unwrap(), 6)]),
            "{n:?}"
        );
    }
    // Nothing stored was lost.
    let page = outbox.fetch(0, 10).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    // Everyone else keeps working once the uplink drains: ack one, append one.
    outbox.ack(vec![page.messages[0].id]).await.unwrap();
    outbox
        .accept(accepted("pump-2", 1, &[(VitalKind::HeartRate, 80.0)]))
        .await
        .unwrap();
    outbox.ack(vec![page.messages[1].id]).await.unwrap();
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| matches!(n, UplinkNotice::Recovered { .. })),
        "recovery is reported"
    );
}

#[tokio::test]
async fn full_outbox_drop_oldest_drops_only_non_critical_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, metrics, notices) = open(dir.path(), limits(4, FullPolicy::DropOldest));
    // seq 1 critical (SpO2), 2..=4 non-critical (temperature).
    outbox
        .accept(accepted("mon-1", 1, &[(VitalKind::Spo2, 97.0)]))
        .await
        .unwrap();
    for seq in 2..=4 {
        outbox
            .accept(accepted("mon-1", seq, &[(VitalKind::Temperature, 37.0)]))
            .await
            .unwrap();
    }
    // Full: seq 5 displaces the oldest non-critical (seq 2), never seq 1.
    outbox
        .accept(accepted("mon-1", 5, &[(VitalKind::Spo2, 96.0)]))
        .await
        .unwrap();
    let seqs = |p: gateway::uplink::FetchPage| p.messages.iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(seqs(outbox.fetch(0, 10).await.unwrap()), vec![1, 3, 4, 5]);
    assert_eq!(metrics.dropped.get(), 1);
    assert_eq!(metrics.full_events.get(), 1);
    {
        let n = notices.lock().unwrap();
        assert!(
            matches!(
                &n[0],
                UplinkNotice::Full {
                    policy: FullPolicy::DropOldest,
                    ..
                }
            ),
            "{n:?}"
        );
        assert!(
            matches!(&n[1], UplinkNotice::Dropped { count: 1, messages } if messages == &vec![(DeviceId::parse("mon-1").unwrap(), 2)]),
            "{n:?}"
        );
    }
    // Two more critical ones displace 3 and 4; then only critical rows are
    // left, and the next message is refused rather than dropping one.
    outbox
        .accept(accepted("mon-1", 6, &[(VitalKind::Spo2, 95.0)]))
        .await
        .unwrap();
    outbox
        .accept(accepted("mon-1", 7, &[(VitalKind::Spo2, 95.0)]))
        .await
        .unwrap();
    assert_eq!(seqs(outbox.fetch(0, 10).await.unwrap()), vec![1, 5, 6, 7]);
    let err = outbox
        .accept(accepted("mon-1", 8, &[(VitalKind::Temperature, 37.0)]))
        .await
        .unwrap_err();
    assert!(matches!(err, SinkError::Full { .. }), "{err:?}");
    assert_eq!(metrics.dropped.get(), 3);
    assert_eq!(metrics.refused.get(), 1);
    assert_eq!(seqs(outbox.fetch(0, 10).await.unwrap()), vec![1, 5, 6, 7]);
}

#[tokio::test]
async fn byte_bound_is_enforced_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = limits(1000, FullPolicy::Refuse);
    l.max_bytes = 4096;
    let (outbox, metrics, _) = open(dir.path(), l);
    let mut ok = 0;
    let mut refused = None;
    for seq in 1..=100 {
        match outbox
            .accept(accepted("d", seq, &[(VitalKind::HeartRate, 70.0)]))
            .await
        {
            Ok(()) => ok += 1,
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
    }
    let refused = refused.expect("byte bound reached");
    assert!(refused.contains("outbox_max_bytes = 4096"), "{refused}");
    assert!(outbox.depth().bytes <= 4096);
    assert_eq!(outbox.depth().rows, ok);
    assert_eq!(metrics.refused.get(), 1);
}
