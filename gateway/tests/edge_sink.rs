//! The edge hands every accepted telemetry PUBLISH to the `TelemetrySink`
//! and forwards (and so acknowledges) it only once the sink has taken it.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use device_sim::{SimDevice, VitalsGenerator};
use gateway::broker::BrokerHandle;
use gateway::context::GatewayContext;
use gateway::sink::{AcceptFuture, AcceptedTelemetry, SinkError, TelemetrySink};
use support::{test_config, TestPki};

/// Records what it is given; refuses once `refuse` is set.
#[derive(Default)]
struct RecordingSink {
    taken: Mutex<Vec<AcceptedTelemetry>>,
    refuse: Mutex<bool>,
}

impl TelemetrySink for RecordingSink {
    fn accept(&self, message: AcceptedTelemetry) -> AcceptFuture<'_> {
        Box::pin(async move {
            if *self.refuse.lock().unwrap() {
                return Err(SinkError::Full {
                    detail: "test bound".into(),
                });
            }
            self.taken.lock().unwrap().push(message);
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_is_committed_to_the_sink_before_puback_and_refusal_withholds_it() {
    let pki = TestPki::new();
    let data = tempfile::tempdir().unwrap();
    let config = test_config(&pki, data.path());
    let ctx = GatewayContext::open(config).unwrap();
    let broker = BrokerHandle::start(&ctx.config.broker);
    let sink = Arc::new(RecordingSink::default());
    let edge = gateway::edge::start(
        ctx.clone(),
        broker.clone(),
        Some(sink.clone() as Arc<dyn TelemetrySink>),
        None,
    )
    .await
    .unwrap();

    let id = wardgate_protocol::DeviceId::parse("sink-01").unwrap();
    ctx.registry
        .enroll(&support::new_device(&id, "m", "h"), "test")
        .unwrap();
    let tls = pki.device_tls(&pki.ca.issue_device(&id, 5).unwrap());
    let opts = device_sim::DeviceOptions {
        id: id.clone(),
        client_id: None,
        host: "localhost".into(),
        port: edge.addr.port(),
        tls,
        keep_alive: Duration::from_secs(30),
    };
    let (mut link_tx, mut link_rx) = broker.link("test.sink").unwrap();
    link_tx
        .subscribe("wardgate/v1/devices/+/telemetry")
        .unwrap();

    let mut dev = SimDevice::connect(&opts).await.unwrap();
    let mut v = VitalsGenerator::new(8);
    let seq = dev.publish_telemetry(v.next_readings()).await.unwrap();
    dev.wait_puback(Duration::from_secs(10)).await.unwrap();
    {
        let taken = sink.taken.lock().unwrap();
        assert_eq!(taken.len(), 1, "stored before the PUBACK");
        assert_eq!(taken[0].device_id.as_str(), "sink-01");
        assert_eq!(taken[0].seq, seq);
        assert_eq!(taken[0].topic, "wardgate/v1/devices/sink-01/telemetry");
    }
    // Status messages are not telemetry and bypass the sink.
    dev.publish_status(wardgate_protocol::DeviceActivity::Idle, "1.0.0")
        .await
        .unwrap();
    dev.wait_puback(Duration::from_secs(10)).await.unwrap();
    assert_eq!(sink.taken.lock().unwrap().len(), 1);

    *sink.refuse.lock().unwrap() = true;
    dev.publish_telemetry(v.next_readings()).await.unwrap();
    let err = dev.wait_puback(Duration::from_secs(10)).await.unwrap_err();
    assert!(err.to_string().contains("connection ended"), "{err}");
    let row = support::wait_audit_in(&ctx.audit, "sink-01", "edge.violation", "not_stored").await;
    assert!(row.detail_json()["error"]
        .as_str()
        .unwrap()
        .contains("outbox full"));

    // The broker saw exactly the first message.
    let mut seen = 0;
    while let Ok(Ok(Some(n))) =
        tokio::time::timeout(Duration::from_millis(300), link_rx.next()).await
    {
        if matches!(n, rumqttd::Notification::Forward(_)) {
            seen += 1;
        }
    }
    assert_eq!(seen, 1);
    ctx.shutdown.cancel();
}
