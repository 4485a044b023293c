//! An alert end to end with a real upstream Mosquitto (as the uplink tests
//! do): a device floods, the detector raises `message_flood`, the policy
//! quarantines it while a bystander keeps streaming; the alert is in the
//! admin API and on the upstream alert topic; a viewer may not release the
//! device, an operator acknowledges and releases it, and both are audited
//! with the operator's token; the released device streams again.

mod support;

use std::sync::Arc;
use std::time::Duration;

use device_sim::{DeviceOptions, DeviceTls, SimDevice, VitalsGenerator};
use gateway::admin::{NewToken, Role, SystemClock, TokenName, TokenStore};
use gateway::config::ResponseAction;
use gateway::registry::DeviceState;
use gateway::Gateway;
use support::ward::Ward;
use wardgate_protocol::DeviceId;
use wardgate_tests::mosquitto::{Mosquitto, Subscriber};
use wardgate_tests::pki::PkiDir;
use wardgate_tests::wait::wait_for;

const LIMIT: Duration = Duration::from_secs(30);

fn token(store: &TokenStore, name: &str, role: Role) -> String {
    store
        .create(NewToken {
            name: TokenName::parse(name).unwrap(),
            role,
            lifetime: None,
            bind_totp: false,
        })
        .unwrap()
        .token
        .expose()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_reaches_api_and_upstream_and_release_is_audited() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("WARDGATE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let up_pki = PkiDir::generate(&dir.path().join("upstream-pki"), "Hospital CA").unwrap();
    let broker = Mosquitto::start_new(&up_pki, &dir.path().join("mosquitto")).unwrap();
    let consumer = up_pki.client("hospital-consumer").unwrap();
    let sub = Subscriber::start(&broker, &up_pki, &consumer, "consumer", "wardgate/ward/#")
        .await
        .unwrap();
    let gw_id = up_pki.client("ward-7-gateway").unwrap();
    let ward = Ward::new(dir.path(), &broker, &up_pki, &gw_id, "").unwrap();
    let flooder = ward.enroll("monitor-01").unwrap();
    let bystander = ward.enroll("monitor-02").unwrap();
    let mut config = ward.config().unwrap();
    config.admin.enabled = true;
    config.admin.bind = "127.0.0.1:0".parse().unwrap();
    // The ward's edge allows any rate: only behaviour gives the flood away.
    config
        .anomaly
        .response
        .insert("message_flood".into(), ResponseAction::Quarantine);
    let ca_pem = std::fs::read_to_string(&config.edge.ca_cert).unwrap();
    let gw = Gateway::start(config).await.unwrap();
    let admin = gw.admin_addr.unwrap();
    let tokens = TokenStore::open(&gw.context.db_path, Arc::new(SystemClock), 1).unwrap();
    let viewer = token(&tokens, "dashboard", Role::Viewer);
    let operator = token(&tokens, "charge-nurse-it", Role::Operator);
    let http = wardgate_tests::https::client(&ca_pem).unwrap();
    let url = |p: &str| format!("https://{admin}{p}");

    let options = |id: &str, files: &wardgate_tests::pki::ClientIdentity| DeviceOptions {
        id: DeviceId::parse(id).unwrap(),
        client_id: None,
        host: "localhost".into(),
        port: ward.edge_port,
        tls: DeviceTls {
            ca_pem: ca_pem.clone(),
            cert_pem: std::fs::read_to_string(&files.cert).unwrap(),
            key_pem: std::fs::read_to_string(&files.key).unwrap(),
        },
        keep_alive: Duration::from_secs(30),
    };
    let mut calm = SimDevice::connect(&options("monitor-02", &bystander.files))
        .await
        .unwrap();
    let mut flood = SimDevice::connect(&options("monitor-01", &flooder.files))
        .await
        .unwrap();
    let mut vitals = VitalsGenerator::new(3);
    let mut calm_vitals = VitalsGenerator::new(4);
    let id1 = DeviceId::parse("monitor-01").unwrap();
    // 40 messages per second from monitor-01, one per 250 ms from monitor-02.
    for i in 0..120 {
        let _ = flood.publish_telemetry(vitals.next_readings()).await;
        if i % 10 == 0 {
            calm.publish_telemetry(calm_vitals.next_readings())
                .await
                .unwrap();
            calm.wait_puback(LIMIT).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let registry = gw.context.registry.clone();
    let quarantined = wait_for(LIMIT, || {
        registry.get(&id1).unwrap().unwrap().state == DeviceState::Quarantined
    })
    .await;
    assert!(quarantined, "the flooding device is quarantined");
    // The bystander is untouched and still acknowledged.
    calm.publish_telemetry(calm_vitals.next_readings())
        .await
        .unwrap();
    calm.wait_puback(LIMIT).await.unwrap();

    // In the API.
    let body: serde_json::Value = http
        .get(url("/api/v1/alerts?open=true"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alert = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "message_flood" && a["device"] == "monitor-01")
        .unwrap_or_else(|| panic!("no flood alert in {body}"))
        .clone();
    assert_eq!(alert["quarantined"], true);
    assert!(alert["score"].as_f64().unwrap() >= 1.0);
    assert!(alert["evidence"]["recent_per_second"].as_f64().unwrap() > 20.0);
    let id = alert["id"].as_i64().unwrap();
    assert!(
        body["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["device"] != "monitor-02"),
        "nothing about the bystander: {body}"
    );

    // Upstream, on the alert topic of the real broker.
    let upstream = wait_for(LIMIT, || {
        sub.snapshot()
            .by_topic
            .get("wardgate/ward/alerts")
            .and_then(|v| {
                v.iter()
                    .map(|p| serde_json::from_slice::<serde_json::Value>(p).unwrap())
                    .find(|a| a["id"] == id)
            })
    })
    .await
    .expect("the alert reaches the upstream alert topic");
    assert_eq!(upstream["kind"], "message_flood");
    assert_eq!(upstream["device"], "monitor-01");
    assert_eq!(upstream["type"], "wardgate.alert");

    // A viewer may not release.
    let r = http
        .post(url(&format!("/api/v1/alerts/{id}/release")))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(
        registry.get(&id1).unwrap().unwrap().state,
        DeviceState::Quarantined
    );

    // The operator acknowledges, then releases.
    let r = http
        .post(url(&format!("/api/v1/alerts/{id}/acknowledge")))
        .bearer_auth(&operator)
        .json(&serde_json::json!({"note": "firmware bug, vendor called"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let r = http
        .post(url(&format!("/api/v1/alerts/{id}/release")))
        .bearer_auth(&operator)
        .json(&serde_json::json!({"note": "patched"}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["released"], "monitor-01");
    assert_eq!(
        registry.get(&id1).unwrap().unwrap().state,
        DeviceState::Active
    );
    // Releasing again is a conflict: it is no longer quarantined.
    let r = http
        .post(url(&format!("/api/v1/alerts/{id}/release")))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CONFLICT);

    // Audited, with the operator's token as the actor.
    let operator_id = tokens
        .list()
        .unwrap()
        .into_iter()
        .find(|t| t.name.as_str() == "charge-nurse-it")
        .unwrap()
        .id;
    let actor = format!("admin:{operator_id}");
    let rows = gw.context.audit.all().unwrap();
    let by = |action: &str| rows.iter().find(|r| r.action == action && r.actor == actor);
    assert!(by("anomaly.acknowledge").is_some(), "acknowledge audited");
    assert!(by("anomaly.release").is_some(), "release audited");
    let reactivated = rows
        .iter()
        .find(|r| {
            r.subject == "monitor-01" && r.actor == actor && r.action.starts_with("registry.")
        })
        .expect("the registry change is audited with the operator");
    assert!(reactivated.detail_json()["reason"]
        .as_str()
        .unwrap()
        .contains(&format!("#{id}")));
    assert!(rows
        .iter()
        .any(|r| r.action == "anomaly.alert" && r.subject == "monitor-01"));
    assert!(gw.context.audit.verify().unwrap().is_intact());

    // The released device streams again.
    let mut back = SimDevice::connect(&options("monitor-01", &flooder.files))
        .await
        .unwrap();
    back.set_seq(1_000_000);
    back.publish_telemetry(vitals.next_readings())
        .await
        .unwrap();
    back.wait_puback(LIMIT).await.unwrap();
    drop(sub);
    gw.shutdown(Duration::from_secs(5)).await;
}
