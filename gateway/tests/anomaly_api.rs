//! An alert end to end with a real upstream Mosquitto (as the uplink tests
//! do): a device floods, the detector raises `message_flood`, the policy
//! quarantines it while a bystander keeps streaming; the alert is in the
//! admin API and on the upstream alert topic; a viewer may not release the
//! device, an operator acknowledges and releases it, and both are audited
//! with the operator's token; the released device streams again.

mod support;

use std::time::Duration;

use device_sim::{DeviceOptions, DeviceTls, SimDevice, VitalsGenerator};
use gateway::admin::{Role, TokenStore};
use gateway::config::ResponseAction;
use gateway::registry::DeviceState;
use gateway::Gateway;
use support::admin::{never_expiring, token_store};
use support::ward::upstream_and_ward;
use wardgate_protocol::DeviceId;
use wardgate_tests::wait::wait_for;

const LIMIT: Duration = Duration::from_secs(30);

/// The bearer secret of a new token without TOTP.
fn token(store: &TokenStore, name: &str, role: Role) -> String {
    never_expiring(store, name, role, false)
        .token
        .expose()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_reaches_api_and_upstream_and_release_is_audited() {
    support::init_tracing();
    let (up, ward) = upstream_and_ward("").await.unwrap();
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
    let tokens = token_store(&gw.context.db_path);
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
    let state = || registry.get(&id1).unwrap().unwrap().state;
    let quarantined = wait_for(LIMIT, || state() == DeviceState::Quarantined).await;
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
        up.sub
            .snapshot()
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

    // `POST /api/v1/alerts/{id}/<action>` as `token`, with a note if given.
    let on_alert = |action: &str, token: &str, note: Option<&str>| {
        let req = http
            .post(url(&format!("/api/v1/alerts/{id}/{action}")))
            .bearer_auth(token);
        match note {
            Some(note) => req.json(&serde_json::json!({ "note": note })),
            None => req,
        }
        .send()
    };

    // A viewer may not release.
    let r = on_alert("release", &viewer, None).await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(state(), DeviceState::Quarantined);

    // The operator acknowledges, then releases.
    let r = on_alert(
        "acknowledge",
        &operator,
        Some("firmware bug, vendor called"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let r = on_alert("release", &operator, Some("patched"))
        .await
        .unwrap();
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["released"], "monitor-01");
    assert_eq!(state(), DeviceState::Active);
    // Releasing again is a conflict: it is no longer quarantined.
    let r = on_alert("release", &operator, None).await.unwrap();
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
    drop(up.sub);
    gw.shutdown(Duration::from_secs(5)).await;
}
