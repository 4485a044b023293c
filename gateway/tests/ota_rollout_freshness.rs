//! No rollout step starts on expired TUF metadata: a gateway whose
//! timestamp has expired (the OTA server stopped re-signing it, as in a
//! freeze attack) offers nothing, records why, and asks for a refresh.

mod ota_rollout_support;
mod ota_support;
mod support;

use std::time::Duration;

use chrono::Utc;
use gateway::ota::device_state::UpdateState;
use ota_rollout_support::{rollout_config, Ward};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_metadata_starts_no_rollout_step() {
    let image = ota_support::image(32 * 1024, 8);
    let mut w = Ward::start_with_timestamps(&image, rollout_config(), "3s", "1s").await;
    let tls = w.enroll("pump-01");
    // A frozen server: the timestamp the gateway holds runs out.
    w.server.stop_timestamp_refresh();
    wardgate_tests::wait::wait_for(Duration::from_secs(30), || {
        (!w.gw().tuf.is_fresh(Utc::now())).then_some(())
    })
    .await
    .expect("metadata expired");
    w.run_device("pump-01", &tls, device_sim::ota::Faults::default());
    let campaign = w.campaign(&["100%"], 50.0).await;

    let refused = wardgate_tests::wait::wait_for(Duration::from_secs(30), || {
        w.audit("ota.campaign").into_iter().find(|r| {
            r.outcome == "refused"
                && r.detail_json()["reason"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("metadata_not_fresh"))
        })
    })
    .await
    .expect("the refused step is audited");
    assert_eq!(refused.subject, campaign);
    assert!(
        w.metric("wardgate_ota_steps_refused_total{reason=\"metadata_not_fresh\"}") >= 1.0,
        "{}",
        w.metrics_text()
    );
    // The TUF client raised its own alarm (refresh refused, audited).
    wardgate_tests::wait::wait_for(Duration::from_secs(30), || {
        w.audit("ota.refresh")
            .into_iter()
            .any(|r| r.outcome == "refused")
            .then_some(())
    })
    .await
    .expect("refresh refusal audited");
    // The device is known, idle, and waits: no offer was made.
    w.wait_status(Duration::from_secs(30), "the device seen idle", |s| {
        s.campaigns
            .first()
            .and_then(|c| c.devices.first())
            .is_some_and(|d| d.status_seen_at.is_some())
    })
    .await;
    w.rounds(2.0).await;
    assert_eq!(w.state_of(&campaign, "pump-01"), Some(UpdateState::Pending));
    assert!(w.audit("ota.offer").is_empty());
    assert_eq!(w.metric("wardgate_ota_offers_total"), 0.0);
    let status = w.status();
    assert!(
        status.campaigns[0]
            .note
            .as_deref()
            .is_some_and(|n| n.contains("expired")),
        "{status:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_server_is_recorded_once_while_it_lasts() {
    let image = ota_support::image(16 * 1024, 9);
    let mut w = Ward::start(&image, rollout_config()).await;
    w.rounds(1.0).await;
    w.server.stop().await;
    let unreachable =
        "wardgate_ota_server_requests_total{endpoint=\"assignments\",outcome=\"unreachable\"}";
    wardgate_tests::wait::wait_for(Duration::from_secs(60), || {
        (w.metric(unreachable) >= 3.0).then_some(())
    })
    .await
    .expect("rounds keep trying");
    let rows: Vec<_> = w
        .audit("ota.server")
        .into_iter()
        .filter(|r| r.outcome == "refused")
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let detail = rows[0].detail_json();
    assert_eq!(detail["reason"], "unreachable");
    assert!(
        detail["error"].as_str().unwrap().contains("ota.server_url"),
        "{detail}"
    );
}
