//! Devices -> gateway (in process: edge, outbox, bridge) -> real Mosquitto:
//! an upstream outage with nothing missing, and a full outbox under both
//! policies with the alert (metric) and the audit rows.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway::app::{Gateway, GatewayHandle};
use support::admin::{never_expiring, token_store};
use support::ward::{arrived, upstream_and_ward, Delivery, DeviceIdentity, Upstream, Ward};
use wardgate_tests::wait::wait_for;

const LIMIT: Duration = Duration::from_secs(90);

/// The upstream and a ward against it, with the gateway's log in the test output.
async fn setup(uplink_extra: &str) -> (Upstream, Ward) {
    support::init_tracing();
    upstream_and_ward(uplink_extra).await.unwrap()
}

fn metric(handle: &GatewayHandle, name: &str) -> Option<f64> {
    handle
        .context
        .metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// How many audit rows `handle` holds for `subject` with `action`.
fn audit_rows(handle: &GatewayHandle, subject: &str, action: &str) -> usize {
    handle
        .context
        .audit
        .find(subject, Some(action))
        .unwrap()
        .len()
}

/// Send `seqs` from each device concurrently; returns (device, seq) acked.
async fn send_all(
    ward: &Ward,
    devices: &[DeviceIdentity],
    seqs: std::ops::RangeInclusive<u64>,
) -> Vec<(String, u64)> {
    let mut tasks = Vec::new();
    for d in devices {
        let device = ward.device(d).unwrap();
        let seqs = seqs.clone();
        tasks.push(tokio::spawn(async move {
            let live = Arc::new(Mutex::new(Vec::new()));
            let r = device.send(seqs, 16, live).await;
            if r.error.is_some() {
                return Err(format!("{}: {:?}", device.id, r.error));
            }
            Ok(r.acked
                .into_iter()
                .map(|s| (device.id.clone(), s))
                .collect::<Vec<_>>())
        }));
    }
    let mut acked = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(a) => acked.extend(a),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        let audit = gateway::audit::AuditLog::open(&ward.db_path()).unwrap();
        for r in audit.recent(20).unwrap() {
            eprintln!(
                "audit: {} {} {} {} {}",
                r.actor, r.action, r.subject, r.outcome, r.detail
            );
        }
        panic!("devices failed: {errors:?}");
    }
    acked
}

// control: resilience
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_keep_sending_through_an_upstream_outage_and_nothing_is_missing() {
    let (mut up, ward) = setup("").await;
    let devices: Vec<_> = ["monitor-01", "monitor-02", "pump-03", "vent-04"]
        .iter()
        .map(|id| ward.enroll(id).unwrap())
        .collect();
    let handle = Gateway::start(ward.config().unwrap()).await.unwrap();
    assert!(
        wait_for(LIMIT, || metric(&handle, "wardgate_uplink_connected")
            == Some(1.0))
        .await
    );

    let mut acked = send_all(&ward, &devices, 1..=50).await;
    up.broker.stop().unwrap();
    assert!(
        wait_for(LIMIT, || metric(&handle, "wardgate_uplink_connected")
            == Some(0.0))
        .await
    );
    // Devices keep sending during the outage and are acknowledged: the
    // outbox has it.
    acked.extend(send_all(&ward, &devices, 51..=250).await);
    assert_eq!(
        acked.len(),
        1000,
        "every message was acknowledged to its device"
    );
    let waiting = metric(&handle, "wardgate_uplink_outbox_rows").unwrap_or(0.0);
    assert!(waiting > 0.0);
    up.broker.start().unwrap();

    let delivery = up.delivery(&acked, LIMIT).await;
    println!(
        "device outage: {} acknowledged to devices, {waiting} waited in the outbox, {delivery}",
        acked.len(),
    );
    delivery.assert_none_missing("missing");
    // Order per device (first arrivals).
    let mut seen = std::collections::HashSet::new();
    let mut per_device: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for a in &delivery.arrivals {
        if seen.insert(a.clone()) {
            per_device.entry(a.0.clone()).or_default().push(a.1);
        }
    }
    for (d, seqs) in per_device {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "order of {d}");
    }
    assert!(
        wait_for(LIMIT, || metric(&handle, "wardgate_uplink_outbox_rows")
            == Some(0.0))
        .await
    );
    // The outage is on record: connect, disconnect, connect again.
    let broker_addr = format!("127.0.0.1:{}", up.broker.port);
    assert!(
        wait_for(LIMIT, || audit_rows(
            &handle,
            &broker_addr,
            "uplink.connect"
        ) >= 2)
        .await
    );
    assert_eq!(audit_rows(&handle, &broker_addr, "uplink.disconnect"), 1);
    handle.shutdown(Duration::from_secs(10)).await;
    up.sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_outbox_refuse_policy_refuses_the_device_records_why_and_recovers() {
    let (mut up, ward) = setup("outbox_max_rows = 20\nfull_policy = \"refuse\"").await;
    let a = ward.enroll("monitor-a").unwrap();
    let b = ward.enroll("monitor-b").unwrap();
    up.broker.stop().unwrap();
    let handle = Gateway::start(ward.config().unwrap()).await.unwrap();

    // Upstream down: 20 fit, the 21st is refused; the device gets no PUBACK
    // for it and is disconnected.
    let live = Arc::new(Mutex::new(Vec::new()));
    let report = ward.device(&a).unwrap().send(1..=30, 1, live).await;
    assert_eq!(report.acked, (1..=20).collect::<Vec<_>>());
    assert!(report.error.is_some(), "device was refused");

    // Recorded: alert metric and audit rows naming the device and seq.
    assert_eq!(
        metric(&handle, "wardgate_uplink_outbox_full_events_total"),
        Some(1.0)
    );
    assert!(metric(&handle, "wardgate_uplink_refused_messages_total").unwrap_or(0.0) >= 1.0);
    assert_eq!(audit_rows(&handle, "outbox", "uplink.outbox_full"), 1);
    let audit = &handle.context.audit;
    let refused = audit
        .find("monitor-a", Some("uplink.telemetry_refused"))
        .unwrap();
    assert!(!refused.is_empty());
    let detail = refused[0].detail_json();
    assert_eq!(detail["messages"][0]["seq"], 21, "{detail}");
    assert!(
        detail["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("outbox_max_rows"),
        "{detail}"
    );
    assert!(audit.verify().unwrap().is_intact());

    // Everyone else keeps working once the upstream is back: the 20 stored
    // arrive, the outbox drains, and the other device is accepted.
    up.broker.start().unwrap();
    let got = up
        .sub
        .wait_until(LIMIT, |r| r.count("monitor-a/telemetry") >= 20)
        .await;
    let expected: Vec<_> = (1..=20).map(|q| ("monitor-a".to_owned(), q)).collect();
    assert!(Delivery::of(&expected, &got).missing.is_empty());
    assert!(
        wait_for(LIMIT, || metric(&handle, "wardgate_uplink_outbox_rows")
            == Some(0.0))
        .await
    );
    let r = ward
        .device(&b)
        .unwrap()
        .send(1..=5, 5, Arc::new(Mutex::new(Vec::new())))
        .await;
    assert_eq!(r.acked.len(), 5, "{:?}", r.error);
    let got = up
        .sub
        .wait_until(LIMIT, |r| r.count("monitor-b/telemetry") >= 5)
        .await;
    assert_eq!(got.count("monitor-b/telemetry"), 5);
    assert!(audit_rows(&handle, "outbox", "uplink.outbox_recovered") > 0);
    handle.shutdown(Duration::from_secs(10)).await;
    up.sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_outbox_drop_oldest_policy_drops_non_critical_and_records_each() {
    // Only temperature is critical here; the devices send heart rate + SpO2.
    let (mut up, ward) = setup(
        "outbox_max_rows = 20\nfull_policy = \"drop_oldest\"\ncritical_kinds = [\"temperature\"]",
    )
    .await;
    let a = ward.enroll("monitor-a").unwrap();
    up.broker.stop().unwrap();
    let handle = Gateway::start(ward.config().unwrap()).await.unwrap();

    let report = ward
        .device(&a)
        .unwrap()
        .send(1..=30, 1, Arc::new(Mutex::new(Vec::new())))
        .await;
    assert_eq!(
        report.acked,
        (1..=30).collect::<Vec<_>>(),
        "{:?}",
        report.error
    );
    assert_eq!(
        metric(&handle, "wardgate_uplink_dropped_messages_total"),
        Some(10.0)
    );
    assert_eq!(
        metric(&handle, "wardgate_uplink_outbox_full_events_total"),
        Some(1.0)
    );
    assert_eq!(audit_rows(&handle, "outbox", "uplink.outbox_full"), 1);
    let audit = &handle.context.audit;
    let dropped: Vec<u64> = audit
        .find("monitor-a", Some("uplink.telemetry_dropped"))
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.detail_json()["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| m["seq"].as_u64())
        })
        .collect();
    assert_eq!(
        dropped,
        (1..=10).collect::<Vec<_>>(),
        "each dropped message is on record"
    );

    up.broker.start().unwrap();
    let got = up
        .sub
        .wait_until(LIMIT, |r| r.count("monitor-a/telemetry") >= 20)
        .await;
    let mut seqs: Vec<u64> = arrived(&got).into_iter().map(|(_, q)| q).collect();
    seqs.dedup();
    assert_eq!(seqs, (11..=30).collect::<Vec<_>>());
    handle.shutdown(Duration::from_secs(10)).await;
    up.sub.stop().await;
}

/// `GET /api/v1/status` of the admin API shows the uplink: connected, outbox
/// depth and the age of the oldest waiting message, through an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_status_shows_uplink_connection_and_outbox_depth() {
    use gateway::admin::Role;

    let (mut up, ward) = setup("").await;
    let devices = vec![ward.enroll("monitor-01").unwrap()];
    let mut config = ward.config().unwrap();
    config.admin.enabled = true;
    config.admin.bind = "127.0.0.1:0".parse().unwrap();
    let handle = Gateway::start(config).await.unwrap();
    let admin = handle.admin_addr.expect("admin API enabled");

    let tokens = token_store(&ward.db_path());
    let viewer = never_expiring(&tokens, "ward-dashboard", Role::Viewer, false);
    let ca = std::fs::read_to_string(ward.dir.join("ward-pki").join("ca.pem")).unwrap();
    let client = wardgate_tests::https::client(&ca).unwrap();
    let status = || {
        let req = client
            .get(format!("https://{admin}/api/v1/status"))
            .bearer_auth(viewer.token.expose());
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()["uplink"].clone()
        }
    };
    let deadline = tokio::time::Instant::now() + LIMIT;
    while status().await["connected"] != true {
        assert!(
            tokio::time::Instant::now() < deadline,
            "uplink never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let online = status().await;
    assert_eq!(online["outbox_rows"], 0);
    assert!(online["oldest_message_age_seconds"].is_null());

    up.broker.stop().unwrap();
    while status().await["connected"] != false {
        assert!(tokio::time::Instant::now() < deadline, "outage never seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let acked = send_all(&ward, &devices, 1..=20).await;
    assert_eq!(acked.len(), 20);
    let down = status().await;
    assert_eq!(down["outbox_rows"], 20, "{down}");
    assert!(down["oldest_message_age_seconds"].as_f64().unwrap() >= 0.0);
    assert!(down["outbox_bytes"].as_u64().unwrap() > 0);

    up.broker.start().unwrap();
    while status().await["outbox_rows"] != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox never drained"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.shutdown(Duration::from_secs(10)).await;
    up.sub.stop().await;
}
