//! Interrupted downloads resume with HTTP Range from where they stopped:
//! within one run when the server drops the connection, and across a
//! restart when the device lost power (its state reloaded from disk as
//! after `kill -9`). A changed image (another ETag) is fetched again from
//! byte 0 instead of being spliced onto the old bytes.

mod support;

use device_sim::ota::{OtaError, Slot};
use support::*;
use wardgate_protocol::OtaOutcome;

/// The image server was asked twice, the second time for the rest of the
/// image from byte `from` with `If-Range: <if_range>`, and answered it with
/// `status`.
fn assert_resumed_once(reqs: &[Request], from: u64, if_range: &str, status: u16) {
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(
        reqs[1].answer(),
        (
            status,
            Some(format!("bytes={from}-").as_str()),
            Some(if_range)
        )
    );
}

#[tokio::test]
async fn a_dropped_connection_resumes_with_a_range_request() {
    let (b, rel, url) = Bench::with_release(image(400_000, 11), Some("\"img-1\"")).await;
    const CUT: u64 = 123_457;
    b.server.cut_next_response_at(CUT);
    let mut dev = b.open_device("pump-20", "1.0.0");
    let reports = installs_into(&mut dev, &rel.offer("c-1", &url), Slot::B).await;
    assert_eq!(
        outcomes(&reports),
        [OtaOutcome::Downloading, OtaOutcome::Installed]
    );
    let reqs = b.server.requests();
    assert_resumed_once(&reqs, CUT, "\"img-1\"", 206);
    assert_eq!(reqs[0].answer(), (200, None, None));
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
    let (b, rel, url) =
        Bench::with_release(image(3 * 1024 * 1024 + 17, 12), Some("\"img-1\"")).await;
    // Power goes after 1.5 MiB (past one checkpoint, before the next).
    const LOSS: u64 = 1_572_871;
    let mut cfg = b.config("pump-21", "1.0.0");
    cfg.faults.power_loss_after = Some(LOSS);
    let (e, reports) = lose_power_during(&cfg, &rel.offer("c-1", &url)).await;
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
    let mut dev = power_back(&mut cfg);
    assert!(dev.boot().await.unwrap().reports.is_empty());
    let reports = installs_into(&mut dev, &rel.offer("c-1", &url), Slot::B).await;
    assert!(
        reports[0]
            .detail
            .as_deref()
            .unwrap()
            .contains(&format!("at byte {LOSS}")),
        "{reports:?}"
    );
    let reqs = b.server.requests();
    assert_resumed_once(&reqs, LOSS, "\"img-1\"", 206);
    let boot = dev.boot().await.unwrap();
    assert_eq!(outcomes(&boot.reports), [OtaOutcome::Healthy]);
    assert_eq!(boot.firmware_version.to_string(), "2.1.0");
}

/// A gateway that first serves a damaged copy of the image (one byte
/// flipped), a device that loses power during its download, and the
/// gateway repairing its cache while the device is down.
struct RepairedWhileDown {
    device: &'static str,
    /// Salt of the signed image's bytes.
    salt: u8,
    /// Which byte of the served copy is damaged, and the bits flipped.
    damaged: (usize, u8),
    /// The byte after which the power goes.
    loss: u64,
    /// The ETag of the damaged copy and that of the repaired one.
    etags: (Option<&'static str>, Option<&'static str>),
}

impl RepairedWhileDown {
    /// Run it: the restarted device is offered the image again and must
    /// install it. Returns what the image server was asked.
    async fn run(&self) -> Vec<Request> {
        let (b, rel) = Bench::with_signed(image(200_000, self.salt)).await;
        let mut damaged = rel.image.clone();
        damaged[self.damaged.0] ^= self.damaged.1;
        let url = b.server.put(RELEASE_FILE, damaged, self.etags.0);
        let mut cfg = b.config(self.device, "1.0.0");
        cfg.faults.power_loss_after = Some(self.loss);
        lose_power_during(&cfg, &rel.offer("c-1", &url)).await;
        b.server.put(RELEASE_FILE, rel.image.clone(), self.etags.1);

        let mut dev = power_back(&mut cfg);
        installs_into(&mut dev, &rel.offer("c-1", &url), Slot::B).await;
        b.server.requests()
    }
}

#[tokio::test]
async fn a_changed_image_restarts_from_byte_zero_instead_of_splicing() {
    const LOSS: u64 = 65_000;
    let reqs = RepairedWhileDown {
        device: "pump-22",
        salt: 13,
        damaged: (1000, 0xff),
        loss: LOSS,
        etags: (Some("\"damaged\""), Some("\"repaired\"")),
    }
    .run()
    .await;
    // The resume asked for the rest of the old image; the server sent the
    // whole new one, which replaced the slot: no third request needed.
    assert_resumed_once(&reqs, LOSS, "\"damaged\"", 200);
}

#[tokio::test]
async fn without_an_etag_a_resumed_image_that_fails_its_check_is_fetched_whole_once() {
    let reqs = RepairedWhileDown {
        device: "pump-23",
        salt: 14,
        damaged: (10, 1),
        loss: 50_000,
        etags: (None, None),
    }
    .run()
    .await;
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!(reqs[1].range.as_deref(), Some("bytes=50000-"));
    assert_eq!(reqs[2].answer(), (200, None, None));
}
