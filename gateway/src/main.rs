//! `gateway`: wiring only; see the `gateway` library.

use std::process::ExitCode;

use clap::Parser;
use gateway::cli::{describe, Cli, LogSettings};
use gateway::config::LogFormat;

fn main() -> ExitCode {
    let invocation = match Cli::parse().prepare() {
        Ok(invocation) => invocation,
        Err(e) => return fail(&e),
    };
    init_tracing(&invocation.log);
    match invocation.run() {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("gateway: {}", describe(e));
    ExitCode::from(2)
}

fn init_tracing(log: &LogSettings) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDGATE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.default_filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
