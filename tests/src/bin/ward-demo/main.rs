//! `ward-demo`: the whole mission on one machine, with nothing to
//! configure (`scripts/demo` builds the release binaries and runs this).
//!
//! In a work folder: a ward PKI made with `gateway pki` and a hospital PKI
//! for the central side; a TUF repository authored with `tuf-repo` and
//! served by `ota-server`; Mosquitto as the hospital broker when it is
//! installed; a gateway with its edge, console, uplink, anomaly detector
//! and OTA agent; 50 simulated devices: 30 monitors, oximeters and
//! ventilators with patients (one compromised monitor floods the gateway)
//! and 20 infusion pumps that take a signed firmware release wave by wave
//! (one pump's new image fails its self-test and rolls back, one pump in
//! therapy is deferred and updated later). It prints what happens, then a
//! summary whose figures come from the running parts themselves.
//!
//! The default short mode ends by itself once the rollout and the attack
//! have played out (exit code 1 if a part of the story did not happen);
//! `--keep` leaves the ward running for the console until Ctrl-C. Ctrl-C
//! stops every process the demo started, in either mode.

mod ward;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::ward::Ward;

/// The ward demo: a simulated ward, a signed update rolled out wave by
/// wave, an attacker caught, all on this machine.
#[derive(Debug, Parser)]
#[command(name = "ward-demo", version, about)]
struct Args {
    /// Directory holding the `gateway`, `ota-server`, `device-sim` and
    /// `tuf-repo` binaries (default: the directory of this program).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Work folder (default: a new temporary folder, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the ward running after the summary, for the console, until
    /// Ctrl-C.
    #[arg(long)]
    keep: bool,
    /// Give up on the story after this long (`3m`, `90s`).
    #[arg(long, default_value = "4m", value_parser = humantime::parse_duration)]
    limit: Duration,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    let Some(bin_dir) = args.bin_dir.clone().or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
    }) else {
        eprintln!("ward-demo: cannot tell where the binaries are; pass --bin-dir");
        return ExitCode::from(2);
    };
    tokio::select! {
        code = run(&args, &bin_dir) => code,
        _ = tokio::signal::ctrl_c() => {
            // Dropping the ward (the future above) stops every process.
            println!("\nCtrl-C: stopping every process the demo started");
            ExitCode::from(130)
        }
    }
}

async fn run(args: &Args, bin_dir: &std::path::Path) -> ExitCode {
    let mut ward = match Ward::set_up(bin_dir, args.dir.as_deref(), args.keep).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("ward-demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let story = watch::follow(&mut ward, args.limit).await;
    let summary = match watch::summarise(&ward, &story).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ward-demo: cannot make the summary: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{summary}");
    if args.keep {
        println!(
            "\nThe ward keeps running. Console: {} (viewer token above). Ctrl-C stops it.",
            ward.console_url()
        );
        std::future::pending::<()>().await;
    }
    if summary.complete() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "ward-demo: part of the story did not happen (see above); logs are in {}",
            ward.dir().display()
        );
        ward.keep_logs();
        ExitCode::FAILURE
    }
}
