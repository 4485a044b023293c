//! The real `gateway` binary: PKI, enrolment, running, live revocation from
//! the CLI, and `audit verify` catching a row edited directly in SQLite.

mod support;

use std::time::Duration;

use device_sim::{DeviceOptions, DeviceTls, SimDevice, VitalsGenerator};
use wardgate_protocol::DeviceId;
use wardgate_tests::wait::wait_for;

use support::cli::{audit_export, enroll, gw, init_pki, ok, run, write_config};

/// The edge port from `gateway run`'s readiness line.
fn edge_port(line: &str) -> u16 {
    line.trim().rsplit(':').next().unwrap().parse().expect(line)
}

/// The files `gateway pki device --id <id>` wrote, as a device's TLS.
fn device_tls(pki: &std::path::Path, id: &str) -> DeviceTls {
    let read = |name: String| std::fs::read_to_string(pki.join(name)).unwrap();
    DeviceTls {
        ca_pem: read("ca.pem".into()),
        cert_pem: read(format!("{id}.pem")),
        key_pem: read(format!("{id}.key")),
    }
}

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
    let port = edge_port(&line);

    let tls = device_tls(&pki, "pump-01");
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

/// The TCP ports `pid` listens on: its socket inodes matched against the
/// kernel's listening sockets (state 0A) of its network namespace.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
        for row in text.lines().skip(1) {
            let f: Vec<&str> = row.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports.sort_unstable();
    ports
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

// control: segmentation, resilience
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_has_no_listener_and_a_device_session_costs_one_open_file() {
    const DEVICES: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let pki_s = pki.to_str().unwrap();
    init_pki(&pki);
    // No admin API: the edge is then the one listener the gateway has.
    let config = write_config(dir.path(), "[admin]\nenabled = false\n");
    let c = config.to_str().unwrap();
    let mut options = Vec::new();
    for i in 0..DEVICES {
        let id = format!("pump-{i:02}");
        ok(&["pki", "--dir", pki_s, "device", "--id", &id]);
        enroll(c, &id, &["--cert", &format!("{pki_s}/{id}.pem")]);
        options.push(DeviceOptions {
            id: DeviceId::parse(&id).unwrap(),
            client_id: None,
            host: "localhost".into(),
            port: 0,
            tls: device_tls(&pki, &id),
            keep_alive: Duration::from_secs(30),
        });
    }
    let (child, line) = run(c);
    let port = edge_port(&line);
    let pid = child.id();
    assert_eq!(
        listening_ports(pid),
        vec![port],
        "the gateway listens only on edge.listen: the embedded broker has no listener"
    );

    // One session first, so every lazily opened file (database
    // connections, the outbox) is open before counting.
    let mut first = options.remove(0);
    first.port = port;
    let mut devices = vec![SimDevice::connect(&first).await.unwrap()];
    devices[0]
        .publish_telemetry(VitalsGenerator::new(0).next_readings())
        .await
        .unwrap();
    devices[0]
        .wait_puback(Duration::from_secs(10))
        .await
        .unwrap();
    let before = open_files(pid);
    for (i, mut o) in options.into_iter().enumerate() {
        o.port = port;
        let mut d = SimDevice::connect(&o).await.unwrap();
        d.publish_telemetry(VitalsGenerator::new(i as u64 + 1).next_readings())
            .await
            .unwrap();
        d.wait_puback(Duration::from_secs(10)).await.unwrap();
        devices.push(d);
    }
    let added = open_files(pid) - before;
    // Over loopback TCP to the broker a session held three files.
    assert!(
        added <= DEVICES - 1 + 2,
        "{added} more open files for {} more sessions",
        DEVICES - 1
    );
    assert_eq!(listening_ports(pid), vec![port]);
    drop(devices);
    drop(child);
}
