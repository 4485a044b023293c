//! Campaigns over the API: an admin creates a campaign with waves, gateways
//! authenticated by ward-CA client certificates fetch assignments and post
//! per-device results, the status aggregates them, a failure over the
//! threshold halts, and a restart loses nothing.

mod support;

use support::Harness;

fn devices(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:02}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waves_advance_with_results_and_survive_a_restart() {
    let mut h = Harness::with_acme_release("pump-3.0.0.bin", "3.0.0", b"fw3").await;
    let id = h
        .create_campaign(serde_json::json!({
            "name": "pump 3.0.0 rollout",
            "target": "acme/pump-3.0.0.bin",
            "gateways": ["ward-3a", "ward-4b"],
            "waves": ["1", "10%", "50%", "100%"],
            "failure_threshold_percent": 20.0
        }))
        .await;

    let gw_a = h.gateway_client(&h.ca, "ward-3a");
    let gw_b = h.gateway_client(&h.ca, "ward-4b");
    let inv_a = devices("pump-a", 10);
    let inv_b = devices("pump-b", 10);
    // Both gateways report their inventory first.
    for (c, inv) in [(&gw_a, &inv_a), (&gw_b, &inv_b)] {
        let (s, _) = h
            .gateway_post(c, "assignments", serde_json::json!({"devices": inv}))
            .await;
        assert_eq!(s, 200);
    }
    // Canary: exactly one device across both wards.
    let mut canary = 0;
    for (c, inv) in [(&gw_a, &inv_a), (&gw_b, &inv_b)] {
        let (_, a) = h
            .gateway_post(c, "assignments", serde_json::json!({"devices": inv}))
            .await;
        assert_eq!(a[0]["target"], "acme/pump-3.0.0.bin");
        assert_eq!(a[0]["sha256"], support::sha256_hex(b"fw3"));
        canary += a[0]["devices"].as_array().unwrap().len();
    }
    assert_eq!(canary, 1);

    // A gateway may not report a device it was not assigned.
    let (s, e) = h.gateway_post(&gw_a, "results", serde_json::json!({"campaign_id": id, "results": [{"device_id": "pump-zz", "outcome": "success"}]})).await;
    assert_eq!(s, 409);
    assert_eq!(e["error"]["code"], "not_assigned");

    // Everyone succeeds, wave after wave; restart the server half-way.
    for round in 0..6 {
        if round == 2 {
            let before: serde_json::Value = h.admin_get(&format!("/api/v1/campaigns/{id}")).await;
            h.stop().await;
            h.start().await;
            let after: serde_json::Value = h.admin_get(&format!("/api/v1/campaigns/{id}")).await;
            assert_eq!(
                before["totals"], after["totals"],
                "restart lost campaign state"
            );
            assert_eq!(before["current_wave"], after["current_wave"]);
        }
        let gw_a = h.gateway_client(&h.ca, "ward-3a");
        let gw_b = h.gateway_client(&h.ca, "ward-4b");
        for (c, inv) in [(&gw_a, &inv_a), (&gw_b, &inv_b)] {
            let (_, a) = h
                .gateway_post(c, "assignments", serde_json::json!({"devices": inv}))
                .await;
            let Some(first) = a.as_array().unwrap().first() else {
                continue;
            };
            let results: Vec<_> = first["devices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| serde_json::json!({"device_id": d, "outcome": "success"}))
                .collect();
            if results.is_empty() {
                continue;
            }
            let (s, st) = h
                .gateway_post(
                    c,
                    "results",
                    serde_json::json!({"campaign_id": id, "results": results}),
                )
                .await;
            assert_eq!(s, 200, "{st}");
        }
    }
    let st = h.admin_get(&format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(st["state"], "completed", "{st}");
    assert_eq!(st["totals"]["success"], 20);
    assert_eq!(st["per_wave"][0]["assigned"], 1);
    assert_eq!(st["per_gateway"]["ward-3a"]["success"], 10);
    // Counters restart with the process; the results after the restart count.
    assert!(
        h.metric("wardgate_ota_gateway_results_total{code=\"success\"}")
            .await
            >= 1.0
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_canary_halts_the_campaign() {
    let mut h = Harness::with_acme_release("pump-4.0.0.bin", "4.0.0", b"fw4").await;
    // Unknown release and bad waves are refused with the field named.
    let (s, e) = h.admin_post("/api/v1/campaigns", serde_json::json!({
        "name": "x", "target": "acme/nope-1.0.0.bin", "gateways": ["ward-3a"], "waves": ["100%"], "failure_threshold_percent": 5
    })).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("invalid_campaign"))
    );
    let (s, e) = h.admin_post("/api/v1/campaigns", serde_json::json!({
        "name": "x", "target": "acme/pump-4.0.0.bin", "gateways": ["ward-3a"], "waves": ["10%"], "failure_threshold_percent": 5
    })).await;
    assert_eq!(s, 400);
    assert!(e["error"]["message"].as_str().unwrap().contains("waves"));

    let (_, created) = h
        .admin_post(
            "/api/v1/campaigns",
            serde_json::json!({
                "name": "pump 4", "target": "acme/pump-4.0.0.bin", "gateways": ["ward-3a"],
                "waves": ["1", "100%"], "failure_threshold_percent": 10
            }),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let gw = h.gateway_client(&h.ca, "ward-3a");
    let inv = devices("pump", 8);
    let (_, a) = h
        .gateway_post(&gw, "assignments", serde_json::json!({"devices": inv}))
        .await;
    let canary = a[0]["devices"][0].clone();
    let (s, st) = h.gateway_post(&gw, "results", serde_json::json!({
        "campaign_id": id, "results": [{"device_id": canary, "outcome": "failure", "detail": "boot loop, rolled back"}]
    })).await;
    assert_eq!(s, 200);
    assert_eq!(st["state"], "halted");
    assert!(st["halt_reason"].as_str().unwrap().contains("threshold"));
    // A halted campaign hands out nothing, and a gateway outside it sees nothing.
    let (_, a) = h
        .gateway_post(&gw, "assignments", serde_json::json!({"devices": inv}))
        .await;
    assert!(a.as_array().unwrap().is_empty());
    let other = h.gateway_client(&h.ca, "ward-9z");
    let (s, a) = h
        .gateway_post(
            &other,
            "assignments",
            serde_json::json!({"devices": ["m-1"]}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(a.as_array().unwrap().is_empty());
    // Resume is only for paused campaigns.
    let (s, e) = h
        .admin_post(
            &format!("/api/v1/campaigns/{id}/resume"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("campaign_state"))
    );
    let audit = h.admin_get("/api/v1/audit?limit=20").await;
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["action"] == "gateway.results" && r["actor"] == "gateway:ward-3a"));
    h.stop().await;
}
