//! The edge's observer seam: every session event and packet decision
//! reaches the `EdgeObserver` the edge was started with, in order.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use device_sim::{SimDevice, VitalsGenerator};
use gateway::broker::BrokerHandle;
use gateway::context::GatewayContext;
use gateway::edge::frame::PacketKind;
use gateway::edge::{EdgeEvent, EdgeObserver};
use support::{test_config, TestPki};
use wardgate_protocol::{DeviceId, DeviceMessage, TopicKind};
use wardgate_tests::wait::wait_for;

/// Keeps every event (a test may; production observers `try_send`).
#[derive(Default)]
struct Recorder(Mutex<Vec<EdgeEvent>>);

impl EdgeObserver for Recorder {
    fn observe(&self, event: &EdgeEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitted_packets_violation_and_refusals_reach_the_observer() {
    let pki = TestPki::new();
    let data = tempfile::tempdir().unwrap();
    let ctx = GatewayContext::open(test_config(&pki, data.path())).unwrap();
    let broker = BrokerHandle::start(&ctx.config.broker);
    let recorder = Arc::new(Recorder::default());
    let edge = gateway::edge::start(
        ctx.clone(),
        broker,
        None,
        Some(recorder.clone() as Arc<dyn EdgeObserver>),
    )
    .await
    .unwrap();
    let id = DeviceId::parse("obs-01").unwrap();
    ctx.registry
        .enroll(&support::new_device(&id, "m", "h"), "test")
        .unwrap();
    let opts = |id: &DeviceId| device_sim::DeviceOptions {
        id: id.clone(),
        client_id: None,
        host: "localhost".into(),
        port: edge.addr.port(),
        tls: pki.device_tls(&pki.ca.issue_device(id, 5).unwrap()),
        keep_alive: Duration::from_secs(30),
    };

    let mut dev = SimDevice::connect(&opts(&id)).await.unwrap();
    let seq = dev
        .publish_telemetry(VitalsGenerator::new(3).next_readings())
        .await
        .unwrap();
    dev.wait_puback(Duration::from_secs(10)).await.unwrap();
    dev.publish_raw("wardgate/v1/devices/obs-02/telemetry", b"{}".to_vec())
        .await
        .unwrap();
    dev.wait_disconnected(Duration::from_secs(10))
        .await
        .unwrap();

    // A device that is not enrolled is refused at CONNECT.
    let stranger = DeviceId::parse("obs-stranger").unwrap();
    let _ = SimDevice::connect(&opts(&stranger)).await;

    let events = wait_for(Duration::from_secs(10), || {
        let e = recorder.0.lock().unwrap().clone();
        e.iter()
            .any(|e| matches!(e, EdgeEvent::ConnectRefused { reason, .. } if reason == "not_enrolled"))
            .then_some(e)
    })
    .await
    .expect("the refused CONNECT is observed");

    let mine: Vec<&EdgeEvent> = events
        .iter()
        .filter(|e| match e {
            EdgeEvent::SessionAdmitted { device, .. }
            | EdgeEvent::PacketAccepted { device, .. }
            | EdgeEvent::Violation { device, .. }
            | EdgeEvent::SessionClosed { device, .. } => device == &id,
            _ => false,
        })
        .collect();
    assert!(
        matches!(
            mine[0],
            EdgeEvent::SessionAdmitted {
                protocol: "3.1.1" | "5",
                ..
            }
        ),
        "{mine:?}"
    );
    let telemetry = mine
        .iter()
        .find_map(|e| match e {
            EdgeEvent::PacketAccepted {
                kind: PacketKind::Publish,
                topic: Some(TopicKind::Telemetry),
                message: Some(DeviceMessage::Telemetry(t)),
                payload_bytes,
                duplicate: false,
                ..
            } => Some((t.seq, *payload_bytes)),
            _ => None,
        })
        .expect("the telemetry PUBLISH is observed with its parsed message");
    assert_eq!(telemetry.0, seq);
    assert!(telemetry.1 > 0);
    let n = mine.len();
    assert!(
        matches!(mine[n - 2], EdgeEvent::Violation { violation, .. } if violation.reason() == "acl_topic"),
        "{mine:?}"
    );
    assert!(
        matches!(mine[n - 1], EdgeEvent::SessionClosed { reason, .. } if reason == "violation"),
        "{mine:?}"
    );
    ctx.shutdown.cancel();
}
