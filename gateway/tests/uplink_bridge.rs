//! The uplink bridge against a real Mosquitto (TLS, `require_certificate
//! true`) on an ephemeral loopback port: delivery in both formats, an
//! upstream outage with nothing missing, and refusal of an untrusted peer.

mod support;

use std::path::Path;
use std::time::Duration;

use gateway::render::Format;
use gateway::sink::AcceptedTelemetry;
use gateway::uplink::{Uplink, UplinkConfig, UplinkNotice};
use prometheus_client::registry::Registry;
use support::accepted;
use support::ward::{arrived, Upstream, WARD_TOPICS};
use tokio_util::sync::CancellationToken;
use wardgate_protocol::vitals::VitalKind;
use wardgate_protocol::DeviceId;
use wardgate_tests::pki::ClientIdentity;
use wardgate_tests::wait::wait_for;

const LIMIT: Duration = Duration::from_secs(60);

fn telemetry(device: &str, seq: u64) -> AcceptedTelemetry {
    accepted(
        device,
        seq,
        &[
            (VitalKind::HeartRate, 60.0 + (seq % 40) as f64),
            (VitalKind::SystolicBp, 120.0),
            (VitalKind::DiastolicBp, 80.0),
        ],
    )
}

/// The uplink of a gateway whose client certificate is issued as `name` by
/// the upstream CA.
fn config(up: &Upstream, name: &str, formats: Vec<Format>) -> UplinkConfig {
    config_for(up, &up.pki.client(name).unwrap(), formats)
}

/// The uplink of a gateway with client certificate `id`, to `up`'s broker.
fn config_for(up: &Upstream, id: &ClientIdentity, formats: Vec<Format>) -> UplinkConfig {
    UplinkConfig {
        enabled: true,
        broker_host: "127.0.0.1".into(),
        broker_port: up.broker.port,
        client_id: "ward-7-gateway".into(),
        ca_file: up.pki.ca_path.clone(),
        cert_file: id.cert.clone(),
        key_file: id.key.clone(),
        formats,
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..UplinkConfig::default()
    }
}

/// A device directory standing in for the registry: knows `monitor-*`.
fn directory() -> gateway::uplink::bridge::DeviceDirectory {
    std::sync::Arc::new(|id: &DeviceId| {
        id.as_str()
            .starts_with("monitor-")
            .then(|| gateway::render::fhir::DeviceInfo {
                id: id.clone(),
                manufacturer: "Acme Medical".into(),
                model: "PM-100".into(),
                hardware_id: "pm-100-rev-b".into(),
                firmware_version: "2.4.1".into(),
                active: true,
            })
    })
}

type Notices = std::sync::Arc<std::sync::Mutex<Vec<UplinkNotice>>>;

fn start(cfg: &UplinkConfig, dir: &Path, cancel: &CancellationToken) -> (Uplink, Registry) {
    let (uplink, registry, _) = start_with_notices(cfg, dir, cancel);
    (uplink, registry)
}

fn start_with_notices(
    cfg: &UplinkConfig,
    dir: &Path,
    cancel: &CancellationToken,
) -> (Uplink, Registry, Notices) {
    let mut registry = Registry::default();
    let notices = Notices::default();
    let sink = notices.clone();
    let uplink = Uplink::start(
        cfg,
        dir,
        &dir.join("gateway.db"),
        &mut registry,
        Some(std::sync::Arc::new(move |n| sink.lock().unwrap().push(n))),
        Some(directory()),
        cancel.clone(),
    )
    .unwrap();
    (uplink, registry, notices)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_json_and_fhir_in_order_and_empties_the_outbox() {
    let up = Upstream::start(WARD_TOPICS).await.unwrap();
    let cancel = CancellationToken::new();
    let cfg = config(&up, "ward-7-gateway", vec![Format::Json, Format::Fhir]);
    let (uplink, registry) = start(&cfg, up.path(), &cancel);

    let sink = uplink.sink();
    for seq in 1..=25 {
        for d in ["monitor-1", "monitor-2"] {
            sink.accept(telemetry(d, seq)).await.unwrap();
        }
    }
    // 50 JSON + 50 x (HR + BP panel) FHIR.
    let got = up
        .sub
        .wait_until(LIMIT, |r| {
            r.count("/telemetry") >= 50 && r.count("/fhir/Observation") >= 100
        })
        .await;
    assert_eq!(got.count("/telemetry"), 50, "{:?}", got.by_topic.keys());
    assert_eq!(got.count("/fhir/Observation"), 100);
    // One FHIR Device per device and session, from the directory.
    let got = up
        .sub
        .wait_until(LIMIT, |r| r.count("/fhir/Device") >= 2)
        .await;
    assert_eq!(got.count("/fhir/Device"), 2);
    let device: serde_json::Value =
        serde_json::from_slice(&got.by_topic["wardgate/ward/devices/monitor-1/fhir/Device"][0])
            .unwrap();
    assert_eq!(device["resourceType"], "Device");
    assert_eq!(device["manufacturer"], "Acme Medical");
    assert_eq!(device["version"][0]["value"], "2.4.1");
    for d in ["monitor-1", "monitor-2"] {
        let seqs: Vec<u64> = arrived(&got)
            .into_iter()
            .filter(|(dev, _)| dev == d)
            .map(|(_, s)| s)
            .collect();
        assert_eq!(
            seqs,
            (1..=25).collect::<Vec<_>>(),
            "per-device order of {d}"
        );
        let fhir = &got.by_topic[&format!("wardgate/ward/devices/{d}/fhir/Observation")];
        let first: serde_json::Value = serde_json::from_slice(&fhir[0]).unwrap();
        assert_eq!(first["resourceType"], "Observation");
        assert_eq!(first["device"]["reference"], format!("Device/{d}"));
    }
    // Removed from the outbox once acknowledged.
    assert!(
        wait_for(LIMIT, || uplink.outbox().depth().rows == 0).await,
        "outbox drained: {:?}",
        uplink.status()
    );
    let status = uplink.status();
    assert!(status.connected);
    assert_eq!(status.oldest_message_age_seconds, None);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("wardgate_uplink_connected 1"), "{text}");
    assert!(
        text.contains("wardgate_uplink_published_messages_total 152"),
        "{text}"
    );
    assert!(
        text.contains("wardgate_uplink_delivered_messages_total 50"),
        "{text}"
    );
    cancel.cancel();
    uplink.join().await;
    up.sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_outage_then_restart_delivers_everything() {
    const N: u64 = 400;
    // The consumer's session is persistent: the broker queues for it while
    // it is away.
    let mut up = Upstream::start(WARD_TOPICS).await.unwrap();
    let cancel = CancellationToken::new();
    let cfg = config(&up, "ward-7-gateway", vec![Format::Json]);
    let (uplink, _registry) = start(&cfg, up.path(), &cancel);
    assert!(wait_for(LIMIT, || uplink.status().connected).await);

    // Some flow before the outage.
    let sink = uplink.sink();
    let mut expected = Vec::new();
    let devices = ["pump-1", "pump-2", "monitor-3", "vent-4"];
    let mut seq = 0;
    while seq < N / 4 {
        seq += 1;
        for d in devices {
            sink.accept(telemetry(d, seq)).await.unwrap();
            expected.push((d.to_owned(), seq));
        }
    }
    // Outage: the upstream stops while devices keep sending.
    up.broker.stop().unwrap();
    assert!(
        wait_for(LIMIT, || !uplink.status().connected).await,
        "uplink noticed the outage"
    );
    while seq < N {
        seq += 1;
        for d in devices {
            sink.accept(telemetry(d, seq)).await.unwrap();
            expected.push((d.to_owned(), seq));
        }
    }
    let waiting = uplink.outbox().depth().rows;
    assert!(waiting > 0, "messages wait in the outbox during the outage");
    let status = uplink.status();
    assert!(status.oldest_message_age_seconds.is_some());
    assert!(status.last_error.is_some());
    up.broker.start().unwrap();

    let total = expected.len();
    let delivery = up.delivery(&expected, Duration::from_secs(120)).await;
    println!("outage: sent {total}, {waiting} waited in the outbox, {delivery}");
    delivery.assert_none_missing("missing upstream");
    // Per-device order holds for first arrivals.
    for d in devices {
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<u64> = delivery
            .arrivals
            .iter()
            .filter(|(dev, _)| dev == d)
            .filter(|m| seen.insert((*m).clone()))
            .map(|(_, s)| *s)
            .collect();
        assert!(firsts.windows(2).all(|w| w[0] < w[1]), "order of {d}");
    }
    assert!(wait_for(LIMIT, || uplink.outbox().depth().rows == 0).await);
    assert!(uplink.status().connected);
    assert!(uplink.outbox().metrics().reconnects.get() >= 1);
    cancel.cancel();
    uplink.join().await;
    up.sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_with_untrusted_certificate_is_refused_and_keeps_its_outbox() {
    let up = Upstream::start(WARD_TOPICS).await.unwrap();

    // A gateway whose client certificate comes from a foreign CA.
    let rogue_dir = up.path().join("rogue");
    std::fs::create_dir_all(&rogue_dir).unwrap();
    let rogue_id = up.pki.foreign_client("rogue-gateway").unwrap();
    let cancel = CancellationToken::new();
    let mut rogue_cfg = config_for(&up, &rogue_id, vec![Format::Json]);
    rogue_cfg.client_id = "rogue".into();
    let (rogue, _r1, rogue_notices) = start_with_notices(&rogue_cfg, &rogue_dir, &cancel);
    rogue.sink().accept(telemetry("pump-9", 1)).await.unwrap();

    // A legitimate gateway beside it.
    let good_dir = up.path().join("good");
    std::fs::create_dir_all(&good_dir).unwrap();
    let (good, _r2, good_notices) = start_with_notices(
        &config(&up, "ward-7-gateway", vec![Format::Json]),
        &good_dir,
        &cancel,
    );
    good.sink().accept(telemetry("pump-1", 1)).await.unwrap();

    // The legitimate one gets through ...
    let got = up
        .sub
        .wait_until(LIMIT, |r| r.count("pump-1/telemetry") == 1)
        .await;
    assert_eq!(got.count("pump-1/telemetry"), 1);
    // ... the refused one retried (and failed) and recorded why ...
    assert!(wait_for(LIMIT, || rogue.outbox().metrics().reconnects.get() >= 2).await);
    let status = rogue.status();
    assert!(!status.connected);
    assert!(status.last_error.is_some(), "{status:?}");
    {
        // One notice (audit row in a gateway) for the outage, not one per retry.
        let n = rogue_notices.lock().unwrap();
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(
            matches!(
                &n[0],
                UplinkNotice::LinkDown {
                    was_connected: false,
                    ..
                }
            ),
            "{n:?}"
        );
        let g = good_notices.lock().unwrap();
        assert!(matches!(&g[0], UplinkNotice::LinkUp { .. }), "{g:?}");
    }
    // ... and kept its message: nothing delivered, nothing lost.
    assert_eq!(rogue.outbox().depth().rows, 1);
    assert_eq!(up.sub.snapshot().count("pump-9/telemetry"), 0);
    println!("refused uplink error: {:?}", status.last_error);
    cancel.cancel();
    rogue.join().await;
    good.join().await;
    up.sub.stop().await;
}
