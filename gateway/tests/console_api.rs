//! The console's HTTP side without a browser: the page and its files are
//! served without a token under strict security headers, and the two read
//! routes it adds (`/api/v1/readings`, `/api/v1/session`) sit behind the
//! same guard as the rest of the admin API, with readings that come from
//! real devices through the edge.

mod support;

use std::time::Duration;

use gateway::admin::{Role, TokenStore};
use gateway::console::assets::SECURITY_HEADERS;
use reqwest::StatusCode;
use serde_json::Value;
use support::admin::{never_expiring, token_store};
use wardgate_tests::wait::wait_for_async;

struct Ward {
    gw: support::TestGateway,
    http: reqwest::Client,
    base: String,
    store: TokenStore,
}

impl Ward {
    async fn start() -> Self {
        let gw = support::TestGateway::start().await;
        let admin = gw.handle().admin_addr.expect("admin API on by default");
        let http = wardgate_tests::https::client(&gw.pki.ca.cert_pem).unwrap();
        let store = token_store(&gw.handle().context.db_path);
        Self {
            gw,
            http,
            base: format!("https://localhost:{}", admin.port()),
            store,
        }
    }

    /// The bearer secret of a new token.
    fn token(&self, name: &str, role: Role, totp: bool) -> String {
        never_expiring(&self.store, name, role, totp)
            .token
            .expose()
            .to_owned()
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_without_a_token_under_strict_headers() {
    let w = Ward::start().await;
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/wording.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let r = w
            .http
            .get(format!("{}{path}", w.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = r.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(h[name], value, "{path}: {name}");
        }
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"));
        assert_eq!(h["cache-control"], "no-store");
    }
    // Only the embedded files exist: nothing is read from disk by name.
    let (status, body) = w.get("/console/..%2Fconsole.js", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = w.get("/console/secrets.txt", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/console"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_and_sessions_come_from_the_edge_behind_the_guard() {
    let w = Ward::start().await;
    let viewer = w.token("ward-screen", Role::Viewer, false);

    // Refused without a token, and the refusal is audited like any other.
    let (status, _) = w.get("/api/v1/readings", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let refused = w.gw.audit("read_devices", Some("admin.refused"));
    assert_eq!(refused.len(), 1);

    let mut d = w.gw.device("mon-01").await;
    let mut g = device_sim::VitalsGenerator::new(3);
    let mut last = 0;
    for _ in 0..4 {
        last = d.publish_telemetry(g.next_readings()).await.unwrap();
        d.wait_puback(Duration::from_secs(10)).await.unwrap();
    }
    let (status, body) = w.get("/api/v1/readings?last=3", Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mon = &body["devices"]["mon-01"];
    assert_eq!(mon["sessions"], 1, "{body}");
    let samples = mon["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 3, "the newest three of four");
    assert_eq!(samples[2]["seq"], last);
    assert_eq!(samples[2]["values"][0][0], "heart_rate");
    assert!(mon["last_reading_at"].is_string());
    assert_eq!(body["samples_per_device"], 60);

    for bad in ["0", "61"] {
        let (status, body) = w
            .get(&format!("/api/v1/readings?last={bad}"), Some(&viewer))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"]["message"].as_str().unwrap().contains("60"));
    }

    // The session ends: the console shows it offline, readings kept.
    d.disconnect().await.unwrap();
    let offline = wait_for_async(Duration::from_secs(10), || async {
        let (_, body) = w.get("/api/v1/readings", Some(&viewer)).await;
        body["devices"]["mon-01"]["sessions"] == 0
    })
    .await;
    assert!(offline, "the ended session is no longer counted");

    // What each role may do, from the policy table.
    let operator = w.token("charge-nurse", Role::Operator, true);
    let admin = w.token("biomed-admin", Role::Admin, false);
    let (_, v) = w.get("/api/v1/session", Some(&viewer)).await;
    assert_eq!(v["token"]["role"], "viewer");
    assert_eq!(v["token"]["name"], "ward-screen");
    assert!(v["token"].get("secret").is_none());
    // What each token's session answer says: (section, action, expected).
    type Checks<'a> = &'a [(&'a str, &'a str, bool)];
    let policy: [(&str, Checks<'_>); 3] = [
        (
            &viewer,
            &[("may", "quarantine", false), ("may", "revoke", false)],
        ),
        (
            &operator,
            &[
                ("may", "quarantine", true),
                ("may", "reactivate", true),
                ("may", "revoke", false),
                ("may", "review_access", false),
                ("needs_totp", "quarantine", true),
            ],
        ),
        (
            &admin,
            &[
                ("may", "revoke", true),
                ("may", "review_access", true),
                ("needs_totp", "revoke", false),
            ],
        ),
    ];
    for (token, expected) in policy {
        let (_, session) = w.get("/api/v1/session", Some(token)).await;
        for &(section, action, value) in expected {
            assert_eq!(
                session[section][action], value,
                "{section}.{action} of {}",
                session["token"]["name"]
            );
        }
    }
    let (status, _) = w.get("/api/v1/session", Some("wgt_nope")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
