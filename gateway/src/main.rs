//! `gateway`: wiring only; see the `gateway` library.

use std::process::ExitCode;

use clap::Parser;
use gateway::cli::{dispatch, Cli, Command};
use gateway::config::LogFormat;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format().unwrap_or_else(|| match &cli.command {
        Command::Run(args) => gateway::config::Config::load(&args.config)
            .map(|c| c.log.format)
            .unwrap_or_default(),
        _ => LogFormat::Text,
    });
    init_tracing(format);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
