//! `tuf-repo`: command-line front end of the `tuf_repo` library.
//!
//! Wiring only: parse arguments, set up logging, run, map errors to exit
//! code 1 with the error's message.
//!
//! Logging follows the convention of every Wardgate binary: the filter comes
//! from `WARDGATE_LOG` (`tracing` `EnvFilter` syntax, e.g.
//! `WARDGATE_LOG=tuf_repo=debug`), default `warn` for this command-line tool;
//! it has no config file, so always logs text to stderr.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = tuf_repo::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARDGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tuf-repo: error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(tuf_repo::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tuf-repo: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
