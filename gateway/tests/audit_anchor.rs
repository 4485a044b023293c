//! Audit anchors against truncation, through the real `gateway` binary: a
//! log with rows cut off its end still verifies as a chain, and only the
//! anchors kept elsewhere reveal it; an altered anchor is refused; the
//! running gateway anchors its chain at start and as it grows, and
//! publishes its anchor retained at a real upstream Mosquitto, where an
//! auditor's copy names the rows later cut off the end.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use wardgate_tests::wait::wait_for;

use support::cli::{enroll, gw, init_pki, ok, run, write_config};
use support::ward::{Upstream, WARD_TOPICS};

/// A ward configured in a temp dir (PKI, `gateway.toml` with `rest`),
/// with the config path as a string.
fn ward(rest: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    init_pki(&dir.path().join("pki"));
    let config = write_config(dir.path(), rest);
    let c = config.to_str().unwrap().to_owned();
    (dir, c)
}

/// The anchors in `file`, one JSON object a line.
fn anchors(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an anchor in JSON"))
        .collect()
}

/// `gateway audit verify <extra>`: exit success and stdout.
fn verify(config: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["audit", "--config", config, "verify"];
    args.extend_from_slice(extra);
    let out = gw(&args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Delete the last `n` rows behind the gateway's back, as an intruder with
/// the database file would (the triggers that refuse it dropped first).
fn cut_last_rows(db: &Path, n: i64) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
        .unwrap();
    c.execute(
        "DELETE FROM audit_log WHERE id > (SELECT MAX(id) FROM audit_log) - ?1",
        [n],
    )
    .unwrap();
}

// control: audit
#[test]
fn rows_cut_off_the_end_are_named_by_the_anchor_and_an_altered_anchor_is_refused() {
    let (dir, c) = ward("");
    let c = c.as_str();
    for id in ["pump-01", "pump-02", "pump-03", "pump-04"] {
        enroll(c, id, &[]);
    }
    let out = ok(&["audit", "--config", c, "anchor"]);
    assert!(out.contains("anchored row 4 (4 rows)"), "{out}");
    let file = dir.path().join("state/audit-anchors.jsonl");
    let anchor_file = file.to_str().unwrap();
    assert_eq!(anchors(&file).len(), 1);
    let (intact, out) = verify(c, &["--anchor", anchor_file]);
    assert!(intact, "{out}");
    assert!(out.contains("the log holds every row up to row 4"), "{out}");

    cut_last_rows(&dir.path().join("state/gateway.db"), 2);
    // The chain alone cannot tell: what is left is a valid, shorter chain.
    let (intact, out) = verify(c, &[]);
    assert!(intact, "{out}");
    assert!(out.contains("audit log intact: 2 rows verified"), "{out}");
    // The anchor can.
    let (intact, out) = verify(c, &["--anchor", anchor_file]);
    assert!(!intact, "{out}");
    assert!(
        out.contains("rows 3..=4 are missing from the end of the log"),
        "{out}"
    );

    // An anchor lowered to the cut log's end does not verify.
    let line = std::fs::read_to_string(&file).unwrap();
    let lowered = line.replace("\"row_id\":4", "\"row_id\":2");
    assert_ne!(lowered, line);
    let forged = dir.path().join("forged.jsonl");
    std::fs::write(&forged, lowered).unwrap();
    let (intact, out) = verify(c, &["--anchor", forged.to_str().unwrap()]);
    assert!(!intact, "{out}");
    assert!(out.contains("anchor REFUSED"), "{out}");
    assert!(
        out.contains("does not verify with the trusted anchor key"),
        "{out}"
    );

    // Checked against a key the operator recorded elsewhere: another key
    // refuses the genuine anchor.
    let other = "11".repeat(32);
    let (intact, out) = verify(c, &["--anchor", anchor_file, "--anchor-key", &other]);
    assert!(!intact, "{out}");
    assert!(out.contains("anchor REFUSED"), "{out}");
}

// control: audit
#[tokio::test]
async fn the_running_gateway_anchors_at_start_and_as_the_chain_grows() {
    let (dir, c) = ward("[audit]\nanchor_interval = \"1s\"\n");
    let c = c.as_str();
    enroll(c, "pump-01", &[]);
    let (_gateway, _line) = run(c);
    let file = dir.path().join("state/audit-anchors.jsonl");
    let first = wait_for(Duration::from_secs(30), || anchors(&file).first().cloned())
        .await
        .expect("the gateway anchors its chain at start");
    let first_row = first["row_id"].as_i64().unwrap();
    assert!(first_row >= 2, "enroll and gateway.start: {first}");
    enroll(c, "pump-02", &[]);
    let later = wait_for(Duration::from_secs(30), || {
        anchors(&file)
            .into_iter()
            .find(|a| a["row_id"].as_i64().unwrap() > first_row)
    })
    .await
    .expect("a new row is anchored within the interval");
    assert_eq!(later["schema"], "wardgate.audit-anchor.v1");
    let (intact, out) = verify(c, &["--anchor", file.to_str().unwrap()]);
    assert!(intact, "{out}");
}

// control: audit
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anchor_retained_at_the_hospital_broker_names_rows_cut_off_the_end() {
    let upstream = Upstream::start(WARD_TOPICS).await.unwrap();
    let ward = upstream
        .ward("\n[audit]\nanchor_interval = \"1s\"\n")
        .unwrap();
    let config = ward.config_path.to_str().unwrap().to_owned();
    let db = ward.db_path();
    let pump = ward.enroll("pump-01").unwrap();
    let mut gateway = ward.spawn_process(support::cli::BIN).unwrap();
    // Rows of a session (connect, disconnect) after the start-up anchor.
    let sent = ward
        .device(&pump)
        .unwrap()
        .send(1..=3, 3, std::sync::Arc::default())
        .await;
    assert_eq!(sent.acked, vec![1, 2, 3], "{:?}", sent.error);
    let log = gateway::audit::AuditLog::open(&db).unwrap();
    let head = wait_for(Duration::from_secs(10), || {
        log.all()
            .unwrap()
            .iter()
            .any(|r| r.action == "edge.disconnect")
            .then(|| log.head().unwrap().unwrap().row_id)
    })
    .await
    .expect("the session's rows are in the log");

    // The anchor of that head reaches the hospital broker.
    let topic = gateway::anchoring::anchor_topic("wardgate/ward");
    let published = |r: &wardgate_tests::mosquitto::Received| {
        r.by_topic.get(&topic).is_some_and(|v| {
            v.iter().any(|p| {
                serde_json::from_slice::<Value>(p).unwrap()["row_id"]
                    .as_i64()
                    .unwrap()
                    >= head
            })
        })
    };
    let got = upstream
        .sub
        .wait_until(Duration::from_secs(30), published)
        .await;
    assert!(
        published(&got),
        "no anchor of row {head} upstream: {:?}",
        got.counts
    );
    gateway.terminate(Duration::from_secs(10)).unwrap();

    // An auditor subscribing later, with the gateway gone, is handed the
    // broker's retained copy of the latest anchor, and keeps it.
    let auditor = upstream.pki.client("siem-auditor").unwrap();
    let late = wardgate_tests::mosquitto::Subscriber::start(
        &upstream.broker,
        &upstream.pki,
        &auditor,
        "siem-auditor",
        &topic,
    )
    .await
    .unwrap();
    let retained = late
        .wait_until(Duration::from_secs(20), |r| r.count(&topic) > 0)
        .await;
    late.stop().await;
    let payload = retained
        .by_topic
        .get(&topic)
        .and_then(|v| v.first())
        .expect("the anchor is retained at the broker")
        .clone();
    let anchor: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(anchor["schema"], "wardgate.audit-anchor.v1", "{anchor}");
    let row = anchor["row_id"].as_i64().unwrap();
    assert!(row >= head, "the retained anchor is the latest: {anchor}");
    let file = upstream.path().join("retained-anchor.jsonl");
    std::fs::write(&file, &payload).unwrap();
    let file = file.to_str().unwrap();
    let (intact, out) = verify(&config, &["--anchor", file]);
    assert!(intact, "{out}");
    assert!(
        out.contains(&format!("the log holds every row up to row {row}")),
        "{out}"
    );

    // Cut the anchored head and the row before it (and anything after).
    let last = log.head().unwrap().unwrap().row_id;
    drop(log);
    cut_last_rows(&db, last - row + 2);
    let (intact, out) = verify(&config, &["--anchor", file]);
    eprintln!(
        "retained anchor of row {row} (head {last} at the stop); cut {} rows; verify says: {}",
        last - row + 2,
        out.lines().find(|l| l.contains("missing")).unwrap_or(&out)
    );
    assert!(!intact, "{out}");
    assert!(
        out.contains(&format!(
            "rows {}..={row} are missing from the end of the log",
            row - 1
        )),
        "{out}"
    );
}

#[test]
fn the_export_speaks_rfc5424_syslog_for_a_siem() {
    let (_dir, c) = ward("");
    let c = c.as_str();
    enroll(c, "pump-01", &[]);
    let out = ok(&[
        "audit",
        "--config",
        c,
        "export",
        "--format",
        "syslog",
        "--hostname",
        "ward-3",
    ]);
    let line = out.lines().next().unwrap();
    assert!(line.starts_with("<109>1 "), "{line}");
    assert!(
        line.contains(" ward-3 wardgate-gateway - registry.enroll [wardgate@32473 id=\"1\""),
        "{line}"
    );
}
