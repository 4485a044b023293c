//! Device and gateway ids follow wardgate-protocol's one rule (letters of
//! either case, digits, `-` and `_`; case kept): a gateway whose certificate
//! names `Ward-3A` reports `Pump-07` over the real HTTPS API, and the server
//! assigns, records and returns exactly those names, also after a restart.
//! `Pump-07` and `pump-07` are two devices. An id outside the rule is
//! refused, recorded, and the gateway keeps working.

mod support;

use std::time::Duration;

use support::Harness;

/// A ward gateway on the API, authenticated by its client certificate.
struct Ward {
    http: reqwest::Client,
    base: String,
}

impl Ward {
    fn of(h: &Harness, id: &str) -> Self {
        Self {
            http: h.gateway_client(&h.ca, id),
            base: h.base_url(),
        }
    }

    /// POSTs `body` to `/api/v1/gateway/<route>`: (status, JSON reply).
    async fn send(&self, route: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let url = format!("{}/api/v1/gateway/{route}", self.base);
        let reply = self.http.post(url).json(&body).send().await.unwrap();
        (
            reply.status().as_u16(),
            reply.json().await.unwrap_or_default(),
        )
    }

    async fn inventory(&self, devices: &[&str]) -> (u16, serde_json::Value) {
        self.send("assignments", serde_json::json!({ "devices": devices }))
            .await
    }

    async fn successes(&self, campaign: &str, devices: &[&str]) -> (u16, serde_json::Value) {
        let results: Vec<_> = devices
            .iter()
            .map(|d| serde_json::json!({"device_id": d, "outcome": "success"}))
            .collect();
        self.send(
            "results",
            serde_json::json!({"campaign_id": campaign, "results": results}),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_case_device_ids_are_accepted_end_to_end() {
    let mut h = Harness::with_acme_release("pump-5.0.0.bin", "5.0.0", b"fw5").await;
    let id = h
        .create_campaign(serde_json::json!({
            "name": "pump 5.0.0", "target": "acme/pump-5.0.0.bin",
            "gateways": ["Ward-3A"], "waves": ["100%"], "failure_threshold_percent": 50
        }))
        .await;
    let ward = Ward::of(&h, "Ward-3A");

    // Outside the rule: refused with the rule named, and recorded.
    let (s, e) = ward.inventory(&["Pump-07", "Pump/07"]).await;
    assert_eq!(s, 422, "{e}");
    assert_eq!(e["error"]["code"], "malformed_json");
    let msg = e["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("invalid device id \"Pump/07\""), "{msg}");
    let recorded = wardgate_tests::wait::wait_for_async(Duration::from_secs(10), || async {
        let a = h.last_audit().await;
        a["code"] == "malformed_json" && a["actor"] == "gateway:Ward-3A"
    })
    .await;
    assert!(recorded, "refusal not audited: {}", h.last_audit().await);

    // Within the rule: case is kept, and Pump-07 is not pump-07.
    let inventory = ["Pump-07", "pump-07", "Monitor_3"];
    let (s, a) = ward.inventory(&inventory).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a[0]["campaign_id"], id.as_str());
    assert_eq!(
        a[0]["devices"],
        serde_json::json!(["Monitor_3", "Pump-07", "pump-07"]),
        "{a}"
    );
    let st = h.admin_get(&format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(st["gateways"], serde_json::json!(["Ward-3A"]));
    assert_eq!(st["devices_total"], 3);
    assert_eq!(st["per_gateway"]["Ward-3A"]["assigned"], 3);

    let (s, r) = ward.successes(&id, &["Pump-07", "Monitor_3"]).await;
    assert_eq!(s, 200, "{r}");
    // A name differing only in case is another device, never assigned.
    let (s, e) = ward.successes(&id, &["PUMP-07"]).await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["error"]["code"], "not_assigned");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("PUMP-07"),
        "{e}"
    );
    let st = h.admin_get(&format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(st["totals"]["success"], 2, "{st}");
    assert_eq!(st["totals"]["pending"], 1, "{st}");
    let (s, r) = ward.successes(&id, &["pump-07"]).await;
    assert_eq!(s, 200, "{r}");

    // Stored: the same names come back after a restart.
    h.stop().await;
    h.start().await;
    let st = h.admin_get(&format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(st["state"], "completed", "{st}");
    assert_eq!(st["totals"]["success"], 3);
    assert_eq!(st["per_gateway"]["Ward-3A"]["success"], 3);
    let (s, a) = Ward::of(&h, "Ward-3A").inventory(&inventory).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        a,
        serde_json::json!([]),
        "a completed campaign assigns nothing"
    );
    h.stop().await;
}
