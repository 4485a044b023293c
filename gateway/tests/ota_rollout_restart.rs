//! Restarts of either side mid-campaign: the gateway resumes from its
//! database and never updates a device twice; a device that loses power
//! mid-download is offered again when it comes back and resumes its
//! download with a Range request.

mod ota_rollout_support;
mod ota_support;
mod support;

use std::time::Duration;

use device_sim::ota::Faults;
use gateway::ota::device_state::UpdateState;
use ota_rollout_support::{all_reported, rollout_config, Ward};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_restart_resumes_without_updating_anyone_twice() {
    let image = ota_support::image(512 * 1024, 9);
    let mut w = Ward::start(&image, rollout_config()).await;
    let ids = w.run_healthy_pumps(4);
    let campaign = w.campaign(&["1", "100%"], 20.0).await;
    // Once the canary is done and the second wave has begun, restart.
    w.wait_first_campaign(
        Duration::from_secs(60),
        "canary healthy, wave 2 under way",
        |c| c.counts.get(&UpdateState::Healthy) >= Some(&1) && c.devices.len() == 4,
    )
    .await;
    let healthy_before: Vec<String> = w.status().campaigns[0]
        .devices
        .iter()
        .filter(|d| d.state == UpdateState::Healthy)
        .map(|d| d.device_id.to_string())
        .collect();
    let last_row_before = w
        .gw()
        .handle
        .context
        .audit
        .all()
        .unwrap()
        .last()
        .unwrap()
        .id;
    w.stop_gateway().await;
    w.start_gateway().await;

    w.wait_first_campaign(
        Duration::from_secs(120),
        "every device healthy after the restart",
        |c| all_reported(c, UpdateState::Healthy),
    )
    .await;
    let st = w.server_campaign(&campaign).await;
    assert_eq!(st["state"], "completed", "{st}");
    assert_eq!(st["totals"]["success"], 4, "{st}");
    for id in &ids {
        let results: Vec<_> = w
            .audit("ota.result")
            .into_iter()
            .filter(|r| &r.subject == id)
            .collect();
        assert_eq!(results.len(), 1, "{id} finished twice: {results:?}");
    }
    // Devices healthy before the restart were not offered anything after it.
    for id in &healthy_before {
        let late: Vec<_> = w
            .audit("ota.offer")
            .into_iter()
            .filter(|r| &r.subject == id && r.id > last_row_before)
            .collect();
        assert!(
            late.is_empty(),
            "{id} offered again after the restart: {late:?}"
        );
    }
    // Still one central copy.
    assert_eq!(w.server.settled_sent_bytes().await, image.len() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_that_loses_power_mid_download_resumes_with_range() {
    let image = ota_support::image(2 * 1024 * 1024, 6);
    let mut w = Ward::start(&image, rollout_config()).await;
    let tls = w.enroll("pump-01");
    w.run_device(
        "pump-01",
        &tls,
        Faults {
            power_loss_after: Some(700 * 1024),
            ..Faults::default()
        },
    );
    let campaign = w.campaign(&["100%"], 50.0).await;
    w.wait_status(Duration::from_secs(60), "download started", |_| {
        w.state_of(&campaign, "pump-01") == Some(UpdateState::Downloading)
    })
    .await;
    // The device process ends at the power loss; it comes back with its
    // state folder as it was, without the fault.
    wardgate_tests::wait::wait_for(Duration::from_secs(60), || {
        w.device_ended("pump-01").then_some(())
    })
    .await
    .expect("power lost mid-download");
    w.stop_device("pump-01").await;
    w.run_device("pump-01", &tls, Faults::default());

    w.wait_status(Duration::from_secs(90), "healthy after the resume", |_| {
        w.state_of(&campaign, "pump-01") == Some(UpdateState::Healthy)
    })
    .await;
    assert!(
        w.metric("wardgate_ota_image_requests_total{outcome=\"partial\"}") >= 1.0,
        "no Range request: {}",
        w.metrics_text()
    );
    let served = w.metric("wardgate_ota_image_bytes_served_total");
    assert!(
        served < (2 * image.len()) as f64,
        "the download started over ({served} bytes served)"
    );
    let again = w.metric("wardgate_ota_offers_total{kind=\"again\"}");
    assert!(
        again >= 1.0,
        "not offered again on reconnect: {}",
        w.metrics_text()
    );
}
