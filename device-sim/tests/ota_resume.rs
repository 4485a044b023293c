//! Interrupted downloads resume with HTTP Range from where they stopped:
//! within one run when the server drops the connection, and across a
//! restart when the device lost power (its state reloaded from disk as
//! after `kill -9`). A changed image (another ETag) is fetched again from
//! byte 0 instead of being spliced onto the old bytes.

mod support;

use device_sim::ota::{OfferResult, OtaClient, OtaError, Slot};
use support::*;
use wardgate_protocol::OtaOutcome;

#[tokio::test]
async fn a_dropped_connection_resumes_with_a_range_request() {
    let b = Bench::new().await;
    let rel = b
        .maker
        .release("pump-fw-2.1.0.bin", "2.1.0", HW, image(400_000, 11))
        .await;
    let url = b
        .server
        .put("pump-fw-2.1.0.bin", rel.image.clone(), Some("\"img-1\""));
    const CUT: u64 = 123_457;
    b.server.cut_next_response_at(CUT);
    let mut dev = OtaClient::open(&b.config("pump-20", "1.0.0")).unwrap();
    let mut reports = Vec::new();
    let r = dev
        .handle_offer(&rel.offer("c-1", &url), &mut reports)
        .await
        .unwrap();
    assert_eq!(r, OfferResult::Installed { slot: Slot::B });
    assert_eq!(
        outcomes(&reports),
        [OtaOutcome::Downloading, OtaOutcome::Installed]
    );
    let reqs = b.server.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!((reqs[0].status, reqs[0].range.as_deref()), (200, None));
    assert_eq!(
        reqs[1].range.as_deref(),
        Some(format!("bytes={CUT}-").as_str())
    );
    assert_eq!(reqs[1].if_range.as_deref(), Some("\"img-1\""));
    assert_eq!(reqs[1].status, 206);
    assert_eq!(
        std::fs::read(dev.nvram().slot_path(Slot::B)).unwrap(),
        rel.image
    );
    assert_eq!(
        dev.boot().await.unwrap().firmware_version.to_string(),
        "2.1.0"
    );
}

#[tokio::test]
async fn after_a_power_loss_the_restarted_device_resumes_from_the_bytes_in_its_slot() {
    let b = Bench::new().await;
    let rel = b
        .maker
        .release(
            "pump-fw-2.1.0.bin",
            "2.1.0",
            HW,
            image(3 * 1024 * 1024 + 17, 12),
        )
        .await;
    let url = b
        .server
        .put("pump-fw-2.1.0.bin", rel.image.clone(), Some("\"img-1\""));
    // Power goes after 1.5 MiB (past one checkpoint, before the next).
    const LOSS: u64 = 1_572_871;
    let mut cfg = b.config("pump-21", "1.0.0");
    cfg.faults.power_loss_after = Some(LOSS);
    let mut dev = OtaClient::open(&cfg).unwrap();
    let mut reports = Vec::new();
    let e = dev
        .handle_offer(&rel.offer("c-1", &url), &mut reports)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            OtaError::PowerLoss {
                bytes: LOSS,
                slot: Slot::B
            }
        ),
        "{e}"
    );
    assert_eq!(outcomes(&reports), [OtaOutcome::Downloading]);
    // Nothing more happens in this process: it is gone, as after kill -9.
    drop(dev);

    // The slot holds exactly what arrived; the NVRAM's progress counter
    // lags behind (its last checkpoint), and the slot file is the truth.
    let dir = cfg.state_dir.clone();
    assert_eq!(
        std::fs::metadata(dir.join("slot-b.img")).unwrap().len(),
        LOSS
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    // (0 or the 1 MiB checkpoint, depending on how the bytes arrived.)
    let counted = state["pending"]["bytes_downloaded"].as_u64().unwrap();
    assert!(counted < LOSS, "checkpointed {counted}");
    assert_eq!(state["pending"]["etag"], "\"img-1\"");

    // Power back: a new process opens the same state folder.
    cfg.faults.power_loss_after = None;
    let mut dev = OtaClient::open(&cfg).unwrap();
    assert!(dev.boot().await.unwrap().reports.is_empty());
    let mut reports = Vec::new();
    let r = dev
        .handle_offer(&rel.offer("c-1", &url), &mut reports)
        .await
        .unwrap();
    assert_eq!(r, OfferResult::Installed { slot: Slot::B });
    assert!(
        reports[0]
            .detail
            .as_deref()
            .unwrap()
            .contains(&format!("at byte {LOSS}")),
        "{reports:?}"
    );
    let reqs = b.server.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(
        reqs[1].range.as_deref(),
        Some(format!("bytes={LOSS}-").as_str())
    );
    assert_eq!(reqs[1].if_range.as_deref(), Some("\"img-1\""));
    assert_eq!(reqs[1].status, 206);
    let boot = dev.boot().await.unwrap();
    assert_eq!(outcomes(&boot.reports), [OtaOutcome::Healthy]);
    assert_eq!(boot.firmware_version.to_string(), "2.1.0");
}

#[tokio::test]
async fn a_changed_image_restarts_from_byte_zero_instead_of_splicing() {
    let b = Bench::new().await;
    let rel = b
        .maker
        .release("pump-fw-2.1.0.bin", "2.1.0", HW, image(200_000, 13))
        .await;
    // The gateway first serves a damaged copy, then repairs its cache (a
    // new ETag) while the device is down.
    let mut damaged = rel.image.clone();
    damaged[1000] ^= 0xff;
    let url = b
        .server
        .put("pump-fw-2.1.0.bin", damaged, Some("\"damaged\""));
    const LOSS: u64 = 65_000;
    let mut cfg = b.config("pump-22", "1.0.0");
    cfg.faults.power_loss_after = Some(LOSS);
    let mut dev = OtaClient::open(&cfg).unwrap();
    dev.handle_offer(&rel.offer("c-1", &url), &mut Vec::new())
        .await
        .unwrap_err();
    drop(dev);
    b.server
        .put("pump-fw-2.1.0.bin", rel.image.clone(), Some("\"repaired\""));

    cfg.faults.power_loss_after = None;
    let mut dev = OtaClient::open(&cfg).unwrap();
    let r = dev
        .handle_offer(&rel.offer("c-1", &url), &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(r, OfferResult::Installed { slot: Slot::B });
    let reqs = b.server.requests();
    // The resume asked for the rest of the old image; the server sent the
    // whole new one, which replaced the slot: no third request needed.
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(
        reqs[1].range.as_deref(),
        Some(format!("bytes={LOSS}-").as_str())
    );
    assert_eq!(reqs[1].if_range.as_deref(), Some("\"damaged\""));
    assert_eq!(reqs[1].status, 200);
}

#[tokio::test]
async fn without_an_etag_a_resumed_image_that_fails_its_check_is_fetched_whole_once() {
    let b = Bench::new().await;
    let rel = b
        .maker
        .release("pump-fw-2.1.0.bin", "2.1.0", HW, image(200_000, 14))
        .await;
    let mut damaged = rel.image.clone();
    damaged[10] ^= 1;
    let url = b.server.put("pump-fw-2.1.0.bin", damaged, None);
    let mut cfg = b.config("pump-23", "1.0.0");
    cfg.faults.power_loss_after = Some(50_000);
    let mut dev = OtaClient::open(&cfg).unwrap();
    dev.handle_offer(&rel.offer("c-1", &url), &mut Vec::new())
        .await
        .unwrap_err();
    drop(dev);
    b.server.put("pump-fw-2.1.0.bin", rel.image.clone(), None);

    cfg.faults.power_loss_after = None;
    let mut dev = OtaClient::open(&cfg).unwrap();
    let r = dev
        .handle_offer(&rel.offer("c-1", &url), &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(r, OfferResult::Installed { slot: Slot::B });
    let reqs = b.server.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!(reqs[1].range.as_deref(), Some("bytes=50000-"));
    assert_eq!((reqs[2].status, reqs[2].range.as_deref()), (200, None));
}
