//! Revoking a device through the admin API cuts its live edge connection:
//! the whole gateway runs in-process (edge with mutual TLS, broker, admin
//! HTTPS on the edge's server certificate), two devices connect over MQTT,
//! an admin revokes one, and the registry's change notification ends its
//! session at once while the other device keeps working.

mod support;

use std::time::Duration;

use gateway::admin::Role;
use gateway::registry::DeviceState;
use gateway::{Config, Gateway};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use support::admin::{never_expiring, token_store};
use wardgate_protocol::DeviceId;
use wardgate_tests::pki::Ca;
use wardgate_tests::tls::client_config;

fn device(ca: &Ca, id: &str, addr: std::net::SocketAddr) -> (AsyncClient, EventLoop) {
    let issued = ca.issue_device(&DeviceId::parse(id).unwrap(), 30).unwrap();
    let tls = client_config(&ca.cert_pem, Some((&issued.cert_pem, &issued.key_pem))).unwrap();
    let mut opts = MqttOptions::new(id, "127.0.0.1", addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    AsyncClient::new(opts, 16)
}

/// Poll until `pred` accepts an event; `Err` if the connection ends first.
async fn until(ev: &mut EventLoop, mut pred: impl FnMut(&Packet) -> bool) -> Result<(), String> {
    let fut = async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Disconnect)) => {
                    return Err("server sent DISCONNECT".to_owned())
                }
                Ok(Event::Incoming(p)) if pred(&p) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    // Only a bound against a hung test, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| Err("no event within 30 s".to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_device_through_the_api_cuts_its_live_connection() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let ca = Ca::generate("Ward 3 device CA", 30).unwrap();
    let (ca_cert, _) = ca.write(&pki).unwrap();
    let server = ca
        .issue_server(&["127.0.0.1".to_owned(), "localhost".to_owned()], 30)
        .unwrap();
    let (server_cert, server_key) = (pki.join("server.pem"), pki.join("server.key"));
    server.write(&server_cert, &server_key).unwrap();

    let mut config = Config::default();
    config.storage.data_dir = dir.path().join("data");
    config.edge.listen = "127.0.0.1:0".parse().unwrap();
    config.edge.ca_cert = ca_cert;
    config.edge.server_cert = server_cert;
    config.edge.server_key = server_key;
    config.admin.bind = "127.0.0.1:0".parse().unwrap();
    let gw = Gateway::start(config).await.unwrap();
    let admin_addr = gw.admin_addr.expect("admin API enabled by default");

    for id in ["pump-01", "pump-02"] {
        gw.context
            .registry
            .enroll(
                &support::new_device(&DeviceId::parse(id).unwrap(), "Infusomat", "pump-hw-1"),
                "test",
            )
            .unwrap();
    }
    let store = token_store(&gw.context.db_path);
    let admin = never_expiring(&store, "ward-admin", Role::Admin, false);
    let viewer = never_expiring(&store, "dashboard", Role::Viewer, false);

    let (_c1, mut ev1) = device(&ca, "pump-01", gw.edge_addr());
    let (c2, mut ev2) = device(&ca, "pump-02", gw.edge_addr());
    until(&mut ev1, |p| matches!(p, Packet::ConnAck(_)))
        .await
        .unwrap();
    until(&mut ev2, |p| matches!(p, Packet::ConnAck(_)))
        .await
        .unwrap();

    let http = wardgate_tests::https::client(&ca.cert_pem).unwrap();
    let url = |path: &str| format!("https://{admin_addr}{path}");

    // A viewer may not revoke: 403, the device stays connected and active.
    let r = http
        .post(url("/api/v1/devices/pump-01/revoke"))
        .bearer_auth(viewer.token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    let id1 = DeviceId::parse("pump-01").unwrap();
    assert_eq!(
        gw.context.registry.get(&id1).unwrap().unwrap().state,
        DeviceState::Active
    );

    // The admin revokes pump-01.
    let r = http
        .post(url("/api/v1/devices/pump-01/revoke"))
        .bearer_auth(admin.token.expose())
        .json(&serde_json::json!({"reason": "stolen from ward 3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        reqwest::StatusCode::OK,
        "{}",
        r.text().await.unwrap_or_default()
    );
    assert_eq!(
        gw.context.registry.get(&id1).unwrap().unwrap().state,
        DeviceState::Revoked
    );

    // Its live session ends without it doing anything.
    let ended = until(&mut ev1, |_| false).await;
    assert!(ended.is_err(), "pump-01 still connected");

    // Recorded: who revoked it, and why.
    let rows = gw
        .context
        .audit
        .find("pump-01", Some("registry.revoke"))
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].actor, format!("admin:{}", admin.record.id));
    assert_eq!(rows[0].detail_json()["reason"], "stolen from ward 3");

    // pump-02 keeps working: it subscribes to its own command topic.
    c2.subscribe("wardgate/v1/devices/pump-02/cmd", QoS::AtLeastOnce)
        .await
        .unwrap();
    until(&mut ev2, |p| matches!(p, Packet::SubAck(_)))
        .await
        .unwrap();

    // pump-01 cannot come back with its (still valid) certificate.
    let (_c1b, mut ev1b) = device(&ca, "pump-01", gw.edge_addr());
    let again = until(
        &mut ev1b,
        |p| matches!(p, Packet::ConnAck(a) if a.code == rumqttc::ConnectReturnCode::Success),
    )
    .await;
    assert!(again.is_err(), "revoked device reconnected");

    assert!(gw.context.audit.verify().unwrap().is_intact());
    gw.shutdown(Duration::from_secs(5)).await;
}

/// Quarantine through the API needs the operator's TOTP code; once given,
/// the live session is confined at once: its next telemetry is a violation
/// that ends the session, while another device keeps delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_over_the_api_with_totp_confines_the_live_session() {
    let gw = support::TestGateway::start().await;
    let admin_addr = gw.handle().admin_addr.expect("admin API enabled");
    let mut mon = gw.device("mon-01").await;
    let mut vitals = device_sim::VitalsGenerator::new(7);
    mon.publish_telemetry(vitals.next_readings()).await.unwrap();
    mon.wait_puback(Duration::from_secs(10)).await.unwrap();

    let store = token_store(&gw.handle().context.db_path);
    let op = never_expiring(&store, "charge-nurse", Role::Operator, true);
    let secret = op.totp.unwrap();
    let http = wardgate_tests::https::client(&gw.pki.ca.cert_pem).unwrap();
    let url = format!("https://{admin_addr}/api/v1/devices/mon-01/quarantine");

    // Without the code: refused, and the device keeps working.
    let r = http
        .post(&url)
        .bearer_auth(op.token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    mon.publish_telemetry(vitals.next_readings()).await.unwrap();
    mon.wait_puback(Duration::from_secs(10)).await.unwrap();

    // With the code: quarantined.
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap();
    let r = http
        .post(&url)
        .bearer_auth(op.token.expose())
        .header("X-Wardgate-TOTP", secret.code_at(now))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);

    // The session is confined: telemetry now ends it (retrying only covers
    // the notification racing the publish; it cannot succeed forever).
    let mut cut = false;
    for _ in 0..50 {
        if mon.publish_telemetry(vitals.next_readings()).await.is_err() {
            cut = true;
            break;
        }
        if mon.wait_puback(Duration::from_secs(10)).await.is_err() {
            cut = true;
            break;
        }
    }
    assert!(cut, "quarantined device kept publishing telemetry");
    gw.wait_audit("mon-01", "edge.violation", "quarantined")
        .await;
    let q = gw.audit("mon-01", Some("registry.quarantine"));
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].actor, format!("admin:{}", op.record.id));
    gw.assert_others_work("mon-02").await;
}
