//! The `device-sim` command line: arguments, logging and the run that
//! `main.rs` calls.
//!
//! Logging follows the convention of every Wardgate binary: the filter comes
//! from `WARDGATE_LOG` (`tracing` `EnvFilter` syntax, default `info`); the
//! simulator has no config file, so it always logs text to stderr.
//!
//! With `--state-dir` each device also takes firmware updates: its NVRAM
//! (A/B slots, the pending download, the last `seq`) lives in
//! `<state-dir>/<id>`, it checks offers against `--manufacturer-key` and
//! `--hardware-id`, downloads from the gateway's image server, reboots into
//! a new session and reports; `--fault` switches make it misbehave as a
//! rollout must survive (a power loss ends the process with exit code 137,
//! as `kill -9` would; `therapy-on-offer=<duration>` starts therapy as the
//! first offer arrives, so the device, not the gateway, refuses it). Run it again on the same `--state-dir` and the
//! devices resume where they were.
//!
//! Without updates, the run ends with a load report on stdout: messages
//! acknowledged, throughput and PUBACK latency percentiles (`--duration`
//! bounds the run: load mode).
//!
//! With `--scenario` the simulator runs a ward scenario instead of a fleet
//! (a TOML file as in `device-sim/scenarios/`: device kinds with patients,
//! clinical events and labelled attacks) live against the gateway, and
//! prints what each actor saw; `--repeat` keeps the same ward streaming
//! afterwards, without the attacks, until Ctrl-C.

pub mod scenario;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use semver::Version;
use tokio_util::sync::CancellationToken;

use crate::fleet::{self, FleetOptions, FleetOta};
use crate::ota::{Factory, Fault, Faults, PowerLossMode, DEFAULT_HEALTH_WINDOW};

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
    /// Load mode: stream for this long, then print throughput and PUBACK
    /// latency percentiles (`30s`, `5m`).
    #[arg(long, value_parser = interval_arg, conflicts_with = "state_dir")]
    pub duration: Option<Duration>,
    /// Number of the first device (`<prefix>-<first>`), so that several
    /// processes can run parts of one ward.
    #[arg(long, default_value_t = 0)]
    pub first: usize,
    /// Take firmware updates: each device's NVRAM lives in
    /// `<state-dir>/<id>` (created at first boot, resumed afterwards).
    #[arg(long, requires_all = ["hardware_id", "manufacturer_key"])]
    pub state_dir: Option<PathBuf>,
    /// Hardware id the devices were built as (offers must name it).
    #[arg(long, requires = "state_dir")]
    pub hardware_id: Option<String>,
    /// The manufacturer's public key the devices were built with: the
    /// `.pub.json` that `tuf-repo keygen` wrote, or 64 hex digits.
    #[arg(long, requires = "state_dir")]
    pub manufacturer_key: Option<PathBuf>,
    /// Firmware version in slot A at first boot.
    #[arg(long, default_value = "1.0.0", requires = "state_dir")]
    pub firmware: Version,
    /// Time a newly booted image has to pass its self-test before the
    /// device rolls back.
    #[arg(long, value_parser = interval_arg, requires = "state_dir")]
    pub health_window: Option<Duration>,
    /// A fault switch, repeatable: `self-test-fails=<version|target>`,
    /// `self-test-takes=<duration>`, `power-loss-after=<bytes>` (the process
    /// ends with exit code 137 once that many image bytes are in the slot),
    /// `therapy-for=<duration>` (therapy in progress from start),
    /// `therapy-on-offer=<duration>` (therapy starts as the first offer
    /// arrives, after the last status said idle: the device refuses the
    /// offer itself, reported `deferred`).
    #[arg(long = "fault", requires = "state_dir")]
    pub faults: Vec<Fault>,
    /// Run this ward scenario (TOML, see `device-sim/scenarios/`) live
    /// instead of a fleet; its devices use `<cert-dir>/<id>.pem` and `.key`.
    #[arg(long, conflicts_with_all = ["state_dir", "count"])]
    pub scenario: Option<PathBuf>,
    /// With `--scenario`: once it has run, keep the ward streaming (the
    /// same devices and patients, without the attacks) until Ctrl-C.
    #[arg(long, requires = "scenario")]
    pub repeat: bool,
}

/// Why the arguments cannot make a fleet.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// `--manufacturer-key` cannot be read.
    #[error("cannot read --manufacturer-key {path}: {source}")]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `--manufacturer-key` is not a key.
    #[error("--manufacturer-key {path}: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Args {
    /// The fleet these arguments describe (reads `--manufacturer-key`).
    ///
    /// # Errors
    /// [`ArgsError`] naming the argument at fault.
    pub fn fleet_options(self) -> Result<FleetOptions, ArgsError> {
        let ota = match (self.state_dir, self.hardware_id, self.manufacturer_key) {
            (Some(state_dir), Some(hardware_id), Some(key_path)) => {
                let text =
                    std::fs::read_to_string(&key_path).map_err(|source| ArgsError::ReadKey {
                        path: key_path.clone(),
                        source,
                    })?;
                let manufacturer_key =
                    Factory::parse_manufacturer_key(&text).map_err(|reason| ArgsError::BadKey {
                        path: key_path.clone(),
                        reason,
                    })?;
                let mut faults: Faults = self.faults.into_iter().collect();
                // A power loss ends the process, as pulling the plug would.
                faults.power_loss_mode = PowerLossMode::ExitProcess;
                Some(FleetOta {
                    state_dir,
                    factory: Factory {
                        hardware_id,
                        manufacturer_key,
                        firmware_version: self.firmware,
                    },
                    faults,
                    health_window: self.health_window.unwrap_or(DEFAULT_HEALTH_WINDOW),
                })
            }
            _ => None,
        };
        Ok(FleetOptions {
            host: self.host,
            port: self.port,
            ca: self.ca,
            cert_dir: self.cert_dir,
            devices: self.devices,
            first: self.first,
            prefix: self.prefix,
            interval: self.interval,
            count: self.count,
            duration: self.duration,
            ota,
        })
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

/// A token cancelled on Ctrl-C, and the task watching for it (abort it
/// when the run ends first).
pub(crate) fn cancel_on_ctrl_c() -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    let signal = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    (shutdown, signal)
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
    if let Some(path) = args.scenario.clone() {
        return scenario::run(&args, &path).await;
    }
    let opts = match args.fleet_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("device-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let (shutdown, signal) = cancel_on_ctrl_c();
    let (devices, updating) = (opts.devices, opts.ota.is_some());
    let stats = std::sync::Arc::new(crate::load::LoadStats::default());
    let started = std::time::Instant::now();
    let failed = fleet::run_measured(
        opts,
        shutdown,
        |e| eprintln!("device-sim: {e}"),
        stats.clone(),
    )
    .await;
    signal.abort();
    if !updating {
        println!("{}", stats.report(devices, started.elapsed()));
    }
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
        let o = a.fleet_options().unwrap();
        assert_eq!(o.interval, Duration::from_millis(200));
        assert_eq!((o.devices, o.count, o.port), (2, 5, 8883));
        assert_eq!(o.device_id(1).unwrap().as_str(), "Pump-01");
        assert!(o.ota.is_none(), "no --state-dir: no updates");
    }

    #[test]
    fn a_scenario_run_excludes_the_fleet_switches_and_repeat_needs_one() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["device-sim", "--ca", "ca.pem", "--cert-dir", "certs"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv)
        };
        let a = parse(&["--scenario", "ward.toml", "--repeat", "--port", "9"]).unwrap();
        assert_eq!(
            a.scenario.as_deref(),
            Some(std::path::Path::new("ward.toml"))
        );
        assert!(a.repeat);
        assert!(parse(&["--repeat"]).is_err(), "--repeat without --scenario");
        assert!(parse(&["--scenario", "w.toml", "--count", "3"]).is_err());
        assert!(parse(&["--scenario", "w.toml", "--state-dir", "s"]).is_err());
    }

    #[test]
    fn update_arguments_build_the_devices_factory_and_faults() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("acme.pub.json");
        std::fs::write(
            &key,
            format!(
                r#"{{"keytype":"ed25519","scheme":"ed25519","keyval":{{"public":"{}"}}}}"#,
                hex::encode(
                    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
                        .verifying_key()
                        .to_bytes()
                )
            ),
        )
        .unwrap();
        let parse = |extra: &[&str]| {
            let mut argv = vec!["device-sim", "--ca", "ca.pem", "--cert-dir", "certs"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv)
        };
        let state = dir.path().join("nvram");
        let (s, k) = (state.to_str().unwrap(), key.to_str().unwrap());
        let a = parse(&[
            "--state-dir",
            s,
            "--hardware-id",
            "pump-x1",
            "--manufacturer-key",
            k,
            "--firmware",
            "1.2.0",
            "--first",
            "19",
            "--devices",
            "1",
            "--fault",
            "power-loss-after=4096",
            "--fault",
            "self-test-fails=3.0.0",
        ])
        .unwrap();
        let o = a.fleet_options().unwrap();
        assert_eq!(o.device_id(o.first).unwrap().as_str(), "monitor-19");
        let ota = o.ota.unwrap();
        assert_eq!(ota.state_dir, state);
        assert_eq!(ota.factory.hardware_id, "pump-x1");
        assert_eq!(ota.factory.firmware_version, Version::new(1, 2, 0));
        assert_eq!(ota.faults.power_loss_after, Some(4096));
        assert_eq!(ota.faults.power_loss_mode, PowerLossMode::ExitProcess);
        assert!(ota.faults.self_test_fails_for("x", &Version::new(3, 0, 0)));
        // Update switches need a state folder; a state folder needs the
        // factory facts; a bad fault or key is named.
        assert!(parse(&["--fault", "therapy-for=5s"]).is_err());
        assert!(parse(&["--state-dir", s]).is_err());
        let e = parse(&[
            "--state-dir",
            s,
            "--hardware-id",
            "h",
            "--manufacturer-key",
            k,
            "--fault",
            "explode=1",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("power-loss-after=<bytes>"), "{e}");
        std::fs::write(&key, "not a key").unwrap();
        let e = parse(&[
            "--state-dir",
            s,
            "--hardware-id",
            "h",
            "--manufacturer-key",
            k,
        ])
        .unwrap()
        .fleet_options()
        .unwrap_err()
        .to_string();
        assert!(e.contains("--manufacturer-key"), "{e}");
    }
}
