//! Running the real `gateway` binary from tests (a long-running one goes
//! in the harness's `ChildGuard`, which kills it on drop).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use wardgate_tests::process::{ChildGuard, Stream};

/// The `gateway` binary Cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_gateway");

/// Runs `gateway <args>` (without any inherited `WARDGATE_CONFIG`).
pub fn gw(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("WARDGATE_CONFIG")
        .output()
        .expect("run the gateway binary")
}

/// Runs `gateway <args>`, asserts success and returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = gw(args);
    assert!(
        out.status.success(),
        "gateway {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// `gateway pki init` in `pki` and a server certificate there for
/// `localhost` and `127.0.0.1`, as an operator sets up a ward.
pub fn init_pki(pki: &Path) {
    let pki = pki.to_str().expect("utf-8 path");
    ok(&["pki", "--dir", pki, "init"]);
    ok(&[
        "pki",
        "--dir",
        pki,
        "server",
        "--name",
        "localhost",
        "--name",
        "127.0.0.1",
    ]);
}

/// `gateway device enroll` of `id` (a `P-100` from `acme` on firmware
/// 1.0.0) against the configuration `config`, with `extra` arguments such
/// as `--cert <file>`: one audit row. Returns the command's output.
pub fn enroll(config: &str, id: &str, extra: &[&str]) -> String {
    let args = [
        "device",
        "--config",
        config,
        "enroll",
        "--id",
        id,
        "--model",
        "P-100",
        "--hardware-id",
        "acme-p100",
        "--manufacturer",
        "acme",
        "--firmware",
        "1.0.0",
    ];
    ok(&[&args[..], extra].concat())
}

/// Writes `dir/gateway.toml`: data in `dir/state`, the edge on a free
/// loopback port with the PKI of [`init_pki`] in `dir/pki`, then `rest`
/// (the test's own `[admin]`, `[log]`, ... sections); returns its path.
pub fn write_config(dir: &Path, rest: &str) -> PathBuf {
    let pki = dir.join("pki");
    let edge = super::storage_and_edge_toml(
        &dir.join("state"),
        "127.0.0.1:0",
        &pki.join("ca.pem"),
        &pki.join("server.pem"),
        &pki.join("server.key"),
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, format!("{edge}\n{rest}")).expect("write gateway.toml");
    path
}

/// Starts `gateway run --config <config>` (killed on drop) and waits for
/// the first line of its stdout, which says where the edge listens.
pub fn run(config: &str) -> (ChildGuard, String) {
    let mut child = ChildGuard::spawn(
        Command::new(BIN)
            .args(["run", "--config", config])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .expect("spawn gateway run");
    let line = child
        .wait_for_line(Stream::Stdout, Duration::from_secs(60), |l| {
            Some(l.to_owned())
        })
        .expect("gateway run prints where it listens");
    (child, line)
}

/// The audit log as `gateway audit export` prints it: a JSON row a line.
pub fn audit_export(config: &str) -> Vec<Value> {
    ok(&["audit", "--config", config, "export"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit row in JSON"))
        .collect()
}
