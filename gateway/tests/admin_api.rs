//! Admin API over real HTTPS on 127.0.0.1: TOTP on mutating calls, least
//! privilege per role, break-glass, limits and JSON errors. Every refusal
//! test checks that the peer was refused, that the reason was recorded (audit
//! row and metric) and that nothing changed while others kept working.

mod support;

use std::sync::Arc;
use support::admin::{AdminHarness, NowSecs, Reply};

use chrono::Duration;
use gateway::admin::access::issue_break_glass;
use gateway::admin::{AdminConfig, Role};
use gateway::registry::DeviceState;
use reqwest::{Method, StatusCode};
use serde_json::json;

fn state_of(h: &AdminHarness, id: &str) -> DeviceState {
    let id = wardgate_protocol::DeviceId::parse(id).unwrap();
    h.registry.get(&id).unwrap().unwrap().state
}

/// `token` POSTs `action` (quarantine, reactivate) for pump-01 with the
/// TOTP `code`.
async fn on_pump_01(h: &AdminHarness, action: &str, token: &str, code: &str) -> Reply {
    h.post(
        &format!("/api/v1/devices/pump-01/{action}"),
        Some(token),
        Some(code),
        None,
    )
    .await
}

/// A six-digit code that matches none of the codes valid around now.
fn wrong_code(h: &AdminHarness, secret: &gateway::admin::totp::TotpSecret) -> String {
    let now = u64::try_from(h.clock.now_secs()).unwrap();
    let valid: Vec<String> = (0..5).map(|k| secret.code_at(now + k * 30 - 60)).collect();
    (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .unwrap()
}

// control: authentication
#[tokio::test]
async fn totp_bound_token_needs_a_fresh_right_code_for_mutations() {
    let h = AdminHarness::start().await;
    h.enroll("pump-01");
    let (op, secret) = h.issue("nurse-lead", Role::Operator, true);
    let secret = secret.unwrap();
    let (viewer, _) = h.issue("dashboard", Role::Viewer, false);

    // No code: refused, audited, counted, nothing changed.
    let r = h
        .post("/api/v1/devices/pump-01/quarantine", Some(&op), None, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(r.code(), "totp_required");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("X-Wardgate-TOTP".to_ascii_lowercase().as_str()));
    assert_eq!(state_of(&h, "pump-01"), DeviceState::Active);
    let refused = h.audit_rows("admin.refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].detail_json()["reason"], "totp_missing");
    assert_eq!(refused[0].subject, "quarantine_device");
    assert!(refused[0].actor.starts_with("admin:"));
    assert_eq!(h.state.metrics.refusal_count("totp_missing"), 1);

    // Wrong code: refused and audited the same way.
    let wrong = wrong_code(&h, &secret);
    let r = on_pump_01(&h, "quarantine", &op, &wrong).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "totp_invalid")
    );
    assert_eq!(state_of(&h, "pump-01"), DeviceState::Active);
    let refused = h.audit_rows("admin.refused");
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[1].detail_json()["reason"], "totp_invalid");
    // Malformed code too.
    let r = on_pump_01(&h, "quarantine", &op, "12345x").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "totp_invalid")
    );

    // Meanwhile a viewer still reads, and reads need no code from the operator.
    assert_eq!(
        h.get("/api/v1/devices", Some(&viewer)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.get("/api/v1/devices/pump-01", Some(&op)).await.status,
        StatusCode::OK
    );

    // Right code: the mutation happens, audited by the registry with the token as actor.
    let code = h.code(&secret);
    let r = h
        .post(
            "/api/v1/devices/pump-01/quarantine",
            Some(&op),
            Some(&code),
            Some(json!({"reason": "odd traffic"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["changed"], true);
    assert_eq!(r.body["device"]["state"], "quarantined");
    assert_eq!(state_of(&h, "pump-01"), DeviceState::Quarantined);
    let q = h.audit_rows("registry.quarantine");
    assert_eq!(q.len(), 1);
    assert!(q[0].actor.starts_with("admin:"));
    assert_eq!(q[0].detail_json()["reason"], "odd traffic");

    // The same code again, within its step: refused as reused, nothing changes.
    let r = on_pump_01(&h, "reactivate", &op, &code).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "totp_reused"),
        "{}",
        r.text
    );
    assert_eq!(state_of(&h, "pump-01"), DeviceState::Quarantined);
    assert_eq!(
        h.audit_rows("admin.refused").last().unwrap().detail_json()["reason"],
        "totp_reused"
    );
    assert_eq!(h.state.metrics.refusal_count("totp_reused"), 1);

    // The next step's code works.
    h.clock.advance(Duration::seconds(30));
    let next = h.code(&secret);
    let r = on_pump_01(&h, "reactivate", &op, &next).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(state_of(&h, "pump-01"), DeviceState::Active);

    // Guessing is bounded: five wrong codes in a row lock the token's
    // mutating calls, even with the right code, while reads and others work.
    h.clock.advance(Duration::seconds(30));
    let wrong = wrong_code(&h, &secret);
    for _ in 0..5 {
        let r = on_pump_01(&h, "quarantine", &op, &wrong).await;
        assert_eq!(r.code(), "totp_invalid");
    }
    let r = on_pump_01(&h, "quarantine", &op, &h.code(&secret)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "totp_locked"),
        "{}",
        r.text
    );
    assert_eq!(state_of(&h, "pump-01"), DeviceState::Active);
    assert_eq!(h.state.metrics.refusal_count("totp_locked"), 1);
    assert_eq!(
        h.get("/api/v1/devices", Some(&op)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.get("/api/v1/devices", Some(&viewer)).await.status,
        StatusCode::OK
    );
    assert!(h.audit.verify().unwrap().is_intact());
}

/// (method, path, body) of one call per action that changes or reveals
/// something beyond a viewer's reach.
fn calls() -> Vec<(&'static str, Method, String, Option<serde_json::Value>)> {
    vec![
        (
            "quarantine",
            Method::POST,
            "/api/v1/devices/pump-01/quarantine".into(),
            None,
        ),
        (
            "reactivate",
            Method::POST,
            "/api/v1/devices/pump-02/reactivate".into(),
            None,
        ),
        (
            "enroll",
            Method::POST,
            "/api/v1/devices".into(),
            Some(
                json!({"id": "pump-09", "model": "M", "hardware_id": "hw", "manufacturer": "acme", "firmware_version": "1.0.0"}),
            ),
        ),
        (
            "revoke",
            Method::POST,
            "/api/v1/devices/pump-01/revoke".into(),
            None,
        ),
        ("list_tokens", Method::GET, "/api/v1/tokens".into(), None),
        (
            "review_access",
            Method::GET,
            "/api/v1/access/review".into(),
            None,
        ),
        (
            "create_token",
            Method::POST,
            "/api/v1/tokens".into(),
            Some(json!({"name": "x", "role": "admin"})),
        ),
        (
            "revoke_token",
            Method::DELETE,
            "/api/v1/tokens/{admin_id}".into(),
            None,
        ),
    ]
}

fn allowed(role: Role, call: &str) -> bool {
    match role {
        Role::Viewer => false,
        Role::Operator => matches!(call, "quarantine" | "reactivate"),
        Role::Admin => true,
    }
}

// control: authorization
#[tokio::test]
async fn each_role_is_refused_what_it_may_not_do_and_nothing_changes() {
    let h = AdminHarness::start().await;
    h.enroll("pump-01");
    let pump2 = h.enroll("pump-02");
    h.registry
        .set_state(&pump2, DeviceState::Quarantined, "test", "setup")
        .unwrap();
    let (viewer, _) = h.issue("viewer", Role::Viewer, false);
    let (operator, _) = h.issue("operator", Role::Operator, false);
    let (admin, _) = h.issue("admin", Role::Admin, false);
    let admin_id = admin[4..20].to_owned();

    let mut refusals = 0;
    for (role, token) in [(Role::Viewer, &viewer), (Role::Operator, &operator)] {
        for (name, method, path, body) in calls() {
            if allowed(role, name) {
                continue;
            }
            let path = path.replace("{admin_id}", &admin_id);
            let devices_before = h.registry.list().unwrap();
            let tokens_before = h.tokens.list().unwrap();
            let r = h
                .call(method.clone(), &path, Some(token), None, body.clone())
                .await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{role} {name}: {}", r.text);
            assert_eq!(r.code(), "forbidden");
            assert!(
                r.body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("admin"),
                "{}",
                r.text
            );
            // Nothing changed: devices, tokens (incl. last use) are as before.
            assert_eq!(h.registry.list().unwrap(), devices_before, "{role} {name}");
            assert_eq!(h.tokens.list().unwrap(), tokens_before, "{role} {name}");
            refusals += 1;
            let rows = h.audit_rows("admin.refused");
            assert_eq!(rows.len(), refusals);
            let last = rows.last().unwrap();
            assert_eq!(last.detail_json()["reason"], "insufficient_role");
            assert_eq!(last.detail_json()["role"], role.as_str());
        }
    }
    assert_eq!(
        h.state.metrics.refusal_count("insufficient_role"),
        refusals as u64
    );

    // Wrong, unknown, malformed, missing tokens: 401, audited, nothing changed.
    let unknown = format!("wgt_0123456789abcdef_{}", "A".repeat(43));
    let forged = format!("{}{}", &admin[..21], "B".repeat(43));
    let devices_before = h.registry.list().unwrap();
    for (token, reason) in [
        (Some(unknown.as_str()), "unknown_token"),
        (Some(forged.as_str()), "wrong_secret"),
        (Some("not-a-token"), "malformed_token"),
        (None, "missing_token"),
    ] {
        let r = h
            .post("/api/v1/devices/pump-01/revoke", token, None, None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{reason}");
        assert_eq!(r.code(), "unauthenticated");
        let last = h.audit_rows("admin.refused").pop().unwrap();
        assert_eq!(last.detail_json()["reason"], reason);
        assert!(last.actor.starts_with("peer:127.0.0.1:"), "{}", last.actor);
        let claimed = last.detail_json()["claimed_token_id"].clone();
        match reason {
            "unknown_token" => assert_eq!(claimed, "0123456789abcdef"),
            "wrong_secret" => assert_eq!(claimed, admin_id.as_str()),
            _ => assert!(claimed.is_null()),
        }
        // The secret itself is never written to the audit log.
        if let Some(t) = token {
            assert!(!last.detail.contains(&t[t.len().saturating_sub(20)..]));
        }
        assert_eq!(h.state.metrics.refusal_count(reason), 1);
    }
    assert_eq!(h.registry.list().unwrap(), devices_before);

    // Everyone else kept working: each role does what it may.
    assert_eq!(
        h.get("/api/v1/status", Some(&viewer)).await.status,
        StatusCode::OK
    );
    let r = h
        .post(
            "/api/v1/devices/pump-01/quarantine",
            Some(&operator),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for (name, method, path, body) in calls() {
        if name == "revoke_token" {
            continue;
        }
        let r = h.call(method, &path, Some(&admin), None, body).await;
        assert!(r.status.is_success(), "admin {name}: {}", r.text);
    }
    assert_eq!(state_of(&h, "pump-01"), DeviceState::Revoked);
    assert_eq!(state_of(&h, "pump-09"), DeviceState::Active);
    assert!(h.audit.verify().unwrap().is_intact());
}

#[tokio::test]
async fn break_glass_works_in_its_window_is_loud_and_then_refused() {
    let h = AdminHarness::start().await;
    h.enroll("vent-01");
    h.enroll("vent-02");
    let issued = issue_break_glass(&h.tokens, &h.audit, 30, 240, "cli:oncall").unwrap();
    let bg = issued.token.expose().to_owned();
    let created = h.audit_rows("admin.break_glass.create");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].actor, "cli:oncall");
    assert_eq!(created[0].detail_json()["minutes"], 30);

    // Within the window: admin powers, no TOTP, every use audited.
    h.clock.advance(Duration::minutes(29));
    let r = h
        .post("/api/v1/devices/vent-01/revoke", Some(&bg), None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        h.get("/api/v1/audit?limit=5", Some(&bg)).await.status,
        StatusCode::OK
    );
    let uses = h.audit_rows("admin.break_glass.use");
    assert_eq!(uses.len(), 2);
    assert_eq!(uses[0].detail_json()["action"], "revoke_device");
    assert_eq!(uses[1].detail_json()["action"], "read_audit");
    assert_eq!(state_of(&h, "vent-01"), DeviceState::Revoked);

    // After the window: refused, audited, nothing changes.
    h.clock.advance(Duration::minutes(1));
    let r = h
        .post("/api/v1/devices/vent-02/revoke", Some(&bg), None, None)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    assert_eq!(state_of(&h, "vent-02"), DeviceState::Active);
    assert_eq!(
        h.audit_rows("admin.refused").last().unwrap().detail_json()["reason"],
        "expired_token"
    );
    assert_eq!(h.audit_rows("admin.break_glass.use").len(), 2);

    // Out-of-policy windows are refused at issue.
    assert!(issue_break_glass(&h.tokens, &h.audit, 0, 240, "cli:x").is_err());
    assert!(issue_break_glass(&h.tokens, &h.audit, 241, 240, "cli:x").is_err());
    assert_eq!(h.audit_rows("admin.break_glass.create").len(), 1);
}

/// The TOTP-bound `admin` creates the token `body` describes, with a fresh
/// code from `secret`.
async fn create_token(
    h: &AdminHarness,
    admin: &str,
    secret: &gateway::admin::totp::TotpSecret,
    body: serde_json::Value,
) -> Reply {
    h.post(
        "/api/v1/tokens",
        Some(admin),
        Some(&h.code(secret)),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn tokens_are_managed_through_the_api_with_audit() {
    let h = AdminHarness::start().await;
    let (admin, secret) = h.issue("root-admin", Role::Admin, true);
    let secret = secret.unwrap();
    let r = create_token(
        &h,
        &admin,
        &secret,
        json!({"name": "ops.bob", "role": "operator", "expires_in": "30d", "totp": true}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let new_secret = r.body["secret"].as_str().unwrap().to_owned();
    let new_id = r.body["token"]["id"].as_str().unwrap().to_owned();
    assert!(r.body["totp"]["otpauth_url"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
    assert_eq!(r.body["token"]["role"], "operator");
    // The listing never carries secrets.
    h.clock.advance(Duration::seconds(30));
    let list = h
        .call(Method::GET, "/api/v1/tokens", Some(&admin), None, None)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(!list.text.contains(&new_secret[21..]));
    assert_eq!(list.body.as_array().unwrap().len(), 2);
    // The new token works for reads.
    assert_eq!(
        h.get("/api/v1/status", Some(&new_secret)).await.status,
        StatusCode::OK
    );
    // Revoke it; it stops working at once.
    let r = h
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{new_id}"),
            Some(&admin),
            Some(&h.code(&secret)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h.get("/api/v1/status", Some(&new_secret)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.audit_rows("admin.refused").last().unwrap().detail_json()["reason"],
        "revoked_token"
    );
    assert_eq!(h.audit_rows("admin.token.create").len(), 1);
    assert_eq!(h.audit_rows("admin.token.revoke").len(), 1);
    // Bad input is a 400 with a code, not a crash.
    h.clock.advance(Duration::seconds(30));
    let r = create_token(
        &h,
        &admin,
        &secret,
        json!({"name": "bad name", "role": "admin"}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    // Without `expires_in` a token lives 90 days, like the CLI's default.
    h.clock.advance(Duration::seconds(30));
    let r = create_token(
        &h,
        &admin,
        &secret,
        json!({"name": "grafana", "role": "viewer"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let at = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(r.body["token"][k].as_str().unwrap()).unwrap()
    };
    assert_eq!(at("expires_at") - at("created_at"), Duration::days(90));
}

#[tokio::test]
async fn health_metrics_limits_and_json_errors() {
    let h = AdminHarness::start_with(AdminConfig {
        max_body_bytes: 2048,
        ..AdminConfig::default()
    })
    .await;
    let (viewer, _) = h.issue("prometheus", Role::Viewer, false);
    let (admin, _) = h.issue("admin", Role::Admin, false);

    let r = h.get("/healthz", None).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );

    // /metrics needs a token; a refusal shows up in it.
    assert_eq!(
        h.get("/metrics", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = h.get("/metrics", Some(&viewer)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text
            .contains("wardgate_admin_refusals_total{reason=\"missing_token\"} 1"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("wardgate_edge_connections"),
        "shared registry families are exposed"
    );

    // Oversized body: 413 with a JSON code; nothing enrolled.
    let big = json!({"id": "pump-77", "model": "x".repeat(4096), "hardware_id": "h", "manufacturer": "m", "firmware_version": "1"});
    let r = h
        .post("/api/v1/devices", Some(&admin), None, Some(big))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        "{}",
        r.text
    );
    assert!(h.registry.list().unwrap().is_empty());

    // Unknown route, bad JSON, bad id, unknown device: JSON errors with codes.
    let r = h.get("/api/v1/nope", Some(&admin)).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = h
        .call(
            Method::POST,
            "/api/v1/devices",
            Some(&admin),
            None,
            Some(json!({"id": "../etc"})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let r = h
        .post(
            "/api/v1/devices/ghost-1/quarantine",
            Some(&admin),
            None,
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "not_found"),
        "{}",
        r.text
    );
    let r = h.get("/api/v1/audit?limit=0", Some(&viewer)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );

    // Audit query and verification.
    let r = h.get("/api/v1/audit?limit=3", Some(&viewer)).await;
    assert_eq!(r.status, StatusCode::OK);
    let total = h.audit.all().unwrap().len();
    assert!(total >= 1);
    let rows = r.body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), total.min(3));
    assert_eq!(rows[0]["action"], "admin.refused", "newest first");
    let r = h.get("/api/v1/audit/verify", Some(&viewer)).await;
    assert_eq!(r.body["intact"], true, "{}", r.text);

    // Plain HTTP to the TLS port is not served.
    let plain = reqwest::Client::new();
    let addr = h.base.trim_start_matches("https://");
    assert!(plain
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .map(|r| r.status() != StatusCode::OK)
        .unwrap_or(true));
}

// control: confidentiality-in-transit, resilience
#[tokio::test]
async fn slow_or_non_tls_clients_are_cut_off_and_others_keep_working() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = AdminHarness::start_with(AdminConfig {
        handshake_timeout: std::time::Duration::from_secs(1),
        ..AdminConfig::default()
    })
    .await;
    // A TLS client that never finishes its request headers.
    let config = wardgate_tests::tls::client_config(&h.ca_pem, None).unwrap();
    let mut tls = wardgate_tests::tls::connect(h.addr, "127.0.0.1", config)
        .await
        .unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // The server closes the connection (the outer bound only keeps a broken
    // server from hanging the test).
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tls.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "server kept a half-sent request open");
    assert!(!String::from_utf8_lossy(&buf).contains("\"ok\""));

    // A plain TCP client that never starts TLS is dropped too.
    let mut raw = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), raw.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");

    assert_eq!(h.get("/healthz", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn one_totp_code_sent_concurrently_is_accepted_exactly_once() {
    let h = Arc::new(AdminHarness::start().await);
    h.enroll("pump-01");
    let (op, secret) = h.issue("nurse-lead", Role::Operator, true);
    let code = h.code(&secret.unwrap());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (h, op, code) = (h.clone(), op.clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            h.post(
                "/api/v1/devices/pump-01/quarantine",
                Some(&op),
                Some(&code),
                None,
            )
            .await
        }));
    }
    let mut ok = 0;
    let mut reused = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match (r.status, r.code()) {
            (StatusCode::OK, _) => ok += 1,
            (StatusCode::UNAUTHORIZED, "totp_reused") => reused += 1,
            other => panic!("unexpected {other:?}: {}", r.text),
        }
    }
    assert_eq!((ok, reused), (1, 7));
    assert_eq!(h.audit_rows("registry.quarantine").len(), 1);
    assert_eq!(h.audit_rows("admin.refused").len(), 7);
    assert_eq!(state_of(&h, "pump-01"), DeviceState::Quarantined);
}
