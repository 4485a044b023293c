//! The real `gateway` binary: tokens and a break-glass token issued with
//! `gateway access`, used against `gateway run`'s admin API over HTTPS, and
//! revoked from another process while the gateway runs.

mod support;

use std::time::Duration;

use support::cli::{audit_export, gw, init_pki, ok, run, write_config};
use wardgate_tests::port::free_port;
use wardgate_tests::wait::wait_for_async;

fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no `{name}` in\n{out}"))
        .trim()
        .to_owned()
}

/// `gateway access token create` of `name` with `role` (and `extra`
/// arguments) against the configuration `c`: the command's output.
fn create_token(c: &str, name: &str, role: &str, extra: &[&str]) -> String {
    let args = [
        "access", "--config", c, "token", "create", "--name", name, "--role", role,
    ];
    ok(&[&args[..], extra].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_cli_tokens_work_against_the_running_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    init_pki(&pki);
    let admin_port = free_port().unwrap();
    let config = write_config(
        dir.path(),
        &format!("[admin]\nbind = \"127.0.0.1:{admin_port}\"\nbreak_glass_max_minutes = 60\n"),
    );
    let c = config.to_str().unwrap();

    let out = create_token(c, "ops.admin", "admin", &[]);
    let admin = field(&out, "secret:");
    let out = create_token(c, "dashboard", "viewer", &["--expires-in", "1d"]);
    let viewer = field(&out, "secret:");
    let viewer_id = field(&out, "token id:");
    let out = create_token(c, "charge.nurse", "operator", &["--totp"]);
    let operator = field(&out, "secret:");
    let totp_b32 = field(&out, "totp key:");
    // Break-glass above the configured maximum is refused, naming the setting.
    let out = gw(&["access", "--config", c, "break-glass", "--minutes", "90"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("break_glass_max_minutes"));
    let out = ok(&["access", "--config", c, "break-glass", "--minutes", "15"]);
    assert!(out.contains("BREAK-GLASS"));
    let glass = field(&out, "secret:");
    // Secrets never show up in listings.
    let list = ok(&["access", "--config", c, "token", "list"]);
    for s in [&admin, &viewer, &operator, &glass] {
        assert!(!list.contains(&s[21..]));
    }

    let (child, line) = run(c);
    assert!(line.contains("listening"), "{line}");

    let ca = std::fs::read_to_string(pki.join("ca.pem")).unwrap();
    let http = wardgate_tests::https::client(&ca).unwrap();
    let base = format!("https://127.0.0.1:{admin_port}");
    // The admin server uses the edge's server certificate (admin.tls_* unset).
    let ready = wait_for_async(Duration::from_secs(30), || async {
        let reply = http.get(format!("{base}/healthz")).send().await;
        reply.is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(ready, "admin API did not come up on {base}");

    let status_as = |token: &str| {
        http.get(format!("{base}/api/v1/status"))
            .bearer_auth(token)
            .send()
    };
    let status = status_as(&admin).await.unwrap();
    assert_eq!(status.status(), reqwest::StatusCode::OK);
    let device = serde_json::json!({
        "id": "vent-07", "model": "V-9", "hardware_id": "hw-v9", "manufacturer": "acme", "firmware_version": "2.1.0"
    });
    let enroll_as = |token: &str| {
        http.post(format!("{base}/api/v1/devices"))
            .bearer_auth(token)
            .json(&device)
            .send()
    };
    let r = enroll_as(&viewer).await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    let r = enroll_as(&glass).await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    assert!(ok(&["device", "--config", c, "list"]).contains("vent-07"));

    // The CLI's TOTP secret (sealed under the key file in the data dir) is
    // the one the running gateway checks.
    let raw = totp_rs::Secret::Encoded(totp_b32).to_bytes().unwrap();
    let secret = gateway::admin::totp::TotpSecret::from_bytes(raw).unwrap();
    let code = secret.code_at(u64::try_from(chrono::Utc::now().timestamp()).unwrap());
    let url = format!("{base}/api/v1/devices/vent-07/quarantine");
    let r = http.post(&url).bearer_auth(&operator).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED, "no code");
    let r = http
        .post(&url)
        .bearer_auth(&operator)
        .header("X-Wardgate-TOTP", code)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);

    // Revoked from another process while the gateway runs: refused at once.
    ok(&["access", "--config", c, "token", "revoke", &viewer_id]);
    let r = status_as(&viewer).await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");

    // The review shows the break-glass token; nothing is stale yet.
    let review = ok(&["access", "--config", c, "review", "--fail-on-findings"]);
    assert!(review.contains("BREAK-GLASS"), "{review}");
    assert!(review.contains("revoked"), "{review}");
    drop(child);

    let rows = audit_export(c);
    let has = |action: &str| rows.iter().filter(|r| r["action"] == action).count();
    assert_eq!(has("admin.token.create"), 3);
    assert_eq!(has("admin.break_glass.create"), 1);
    assert_eq!(has("admin.break_glass.use"), 1);
    assert_eq!(has("admin.token.revoke"), 1);
    assert_eq!(
        has("admin.refused"),
        3,
        "viewer enroll (403), operator without TOTP code (401), revoked viewer (401)"
    );
    assert_eq!(has("registry.quarantine"), 1);
    assert!(rows.iter().any(|r| r["action"] == "registry.enroll"
        && r["subject"] == "vent-07"
        && r["actor"].as_str().unwrap().starts_with("admin:")));
    assert!(gw(&["audit", "--config", c, "verify"]).status.success());
}
