//! schemathesis against a running OTA server over real HTTPS (the ward CA,
//! a gateway client certificate), from the OpenAPI document the server
//! serves at `GET /api/v1/openapi.json`: no 5xx, every answer matches the
//! document (status, content type, schema), and no request changes state
//! without the credential the route demands.
//!
//! The server holds one published release (`acme/pump-2.0.0.bin`) and one
//! campaign for gateway `ward-3a`; the document's examples name them.
//! 1. The lowest credential that reaches the API's writes: a manufacturer
//!    token (it cannot sign for acme's delegation, so no upload passes),
//!    and the certificate of `ward-9z`, a gateway in no campaign: the
//!    admin routes answer 403, and campaigns and releases are unchanged.
//! 2. The admin token with `ward-3a`'s certificate: writes may succeed,
//!    and every change in the server's audit log names the admin or that
//!    gateway.
//!
//! The OTA server has no TOTP (its admins are operators' automation with
//! a token each); the admin API's TOTP runs are in
//! `gateway/tests/admin_openapi_schemathesis.rs`.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{Harness, Opts};
use wardgate_tests::schemathesis::{self, Options, Run};

/// Test cases per operation: every documented answer is reachable, one run
/// stays well under 90 s on a slow 2-core machine.
const MAX_EXAMPLES: u32 = 15;

/// A run that generated fewer cases than this tested next to nothing.
const MIN_TEST_CASES: u64 = 100;

const CHECKS: [&str; 4] = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
];

/// The server with its per-peer limit raised (schemathesis sends hundreds
/// of requests a second from one address), one release and one campaign.
async fn server() -> Harness {
    let mut h = Harness::new(Opts::default()).await;
    let config = std::fs::read_to_string(&h.config_path).unwrap().replace(
        "[limits]\n",
        "[limits]\nrequests_per_peer_per_second = 100000\nrequest_burst_per_peer = 1000000\n",
    );
    std::fs::write(&h.config_path, config).unwrap();
    h.start().await;
    h.publish_acme("pump-2.0.0.bin", "2.0.0", b"pump firmware 2.0.0")
        .await;
    h.create_campaign(serde_json::json!({
        "name": "pump 2.0.0",
        "target": "acme/pump-2.0.0.bin",
        "gateways": ["ward-3a"],
        "waves": ["1", "100%"],
        "failure_threshold_percent": 20.0
    }))
    .await;
    h
}

/// Campaigns and releases as the admin sees them.
async fn snapshot(h: &Harness) -> (Value, Value) {
    (
        h.admin_get("/api/v1/campaigns").await,
        h.admin_get("/api/v1/releases").await,
    )
}

/// Audit rows newer than `after`: (actor, action, outcome).
async fn audit_since(h: &Harness, after: i64) -> Vec<(String, String, String)> {
    let rows = h.admin_get("/api/v1/audit?limit=1000").await;
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["id"].as_i64().unwrap() > after)
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (s("actor"), s("action"), s("outcome"))
        })
        .collect()
}

async fn last_audit_id(h: &Harness) -> i64 {
    h.admin_get("/api/v1/audit?limit=1").await[0]["id"]
        .as_i64()
        .unwrap_or(0)
}

/// `gateway`'s client certificate and key from the ward CA, as files.
fn gateway_identity(h: &Harness, dir: &Path, gateway: &str) -> (PathBuf, PathBuf) {
    let issued = h.ca.issue_gateway(gateway, 30).unwrap();
    let cert = support::write(dir, &format!("{gateway}.pem"), &issued.cert_pem);
    let key = support::write(dir, &format!("{gateway}.key"), &issued.key_pem);
    (cert, key)
}

async fn run(h: &Harness, cli: &Path, token: &str, identity: (PathBuf, PathBuf)) -> Run {
    let options = Options {
        schema_url: format!("{}/api/v1/openapi.json", h.base_url()),
        ca: h.ca_pem.clone(),
        headers: vec![("Authorization".into(), format!("Bearer {token}"))],
        client_cert: Some(identity),
        max_examples: MAX_EXAMPLES,
        checks: CHECKS.iter().map(|c| (*c).to_owned()).collect(),
        extra: ["--seed", "20261202", "--request-retries", "2"]
            .iter()
            .map(|a| (*a).to_owned())
            .collect(),
    };
    let cli = cli.to_path_buf();
    let started = std::time::Instant::now();
    let run = tokio::task::spawn_blocking(move || schemathesis::run(&cli, &options))
        .await
        .unwrap()
        .expect("schemathesis starts");
    eprintln!("{}", run.tail());
    eprintln!(
        "schemathesis: {} test cases over {} operations in {:.1} s",
        run.test_cases(),
        run.operations_tested(),
        started.elapsed().as_secs_f64()
    );
    run
}

fn assert_clean(run: &Run, what: &str) {
    assert!(
        run.success,
        "{what}: schemathesis found problems:\n{}\n{}",
        run.stdout, run.stderr
    );
    assert!(
        run.test_cases() >= MIN_TEST_CASES,
        "{what}: only {} test cases generated:\n{}",
        run.test_cases(),
        run.stdout
    );
}

/// Every documented operation is routed: without credentials it gets an
/// answer other than the router's fallback (`no such endpoint`).
async fn every_documented_route_is_served(h: &Harness, doc: &Value) {
    let client = h.client();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let url = format!(
                "{}{}",
                h.base_url(),
                path.replace("{file}", "timestamp.json")
                    .replace("{path}", "acme/x.bin")
                    .replace("{target}", "acme/x.bin")
                    .replace("{id}", "c1")
            );
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let text = client
                .request(method.clone(), &url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                !text.contains("no such endpoint"),
                "{method} {path} is documented but not routed"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_ota_server_true_to_its_document() {
    let Some(cli) = schemathesis::require() else {
        return;
    };
    let h = server().await;
    let certs = tempfile::tempdir().unwrap();
    let doc: Value = h
        .client()
        .get(format!("{}/api/v1/openapi.json", h.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    every_documented_route_is_served(&h, &doc).await;

    // 1. A manufacturer token and a gateway outside every campaign.
    let before = snapshot(&h).await;
    let mark = last_audit_id(&h).await;
    let outsider = gateway_identity(&h, certs.path(), "ward-9z");
    let run1 = run(&h, &cli, &h.acme_token, outsider).await;
    eprintln!(
        "run 1 (manufacturer token, gateway ward-9z): {} generated test cases",
        run1.test_cases()
    );
    assert_clean(&run1, "manufacturer run");
    assert_eq!(snapshot(&h).await, before, "campaigns or releases changed");
    let rows = audit_since(&h, mark).await;
    let changes: Vec<_> = rows.iter().filter(|r| r.2 != "refused").collect();
    assert!(
        changes.is_empty(),
        "the manufacturer run changed something: {changes:?}"
    );
    assert!(
        rows.iter().any(|r| r.0 == "manufacturer:acme"),
        "the manufacturer was never refused: the run reached no admin route"
    );

    // 2. The admin with the campaign's gateway.
    let mark = last_audit_id(&h).await;
    let member = gateway_identity(&h, certs.path(), "ward-3a");
    let run2 = run(&h, &cli, &h.admin_token, member).await;
    eprintln!(
        "run 2 (admin token, gateway ward-3a): {} generated test cases",
        run2.test_cases()
    );
    assert_clean(&run2, "admin run");
    let rows = audit_since(&h, mark).await;
    let strangers: Vec<_> = rows
        .iter()
        .filter(|r| r.2 != "refused" && r.0 != "admin:ops" && r.0 != "gateway:ward-3a")
        .collect();
    assert!(
        strangers.is_empty(),
        "changes during the admin run name someone else: {strangers:?}"
    );
}
