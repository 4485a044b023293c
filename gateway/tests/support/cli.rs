//! Running the real `gateway` binary from tests (a long-running one goes
//! in the harness's `ChildGuard`, which kills it on drop).

use std::process::{Command, Output};

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
