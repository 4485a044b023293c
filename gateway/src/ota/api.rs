//! Rollout progress for the admin API and the CLI, and the operator's
//! retry.
//!
//! - [`status`] is what `GET /api/v1/ota/status` serves and
//!   `gateway ota status` prints: every campaign this gateway was assigned
//!   (target, version, wave, whether the server still hands it out, why it
//!   waits), the count of devices per state and each device's state, with
//!   the device's last status. It reads only the database, so the CLI works
//!   beside a running gateway.
//! - [`retry`] is `POST /api/v1/ota/devices/{id}/retry` (operator): a
//!   device that failed or rolled back in a campaign still running gets
//!   another attempt, audited with the operator's identity. Nothing else
//!   ever offers such a device the same image again.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use semver::Version;
use serde::{Deserialize, Serialize};
use wardgate_protocol::{DeviceActivity, DeviceId};

use crate::ota::device_state::{
    DeviceStateError, DeviceStates, DeviceUpdate, Input, StepContext, Timeouts, UpdateState,
};

/// One device in a campaign, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceProgress {
    /// Device.
    #[schema(value_type = String)]
    pub device_id: DeviceId,
    /// Update state.
    pub state: UpdateState,
    /// Wave it was assigned in (0-based).
    pub wave: u32,
    /// Since when.
    pub since: DateTime<Utc>,
    /// Why, in words.
    pub detail: String,
    /// Offers sent in this attempt.
    pub offers: u32,
    /// 1 + operator retries.
    pub attempts: u32,
    /// Whether the OTA server has the outcome.
    pub reported: bool,
    /// What the device last said it was doing.
    #[schema(value_type = Option<String>, pattern = "^(idle|therapy_in_progress|updating|fault)$")]
    pub activity: Option<DeviceActivity>,
    /// The firmware it last said it runs.
    pub firmware_version: Option<String>,
    /// When that was.
    pub status_seen_at: Option<DateTime<Utc>>,
}

/// One campaign, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignProgress {
    /// Campaign id.
    pub campaign_id: String,
    /// TUF target.
    pub target: String,
    /// Firmware version, once verified.
    pub version: Option<String>,
    /// Image SHA-256.
    pub sha256: String,
    /// Current wave (0-based).
    pub wave: u32,
    /// `active` while the OTA server hands it out, else `inactive`
    /// (paused, halted or completed there).
    pub state: String,
    /// Why installs wait (maintenance window), if they do.
    pub deferred: Option<String>,
    /// The last problem (unverifiable target, refused results).
    pub note: Option<String>,
    /// Devices per update state.
    pub counts: BTreeMap<UpdateState, u64>,
    /// Every device, by id.
    pub devices: Vec<DeviceProgress>,
    /// Last change from the server.
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/v1/ota/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OtaStatus {
    /// Campaigns, newest first.
    pub campaigns: Vec<CampaignProgress>,
}

/// Progress of every campaign (reads the database; blocking).
///
/// # Errors
/// A database error.
pub fn status(states: &DeviceStates) -> Result<OtaStatus, DeviceStateError> {
    let seen: HashMap<DeviceId, _> = states
        .statuses()?
        .into_iter()
        .map(|s| (s.device_id.clone(), s))
        .collect();
    let mut campaigns = Vec::new();
    for c in states.campaigns()? {
        let mut counts = BTreeMap::new();
        let devices: Vec<DeviceProgress> = states
            .updates(&c.id)?
            .into_iter()
            .map(|u| {
                *counts.entry(u.state).or_insert(0) += 1;
                let s = seen.get(&u.device_id);
                DeviceProgress {
                    state: u.state,
                    wave: u.wave,
                    since: u.since,
                    detail: u.detail,
                    offers: u.offers,
                    attempts: u.attempts,
                    reported: u.reported_at.is_some(),
                    activity: s.map(|s| s.activity),
                    firmware_version: s.map(|s| s.firmware_version.clone()),
                    status_seen_at: s.map(|s| s.seen_at),
                    device_id: u.device_id,
                }
            })
            .collect();
        campaigns.push(CampaignProgress {
            campaign_id: c.id,
            target: c.target_name,
            version: c.version,
            sha256: c.sha256,
            wave: c.wave,
            state: if c.active { "active" } else { "inactive" }.to_owned(),
            deferred: c.deferred,
            note: c.note,
            counts,
            devices,
            updated_at: c.updated_at,
        });
    }
    Ok(OtaStatus { campaigns })
}

/// Why a retry was refused.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// The database failed.
    #[error(transparent)]
    State(#[from] DeviceStateError),
    /// Nothing to retry.
    #[error("device {device} has not failed or rolled back in a campaign this gateway runs; see `gateway ota status`")]
    NothingToRetry {
        /// The device.
        device: DeviceId,
    },
    /// The campaign no longer runs at the OTA server.
    #[error("campaign {campaign} is no longer handed out by the OTA server (paused, halted or completed); resume it there before retrying device {device}")]
    CampaignStopped {
        /// The device.
        device: DeviceId,
        /// The campaign.
        campaign: String,
    },
}

impl RetryError {
    /// A stable code for API clients (`nothing_to_retry` -> 404,
    /// `campaign_stopped` -> 409, `internal` -> 500).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::State(_) => "internal",
            Self::NothingToRetry { .. } => "nothing_to_retry",
            Self::CampaignStopped { .. } => "campaign_stopped",
        }
    }
}

/// Give `device` another attempt in the newest campaign where it failed or
/// rolled back; `actor` (e.g. `admin:<token id>`) is audited. The device
/// goes back to `pending` and is offered once seen idle; its new outcome
/// replaces the old one at the server.
///
/// # Errors
/// [`RetryError`] saying why not.
pub fn retry(
    states: &DeviceStates,
    device: &DeviceId,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<DeviceUpdate, RetryError> {
    let candidate = states
        .updates_of(device)?
        .into_iter()
        .find(|u| matches!(u.state, UpdateState::Failed | UpdateState::RolledBack))
        .ok_or_else(|| RetryError::NothingToRetry {
            device: device.clone(),
        })?;
    let campaign =
        states
            .campaign(&candidate.campaign_id)?
            .ok_or_else(|| RetryError::NothingToRetry {
                device: device.clone(),
            })?;
    if !campaign.active {
        return Err(RetryError::CampaignStopped {
            device: device.clone(),
            campaign: campaign.id,
        });
    }
    // A retry does not depend on the target version or the timeouts.
    let (version, timeouts) = (
        campaign
            .version
            .as_deref()
            .and_then(|v| Version::parse(v).ok())
            .unwrap_or_else(|| Version::new(0, 0, 0)),
        Timeouts::default(),
    );
    let ctx = StepContext {
        now,
        target_version: &version,
        may_offer: false,
        status: None,
        timeouts: &timeouts,
    };
    let applied = states
        .apply(
            &campaign.id,
            device,
            &Input::Retry {
                actor: actor.to_owned(),
            },
            &ctx,
        )?
        .ok_or_else(|| RetryError::NothingToRetry {
            device: device.clone(),
        })?;
    tracing::info!(device_id = %device, campaign_id = %campaign.id, %actor, "operator retry");
    Ok(applied.row)
}

/// `gateway ota status` as text: one block per campaign.
#[must_use]
pub fn render_text(s: &OtaStatus) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if s.campaigns.is_empty() {
        out.push_str("no campaigns assigned to this gateway yet\n");
    }
    for c in &s.campaigns {
        let _ = writeln!(
            out,
            "campaign {} ({}) target {} version {} wave {}",
            c.campaign_id,
            c.state,
            c.target,
            c.version.as_deref().unwrap_or("unverified"),
            c.wave + 1
        );
        if let Some(d) = &c.deferred {
            let _ = writeln!(out, "  waiting: {d}");
        }
        if let Some(n) = &c.note {
            let _ = writeln!(out, "  problem: {n}");
        }
        let counts: Vec<String> = c.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "  devices: {}", counts.join(", "));
        for d in &c.devices {
            let _ = writeln!(
                out,
                "  {:<24} {:<12} wave {:<3} offers {:<2} {}{}",
                d.device_id.as_str(),
                d.state.as_str(),
                d.wave + 1,
                d.offers,
                d.detail,
                if d.state.is_terminal() && !d.reported {
                    " (not yet reported to the OTA server)"
                } else {
                    ""
                }
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_only_failed_devices_of_running_campaigns() {
        let dir = tempfile::tempdir().unwrap();
        let states = DeviceStates::open(&dir.path().join("gw.db")).unwrap();
        let dev = DeviceId::parse("pump-01").unwrap();
        let now = Utc::now();
        states
            .upsert_campaign(
                &crate::ota::device_state::tests::campaign("c1", &"ab".repeat(32)),
                now,
            )
            .unwrap();
        states
            .set_campaign_facts("c1", Some("2.0.0"), None)
            .unwrap();
        states.ensure_assigned("c1", &dev, 0, now).unwrap();
        assert!(matches!(
            retry(&states, &dev, "admin:t1", now),
            Err(RetryError::NothingToRetry { .. })
        ));
        let target = Version::new(2, 0, 0);
        let timeouts = Timeouts::default();
        let ctx = StepContext {
            now,
            target_version: &target,
            may_offer: true,
            status: None,
            timeouts: &timeouts,
        };
        states
            .apply(
                "c1",
                &dev,
                &Input::Report {
                    outcome: wardgate_protocol::OtaOutcome::RolledBack,
                    detail: Some("self-test failed".into()),
                },
                &ctx,
            )
            .unwrap();
        let st = status(&states).unwrap();
        assert_eq!(st.campaigns[0].counts[&UpdateState::RolledBack], 1);
        assert!(render_text(&st).contains("rolled_back"));
        states.deactivate_others(&[], now).unwrap();
        assert!(matches!(
            retry(&states, &dev, "admin:t1", now),
            Err(RetryError::CampaignStopped { .. })
        ));
        states
            .upsert_campaign(
                &crate::ota::device_state::tests::campaign("c1", &"ab".repeat(32)),
                now,
            )
            .unwrap();
        let row = retry(&states, &dev, "admin:t1", now).unwrap();
        assert_eq!((row.state, row.attempts), (UpdateState::Pending, 2));
    }
}
