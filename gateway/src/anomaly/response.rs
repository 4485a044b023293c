//! The configured response to an alert: record it only, or quarantine the
//! device through the registry.
//!
//! Quarantine is the registry's own state: the change is audited by the
//! registry in its transaction (actor [`DETECTOR_ACTOR`], the alert id in
//! the reason) and announced to live edge sessions, which confine the
//! device at once (status, cmd and OTA only: its telemetry is refused and
//! never reaches the outbox or the uplink). Only an operator releases it
//! (`POST /api/v1/alerts/{id}/release`, audited), never the detector.

use wardgate_protocol::DeviceId;

use super::alert::Alert;
use super::store::DETECTOR_ACTOR;
use crate::config::ResponseAction;
use crate::registry::{DeviceState, Registry, RegistryError};

/// What the response did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Nothing beyond the alert.
    AlertOnly,
    /// The device was quarantined now.
    Quarantined,
    /// The device was already quarantined (or revoked): nothing changed.
    AlreadyConfined,
}

/// Apply `alert.response` to its device.
///
/// # Errors
/// A registry error (the alert stays stored; the operator sees it).
pub async fn apply(registry: &Registry, alert: &Alert) -> Result<Applied, RegistryError> {
    let (ResponseAction::Quarantine, Some(device)) = (alert.response, alert.device.as_ref()) else {
        return Ok(Applied::AlertOnly);
    };
    quarantine(registry, device, alert).await
}

async fn quarantine(
    registry: &Registry,
    device: &DeviceId,
    alert: &Alert,
) -> Result<Applied, RegistryError> {
    match registry.get_async(device.clone()).await? {
        Some(r) if r.state == DeviceState::Active => {}
        Some(_) => return Ok(Applied::AlreadyConfined),
        None => return Err(RegistryError::NotFound(device.clone())),
    }
    let reason = format!(
        "anomaly alert #{} ({}); release with POST /api/v1/alerts/{}/release",
        alert.id, alert.kind, alert.id
    );
    let changed = registry
        .set_state_async(
            device.clone(),
            DeviceState::Quarantined,
            DETECTOR_ACTOR.to_owned(),
            reason,
        )
        .await?;
    Ok(if changed.is_some() {
        Applied::Quarantined
    } else {
        Applied::AlreadyConfined
    })
}
