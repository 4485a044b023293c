//! Stock clients: `mosquitto_pub` / `mosquitto_sub` with a device
//! certificate work on their own topics and are cut off when they stray.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::TestGateway;
use wardgate_protocol::DeviceId;
use wardgate_tests::telemetry::telemetry_json;
use wardgate_tests::wait::wait_for;

const PUB: &str = "/usr/bin/mosquitto_pub";
const SUB: &str = "/usr/bin/mosquitto_sub";

struct Files {
    ca: String,
    cert: String,
    key: String,
}

fn files(gw: &TestGateway, id: &str) -> Files {
    gw.enroll(id);
    let written = gw.pki.device(&DeviceId::parse(id).unwrap()).unwrap();
    Files {
        ca: gw.pki.ca_path.display().to_string(),
        cert: written.cert.display().to_string(),
        key: written.key.display().to_string(),
    }
}

fn tls_args(f: &Files, port: u16, id: &str, version: &str) -> Vec<String> {
    [
        "-h",
        "localhost",
        "-p",
        &port.to_string(),
        "--cafile",
        &f.ca,
        "--cert",
        &f.cert,
        "--key",
        &f.key,
        "-i",
        id,
        "-V",
        version,
        "-q",
        "1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

async fn run(cmd: &str, args: Vec<String>) -> std::process::Output {
    let cmd = cmd.to_owned();
    tokio::task::spawn_blocking(move || {
        Command::new(cmd)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("mosquitto clients installed")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_publishes_on_its_own_topic_with_v311_and_v5() {
    let gw = TestGateway::start().await;
    let mut sub = gw.subscriber("test.mosq", "wardgate/v1/devices/+/telemetry");
    for (i, version) in ["mqttv311", "mqttv5"].iter().enumerate() {
        let id = format!("mosq-{i}");
        let f = files(&gw, &id);
        let mut args = tls_args(&f, gw.port(), &id, version);
        args.extend([
            "-t".into(),
            format!("wardgate/v1/devices/{id}/telemetry"),
            "-m".into(),
            String::from_utf8(telemetry_json(1, 71.0)).unwrap(),
        ]);
        let out = run(PUB, args).await;
        assert!(
            out.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (topic, payload) = sub
            .next(Duration::from_secs(10))
            .await
            .expect("message reached the broker");
        assert_eq!(topic, format!("wardgate/v1/devices/{id}/telemetry"));
        assert_eq!(payload, telemetry_json(1, 71.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_straying_to_another_topic_is_cut_off() {
    let gw = TestGateway::start().await;
    let mut sub = gw.subscriber("test.mosq", "wardgate/v1/devices/#");
    let f = files(&gw, "mosq-bad");
    let mut args = tls_args(&f, gw.port(), "mosq-bad", "mqttv311");
    args.extend([
        "-t".into(),
        "wardgate/v1/devices/other/telemetry".into(),
        "-m".into(),
        String::from_utf8(telemetry_json(1, 71.0)).unwrap(),
    ]);
    let out = run(PUB, args).await;
    assert!(!out.status.success(), "mosquitto_pub must not see a PUBACK");
    gw.wait_audit("mosq-bad", "edge.violation", "acl_topic")
        .await;
    assert!(sub.next(Duration::from_millis(300)).await.is_none());
    gw.assert_others_work("after-mosq").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_sub_gets_its_commands_and_is_cut_off_on_wildcards() {
    let gw = TestGateway::start().await;
    let f = files(&gw, "mosq-sub");
    let mut args = tls_args(&f, gw.port(), "mosq-sub", "mqttv5");
    args.extend([
        "-t".into(),
        "wardgate/v1/devices/mosq-sub/cmd".into(),
        "-C".into(),
        "1".into(),
        "-W".into(),
        "15".into(),
    ]);
    let sub = tokio::task::spawn_blocking(move || Command::new(SUB).args(args).output().unwrap());
    // Wait until the subscription is in place, then send a command.
    let link = gw.handle().broker.clone();
    let (mut tx, _rx) = link.link("gateway.cmd").unwrap();
    let cmd = r#"{"schema":1,"seq":1,"ts":"2026-01-01T00:00:00Z","command":"identify"}"#;
    wait_for(Duration::from_secs(10), || {
        gw.audit("mosq-sub", Some("edge.connect")).first().cloned()
    })
    .await
    .expect("mosquitto_sub connected");
    let out = loop {
        tx.publish("wardgate/v1/devices/mosq-sub/cmd", cmd).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        if sub.is_finished() {
            break sub.await.unwrap();
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), cmd);

    let mut args = tls_args(&f, gw.port(), "mosq-sub", "mqttv311");
    args.extend(["-t".into(), "#".into(), "-W".into(), "3".into()]);
    let _ = run(SUB, args).await;
    gw.wait_audit("mosq-sub", "edge.violation", "acl_topic")
        .await;
    gw.assert_others_work("after-mosq").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_a_last_will_is_refused() {
    let gw = TestGateway::start().await;
    let f = files(&gw, "mosq-will");
    let mut args = tls_args(&f, gw.port(), "mosq-will", "mqttv311");
    args.extend(
        [
            "--will-topic",
            "wardgate/v1/devices/other/telemetry",
            "--will-payload",
            "x",
            "-t",
            "wardgate/v1/devices/mosq-will/status",
            "-m",
            "{}",
        ]
        .map(String::from),
    );
    let out = run(PUB, args).await;
    assert!(!out.status.success());
    gw.wait_audit("mosq-will", "edge.connect", "last_will")
        .await;
    gw.assert_others_work("after-will").await;
}
