//! QoS 1 resends under replay protection, counted at a real upstream
//! Mosquitto: a resend of a stored message (DUP set or not, same or new
//! connection) is acknowledged again and delivered once; another payload
//! under an old `seq` is a replay; a message refused for a full outbox is
//! accepted when resent after room is made; and after `kill -9` of
//! `gateway run` mid-stream, clients that resend their in-flight messages
//! as standard libraries do are acknowledged, nothing is missing upstream,
//! and an old `seq` from before the crash is still refused.

mod support;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway::audit::AuditLog;
use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use support::ward::{arrived, telemetry_payload, upstream_and_ward, DeviceIdentity, Ward};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use wardgate_tests::mosquitto::Received;
use wardgate_tests::mqtt::{connect_v4, publish_v4, read_until_closed};
use wardgate_tests::wait::wait_for;

const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway");
const T: Duration = Duration::from_secs(20);

fn count(r: &Received, device: &str, seq: u64) -> usize {
    arrived(r)
        .iter()
        .filter(|(d, s)| d == device && *s == seq)
        .count()
}

/// A raw MQTT 3.1.1 device over mutual TLS: CONNECT sent, CONNACK read.
async fn raw(ward: &Ward, ident: &DeviceIdentity) -> TlsStream<TcpStream> {
    let config = wardgate_tests::tls::client_config_files(ward.ca_path(), &ident.files).unwrap();
    let mut s = wardgate_tests::tls::connect(("127.0.0.1", ward.edge_port), "localhost", config)
        .await
        .unwrap();
    s.write_all(&connect_v4(&ident.id, None)).await.unwrap();
    let mut ack = [0u8; 4];
    tokio::time::timeout(T, s.read_exact(&mut ack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00], "CONNACK accepted");
    s
}

/// The same PUBLISH with the DUP flag set.
fn with_dup(mut publish: Vec<u8>) -> Vec<u8> {
    publish[0] |= 0x08;
    publish
}

/// Read one PUBACK and return its packet id.
async fn puback(s: &mut TlsStream<TcpStream>) -> u16 {
    let mut ack = [0u8; 4];
    tokio::time::timeout(T, s.read_exact(&mut ack))
        .await
        .expect("PUBACK in time")
        .expect("PUBACK, not a closed connection");
    assert_eq!(&ack[..2], &[0x40, 0x02], "a PUBACK: {ack:?}");
    u16::from_be_bytes([ack[2], ack[3]])
}

fn telemetry_topic(id: &str) -> String {
    format!("wardgate/v1/devices/{id}/telemetry")
}

/// A payload for `seq` that differs from [`telemetry_payload`]'s.
fn other_payload(seq: u64) -> Vec<u8> {
    let t = wardgate_tests::telemetry::telemetry(
        seq,
        &[(wardgate_protocol::vitals::VitalKind::HeartRate, 111.0)],
    );
    serde_json::to_vec(&t).unwrap()
}

fn replay_rows(ward: &Ward, device: &str) -> usize {
    AuditLog::open(&ward.db_path())
        .unwrap()
        .find(device, Some("edge.violation"))
        .unwrap()
        .into_iter()
        .filter(|r| r.detail_json()["reason"] == "replay")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dup_resend_is_acknowledged_and_delivered_once_and_another_payload_is_a_replay() {
    let (up, ward) = upstream_and_ward("").await.unwrap();
    let dev = ward.enroll("monitor-01").unwrap();
    let other = ward.enroll("monitor-02").unwrap();
    let _gw = ward.spawn_process(GATEWAY).unwrap();
    let topic = telemetry_topic("monitor-01");
    let first = publish_v4(&topic, &telemetry_payload(1), 1);

    let mut conn = raw(&ward, &dev).await;
    conn.write_all(&first).await.unwrap();
    assert_eq!(puback(&mut conn).await, 1);
    // The PUBACK was "lost": the same message again, DUP set, same session.
    conn.write_all(&with_dup(first.clone())).await.unwrap();
    assert_eq!(puback(&mut conn).await, 1, "resend acknowledged again");
    drop(conn);
    // And after a reconnect, as a client library resends in-flight
    // messages, with and without DUP.
    let mut conn = raw(&ward, &dev).await;
    conn.write_all(&with_dup(first.clone())).await.unwrap();
    assert_eq!(puback(&mut conn).await, 1);
    conn.write_all(&first).await.unwrap();
    assert_eq!(puback(&mut conn).await, 1);
    // The session goes on with new messages.
    conn.write_all(&publish_v4(&topic, &telemetry_payload(2), 2))
        .await
        .unwrap();
    assert_eq!(puback(&mut conn).await, 2);

    let got = up
        .sub
        .wait_until(T, |r| count(r, "monitor-01", 2) == 1)
        .await;
    assert_eq!(count(&got, "monitor-01", 2), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = up.sub.snapshot();
    assert_eq!(
        count(&got, "monitor-01", 1),
        1,
        "seq 1 delivered upstream exactly once"
    );
    assert_eq!(replay_rows(&ward, "monitor-01"), 0, "no resend is a replay");

    // Another payload under seq 1 is a replay: refused, recorded.
    conn.write_all(&with_dup(publish_v4(&topic, &other_payload(1), 3)))
        .await
        .unwrap();
    let rest = read_until_closed(&mut conn, T).await.expect("disconnected");
    assert!(rest.is_empty(), "no PUBACK for the replay: {rest:?}");
    wait_for(T, || (replay_rows(&ward, "monitor-01") == 1).then_some(()))
        .await
        .expect("the replay is in the audit log");

    // Everyone else keeps working.
    let mut by = raw(&ward, &other).await;
    by.write_all(&publish_v4(
        &telemetry_topic("monitor-02"),
        &telemetry_payload(1),
        9,
    ))
    .await
    .unwrap();
    assert_eq!(puback(&mut by).await, 9);
    up.sub
        .wait_until(T, |r| count(r, "monitor-02", 1) == 1)
        .await;
    assert_eq!(count(&up.sub.snapshot(), "monitor-01", 1), 1);
    up.sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_refused_for_a_full_outbox_is_accepted_when_resent_after_room_is_made() {
    let (mut up, ward) = upstream_and_ward("outbox_max_rows = 2").await.unwrap();
    let dev = ward.enroll("pump-07").unwrap();
    let other = ward.enroll("pump-08").unwrap();
    // Upstream down: the outbox keeps what it stores.
    up.broker.stop().unwrap();
    let _gw = ward.spawn_process(GATEWAY).unwrap();
    let topic = telemetry_topic("pump-07");

    let mut conn = raw(&ward, &dev).await;
    for seq in 1..=2u16 {
        conn.write_all(&publish_v4(&topic, &telemetry_payload(u64::from(seq)), seq))
            .await
            .unwrap();
        assert_eq!(puback(&mut conn).await, seq);
    }
    let third = publish_v4(&topic, &telemetry_payload(3), 3);
    conn.write_all(&third).await.unwrap();
    let rest = read_until_closed(&mut conn, T).await.expect("disconnected");
    assert!(
        rest.is_empty(),
        "no PUBACK for the refused message: {rest:?}"
    );
    let audit = AuditLog::open(&ward.db_path()).unwrap();
    wait_for(T, || {
        audit
            .find("pump-07", Some("edge.violation"))
            .unwrap()
            .into_iter()
            .find(|r| r.detail_json()["reason"] == "not_stored")
    })
    .await
    .expect("the refusal is recorded");
    // Another device is refused too while the outbox is full, but its
    // connection and the gateway stay usable.
    let mut by = raw(&ward, &other).await;
    by.write_all(&[0xC0, 0x00]).await.unwrap();
    let mut pong = [0u8; 2];
    tokio::time::timeout(T, by.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pong, [0xD0, 0x00]);

    // Room is made: upstream back, the outbox drains.
    up.broker.start().unwrap();
    up.sub
        .wait_until(Duration::from_secs(60), |r| count(r, "pump-07", 2) == 1)
        .await;
    let mut conn = raw(&ward, &dev).await;
    // The device resends the refused message: seq 3 was never stored, so
    // it is new, not a replay.
    conn.write_all(&with_dup(third.clone())).await.unwrap();
    assert_eq!(puback(&mut conn).await, 3);
    let got = up.sub.wait_until(T, |r| count(r, "pump-07", 3) == 1).await;
    for seq in 1..=3 {
        assert_eq!(count(&got, "pump-07", seq), 1, "seq {seq} once upstream");
    }
    assert_eq!(replay_rows(&ward, "pump-07"), 0);
    up.sub.stop().await;
}

/// What a resending client saw: every seq it published and which of them
/// were acknowledged.
#[derive(Debug, Default)]
struct Seen {
    published: Vec<u64>,
    acked: Vec<u64>,
    errors: usize,
}

/// A `rumqttc` device with a persistent session that keeps its in-flight
/// messages across connection errors and resends them on reconnect (the
/// library's own behaviour): publishes `count` messages, at most 16 in
/// flight, and keeps going through a gateway crash until all are
/// acknowledged or `limit` passes.
async fn resending_device(
    ward: &Ward,
    ident: &DeviceIdentity,
    count: u64,
    seen: Arc<Mutex<Seen>>,
    limit: Duration,
) {
    let mut options = ward.device(ident).unwrap().mqtt_options();
    options.set_clean_session(false).set_inflight(16);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let topic = telemetry_topic(&ident.id);
    let deadline = tokio::time::Instant::now() + limit;
    let mut next = 1u64;
    let mut queued = VecDeque::new();
    let mut inflight: HashMap<u16, u64> = HashMap::new();
    loop {
        while next <= count && queued.len() + inflight.len() < 16 {
            if client
                .try_publish(
                    topic.clone(),
                    QoS::AtLeastOnce,
                    false,
                    telemetry_payload(next),
                )
                .is_err()
            {
                break;
            }
            seen.lock().unwrap().published.push(next);
            queued.push_back(next);
            next += 1;
        }
        if next > count && queued.is_empty() && inflight.is_empty() {
            let _ = client.try_disconnect();
            return;
        }
        if tokio::time::Instant::now() > deadline {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                // A resend reuses its packet id; a new message takes the
                // next queued seq.
                if let std::collections::hash_map::Entry::Vacant(slot) = inflight.entry(pkid) {
                    if let Some(seq) = queued.pop_front() {
                        slot.insert(seq);
                    }
                }
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                if let Some(seq) = inflight.remove(&ack.pkid) {
                    seen.lock().unwrap().acked.push(seq);
                }
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(_)) => {
                seen.lock().unwrap().errors += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_resending_clients_are_acknowledged_nothing_is_missing_and_old_seqs_are_refused(
) {
    let (up, ward) = upstream_and_ward("").await.unwrap();
    // bed-01..04 on rumqttc, bed-05 and bed-06 on Eclipse Paho (Python).
    let ids = ["bed-01", "bed-02", "bed-03", "bed-04"];
    let paho_ids = ["bed-05", "bed-06"];
    let devices: Vec<_> = ids.iter().map(|id| ward.enroll(id).unwrap()).collect();
    let paho_devices: Vec<_> = paho_ids.iter().map(|id| ward.enroll(id).unwrap()).collect();
    let bed = DeviceIdentity {
        id: devices[0].id.clone(),
        files: wardgate_tests::pki::ClientIdentity {
            cert: devices[0].files.cert.clone(),
            key: devices[0].files.key.clone(),
        },
    };
    let mut gw = ward.spawn_process(GATEWAY).unwrap();
    const COUNT: u64 = 400;

    let seen: Vec<_> = ids
        .iter()
        .map(|_| Arc::new(Mutex::new(Seen::default())))
        .collect();
    let ward = Arc::new(ward);
    let mut tasks = Vec::new();
    for (d, seen) in devices.into_iter().zip(&seen) {
        let (ward, seen) = (ward.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            resending_device(&ward, &d, COUNT, seen, Duration::from_secs(40)).await;
        }));
    }
    let python = wardgate_tests::python::python().unwrap_or_else(|e| panic!("{e}"));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/paho_resending_device.py"
    );
    let paho: Vec<_> = paho_devices
        .iter()
        .map(|d| {
            tokio::process::Command::new(&python)
                .arg(script)
                .arg("localhost")
                .arg(ward.edge_port.to_string())
                .arg(ward.ca_path())
                .arg(&d.files.cert)
                .arg(&d.files.key)
                .arg(&d.id)
                .arg(COUNT.to_string())
                .arg("40")
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("{}: {e}; run scripts/setup-test-deps", python.display())
                })
        })
        .collect();
    let acked_total = || {
        seen.iter()
            .map(|s| s.lock().unwrap().acked.len())
            .sum::<usize>()
    };
    wait_for(Duration::from_secs(60), || {
        (acked_total() >= 300).then_some(())
    })
    .await
    .expect("streaming");
    gw.kill9();
    let acked_at_kill = acked_total();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _gw = ward.spawn_process(GATEWAY).unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let mut paho_seen = Vec::new();
    for child in paho {
        let out = child.wait_with_output().await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "paho device output: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        let seqs = |k: &str| -> Vec<u64> {
            v[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect()
        };
        paho_seen.push(Seen {
            published: seqs("published"),
            acked: seqs("acked"),
            errors: v["lost"].as_u64().unwrap() as usize,
        });
    }
    let seen: Vec<Arc<Mutex<Seen>>> = seen
        .into_iter()
        .chain(paho_seen.into_iter().map(|s| Arc::new(Mutex::new(s))))
        .collect();
    let ids: Vec<&str> = ids.iter().chain(paho_ids.iter()).copied().collect();

    let log = wardgate_tests::process::read_log(&ward.dir.join("gateway.log"));
    let mut expected = Vec::new();
    for (id, seen) in ids.iter().zip(&seen) {
        let seen = seen.lock().unwrap();
        assert!(
            seen.errors > 0,
            "{id}: the connection died with the gateway"
        );
        let mut acked = seen.acked.clone();
        acked.sort_unstable();
        acked.dedup();
        assert_eq!(
            acked,
            (1..=COUNT).collect::<Vec<_>>(),
            "{id}: every message it held was acknowledged after the restart; {seen:?}; gateway log:\n{}",
            log.lines().filter(|l| l.contains("WARN") && !l.contains("tls_handshake")).take(12).collect::<Vec<_>>().join("\n")
        );
        expected.extend(seen.published.iter().map(|s| ((*id).to_owned(), *s)));
    }
    let delivery = up.delivery(&expected, Duration::from_secs(60)).await;
    println!(
        "kill -9: {} published, {acked_at_kill} acknowledged before the kill, {delivery} (uplink at-least-once)",
        expected.len(),
    );
    delivery.assert_none_missing("missing upstream");
    for id in &ids {
        assert_eq!(
            replay_rows(&ward, id),
            0,
            "{id}: no resend refused as a replay"
        );
    }

    // An old seq from before the crash, with another payload, is refused.
    let mut conn = raw(&ward, &bed).await;
    conn.write_all(&publish_v4(
        &telemetry_topic("bed-01"),
        &other_payload(5),
        1,
    ))
    .await
    .unwrap();
    let rest = read_until_closed(&mut conn, T).await.expect("disconnected");
    assert!(rest.is_empty(), "no PUBACK for the replay");
    wait_for(T, || (replay_rows(&ward, "bed-01") == 1).then_some(()))
        .await
        .expect("the old seq is refused as a replay after the crash");
    up.sub.stop().await;
}
