//! Bounded resources: idle TCP floods, the connection cap and idle devices
//! never stall the devices that behave.

mod support;

use std::time::Duration;

use support::TestGateway;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wardgate_tests::mqtt::{connect_v4, read_until_closed};
use wardgate_tests::wait::wait_for_async;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_garbage_sockets_do_not_stall_devices() {
    let gw = TestGateway::start_with(|c| {
        c.edge.handshake_timeout = Duration::from_secs(1);
    })
    .await;
    let mut by = gw.device("steady").await;
    // 40 sockets that never finish a TLS handshake, 10 that send garbage.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(("127.0.0.1", gw.port())).await.unwrap());
    }
    for _ in 0..10 {
        let mut s = TcpStream::connect(("127.0.0.1", gw.port())).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\xff\xfe")
            .await
            .unwrap();
        idle.push(s);
    }
    // Devices keep working while those sit there.
    let mut v = device_sim::VitalsGenerator::new(5);
    by.publish_telemetry(v.next_readings()).await.unwrap();
    by.wait_puback(Duration::from_secs(10)).await.unwrap();
    gw.assert_others_work("newcomer").await;
    // The stalled handshakes are cut at the timeout and recorded.
    gw.wait_audit_any("edge.tls", "tls_timeout").await;
    gw.wait_audit_any("edge.tls", "tls_handshake").await;
    by.publish_telemetry(v.next_readings()).await.unwrap();
    by.wait_puback(Duration::from_secs(10)).await.unwrap();
}

// control: resilience
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_refuses_extra_peers_and_frees_slots() {
    let gw = TestGateway::start_with(|c| {
        c.edge.max_connections = 3;
        c.edge.handshake_timeout = Duration::from_secs(1);
    })
    .await;
    let mut first = gw.device("cap-1").await;
    let mut hogs = Vec::new();
    for _ in 0..2 {
        hogs.push(TcpStream::connect(("127.0.0.1", gw.port())).await.unwrap());
    }
    // A fourth peer while all three slots are taken is refused and recorded.
    let _extra = TcpStream::connect(("127.0.0.1", gw.port())).await.unwrap();
    let row = gw.wait_audit_any("edge.connect", "capacity").await;
    assert_eq!(row.outcome, "refused");
    assert!(
        gw.handle()
            .context
            .metrics
            .edge
            .connection_count("refused_capacity")
            >= 1
    );
    // The connected device is unaffected.
    let mut v = device_sim::VitalsGenerator::new(6);
    first.publish_telemetry(v.next_readings()).await.unwrap();
    first.wait_puback(Duration::from_secs(10)).await.unwrap();
    // Once the hogs time out, a new device gets a slot.
    gw.wait_audit_any("edge.tls", "tls_timeout").await;
    let tls = gw.enroll("cap-2");
    let opts = gw.options("cap-2", tls);
    let connected = wait_for_async(Duration::from_secs(15), || async {
        device_sim::SimDevice::connect(&opts).await.ok()
    })
    .await;
    assert!(
        connected.is_some(),
        "a slot is freed after the handshake timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_device_is_dropped_at_its_keep_alive() {
    let gw = TestGateway::start_with(|c| {
        c.edge.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut s = gw.raw_device("quiet").await;
    s.write_all(&connect_v4("quiet", None)).await.unwrap();
    read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("dropped when idle");
    gw.wait_audit("quiet", "edge.disconnect", "idle timeout")
        .await;
    gw.assert_others_work("chatty").await;
}
