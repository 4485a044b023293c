//! schemathesis against a running gateway's admin API over real HTTPS, from
//! the OpenAPI document the gateway serves at `GET /api/v1/openapi.json`:
//! no 5xx, every answer matches the document (status, content type,
//! schema), and no request changes state without the role and the TOTP
//! code that the route table demands.
//!
//! Three runs against one gateway with a seeded registry (an active and a
//! quarantined device) and an open alert (the examples in the document name
//! them, so the runs hit real records, not only 404s):
//! 1. a viewer token: every mutating route answers 401/403 (or 4xx for
//!    invalid input) and nothing changed;
//! 2. an admin token bound to TOTP, sent without a code: the mutating
//!    routes are refused `totp_required` and nothing changed;
//! 3. an admin token without TOTP binding (a configuration the access
//!    control allows): writes can succeed, and every change the audit log
//!    records names that token.
//!
//! A run with a TOTP-bound token whose writes succeed is not made: each code
//! is accepted once per 30 s step, so all but one write per step would be
//! refused as `totp_reused`; run 3 covers the write paths instead.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use gateway::access::token::record::TokenRecord;
use gateway::admin::Role;
use gateway::anomaly::alert::{AlertKind, Finding};
use gateway::anomaly::AlertStore;
use gateway::config::ResponseAction;
use gateway::registry::DeviceState;
use gateway::GatewayContext;
use support::admin::{never_expiring, token_store};
use support::TestGateway;
use wardgate_protocol::DeviceId;
use wardgate_tests::schemathesis::{self, Options, Run};

/// `--request-retries 2` in the runs: now and then a request whose body the
/// server refuses early (413) sees the connection closed while it is still
/// sending, which schemathesis reports as a TLS EOF; a retry sends it again.
///
/// Test cases per operation: enough to reach every documented answer,
/// few enough that one run stays well under 90 s on a slow 2-core machine.
const MAX_EXAMPLES: u32 = 15;

/// A run that generated fewer cases than this tested next to nothing.
const MIN_TEST_CASES: u64 = 100;

/// The checks: no server error, and status code, content type and body
/// as documented.
const CHECKS: [&str; 4] = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
];

/// What the runs must not change, read straight from the stores (not
/// through the API under test).
#[derive(Debug, PartialEq)]
struct Snapshot {
    devices: Vec<(String, DeviceState, String)>,
    /// Tokens without `last_used_at`, which every authorised call updates.
    tokens: Vec<(String, Role, Option<String>, bool)>,
    alerts: Vec<(i64, Option<String>, Option<String>)>,
}

fn snapshot(ctx: &GatewayContext, alerts: &AlertStore) -> Snapshot {
    let tokens = token_store(&ctx.db_path);
    Snapshot {
        devices: ctx
            .registry
            .list()
            .unwrap()
            .into_iter()
            .map(|d| (d.id.to_string(), d.state, d.updated_at.to_rfc3339()))
            .collect(),
        tokens: tokens
            .list()
            .unwrap()
            .into_iter()
            .map(|t: TokenRecord| {
                (
                    t.id.to_string(),
                    t.role,
                    t.revoked_at.map(|r| r.to_rfc3339()),
                    t.totp_bound,
                )
            })
            .collect(),
        alerts: alerts
            .list(1000, false)
            .unwrap()
            .into_iter()
            .map(|a| {
                (
                    a.id,
                    a.acknowledged_at.map(|t| t.to_rfc3339()),
                    a.released_at.map(|t| t.to_rfc3339()),
                )
            })
            .collect(),
    }
}

struct Ward {
    gw: TestGateway,
    alerts: AlertStore,
    base: String,
    ca: PathBuf,
}

impl Ward {
    async fn start() -> Self {
        let gw = TestGateway::start_with(|c| {
            c.admin.enabled = true;
            // schemathesis sends hundreds of requests a second from one address.
            c.admin.requests_per_peer_per_second = 10_000;
            c.admin.request_burst_per_peer = 10_000;
        })
        .await;
        let ctx = gw.handle().context.clone();
        let addr = gw.handle().admin_addr.expect("admin API enabled");
        gw.enroll("pump-01");
        gw.enroll("monitor-02");
        let monitor = DeviceId::parse("monitor-02").unwrap();
        ctx.registry
            .set_state(&monitor, DeviceState::Quarantined, "test", "seeded")
            .unwrap();
        let alerts = AlertStore::open(&ctx.db_path).unwrap();
        alerts
            .insert(
                &Finding {
                    at: Utc::now(),
                    device: Some(monitor.clone()),
                    subject: "device:monitor-02".into(),
                    kind: AlertKind::MessageFlood,
                    score: 12.5,
                    evidence: serde_json::json!({"rate_per_s": 40.0, "baseline_per_s": 1.0}),
                },
                ResponseAction::Quarantine,
            )
            .unwrap();
        Self {
            ca: gw.pki.ca_path.clone(),
            base: format!("https://127.0.0.1:{}", addr.port()),
            gw,
            alerts,
        }
    }

    fn ctx(&self) -> Arc<GatewayContext> {
        self.gw.handle().context.clone()
    }

    fn token(&self, name: &str, role: Role, totp: bool) -> (String, String) {
        let store = token_store(&self.ctx().db_path);
        let issued = never_expiring(&store, name, role, totp);
        (
            issued.token.expose().to_owned(),
            issued.record.id.to_string(),
        )
    }

    async fn schemathesis(&self, cli: &std::path::Path, bearer: &str, extra: &[&str]) -> Run {
        let options = Options {
            schema_url: format!("{}/api/v1/openapi.json", self.base),
            ca: self.ca.clone(),
            headers: vec![("Authorization".into(), format!("Bearer {bearer}"))],
            client_cert: None,
            max_examples: MAX_EXAMPLES,
            checks: CHECKS.iter().map(|c| (*c).to_owned()).collect(),
            extra: ["--seed", "20261202", "--request-retries", "2"]
                .iter()
                .chain(extra)
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

/// Audit rows after `after`: (actor, action).
fn audit_since(ctx: &GatewayContext, after: i64) -> Vec<(String, String)> {
    ctx.audit
        .all()
        .unwrap()
        .into_iter()
        .filter(|r| r.id > after)
        .map(|r| (r.actor, r.action))
        .collect()
}

fn last_audit_id(ctx: &GatewayContext) -> i64 {
    ctx.audit.all().unwrap().last().map_or(0, |r| r.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_admin_api_true_to_its_document() {
    let Some(cli) = schemathesis::require() else {
        return;
    };
    let ward = Ward::start().await;
    let ctx = ward.ctx();

    // 1. The lowest role.
    let (viewer, _) = ward.token("dashboard", Role::Viewer, false);
    let before = snapshot(&ctx, &ward.alerts);
    let mark = last_audit_id(&ctx);
    let run = ward.schemathesis(&cli, &viewer, &[]).await;
    eprintln!("run 1 (viewer): {} generated test cases", run.test_cases());
    assert_clean(&run, "viewer run");
    assert_eq!(
        snapshot(&ctx, &ward.alerts),
        before,
        "a viewer changed state"
    );
    let actions: BTreeSet<String> = audit_since(&ctx, mark).into_iter().map(|r| r.1).collect();
    assert!(
        actions.iter().all(|a| a == "admin.refused"),
        "the viewer run wrote other audit rows than refusals: {actions:?}"
    );
    assert!(
        actions.contains("admin.refused"),
        "the viewer run was never refused: it reached no mutating route"
    );

    // 2. An admin bound to TOTP, without the code.
    let (admin_totp, _) = ward.token("ward-admin", Role::Admin, true);
    let before = snapshot(&ctx, &ward.alerts);
    let mark = last_audit_id(&ctx);
    let run = ward.schemathesis(&cli, &admin_totp, &[]).await;
    eprintln!(
        "run 2 (admin, TOTP-bound, no code): {} generated test cases",
        run.test_cases()
    );
    assert_clean(&run, "admin without TOTP run");
    assert_eq!(
        snapshot(&ctx, &ward.alerts),
        before,
        "an admin without a TOTP code changed state"
    );
    let actions: BTreeSet<String> = audit_since(&ctx, mark).into_iter().map(|r| r.1).collect();
    assert!(
        actions.iter().all(|a| a == "admin.refused"),
        "the run without TOTP wrote other audit rows than refusals: {actions:?}"
    );

    // 3. An admin token without TOTP binding: writes may succeed.
    let (admin, admin_id) = ward.token("automation", Role::Admin, false);
    let mark = last_audit_id(&ctx);
    // Without DELETE: it would revoke the run's own token half-way (runs
    // 1 and 2 covered its refusals).
    let run = ward
        .schemathesis(&cli, &admin, &["--exclude-method", "DELETE"])
        .await;
    eprintln!(
        "run 3 (admin, no TOTP binding): {} generated test cases",
        run.test_cases()
    );
    assert_clean(&run, "admin run");
    let rows = audit_since(&ctx, mark);
    let actor = format!("admin:{admin_id}");
    // Refusals are audited under whoever was refused (schemathesis also
    // sends requests without the token); every other row is a change, and
    // each must name the admin token.
    let strangers: Vec<_> = rows
        .iter()
        .filter(|(a, action)| action != "admin.refused" && *a != actor)
        .collect();
    assert!(
        strangers.is_empty(),
        "changes during the admin run name someone else: {strangers:?}"
    );
    let changes = rows.iter().filter(|(_, a)| a != "admin.refused").count();
    eprintln!("run 3: {changes} audited changes, all by {actor}");
    assert!(
        changes > 0,
        "the admin run changed nothing: no write route succeeded"
    );
}
