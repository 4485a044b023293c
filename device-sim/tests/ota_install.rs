//! The device's update client against a real HTTPS image server with
//! mutual TLS, with releases signed by the manufacturer with `tuf-repo`:
//! install into the idle slot, reboot, self-test and `healthy`; every
//! refusal (tampered image, older version, other hardware id, therapy in
//! progress) reported and leaving the running slot untouched; rollback on
//! a failed self-test, a self-test that misses the health window, and a
//! device that died during its trial boot.

mod support;

use std::time::Duration;

use device_sim::ota::{Boot, OfferResult, OtaClient, Slot, UpdateReport};
use support::*;
use wardgate_protocol::{OtaOffer, OtaOutcome};

/// Offer `offer` to `dev`, which must refuse it (before any download) and
/// say why with `because` in its last report's detail.
async fn refused(dev: &mut OtaClient, offer: &OtaOffer, because: &str) -> Vec<UpdateReport> {
    let reports = offer_expecting(dev, offer, OfferResult::Refused).await;
    assert!(last_detail(&reports).contains(because), "{reports:?}");
    reports
}

/// Boot `dev`, which must roll its trial slot back and say why with
/// `because` in its one report's detail; returns the boot.
async fn boots_rolled_back(dev: &mut OtaClient, because: &str) -> Boot {
    let boot = dev.boot().await.unwrap();
    assert_eq!(outcomes(&boot.reports), [OtaOutcome::RolledBack]);
    assert!(
        last_detail(&boot.reports).contains(because),
        "{:?}",
        boot.reports
    );
    boot
}

#[tokio::test]
async fn installs_into_the_idle_slot_reboots_and_reports_healthy() {
    let (b, rel, url) = Bench::with_release(image(300_000, 1), Some("\"v1\"")).await;
    let mut dev = b.open_device("pump-01", "1.0.0");
    assert_eq!(
        dev.boot().await.unwrap().firmware_version.to_string(),
        "1.0.0"
    );

    let reports = installs_into(&mut dev, &rel.offer("c-1", &url), Slot::B).await;
    assert_eq!(
        outcomes(&reports),
        [OtaOutcome::Downloading, OtaOutcome::Installed]
    );
    assert!(reports
        .iter()
        .all(|r| r.campaign_id == "c-1" && r.version == "2.1.0"));
    assert!(last_detail(&reports).contains("slot b"), "{reports:?}");
    // Installed, not yet booted: slot A is still the active one.
    let s = dev.nvram().state();
    assert_eq!(s.active, Slot::A);
    assert_eq!(s.trial.as_ref().map(|t| t.slot), Some(Slot::B));
    assert_eq!(
        std::fs::read(dev.nvram().slot_path(Slot::B)).unwrap(),
        rel.image
    );
    // One full download, over mutual TLS.
    let reqs = b.server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].answer(), (200, None, None));

    // "Reboot": the process state is gone, only the NVRAM stays.
    drop(dev);
    let mut dev = b.open_device("pump-01", "1.0.0");
    let boot = dev.boot().await.unwrap();
    assert_eq!(boot.slot, Slot::B);
    assert_eq!(boot.firmware_version.to_string(), "2.1.0");
    assert_eq!(outcomes(&boot.reports), [OtaOutcome::Healthy]);
    assert!(
        last_detail(&boot.reports).contains("slot a keeps 1.0.0"),
        "{:?}",
        boot.reports
    );
    let s = dev.nvram().state();
    assert_eq!(s.active, Slot::B);
    assert!(s.trial.is_none() && s.pending.is_none());
    assert_eq!(s.slot_a.as_ref().unwrap().version.to_string(), "1.0.0");

    // The same offer again (a gateway resuming its campaign): nothing is
    // installed twice, the device says it is already healthy.
    let again = offer_expecting(
        &mut dev,
        &rel.offer("c-1", &url),
        OfferResult::AlreadyRunning,
    )
    .await;
    assert_eq!(outcomes(&again), [OtaOutcome::Healthy]);
    assert_eq!(b.server.requests().len(), 1, "no second download");

    // The next release goes into slot A, the now idle one.
    let (next, url2) = b
        .publish("pump-fw-2.2.0.bin", "2.2.0", image(50_000, 2))
        .await;
    installs_into(&mut dev, &next.offer("c-2", &url2), Slot::A).await;
    let boot = dev.boot().await.unwrap();
    assert_eq!(
        (boot.slot, boot.firmware_version.to_string()),
        (Slot::A, "2.2.0".into())
    );
}

// control: firmware-integrity
#[tokio::test]
async fn a_tampered_image_is_refused_and_the_slot_erased() {
    let (b, rel) = Bench::with_signed(image(100_000, 3)).await;
    // The gateway's cached copy has one byte changed.
    let mut bad = rel.image.clone();
    bad[77_777] ^= 0x40;
    let url = b.server.put(RELEASE_FILE, bad, Some("\"x\""));
    let mut dev = b.open_device("pump-02", "1.0.0");
    let reports = offer_expecting(&mut dev, &rel.offer("c-1", &url), OfferResult::Failed).await;
    assert_eq!(
        outcomes(&reports),
        [OtaOutcome::Downloading, OtaOutcome::Failed]
    );
    let detail = last_detail(&reports);
    assert!(detail.contains("SHA-256"), "{detail}");
    assert!(
        detail.contains("still running 1.0.0 from slot a"),
        "{detail}"
    );
    let s = dev.nvram().state();
    assert_eq!(
        (s.active, s.firmware_version().to_string()),
        (Slot::A, "1.0.0".into())
    );
    assert!(s.trial.is_none() && s.pending.is_none() && s.slot_b.is_none());
    assert_eq!(
        std::fs::metadata(dev.nvram().slot_path(Slot::B))
            .unwrap()
            .len(),
        0,
        "the refused image is erased"
    );
    // Nothing to boot into.
    assert!(dev.boot().await.unwrap().reports.is_empty());

    // An image longer than signed is cut off at the signed length.
    let mut long = rel.image.clone();
    long.extend_from_slice(b"trailing payload");
    let url = b.server.put("long.bin", long, None);
    let reports = offer_expecting(&mut dev, &rel.offer("c-1", &url), OfferResult::Failed).await;
    assert_eq!(outcomes(&reports).last(), Some(&OtaOutcome::Failed));
    assert!(
        last_detail(&reports).contains("more than the signed"),
        "{reports:?}"
    );
    assert_eq!(dev.nvram().state().active, Slot::A);
}

#[tokio::test]
async fn older_foreign_hardware_and_unsigned_offers_are_refused_before_any_download() {
    let (b, rel, url) = Bench::with_release(image(10_000, 4), None).await;

    // A device already on 3.0.0 is offered 2.1.0.
    let mut newer = b.open_device("pump-03", "3.0.0");
    let reports = refused(
        &mut newer,
        &rel.offer("c-1", &url),
        "not newer than installed 3.0.0",
    )
    .await;
    assert_eq!(outcomes(&reports), [OtaOutcome::Failed]);

    // A monitor (other hardware id) is offered the pump's image.
    let mut cfg = b.config("monitor-01", "1.0.0");
    cfg.factory.hardware_id = "acme-monitor-m1".into();
    let mut monitor = OtaClient::open(&cfg).unwrap();
    let mut offer = rel.offer("c-1", &url);
    offer.hardware_id = "acme-monitor-m1".into();
    refused(
        &mut monitor,
        &offer,
        "not built for hardware acme-monitor-m1",
    )
    .await;

    // The key file `tuf-repo keygen` writes is what a device is built with.
    let pub_file = b.dir.path().join("acme.pub.json");
    tuf_repo::keys::save_public_key(&pub_file, &b.maker.key.public_key()).unwrap();
    assert_eq!(
        device_sim::ota::Factory::parse_manufacturer_key(
            &std::fs::read_to_string(&pub_file).unwrap()
        )
        .unwrap(),
        b.maker.key.verifying_key()
    );

    // A device of another manufacturer (another key) is offered it.
    let mut cfg = b.config("pump-04", "1.0.0");
    cfg.factory.manufacturer_key = tuf_repo::SigningKey::generate().verifying_key();
    let mut foreign = OtaClient::open(&cfg).unwrap();
    refused(
        &mut foreign,
        &rel.offer("c-1", &url),
        "not signed by this device's manufacturer key",
    )
    .await;

    // A gateway that rewrites the signed metadata to claim a newer version.
    let mut dev = b.open_device("pump-05", "2.1.0");
    let mut offer = rel.offer("c-1", &url);
    offer.targets_metadata = offer.targets_metadata.replace("\"2.1.0\"", "\"2.9.0\"");
    offer.version = "2.9.0".into();
    refused(&mut dev, &offer, "not signed").await;

    // A plain-HTTP download URL.
    let mut dev = b.open_device("pump-06", "1.0.0");
    let offer = rel.offer("c-1", &url.replace("https://", "http://"));
    refused(&mut dev, &offer, "https").await;

    // None of them fetched anything, and all still run what they ran.
    assert!(b.server.requests().is_empty());
    assert_eq!(newer.firmware_version().to_string(), "3.0.0");
    assert_eq!(monitor.firmware_version().to_string(), "1.0.0");
    assert_eq!(foreign.nvram().state().active, Slot::A);
}

// control: update-rollback
#[tokio::test]
async fn a_failed_self_test_rolls_back_to_the_previous_slot() {
    let (b, rel, url) = Bench::with_release(image(40_000, 5), None).await;
    let mut cfg = b.config("pump-07", "1.0.0");
    cfg.faults = ["self-test-fails=2.1.0".parse().unwrap()]
        .into_iter()
        .collect();
    let mut dev = OtaClient::open(&cfg).unwrap();
    installs_into(&mut dev, &rel.offer("canary", &url), Slot::B).await;

    drop(dev);
    let mut dev = OtaClient::open(&cfg).unwrap();
    let boot = boots_rolled_back(&mut dev, "self-test").await;
    assert_eq!(
        (boot.slot, boot.firmware_version.to_string()),
        (Slot::A, "1.0.0".into())
    );
    let r = &boot.reports[0];
    assert_eq!(
        (r.campaign_id.as_str(), r.version.as_str()),
        ("canary", "2.1.0")
    );
    let detail = r.detail.clone().unwrap();
    assert!(
        detail.contains("switched back to slot a running 1.0.0"),
        "{detail}"
    );
    let s = dev.nvram().state();
    assert!(s.trial.is_none() && s.slot_b.is_none());
    // Booting again stays on slot A and reports nothing new.
    let boot = dev.boot().await.unwrap();
    assert_eq!(boot.slot, Slot::A);
    assert!(boot.reports.is_empty());
}

// control: update-rollback
#[tokio::test]
async fn no_health_confirmation_in_the_window_or_before_a_restart_rolls_back() {
    let (b, rel, url) = Bench::with_release(image(20_000, 6), None).await;

    // The self-test takes longer than the health window.
    let mut cfg = b.config("pump-08", "1.0.0");
    cfg.faults.self_test_takes = Some(Duration::from_secs(5));
    cfg.health_window = Duration::from_millis(200);
    let mut dev = OtaClient::open(&cfg).unwrap();
    installs_into(&mut dev, &rel.offer("c-1", &url), Slot::B).await;
    let boot = boots_rolled_back(&mut dev, "health window").await;
    assert_eq!(boot.firmware_version.to_string(), "1.0.0");

    // The device dies during its trial boot (the self-test never ends):
    // the next boot does not try the new slot again.
    let mut cfg = b.config("pump-09", "1.0.0");
    cfg.faults.self_test_takes = Some(Duration::from_secs(3600));
    let mut dev = OtaClient::open(&cfg).unwrap();
    installs_into(&mut dev, &rel.offer("c-1", &url), Slot::B).await;
    let died = tokio::time::timeout(Duration::from_millis(300), dev.boot()).await;
    assert!(died.is_err(), "the self-test was still running");
    drop(dev);
    cfg.faults.self_test_takes = None;
    let mut dev = OtaClient::open(&cfg).unwrap();
    let boot = boots_rolled_back(&mut dev, "before the device restarted").await;
    assert_eq!(boot.slot, Slot::A);
}

// control: update-rollback
#[tokio::test(start_paused = false)]
async fn therapy_in_progress_defers_the_offer_until_the_device_is_idle() {
    let (b, rel, url) = Bench::with_release(image(30_000, 7), None).await;
    let mut cfg = b.config("pump-10", "1.0.0");
    cfg.faults.therapy_for = Some(Duration::from_secs(3600));
    let mut dev = OtaClient::open(&cfg).unwrap();
    assert!(dev.therapy().in_progress());

    let reports = offer_expecting(&mut dev, &rel.offer("c-1", &url), OfferResult::Deferred).await;
    assert_eq!(outcomes(&reports), [OtaOutcome::Deferred]);
    assert!(
        last_detail(&reports).contains("therapy in progress"),
        "{reports:?}"
    );
    assert!(
        b.server.requests().is_empty(),
        "nothing downloaded during therapy"
    );
    assert!(dev.nvram().state().pending.is_none());

    // Therapy ends; the gateway offers again.
    dev.therapy().stop();
    installs_into(&mut dev, &rel.offer("c-1", &url), Slot::B).await;
    assert_eq!(
        dev.boot().await.unwrap().firmware_version.to_string(),
        "2.1.0"
    );
}

#[tokio::test]
async fn an_image_server_refusal_is_reported() {
    let (b, rel) = Bench::with_signed(image(10_000, 8)).await;
    // Not offered to this device: the server does not have it for it.
    let url = b.server.url("not-for-you.bin");
    let mut dev = b.open_device("pump-11", "1.0.0");
    let reports = offer_expecting(&mut dev, &rel.offer("c-1", &url), OfferResult::Failed).await;
    let detail = last_detail(&reports);
    assert!(detail.contains("HTTP 404"), "{detail}");
    assert!(detail.contains("not offered to this device"), "{detail}");
    assert!(dev.nvram().state().pending.is_none());
}

#[tokio::test]
async fn a_busy_image_server_is_waited_for() {
    let (b, rel, url) = Bench::with_release(image(10_000, 9), None).await;
    b.server.busy_for_next(2);
    let mut dev = b.open_device("pump-12", "1.0.0");
    let started = std::time::Instant::now();
    installs_into(&mut dev, &rel.offer("c-1", &url), Slot::B).await;
    let statuses: Vec<u16> = b.server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
    // Retry-After: 1 was honoured (a test of behaviour, not of speed).
    assert!(started.elapsed() >= Duration::from_secs(2));

    // A server that stays busy longer than the device waits: reported,
    // and the device stays on its firmware.
    let mut cfg = b.config("pump-13", "1.0.0");
    cfg.download.busy_timeout = Duration::from_secs(1);
    b.server.busy_for_next(5);
    let mut dev = OtaClient::open(&cfg).unwrap();
    let reports = offer_expecting(&mut dev, &rel.offer("c-1", &url), OfferResult::Failed).await;
    assert!(last_detail(&reports).contains("stayed busy"), "{reports:?}");
    assert_eq!(dev.firmware_version().to_string(), "1.0.0");
}
