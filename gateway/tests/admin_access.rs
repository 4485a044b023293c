//! `gateway access ...` against a real database with a manual clock: the
//! review flags stale and expired tokens, break-glass issues an audited
//! admin token, and token create/list/revoke round-trip.

use std::sync::Arc;

use chrono::{DateTime, Duration};
use clap::Parser;
use gateway::admin::{AdminConfig, ManualClock, Role, TokenStore};
use gateway::audit::AuditLog;
use gateway::cli::access::{run_with, AccessArgs, Findings};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    access: AccessArgs,
}

struct Env {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    store: TokenStore,
    audit: AuditLog,
    config: AdminConfig,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gateway.db");
    let clock = Arc::new(ManualClock::new(
        DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    ));
    let store = TokenStore::open(&db, clock.clone(), 1).unwrap();
    let audit = AuditLog::open(&db).unwrap();
    Env {
        _dir: dir,
        clock,
        store,
        audit,
        config: AdminConfig::default(),
    }
}

fn run(e: &Env, argv: &str) -> (anyhow::Result<()>, String) {
    let cli =
        Cli::try_parse_from(std::iter::once("access").chain(argv.split_whitespace())).unwrap();
    let mut out = Vec::new();
    let res = run_with(
        cli.access,
        &e.store,
        &e.audit,
        &e.config,
        "cli:tester",
        &mut out,
    );
    (res, String::from_utf8(out).unwrap())
}

fn line_for<'a>(out: &'a str, id: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("no line for {id} in\n{out}"))
}

fn secret_of(out: &str) -> String {
    line_for(out, "secret:")
        .trim_start_matches("secret:")
        .trim()
        .to_owned()
}

#[test]
fn review_flags_stale_and_expired_tokens() {
    let e = env();
    let (res, out) = run(
        &e,
        "token create --name used.daily --role viewer --no-expiry",
    );
    res.unwrap();
    let used = e.store.authenticate(&secret_of(&out)).unwrap();
    run(
        &e,
        "token create --name idle.old --role operator --no-expiry",
    )
    .0
    .unwrap();
    run(
        &e,
        "token create --name short.lived --role admin --expires-in 10d",
    )
    .0
    .unwrap();
    let ids: Vec<_> = e
        .store
        .list()
        .unwrap()
        .into_iter()
        .map(|t| (t.name.as_str().to_owned(), t.id))
        .collect();
    let id = |n: &str| {
        ids.iter()
            .find(|(name, _)| name == n)
            .unwrap()
            .1
            .to_string()
    };

    // 85 days on, the daily token is used; 6 days later the review runs.
    e.clock.advance(Duration::days(85));
    e.store.record_use(&used.id).unwrap();
    e.clock.advance(Duration::days(6));

    let (res, out) = run(&e, "review --fail-on-findings");
    let err = res.unwrap_err();
    assert_eq!(
        err.downcast_ref::<Findings>().map(|f| f.0),
        Some(2),
        "{out}"
    );
    let used_line = line_for(&out, &id("used.daily"));
    assert!(
        !used_line.contains("STALE") && !used_line.contains("EXPIRED"),
        "{used_line}"
    );
    assert!(used_line.contains("idle 6d"), "{used_line}");
    let idle_line = line_for(&out, &id("idle.old"));
    assert!(idle_line.contains("STALE(unused>=90d)"), "{idle_line}");
    assert!(!idle_line.contains("EXPIRED"));
    let short_line = line_for(&out, &id("short.lived"));
    assert!(short_line.contains("EXPIRED"), "{short_line}");
    assert!(
        short_line.contains("STALE"),
        "never used for 91 days: {short_line}"
    );
    assert!(out.contains("3 token(s), 2 needing attention"));

    // JSON form carries the same flags; without --fail-on-findings it succeeds.
    let (res, out) = run(&e, "review --json");
    res.unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let flags = |n: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|x| x["record"]["name"] == n)
            .unwrap()["flags"]
            .clone()
    };
    assert_eq!(flags("used.daily"), serde_json::json!([]));
    assert_eq!(flags("idle.old"), serde_json::json!(["stale"]));
    assert_eq!(
        flags("short.lived"),
        serde_json::json!(["stale", "expired"])
    );

    // Revoking the findings clears them.
    run(&e, &format!("token revoke {}", id("idle.old")))
        .0
        .unwrap();
    run(&e, &format!("token revoke {}", id("short.lived")))
        .0
        .unwrap();
    let (res, out) = run(&e, "review --fail-on-findings");
    res.unwrap();
    assert!(line_for(&out, &id("idle.old")).contains("revoked"));
    assert_eq!(
        e.audit
            .find(&id("idle.old"), Some("admin.token.revoke"))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn break_glass_and_token_commands() {
    let e = env();
    let (res, out) = run(&e, "break-glass --minutes 30");
    res.unwrap();
    assert!(out.contains("BREAK-GLASS"));
    let record = e.store.authenticate(&secret_of(&out)).unwrap();
    assert_eq!(record.role, Role::Admin);
    let rows = e
        .audit
        .find(record.id.as_str(), Some("admin.break_glass.create"))
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].actor, "cli:tester");
    // Over the configured maximum: refused, nothing issued or audited.
    let (res, _) = run(&e, "break-glass --minutes 1000");
    assert!(res
        .unwrap_err()
        .to_string()
        .contains("break_glass_max_minutes"));
    assert_eq!(e.store.list().unwrap().len(), 1);
    // Review shows it as break-glass.
    let (_, out) = run(&e, "review");
    assert!(line_for(&out, record.id.as_str()).contains("BREAK-GLASS"));
    e.clock.advance(Duration::minutes(31));
    let (_, out) = run(&e, "review");
    assert!(line_for(&out, record.id.as_str()).contains("EXPIRED"));

    // create with TOTP prints the enrolment; list never shows secrets.
    let (res, out) = run(&e, "token create --name ops.alice --role operator --totp");
    res.unwrap();
    assert!(line_for(&out, "totp url:").contains("otpauth://totp/"));
    let secret = secret_of(&out);
    let (res, list) = run(&e, "token list");
    res.unwrap();
    assert!(!list.contains(&secret[21..]));
    assert!(list.contains("ops.alice"));
    // Viewer + TOTP and bad names are refused with a hint.
    let (res, _) = run(&e, "token create --name v --role viewer --totp");
    assert!(res.unwrap_err().to_string().contains("viewer"));
    let (res, _) = run(&e, "token create --name bad/name --role admin");
    assert!(res.unwrap_err().to_string().contains("token name"));
    let (res, _) = run(&e, "token revoke nothex");
    assert!(res.unwrap_err().to_string().contains("token id"));
}
