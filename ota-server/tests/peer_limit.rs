//! The per-peer request limit over real HTTPS: a flood from 127.0.0.1 is
//! answered `429` with a `Retry-After` that works, a second address
//! (127.0.0.2) is served meanwhile, and the refusals cost no audit row,
//! only the `rate_limited` count.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ota_server::config::Config;
use reqwest::StatusCode;
use support::{Harness, Opts};
use tokio_util::sync::CancellationToken;

const RATE: u32 = 1;
const BURST: u32 = 10;
const FLOOD: usize = 60;

/// A client from `127.0.0.<last>`, trusting the test CA.
fn client_from(h: &Harness, last: u8) -> reqwest::Client {
    wardgate_tests::https::client_builder(&h.ca.cert_pem)
        .unwrap()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .build()
        .unwrap()
}

/// Rows of the server's audit log, read by the admin from `admin`.
async fn audit_rows(h: &Harness, admin: &reqwest::Client) -> usize {
    let r = admin
        .get(format!("{}/api/v1/audit?limit=1000", h.base_url()))
        .bearer_auth(&h.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rows: Vec<serde_json::Value> = r.json().await.unwrap();
    assert!(rows.len() < 1000, "the page holds every row");
    rows.len()
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
async fn a_flooding_peer_gets_429_with_retry_after_while_another_is_served() {
    let mut h = Harness::new(Opts::default()).await;
    // The harness's config with a small limit (and no environment).
    let mut cfg = Config::load(Some(&h.config_path), Vec::new()).unwrap();
    cfg.limits.requests_per_peer_per_second = RATE;
    cfg.limits.request_burst_per_peer = BURST;
    let server = ota_server::server::start(cfg.validate().unwrap(), CancellationToken::new())
        .await
        .unwrap();
    h.addr = Some(server.local_addr());
    let flooder = h.client(); // 127.0.0.1
    let bystander = client_from(&h, 2);
    let admin = client_from(&h, 3);
    let before = audit_rows(&h, &admin).await;

    // A flood of unauthenticated calls: each one served is refused (401)
    // and audited; each one over the limit is answered 429 before that.
    let url = format!("{}/api/v1/releases", h.base_url());
    let (mut unauthenticated, mut limited) = (0usize, 0usize);
    let started = Instant::now();
    for _ in 0..FLOOD {
        let r = flooder.get(&url).send().await.unwrap();
        match r.status() {
            StatusCode::UNAUTHORIZED => unauthenticated += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                retry_after(&r);
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
                let message = body["error"]["message"].as_str().unwrap();
                for key in [
                    "limits.requests_per_peer_per_second",
                    "limits.request_burst_per_peer",
                    "retry after",
                ] {
                    assert!(message.contains(key), "{message}");
                }
            }
            other => panic!("unexpected {other}"),
        }
    }
    // The burst was served, then at most what refilled while the flood ran.
    let refilled = started.elapsed().as_secs_f64() * f64::from(RATE);
    assert!(unauthenticated >= BURST as usize, "{unauthenticated}");
    assert!(
        unauthenticated as f64 <= f64::from(BURST) + refilled.ceil(),
        "{unauthenticated} served in {:?}",
        started.elapsed()
    );
    assert_eq!(unauthenticated + limited, FLOOD);
    assert!(limited > 0);

    // During the flood the other address is served.
    let still = flooder.get(&url).send().await.unwrap();
    assert_eq!(still.status(), StatusCode::TOO_MANY_REQUESTS);
    limited += 1;
    let last_retry = retry_after(&still);
    let served = bystander
        .get(&url)
        .bearer_auth(&h.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    let health = bystander
        .get(format!("{}/healthz", h.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    // The 429s wrote nothing: one audit row per 401, none per 429.
    assert_eq!(audit_rows(&h, &admin).await - before, unauthenticated);
    let metrics = admin
        .get(format!("{}/metrics", h.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = wardgate_tests::ota_ward::metric(
        &metrics,
        "wardgate_ota_refusals_total{code=\"rate_limited\"}",
    );
    assert_eq!(counted, limited as f64, "{metrics}");

    // After Retry-After the flooder is served again.
    tokio::time::sleep(Duration::from_secs(last_retry)).await;
    let again = flooder
        .get(&url)
        .bearer_auth(&h.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limit_leaves_a_gateway_and_an_admin_their_usual_traffic() {
    // Defaults: a gateway's sync rounds back to back (assignments and
    // results) and an operator's reads, all from one address, are served.
    let h = Harness::started(Opts::default()).await;
    let gw = h.gateway_client(&h.ca, "ward-3a");
    let inventory = serde_json::json!({"devices": []});
    for _ in 0..100 {
        let (status, body) = h.gateway_post(&gw, "assignments", inventory.clone()).await;
        assert_eq!(status, 200, "{body}");
        let r = h.get_as("/api/v1/campaigns", &h.admin_token).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(
        h.metric("wardgate_ota_refusals_total{code=\"rate_limited\"}")
            .await,
        0.0
    );
}
