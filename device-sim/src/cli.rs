//! The `device-sim` command line: arguments, logging and the run that
//! `main.rs` calls.
//!
//! Logging follows the convention of every Wardgate binary: the filter comes
//! from `WARDGATE_LOG` (`tracing` `EnvFilter` syntax, default `info`); the
//! simulator has no config file, so it always logs text to stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::fleet::{self, FleetOptions};

/// Environment variable holding the log filter, as in every Wardgate binary.
pub const LOG_FILTER_ENV: &str = "WARDGATE_LOG";

/// Simulated bedside devices streaming vitals to a Wardgate gateway.
#[derive(Debug, Parser)]
#[command(name = "device-sim", version, about)]
pub struct Args {
    /// Gateway host name as in its server certificate.
    #[arg(long, default_value = "localhost")]
    pub host: String,
    /// Gateway edge port.
    #[arg(long, default_value_t = 8883)]
    pub port: u16,
    /// Ward device CA (also signs the gateway's server certificate).
    #[arg(long)]
    pub ca: PathBuf,
    /// Directory with `<id>.pem` / `<id>.key`.
    #[arg(long)]
    pub cert_dir: PathBuf,
    /// Number of devices.
    #[arg(long, default_value_t = 3)]
    pub devices: usize,
    /// Device id prefix.
    #[arg(long, default_value = "monitor")]
    pub prefix: String,
    /// Interval between readings per device (`500ms`, `1s`, `2m`; a bare
    /// number is seconds).
    #[arg(long, default_value = "1s", value_parser = interval_arg)]
    pub interval: Duration,
    /// Stop after this many messages per device (0 = run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
}

impl From<Args> for FleetOptions {
    fn from(a: Args) -> Self {
        Self {
            host: a.host,
            port: a.port,
            ca: a.ca,
            cert_dir: a.cert_dir,
            devices: a.devices,
            prefix: a.prefix,
            interval: a.interval,
            count: a.count,
        }
    }
}

/// Parses `--interval` with `humantime` (`500ms`, `1s`, `1m 30s`); a bare
/// number is seconds, as earlier versions of the simulator took it.
///
/// # Errors
/// A message saying how to write the interval, or that it must not be zero.
pub fn interval_arg(s: &str) -> Result<Duration, String> {
    let d = match s.trim().parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("{e}; write the interval like `500ms`, `1s` or `2m`"))?,
    };
    if d.is_zero() {
        return Err("the interval must be greater than zero".into());
    }
    Ok(d)
}

/// Initialises `tracing` (text on stderr), filtered by `WARDGATE_LOG`
/// (default `info`). A second call keeps the first setting.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG_FILTER_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the fleet until every device is done or Ctrl-C; prints each failed
/// device to stderr. Exit code 1 when any device failed.
pub async fn run(args: Args) -> ExitCode {
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    let signal = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let failed = fleet::run(args.into(), shutdown, |e| eprintln!("device-sim: {e}")).await;
    signal.abort();
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(interval_arg("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(interval_arg("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(interval_arg("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(interval_arg("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(interval_arg("5"), Ok(Duration::from_secs(5)));
        for bad in ["0", "0s", "", "fast", "1 parsec"] {
            assert!(interval_arg(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn arguments_parse_into_fleet_options() {
        let a = Args::try_parse_from([
            "device-sim",
            "--ca",
            "ca.pem",
            "--cert-dir",
            "certs",
            "--interval",
            "200ms",
            "--prefix",
            "Pump",
            "--devices",
            "2",
            "--count",
            "5",
        ])
        .unwrap();
        let o = FleetOptions::from(a);
        assert_eq!(o.interval, Duration::from_millis(200));
        assert_eq!((o.devices, o.count, o.port), (2, 5, 8883));
        assert_eq!(o.device_id(1).unwrap().as_str(), "Pump-01");
    }
}
