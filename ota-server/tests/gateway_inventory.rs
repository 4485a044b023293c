//! What a gateway's rollout relies on from the server: the inventory a
//! gateway reports carries each device's hardware id and firmware, a
//! campaign only assigns devices its release is built for, and the image
//! bytes the server sends are counted exactly (the central-egress figure a
//! ward's rollout is measured by).

mod support;

use support::{Harness, Opts};

async fn post(
    c: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut rb = c.post(url).json(&body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_assigns_only_devices_of_the_release_hardware() {
    let mut h = Harness::new(Opts::default()).await;
    h.start().await;
    // The harness signs releases for hardware `pump-x1`.
    let b = h
        .release("acme", &h.keys.acme, "pump-5.0.0.bin", "5.0.0", b"fw5")
        .await;
    assert_eq!(h.upload_bundle(&h.acme_token, &b).await.status(), 201);
    let base = h.base_url();
    let (s, created) = post(
        &h.client(),
        format!("{base}/api/v1/campaigns"),
        Some(&h.admin_token),
        serde_json::json!({
            "name": "pump 5", "target": "acme/pump-5.0.0.bin", "gateways": ["ward-5c"],
            "waves": ["100%"], "failure_threshold_percent": 10
        }),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let gw = h.gateway_client(&h.ca, "ward-5c");
    let inventory = serde_json::json!({"devices": [
        {"device_id": "pump-01", "hardware_id": "pump-x1", "firmware_version": "4.2.0"},
        {"device_id": "monitor-01", "hardware_id": "globex-m1", "firmware_version": "1.0.0"},
        "legacy-01",
    ]});
    let (s, a) = post(
        &gw,
        format!("{base}/api/v1/gateway/assignments"),
        None,
        inventory.clone(),
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a[0]["devices"], serde_json::json!(["legacy-01", "pump-01"]));
    let st = h.admin_get(&format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(st["devices_total"], 2, "{st}");

    // The monitor is not in the campaign: a result for it is refused.
    let (s, e) = post(
        &gw,
        format!("{base}/api/v1/gateway/results"),
        None,
        serde_json::json!({"campaign_id": id, "results": [{"device_id": "monitor-01", "outcome": "success"}]}),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("not_assigned"))
    );

    // Free text from a gateway is bounded: refused by name, nothing stored.
    let (s, e) = post(
        &gw,
        format!("{base}/api/v1/gateway/assignments"),
        None,
        serde_json::json!({"devices": [{"device_id": "pump-02", "hardware_id": "pump\u{7}x1"}]}),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("invalid_inventory"))
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("hardware_id"),
        "{e}"
    );
    assert_eq!(
        h.metric("wardgate_ota_refusals_total{code=\"invalid_inventory\"}")
            .await,
        1.0
    );
    // ... and the earlier inventory still stands.
    let (_, a) = post(
        &gw,
        format!("{base}/api/v1/gateway/assignments"),
        None,
        inventory,
    )
    .await;
    assert_eq!(a[0]["devices"], serde_json::json!(["legacy-01", "pump-01"]));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_bytes_sent_are_counted_exactly() {
    let mut h = Harness::new(Opts::default()).await;
    h.start().await;
    let image: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let b = h
        .release("acme", &h.keys.acme, "pump-6.0.0.bin", "6.0.0", &image)
        .await;
    assert_eq!(h.upload_bundle(&h.acme_token, &b).await.status(), 201);
    let sha = support::sha256_hex(&image);
    let url = format!("{}/targets/acme/{sha}.pump-6.0.0.bin", h.base_url());
    let gw = h.gateway_client(&h.ca, "ward-6d");
    let sent = || h.metric("wardgate_ota_target_sent_bytes_total");
    assert_eq!(sent().await, 0.0);

    let full = gw.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.bytes().await.unwrap().len(), image.len());
    assert_eq!(sent().await, image.len() as f64);

    // A resumed download counts only the rest.
    let rest = gw
        .get(&url)
        .header("Range", "bytes=150000-")
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 206);
    assert_eq!(rest.bytes().await.unwrap()[..], image[150_000..]);
    assert_eq!(sent().await, (image.len() + 50_000) as f64);

    // A revalidation sends nothing.
    let same = gw
        .get(&url)
        .header("If-None-Match", format!("\"{sha}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 304);
    assert_eq!(sent().await, (image.len() + 50_000) as f64);
    h.stop().await;
}
