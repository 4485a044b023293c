//! The image server for devices: HTTP semantics a resuming device relies
//! on (Range, ETag, If-Range), and its refusals, each checked three ways:
//! the peer is refused, the reason is on record (audit row, metric), and
//! everyone else keeps working.

mod ota_rollout_support;
mod ota_support;
mod support;

use std::time::Duration;

use device_sim::{DeviceEvent, DeviceTls, SimDevice};
use ota_rollout_support::{rollout_config, Ward};
use reqwest::StatusCode;
use wardgate_protocol::{DeviceActivity, OtaOffer};

/// Connect `id` as a bare MQTT device, say it is idle and wait for the
/// offer (the device then holds an open offer and downloads by hand).
async fn offered(w: &Ward, id: &str, tls: &DeviceTls) -> (SimDevice, OtaOffer) {
    let mut d = SimDevice::connect(&w.device_options(id, tls.clone()))
        .await
        .unwrap();
    d.subscribe(&format!("wardgate/v1/devices/{id}/ota/offer"))
        .await
        .unwrap();
    loop {
        if d.next_event(Duration::from_secs(10)).await.unwrap() == DeviceEvent::SubAck {
            break;
        }
    }
    d.publish_status(DeviceActivity::Idle, "1.0.0")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let DeviceEvent::Message { topic, payload } = d.next_event(left).await.unwrap() {
            if topic.ends_with("/ota/offer") {
                return (d, OtaOffer::from_json(&payload).unwrap());
            }
        }
    }
}

fn refused_rows(w: &Ward, action: &str, reason: &str) -> usize {
    w.audit(action)
        .into_iter()
        .filter(|r| r.outcome == "refused" && r.detail_json()["reason"] == reason)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranges_etags_and_refusals() {
    let image = ota_support::image(256 * 1024, 3);
    let sha = ota_support::sha256_hex(&image);
    let w = Ward::start(&image, rollout_config()).await;
    let tls1 = w.enroll("pump-01");
    let tls2 = w.enroll("pump-02");
    w.campaign(&["100%"], 50.0).await;
    // Both are assigned; only pump-01 shows up idle, so only it is offered.
    let (_d1, offer) = offered(&w, "pump-01", &tls1).await;
    assert_eq!(offer.download_url, w.image_url(&sha));
    assert_eq!(offer.sha256, sha);
    let c1 = w.image_client(Some(&tls1));
    let url = offer.download_url.clone();

    // The whole image, with its validators.
    let r = c1.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{sha}\""));
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.bytes().await.unwrap()[..], image[..]);

    // Resume from byte 100000.
    let r = c1
        .get(&url)
        .header("Range", "bytes=100000-")
        .header("If-Range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 100000-{}/{}", image.len() - 1, image.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap()[..], image[100_000..]);
    // A partial copy of something else: the whole image.
    let r = c1
        .get(&url)
        .header("Range", "bytes=100000-")
        .header("If-Range", "\"0000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), image.len());
    // Beyond the end.
    let r = c1
        .get(&url)
        .header("Range", format!("bytes={}-", image.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", image.len()).as_str()
    );
    // Already complete.
    let r = c1
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    // Another enrolled device with a good certificate but no offer.
    let c2 = w.image_client(Some(&tls2));
    let r = c2.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("holds no offer"));
    assert_eq!(refused_rows(&w, "ota.image", "not_offered"), 1);
    assert_eq!(
        w.metric("wardgate_ota_image_requests_total{outcome=\"not_offered\"}"),
        1.0
    );
    // An image nobody was offered, asked by the device that has an offer.
    let r = c1.get(w.image_url(&"0".repeat(64))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(refused_rows(&w, "ota.image", "not_offered"), 2);

    // No client certificate: the handshake fails, nothing is served.
    let before = w.audit("ota.image.tls").len();
    let e = w.image_client(None).get(&url).send().await;
    assert!(e.is_err(), "served without a client certificate: {e:?}");
    wardgate_tests::wait::wait_for(Duration::from_secs(10), || {
        (w.audit("ota.image.tls").len() > before).then_some(())
    })
    .await
    .expect("handshake refusal audited");
    assert!(w.metric("wardgate_ota_image_requests_total{outcome=\"tls_handshake\"}") >= 1.0);
    // A certificate of another CA: refused the same way.
    let other = gateway::pki::Ca::generate("Another ward", 5).unwrap();
    let foreign = other
        .issue_device(&wardgate_protocol::DeviceId::parse("pump-01").unwrap(), 5)
        .unwrap();
    let foreign_tls = DeviceTls {
        ca_pem: w.pki.ca.cert_pem.clone(),
        cert_pem: foreign.cert_pem.clone(),
        key_pem: foreign.key_pem.clone(),
    };
    assert!(w
        .image_client(Some(&foreign_tls))
        .get(&url)
        .send()
        .await
        .is_err());
    // A device the ward CA issued but the registry does not know.
    let stranger = w
        .pki
        .ca
        .issue_device(&wardgate_protocol::DeviceId::parse("pump-99").unwrap(), 5)
        .unwrap();
    let stranger_tls = w.pki.device_tls(&stranger);
    let r = w
        .image_client(Some(&stranger_tls))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(refused_rows(&w, "ota.image", "not_enrolled"), 1);

    // Everyone else kept working: the offered device still downloads.
    let r = c1.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), image.len());

    // Revoked: refused at once, even with an open offer.
    w.gw()
        .handle
        .context
        .registry
        .set_state(
            &wardgate_protocol::DeviceId::parse("pump-01").unwrap(),
            gateway::registry::DeviceState::Revoked,
            "test",
            "stolen",
        )
        .unwrap();
    let r = w.image_client(Some(&tls1)).get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(refused_rows(&w, "ota.image", "revoked"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_beyond_the_bound_wait_with_retry_after() {
    // Large enough that a client that does not read holds its download.
    let image = ota_support::image(6 * 1024 * 1024, 5);
    let mut config = rollout_config();
    config.image_max_downloads = 1;
    let w = Ward::start(&image, config).await;
    let tls = w.enroll("pump-01");
    w.campaign(&["100%"], 50.0).await;
    let (_d, offer) = offered(&w, "pump-01", &tls).await;
    let c = w.image_client(Some(&tls));
    // The first download holds the only slot while its body is unread.
    let held = c.get(&offer.download_url).send().await.unwrap();
    assert_eq!(held.status(), StatusCode::OK);
    let r = c.get(&offer.download_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(
        w.metric("wardgate_ota_image_requests_total{outcome=\"busy\"}"),
        1.0
    );
    assert_eq!(w.metric("wardgate_ota_image_downloads_active"), 1.0);
    // Once it ends, the next one is served.
    drop(held);
    let ok = wardgate_tests::wait::wait_for_async(Duration::from_secs(20), || async {
        let r = c.get(&offer.download_url).send().await.ok()?;
        (r.status() == StatusCode::OK).then_some(r.bytes().await.ok()?.len())
    })
    .await;
    assert_eq!(ok, Some(image.len()));
}
