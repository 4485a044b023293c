//! What a gateway's rollout relies on from the server: the inventory a
//! gateway reports carries each device's hardware id and firmware, a
//! campaign only assigns devices its release is built for, and the image
//! bytes the server sends are counted exactly (the central-egress figure a
//! ward's rollout is measured by).

mod support;

use support::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_assigns_only_devices_of_the_release_hardware() {
    // The harness signs releases for hardware `pump-x1`.
    let mut h = Harness::with_acme_release("pump-5.0.0.bin", "5.0.0", b"fw5").await;
    let id = h
        .create_campaign(serde_json::json!({
            "name": "pump 5", "target": "acme/pump-5.0.0.bin", "gateways": ["ward-5c"],
            "waves": ["100%"], "failure_threshold_percent": 10
        }))
        .await;
    let gw = h.gateway_client(&h.ca, "ward-5c");
    let inventory = serde_json::json!({"devices": [
        {"device_id": "pump-01", "hardware_id": "pump-x1", "firmware_version": "4.2.0"},
        {"device_id": "monitor-01", "hardware_id": "globex-m1", "firmware_version": "1.0.0"},
        "legacy-01",
    ]});
    let (s, a) = h.gateway_post(&gw, "assignments", inventory.clone()).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a[0]["devices"], serde_json::json!(["legacy-01", "pump-01"]));
    let st = h.admin_get(&format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(st["devices_total"], 2, "{st}");

    // The monitor is not in the campaign: a result for it is refused.
    let (s, e) = h.gateway_post(&gw, "results", serde_json::json!({"campaign_id": id, "results": [{"device_id": "monitor-01", "outcome": "success"}]})).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("not_assigned"))
    );

    // Free text from a gateway is bounded: refused by name, nothing stored.
    let (s, e) = h.gateway_post(&gw, "assignments", serde_json::json!({"devices": [{"device_id": "pump-02", "hardware_id": "pump\u{7}x1"}]})).await;
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
    let (_, a) = h.gateway_post(&gw, "assignments", inventory).await;
    assert_eq!(a[0]["devices"], serde_json::json!(["legacy-01", "pump-01"]));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_bytes_sent_are_counted_exactly() {
    let (mut h, image) =
        Harness::with_patterned_acme_release("pump-6.0.0.bin", "6.0.0", 200_000).await;
    let sha = support::sha256_hex(&image);
    let url = h.acme_target_url("pump-6.0.0.bin", &image);
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
