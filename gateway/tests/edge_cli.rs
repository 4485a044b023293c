//! The real `gateway` binary: PKI, enrolment, running, live revocation from
//! the CLI, and `audit verify` catching a row edited directly in SQLite.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use device_sim::{DeviceOptions, DeviceTls, SimDevice, VitalsGenerator};
use wardgate_protocol::DeviceId;
use wardgate_tests::process::{ChildGuard, Stream};
use wardgate_tests::wait::wait_for;

use support::cli::{gw, ok, BIN};

fn write_config(dir: &Path) -> std::path::PathBuf {
    let pki = dir.join("pki");
    let cfg = format!(
        r#"
[storage]
data_dir = "{data}"

[edge]
listen = "127.0.0.1:0"
ca_cert = "{pki}/ca.pem"
server_cert = "{pki}/server.pem"
server_key = "{pki}/server.key"

[admin]
bind = "127.0.0.1:0"

[log]
format = "json"
"#,
        data = dir.join("state").display(),
        pki = pki.display()
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

// control: audit
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_pki_enroll_run_revoke_and_audit_verify_detects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let pki_s = pki.to_str().unwrap();
    ok(&["pki", "--dir", pki_s, "init"]);
    ok(&[
        "pki",
        "--dir",
        pki_s,
        "server",
        "--name",
        "localhost",
        "--name",
        "127.0.0.1",
    ]);
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
    let config = write_config(dir.path());
    let c = config.to_str().unwrap();
    ok(&[
        "device",
        "--config",
        c,
        "enroll",
        "--id",
        "pump-01",
        "--model",
        "P-100",
        "--hardware-id",
        "acme-p100",
        "--manufacturer",
        "acme",
        "--firmware",
        "1.0.0",
        "--cert",
        &format!("{pki_s}/pump-01.pem"),
    ]);
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

    let mut child = ChildGuard::spawn(
        Command::new(BIN)
            .args(["run", "--config", c])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let line = child
        .wait_for_line(Stream::Stdout, Duration::from_secs(60), |l| {
            Some(l.to_owned())
        })
        .unwrap();
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
    let export = ok(&["audit", "--config", c, "export"]);
    let rows: Vec<serde_json::Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
