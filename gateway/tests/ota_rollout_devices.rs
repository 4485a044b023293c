//! What devices do to a rollout: therapy defers an update until the device
//! is idle; a canary that rolls back halts the campaign, and neither it nor
//! anyone else is offered the image again, unless an operator retries it.

mod ota_rollout_support;
mod ota_support;
mod support;

use std::time::Duration;

use device_sim::ota::Faults;
use gateway::ota::device_state::UpdateState;
use ota_rollout_support::{all_reported, any_reported, rollout_config, Ward};

fn offers_to(w: &Ward, id: &str) -> Vec<gateway::audit::AuditRecord> {
    w.audit("ota.offer")
        .into_iter()
        .filter(|r| r.subject == id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn therapy_defers_the_update_until_the_device_is_idle() {
    let image = ota_support::image(64 * 1024, 1);
    let mut w = Ward::start(&image, rollout_config()).await;
    let busy = w.enroll("pump-01");
    let free = w.enroll("pump-02");
    w.run_device(
        "pump-01",
        &busy,
        Faults {
            therapy_for: Some(Duration::from_secs(4)),
            ..Faults::default()
        },
    );
    w.run_device("pump-02", &free, Faults::default());
    let campaign = w.campaign(&["100%"], 50.0).await;

    w.wait_status(Duration::from_secs(60), "pump-01 deferred", |_| {
        w.state_of(&campaign, "pump-01") == Some(UpdateState::Deferred)
    })
    .await;
    let defer = w
        .audit("ota.defer")
        .into_iter()
        .find(|r| r.subject == "pump-01")
        .expect("deferral audited");
    assert!(defer.detail_json()["reason"]
        .as_str()
        .unwrap()
        .contains("therapy"));

    w.wait_first_campaign(Duration::from_secs(90), "both healthy and reported", |c| {
        all_reported(c, UpdateState::Healthy)
    })
    .await;
    // Nothing was offered to pump-01 before its therapy ended.
    let offers = offers_to(&w, "pump-01");
    assert!(!offers.is_empty());
    assert!(
        offers.iter().all(|o| o.id > defer.id),
        "offered during therapy: {offers:?}"
    );
    let st = w.server_campaign(&campaign).await;
    assert_eq!(
        (st["state"].as_str(), &st["totals"]["success"]),
        (Some("completed"), &2.into()),
        "{st}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_rollback_halts_and_nobody_is_offered_again() {
    let image = ota_support::image(64 * 1024, 2);
    let mut w = Ward::start(&image, rollout_config()).await;
    let ids = ["pump-01", "pump-02", "pump-03"];
    let fails = Faults {
        self_test_fails: vec!["2.0.0".into()],
        ..Faults::default()
    };
    let mut tls = Vec::new();
    for id in ids {
        let t = w.enroll(id);
        w.run_device(id, &t, fails.clone());
        tls.push(t);
    }
    let campaign = w.campaign(&["1", "100%"], 0.0).await;
    w.wait_first_campaign(
        Duration::from_secs(60),
        "the canary rolled back and reported",
        |c| any_reported(c, UpdateState::RolledBack),
    )
    .await;
    let st = w.server_campaign(&campaign).await;
    assert_eq!(st["state"], "halted", "{st}");
    let canary = w.status().campaigns[0]
        .devices
        .iter()
        .find(|d| d.state == UpdateState::RolledBack)
        .unwrap()
        .device_id
        .to_string();
    let result = w
        .audit("ota.result")
        .into_iter()
        .find(|r| r.subject == canary)
        .unwrap();
    assert_eq!(result.outcome, "refused");
    assert!(result.detail_json()["reason"]
        .as_str()
        .unwrap()
        .contains("self-test"));

    // The canary comes back (a new session, idle, old firmware): it is not
    // offered the image again, nor is anyone else.
    let offered_before = offers_to(&w, &canary).len();
    w.stop_device(&canary).await;
    let i = ids.iter().position(|d| *d == canary).unwrap();
    w.run_device(&canary, &tls[i], fails.clone());
    w.rounds(3.0).await;
    assert_eq!(offers_to(&w, &canary).len(), offered_before);
    for id in ids.iter().filter(|d| **d != canary) {
        assert!(offers_to(&w, id).is_empty(), "{id} was offered");
    }
    assert_eq!(
        w.state_of(&campaign, &canary),
        Some(UpdateState::RolledBack)
    );
    // The campaign is halted at the server: a retry is refused here too.
    let e = w
        .rollout()
        .retry(
            wardgate_protocol::DeviceId::parse(&canary).unwrap(),
            "admin:tok-1".into(),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no longer handed out"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_retry_offers_a_rolled_back_device_again() {
    let image = ota_support::image(64 * 1024, 4);
    let mut w = Ward::start(&image, rollout_config()).await;
    let t1 = w.enroll("pump-01");
    let t2 = w.enroll("pump-02");
    // pump-03 never connects: the campaign stays open.
    let _t3 = w.enroll("pump-03");
    w.run_device(
        "pump-01",
        &t1,
        Faults {
            self_test_fails: vec!["2.0.0".into()],
            ..Faults::default()
        },
    );
    w.run_device("pump-02", &t2, Faults::default());
    let campaign = w.campaign(&["100%"], 60.0).await;
    w.wait_status(
        Duration::from_secs(60),
        "pump-01 rolled back, pump-02 healthy",
        |_| {
            w.state_of(&campaign, "pump-01") == Some(UpdateState::RolledBack)
                && w.state_of(&campaign, "pump-02") == Some(UpdateState::Healthy)
        },
    )
    .await;
    w.rounds(2.0).await;
    let before = offers_to(&w, "pump-01").len();

    let row = w
        .rollout()
        .retry(
            wardgate_protocol::DeviceId::parse("pump-01").unwrap(),
            "admin:tok-7".into(),
        )
        .await
        .unwrap();
    assert_eq!((row.state, row.attempts), (UpdateState::Pending, 2));
    let retry = w.audit("ota.retry");
    assert_eq!(retry.len(), 1);
    assert_eq!(
        (retry[0].actor.as_str(), retry[0].subject.as_str()),
        ("admin:tok-7", "pump-01")
    );
    // Offered again, and (the image still fails its self-test) rolled back
    // again: the new outcome replaces the old at the server.
    wardgate_tests::wait::wait_for(Duration::from_secs(60), || {
        (offers_to(&w, "pump-01").len() > before).then_some(())
    })
    .await
    .expect("offered again after the retry");
    w.wait_status(Duration::from_secs(60), "pump-01 rolled back again", |s| {
        s.campaigns[0].devices.iter().any(|d| {
            d.device_id.as_str() == "pump-01"
                && d.state == UpdateState::RolledBack
                && d.attempts == 2
                && d.reported
        })
    })
    .await;
    assert_eq!(w.state_of(&campaign, "pump-03"), Some(UpdateState::Pending));
}
