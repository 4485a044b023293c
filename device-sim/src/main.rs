//! `device-sim`: wiring only; see the `device_sim` library.
//!
//! Streams realistic vitals from N simulated devices to a gateway over
//! mutual TLS. Device `i` is `<prefix>-<i>` (two digits) and uses
//! `<cert-dir>/<id>.pem` and `<id>.key`, as written by `gateway pki device`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use device_sim::{DeviceOptions, DeviceTls, SimDevice, VitalsGenerator};
use wardgate_protocol::{DeviceActivity, DeviceId};

/// Simulated bedside devices streaming vitals to a Wardgate gateway.
#[derive(Debug, Parser)]
#[command(name = "device-sim", version, about)]
struct Args {
    /// Gateway host name as in its server certificate.
    #[arg(long, default_value = "localhost")]
    host: String,
    /// Gateway edge port.
    #[arg(long, default_value_t = 8883)]
    port: u16,
    /// Ward device CA (also signs the gateway's server certificate).
    #[arg(long)]
    ca: PathBuf,
    /// Directory with `<id>.pem` / `<id>.key`.
    #[arg(long)]
    cert_dir: PathBuf,
    /// Number of devices.
    #[arg(long, default_value_t = 3)]
    devices: usize,
    /// Device id prefix.
    #[arg(long, default_value = "monitor")]
    prefix: String,
    /// Interval between readings per device.
    #[arg(long, default_value = "1s", value_parser = humantime_parse)]
    interval: Duration,
    /// Stop after this many messages per device (0 = run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    count: u64,
}

fn humantime_parse(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration unit in {s}; use ms, s or m")),
    }
}

async fn device(args: &Args, i: usize) -> anyhow::Result<()> {
    let id = DeviceId::parse(&format!("{}-{i:02}", args.prefix))?;
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    };
    let tls = DeviceTls {
        ca_pem: read(args.ca.clone())?,
        cert_pem: read(args.cert_dir.join(format!("{id}.pem")))?,
        key_pem: read(args.cert_dir.join(format!("{id}.key")))?,
    };
    let opts = DeviceOptions {
        id: id.clone(),
        client_id: None,
        host: args.host.clone(),
        port: args.port,
        tls,
        keep_alive: Duration::from_secs(30),
    };
    let mut dev = SimDevice::connect(&opts)
        .await
        .with_context(|| format!("{id}: connect"))?;
    // A real device keeps its `seq` in non-volatile memory; the gateway
    // refuses any seq it has seen before, across restarts. The simulator
    // keeps no state, so it starts from the wall clock in milliseconds,
    // which grows between runs.
    let seq_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2));
    dev.set_seq(seq_start);
    dev.publish_status(DeviceActivity::Idle, "1.0.0").await?;
    let mut vitals = VitalsGenerator::new(i as u64);
    let mut sent = 0;
    let mut tick = tokio::time::interval(args.interval);
    loop {
        tick.tick().await;
        let seq = dev.publish_telemetry(vitals.next_readings()).await?;
        dev.wait_puback(Duration::from_secs(10))
            .await
            .with_context(|| format!("{id}: seq {seq}"))?;
        tracing::info!(device_id = %id, seq, "telemetry acknowledged");
        sent += 1;
        if args.count > 0 && sent >= args.count {
            dev.disconnect().await?;
            return Ok(());
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = std::sync::Arc::new(Args::parse());
    let mut set = tokio::task::JoinSet::new();
    for i in 0..args.devices {
        let a = args.clone();
        set.spawn(async move { device(&a, i).await });
    }
    let mut failed = false;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            r = set.join_next() => match r {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => { eprintln!("device-sim: {e:#}"); failed = true; }
                Some(Err(e)) => { eprintln!("device-sim: task failed: {e}"); failed = true; }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
