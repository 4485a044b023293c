//! One ward's firmware rollout with the real processes, over real TLS
//! sockets: `tuf-repo` (the operator's repository and the manufacturer's
//! signed release), `ota-server serve` (mutual TLS), `gateway run` with an
//! `[ota]` section, and `device-sim` processes with A/B slots in their
//! state folders.
//!
//! One ward, two campaigns, shown in order:
//! 1. `acme/pump-2.0.0.bin`, waves `["1", "25%", "100%"]`, 20 devices (18
//!    in one `device-sim` process, one that loses power mid-download, one in
//!    therapy): every device ends on 2.0.0 wave by wave, visible in
//!    `GET /api/v1/ota/status` and in the server's campaign; the gateway is
//!    killed with `kill -9` mid-campaign and restarted, and no device is
//!    updated twice; the OTA server sent one image while the gateway's
//!    image server sent twenty.
//! 2. `acme/pump-3.0.0.bin`, whose self-test fails on every device: the
//!    canary rolls back to 2.0.0 and reports it, the campaign halts, and no
//!    other device is ever offered 3.0.0; an operator's retry is refused
//!    while the campaign is halted.

use std::time::Duration;

use serde_json::Value;
use wardgate_tests::bins::Bins;
use wardgate_tests::ota_ward::{count, device, device_id, metric, ok, strip_ansi, tail, Ward};
use wardgate_tests::process::read_log;
use wardgate_tests::wait::wait_for_async;

const DEVICES: usize = 20;
/// The device that loses power mid-download, and the one in therapy.
const POWER_LOSS: usize = 19;
const THERAPY: usize = 20;
const IMAGE_LEN: usize = 256 * 1024;
/// Where the power-loss device's download stops.
const POWER_LOSS_AT: usize = 100_000;

fn image(seed: u8) -> Vec<u8> {
    wardgate_tests::ota_ward::image(IMAGE_LEN, seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_rolls_out_wave_by_wave_through_crashes_and_halts_on_a_failed_canary() {
    let mut w = Ward::new(DEVICES).await;
    let v2 = image(2);
    let target2 = w.publish("2.0.0", &v2).await;

    // 18 devices in one process; the power-loss device alone (it is
    // killed); the therapy device starts once it is assigned, so that its
    // therapy is under way when its wave comes.
    w.start_devices("fleet", 1, 18, &["self-test-fails=3.0.0"]);
    let power_fault = format!("power-loss-after={POWER_LOSS_AT}");
    w.start_devices("power-loss", POWER_LOSS, 1, &[&power_fault]);
    let campaign = w.campaign(&target2, 10.0).await;

    // Whatever their waves: the therapy pump starts once it is assigned, and
    // the power-loss pump, whose process ends by itself when power is lost
    // mid-download (as with `kill -9`, nothing more is written), is started
    // again on the same NVRAM.
    let therapy_id = device_id(THERAPY);
    let (mut therapy_started, mut power_restored) = (false, false);
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !(therapy_started && power_restored) {
        assert!(
            std::time::Instant::now() < deadline,
            "therapy pump started: {therapy_started}, power-loss pump restarted: {power_restored}\n{}",
            tail(&read_log(&w.path("power-loss.log")), 20)
        );
        if !therapy_started
            && w.gateway_campaign(&campaign)
                .await
                .is_some_and(|c| device(&c, &therapy_id).is_some())
        {
            // Long enough to outlast the waves before its own on a loaded
            // machine (6 s once ran out before its wave came).
            w.start_devices(
                "therapy",
                THERAPY,
                1,
                &["therapy-for=30s", "self-test-fails=3.0.0"],
            );
            therapy_started = true;
        }
        if !power_restored && !w.device_process("power-loss").is_running() {
            let code = w.device_process("power-loss").0.wait().unwrap().code();
            assert_eq!(code, Some(137), "a power loss ends the process as kill -9");
            w.devices.retain(|(n, _)| n != "power-loss");
            w.start_devices(
                "power-loss-again",
                POWER_LOSS,
                1,
                &["self-test-fails=3.0.0"],
            );
            power_restored = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Mid-campaign (canary done, later waves under way): kill -9 the
    // gateway and start it again on the same data dir.
    w.wait_campaign(
        &campaign,
        Duration::from_secs(120),
        "two devices healthy",
        |c| count(c, "healthy") >= 2,
    )
    .await;
    let last_row_before = w
        .audit("ota.offer")
        .last()
        .map(|r| r.id)
        .unwrap_or_default();
    let healthy_before: Vec<String> = w.gateway_campaign(&campaign).await.unwrap()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["state"] == "healthy")
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .collect();
    w.gateway.as_mut().unwrap().kill9();
    w.gateway = None;
    // Whatever a device finished downloading after this instant, the
    // restarted gateway served.
    let restarted_at = chrono::Utc::now();
    w.start_gateway();

    let done = w
        .wait_campaign(
            &campaign,
            Duration::from_secs(150),
            "every device healthy and reported",
            |c| {
                c["devices"].as_array().is_some_and(|d| {
                    d.len() == DEVICES
                        && d.iter()
                            .all(|d| d["state"] == "healthy" && d["reported"] == true)
                })
            },
        )
        .await;

    // Wave by wave: 1, then 25% (5 in all), then the rest; the gateway and
    // the server agree.
    let per_wave = |c: &Value, wave: u64| {
        c["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["wave"] == wave)
            .count()
    };
    assert_eq!(
        (per_wave(&done, 0), per_wave(&done, 1), per_wave(&done, 2)),
        (1, 4, 15),
        "{done:#}"
    );
    for d in done["devices"].as_array().unwrap() {
        assert_eq!(d["firmware_version"], "2.0.0", "{d}");
    }
    let st = w.server_campaign(&campaign).await;
    assert_eq!(st["state"], "completed", "{st}");
    assert_eq!(st["totals"]["success"], DEVICES, "{st}");
    for (wave, n) in [(0usize, 1u64), (1, 4), (2, 15)] {
        assert_eq!(st["per_wave"][wave]["assigned"], n, "{st}");
    }
    // No device of a wave was offered anything before every device of the
    // waves before it had its result.
    let offers = w.audit("ota.offer");
    let results: Vec<_> = w
        .audit("ota.result")
        .into_iter()
        .filter(|r| r.detail_json()["campaign_id"] == campaign.as_str())
        .collect();
    let wave_of = |id: &str| device(&done, id).and_then(|d| d["wave"].as_u64());
    for wave in 1..=2u64 {
        let last_result_before = results
            .iter()
            .filter(|r| wave_of(&r.subject).is_some_and(|x| x < wave))
            .map(|r| r.id)
            .max()
            .unwrap();
        let first_offer = offers
            .iter()
            .filter(|r| wave_of(&r.subject) == Some(wave))
            .map(|r| r.id)
            .min()
            .unwrap();
        assert!(
            first_offer > last_result_before,
            "wave {wave} was offered before the previous waves were done"
        );
    }
    // After the gateway's restart: one result per device, and nobody healthy
    // before the restart was offered the image again.
    for i in 1..=DEVICES {
        let id = device_id(i);
        let n = results.iter().filter(|r| r.subject == id).count();
        assert_eq!(n, 1, "{id} finished {n} times");
    }
    for id in &healthy_before {
        assert!(
            !offers
                .iter()
                .any(|r| &r.subject == id && r.id > last_row_before),
            "{id} was healthy before the restart and offered again after it"
        );
    }
    // The therapy pump was deferred, then updated once idle.
    assert!(
        w.audit("ota.defer").iter().any(|r| r.subject == therapy_id),
        "the therapy pump was never deferred"
    );
    // The power-loss pump resumed its download (HTTP Range) from the bytes
    // its slot already held, and completed it.
    let log19 = strip_ansi(&read_log(&w.path("power-loss-again.log")));
    let resumed_at: Vec<u64> = log19
        .lines()
        .filter(|l| l.contains("downloading firmware"))
        .filter_map(|l| {
            l.split("resume_at=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        resumed_at.first().is_some_and(|&b| b > 0),
        "the power-loss pump did not resume its download: {}",
        tail(&log19, 30)
    );
    // Central egress: one image from the OTA server; the devices, which
    // reach only the gateway, received twenty between them. Counted by the
    // devices, because the gateway's own counter restarted with it and
    // whatever it served between a scrape and the kill would be lost. The
    // power-loss pump's first process died before logging the bytes it had.
    assert_eq!(
        w.ota_sent_bytes().await,
        v2.len() as f64,
        "ota-server sent one copy"
    );
    // Each device's downloads: (when it finished, bytes received).
    let downloads: Vec<(chrono::DateTime<chrono::Utc>, u64)> =
        ["fleet", "power-loss-again", "therapy"]
            .iter()
            .map(|name| strip_ansi(&read_log(&w.path(&format!("{name}.log")))))
            .flat_map(|log| {
                log.lines()
                    .filter(|l| l.contains("firmware downloaded") && l.contains("version=2.0.0"))
                    .filter_map(|l| {
                        let at = l.split_whitespace().next()?.parse().ok()?;
                        let bytes = l
                            .split("received=")
                            .nth(1)?
                            .split_whitespace()
                            .next()?
                            .parse::<u64>()
                            .ok()?;
                        Some((at, bytes))
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
    let received: u64 = downloads.iter().map(|(_, b)| b).sum();
    assert!(
        received >= (DEVICES * v2.len() - POWER_LOSS_AT) as u64,
        "the devices received {received} bytes from the gateway, less than {DEVICES} images"
    );
    // The restarted gateway served at least what devices finished getting
    // after the restart. (On a fast machine the last wave may have been
    // downloaded in full before the kill; then there is nothing to serve.)
    let after_restart: u64 = downloads
        .iter()
        .filter(|(at, _)| *at > restarted_at)
        .map(|(_, b)| b)
        .sum();
    let served = metric(
        &w.gateway_metrics().await,
        "wardgate_ota_image_bytes_served_total",
    );
    eprintln!(
        "downloads finished after the gateway's restart: {after_restart} bytes; the restarted gateway served {served}"
    );
    assert!(
        served >= after_restart as f64,
        "devices finished downloading {after_restart} bytes after the restart, but the restarted gateway served only {served}"
    );

    // Campaign 2: the image fails its self-test everywhere. The canary rolls
    // back and reports; the campaign halts; nobody else is offered it.
    let v3 = image(3);
    let target3 = w.publish("3.0.0", &v3).await;
    let campaign3 = w.campaign(&target3, 0.0).await;
    let halted = wait_for_async(Duration::from_secs(90), || async {
        let st = w.server_campaign(&campaign3).await;
        (st["state"] == "halted").then_some(st)
    })
    .await;
    let st3 = halted.unwrap_or_else(|| {
        panic!(
            "campaign 2 never halted\n--- gateway log tail ---\n{}",
            tail(&read_log(&w.path("gateway.log")), 40)
        )
    });
    assert_eq!(st3["totals"]["failure"], 1, "{st3}");
    let c3 = w
        .wait_campaign(
            &campaign3,
            Duration::from_secs(30),
            "the rollback reported",
            |c| {
                count(c, "rolled_back") == 1
                    && c["devices"].as_array().is_some_and(|d| {
                        d.iter()
                            .any(|d| d["state"] == "rolled_back" && d["reported"] == true)
                    })
            },
        )
        .await;
    let canary = c3["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["state"] == "rolled_back")
        .unwrap()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A few more rounds with the server: still only the canary was offered.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let offered3: std::collections::BTreeSet<String> = w
        .audit("ota.offer")
        .into_iter()
        .filter(|r| r.detail_json()["campaign_id"] == campaign3.as_str())
        .map(|r| r.subject)
        .collect();
    assert_eq!(
        offered3.into_iter().collect::<Vec<_>>(),
        vec![canary.clone()],
        "only the canary was offered 3.0.0"
    );
    let rolled = w
        .audit("ota.result")
        .into_iter()
        .find(|r| r.detail_json()["campaign_id"] == campaign3.as_str())
        .expect("the rollback is audited");
    assert_eq!(rolled.subject, canary);
    assert_eq!(rolled.detail_json()["state"], "rolled_back");
    // The canary runs the previous slot again.
    let back = w
        .wait_campaign(
            &campaign3,
            Duration::from_secs(20),
            "the canary back on 2.0.0",
            |c| device(c, &canary).is_some_and(|d| d["firmware_version"] == "2.0.0"),
        )
        .await;
    assert_eq!(count(&back, "rolled_back"), 1);

    // An operator's retry is refused while the campaign is halted; a viewer
    // may not retry at all.
    let r = w.retry_device(&canary, &w.operator).await;
    assert_eq!(r.status(), 409, "{}", r.text().await.unwrap());
    let r = w.retry_device(&canary, &w.viewer).await;
    assert_eq!(r.status(), 403);

    // `gateway ota status` reads the same progress beside the running gateway.
    let out = ok(Bins::for_tests()
        .cmd("gateway")
        .args(["ota", "status", "--config"])
        .arg(&w.gateway_config));
    assert!(
        out.contains(&campaign3) && out.contains("rolled_back"),
        "{out}"
    );
}
