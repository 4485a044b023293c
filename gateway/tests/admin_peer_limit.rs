//! The admin API's per-peer request limit over real HTTPS: a flood from
//! 127.0.0.1 is answered `429` with a `Retry-After` that works, before the
//! token check; a second address (127.0.0.2) is served meanwhile; and the
//! refusals write no audit row, only the `rate_limited` count.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use gateway::admin::peer_limit::REASON;
use gateway::admin::{AdminConfig, Role};
use reqwest::StatusCode;
use support::admin::AdminHarness;

const RATE: u32 = 1;
const BURST: u32 = 10;
const FLOOD: usize = 60;

/// A client from `127.0.0.<last>`, trusting the harness's CA.
fn client_from(h: &AdminHarness, last: u8) -> reqwest::Client {
    wardgate_tests::https::client_builder(&h.ca_pem)
        .unwrap()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .build()
        .unwrap()
}

/// The `Retry-After` of a 429, which must be whole seconds, at least 1.
fn retry_after(r: &reqwest::Response) -> u64 {
    let v = r
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .expect("a 429 carries Retry-After");
    let secs: u64 = v.to_str().unwrap().parse().expect("whole seconds");
    assert!(secs >= 1, "Retry-After {secs}");
    secs
}

// control: resilience
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_gets_429_before_the_token_check_while_another_is_served() {
    let h = AdminHarness::start_with(AdminConfig {
        requests_per_peer_per_second: RATE,
        request_burst_per_peer: BURST,
        ..AdminConfig::default()
    })
    .await;
    let (viewer, _) = h.issue("ward-console", Role::Viewer, false);
    let flooder = &h.client; // 127.0.0.1
    let bystander = client_from(&h, 2);
    let url = format!("{}/api/v1/devices", h.base);
    let rows = || h.audit.all().unwrap().len();
    let before = rows();

    // A token-guessing flood: each call served is refused by the guard
    // (401, one `admin.refused` row); each call over the limit is answered
    // 429 before the guard sees it.
    let (mut unauthenticated, mut limited) = (0usize, 0usize);
    let started = Instant::now();
    for i in 0..FLOOD {
        let r = flooder
            .get(&url)
            .bearer_auth(format!("wgt_guess{i}"))
            .send()
            .await
            .unwrap();
        match r.status() {
            StatusCode::UNAUTHORIZED => unauthenticated += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                retry_after(&r);
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
                let message = body["error"]["message"].as_str().unwrap();
                for key in [
                    "admin.requests_per_peer_per_second",
                    "admin.request_burst_per_peer",
                    "retry after",
                ] {
                    assert!(message.contains(key), "{message}");
                }
            }
            other => panic!("unexpected {other}"),
        }
    }
    // The burst was served (less the harness's readiness check), then at
    // most what refilled while the flood ran.
    let refilled = started.elapsed().as_secs_f64() * f64::from(RATE);
    assert!(unauthenticated >= BURST as usize - 1, "{unauthenticated}");
    assert!(
        unauthenticated as f64 <= f64::from(BURST) + refilled.ceil(),
        "{unauthenticated} served in {:?}",
        started.elapsed()
    );
    assert_eq!(unauthenticated + limited, FLOOD);
    assert!(limited > 0);

    // Still flooded: even a valid token is turned away, and the other
    // address is served.
    let still = flooder.get(&url).bearer_auth(&viewer).send().await.unwrap();
    assert_eq!(still.status(), StatusCode::TOO_MANY_REQUESTS);
    limited += 1;
    let wait = retry_after(&still);
    let served = bystander
        .get(&url)
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);

    // The 429s wrote nothing: one audit row per 401, none per 429; they
    // are counted instead.
    assert_eq!(rows() - before, unauthenticated);
    assert_eq!(
        h.audit_rows("admin.refused").len(),
        unauthenticated,
        "every guard refusal is audited, no rate-limit refusal is"
    );
    assert_eq!(h.state.metrics.refusal_count(REASON), limited as u64);
    let metrics = bystander
        .get(format!("{}/metrics", h.base))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "wardgate_admin_refusals_total{{reason=\"rate_limited\"}} {limited}"
        )),
        "{metrics}"
    );

    // After Retry-After the flooder is served again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let again = flooder.get(&url).bearer_auth(&viewer).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limit_serves_a_ward_console_polling_from_one_address() {
    // One console poll is six reads at once, plus the audit walk and the
    // access review now and then (console.js, every 3 s): three consoles
    // behind one address (an SSH tunnel), eight polls each (24 s of
    // polling) sent back to back, are all served.
    let h = AdminHarness::start().await;
    let (admin, _) = h.issue("console", Role::Admin, false);
    let paths = [
        "/api/v1/devices",
        "/api/v1/readings?last=30",
        "/api/v1/status",
        "/api/v1/audit?limit=25",
        "/api/v1/alerts?limit=50",
        "/api/v1/audit/verify",
        "/api/v1/access/review",
    ];
    for _ in 0..3 * 8 {
        let calls = paths.iter().map(|p| {
            h.client
                .get(format!("{}{p}", h.base))
                .bearer_auth(&admin)
                .send()
        });
        for r in futures::future::join_all(calls).await {
            let r = r.unwrap();
            assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        }
    }
    assert_eq!(h.state.metrics.refusal_count(REASON), 0);
}
