//! The real `gateway` binary: PKI, enrolment, running, live revocation from
//! the CLI, and `audit verify` catching a row edited directly in SQLite.

mod support;

use std::time::Duration;

use device_sim::{DeviceOptions, DeviceTls, SimDevice, VitalsGenerator};
use wardgate_protocol::DeviceId;
use wardgate_tests::wait::wait_for;

use support::cli::{audit_export, enroll, gw, init_pki, ok, run, write_config};

// control: audit
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_pki_enroll_run_revoke_and_audit_verify_detects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let pki_s = pki.to_str().unwrap();
    init_pki(&pki);
    let out = ok(&["pki", "--dir", pki_s, "device", "--id", "pump-01"]);
    assert!(out.contains("fingerprint "));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca.key", "server.key", "pump-01.key"] {
            let mode = std::fs::metadata(pki.join(key))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }
    }
    let config = write_config(
        dir.path(),
        "[admin]\nbind = \"127.0.0.1:0\"\n\n[log]\nformat = \"json\"\n",
    );
    let c = config.to_str().unwrap();
    enroll(c, "pump-01", &["--cert", &format!("{pki_s}/pump-01.pem")]);
    assert!(ok(&["device", "--config", c, "list"]).contains("pump-01"));

    // Insecure key permissions are refused, naming the field.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            pki.join("server.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let out = gw(&["run", "--config", c]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("edge.server_key"));
        std::fs::set_permissions(
            pki.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }

    let (child, line) = run(c);
    let port: u16 = line
        .trim()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .expect(&line);

    let tls = DeviceTls {
        ca_pem: std::fs::read_to_string(pki.join("ca.pem")).unwrap(),
        cert_pem: std::fs::read_to_string(pki.join("pump-01.pem")).unwrap(),
        key_pem: std::fs::read_to_string(pki.join("pump-01.key")).unwrap(),
    };
    let opts = DeviceOptions {
        id: DeviceId::parse("pump-01").unwrap(),
        client_id: None,
        host: "localhost".into(),
        port,
        tls,
        keep_alive: Duration::from_secs(30),
    };
    let mut dev = SimDevice::connect(&opts).await.unwrap();
    dev.publish_telemetry(VitalsGenerator::new(1).next_readings())
        .await
        .unwrap();
    dev.wait_puback(Duration::from_secs(10)).await.unwrap();

    // Revocation from another process reaches the live session.
    ok(&[
        "device", "--config", c, "revoke", "pump-01", "--reason", "stolen",
    ]);
    dev.wait_disconnected(Duration::from_secs(10))
        .await
        .expect("revoked device cut off");
    let recorded = wait_for(Duration::from_secs(10), || {
        let export = ok(&["audit", "--config", c, "export"]);
        export
            .lines()
            .any(|l| l.contains("\"edge.disconnect\"") && l.contains("revoked"))
            .then_some(())
    })
    .await;
    assert!(
        recorded.is_some(),
        "the gateway recorded the live revocation"
    );
    drop(child);

    let verify = gw(&["audit", "--config", c, "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let rows = audit_export(c);
    assert!(rows
        .iter()
        .any(|r| r["action"] == "registry.revoke" && r["subject"] == "pump-01"));
    assert!(rows
        .iter()
        .any(|r| r["action"] == "edge.disconnect" && r["subject"] == "pump-01"));
    let target = rows
        .iter()
        .find(|r| r["action"] == "registry.enroll")
        .unwrap()["id"]
        .as_i64()
        .unwrap();

    // Tamper directly in SQLite (the triggers must be dropped first).
    let db = rusqlite::Connection::open(dir.path().join("state/gateway.db")).unwrap();
    assert!(db
        .execute(
            "UPDATE audit_log SET actor = 'nobody' WHERE id = ?1",
            [target]
        )
        .is_err());
    db.execute_batch("DROP TRIGGER audit_log_no_update;")
        .unwrap();
    db.execute(
        "UPDATE audit_log SET actor = 'nobody' WHERE id = ?1",
        [target],
    )
    .unwrap();
    drop(db);
    let verify = gw(&["audit", "--config", c, "verify"]);
    let text = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("row {target}: content does not match")),
        "{text}"
    );
}
