//! Every refusal of the edge, each over real TLS on 127.0.0.1. Each test
//! checks that the peer was refused, that the reason was recorded (audit row
//! and, for violations, the metric) and that other devices kept working.

mod support;

use std::time::Duration;

use device_sim::{SimDevice, VitalsGenerator};
use gateway::registry::DeviceState;
use support::TestGateway;
use tokio::io::AsyncWriteExt;
use wardgate_protocol::DeviceId;
use wardgate_tests::mqtt::{connect_v4, publish_v4, read_until_closed};
use wardgate_tests::pki::Ca;
use wardgate_tests::telemetry::telemetry_json;
use wardgate_tests::tls::raw_tls;
use wardgate_tests::wait::wait_for;

const T: Duration = Duration::from_secs(10);

/// A device connected before the attack that must keep working after it.
struct Bystander {
    dev: SimDevice,
    vitals: VitalsGenerator,
}

impl Bystander {
    async fn new(gw: &TestGateway) -> Self {
        Self {
            dev: gw.device("bystander").await,
            vitals: VitalsGenerator::new(9),
        }
    }

    async fn still_works(&mut self, gw: &TestGateway) {
        self.dev
            .publish_telemetry(self.vitals.next_readings())
            .await
            .unwrap();
        self.dev
            .wait_puback(T)
            .await
            .expect("bystander keeps its session");
        gw.assert_others_work("newcomer").await;
    }
}

/// A device publishes `payload` on `topic`; expect a disconnect, an audit
/// row with `reason` and the violation metric.
async fn refused_publish(topic_for: impl Fn(&str) -> String, payload: Vec<u8>, reason: &str) {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    let mut sub = gw.subscriber("test.all", "wardgate/v1/devices/+/telemetry");
    let mut dev = gw.device("attacker").await;
    dev.publish_raw(&topic_for("attacker"), payload)
        .await
        .unwrap();
    dev.wait_disconnected(T).await.expect("attacker is cut off");
    let row = gw.wait_audit("attacker", "edge.violation", reason).await;
    assert_eq!(row.outcome, "refused");
    assert_eq!(gw.handle().context.metrics.edge.violation_count(reason), 1);
    // Nothing from the attacker reached the broker.
    by.still_works(&gw).await;
    for (topic, _) in sub.drain(Duration::from_millis(300)).await {
        assert!(
            !topic.contains("attacker"),
            "attacker message leaked: {topic}"
        );
    }
}

// A keep-alive of 0 means "none" (MQTT 3.1.1 section 3.1.2.10): legal, and
// the embedded broker, which refuses it, must not see it. Found by the
// malformed flood, where a bit flip zeroed a CONNECT's keep-alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_without_keep_alive_is_accepted() {
    let gw = TestGateway::start().await;
    let mut s = gw.raw_device("sleepy").await;
    let mut connect = connect_v4("sleepy", None);
    // fixed header (2), "MQTT" (6), level, flags: then the keep-alive.
    connect[10..12].copy_from_slice(&0_u16.to_be_bytes());
    s.write_all(&connect).await.unwrap();
    let mut ack = [0_u8; 4];
    tokio::time::timeout(T, tokio::io::AsyncReadExt::read_exact(&mut s, &mut ack))
        .await
        .expect("a CONNACK")
        .unwrap();
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00], "accepted");
    s.write_all(&publish_v4(
        "wardgate/v1/devices/sleepy/telemetry",
        &telemetry_json(1, 70.0),
        1,
    ))
    .await
    .unwrap();
    let mut puback = [0_u8; 4];
    tokio::time::timeout(T, tokio::io::AsyncReadExt::read_exact(&mut s, &mut puback))
        .await
        .expect("a PUBACK")
        .unwrap();
    assert_eq!(puback, [0x40, 0x02, 0x00, 0x01]);
}

// control: authorization
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_another_devices_topic() {
    refused_publish(
        |_| "wardgate/v1/devices/bystander/telemetry".into(),
        telemetry_json(1, 70.0),
        "acl_topic",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_on_a_gateway_to_device_topic() {
    refused_publish(
        |me| format!("wardgate/v1/devices/{me}/cmd"),
        b"{}".to_vec(),
        "acl_direction",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json() {
    refused_publish(
        |me| format!("wardgate/v1/devices/{me}/telemetry"),
        b"{\"schema\":1,".to_vec(),
        "malformed_payload",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_vital() {
    refused_publish(
        |me| format!("wardgate/v1/devices/{me}/telemetry"),
        telemetry_json(1, 900.0),
        "out_of_range",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_over_the_limit() {
    let mut big = telemetry_json(1, 70.0);
    big.extend(std::iter::repeat_n(b' ', 5000));
    refused_publish(
        |me| format!("wardgate/v1/devices/{me}/telemetry"),
        big,
        "payload_size",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_seq() {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    let mut sub = gw.subscriber("test.replay", "wardgate/v1/devices/attacker/telemetry");
    let mut dev = gw.device("attacker").await;
    let mut v = VitalsGenerator::new(1);
    dev.publish_telemetry(v.next_readings()).await.unwrap();
    dev.wait_puback(T).await.unwrap();
    dev.set_seq(0);
    dev.publish_telemetry(v.next_readings()).await.unwrap();
    dev.wait_disconnected(T).await.unwrap();
    let row = gw.wait_audit("attacker", "edge.violation", "replay").await;
    assert!(row.detail_json()["error"]
        .as_str()
        .unwrap()
        .contains("seq 1"));
    assert_eq!(
        sub.drain(Duration::from_millis(300)).await.len(),
        1,
        "only the first message got through"
    );

    // The replay is refused across reconnects too.
    let tls = gw.certificate("attacker");
    let mut again = SimDevice::connect(&gw.options("attacker", tls))
        .await
        .unwrap();
    again.set_seq(0);
    again.publish_telemetry(v.next_readings()).await.unwrap();
    again.wait_disconnected(T).await.unwrap();
    let metrics = gw.handle().context.metrics.edge.clone();
    wait_for(T, || (metrics.violation_count("replay") == 2).then_some(()))
        .await
        .expect("both replays counted");
    by.still_works(&gw).await;
}

async fn refused_subscribe(filter: &str) {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    let mut dev = gw.device("attacker").await;
    dev.subscribe(filter).await.unwrap();
    dev.wait_disconnected(T).await.expect("attacker is cut off");
    let row = gw
        .wait_audit("attacker", "edge.violation", "acl_topic")
        .await;
    assert!(row.detail_json()["error"]
        .as_str()
        .unwrap()
        .contains(filter));
    by.still_works(&gw).await;
}

// control: authorization
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_to_everything() {
    refused_subscribe("#").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_with_leading_wildcard() {
    refused_subscribe("+/v1/devices/bystander/telemetry").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_to_sys() {
    refused_subscribe("$SYS/#").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_to_other_devices_with_wildcard() {
    refused_subscribe("wardgate/v1/devices/+/cmd").await;
}

// control: authentication
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_id_differs_from_certificate() {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    let tls = gw.enroll("pump-07");
    let mut opts = gw.options("pump-07", tls);
    opts.client_id = Some("bystander".into());
    let err = SimDevice::connect(&opts).await.unwrap_err();
    assert!(
        err.to_string().contains("NotAuthorized") || err.to_string().contains("Refused"),
        "{err}"
    );
    let row = gw
        .wait_audit("pump-07", "edge.connect", "client_id_mismatch")
        .await;
    assert_eq!(row.outcome, "refused");
    by.still_works(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unenrolled_device() {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    let err = SimDevice::connect(&gw.options("stranger", gw.certificate("stranger")))
        .await
        .unwrap_err();
    assert!(!err.to_string().is_empty());
    gw.wait_audit("stranger", "edge.connect", "not_enrolled")
        .await;
    by.still_works(&gw).await;
}

// control: authorization
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_device_is_refused() {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    let tls = gw.enroll("pump-08");
    let id = DeviceId::parse("pump-08").unwrap();
    gw.handle()
        .context
        .registry
        .set_state(&id, DeviceState::Revoked, "test", "stolen")
        .unwrap();
    SimDevice::connect(&gw.options("pump-08", tls))
        .await
        .unwrap_err();
    gw.wait_audit("pump-08", "edge.connect", "revoked").await;
    by.still_works(&gw).await;
}

// control: authorization
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_revoked_while_connected_is_cut_off_at_once() {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    let mut dev = gw.device("pump-09").await;
    let id = DeviceId::parse("pump-09").unwrap();
    gw.handle()
        .context
        .registry
        .set_state_async(id, DeviceState::Revoked, "test".into(), "lost".into())
        .await
        .unwrap();
    dev.wait_disconnected(T)
        .await
        .expect("revocation ends the live session");
    let row = gw.wait_audit("pump-09", "edge.disconnect", "revoked").await;
    assert_eq!(row.actor, "gateway");
    by.still_works(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_device_is_confined_live() {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    let mut dev = gw.device("pump-10").await;
    let id = DeviceId::parse("pump-10").unwrap();
    gw.handle()
        .context
        .registry
        .set_state_async(
            id.clone(),
            DeviceState::Quarantined,
            "test".into(),
            "odd".into(),
        )
        .await
        .unwrap();
    // Status is still allowed once the change has reached the session.
    let reached = wait_for(T, || {
        gw.handle()
            .context
            .registry
            .get(&id)
            .unwrap()
            .filter(|r| r.state == DeviceState::Quarantined)
    })
    .await;
    assert!(reached.is_some());
    dev.publish_status(wardgate_protocol::DeviceActivity::Idle, "1.0.0")
        .await
        .unwrap();
    dev.wait_puback(T).await.unwrap();
    dev.publish_telemetry(VitalsGenerator::new(2).next_readings())
        .await
        .unwrap();
    dev.wait_disconnected(T).await.unwrap();
    gw.wait_audit("pump-10", "edge.violation", "quarantined")
        .await;
    by.still_works(&gw).await;
}

async fn refused_handshake(gw: &TestGateway, cert_key: Option<(&str, &str)>, expect: &str) {
    let result = raw_tls(gw.port(), &gw.pki.ca.cert_pem, cert_key).await;
    if let Ok(mut tls) = result {
        // TLS 1.3 reports the refusal after the client's Finished: the
        // connection must be closed without a single MQTT byte.
        let _ = tls.write_all(&connect_v4("x", None)).await;
        let got = read_until_closed(&mut tls, T)
            .await
            .expect("closed by the gateway");
        assert!(got.is_empty(), "no MQTT response to an unverified peer");
    }
    let row = gw.wait_audit_any("edge.tls", "tls_handshake").await;
    let error = row.detail_json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains(expect),
        "audit error {error:?} should mention {expect}"
    );
    assert_eq!(
        gw.handle()
            .context
            .metrics
            .edge
            .connection_count("tls_handshake"),
        1
    );
}

// control: authentication, confidentiality-in-transit
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate() {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    refused_handshake(&gw, None, "certificate").await;
    by.still_works(&gw).await;
}

// control: authentication
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca() {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    gw.enroll("pump-11");
    let rogue = Ca::generate("Rogue CA", 5).unwrap();
    let cert = rogue
        .issue_device(&DeviceId::parse("pump-11").unwrap(), 5)
        .unwrap();
    refused_handshake(&gw, Some((&cert.cert_pem, &cert.key_pem)), "UnknownIssuer").await;
    by.still_works(&gw).await;
}

// control: authentication
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate() {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    gw.enroll("pump-12");
    let now = chrono::Utc::now();
    let cert = gw
        .pki
        .ca
        .issue_device_between(
            &DeviceId::parse("pump-12").unwrap(),
            now - chrono::Duration::days(30),
            now - chrono::Duration::days(2),
        )
        .unwrap();
    refused_handshake(&gw, Some((&cert.cert_pem, &cert.key_pem)), "expired").await;
    by.still_works(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_garbage_bytes() {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    let mut s = gw.raw_device("junk-01").await;
    s.write_all(&[0x00, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff])
        .await
        .unwrap();
    read_until_closed(&mut s, T).await.expect("closed");
    gw.wait_audit("junk-01", "edge.violation", "protocol").await;
    by.still_works(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_connect() {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    let mut s = gw.raw_device("junk-02").await;
    s.write_all(&connect_v4("junk-02", None)).await.unwrap();
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
        .await
        .unwrap();
    read_until_closed(&mut s, T).await.expect("closed");
    gw.wait_audit("junk-02", "edge.violation", "protocol").await;
    by.still_works(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_mqtt_packet() {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    let mut sub = gw.subscriber("test.trunc", "wardgate/v1/devices/junk-03/telemetry");
    let mut s = gw.raw_device("junk-03").await;
    s.write_all(&connect_v4("junk-03", None)).await.unwrap();
    let full = publish_v4(
        "wardgate/v1/devices/junk-03/telemetry",
        &telemetry_json(1, 70.0),
        1,
    );
    s.write_all(&full[..full.len() / 2]).await.unwrap();
    s.shutdown().await.unwrap();
    read_until_closed(&mut s, T).await.expect("closed");
    let row = gw.wait_audit("junk-03", "edge.violation", "protocol").await;
    assert!(row.detail_json()["error"]
        .as_str()
        .unwrap()
        .contains("inside a packet"));
    assert!(sub.next(Duration::from_millis(300)).await.is_none());
    by.still_works(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_after_a_violation_reaches_the_broker() {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    let mut sub = gw.subscriber("test.after", "wardgate/v1/devices/+/telemetry");
    let mut s = gw.raw_device("junk-04").await;
    // One write: valid, violation, valid.
    let mut bytes = connect_v4("junk-04", None);
    bytes.extend(publish_v4(
        "wardgate/v1/devices/junk-04/telemetry",
        &telemetry_json(1, 70.0),
        1,
    ));
    bytes.extend(publish_v4(
        "wardgate/v1/devices/bystander/telemetry",
        &telemetry_json(2, 70.0),
        2,
    ));
    bytes.extend(publish_v4(
        "wardgate/v1/devices/junk-04/telemetry",
        &telemetry_json(3, 70.0),
        3,
    ));
    s.write_all(&bytes).await.unwrap();
    read_until_closed(&mut s, T).await.expect("closed");
    gw.wait_audit("junk-04", "edge.violation", "acl_topic")
        .await;
    let got = sub.drain(Duration::from_millis(500)).await;
    assert_eq!(
        got.len(),
        1,
        "exactly the packet before the violation: {got:?}"
    );
    assert_eq!(
        wardgate_protocol::Telemetry::from_json(&got[0].1)
            .unwrap()
            .seq,
        1
    );
    by.still_works(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit() {
    let gw = TestGateway::start_with(|c| {
        c.edge.rate_per_second = 1.0;
        c.edge.rate_burst = 3;
    })
    .await;
    let mut by = Bystander::new(&gw).await;
    let tls = gw.enroll("chatty");
    let mut dev = SimDevice::connect(&gw.options("chatty", tls.clone()))
        .await
        .unwrap();
    let mut v = VitalsGenerator::new(4);
    for _ in 0..20 {
        if dev.publish_telemetry(v.next_readings()).await.is_err() {
            break;
        }
    }
    dev.wait_disconnected(T).await.unwrap();
    let row = gw
        .wait_audit("chatty", "edge.violation", "rate_limit")
        .await;
    let detail: serde_json::Value = serde_json::from_str(&row.detail).unwrap();
    assert_eq!(detail["cooloff_seconds"], 1, "{detail}");
    // Reconnecting at once: closed after the handshake, counted, and no
    // new audit row per attempt; the bystander is not affected.
    // (The detector's own alert rows may still come: edge rows only.)
    let edge_rows = || {
        gw.audit("chatty", None)
            .iter()
            .filter(|r| r.action.starts_with("edge."))
            .count()
    };
    let rows = edge_rows();
    assert!(
        SimDevice::connect(&gw.options("chatty", tls.clone()))
            .await
            .is_err(),
        "a flooder got back in during its cool-off"
    );
    let metrics = gw
        .handle()
        .context
        .metrics
        .edge
        .connection_count("cooling_off");
    assert!(metrics >= 1, "cool-off refusals are counted");
    assert_eq!(edge_rows(), rows, "no audit row per refusal");
    by.still_works(&gw).await;
    // Once the penalty is over it may connect again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    SimDevice::connect(&gw.options("chatty", tls))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_seq_is_refused_after_a_gateway_restart() {
    let pki = support::TestPki::new();
    let data = tempfile::tempdir().unwrap();
    let config = support::test_config(&pki, data.path());
    let id = DeviceId::parse("pump-20").unwrap();
    let tls = pki.device_tls(&pki.ca.issue_device(&id, 5).unwrap());
    let opts = |port| device_sim::DeviceOptions {
        id: id.clone(),
        client_id: None,
        host: "localhost".into(),
        port,
        tls: tls.clone(),
        keep_alive: Duration::from_secs(30),
    };
    let first = gateway::Gateway::start(config.clone()).await.unwrap();
    first
        .context
        .registry
        .enroll(&support::new_device(&id, "m", "h"), "test")
        .unwrap();
    let mut dev = SimDevice::connect(&opts(first.edge_addr().port()))
        .await
        .unwrap();
    let mut v = VitalsGenerator::new(3);
    for _ in 0..3 {
        dev.publish_telemetry(v.next_readings()).await.unwrap();
        dev.wait_puback(T).await.unwrap();
    }
    dev.disconnect().await.unwrap();
    dev.wait_disconnected(T).await.unwrap();
    let registry = first.context.registry.clone();
    wait_for(T, || {
        registry
            .get(&id)
            .unwrap()
            .and_then(|r| r.last_seq)
            .filter(|s| *s == 3)
    })
    .await
    .expect("last seq saved when the session ended");
    first.shutdown(T).await;

    let second = gateway::Gateway::start(config).await.unwrap();
    let mut again = SimDevice::connect(&opts(second.edge_addr().port()))
        .await
        .unwrap();
    again.set_seq(1);
    again.publish_telemetry(v.next_readings()).await.unwrap();
    again
        .wait_disconnected(T)
        .await
        .expect("replay after restart is refused");
    let row =
        support::wait_audit_in(&second.context.audit, "pump-20", "edge.violation", "replay").await;
    assert!(row.detail_json()["error"]
        .as_str()
        .unwrap()
        .contains("last accepted 3"));
    second.shutdown(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_mqtt_is_refused() {
    let gw = TestGateway::start().await;
    let mut by = Bystander::new(&gw).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", gw.port()))
        .await
        .unwrap();
    s.write_all(&connect_v4("bystander", None)).await.unwrap();
    let got = read_until_closed(&mut s, T).await.expect("closed");
    assert!(!got.starts_with(&[0x20]), "no CONNACK over plaintext");
    gw.wait_audit_any("edge.tls", "tls_handshake").await;
    by.still_works(&gw).await;
}
