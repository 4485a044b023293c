//! Each device's update state in each campaign, kept in the gateway's
//! SQLite so a restart resumes where it was and never updates a device
//! twice.
//!
//! The rules are one pure function, [`next_step`]: given a device's row
//! ([`DeviceUpdate`]), what just happened ([`Input`]: a status, a report, a
//! tick of the clock, an operator retry, image bytes served) and what the
//! gateway may do now ([`StepContext`]), it says which state comes next and
//! whether to send an offer. [`DeviceStates`] applies it inside one SQLite
//! transaction together with the audit row, so state and audit never
//! disagree; the offer goes out only after the new state is stored, so a
//! crash in between leaves an `offered` row that times out and offers again
//! rather than an offer the gateway forgot.
//!
//! ```text
//!  pending ──idle──▶ offered ──report──▶ downloading ──▶ installed ──▶ healthy
//!     │  ▲              │  ▲ re-offer        │ re-offer       │ timeout: status
//!  therapy│ idle     therapy│ (timeout,      (stalled)        │ shows target ─▶ healthy
//!     ▼  │              ▼  │ reconnect)                       ▼
//!   deferred ◀──────────┘                          failed / rolled_back
//! ```
//!
//! - `healthy`, `failed` and `rolled_back` are terminal in a campaign: a
//!   late or repeated report changes nothing, and only an operator retry
//!   ([`Input::Retry`]) brings a failed or rolled-back device back to
//!   `pending`. A device that rolled back is therefore never offered the
//!   same image again in that campaign by itself.
//! - A device whose status (or registry record) already shows the target
//!   version, or a newer one, goes straight to `healthy` and is never
//!   offered anything.
//! - Therapy is never interrupted: a device that says
//!   `therapy_in_progress` before it has started is `deferred`, and offered
//!   once it says `idle`. (A device already downloading defers itself and
//!   reports `deferred`.)
//! - Every waiting state has a timeout ([`Timeouts`]): see [`next_step`].

pub use crate::config::ota_rollout::Timeouts;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use semver::Version;
use serde::{Deserialize, Serialize};
use wardgate_protocol::{DeviceActivity, DeviceId, OtaOutcome};

use crate::audit::{append_in, AuditEvent, Outcome};

/// What went wrong with the rollout state.
#[derive(Debug, thiserror::Error)]
pub enum DeviceStateError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Open(#[from] crate::db::DbError),
    /// A query failed.
    #[error("OTA rollout state database error: {0}; check disk space and permissions of `storage.data_dir`")]
    Sqlite(#[from] rusqlite::Error),
    /// The audit row could not be written (the change was rolled back).
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// A stored row does not parse (the database was edited by hand).
    #[error(
        "OTA rollout state row {what} is invalid: {reason}; restore the database from a backup"
    )]
    Corrupt {
        /// Which row.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// No row for this device.
    #[error(
        "device {device} has no update in any campaign this gateway runs; see `gateway ota status`"
    )]
    NoUpdate {
        /// The device.
        device: DeviceId,
    },
    /// The operation does not apply in the device's state.
    #[error("device {device} is {state} in campaign {campaign}; {what}")]
    WrongState {
        /// The device.
        device: DeviceId,
        /// The campaign.
        campaign: String,
        /// Its state.
        state: UpdateState,
        /// What the operator can do.
        what: &'static str,
    },
    /// The connection lock was poisoned.
    #[error("OTA rollout state lock poisoned; restart the gateway")]
    Poisoned,
    /// The blocking task failed.
    #[error("OTA rollout state task failed: {0}")]
    Join(String),
}

/// A device's update state in one campaign.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    /// Assigned; waiting for the device to be seen idle.
    Pending,
    /// Offer sent; waiting for the device's first report.
    Offered,
    /// The device is downloading the image.
    Downloading,
    /// Installed into the idle slot; waiting for the health report.
    Installed,
    /// Runs the target and passed its health checks. Terminal.
    Healthy,
    /// Refused or failed. Terminal until an operator retries.
    Failed,
    /// Went back to its previous slot. Terminal until an operator retries.
    RolledBack,
    /// Waiting: therapy in progress.
    Deferred,
}

impl UpdateState {
    /// Every state, in lifecycle order.
    pub const ALL: [UpdateState; 8] = [
        Self::Pending,
        Self::Offered,
        Self::Downloading,
        Self::Installed,
        Self::Healthy,
        Self::Failed,
        Self::RolledBack,
        Self::Deferred,
    ];

    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Offered => "offered",
            Self::Downloading => "downloading",
            Self::Installed => "installed",
            Self::Healthy => "healthy",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
            Self::Deferred => "deferred",
        }
    }

    /// Parse the stored name.
    #[must_use]
    pub fn from_db(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the device is done in this campaign.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Healthy | Self::Failed | Self::RolledBack)
    }

    /// Whether the device holds an open offer (it may download the image).
    #[must_use]
    pub fn holds_offer(self) -> bool {
        matches!(self, Self::Offered | Self::Downloading | Self::Installed)
    }

    /// The outcome reported to the OTA server for a terminal state.
    #[must_use]
    pub fn server_outcome(self) -> Option<ResultOutcome> {
        match self {
            Self::Healthy => Some(ResultOutcome::Success),
            Self::Failed | Self::RolledBack => Some(ResultOutcome::Failure),
            _ => None,
        }
    }
}

impl std::fmt::Display for UpdateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device's outcome as the OTA server records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultOutcome {
    /// Installed and healthy (or already on the target).
    Success,
    /// Failed or rolled back.
    Failure,
}

/// One device's update in one campaign (a row of `ota_device_updates`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceUpdate {
    /// Campaign.
    pub campaign_id: String,
    /// Device.
    #[schema(value_type = String)]
    pub device_id: DeviceId,
    /// Wave the server assigned it in (0-based).
    pub wave: u32,
    /// Current state.
    pub state: UpdateState,
    /// When the state was entered.
    pub since: DateTime<Utc>,
    /// Last sign of progress in this state.
    pub progress_at: DateTime<Utc>,
    /// Offers sent in this attempt.
    pub offers: u32,
    /// 1 + operator retries.
    pub attempts: u32,
    /// Last reason, in operator words.
    pub detail: String,
    /// When the OTA server accepted the terminal outcome.
    pub reported_at: Option<DateTime<Utc>>,
}

/// The last status a device published, as kept by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenStatus {
    /// Device.
    pub device_id: DeviceId,
    /// What it is doing.
    pub activity: DeviceActivity,
    /// The firmware it says it runs.
    pub firmware_version: String,
    /// When the gateway received it.
    pub seen_at: DateTime<Utc>,
}

impl SeenStatus {
    /// The firmware version, if it is semver.
    #[must_use]
    pub fn version(&self) -> Option<Version> {
        Version::parse(&self.firmware_version).ok()
    }
}

/// What happened to a device.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The gateway knows the device's firmware (registry or status) when the
    /// server assigns it.
    Assigned {
        /// Firmware it runs, if known and semver.
        firmware: Option<Version>,
    },
    /// A new status from the device.
    Status {
        /// Its activity.
        activity: DeviceActivity,
        /// The firmware it says it runs, if semver.
        firmware: Option<Version>,
    },
    /// An update report for this campaign and version.
    Report {
        /// What happened.
        outcome: OtaOutcome,
        /// The device's words.
        detail: Option<String>,
    },
    /// The image server sent the device bytes of the offered image.
    ImageBytes,
    /// The clock moved on: check timeouts.
    Tick,
    /// An operator asked for another attempt.
    Retry {
        /// Who asked.
        actor: String,
    },
    /// The device can no longer take part (revoked, no longer enrolled,
    /// or hardware the target is not built for).
    Withdrawn {
        /// Why, in operator words.
        reason: String,
    },
}

/// What the gateway knows and may do for one device right now.
#[derive(Debug, Clone)]
pub struct StepContext<'a> {
    /// Now.
    pub now: DateTime<Utc>,
    /// The campaign's target version.
    pub target_version: &'a Version,
    /// Whether a new rollout step may start: the campaign is active and
    /// outside no maintenance window, the TUF metadata is fresh and the
    /// image is cached and verified.
    pub may_offer: bool,
    /// The device's last status, if any was received since the gateway
    /// started (an older one says nothing about now).
    pub status: Option<&'a SeenStatus>,
    /// The timeouts.
    pub timeouts: &'a Timeouts,
}

/// The decision for one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The state to be in (may equal the current one).
    pub state: UpdateState,
    /// Why, in operator words (kept as the row's detail).
    pub detail: String,
    /// Send (or re-send) the offer now.
    pub offer: bool,
    /// Counts as progress in the current state (restarts its timeout).
    pub progress: bool,
}

impl Step {
    fn to(state: UpdateState, detail: impl Into<String>) -> Self {
        Self {
            state,
            detail: detail.into(),
            offer: false,
            progress: true,
        }
    }

    fn offer(state: UpdateState, detail: impl Into<String>) -> Self {
        Self {
            state,
            detail: detail.into(),
            offer: true,
            progress: true,
        }
    }

    fn touch(row: &DeviceUpdate) -> Self {
        Self {
            state: row.state,
            detail: row.detail.clone(),
            offer: false,
            progress: true,
        }
    }
}

fn elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or_default()
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// The state machine: what `input` does to `row`. `None`: nothing changes.
///
/// Timeouts ([`Input::Tick`]), each counted while the gateway could act:
///
/// | state | waits for | after its timeout |
/// | --- | --- | --- |
/// | pending | the device seen idle | `failed` ("not seen idle") |
/// | offered | a report | re-offer; after `max_offers`, `failed` |
/// | downloading | progress | re-offer (the device resumes); after `max_offers`, `failed` |
/// | installed | the health report | `healthy` if its status shows the target, else `failed` |
/// | deferred | idle | `failed` ("therapy for longer than ...") |
///
/// While no rollout step may start (`may_offer` false: paused, outside the
/// window, expired metadata), `pending`, `offered` and `deferred` wait
/// without their clock running, and nothing is offered.
#[must_use]
pub fn next_step(row: &DeviceUpdate, input: &Input, ctx: &StepContext<'_>) -> Option<Step> {
    use UpdateState as S;
    if let Input::Retry { actor } = input {
        return matches!(row.state, S::Failed | S::RolledBack)
            .then(|| Step::to(S::Pending, format!("retry requested by {actor}")));
    }
    if row.state.is_terminal() {
        return None;
    }
    let target = ctx.target_version;
    match input {
        Input::Assigned { firmware } => match firmware {
            Some(v) if row.state == S::Pending && v >= target => Some(Step::to(
                S::Healthy,
                format!("already runs {v} (target {target}); nothing to install"),
            )),
            _ => None,
        },
        Input::Status { activity, firmware } => on_status(row, *activity, firmware.as_ref(), ctx),
        Input::Report { outcome, detail } => Some(on_report(row, *outcome, detail.as_deref())),
        Input::ImageBytes => match row.state {
            S::Offered => Some(Step::to(S::Downloading, "downloading the image")),
            S::Downloading => Some(Step::touch(row)),
            _ => None,
        },
        Input::Tick => on_tick(row, ctx),
        Input::Withdrawn { reason } => Some(Step::to(S::Failed, reason.clone())),
        Input::Retry { .. } => None,
    }
}

fn on_status(
    row: &DeviceUpdate,
    activity: DeviceActivity,
    firmware: Option<&Version>,
    ctx: &StepContext<'_>,
) -> Option<Step> {
    use UpdateState as S;
    let target = ctx.target_version;
    let stale_offer = elapsed(row.progress_at, ctx.now) >= ctx.timeouts.reoffer_after;
    match row.state {
        S::Pending | S::Deferred if firmware.is_some_and(|v| v >= target) => {
            let v = firmware.map(ToString::to_string).unwrap_or_default();
            Some(Step::to(
                S::Healthy,
                format!("already runs {v} (target {target}); nothing to install"),
            ))
        }
        S::Offered | S::Downloading if firmware == Some(target) => Some(Step::to(
            S::Installed,
            format!("status shows {target} running; waiting for the health report"),
        )),
        S::Pending | S::Offered if activity == DeviceActivity::TherapyInProgress => Some(Step::to(
            S::Deferred,
            "therapy in progress; the update waits until the device reports idle",
        )),
        S::Pending | S::Deferred if activity == DeviceActivity::Idle && ctx.may_offer => {
            let detail = if row.state == S::Deferred {
                "device idle again; offered"
            } else {
                "offered"
            };
            Some(Step::offer(S::Offered, detail))
        }
        // An idle device with an open offer (re)connected, or is not
        // downloading any more (a download says `updating`): offer again so
        // it resumes. Right after an offer, an idle status may predate it.
        S::Offered | S::Downloading
            if activity == DeviceActivity::Idle
                && ctx.may_offer
                && (stale_offer || row.state == S::Downloading) =>
        {
            Some(Step::offer(
                row.state,
                "device idle with the offer open; offered again",
            ))
        }
        _ => None,
    }
}

fn on_report(row: &DeviceUpdate, outcome: OtaOutcome, detail: Option<&str>) -> Step {
    use UpdateState as S;
    let said = |fallback: &str| {
        detail
            .filter(|d| !d.trim().is_empty())
            .map_or_else(|| fallback.to_owned(), str::to_owned)
    };
    let to = match outcome {
        OtaOutcome::Downloading => S::Downloading,
        OtaOutcome::Installed => S::Installed,
        OtaOutcome::Healthy => S::Healthy,
        OtaOutcome::Failed => S::Failed,
        OtaOutcome::RolledBack => S::RolledBack,
        OtaOutcome::Deferred => S::Deferred,
    };
    // A device's own deferral keeps its words even when the gateway had
    // deferred it already (its therapy status got here first).
    if to == row.state && to != S::Deferred {
        return Step::touch(row);
    }
    let fallback = match to {
        S::Downloading => "downloading the image",
        S::Installed => "installed; rebooting into the new image",
        S::Healthy => "running the target and healthy",
        S::Failed => "the device reported a failure",
        S::RolledBack => "the device rolled back to its previous image",
        S::Deferred => "the device deferred the update (therapy in progress)",
        S::Pending | S::Offered => "",
    };
    Step::to(to, said(fallback))
}

fn on_tick(row: &DeviceUpdate, ctx: &StepContext<'_>) -> Option<Step> {
    use UpdateState as S;
    let t = ctx.timeouts;
    let quiet = elapsed(row.progress_at, ctx.now);
    let in_state = elapsed(row.since, ctx.now);
    let waiting_on_gateway = matches!(row.state, S::Pending | S::Offered | S::Deferred);
    if waiting_on_gateway && !ctx.may_offer {
        // The campaign cannot move on: do not let the device's clock run.
        return (quiet >= Duration::from_secs(60)).then(|| Step {
            progress: true,
            ..Step::touch(row)
        });
    }
    match row.state {
        S::Pending if quiet >= t.pending => Some(Step::to(
            S::Failed,
            format!(
                "device not seen idle for {} (offline or in a fault); retry once it is back",
                human(t.pending)
            ),
        )),
        S::Offered | S::Downloading => {
            let limit = if row.state == S::Offered {
                t.offered
            } else {
                t.downloading
            };
            if quiet < limit {
                None
            } else if row.offers < t.max_offers && ctx.may_offer {
                Some(Step::offer(
                    row.state,
                    format!("no progress for {}; offered again", human(limit)),
                ))
            } else if row.offers >= t.max_offers {
                Some(Step::to(
                    S::Failed,
                    format!(
                        "no progress after {} offers ({} each); retry once the device is reachable",
                        row.offers,
                        human(limit)
                    ),
                ))
            } else {
                None
            }
        }
        S::Installed if in_state >= t.installed => {
            // Any status naming the target comes from after the install (the
            // target is strictly newer than what ran before), and a rollback
            // would have been followed by a status with the old version. The
            // status that moved the row to `installed` counts too: its health
            // report may have been lost with a gateway that crashed then.
            let runs_target = ctx.status.is_some_and(|s| {
                s.version().as_ref() == Some(ctx.target_version)
                    && s.activity != DeviceActivity::Fault
            });
            Some(if runs_target {
                Step::to(
                    S::Healthy,
                    format!(
                        "no health report within {}, but the device's latest status shows {} running",
                        human(t.installed),
                        ctx.target_version
                    ),
                )
            } else {
                Step::to(
                    S::Failed,
                    format!(
                        "installed but not confirmed healthy within {}",
                        human(t.installed)
                    ),
                )
            })
        }
        S::Deferred if in_state >= t.deferred => Some(Step::to(
            S::Failed,
            format!(
                "therapy in progress for longer than {}; retry once the device is idle",
                human(t.deferred)
            ),
        )),
        _ => None,
    }
}

/// A campaign as this gateway last saw it (a row of `ota_campaigns`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignRecord {
    /// Campaign id.
    pub id: String,
    /// TUF target name.
    pub target_name: String,
    /// Image SHA-256 (hex).
    pub sha256: String,
    /// Image length.
    pub length: u64,
    /// Firmware version of the verified target, once known.
    pub version: Option<String>,
    /// Current wave (0-based).
    pub wave: u32,
    /// Whether the server still hands it out.
    pub active: bool,
    /// Why installs wait (maintenance window), if they do.
    pub deferred: Option<String>,
    /// The last problem, for the operator.
    pub note: Option<String>,
    /// First seen.
    pub first_seen: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A campaign as the OTA server assigns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssignedCampaign<'a> {
    /// Campaign id.
    pub id: &'a str,
    /// TUF target name.
    pub target_name: &'a str,
    /// Image SHA-256 (hex), as the server says.
    pub sha256: &'a str,
    /// Image length, as the server says.
    pub length: u64,
    /// Current wave (0-based).
    pub wave: u32,
    /// Why installs wait, if they do.
    pub deferred: Option<&'a str>,
}

/// The result of applying one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The state before.
    pub from: UpdateState,
    /// The row after.
    pub row: DeviceUpdate,
    /// Send the offer now (the row is already `offered`).
    pub offer: bool,
}

impl Applied {
    /// Whether the state changed.
    #[must_use]
    pub fn changed(&self) -> bool {
        self.from != self.row.state
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

const SELECT_UPDATE: &str = "SELECT campaign_id, device_id, wave, state, since, progress_at, offers, attempts, detail, reported_at FROM ota_device_updates";

fn corrupt(what: String, reason: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        Box::new(std::io::Error::other(format!("{what}: {reason}"))),
    )
}

fn row_to_update(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceUpdate> {
    let campaign_id: String = r.get(0)?;
    let device: String = r.get(1)?;
    let state: String = r.get(3)?;
    let what = || format!("({campaign_id}, {device})");
    Ok(DeviceUpdate {
        device_id: DeviceId::parse(&device).map_err(|e| corrupt(what(), e.to_string()))?,
        wave: to_u32(r.get(2)?),
        state: UpdateState::from_db(&state)
            .ok_or_else(|| corrupt(what(), format!("unknown state {state}")))?,
        since: from_ms(r.get(4)?),
        progress_at: from_ms(r.get(5)?),
        offers: to_u32(r.get(6)?),
        attempts: to_u32(r.get(7)?),
        detail: r.get(8)?,
        reported_at: r.get::<_, Option<i64>>(9)?.map(from_ms),
        campaign_id,
    })
}

const SELECT_CAMPAIGN: &str = "SELECT id, target_name, sha256, length, version, wave, state, deferred, note, first_seen, updated_at FROM ota_campaigns";

fn row_to_campaign(r: &rusqlite::Row<'_>) -> rusqlite::Result<CampaignRecord> {
    let state: String = r.get(6)?;
    Ok(CampaignRecord {
        id: r.get(0)?,
        target_name: r.get(1)?,
        sha256: r.get(2)?,
        length: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
        version: r.get(4)?,
        wave: to_u32(r.get(5)?),
        active: state == "active",
        deferred: r.get(7)?,
        note: r.get(8)?,
        first_seen: from_ms(r.get(9)?),
        updated_at: from_ms(r.get(10)?),
    })
}

fn row_to_status(r: &rusqlite::Row<'_>) -> rusqlite::Result<SeenStatus> {
    let device: String = r.get(0)?;
    let activity: String = r.get(1)?;
    Ok(SeenStatus {
        device_id: DeviceId::parse(&device).map_err(|e| corrupt(device.clone(), e.to_string()))?,
        activity: serde_json::from_value(serde_json::Value::String(activity.clone()))
            .map_err(|_| corrupt(device.clone(), format!("unknown activity {activity}")))?,
        firmware_version: r.get(2)?,
        seen_at: from_ms(r.get(3)?),
    })
}

fn activity_str(a: DeviceActivity) -> &'static str {
    match a {
        DeviceActivity::Idle => "idle",
        DeviceActivity::TherapyInProgress => "therapy_in_progress",
        DeviceActivity::Updating => "updating",
        DeviceActivity::Fault => "fault",
    }
}

/// What to audit for a step, if anything: offers, deferrals (the gateway's
/// own, `info`; a device's refusal of an offer, `refused` with the device
/// as actor), outcomes and retries.
fn audit_for(applied: &Applied, input: &Input) -> Option<AuditEvent> {
    use UpdateState as S;
    let row = &applied.row;
    let gateway = || "gateway".to_owned();
    let (actor, action, outcome) = match (input, row.state) {
        (Input::Retry { actor }, _) => (actor.clone(), "ota.retry", Outcome::Allowed),
        (_, S::Offered | S::Downloading) if applied.offer => {
            (gateway(), "ota.offer", Outcome::Info)
        }
        // The device itself refused the offer (therapy started after its
        // last status said idle): its defence in depth, recorded as its
        // refusal, also when its therapy status got here first and the
        // gateway had deferred it already; offered again once it is idle.
        (
            Input::Report {
                outcome: OtaOutcome::Deferred,
                ..
            },
            S::Deferred,
        ) => (
            format!("device:{}", row.device_id),
            "ota.defer",
            Outcome::Refused,
        ),
        (_, S::Deferred) if applied.changed() => (gateway(), "ota.defer", Outcome::Info),
        (_, S::Healthy) if applied.changed() => (gateway(), "ota.result", Outcome::Allowed),
        (_, S::Failed | S::RolledBack) if applied.changed() => {
            (gateway(), "ota.result", Outcome::Refused)
        }
        _ => return None,
    };
    Some(
        AuditEvent::new(actor, action, row.device_id.as_str(), outcome).with_detail(
            serde_json::json!({
                "campaign_id": row.campaign_id,
                "from": applied.from.as_str(),
                "state": row.state.as_str(),
                "offers": row.offers,
                "attempt": row.attempts,
                "reason": row.detail,
            }),
        ),
    )
}

/// Handle on the rollout tables; cheap to clone. Methods block on SQLite:
/// call them from `spawn_blocking` or use [`DeviceStates::run`].
#[derive(Clone)]
pub struct DeviceStates {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for DeviceStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStates").finish_non_exhaustive()
    }
}

impl DeviceStates {
    /// Open the rollout state in the gateway database at `path`.
    ///
    /// # Errors
    /// [`DeviceStateError::Open`] if the database cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Self, DeviceStateError> {
        Ok(Self::from_connection(crate::db::open(path)?))
    }

    /// Wrap an already opened and migrated connection.
    #[must_use]
    pub fn from_connection(conn: Connection) -> Self {
        Self {
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, DeviceStateError> {
        self.conn.lock().map_err(|_| DeviceStateError::Poisoned)
    }

    /// Run `f` with this handle on the blocking pool.
    ///
    /// # Errors
    /// Whatever `f` returns, or [`DeviceStateError::Join`].
    pub async fn run<T, F>(&self, f: F) -> Result<T, DeviceStateError>
    where
        T: Send + 'static,
        F: FnOnce(&DeviceStates) -> Result<T, DeviceStateError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| DeviceStateError::Join(e.to_string()))?
    }

    fn immediate<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, DeviceStateError>,
    ) -> Result<T, DeviceStateError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let v = f(&tx)?;
        tx.commit()?;
        Ok(v)
    }

    /// Record (or refresh) a campaign the server assigned; marks it active.
    ///
    /// # Errors
    /// A database error.
    pub fn upsert_campaign(
        &self,
        c: &AssignedCampaign<'_>,
        now: DateTime<Utc>,
    ) -> Result<CampaignRecord, DeviceStateError> {
        self.immediate(|tx| {
            tx.execute(
                "INSERT INTO ota_campaigns (id, target_name, sha256, length, wave, state, deferred, first_seen, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, ?7, ?7)
                 ON CONFLICT (id) DO UPDATE SET target_name = ?2, sha256 = ?3, length = ?4,
                    wave = ?5, state = 'active', deferred = ?6, updated_at = ?7",
                params![
                    c.id,
                    c.target_name,
                    c.sha256,
                    i64::try_from(c.length).unwrap_or(i64::MAX),
                    i64::from(c.wave),
                    c.deferred,
                    ms(now)
                ],
            )?;
            Ok(tx.query_row(
                &format!("{SELECT_CAMPAIGN} WHERE id = ?1"),
                [c.id],
                row_to_campaign,
            )?)
        })
    }

    /// Set a campaign's verified firmware version and operator note.
    ///
    /// # Errors
    /// A database error.
    pub fn set_campaign_facts(
        &self,
        id: &str,
        version: Option<&str>,
        note: Option<&str>,
    ) -> Result<(), DeviceStateError> {
        self.lock()?.execute(
            "UPDATE ota_campaigns SET version = COALESCE(?2, version), note = ?3 WHERE id = ?1",
            params![id, version, note],
        )?;
        Ok(())
    }

    /// Mark every active campaign not in `active_ids` inactive (the server
    /// stopped handing it out: paused, halted, completed or withdrawn).
    /// Returns the ids that changed.
    ///
    /// # Errors
    /// A database error.
    pub fn deactivate_others(
        &self,
        active_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, DeviceStateError> {
        self.immediate(|tx| {
            let ids: Vec<String> = tx
                .prepare_cached("SELECT id FROM ota_campaigns WHERE state = 'active'")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut changed = Vec::new();
            for id in ids.into_iter().filter(|i| !active_ids.contains(i)) {
                tx.execute(
                    "UPDATE ota_campaigns SET state = 'inactive', deferred = NULL, updated_at = ?2 WHERE id = ?1",
                    params![id, ms(now)],
                )?;
                changed.push(id);
            }
            Ok(changed)
        })
    }

    /// One campaign.
    ///
    /// # Errors
    /// A database error.
    pub fn campaign(&self, id: &str) -> Result<Option<CampaignRecord>, DeviceStateError> {
        Ok(self
            .lock()?
            .query_row(
                &format!("{SELECT_CAMPAIGN} WHERE id = ?1"),
                [id],
                row_to_campaign,
            )
            .optional()?)
    }

    /// Every campaign, newest first.
    ///
    /// # Errors
    /// A database error.
    pub fn campaigns(&self) -> Result<Vec<CampaignRecord>, DeviceStateError> {
        let conn = self.lock()?;
        let mut stmt =
            conn.prepare_cached(&format!("{SELECT_CAMPAIGN} ORDER BY first_seen DESC, id"))?;
        let rows = stmt.query_map([], row_to_campaign)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The device's row in `campaign`, created `pending` in `wave` if the
    /// server assigns it for the first time.
    ///
    /// # Errors
    /// A database error.
    pub fn ensure_assigned(
        &self,
        campaign: &str,
        device: &DeviceId,
        wave: u32,
        now: DateTime<Utc>,
    ) -> Result<DeviceUpdate, DeviceStateError> {
        self.immediate(|tx| {
            let n = tx.execute(
                "INSERT OR IGNORE INTO ota_device_updates (campaign_id, device_id, wave, state, since, progress_at, detail)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?4, 'assigned; waiting for the device to be seen idle')",
                params![campaign, device.as_str(), i64::from(wave), ms(now)],
            )?;
            if n > 0 {
                tracing::info!(campaign_id = campaign, device_id = %device, wave, "device assigned");
            }
            Ok(tx.query_row(
                &format!("{SELECT_UPDATE} WHERE campaign_id = ?1 AND device_id = ?2"),
                params![campaign, device.as_str()],
                row_to_update,
            )?)
        })
    }

    /// One row.
    ///
    /// # Errors
    /// A database error.
    pub fn update(
        &self,
        campaign: &str,
        device: &DeviceId,
    ) -> Result<Option<DeviceUpdate>, DeviceStateError> {
        Ok(self
            .lock()?
            .query_row(
                &format!("{SELECT_UPDATE} WHERE campaign_id = ?1 AND device_id = ?2"),
                params![campaign, device.as_str()],
                row_to_update,
            )
            .optional()?)
    }

    /// Every row of `campaign`, by device.
    ///
    /// # Errors
    /// A database error.
    pub fn updates(&self, campaign: &str) -> Result<Vec<DeviceUpdate>, DeviceStateError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(&format!(
            "{SELECT_UPDATE} WHERE campaign_id = ?1 ORDER BY device_id"
        ))?;
        let rows = stmt.query_map([campaign], row_to_update)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every row not yet in a terminal state, in every campaign.
    ///
    /// # Errors
    /// A database error.
    pub fn open_updates(&self) -> Result<Vec<DeviceUpdate>, DeviceStateError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(&format!(
            "{SELECT_UPDATE} WHERE state NOT IN ('healthy', 'failed', 'rolled_back')
             ORDER BY campaign_id, device_id"
        ))?;
        let rows = stmt.query_map([], row_to_update)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The device's rows in every campaign, newest campaign first.
    ///
    /// # Errors
    /// A database error.
    pub fn updates_of(&self, device: &DeviceId) -> Result<Vec<DeviceUpdate>, DeviceStateError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(
            "SELECT u.campaign_id, u.device_id, u.wave, u.state, u.since, u.progress_at, u.offers, u.attempts, u.detail, u.reported_at
             FROM ota_device_updates u JOIN ota_campaigns c ON c.id = u.campaign_id
             WHERE u.device_id = ?1 ORDER BY c.first_seen DESC, c.id",
        )?;
        let rows = stmt.query_map([device.as_str()], row_to_update)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Apply `input` to the device's row in `campaign` (see [`next_step`]),
    /// with its audit row, in one transaction. `None` when there is no row
    /// or nothing changes.
    ///
    /// # Errors
    /// A database or audit error (nothing is changed then).
    pub fn apply(
        &self,
        campaign: &str,
        device: &DeviceId,
        input: &Input,
        ctx: &StepContext<'_>,
    ) -> Result<Option<Applied>, DeviceStateError> {
        let applied = self.immediate(|tx| {
            let Some(row) = tx
                .query_row(
                    &format!("{SELECT_UPDATE} WHERE campaign_id = ?1 AND device_id = ?2"),
                    params![campaign, device.as_str()],
                    row_to_update,
                )
                .optional()?
            else {
                return Ok(None);
            };
            let Some(step) = next_step(&row, input, ctx) else {
                return Ok(None);
            };
            let mut next = row.clone();
            let now = ctx.now;
            if step.state != row.state {
                next.since = now;
                next.progress_at = now;
            } else if step.progress {
                next.progress_at = now;
            }
            if let Input::Retry { .. } = input {
                next.offers = 0;
                next.attempts = row.attempts.saturating_add(1);
                next.reported_at = None;
            }
            if step.offer {
                next.offers = next.offers.saturating_add(1);
                next.progress_at = now;
            }
            next.state = step.state;
            next.detail = step.detail.chars().take(500).collect();
            tx.prepare_cached(
                "UPDATE ota_device_updates SET state = ?3, since = ?4, progress_at = ?5, offers = ?6,
                    attempts = ?7, detail = ?8, reported_at = ?9
                 WHERE campaign_id = ?1 AND device_id = ?2",
            )?
            .execute(params![
                campaign,
                device.as_str(),
                next.state.as_str(),
                ms(next.since),
                ms(next.progress_at),
                i64::from(next.offers),
                i64::from(next.attempts),
                next.detail,
                next.reported_at.map(ms),
            ])?;
            let applied = Applied {
                from: row.state,
                row: next,
                offer: step.offer,
            };
            if let Some(event) = audit_for(&applied, input) {
                append_in(tx, &event)?;
            }
            Ok(Some(applied))
        })?;
        if let Some(a) = applied.as_ref().filter(|a| a.changed()) {
            tracing::info!(
                campaign_id = campaign,
                device_id = %device,
                from = %a.from,
                to = %a.row.state,
                reason = %a.row.detail,
                "device update state changed"
            );
        }
        Ok(applied)
    }

    /// Rows of `campaign` in a terminal state whose outcome the OTA server
    /// has not accepted yet.
    ///
    /// # Errors
    /// A database error.
    pub fn unreported(&self, campaign: &str) -> Result<Vec<DeviceUpdate>, DeviceStateError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(&format!(
            "{SELECT_UPDATE} WHERE campaign_id = ?1 AND reported_at IS NULL
             AND state IN ('healthy', 'failed', 'rolled_back') ORDER BY device_id"
        ))?;
        let rows = stmt.query_map([campaign], row_to_update)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Note that the server accepted the outcomes of `devices` (only rows
    /// still in the state that was reported are marked).
    ///
    /// # Errors
    /// A database error.
    pub fn mark_reported(
        &self,
        campaign: &str,
        reported: &[(DeviceId, UpdateState)],
        now: DateTime<Utc>,
    ) -> Result<(), DeviceStateError> {
        self.immediate(|tx| {
            for (device, state) in reported {
                tx.prepare_cached(
                    "UPDATE ota_device_updates SET reported_at = ?4
                     WHERE campaign_id = ?1 AND device_id = ?2 AND state = ?3 AND reported_at IS NULL",
                )?
                .execute(params![campaign, device.as_str(), state.as_str(), ms(now)])?;
            }
            Ok(())
        })
    }

    /// Whether `device` holds an open offer of the image `sha256` (offered,
    /// downloading or installed in a campaign for that image).
    ///
    /// # Errors
    /// A database error.
    pub fn holds_offer(&self, device: &DeviceId, sha256: &str) -> Result<bool, DeviceStateError> {
        let conn = self.lock()?;
        let found = conn
            .prepare_cached(
                "SELECT 1 FROM ota_device_updates u JOIN ota_campaigns c ON c.id = u.campaign_id
                 WHERE u.device_id = ?1 AND c.sha256 = ?2
                   AND u.state IN ('offered', 'downloading', 'installed') LIMIT 1",
            )?
            .query_row(params![device.as_str(), sha256], |_| Ok(()))
            .optional()?;
        Ok(found.is_some())
    }

    /// The campaigns in which `device` holds an open offer of `sha256`.
    ///
    /// # Errors
    /// A database error.
    pub fn open_offers(
        &self,
        device: &DeviceId,
        sha256: &str,
    ) -> Result<Vec<String>, DeviceStateError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(
            "SELECT u.campaign_id FROM ota_device_updates u JOIN ota_campaigns c ON c.id = u.campaign_id
             WHERE u.device_id = ?1 AND c.sha256 = ?2
               AND u.state IN ('offered', 'downloading', 'installed')",
        )?;
        let rows = stmt.query_map(params![device.as_str(), sha256], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Images still needed: those of active campaigns and of any campaign
    /// with a device not yet done.
    ///
    /// # Errors
    /// A database error.
    pub fn images_in_use(&self) -> Result<Vec<String>, DeviceStateError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT c.sha256 FROM ota_campaigns c WHERE c.state = 'active'
                OR EXISTS (SELECT 1 FROM ota_device_updates u WHERE u.campaign_id = c.id
                           AND u.state NOT IN ('healthy', 'failed', 'rolled_back'))",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keep the device's latest status.
    ///
    /// # Errors
    /// A database error.
    pub fn record_status(&self, status: &SeenStatus) -> Result<(), DeviceStateError> {
        self.lock()?
            .prepare_cached(
                "INSERT INTO ota_device_status (device_id, activity, firmware_version, seen_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (device_id) DO UPDATE SET activity = ?2, firmware_version = ?3, seen_at = ?4",
            )?
            .execute(params![
                status.device_id.as_str(),
                activity_str(status.activity),
                status.firmware_version,
                ms(status.seen_at)
            ])?;
        Ok(())
    }

    /// The device's latest status.
    ///
    /// # Errors
    /// A database error.
    pub fn status(&self, device: &DeviceId) -> Result<Option<SeenStatus>, DeviceStateError> {
        Ok(self
            .lock()?
            .query_row(
                "SELECT device_id, activity, firmware_version, seen_at FROM ota_device_status WHERE device_id = ?1",
                [device.as_str()],
                row_to_status,
            )
            .optional()?)
    }

    /// Every device's latest status.
    ///
    /// # Errors
    /// A database error.
    pub fn statuses(&self) -> Result<Vec<SeenStatus>, DeviceStateError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(
            "SELECT device_id, activity, firmware_version, seen_at FROM ota_device_status ORDER BY device_id",
        )?;
        let rows = stmt.query_map([], row_to_status)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The next offer sequence number for `device`: above every one sent
    /// before, across restarts, and not below the clock in milliseconds
    /// (so a restored database does not repeat numbers either).
    ///
    /// # Errors
    /// A database error.
    pub fn next_offer_seq(
        &self,
        device: &DeviceId,
        now: DateTime<Utc>,
    ) -> Result<u64, DeviceStateError> {
        self.immediate(|tx| {
            let last: Option<i64> = tx
                .query_row(
                    "SELECT seq FROM ota_offer_seq WHERE device_id = ?1",
                    [device.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            let next = last.unwrap_or(0).saturating_add(1).max(ms(now));
            tx.execute(
                "INSERT INTO ota_offer_seq (device_id, seq) VALUES (?1, ?2)
                 ON CONFLICT (device_id) DO UPDATE SET seq = ?2",
                params![device.as_str(), next],
            )?;
            Ok(u64::try_from(next).unwrap_or(0))
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audit::AuditLog;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn row(state: UpdateState, at: i64) -> DeviceUpdate {
        DeviceUpdate {
            campaign_id: "c1".into(),
            device_id: DeviceId::parse("pump-01").unwrap(),
            wave: 0,
            state,
            since: t(at),
            progress_at: t(at),
            offers: 0,
            attempts: 1,
            detail: String::new(),
            reported_at: None,
        }
    }

    pub(crate) fn campaign<'a>(id: &'a str, sha256: &'a str) -> AssignedCampaign<'a> {
        AssignedCampaign {
            id,
            target_name: "acme/fw.bin",
            sha256,
            length: 10,
            wave: 0,
            deferred: None,
        }
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn ctx<'a>(now: i64, target: &'a Version, timeouts: &'a Timeouts) -> StepContext<'a> {
        StepContext {
            now: t(now),
            target_version: target,
            may_offer: true,
            status: None,
            timeouts,
        }
    }

    fn status(activity: DeviceActivity, fw: &str) -> Input {
        Input::Status {
            activity,
            firmware: Version::parse(fw).ok(),
        }
    }

    /// The status of an idle device still on the old firmware (1.0.0),
    /// the usual reason for an offer in these tests.
    fn idle_on_old() -> Input {
        status(DeviceActivity::Idle, "1.0.0")
    }

    fn report(outcome: OtaOutcome) -> Input {
        Input::Report {
            outcome,
            detail: None,
        }
    }

    #[test]
    fn happy_path_from_pending_to_healthy() {
        use UpdateState as S;
        let (target, to) = (v("2.0.0"), Timeouts::default());
        let c = ctx(10, &target, &to);
        let s = next_step(&row(S::Pending, 0), &idle_on_old(), &c).unwrap();
        assert_eq!((s.state, s.offer), (S::Offered, true));
        let mut r = row(S::Offered, 10);
        for (outcome, want) in [
            (OtaOutcome::Downloading, S::Downloading),
            (OtaOutcome::Installed, S::Installed),
            (OtaOutcome::Healthy, S::Healthy),
        ] {
            let s = next_step(&r, &report(outcome), &c).unwrap();
            assert_eq!((s.state, s.offer), (want, false));
            r.state = s.state;
        }
        assert_eq!(
            UpdateState::Healthy.server_outcome(),
            Some(ResultOutcome::Success)
        );
    }

    #[test]
    fn terminal_states_ignore_everything_but_an_operator_retry() {
        use UpdateState as S;
        let (target, to) = (v("2.0.0"), Timeouts::default());
        let c = ctx(1_000_000, &target, &to);
        for state in [S::Healthy, S::Failed, S::RolledBack] {
            let r = row(state, 0);
            for input in [
                idle_on_old(),
                report(OtaOutcome::Downloading),
                report(OtaOutcome::Healthy),
                Input::Tick,
                Input::ImageBytes,
            ] {
                assert_eq!(next_step(&r, &input, &c), None, "{state} {input:?}");
            }
        }
        let retry = Input::Retry {
            actor: "tok-1".into(),
        };
        assert_eq!(next_step(&row(S::Healthy, 0), &retry, &c), None);
        for state in [S::Failed, S::RolledBack] {
            let s = next_step(&row(state, 0), &retry, &c).unwrap();
            assert_eq!(s.state, S::Pending);
            assert!(s.detail.contains("tok-1"));
        }
        assert_eq!(next_step(&row(S::Offered, 0), &retry, &c), None);
        let gone = Input::Withdrawn {
            reason: "device revoked".into(),
        };
        assert_eq!(
            next_step(&row(S::Downloading, 0), &gone, &c).unwrap().state,
            S::Failed
        );
        assert_eq!(next_step(&row(S::Healthy, 0), &gone, &c), None);
    }

    #[test]
    fn a_device_on_the_target_is_never_offered() {
        use UpdateState as S;
        let (target, to) = (v("2.0.0"), Timeouts::default());
        let c = ctx(10, &target, &to);
        for fw in ["2.0.0", "2.1.0"] {
            let s = next_step(
                &row(S::Pending, 0),
                &Input::Assigned {
                    firmware: Some(v(fw)),
                },
                &c,
            )
            .unwrap();
            assert_eq!((s.state, s.offer), (S::Healthy, false));
            let s = next_step(&row(S::Deferred, 0), &status(DeviceActivity::Idle, fw), &c).unwrap();
            assert_eq!((s.state, s.offer), (S::Healthy, false));
        }
        assert_eq!(
            next_step(
                &row(S::Pending, 0),
                &Input::Assigned {
                    firmware: Some(v("1.9.9"))
                },
                &c
            ),
            None
        );
        // After an offer, the new version in a status is an install that
        // still needs its health report.
        let s = next_step(
            &row(S::Downloading, 0),
            &status(DeviceActivity::Idle, "2.0.0"),
            &c,
        )
        .unwrap();
        assert_eq!(s.state, S::Installed);
    }

    #[test]
    fn therapy_defers_and_idle_offers() {
        use UpdateState as S;
        let (target, to) = (v("2.0.0"), Timeouts::default());
        let c = ctx(10, &target, &to);
        let therapy = status(DeviceActivity::TherapyInProgress, "1.0.0");
        for state in [S::Pending, S::Offered] {
            let s = next_step(&row(state, 0), &therapy, &c).unwrap();
            assert_eq!((s.state, s.offer), (S::Deferred, false));
            assert!(s.detail.contains("therapy"));
        }
        assert_eq!(next_step(&row(S::Deferred, 0), &therapy, &c), None);
        // A device mid-download defers itself (and reports it).
        assert_eq!(next_step(&row(S::Downloading, 0), &therapy, &c), None);
        let s = next_step(&row(S::Downloading, 0), &report(OtaOutcome::Deferred), &c).unwrap();
        assert_eq!(s.state, S::Deferred);
        let s = next_step(&row(S::Deferred, 0), &idle_on_old(), &c).unwrap();
        assert_eq!((s.state, s.offer), (S::Offered, true));
        // Nothing is offered while no step may start.
        let mut closed = c.clone();
        closed.may_offer = false;
        assert_eq!(
            next_step(&row(S::Deferred, 0), &idle_on_old(), &closed),
            None
        );
    }

    #[test]
    fn an_idle_device_with_an_open_offer_is_offered_again() {
        use UpdateState as S;
        let (target, to) = (v("2.0.0"), Timeouts::default());
        let idle = idle_on_old();
        let soon = ctx(5, &target, &to);
        assert_eq!(next_step(&row(S::Offered, 0), &idle, &soon), None);
        // Idle mid-download: the download stopped (a power loss); resume.
        let s = next_step(&row(S::Downloading, 0), &idle, &soon).unwrap();
        assert_eq!((s.state, s.offer), (S::Downloading, true));
        let later = ctx(60, &target, &to);
        for state in [S::Offered, S::Downloading] {
            let s = next_step(&row(state, 0), &idle, &later).unwrap();
            assert_eq!((s.state, s.offer), (state, true));
        }
        assert_eq!(next_step(&row(S::Installed, 0), &idle, &later), None);
    }

    #[test]
    fn every_waiting_state_times_out() {
        use UpdateState as S;
        let (target, to) = (v("2.0.0"), Timeouts::default());
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap();
        let before = |d| ctx(secs(d) - 1, &target, &to);
        let after = |d| ctx(secs(d) + 1, &target, &to);
        for (state, limit) in [
            (S::Pending, to.pending),
            (S::Offered, to.offered),
            (S::Downloading, to.downloading),
            (S::Installed, to.installed),
            (S::Deferred, to.deferred),
        ] {
            assert_eq!(
                next_step(&row(state, 0), &Input::Tick, &before(limit)),
                None
            );
            let s = next_step(&row(state, 0), &Input::Tick, &after(limit)).unwrap();
            match state {
                S::Offered | S::Downloading => assert_eq!((s.state, s.offer), (state, true)),
                _ => assert_eq!((s.state, s.offer), (S::Failed, false), "{state}"),
            }
        }
        // Re-offers are bounded.
        let mut r = row(S::Offered, 0);
        r.offers = to.max_offers;
        let s = next_step(&r, &Input::Tick, &after(to.offered)).unwrap();
        assert_eq!(s.state, S::Failed);
        assert!(s.detail.contains("offers"), "{}", s.detail);
        // No health report, but the device's status since shows the target.
        let seen = SeenStatus {
            device_id: r.device_id.clone(),
            activity: DeviceActivity::Idle,
            firmware_version: "2.0.0".into(),
            seen_at: t(30),
        };
        let mut c = after(to.installed);
        c.status = Some(&seen);
        let s = next_step(&row(S::Installed, 0), &Input::Tick, &c).unwrap();
        assert_eq!(s.state, S::Healthy);
        // While the campaign cannot proceed, waiting on the gateway is not
        // the device's fault: its clock does not run.
        let mut closed = after(to.pending);
        closed.may_offer = false;
        let s = next_step(&row(S::Pending, 0), &Input::Tick, &closed).unwrap();
        assert_eq!((s.state, s.progress), (S::Pending, true));
    }

    #[test]
    fn store_applies_steps_with_audit_and_survives_reopening() {
        use UpdateState as S;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db");
        let store = DeviceStates::open(&path).unwrap();
        let (target, to) = (v("2.0.0"), Timeouts::default());
        let dev = DeviceId::parse("pump-01").unwrap();
        store
            .upsert_campaign(&campaign("c1", &"ab".repeat(32)), t(0))
            .unwrap();
        let r = store.ensure_assigned("c1", &dev, 0, t(0)).unwrap();
        assert_eq!(r.state, S::Pending);
        // Assigning again keeps the row.
        assert_eq!(store.ensure_assigned("c1", &dev, 1, t(5)).unwrap(), r);
        let c = ctx(10, &target, &to);
        let a = store
            .apply("c1", &dev, &idle_on_old(), &c)
            .unwrap()
            .unwrap();
        assert!(a.offer && a.changed());
        assert_eq!((a.row.state, a.row.offers), (S::Offered, 1));
        assert!(store.holds_offer(&dev, &"ab".repeat(32)).unwrap());
        assert!(!store.holds_offer(&dev, &"cd".repeat(32)).unwrap());
        store
            .apply("c1", &dev, &report(OtaOutcome::RolledBack), &c)
            .unwrap()
            .unwrap();
        assert!(!store.holds_offer(&dev, &"ab".repeat(32)).unwrap());
        drop(store);

        // A restart: the row is where it was, and rolled back stays so.
        let store = DeviceStates::open(&path).unwrap();
        let r = store.update("c1", &dev).unwrap().unwrap();
        assert_eq!(r.state, S::RolledBack);
        assert!(store
            .apply("c1", &dev, &idle_on_old(), &c)
            .unwrap()
            .is_none());
        assert_eq!(store.unreported("c1").unwrap().len(), 1);
        store
            .mark_reported("c1", &[(dev.clone(), S::RolledBack)], t(11))
            .unwrap();
        assert!(store.unreported("c1").unwrap().is_empty());
        // An operator retry reopens it, to be reported again.
        let a = store
            .apply(
                "c1",
                &dev,
                &Input::Retry {
                    actor: "tok-9".into(),
                },
                &c,
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.row.state, a.row.attempts, a.row.offers),
            (S::Pending, 2, 0)
        );
        assert!(a.row.reported_at.is_none());

        let audit = AuditLog::open(&path).unwrap();
        let actions: Vec<String> = audit
            .find("pump-01", None)
            .unwrap()
            .into_iter()
            .map(|r| r.action)
            .collect();
        assert_eq!(actions, ["ota.offer", "ota.result", "ota.retry"]);
        assert!(audit.verify().unwrap().is_intact());

        // Offer sequence numbers only rise, across handles.
        let a = store.next_offer_seq(&dev, t(0)).unwrap();
        let b = DeviceStates::open(&path)
            .unwrap()
            .next_offer_seq(&dev, t(0))
            .unwrap();
        assert!(b > a);
        assert_eq!(store.images_in_use().unwrap(), vec!["ab".repeat(32)]);
        assert_eq!(
            store.deactivate_others(&[], t(20)).unwrap(),
            vec!["c1".to_owned()]
        );
    }
}
