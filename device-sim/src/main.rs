//! `device-sim`: wiring only; see the `device_sim` library ([`device_sim::cli`]
//! for the arguments, [`device_sim::fleet`] for what runs).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    device_sim::cli::init_tracing();
    device_sim::cli::run(device_sim::cli::Args::parse()).await
}
