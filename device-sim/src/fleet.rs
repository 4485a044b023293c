//! A fleet of simulated devices streaming vitals to one gateway: what the
//! `device-sim` binary runs, here so that tests can drive it.
//!
//! Device `i` is `<prefix>-<i>` (two digits) and uses `<cert_dir>/<id>.pem`
//! and `<id>.key`, as `gateway pki device` writes them. Each device connects
//! over mutual TLS, publishes its status, then one telemetry message per
//! interval at QoS 1 and waits for the gateway's PUBACK before the next. A
//! device that fails is reported and the others keep streaming.
//!
//! With [`FleetOptions::ota`] each device instead runs the complete device
//! loop of [`crate::ota::run_device`]: its NVRAM in `<state_dir>/<id>`, boot
//! (confirming or rolling back a trial slot), telemetry, offers checked with
//! the factory's manufacturer key, download, install, reboot into a new
//! session, reports, and reconnects after a lost connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wardgate_protocol::{DeviceActivity, DeviceId, ProtocolError};

use crate::load::LoadStats;
use crate::ota::{Factory, Faults, OtaConfig, OtaError, OtaSession, RunPlan};
use crate::{DeviceOptions, DeviceTls, SimDevice, SimError, VitalsGenerator};

/// How long a device waits for the PUBACK of one reading.
const PUBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// MQTT keep-alive of every simulated device.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Firmware version the simulated devices report in their status.
const FIRMWARE_VERSION: &str = "1.0.0";
/// Wait before an updating device connects again after losing the gateway.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// How long updating devices get to end their sessions at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why one device of the fleet stopped.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A certificate, key or CA file could not be read.
    #[error("cannot read {path}: {source}; check --ca and --cert-dir (files as written by `gateway pki device`)")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `<prefix>-<i>` is not a valid device id.
    #[error("device id from --prefix: {0}")]
    DeviceId(#[source] ProtocolError),
    /// The device failed at one step.
    #[error("{device}: {step}: {source}")]
    Device {
        /// The device.
        device: DeviceId,
        /// What it was doing (`connect`, `status`, `seq 42`, ...).
        step: String,
        /// The simulator's error (boxed: it carries TLS detail).
        #[source]
        source: Box<SimError>,
    },
    /// A device's update client stopped (its state folder, TLS, or a
    /// simulated power loss in a test).
    #[error("{device}: firmware updates: {source}; check --state-dir")]
    Ota {
        /// The device.
        device: DeviceId,
        /// The update client's error.
        #[source]
        source: Box<OtaError>,
    },
    /// A device task panicked.
    #[error("device task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// How the devices of an updating fleet were built, and their faults.
#[derive(Debug, Clone)]
pub struct FleetOta {
    /// Each device's NVRAM is `<state_dir>/<id>`.
    pub state_dir: PathBuf,
    /// Hardware id, manufacturer key and first firmware.
    pub factory: Factory,
    /// Fault switches (every device of the fleet).
    pub faults: Faults,
    /// Time a newly booted image has to pass its self-test.
    pub health_window: Duration,
}

/// What the fleet does.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Gateway host name as in its server certificate.
    pub host: String,
    /// Gateway edge port.
    pub port: u16,
    /// Ward device CA (also signs the gateway's server certificate).
    pub ca: PathBuf,
    /// Directory with `<id>.pem` / `<id>.key`.
    pub cert_dir: PathBuf,
    /// Number of devices.
    pub devices: usize,
    /// Number of the first device (`<prefix>-<first>`).
    pub first: usize,
    /// Device id prefix.
    pub prefix: String,
    /// Interval between readings per device (non-zero).
    pub interval: Duration,
    /// Stop after this many messages per device (0 = until shut down).
    pub count: u64,
    /// Stop streaming after this long (load mode); `None`: as `count` says.
    pub duration: Option<Duration>,
    /// Take firmware updates (`None`: stream vitals only).
    pub ota: Option<FleetOta>,
}

impl FleetOptions {
    /// The id of device `i`: `<prefix>-<i>`, two digits.
    ///
    /// # Errors
    /// [`FleetError::DeviceId`] when the prefix makes an invalid id.
    pub fn device_id(&self, i: usize) -> Result<DeviceId, FleetError> {
        DeviceId::parse(&format!("{}-{i:02}", self.prefix)).map_err(FleetError::DeviceId)
    }

    /// The id of device `i` and its TLS material, read from `ca` and
    /// `cert_dir`.
    ///
    /// # Errors
    /// [`FleetError::DeviceId`] or [`FleetError::Read`].
    fn device(&self, i: usize) -> Result<(DeviceId, DeviceTls), FleetError> {
        let id = self.device_id(i)?;
        let tls = read_device_tls(&self.ca, &self.cert_dir, &id)?;
        Ok((id, tls))
    }

    /// The connection options of device `id` with its TLS material.
    fn device_options(&self, id: &DeviceId, tls: DeviceTls) -> DeviceOptions {
        DeviceOptions {
            id: id.clone(),
            client_id: None,
            host: self.host.clone(),
            port: self.port,
            tls,
            keep_alive: KEEP_ALIVE,
        }
    }
}

/// The CA and `<cert_dir>/<id>.pem` / `.key` of device `id`, as
/// `gateway pki device` writes them.
pub(crate) fn read_device_tls(
    ca: &Path,
    cert_dir: &Path,
    id: &DeviceId,
) -> Result<DeviceTls, FleetError> {
    Ok(DeviceTls {
        ca_pem: read(ca)?,
        cert_pem: read(&cert_dir.join(format!("{id}.pem")))?,
        key_pem: read(&cert_dir.join(format!("{id}.key")))?,
    })
}

/// Runs updating device `i` (see [`FleetOptions::ota`]) until `shutdown`,
/// or until it has sent `count` readings when `count` is not 0.
///
/// # Errors
/// [`FleetError`] naming the device: unreadable TLS files, an unusable
/// state folder.
pub async fn run_updating_device(
    opts: &FleetOptions,
    ota: &FleetOta,
    i: usize,
    shutdown: &CancellationToken,
) -> Result<(), FleetError> {
    let (id, tls) = opts.device(i)?;
    let ota_err = |source: OtaError| FleetError::Ota {
        device: id.clone(),
        source: Box::new(source),
    };
    let client_tls = crate::client_config(&tls).map_err(failed_at(&id, "TLS"))?;
    let mut config = OtaConfig::new(
        ota.state_dir.join(id.as_str()),
        ota.factory.clone(),
        Arc::new(client_tls),
    );
    config.faults = ota.faults.clone();
    config.health_window = ota.health_window;
    let mut session = OtaSession::open(config).map_err(ota_err)?;
    let device_opts = opts.device_options(&id, tls);
    let plan = RunPlan {
        telemetry_interval: Some(opts.interval),
        telemetry_count: opts.count,
        vitals_seed: i as u64,
        reconnect_delay: RECONNECT_DELAY,
    };
    let end = crate::ota::run_device(&device_opts, &mut session, &plan, shutdown)
        .await
        .map_err(ota_err)?;
    tracing::info!(device_id = %id, ?end, firmware = %session.firmware_version(), "device stopped");
    Ok(())
}

/// A [`FleetError::Device`] for `device` failing at `step`, to `map_err` a
/// [`SimError`] with.
fn failed_at(device: &DeviceId, step: impl Into<String>) -> impl FnOnce(SimError) -> FleetError {
    let device = device.clone();
    let step = step.into();
    move |source| FleetError::Device {
        device,
        step,
        source: Box::new(source),
    }
}

fn read(path: &Path) -> Result<String, FleetError> {
    std::fs::read_to_string(path).map_err(|source| FleetError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Streams device `i` until it has sent `count` readings (or forever when
/// `count` is 0).
///
/// # Errors
/// [`FleetError`] naming the device and the step that failed.
pub async fn stream_device(
    opts: &FleetOptions,
    i: usize,
    stats: &LoadStats,
) -> Result<(), FleetError> {
    let (id, tls) = opts.device(i)?;
    let device_opts = opts.device_options(&id, tls);
    let mut dev = SimDevice::connect(&device_opts)
        .await
        .map_err(failed_at(&id, "connect"))?;
    // A real device keeps its `seq` in non-volatile memory; the gateway
    // refuses any seq it has seen before, across restarts. The simulator
    // keeps no state, so it starts from the wall clock in milliseconds,
    // which grows between runs.
    let seq_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2));
    dev.set_seq(seq_start);
    dev.publish_status(DeviceActivity::Idle, FIRMWARE_VERSION)
        .await
        .map_err(failed_at(&id, "status"))?;
    let mut vitals = VitalsGenerator::new(i as u64);
    let mut sent = 0;
    let mut tick = tokio::time::interval(opts.interval);
    let until = opts.duration.map(|d| tokio::time::Instant::now() + d);
    loop {
        tick.tick().await;
        if until.is_some_and(|u| tokio::time::Instant::now() >= u) {
            dev.disconnect()
                .await
                .map_err(failed_at(&id, "disconnect"))?;
            return Ok(());
        }
        let published = std::time::Instant::now();
        let seq = dev
            .publish_telemetry(vitals.next_readings())
            .await
            .map_err(failed_at(&id, "telemetry"))?;
        dev.wait_puback(PUBACK_TIMEOUT)
            .await
            .map_err(failed_at(&id, format!("seq {seq}")))?;
        stats.record(published.elapsed());
        if opts.duration.is_some() {
            // Load mode: a line per message would cost more than the load.
            tracing::debug!(device_id = %id, seq, "telemetry acknowledged");
        } else {
            tracing::info!(device_id = %id, seq, "telemetry acknowledged");
        }
        sent += 1;
        if opts.count > 0 && sent >= opts.count {
            dev.disconnect()
                .await
                .map_err(failed_at(&id, "disconnect"))?;
            return Ok(());
        }
    }
}

/// Runs every device of the fleet until each has finished or `shutdown` is
/// cancelled (then the remaining devices are dropped, which closes their
/// connections). Each failure is handed to `on_failure` as it happens, while
/// the other devices keep streaming. Returns the number of failed devices.
pub async fn run(
    opts: FleetOptions,
    shutdown: CancellationToken,
    on_failure: impl FnMut(&FleetError),
) -> usize {
    run_measured(opts, shutdown, on_failure, Arc::default()).await
}

/// As [`run`], recording each streaming device's PUBACK latencies in
/// `stats` (load mode).
pub async fn run_measured(
    opts: FleetOptions,
    shutdown: CancellationToken,
    mut on_failure: impl FnMut(&FleetError),
    stats: Arc<LoadStats>,
) -> usize {
    let opts = Arc::new(opts);
    let mut set = tokio::task::JoinSet::new();
    for i in opts.first..opts.first.saturating_add(opts.devices) {
        let o = opts.clone();
        let stop = shutdown.child_token();
        let stats = stats.clone();
        set.spawn(async move {
            match &o.ota {
                Some(ota) => run_updating_device(&o, ota, i, &stop).await,
                None => stream_device(&o, i, &stats).await,
            }
        });
    }
    let mut failed = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                if opts.ota.is_some() {
                    // Updating devices watch the token: let them end their
                    // sessions cleanly (reports out, DISCONNECT) first.
                    let drain = async { while set.join_next().await.is_some() {} };
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, drain).await;
                }
                break;
            }
            r = set.join_next() => match r {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => { on_failure(&e); failed += 1; }
                Some(Err(e)) => { on_failure(&FleetError::Task(e)); failed += 1; }
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path, prefix: &str) -> FleetOptions {
        FleetOptions {
            host: "localhost".into(),
            port: 1,
            ca: dir.join("ca.pem"),
            cert_dir: dir.to_owned(),
            devices: 2,
            first: 0,
            prefix: prefix.into(),
            interval: Duration::from_millis(10),
            count: 1,
            duration: None,
            ota: None,
        }
    }

    #[test]
    fn device_ids_are_prefix_and_two_digits() {
        let o = opts(Path::new("/nonexistent"), "Pump");
        assert_eq!(o.device_id(7).unwrap().as_str(), "Pump-07");
        assert_eq!(o.device_id(123).unwrap().as_str(), "Pump-123");
        let bad = opts(Path::new("/nonexistent"), "bed/1");
        assert!(matches!(bad.device_id(0), Err(FleetError::DeviceId(_))));
    }

    #[tokio::test]
    async fn each_failing_device_is_reported_with_the_file_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "not used").unwrap();
        let mut seen = Vec::new();
        let failed = run(opts(dir.path(), "monitor"), CancellationToken::new(), |e| {
            seen.push(e.to_string());
        })
        .await;
        assert_eq!(failed, 2);
        seen.sort();
        for (msg, id) in seen.iter().zip(["monitor-00", "monitor-01"]) {
            assert!(msg.contains(&format!("{id}.pem")), "{msg}");
            assert!(msg.contains("--cert-dir"), "{msg}");
        }
    }

    #[tokio::test]
    async fn shutdown_stops_the_fleet() {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut o = opts(dir.path(), "monitor");
        o.devices = 0;
        assert_eq!(run(o, shutdown, |_| {}).await, 0);
    }
}
