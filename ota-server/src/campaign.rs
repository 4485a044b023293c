//! Update campaigns: a release, the gateways it targets, waves, a failure
//! threshold and a maintenance window.
//!
//! Gateways report their device inventory when they fetch assignments
//! ([`assignments_for`]); the campaign then assigns devices wave by wave in a
//! stable pseudo-random order (SHA-256 of campaign, gateway and device), so a
//! restart or a repeated fetch gives the same canary. A campaign only counts
//! and assigns the devices its release is built for: the hardware ids the
//! manufacturer signed ([`CampaignSpec::scoped_to_hardware`]) against the
//! hardware id each gateway reports ([`InventoryDevice`]). Devices that join
//! an inventory while the campaign runs are counted from the next sync on, so
//! they join the remaining waves. A wave advances once
//! every assigned device has a terminal result; the campaign halts as soon
//! as failures exceed `failure_threshold_percent` of the assigned devices,
//! and completes when the last wave is done. All of it lives in SQLite
//! ([`crate::db`]); [`sync`] is the single state-transition function and runs
//! inside one transaction.

use std::fmt;
use std::str::FromStr;

use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::{now_rfc3339, DbError};
use tuf_repo::TargetPath;
use wardgate_protocol::{DeviceId, GatewayId};

/// Campaign-level refusals.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// The request is not acceptable.
    #[error("{field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// What to change.
        reason: String,
    },
    /// No such campaign.
    #[error("no campaign {0}; list campaigns with GET /api/v1/campaigns")]
    NotFound(String),
    /// The operation does not apply in the campaign's state.
    #[error("campaign {id} is {state}; {what}")]
    State {
        /// Campaign id.
        id: String,
        /// Its state.
        state: String,
        /// What the caller can do.
        what: String,
    },
    /// A gateway reported on a device it was not assigned.
    #[error("device {device} of gateway {gateway} is not assigned in campaign {campaign}; report only devices from your assignments")]
    NotAssigned {
        /// Campaign.
        campaign: String,
        /// Gateway.
        gateway: String,
        /// Device.
        device: String,
    },
    /// Database failure.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<rusqlite::Error> for CampaignError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::Sql(e))
    }
}

/// The size of a wave: a device count or a percentage of all devices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WaveSize {
    /// This many devices in total (cumulative).
    Count(u32),
    /// This percentage of the campaign's devices in total (cumulative).
    Percent(f64),
}

impl WaveSize {
    /// Cumulative number of devices this wave covers out of `total`.
    #[must_use]
    pub fn devices(self, total: usize) -> usize {
        match self {
            Self::Count(n) => (n as usize).min(total),
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            Self::Percent(p) => ((total as f64 * p / 100.0).ceil() as usize).min(total),
        }
    }
}

impl FromStr for WaveSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!("{s:?} must be between 0% (exclusive) and 100%"));
            }
            return Ok(Self::Percent(p));
        }
        let n: u32 = s.parse().map_err(|_| {
            format!("{s:?} is neither a device count nor a percentage like \"10%\"")
        })?;
        if n == 0 {
            return Err("a wave of 0 devices does nothing".into());
        }
        Ok(Self::Count(n))
    }
}

impl fmt::Display for WaveSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// A daily maintenance window in UTC, `HH:MM-HH:MM` (may wrap midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceWindow {
    start: u16,
    end: u16,
}

impl MaintenanceWindow {
    /// Whether `minute_of_day` (UTC) is inside the window.
    #[must_use]
    pub fn contains(self, minute_of_day: u16) -> bool {
        if self.start <= self.end {
            (self.start..self.end).contains(&minute_of_day)
        } else {
            minute_of_day >= self.start || minute_of_day < self.end
        }
    }
}

impl FromStr for MaintenanceWindow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let hm = |x: &str| -> Option<u16> {
            let (h, m) = x.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not HH:MM-HH:MM (UTC)"))?;
        let (start, end) = (
            hm(a).ok_or_else(|| format!("{a:?} is not HH:MM"))?,
            hm(b).ok_or_else(|| format!("{b:?} is not HH:MM"))?,
        );
        if start == end {
            return Err("an empty window would never open; omit it for always".into());
        }
        Ok(Self { start, end })
    }
}

impl fmt::Display for MaintenanceWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// Body of `POST /api/v1/campaigns`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    /// Human name.
    pub name: String,
    /// The published target to roll out.
    #[schema(value_type = String, example = "acme/pump-2.0.0.bin")]
    pub target: TargetPath,
    /// Gateways (one per ward) in scope.
    #[schema(value_type = Vec<String>, example = json!(["ward-3a"]))]
    pub gateways: Vec<GatewayId>,
    /// Cumulative wave sizes, e.g. `["1", "10%", "50%", "100%"]`.
    #[schema(example = json!(["1", "100%"]))]
    pub waves: Vec<String>,
    /// Halt when failures exceed this percentage of assigned devices.
    #[schema(example = 20.0)]
    pub failure_threshold_percent: f64,
    /// Optional daily window, `HH:MM-HH:MM` UTC.
    #[serde(default)]
    pub window: Option<String>,
}

/// A checked campaign definition.
#[derive(Debug, Clone)]
pub struct CampaignSpec {
    name: String,
    target: TargetPath,
    gateways: Vec<GatewayId>,
    waves: Vec<WaveSize>,
    threshold: f64,
    window: Option<MaintenanceWindow>,
    hardware_ids: Option<Vec<String>>,
}

impl CampaignSpec {
    /// The target to roll out.
    #[must_use]
    pub fn target(&self) -> &TargetPath {
        &self.target
    }

    /// Limits the campaign to devices whose reported hardware id is one of
    /// `hardware_ids` (the release's signed `custom.hardware_ids`). Devices
    /// reported without a hardware id stay in scope, as before gateways
    /// reported one. `None` keeps every device in scope.
    #[must_use]
    pub fn scoped_to_hardware(mut self, hardware_ids: Option<Vec<String>>) -> Self {
        self.hardware_ids = hardware_ids;
        self
    }
}

impl NewCampaign {
    /// Checks the request.
    ///
    /// # Errors
    /// [`CampaignError::Invalid`] naming the field.
    pub fn validate(self) -> Result<CampaignSpec, CampaignError> {
        let bad = |field, reason: String| CampaignError::Invalid { field, reason };
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(bad("name", "must be 1 to 200 characters".into()));
        }
        if self.gateways.is_empty() {
            return Err(bad("gateways", "name at least one gateway".into()));
        }
        if self.waves.is_empty() {
            return Err(bad(
                "waves",
                "give at least one wave, e.g. [\"1\", \"100%\"]".into(),
            ));
        }
        let waves = self
            .waves
            .iter()
            .map(|w| w.parse::<WaveSize>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("waves", e))?;
        if waves.last() != Some(&WaveSize::Percent(100.0)) {
            return Err(bad("waves", "the last wave must be \"100%\"".into()));
        }
        if !(0.0..=100.0).contains(&self.failure_threshold_percent) {
            return Err(bad(
                "failure_threshold_percent",
                "must be between 0 and 100".into(),
            ));
        }
        let window = self
            .window
            .as_deref()
            .map(str::parse::<MaintenanceWindow>)
            .transpose()
            .map_err(|e| bad("window", e))?;
        let mut gateways = self.gateways;
        gateways.sort();
        gateways.dedup();
        Ok(CampaignSpec {
            name: self.name,
            target: self.target,
            gateways,
            waves,
            threshold: self.failure_threshold_percent,
            window,
            hardware_ids: None,
        })
    }
}

/// Creates a campaign (state `active`, wave 0). The target must be a
/// published release.
///
/// # Errors
/// [`CampaignError`] when the release is unknown or SQLite fails.
pub fn create(tx: &Transaction<'_>, spec: &CampaignSpec) -> Result<String, CampaignError> {
    let known: Option<String> = tx
        .query_row(
            "SELECT target FROM releases WHERE target = ?1",
            [spec.target.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    if known.is_none() {
        return Err(CampaignError::Invalid {
            field: "target",
            reason: format!(
                "{} is not a published release; list releases with GET /api/v1/releases",
                spec.target
            ),
        });
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_rfc3339();
    let waves: Vec<String> = spec.waves.iter().map(ToString::to_string).collect();
    tx.execute(
        "INSERT INTO campaigns (id, name, target, waves, failure_threshold_percent, window, state, current_wave, created_at, updated_at, hardware_ids)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'active', 0, ?7, ?7, ?8)",
        params![
            id,
            spec.name,
            spec.target.to_string(),
            serde_json::to_string(&waves).unwrap_or_default(),
            spec.threshold,
            spec.window.map(|w| w.to_string()),
            now,
            spec.hardware_ids
                .as_ref()
                .map(|h| serde_json::to_string(h).unwrap_or_default()),
        ],
    )?;
    for g in &spec.gateways {
        tx.execute(
            "INSERT INTO campaign_gateways (campaign_id, gateway_id) VALUES (?1, ?2)",
            params![id, g.as_str()],
        )?;
    }
    sync(tx, &id)?;
    Ok(id)
}

struct Row {
    waves: Vec<WaveSize>,
    threshold: f64,
    state: String,
    current_wave: usize,
}

fn load_row(tx: &Transaction<'_>, id: &str) -> Result<Row, CampaignError> {
    let r = tx
        .query_row(
            "SELECT waves, failure_threshold_percent, state, current_wave FROM campaigns WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, f64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| CampaignError::NotFound(id.to_owned()))?;
    let waves: Vec<String> = serde_json::from_str(&r.0).unwrap_or_default();
    Ok(Row {
        waves: waves.iter().filter_map(|w| w.parse().ok()).collect(),
        threshold: r.1,
        state: r.2,
        current_wave: usize::try_from(r.3).unwrap_or(0),
    })
}

/// The devices in campaign `id`'s scope: inventory of its gateways whose
/// hardware id is one the release is built for (or unknown).
fn eligible_inventory(
    tx: &Transaction<'_>,
    id: &str,
) -> Result<Vec<(String, String)>, CampaignError> {
    Ok(tx
        .prepare_cached(
            "SELECT i.gateway_id, i.device_id FROM inventory i
             JOIN campaign_gateways g ON g.gateway_id = i.gateway_id AND g.campaign_id = ?1
             JOIN campaigns c ON c.id = ?1
             WHERE c.hardware_ids IS NULL OR i.hardware_id IS NULL
                OR i.hardware_id IN (SELECT value FROM json_each(c.hardware_ids))",
        )?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?)
}

fn order_key(campaign: &str, gateway: &str, device: &str) -> String {
    hex::encode(Sha256::digest(format!("{campaign}\n{gateway}\n{device}")))
}

/// The campaign state machine: assigns devices to the current wave, halts
/// on too many failures, advances waves and completes. Idempotent.
///
/// # Errors
/// [`CampaignError`] when the campaign is unknown or SQLite fails.
pub fn sync(tx: &Transaction<'_>, id: &str) -> Result<(), CampaignError> {
    let mut row = load_row(tx, id)?;
    if row.state != "active" {
        return Ok(());
    }
    loop {
        let mut inv = eligible_inventory(tx, id)?;
        let assigned: std::collections::BTreeSet<(String, String)> = tx
            .prepare_cached("SELECT gateway_id, device_id FROM assignments WHERE campaign_id = ?1")?
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        // Every device the campaign covers: those assigned so far (even if
        // they have left an inventory since) and those still to come (even
        // if they enrolled after the campaign started).
        let total = assigned.len() + inv.iter().filter(|k| !assigned.contains(*k)).count();
        let Some(wave) = row.waves.get(row.current_wave).copied() else {
            return Ok(());
        };
        let want = wave.devices(total);
        let mut n_assigned = assigned.len();
        if n_assigned < want {
            inv.retain(|k| !assigned.contains(k));
            inv.sort_by_cached_key(|(g, d)| order_key(id, g, d));
            for (g, d) in inv.iter().take(want - n_assigned) {
                tx.execute(
                    "INSERT INTO assignments (campaign_id, gateway_id, device_id, wave) VALUES (?1, ?2, ?3, ?4)",
                    params![id, g, d, i64::try_from(row.current_wave).unwrap_or(0)],
                )?;
                n_assigned += 1;
            }
        }
        let (failures, done): (i64, i64) = tx.query_row(
            "SELECT COALESCE(SUM(outcome = 'failure'), 0), COALESCE(SUM(outcome IS NOT NULL), 0)
             FROM assignments WHERE campaign_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        #[allow(clippy::cast_precision_loss)]
        let failure_pct = if n_assigned == 0 {
            0.0
        } else {
            failures as f64 * 100.0 / n_assigned as f64
        };
        if failures > 0 && failure_pct > row.threshold {
            let reason = format!(
                "{failures} of {n_assigned} assigned devices failed ({failure_pct:.1}% > threshold {}%)",
                row.threshold
            );
            tracing::warn!(campaign_id = id, %reason, "campaign halted");
            tx.execute(
                "UPDATE campaigns SET state = 'halted', halt_reason = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, reason, now_rfc3339()],
            )?;
            return Ok(());
        }
        let all_done = n_assigned > 0 && usize::try_from(done).unwrap_or(0) == n_assigned;
        if !(all_done && n_assigned >= want) {
            return Ok(());
        }
        if row.current_wave + 1 < row.waves.len() {
            row.current_wave += 1;
            tracing::info!(
                campaign_id = id,
                wave = row.current_wave,
                "campaign advanced to next wave"
            );
            tx.execute(
                "UPDATE campaigns SET current_wave = ?2, updated_at = ?3 WHERE id = ?1",
                params![
                    id,
                    i64::try_from(row.current_wave).unwrap_or(0),
                    now_rfc3339()
                ],
            )?;
            continue;
        }
        if n_assigned >= total {
            tracing::info!(campaign_id = id, "campaign completed");
            tx.execute(
                "UPDATE campaigns SET state = 'completed', updated_at = ?2 WHERE id = ?1",
                params![id, now_rfc3339()],
            )?;
        }
        return Ok(());
    }
}

/// Pauses or resumes a campaign.
///
/// # Errors
/// [`CampaignError::State`] when the transition does not apply.
pub fn set_paused(tx: &Transaction<'_>, id: &str, pause: bool) -> Result<(), CampaignError> {
    let row = load_row(tx, id)?;
    let (from, to) = if pause {
        ("active", "paused")
    } else {
        ("paused", "active")
    };
    if row.state != from {
        return Err(CampaignError::State {
            id: id.to_owned(),
            state: row.state,
            what: format!("only a {from} campaign can become {to}"),
        });
    }
    tx.execute(
        "UPDATE campaigns SET state = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, to, now_rfc3339()],
    )?;
    sync(tx, id)
}

/// What a gateway should do for one campaign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Assignment {
    /// Campaign id.
    pub campaign_id: String,
    /// Target to install.
    pub target: String,
    /// Hex SHA-256 of the image.
    pub sha256: String,
    /// Image length.
    pub length: u64,
    /// Current wave (0-based).
    pub wave: usize,
    /// Devices of this gateway that should install now (no result yet).
    pub devices: Vec<String>,
    /// Set when installs must wait (outside the maintenance window).
    pub deferred: Option<String>,
}

/// Longest hardware id or firmware version a gateway may report.
pub const MAX_INVENTORY_TEXT: usize = 128;

/// One device of a gateway's inventory, with what the gateway's registry
/// knows of it. Gateways that report only ids (a bare string in the JSON)
/// leave the hardware id and firmware unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryDevice {
    /// Device.
    #[schema(value_type = String, example = "pump-01")]
    pub device_id: DeviceId,
    /// Hardware model the device's firmware is built for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_id: Option<String>,
    /// Firmware version the device runs (semver), as last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
}

impl From<DeviceId> for InventoryDevice {
    fn from(device_id: DeviceId) -> Self {
        Self {
            device_id,
            hardware_id: None,
            firmware_version: None,
        }
    }
}

impl InventoryDevice {
    /// Checks the free-text fields.
    ///
    /// # Errors
    /// [`CampaignError::Invalid`] naming the device and the field.
    pub fn check(&self) -> Result<(), CampaignError> {
        for (field, value) in [
            ("hardware_id", &self.hardware_id),
            ("firmware_version", &self.firmware_version),
        ] {
            if let Some(v) = value {
                if v.is_empty() || v.len() > MAX_INVENTORY_TEXT || v.chars().any(char::is_control) {
                    return Err(CampaignError::Invalid {
                        field,
                        reason: format!(
                            "device {}: must be 1 to {MAX_INVENTORY_TEXT} characters without control characters",
                            self.device_id
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Records a gateway's inventory and returns its assignments for every
/// active campaign that targets it.
///
/// # Errors
/// [`CampaignError`] when SQLite fails or a device's fields are invalid.
pub fn assignments_for(
    tx: &Transaction<'_>,
    gateway: &GatewayId,
    devices: &[InventoryDevice],
    minute_of_day: u16,
) -> Result<Vec<Assignment>, CampaignError> {
    let now = now_rfc3339();
    tx.execute(
        "DELETE FROM inventory WHERE gateway_id = ?1",
        [gateway.as_str()],
    )?;
    for d in devices {
        d.check()?;
        tx.execute(
            "INSERT OR IGNORE INTO inventory (gateway_id, device_id, seen_at, hardware_id, firmware_version)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                gateway.as_str(),
                d.device_id.as_str(),
                now,
                d.hardware_id,
                d.firmware_version
            ],
        )?;
    }
    let campaigns: Vec<(String, String, Option<String>, String, i64)> = tx
        .prepare_cached(
            "SELECT c.id, c.target, c.window, r.sha256, r.length FROM campaigns c
             JOIN campaign_gateways g ON g.campaign_id = c.id AND g.gateway_id = ?1
             JOIN releases r ON r.target = c.target
             WHERE c.state = 'active' ORDER BY c.created_at",
        )?
        .query_map([gateway.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for (id, target, window, sha256, length) in campaigns {
        sync(tx, &id)?;
        let row = load_row(tx, &id)?;
        if row.state != "active" {
            continue;
        }
        let window: Option<MaintenanceWindow> = window.and_then(|w| w.parse().ok());
        let deferred = window
            .filter(|w| !w.contains(minute_of_day))
            .map(|w| format!("outside maintenance window {w} UTC"));
        let devices = if deferred.is_some() {
            Vec::new()
        } else {
            tx.prepare_cached(
                "SELECT device_id FROM assignments WHERE campaign_id = ?1 AND gateway_id = ?2 AND outcome IS NULL ORDER BY device_id",
            )?
            .query_map(params![id, gateway.as_str()], |r| r.get(0))?
            .collect::<Result<_, _>>()?
        };
        out.push(Assignment {
            campaign_id: id,
            target,
            sha256,
            length: u64::try_from(length).unwrap_or(0),
            wave: row.current_wave,
            devices,
            deferred,
        });
    }
    Ok(out)
}

/// Outcome of one device's update, as reported by its gateway.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Installed, rebooted, reported healthy.
    Success,
    /// Failed or rolled back.
    Failure,
}

impl Outcome {
    /// Stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// One device result.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceResult {
    /// Device.
    #[schema(value_type = String, example = "pump-01")]
    pub device_id: DeviceId,
    /// Outcome.
    pub outcome: Outcome,
    /// Free text for the operator (error message, rollback reason).
    #[serde(default)]
    pub detail: String,
}

/// Records results of `gateway` for campaign `id`, then runs [`sync`].
/// All or nothing: one unassigned device refuses the whole batch.
///
/// # Errors
/// [`CampaignError::NotAssigned`], [`CampaignError::State`] or SQLite.
pub fn record_results(
    tx: &Transaction<'_>,
    id: &str,
    gateway: &GatewayId,
    results: &[DeviceResult],
) -> Result<(), CampaignError> {
    let row = load_row(tx, id)?;
    if row.state != "active" {
        return Err(CampaignError::State {
            id: id.to_owned(),
            state: row.state,
            what: "results are only taken while it is active".into(),
        });
    }
    let now = now_rfc3339();
    for r in results {
        let detail: String = r.detail.chars().take(1000).collect();
        let n = tx.execute(
            "UPDATE assignments SET outcome = ?4, detail = ?5, reported_at = ?6
             WHERE campaign_id = ?1 AND gateway_id = ?2 AND device_id = ?3",
            params![
                id,
                gateway.as_str(),
                r.device_id.as_str(),
                r.outcome.as_str(),
                detail,
                now
            ],
        )?;
        if n == 0 {
            return Err(CampaignError::NotAssigned {
                campaign: id.to_owned(),
                gateway: gateway.to_string(),
                device: r.device_id.to_string(),
            });
        }
    }
    sync(tx, id)
}

/// Aggregated counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Counts {
    /// Devices assigned so far.
    pub assigned: u64,
    /// Succeeded.
    pub success: u64,
    /// Failed.
    pub failure: u64,
    /// Assigned, no result yet.
    pub pending: u64,
}

/// Campaign status as shown by the API.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = CampaignStatus)]
pub struct Status {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Target.
    pub target: String,
    /// `active`, `paused`, `halted` or `completed`.
    pub state: String,
    /// Why it halted.
    pub halt_reason: Option<String>,
    /// Current wave (0-based).
    pub current_wave: usize,
    /// Wave sizes.
    pub waves: Vec<String>,
    /// Threshold.
    pub failure_threshold_percent: f64,
    /// Window.
    pub window: Option<String>,
    /// Gateways in scope.
    pub gateways: Vec<String>,
    /// Devices known across those gateways that the release is built for.
    pub devices_total: u64,
    /// Totals.
    pub totals: Counts,
    /// Per wave.
    pub per_wave: Vec<Counts>,
    /// Per gateway.
    pub per_gateway: std::collections::BTreeMap<String, Counts>,
    /// Created.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

/// The status of campaign `id`.
///
/// # Errors
/// [`CampaignError::NotFound`] or SQLite.
pub fn status(tx: &Transaction<'_>, id: &str) -> Result<Status, CampaignError> {
    type Head = (
        String,
        String,
        String,
        Option<String>,
        i64,
        String,
        f64,
        Option<String>,
        String,
        String,
    );
    let h: Head = tx
        .query_row(
            "SELECT name, target, state, halt_reason, current_wave, waves, failure_threshold_percent, window, created_at, updated_at
             FROM campaigns WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?,
                    r.get(7)?, r.get(8)?, r.get(9)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| CampaignError::NotFound(id.to_owned()))?;
    let waves: Vec<String> = serde_json::from_str(&h.5).unwrap_or_default();
    let gateways: Vec<String> = tx
        .prepare_cached(
            "SELECT gateway_id FROM campaign_gateways WHERE campaign_id = ?1 ORDER BY gateway_id",
        )?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let devices_total = eligible_inventory(tx, id)?.len();
    let mut totals = Counts::default();
    let mut per_wave = vec![Counts::default(); waves.len()];
    let mut per_gateway = std::collections::BTreeMap::<String, Counts>::new();
    let rows: Vec<(String, i64, Option<String>)> = tx
        .prepare_cached("SELECT gateway_id, wave, outcome FROM assignments WHERE campaign_id = ?1")?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (g, w, o) in rows {
        let bump = |c: &mut Counts| {
            c.assigned += 1;
            match o.as_deref() {
                Some("success") => c.success += 1,
                Some("failure") => c.failure += 1,
                _ => c.pending += 1,
            }
        };
        bump(&mut totals);
        if let Some(c) = usize::try_from(w).ok().and_then(|w| per_wave.get_mut(w)) {
            bump(c);
        }
        bump(per_gateway.entry(g).or_default());
    }
    Ok(Status {
        id: id.to_owned(),
        name: h.0,
        target: h.1,
        state: h.2,
        halt_reason: h.3,
        current_wave: usize::try_from(h.4).unwrap_or(0),
        waves,
        failure_threshold_percent: h.6,
        window: h.7,
        gateways,
        devices_total: u64::try_from(devices_total).unwrap_or(u64::MAX),
        totals,
        per_wave,
        per_gateway,
        created_at: h.8,
        updated_at: h.9,
    })
}

/// Ids of all campaigns, newest first.
///
/// # Errors
/// SQLite failures.
pub fn list(tx: &Transaction<'_>) -> Result<Vec<String>, CampaignError> {
    Ok(tx
        .prepare_cached("SELECT id FROM campaigns ORDER BY created_at DESC, id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> rusqlite::Connection {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        crate::db::migrations::migrate(&mut c).unwrap();
        c.execute(
            "INSERT INTO releases VALUES ('acme/fw-2.bin', 'acme', 10, 'ab', 2, 3, 'now')",
            [],
        )
        .unwrap();
        c
    }

    fn ward(name: &str) -> GatewayId {
        GatewayId::parse(name).unwrap()
    }

    /// Creates the campaign `spec` in a new transaction on `c`, which the
    /// test then drives; returns the transaction and the campaign id.
    fn start<'c>(
        c: &'c mut rusqlite::Connection,
        spec: &CampaignSpec,
    ) -> (Transaction<'c>, String) {
        let tx = c.transaction().unwrap();
        let id = create(&tx, spec).unwrap();
        (tx, id)
    }

    fn spec(threshold: f64, waves: &[&str]) -> CampaignSpec {
        NewCampaign {
            name: "t".into(),
            target: TargetPath::new("acme/fw-2.bin").unwrap(),
            gateways: vec![ward("ward-a"), ward("ward-b")],
            waves: waves.iter().map(|s| (*s).to_owned()).collect(),
            failure_threshold_percent: threshold,
            window: None,
        }
        .validate()
        .unwrap()
    }

    fn devs(prefix: &str, n: usize) -> Vec<InventoryDevice> {
        (0..n)
            .map(|i| DeviceId::parse(&format!("{prefix}-{i:02}")).unwrap().into())
            .collect()
    }

    fn ok(tx: &Transaction<'_>, id: &str, g: &GatewayId, devices: &[String], outcome: Outcome) {
        let rs: Vec<DeviceResult> = devices
            .iter()
            .map(|d| DeviceResult {
                device_id: DeviceId::parse(d).unwrap(),
                outcome,
                detail: String::new(),
            })
            .collect();
        record_results(tx, id, g, &rs).unwrap();
    }

    #[test]
    fn waves_advance_and_complete() {
        let mut c = db();
        let (tx, id) = start(&mut c, &spec(10.0, &["1", "50%", "100%"]));
        let (a, b) = (ward("ward-a"), ward("ward-b"));
        let mut got_a = assignments_for(&tx, &a, &devs("pa", 10), 600).unwrap();
        let mut got_b = assignments_for(&tx, &b, &devs("pb", 10), 600).unwrap();
        // Canary: one device in all (inventory of b arrived after a's fetch).
        let n0: usize = got_a[0].devices.len()
            + assignments_for(&tx, &b, &devs("pb", 10), 600).unwrap()[0]
                .devices
                .len();
        assert_eq!(n0, 1);
        for _ in 0..4 {
            for (g, got) in [(&a, &mut got_a), (&b, &mut got_b)] {
                *got = assignments_for(&tx, g, &devs(if g == &a { "pa" } else { "pb" }, 10), 600)
                    .unwrap();
                if let Some(x) = got.first() {
                    ok(&tx, &id, g, &x.devices, Outcome::Success);
                }
            }
        }
        let s = status(&tx, &id).unwrap();
        assert_eq!(s.state, "completed", "{s:?}");
        assert_eq!(s.totals.success, 20);
        assert_eq!(s.per_wave[0].assigned, 1);
        assert_eq!(s.per_wave[1].assigned, 9);
    }

    #[test]
    fn failure_over_threshold_halts() {
        let mut c = db();
        let (tx, id) = start(&mut c, &spec(10.0, &["1", "100%"]));
        let a = ward("ward-a");
        let got = assignments_for(&tx, &a, &devs("pa", 5), 0).unwrap();
        assert_eq!(got[0].devices.len(), 1);
        ok(&tx, &id, &a, &got[0].devices, Outcome::Failure);
        let s = status(&tx, &id).unwrap();
        assert_eq!(s.state, "halted");
        assert!(s.halt_reason.unwrap().contains("threshold"));
        assert!(assignments_for(&tx, &a, &devs("pa", 5), 0)
            .unwrap()
            .is_empty());
        // Unassigned device results are refused.
        let e = record_results(&tx, &id, &a, &[]).unwrap_err();
        assert!(matches!(e, CampaignError::State { .. }));
    }

    #[test]
    fn devices_enrolled_mid_campaign_join_the_remaining_waves() {
        let mut c = db();
        let (tx, id) = start(&mut c, &spec(50.0, &["1", "100%"]));
        let a = ward("ward-a");
        let first = devs("pa", 2);
        let got = assignments_for(&tx, &a, &first, 0).unwrap();
        let canary = got[0].devices.clone();
        assert_eq!(canary.len(), 1);
        ok(&tx, &id, &a, &canary, Outcome::Success);
        // Wave 2 (100%) holds the other device. Before it reports, the
        // canary leaves the ward (revoked) and two new devices enrol.
        let other: Vec<String> = first
            .iter()
            .map(|d| d.device_id.to_string())
            .filter(|d| !canary.contains(d))
            .collect();
        let mut now: Vec<InventoryDevice> = devs("new", 2);
        now.push(DeviceId::parse(&other[0]).unwrap().into());
        let got = assignments_for(&tx, &a, &now, 0).unwrap();
        let mut assigned = got[0].devices.clone();
        assigned.sort();
        assert_eq!(assigned, ["new-00", "new-01", other[0].as_str()]);
        ok(&tx, &id, &a, &assigned, Outcome::Success);
        let s = status(&tx, &id).unwrap();
        assert_eq!(s.state, "completed", "{s:?}");
        assert_eq!(s.totals.success, 4);
    }

    #[test]
    fn campaign_covers_only_the_hardware_its_release_is_built_for() {
        let mut c = db();
        let (tx, id) = start(
            &mut c,
            &spec(10.0, &["100%"]).scoped_to_hardware(Some(vec!["acme-pump-p7".into()])),
        );
        let a = ward("ward-a");
        let dev = |id: &str, hw: Option<&str>| InventoryDevice {
            device_id: DeviceId::parse(id).unwrap(),
            hardware_id: hw.map(str::to_owned),
            firmware_version: Some("1.0.0".into()),
        };
        let inv = vec![
            dev("pump-01", Some("acme-pump-p7")),
            dev("pump-02", Some("acme-pump-p7")),
            dev("monitor-01", Some("globex-monitor-m1")),
            dev("legacy-01", None),
        ];
        let got = assignments_for(&tx, &a, &inv, 0).unwrap();
        assert_eq!(got[0].devices, ["legacy-01", "pump-01", "pump-02"]);
        ok(&tx, &id, &a, &got[0].devices, Outcome::Success);
        let s = status(&tx, &id).unwrap();
        assert_eq!((s.state.as_str(), s.devices_total), ("completed", 3));
        // Free text from a gateway is bounded and printable.
        let mut bad = dev("pump-03", Some("acme\npump"));
        assert!(matches!(
            assignments_for(&tx, &a, std::slice::from_ref(&bad), 0),
            Err(CampaignError::Invalid {
                field: "hardware_id",
                ..
            })
        ));
        bad.hardware_id = Some("x".repeat(MAX_INVENTORY_TEXT + 1));
        assert!(bad.check().is_err());
    }

    #[test]
    fn window_defers_and_parsing() {
        let w: MaintenanceWindow = "22:00-04:00".parse().unwrap();
        assert!(w.contains(23 * 60) && w.contains(60) && !w.contains(12 * 60));
        assert!("25:00-01:00".parse::<MaintenanceWindow>().is_err());
        assert_eq!("10%".parse::<WaveSize>().unwrap().devices(15), 2);
        assert!("0".parse::<WaveSize>().is_err());
        assert!("150%".parse::<WaveSize>().is_err());
    }
}
