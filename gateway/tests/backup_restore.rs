//! `gateway backup` beside a running gateway, `gateway restore` onto a
//! fresh data dir, and a gateway started there serving the same registry:
//! the enrolled device connects with its pinned certificate, the revoked
//! one is still refused. A copy whose audit chain was edited after it was
//! taken is refused, and so is a restore over a live database without
//! `--replace`.

mod support;

use std::path::Path;
use std::time::Duration;

use device_sim::SimDevice;
use gateway::registry::{DeviceState, Registry};
use gateway::Gateway;
use support::cli::gw;
use support::{test_config, TestGateway};
use wardgate_protocol::DeviceId;

/// A config file whose `[storage]` points at `data_dir` (the offline
/// subcommands need nothing else).
fn config_file(dir: &Path, name: &str, data_dir: &Path) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("[storage]\ndata_dir = \"{}\"\n", data_dir.display()),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = gw(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// control: backup, audit, confidentiality-at-rest
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_copy_serves_the_same_registry_and_an_altered_one_is_refused() {
    let mut source = TestGateway::start().await;
    let work = tempfile::tempdir().unwrap();
    let live_dir = source.data.path().join("state");
    let live_cfg = config_file(work.path(), "live.toml", &live_dir);

    // A live ward: one device streaming, one revoked.
    let tls = source.enroll("monitor-01");
    let mut options = source.options("monitor-01", tls);
    let device = SimDevice::connect(&options).await.unwrap();
    let stolen_tls = source.enroll("monitor-02");
    let mut stolen = source.options("monitor-02", stolen_tls);
    source
        .handle()
        .context
        .registry
        .set_state(
            &DeviceId::parse("monitor-02").unwrap(),
            DeviceState::Revoked,
            "test",
            "stolen",
        )
        .unwrap();

    // Online backup while the gateway runs.
    let copy = work.path().join("ward.backup.db");
    let copy_s = copy.to_str().unwrap();
    let (ok, stdout, stderr) = run(&["backup", "--config", &live_cfg, "--out", copy_s]);
    assert!(ok, "backup failed: {stderr}");
    assert!(stdout.contains("2 devices"), "{stdout}");
    assert!(stdout.contains("audit chain intact"), "{stdout}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the copy holds the registry and tokens");
    }
    // Never over an existing file.
    let (ok, _, stderr) = run(&["backup", "--config", &live_cfg, "--out", copy_s]);
    assert!(!ok && stderr.contains("already exists"), "{stderr}");

    drop(device);
    let handle = source.handle.take().unwrap();
    handle.shutdown(Duration::from_secs(10)).await;
    let expected = Registry::open(&live_dir.join("gateway.db"))
        .unwrap()
        .list()
        .unwrap();

    // A copy edited after it was taken: its audit chain breaks.
    let altered = work.path().join("altered.db");
    std::fs::copy(&copy, &altered).unwrap();
    {
        let conn = rusqlite::Connection::open(&altered).unwrap();
        conn.execute_batch(
            "DROP TRIGGER audit_log_no_update;
             UPDATE audit_log SET subject = 'monitor-99' WHERE id = (SELECT MIN(id) FROM audit_log WHERE action = 'registry.revoke');",
        )
        .unwrap();
    }
    let refused_dir = work.path().join("refused");
    let refused_cfg = config_file(work.path(), "refused.toml", &refused_dir);
    let (ok, _, stderr) = run(&[
        "restore",
        "--config",
        &refused_cfg,
        "--from",
        altered.to_str().unwrap(),
    ]);
    assert!(!ok, "an altered copy was restored");
    assert!(stderr.contains("audit chain does not verify"), "{stderr}");
    assert!(stderr.contains("edited"), "names the broken row: {stderr}");
    assert!(!refused_dir.join("gateway.db").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&refused_dir).unwrap().collect();
    assert!(leftovers.is_empty(), "staging files left: {leftovers:?}");

    // The genuine copy onto a fresh data dir.
    let fresh = tempfile::tempdir().unwrap();
    let restored_dir = fresh.path().join("state");
    let restored_cfg = config_file(work.path(), "restored.toml", &restored_dir);
    let (ok, stdout, stderr) = run(&["restore", "--config", &restored_cfg, "--from", copy_s]);
    assert!(ok, "restore failed: {stderr}");
    assert!(stdout.contains("audit chain intact"), "{stdout}");
    // Over a database in place only with --replace.
    let (ok, _, stderr) = run(&["restore", "--config", &restored_cfg, "--from", copy_s]);
    assert!(!ok && stderr.contains("--replace"), "{stderr}");
    let (ok, _, stderr) = run(&["audit", "--config", &restored_cfg, "verify"]);
    assert!(ok, "restored audit log does not verify: {stderr}");

    // A gateway on the restored data dir serves the same registry.
    let handle = Gateway::start(test_config(&source.pki, &restored_dir))
        .await
        .unwrap();
    let restored = handle.context.registry.list().unwrap();
    assert_eq!(restored, expected);
    let restore_rows = handle
        .context
        .audit
        .find("gateway", Some("gateway.restore"))
        .unwrap();
    assert_eq!(restore_rows.len(), 1, "the restore is audited");
    options.port = handle.edge_addr().port();
    let device = SimDevice::connect(&options)
        .await
        .expect("the enrolled device is admitted by the restored gateway");
    stolen.port = handle.edge_addr().port();
    SimDevice::connect(&stolen)
        .await
        .expect_err("the revoked device stays refused after a restore");
    drop(device);
    handle.shutdown(Duration::from_secs(10)).await;
}
