//! A campaign on one ward, end to end in one process over real TLS
//! sockets: the OTA server decides waves, the gateway reports its
//! inventory, verifies the target against TUF, caches the image once,
//! offers it wave by wave through the broker, serves it to each device over
//! mutual TLS, and reports every device's outcome; the devices (device-sim's
//! OTA client) verify, download, install, reboot and report healthy.

mod ota_rollout_support;
mod ota_support;
mod support;

use std::time::Duration;

use gateway::ota::device_state::UpdateState;
use ota_rollout_support::{all_reported, rollout_config, Ward};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waves_roll_out_to_every_device_with_one_central_download() {
    let image = ota_support::image(300 * 1024, 7);
    let mut w = Ward::start(&image, rollout_config()).await;
    let ids = w.run_healthy_pumps(5);
    // A device of another model in the same ward is never part of it.
    w.gw()
        .handle
        .context
        .registry
        .enroll(
            &gateway::registry::NewDevice {
                id: wardgate_protocol::DeviceId::parse("monitor-01").unwrap(),
                model: "Monitor".into(),
                hardware_id: "globex-m1".into(),
                manufacturer: "globex".into(),
                firmware_version: "1.0.0".into(),
                cert_fingerprint: None,
            },
            "test",
        )
        .unwrap();
    let campaign = w.campaign(&["1", "50%", "100%"], 20.0).await;

    w.wait_first_campaign(Duration::from_secs(120), "every pump healthy", |c| {
        c.devices.len() == 5 && all_reported(c, UpdateState::Healthy)
    })
    .await;

    // The server saw the waves one after another and completed.
    let st = w.server_campaign(&campaign).await;
    assert_eq!(st["state"], "completed", "{st}");
    assert_eq!(st["totals"]["success"], 5, "{st}");
    assert_eq!(st["devices_total"], 5, "the monitor is out of scope: {st}");
    assert_eq!(st["per_wave"][0]["assigned"], 1, "{st}");
    assert_eq!(st["per_wave"][1]["assigned"], 2, "{st}");
    assert_eq!(st["per_wave"][2]["assigned"], 2, "{st}");

    // Each device runs the new image; the registry knows it.
    for id in &ids {
        let rec = w
            .gw()
            .handle
            .context
            .registry
            .get(&wardgate_protocol::DeviceId::parse(id).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(rec.firmware_version, "2.0.0", "{id}");
    }

    // Central egress is one image; the gateway served every device.
    let sent = w.server.settled_sent_bytes().await;
    assert_eq!(sent, image.len() as f64, "ota-server sent one copy");
    let served = w.metric("wardgate_ota_image_bytes_served_total");
    assert!(
        served >= (5 * image.len()) as f64,
        "gateway served {served} bytes"
    );

    // Every offer and result is on record, once per device.
    let offers = w.audit("ota.offer");
    for id in &ids {
        assert!(
            offers.iter().any(|r| &r.subject == id),
            "no offer row for {id}"
        );
        let results: Vec<_> = w
            .audit("ota.result")
            .into_iter()
            .filter(|r| &r.subject == id)
            .collect();
        assert_eq!(results.len(), 1, "{id}: {results:?}");
        assert_eq!(results[0].detail_json()["state"], "healthy");
    }
    assert!(
        w.metric("wardgate_ota_results_total{outcome=\"success\"}") >= 5.0,
        "{}",
        w.metrics_text()
    );
    // The operator's view, from the database, beside the running gateway.
    let cfg = w.data.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        format!("[storage]\ndata_dir = {:?}\n", w.data.path().join("state")),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let text = support::cli::ok(&["ota", "status", "--config", cfg]);
    assert!(
        text.contains(&campaign) && text.contains("healthy 5"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&support::cli::ok(&[
        "ota", "status", "--config", cfg, "--json",
    ]))
    .unwrap();
    assert_eq!(json["campaigns"][0]["counts"]["healthy"], 5, "{json}");
    assert_eq!(json["campaigns"][0]["devices"][0]["state"], "healthy");
}
