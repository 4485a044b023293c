//! Refusals of a ward's rollout with the real processes, over real TLS
//! sockets (`tuf-repo`, `ota-server serve`, `gateway run`, `device-sim`;
//! the set-up is [`wardgate_tests::ota_ward`]):
//!
//! 1. The gateway's cached image is tampered with on its disk after the
//!    gateway verified and staged it (bytes flipped, size and modification
//!    time kept, so the image server still serves it): the device downloads
//!    it, its length and SHA-256 check fails, it installs nothing, stays on
//!    1.0.0 and reports the failure. The gateway records the failure, hashes
//!    its cached copy again on that report, deletes it, audits the tampering
//!    (`ota.image.verify`, refused) and counts it
//!    (`wardgate_ota_image_corrupt_total`), and downloads the image again
//!    from the OTA server; an operator's retry then installs the genuine
//!    image, and the next device gets the genuine image too.
//! 2. A device whose therapy starts just as an offer is on its way (its last
//!    status said idle, so the gateway offered): the device refuses the
//!    offer itself, reports `deferred`, the gateway records the device's
//!    refusal and offers again once the device reports idle, and the device
//!    installs then.

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use wardgate_tests::hash::sha256_hex;
use wardgate_tests::ota_ward::{
    device, healthy_on, image, metric, strip_ansi, tail, AuditRow, Ward,
};
use wardgate_tests::process::read_log;
use wardgate_tests::wait::wait_for_async;

const IMAGE_LEN: usize = 256 * 1024;

/// Where the tampering starts, and how many bytes are flipped.
const TAMPER_AT: u64 = 100_000;
const TAMPERED: usize = 64;

/// Poll the gateway's audit log until a row with `action` satisfies `f`.
async fn wait_audit(
    w: &Ward,
    action: &str,
    limit: Duration,
    what: &str,
    f: impl Fn(&AuditRow) -> bool,
) -> AuditRow {
    let found = wait_for_async(limit, || async {
        w.audit(action).into_iter().find(|r| f(r))
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "no {action} audit row: {what}\n--- gateway log tail ---\n{}",
            tail(&read_log(&w.path("gateway.log")), 40)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_cached_image_is_refused_by_the_device_and_noticed_by_the_gateway() {
    let mut w = Ward::new(2).await;
    let v2 = image(IMAGE_LEN, 2);
    let sha = sha256_hex(&v2);
    let target = w.publish("2.0.0", &v2).await;
    // One wave, no halt on a failure: the second device is started later
    // and must get the genuine image.
    let campaign = w.campaign_with(&target, &["100%"], 100.0).await;

    // The gateway downloads and verifies the image into its cache before
    // any device is running.
    wait_audit(
        &w,
        "ota.image.download",
        Duration::from_secs(60),
        "the gateway staged the image",
        |r| r.outcome == "allowed" && r.detail_json()["sha256"] == sha.as_str(),
    )
    .await;
    let cached = w.path("gateway-data").join("ota/images").join(&sha);
    assert_eq!(std::fs::read(&cached).unwrap(), v2, "the staged image");

    // Someone with access to the gateway's disk flips bytes in place and
    // puts the modification time back, so the file looks untouched.
    let modified = std::fs::metadata(&cached).unwrap().modified().unwrap();
    {
        let mut f = std::fs::File::options().write(true).open(&cached).unwrap();
        f.seek(SeekFrom::Start(TAMPER_AT)).unwrap();
        let start = usize::try_from(TAMPER_AT).unwrap();
        let flipped: Vec<u8> = v2[start..start + TAMPERED].iter().map(|b| !b).collect();
        f.write_all(&flipped).unwrap();
        f.set_modified(modified).unwrap();
    }
    let tampered = std::fs::read(&cached).unwrap();
    assert_eq!(tampered.len(), v2.len());
    assert_ne!(sha256_hex(&tampered), sha);

    // The device downloads what the gateway serves and refuses it.
    w.start_devices("pump-01", 1, 1, &[]);
    let c = w
        .wait_campaign(&campaign, Duration::from_secs(90), "pump-01 failed", |c| {
            device(c, "pump-01").is_some_and(|d| d["state"] == "failed")
        })
        .await;
    let d1 = device(&c, "pump-01").unwrap();
    assert!(
        d1["detail"].as_str().unwrap().contains("SHA-256"),
        "the device's failure names the check: {d1}"
    );
    let log1 = strip_ansi(&read_log(&w.path("pump-01.log")));
    assert!(
        log1.contains("downloaded image refused"),
        "the device refused the image it downloaded: {}",
        tail(&log1, 30)
    );
    assert!(
        !log1.contains("firmware installed"),
        "the device installed a tampered image: {}",
        tail(&log1, 30)
    );
    // It still runs 1.0.0 and says so.
    let c = w
        .wait_campaign(
            &campaign,
            Duration::from_secs(20),
            "pump-01 on 1.0.0",
            |c| device(c, "pump-01").is_some_and(|d| d["firmware_version"] == "1.0.0"),
        )
        .await;
    assert_eq!(device(&c, "pump-01").unwrap()["state"], "failed");

    // The gateway recorded the device's failure...
    let result = wait_audit(
        &w,
        "ota.result",
        Duration::from_secs(10),
        "pump-01's failure",
        |r| r.subject == "pump-01",
    )
    .await;
    assert_eq!(result.outcome, "refused");
    assert_eq!(result.detail_json()["state"], "failed");
    assert!(result.detail_json()["reason"]
        .as_str()
        .unwrap()
        .contains("SHA-256"));
    // ...noticed that its own copy was tampered with, because of that report...
    let verify = wait_audit(
        &w,
        "ota.image.verify",
        Duration::from_secs(30),
        "the tampered cache noticed",
        |r| r.subject == sha,
    )
    .await;
    assert_eq!(verify.outcome, "refused");
    let detail = verify.detail_json();
    assert_eq!(detail["reason"], "corrupt");
    assert_eq!(detail["actual_sha256"], sha256_hex(&tampered).as_str());
    assert!(
        detail["trigger"].as_str().unwrap().contains("pump-01"),
        "{detail}"
    );
    assert!(verify.id > result.id);
    let m = w.gateway_metrics().await;
    assert_eq!(metric(&m, "wardgate_ota_image_corrupt_total"), 1.0, "{m}");
    // ...and downloaded the genuine image again from the OTA server.
    wait_audit(
        &w,
        "ota.image.download",
        Duration::from_secs(60),
        "the image downloaded again",
        |r| r.outcome == "allowed" && r.id > verify.id,
    )
    .await;
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        v2,
        "the cache holds the genuine image again"
    );
    assert_eq!(w.ota_sent_bytes().await, 2.0 * v2.len() as f64);

    // An operator retries pump-01: it installs the genuine image.
    let r = w.retry_device("pump-01", &w.operator).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // The next device gets the genuine image as well.
    w.start_devices("pump-02", 2, 1, &[]);
    let done = w
        .wait_campaign(
            &campaign,
            Duration::from_secs(120),
            "both healthy on 2.0.0",
            |c| {
                ["pump-01", "pump-02"]
                    .iter()
                    .all(|id| device(c, id).is_some_and(|d| healthy_on(d, "2.0.0")))
            },
        )
        .await;
    assert_eq!(device(&done, "pump-01").unwrap()["attempts"], 2, "{done:#}");
    let retry = w.audit("ota.retry");
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].subject, "pump-01");
    let st = w.server_campaign(&campaign).await;
    assert_eq!(st["state"], "completed", "{st}");
    assert_eq!(st["totals"]["success"], 2, "{st}");
    // One tampered copy noticed, no more.
    let m = w.gateway_metrics().await;
    assert_eq!(metric(&m, "wardgate_ota_image_corrupt_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_therapy_starts_as_an_offer_arrives_refuses_it_and_is_offered_again_once_idle(
) {
    const THERAPY: Duration = Duration::from_secs(6);
    let mut w = Ward::new(1).await;
    let v2 = image(IMAGE_LEN, 5);
    let target = w.publish("2.0.0", &v2).await;
    w.start_devices("pump-01", 1, 1, &["therapy-on-offer=6s"]);
    let campaign = w.campaign_with(&target, &["100%"], 50.0).await;

    let done = w
        .wait_campaign(
            &campaign,
            Duration::from_secs(120),
            "pump-01 healthy on 2.0.0",
            |c| device(c, "pump-01").is_some_and(|d| healthy_on(d, "2.0.0")),
        )
        .await;
    assert_eq!(device(&done, "pump-01").unwrap()["attempts"], 1, "{done:#}");

    // The first offer went out on an idle status and the device refused it
    // itself; the gateway recorded the device's refusal in its words.
    let offers = w.audit("ota.offer");
    let refusals: Vec<AuditRow> = w
        .audit("ota.defer")
        .into_iter()
        .filter(|r| r.subject == "pump-01" && r.outcome == "refused")
        .collect();
    let refusal = refusals.first().unwrap_or_else(|| {
        panic!(
            "the device's refusal was not audited; offers {offers:?}\n{}",
            tail(&read_log(&w.path("gateway.log")), 40)
        )
    });
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusal.actor, "device:pump-01");
    let reason = refusal.detail_json()["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("therapy in progress"), "{reason}");
    let first = offers
        .iter()
        .find(|r| r.subject == "pump-01")
        .expect("an offer");
    assert!(first.id < refusal.id, "refused before it was offered?");
    // Offered again only once the device was idle, after its therapy.
    let again = offers
        .iter()
        .find(|r| r.subject == "pump-01" && r.id > refusal.id)
        .expect("offered again after the refusal");
    // Therapy started when the first offer arrived, which was after the
    // gateway recorded it (the row is written before the offer is sent),
    // and the second offer followed an idle status after the therapy.
    let waited = (again.ts - first.ts).to_std().unwrap();
    assert!(
        waited >= THERAPY,
        "offered again {waited:?} after the first offer, during the {THERAPY:?} therapy"
    );

    // The device: therapy started as the offer arrived, nothing was
    // downloaded before the refusal, the image was installed after it.
    let log = strip_ansi(&read_log(&w.path("pump-01.log")));
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in the device log: {}", tail(&log, 40)))
    };
    let started = at("therapy started as the offer arrived");
    let deferred = at("offer deferred: therapy in progress");
    let downloading = at("downloading firmware");
    let installed = at("firmware installed");
    assert!(
        started < deferred && deferred < downloading && downloading < installed,
        "{}",
        tail(&log, 40)
    );
    let st = w.server_campaign(&campaign).await;
    assert_eq!(st["state"], "completed", "{st}");
    assert_eq!(st["totals"]["success"], 1, "{st}");
}
