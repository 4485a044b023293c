//! Crash safety: `kill -9` the `gateway run` process mid-stream, restart it,
//! and check upstream that nothing a device saw acknowledged is missing.
//! Two crashes: one while the upstream is draining, one while it is down
//! (so the outbox certainly holds acknowledged messages at the kill).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::ward::{upstream_and_ward, DeviceIdentity, Ward};
use wardgate_tests::process::ChildGuard;

const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway");

/// Stream from every device until `kill_after` acknowledgements in total
/// have been seen, then `kill -9` the gateway. Returns what was acked and the
/// next unused sequence number per device.
async fn stream_and_kill(
    ward: &Ward,
    devices: &[DeviceIdentity],
    next_seq: &mut [u64],
    kill_after: usize,
    gateway: &mut ChildGuard,
) -> Vec<(String, u64)> {
    let mut counters = Vec::new();
    let mut tasks = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let device = ward.device(d).unwrap();
        let first = next_seq[i];
        // Far more than can be sent before the kill.
        let seqs = first..first + 1_000_000;
        let acked = Arc::new(Mutex::new(Vec::new()));
        counters.push(acked.clone());
        let id = d.id.clone();
        tasks.push(tokio::spawn(async move {
            let report = device.send(seqs, 16, acked).await;
            (id, report)
        }));
    }
    let total = || {
        counters
            .iter()
            .map(|c| c.lock().unwrap().len())
            .sum::<usize>()
    };
    // Kill once enough was acknowledged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while total() < kill_after {
        assert!(tokio::time::Instant::now() < deadline, "stream too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gateway.kill9();
    let mut acked = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let (id, report) = t.await.unwrap();
        assert!(
            report.error.is_some(),
            "{id}: the connection must have died with the gateway"
        );
        // Sequence numbers go on after the highest one the device tried.
        let max_acked = report.acked.iter().max().copied().unwrap_or(next_seq[i]);
        next_seq[i] = max_acked + 100;
        acked.extend(report.acked.into_iter().map(|s| (id.clone(), s)));
    }
    acked
}

// control: resilience
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_nothing_a_device_saw_acknowledged() {
    let (mut up, ward) = upstream_and_ward("").await.unwrap();
    let devices: Vec<_> = ["monitor-01", "monitor-02", "pump-03"]
        .iter()
        .map(|id| ward.enroll(id).unwrap())
        .collect();
    let mut next_seq = vec![1u64; devices.len()];

    // Crash 1: upstream up, outbox draining.
    let mut gw = ward.spawn_process(GATEWAY).unwrap();
    let mut acked = stream_and_kill(&ward, &devices, &mut next_seq, 600, &mut gw).await;
    let after_first = acked.len();

    // Crash 2: upstream down, so acknowledged messages sit in the outbox.
    up.broker.stop().unwrap();
    let mut gw = ward.spawn_process(GATEWAY).unwrap();
    acked.extend(stream_and_kill(&ward, &devices, &mut next_seq, 300, &mut gw).await);
    let in_outbox_at_kill = {
        let conn = rusqlite::Connection::open(ward.db_path()).unwrap();
        conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    assert!(
        in_outbox_at_kill > 0,
        "outbox held messages at the second kill"
    );

    // Restart with the upstream back; the outbox drains.
    up.broker.start().unwrap();
    let _gw = ward.spawn_process(GATEWAY).unwrap();
    let delivery = up.delivery(&acked, Duration::from_secs(120)).await;
    println!(
        "crash: {} acknowledged to devices ({after_first} before kill 1, {} before kill 2; {in_outbox_at_kill} rows in the outbox at kill 2), {delivery}",
        acked.len(),
        acked.len() - after_first,
    );
    delivery.assert_none_missing("acknowledged but missing upstream");
    up.sub.stop().await;
}
