//! `ota-server`: wiring only; see the `ota_server` library and its
//! [`ota_server::cli`] module.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match ota_server::cli::run(ota_server::cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ota-server: {e}");
            ExitCode::from(2)
        }
    }
}
