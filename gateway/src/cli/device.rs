//! `gateway device enroll|list|revoke|quarantine|activate`.
//!
//! Changes are written to the registry with an audit row; a running gateway
//! picks them up within [`crate::app::REGISTRY_POLL_INTERVAL`] and applies
//! them to live sessions.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use wardgate_protocol::DeviceId;

use crate::cli::ConfigArg;
use crate::registry::{DeviceState, NewDevice, Registry};

/// `gateway device ...`
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// Configuration (for the database location).
    #[command(flatten)]
    pub config: ConfigArg,
    /// What to do.
    #[command(subcommand)]
    pub command: DeviceCommand,
}

/// Device subcommands.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Enrol a device as active.
    Enroll {
        /// Device id (as in its certificate).
        #[arg(long)]
        id: String,
        /// Model.
        #[arg(long)]
        model: String,
        /// Hardware id firmware is built for.
        #[arg(long)]
        hardware_id: String,
        /// Manufacturer.
        #[arg(long)]
        manufacturer: String,
        /// Installed firmware version.
        #[arg(long)]
        firmware: String,
        /// Pin this certificate (PEM): only it will be accepted for the device.
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// List devices.
    List {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device (final): refused and disconnected at once.
    Revoke {
        /// Device id.
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Quarantine a device: it may only publish status and receive cmd / OTA.
    Quarantine {
        /// Device id.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Re-activate a quarantined device.
    Activate {
        /// Device id.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// Run a device subcommand.
///
/// # Errors
/// Invalid input or a registry error (with what to do next).
pub fn run(args: &DeviceArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (_config, db) = args.config.load_with_db()?;
    let registry = Registry::open(&db)?;
    let actor = crate::cli::access::cli_actor();
    let set = |id: &str, state, reason: &str, out: &mut dyn Write| -> anyhow::Result<()> {
        let id = DeviceId::parse(id)?;
        match registry.set_state(&id, state, &actor, reason)? {
            Some(_) => writeln!(out, "{id} is now {state}")?,
            None => writeln!(out, "{id} was already {state}")?,
        }
        Ok(())
    };
    match &args.command {
        DeviceCommand::Enroll {
            id,
            model,
            hardware_id,
            manufacturer,
            firmware,
            cert,
        } => {
            let fingerprint = match cert {
                Some(path) => {
                    let certs = wardgate_tls::pem::load_certs("--cert", path)?;
                    certs.first().map(|c| wardgate_tls::fingerprint(c))
                }
                None => None,
            };
            let rec = registry.enroll(
                &NewDevice {
                    id: DeviceId::parse(id)?,
                    model: model.clone(),
                    hardware_id: hardware_id.clone(),
                    manufacturer: manufacturer.clone(),
                    firmware_version: firmware.clone(),
                    cert_fingerprint: fingerprint,
                },
                &actor,
            )?;
            writeln!(out, "enrolled {} ({})", rec.id, rec.state)?;
        }
        DeviceCommand::List { json } => {
            for d in registry.list()? {
                if *json {
                    writeln!(out, "{}", serde_json::to_string(&d)?)?;
                } else {
                    writeln!(
                        out,
                        "{:<24} {:<12} {:<16} {:<12} {:<10} last seen {}",
                        d.id.as_str(),
                        d.state.as_str(),
                        d.model,
                        d.manufacturer,
                        d.firmware_version,
                        d.last_seen
                            .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())
                    )?;
                }
            }
        }
        DeviceCommand::Revoke { id, reason } => set(id, DeviceState::Revoked, reason, out)?,
        DeviceCommand::Quarantine { id, reason } => set(id, DeviceState::Quarantined, reason, out)?,
        DeviceCommand::Activate { id, reason } => set(id, DeviceState::Active, reason, out)?,
    }
    Ok(())
}
