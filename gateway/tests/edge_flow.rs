//! Happy paths through the edge over real mutual TLS on 127.0.0.1.

mod support;

use std::time::Duration;

use support::TestGateway;
use wardgate_protocol::{DeviceActivity, Telemetry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_device_telemetry_reaches_in_gateway_subscriber() {
    let gw = TestGateway::start().await;
    let mut sub = gw.subscriber("test.sub", "wardgate/v1/devices/+/telemetry");
    let mut dev = gw.device("monitor-01").await;
    let mut vitals = device_sim::VitalsGenerator::new(3);
    for _ in 0..5 {
        dev.publish_telemetry(vitals.next_readings()).await.unwrap();
        dev.wait_puback(Duration::from_secs(10)).await.unwrap();
    }
    let mut seqs = Vec::new();
    for _ in 0..5 {
        let (topic, payload) = sub.next(Duration::from_secs(10)).await.expect("message");
        assert_eq!(topic, "wardgate/v1/devices/monitor-01/telemetry");
        seqs.push(Telemetry::from_json(&payload).unwrap().seq);
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let row = &gw.audit("monitor-01", Some("edge.connect"))[0];
    assert_eq!(row.outcome, "allowed");
    assert!(gw
        .handle()
        .context
        .metrics
        .encode()
        .contains("wardgate_edge_messages_total{kind=\"telemetry\"} 5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_receives_its_commands_and_may_publish_status() {
    let gw = TestGateway::start().await;
    let mut dev = gw.device("pump-01").await;
    dev.subscribe("wardgate/v1/devices/pump-01/cmd")
        .await
        .unwrap();
    loop {
        if dev.next_event(Duration::from_secs(10)).await.unwrap() == device_sim::DeviceEvent::SubAck
        {
            break;
        }
    }
    let (mut tx, _rx) = gw.handle().broker.link("gateway.cmd").unwrap();
    tx.publish(
        "wardgate/v1/devices/pump-01/cmd",
        r#"{"schema":1,"seq":1,"ts":"2026-01-01T00:00:00Z","command":"identify"}"#,
    )
    .unwrap();
    let got = loop {
        if let device_sim::DeviceEvent::Message { topic, payload } =
            dev.next_event(Duration::from_secs(10)).await.unwrap()
        {
            break (topic, payload);
        }
    };
    assert_eq!(got.0, "wardgate/v1/devices/pump-01/cmd");
    wardgate_protocol::Command::from_json(&got.1).unwrap();
    dev.publish_status(DeviceActivity::TherapyInProgress, "1.0.0")
        .await
        .unwrap();
    dev.wait_puback(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sessions_and_stops_every_task() {
    let mut gw = TestGateway::start().await;
    let mut dev = gw.device("monitor-02").await;
    let handle = gw.handle.take().unwrap();
    let tasks = handle.context.tasks.clone();
    handle.shutdown(Duration::from_secs(10)).await;
    assert!(
        tasks.is_closed() && tasks.is_empty(),
        "all tasks ended within the grace period"
    );
    dev.wait_disconnected(Duration::from_secs(10))
        .await
        .expect("session closed");
}
