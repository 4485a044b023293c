//! The update client of one device: from an offer to a healthy new slot,
//! or to a refusal or rollback, each reported in operator words.
//!
//! [`OtaClient::handle_offer`] runs the device side of DESIGN data flow 2:
//!
//! 1. check the offer with [`wardgate_protocol::verify_offer`] against the
//!    manufacturer key and hardware id the device was built with
//!    (signature, expiry, hardware id, strictly newer, `min_version`):
//!    a foreign, older or edited offer is reported `failed`;
//! 2. refuse while therapy is in progress: reported `deferred`, because
//!    nothing is wrong with the offer and the gateway's update agent offers
//!    it again once the device reports `idle` (the gateway also holds
//!    offers back itself; this is the device's own defence in depth);
//! 3. download into the idle slot over mutual TLS, resuming what an earlier
//!    attempt or process left there ([`crate::ota::download`]), reported
//!    `downloading`;
//! 4. check the slot against the signed length and SHA-256
//!    ([`wardgate_protocol::ImageCheck`]); a tampered image is erased and
//!    reported `failed`;
//! 5. mark the slot for a trial boot and report `installed`; the caller
//!    then "reboots": it ends the MQTT session, calls [`OtaClient::boot`]
//!    and connects again, reporting the new version in `status`.
//!
//! [`OtaClient::boot`] runs the self-test of a trial slot within the health
//! window: it passes (`healthy`, the new slot becomes the active one), or
//! it fails or takes too long, or the device restarted during it
//! (`rolled_back`, the previous slot stays active).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ed25519_dalek::VerifyingKey;
use semver::Version;
use tokio::sync::mpsc;
use wardgate_protocol::message::MAX_TEXT;
use wardgate_protocol::{verify_offer, OtaOffer, OtaOutcome, OtaReport, SCHEMA_VERSION};

use crate::ota::download::{erase_slot, DownloadError, DownloadSettings, Downloader};
use crate::ota::error::OtaError;
use crate::ota::faults::Faults;
use crate::ota::nvram::{Factory, Nvram, PendingUpdate, Trial};
use crate::ota::selftest::self_test;
use crate::ota::slot::{check_slot_file_async, Slot, SlotCheckError, SlotImage};
use crate::ota::therapy::Therapy;

/// How long a newly booted image has to pass its self-test by default.
pub const DEFAULT_HEALTH_WINDOW: Duration = Duration::from_secs(60);

/// Everything one device's update client needs.
#[derive(Debug, Clone)]
pub struct OtaConfig {
    /// The device's state folder (its NVRAM).
    pub state_dir: PathBuf,
    /// How the device was built (used at first boot, checked later).
    pub factory: Factory,
    /// TLS for image downloads: the device certificate and the ward CA
    /// (for example [`crate::client_config`] of the device's material).
    pub tls: Arc<rustls::ClientConfig>,
    /// Fault switches.
    pub faults: Faults,
    /// Time a newly booted image has to pass its self-test.
    pub health_window: Duration,
    /// Download timeouts and retries.
    pub download: DownloadSettings,
}

impl OtaConfig {
    /// A configuration with the default health window and download
    /// settings and no faults.
    #[must_use]
    pub fn new(state_dir: PathBuf, factory: Factory, tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            state_dir,
            factory,
            tls,
            faults: Faults::default(),
            health_window: DEFAULT_HEALTH_WINDOW,
            download: DownloadSettings::default(),
        }
    }
}

/// A report for `.../ota/report`, before it gets its `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateReport {
    /// Campaign reported on.
    pub campaign_id: String,
    /// Version concerned.
    pub version: String,
    /// What happened.
    pub outcome: OtaOutcome,
    /// What happened, in operator words (at most `MAX_TEXT` bytes, no
    /// control characters).
    pub detail: Option<String>,
}

impl UpdateReport {
    /// A report with `detail` made fit for the wire (control characters
    /// replaced, cut to `MAX_TEXT` bytes on a character boundary).
    #[must_use]
    pub fn new(campaign_id: &str, version: &str, outcome: OtaOutcome, detail: &str) -> Self {
        let clean = |s: &str| {
            let mut out = String::new();
            for c in s.chars() {
                let c = if c.is_control() { ' ' } else { c };
                if out.len() + c.len_utf8() > MAX_TEXT {
                    break;
                }
                out.push(c);
            }
            out
        };
        Self {
            campaign_id: clean(campaign_id),
            version: clean(version),
            outcome,
            detail: Some(clean(detail)),
        }
    }

    /// [`UpdateReport::new`] for `offer`'s campaign and version.
    #[must_use]
    pub fn on_offer(offer: &OtaOffer, outcome: OtaOutcome, detail: &str) -> Self {
        Self::new(&offer.campaign_id, &offer.version, outcome, detail)
    }

    /// The wire message with `seq`.
    #[must_use]
    pub fn to_message(&self, seq: u64) -> OtaReport {
        OtaReport {
            schema: SCHEMA_VERSION,
            seq,
            ts: Utc::now(),
            campaign_id: self.campaign_id.clone(),
            version: self.version.clone(),
            outcome: self.outcome,
            detail: self.detail.clone(),
        }
    }
}

/// Where [`OtaClient::handle_offer`] sends its reports as they happen.
pub trait ReportSink {
    /// Take one report (never fails: a report that cannot be delivered is
    /// the session's concern).
    fn report(&mut self, report: UpdateReport) -> impl Future<Output = ()> + Send;
}

/// Collects reports (tests, tools).
impl ReportSink for Vec<UpdateReport> {
    async fn report(&mut self, report: UpdateReport) {
        self.push(report);
    }
}

/// Forwards reports to a session running alongside; waits while the
/// channel is full, drops the report if the receiver is gone.
impl ReportSink for mpsc::Sender<UpdateReport> {
    async fn report(&mut self, report: UpdateReport) {
        if self.send(report).await.is_err() {
            tracing::warn!("update report dropped: the session is gone");
        }
    }
}

/// How an offer ended (each case was reported, except a power loss).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferResult {
    /// Refused by the device-side check (`failed`).
    Refused,
    /// Not now: therapy in progress (`deferred`).
    Deferred,
    /// The offered image is the one running (`healthy` again).
    AlreadyRunning,
    /// Download, image check or slot write failed (`failed`).
    Failed,
    /// Installed into `slot` (`installed`): reboot now.
    Installed {
        /// The slot to boot on trial.
        slot: Slot,
    },
}

impl OfferResult {
    /// The outcome the device reports for this end of an offer.
    #[must_use]
    pub const fn outcome(self) -> OtaOutcome {
        match self {
            Self::Refused | Self::Failed => OtaOutcome::Failed,
            Self::Deferred => OtaOutcome::Deferred,
            Self::AlreadyRunning => OtaOutcome::Healthy,
            Self::Installed { .. } => OtaOutcome::Installed,
        }
    }
}

/// End the handling of `offer` with `result`: first report the outcome it
/// stands for, with `detail`, to `sink`. Every answer of
/// [`OtaClient::handle_offer`] goes through here, so what the gateway is
/// told always matches what the device did.
async fn answer<S: ReportSink + Send>(
    sink: &mut S,
    offer: &OtaOffer,
    result: OfferResult,
    detail: &str,
) -> Result<OfferResult, OtaError> {
    sink.report(UpdateReport::on_offer(offer, result.outcome(), detail))
        .await;
    Ok(result)
}

/// What a boot found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    /// The slot running after the boot.
    pub slot: Slot,
    /// The firmware version running after the boot (for `status`).
    pub firmware_version: Version,
    /// Reports to publish once connected (`healthy` or `rolled_back`).
    pub reports: Vec<UpdateReport>,
}

/// The update client of one device.
#[derive(Debug)]
pub struct OtaClient {
    nvram: Nvram,
    downloader: Downloader,
    key: VerifyingKey,
    faults: Faults,
    therapy: Therapy,
    health_window: Duration,
}

impl OtaClient {
    /// Open (or at first boot create) the device's state folder and set up
    /// its download client. Starts therapy if the `therapy-for` fault is
    /// set.
    ///
    /// # Errors
    /// [`OtaError`] for a state folder that cannot be used, or TLS that
    /// reqwest refuses.
    pub fn open(config: &OtaConfig) -> Result<Self, OtaError> {
        let nvram = Nvram::open_or_init(&config.state_dir, &config.factory)?;
        let key = nvram.manufacturer_key()?;
        let downloader = Downloader::new(config.tls.clone(), config.download)?;
        let therapy = Therapy::idle();
        if let Some(d) = config.faults.therapy_for {
            therapy.start_for(d);
        }
        Ok(Self {
            nvram,
            downloader,
            key,
            faults: config.faults.clone(),
            therapy,
            health_window: config.health_window,
        })
    }

    /// The device's state folder.
    #[must_use]
    pub fn nvram(&self) -> &Nvram {
        &self.nvram
    }

    /// The therapy handle (clones share the state).
    #[must_use]
    pub fn therapy(&self) -> &Therapy {
        &self.therapy
    }

    /// The fault switches.
    #[must_use]
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The firmware version of the active slot.
    #[must_use]
    pub fn firmware_version(&self) -> Version {
        self.nvram.state().firmware_version()
    }

    /// Boot: if a slot was installed on trial, run its self-test within the
    /// health window and keep it (`healthy`) or switch back (`rolled_back`).
    ///
    /// # Errors
    /// [`OtaError`] if the state folder cannot be written.
    pub async fn boot(&mut self) -> Result<Boot, OtaError> {
        let state = self.nvram.state().clone();
        let Some(trial) = state.trial.clone() else {
            return Ok(self.booted(Vec::new()));
        };
        let previous = state.active;
        let previous_version = state.firmware_version();
        if trial.boot_attempts >= 1 {
            let reason = format!(
                "{} booted from slot {} but did not confirm its health before the device restarted",
                trial.version, trial.slot
            );
            return self.roll_back(&trial, &reason).await;
        }
        let Some(image) = state.slot(trial.slot).cloned() else {
            let reason = format!("slot {} holds no image to boot", trial.slot);
            return self.roll_back(&trial, &reason).await;
        };
        self.nvram
            .update(|s| {
                if let Some(t) = s.trial.as_mut() {
                    t.boot_attempts += 1;
                }
            })
            .await?;
        tracing::info!(campaign_id = %trial.campaign_id, version = %trial.version, slot = %trial.slot, "booting the new slot on trial; running its self-test");
        let path = self.nvram.slot_path(trial.slot);
        let result =
            tokio::time::timeout(self.health_window, self_test(&path, &image, &self.faults)).await;
        match result {
            Ok(Ok(())) => {
                self.nvram
                    .update(|s| {
                        s.active = trial.slot;
                        s.trial = None;
                    })
                    .await?;
                tracing::info!(campaign_id = %trial.campaign_id, version = %trial.version, slot = %trial.slot, "self-test passed; new firmware confirmed");
                let detail = format!(
                    "booted {} from slot {}; self-test passed; slot {previous} keeps {previous_version} as fallback",
                    trial.version, trial.slot
                );
                Ok(self.booted_with_report(&trial, OtaOutcome::Healthy, &detail))
            }
            Ok(Err(reason)) => self.roll_back(&trial, &reason).await,
            Err(_) => {
                let reason = format!(
                    "{} did not confirm its health within the {} s health window",
                    trial.version,
                    self.health_window.as_secs_f32()
                );
                self.roll_back(&trial, &reason).await
            }
        }
    }

    fn booted(&self, reports: Vec<UpdateReport>) -> Boot {
        Boot {
            slot: self.nvram.state().active,
            firmware_version: self.firmware_version(),
            reports,
        }
    }

    /// [`OtaClient::booted`] with the one report of how `trial` ended.
    fn booted_with_report(&self, trial: &Trial, outcome: OtaOutcome, detail: &str) -> Boot {
        let report = UpdateReport::new(
            &trial.campaign_id,
            &trial.version.to_string(),
            outcome,
            detail,
        );
        self.booted(vec![report])
    }

    async fn roll_back(&mut self, trial: &Trial, reason: &str) -> Result<Boot, OtaError> {
        self.nvram
            .update(|s| {
                s.trial = None;
                s.set_slot(trial.slot, None);
            })
            .await?;
        if let Err(e) = erase_slot(&self.nvram, trial.slot).await {
            tracing::warn!(error = %e, "could not erase the rolled-back slot; it is no longer bootable anyway");
        }
        let state = self.nvram.state();
        tracing::warn!(campaign_id = %trial.campaign_id, version = %trial.version, %reason, "rolled back to the previous slot");
        let detail = format!(
            "{reason}; switched back to slot {} running {}",
            state.active,
            state.firmware_version()
        );
        Ok(self.booted_with_report(trial, OtaOutcome::RolledBack, &detail))
    }

    /// Handle one offer from the gateway, sending reports to `sink` as they
    /// happen.
    ///
    /// # Errors
    /// [`OtaError::PowerLoss`] (fault switch) or a state folder fault; all
    /// refusals and failures of the update itself are reports, not errors.
    pub async fn handle_offer<S: ReportSink + Send>(
        &mut self,
        offer: &OtaOffer,
        sink: &mut S,
    ) -> Result<OfferResult, OtaError> {
        let state = self.nvram.state().clone();
        let running = state.firmware_version();
        let active = state.active;
        let offered_sha = offer.sha256.to_ascii_lowercase();

        if let Some(trial) = &state.trial {
            let same = state
                .slot(trial.slot)
                .is_some_and(|i| i.sha256 == offered_sha);
            if same {
                let detail = format!(
                    "already installed in slot {}; rebooting into it",
                    trial.slot
                );
                return answer(
                    sink,
                    offer,
                    OfferResult::Installed { slot: trial.slot },
                    &detail,
                )
                .await;
            }
            let detail = format!(
                "{} installed in slot {} waits for its reboot; offer again once the device reports its firmware version",
                trial.version, trial.slot
            );
            return answer(sink, offer, OfferResult::Failed, &detail).await;
        }

        if state
            .active_image()
            .is_some_and(|i| i.sha256 == offered_sha && i.version.to_string() == offer.version)
        {
            let detail = format!(
                "already running {running} from slot {active} (same image); nothing to install"
            );
            return answer(sink, offer, OfferResult::AlreadyRunning, &detail).await;
        }

        let verified = match verify_offer(
            offer,
            &self.key,
            &state.hardware_id,
            &running,
            Utc::now(),
        ) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(campaign_id = %offer.campaign_id, target = %offer.target_name, error = %e, "firmware offer refused");
                let detail =
                    format!("{e}; nothing installed, still running {running} from slot {active}");
                return answer(sink, offer, OfferResult::Refused, &detail).await;
            }
        };
        let https = reqwest::Url::parse(&offer.download_url).is_ok_and(|u| u.scheme() == "https");
        if !https {
            let detail = "download_url is not an https URL; this device downloads firmware only over mutual TLS from the gateway";
            return answer(sink, offer, OfferResult::Refused, detail).await;
        }
        if self.therapy.in_progress() {
            tracing::info!(campaign_id = %offer.campaign_id, "offer deferred: therapy in progress");
            let detail = format!("therapy in progress: update to {} not started; offer it again once the device reports idle", verified.version);
            return answer(sink, offer, OfferResult::Deferred, &detail).await;
        }

        // The idle slot: continue what is there if it is the same image.
        let idle = state.idle_slot();
        let continuing = state.pending.as_ref().is_some_and(|p| {
            p.slot == idle && p.is_for(&verified.target_name, verified.length, &verified.sha256)
        });
        if !continuing {
            if let Some(old) = &state.pending {
                tracing::info!(old_target = %old.target_name, old_version = %old.version, "abandoning an unfinished download for a newer offer");
            }
            if let Err(e) = erase_slot(&self.nvram, idle).await {
                return answer(sink, offer, OfferResult::Failed, &e.to_string()).await;
            }
        }
        let pending = match &state.pending {
            Some(p) if continuing => PendingUpdate {
                campaign_id: offer.campaign_id.clone(),
                download_url: offer.download_url.clone(),
                ..p.clone()
            },
            _ => PendingUpdate {
                campaign_id: offer.campaign_id.clone(),
                target_name: verified.target_name.clone(),
                version: verified.version.clone(),
                length: verified.length,
                sha256: verified.sha256.clone(),
                download_url: offer.download_url.clone(),
                slot: idle,
                etag: None,
                bytes_downloaded: 0,
                resumed: false,
                restarted_after_mismatch: false,
            },
        };
        self.nvram
            .update(|s| {
                s.set_slot(idle, None);
                s.pending = Some(pending);
            })
            .await?;
        let path = self.nvram.slot_path(idle);
        let have = tokio::fs::metadata(&path)
            .await
            .map_or(0, |m| m.len())
            .min(verified.length);
        let checked = format!(
            "offer verified (signed by the manufacturer, for {}, newer than {running})",
            state.hardware_id
        );
        let detail = if have > 0 {
            format!(
                "{checked}; resuming the download of {} bytes into slot {idle} at byte {have}",
                verified.length
            )
        } else {
            format!(
                "{checked}; downloading {} bytes into slot {idle}",
                verified.length
            )
        };
        tracing::info!(campaign_id = %offer.campaign_id, version = %verified.version, slot = %idle, resume_at = have, "downloading firmware");
        sink.report(UpdateReport::on_offer(
            offer,
            OtaOutcome::Downloading,
            &detail,
        ))
        .await;

        let still = format!("still running {running} from slot {active}");
        loop {
            match self
                .downloader
                .download(&mut self.nvram, &self.faults)
                .await
            {
                Ok(done) => {
                    tracing::info!(
                        version = %verified.version,
                        started_at = done.started_at,
                        requests = done.requests,
                        received = done.received,
                        "firmware downloaded"
                    );
                }
                Err(DownloadError::Device(e)) => return Err(e),
                Err(e @ (DownloadError::Unreachable { .. } | DownloadError::Busy { .. })) => {
                    let kept = self
                        .nvram
                        .state()
                        .pending
                        .as_ref()
                        .map_or(0, |p| p.bytes_downloaded);
                    tracing::warn!(error = %e, "firmware download failed");
                    let detail = format!("{e}; the {kept} bytes in slot {idle} are kept and the download resumes when offered again; {still}");
                    return answer(sink, offer, OfferResult::Failed, &detail).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "firmware download refused");
                    let why = match e {
                        DownloadError::Refused { .. } => {
                            "the image was not offered to this device or is no longer there"
                        }
                        _ => "image refused",
                    };
                    self.abandon(idle).await?;
                    let detail = format!("{e}: {why}; slot {idle} erased, {still}");
                    return answer(sink, offer, OfferResult::Failed, &detail).await;
                }
            }
            match check_slot_file_async(&path, &verified).await {
                Ok(()) => break,
                Err(SlotCheckError::Mismatch(e)) => {
                    let retry = self
                        .nvram
                        .state()
                        .pending
                        .as_ref()
                        .is_some_and(|p| p.resumed && !p.restarted_after_mismatch);
                    if retry {
                        // Bytes from an interrupted transfer may be what is
                        // wrong (a power cut mid-write): fetch it whole once.
                        tracing::warn!(error = %e, "resumed image failed its check; downloading it again from byte 0");
                        if let Err(e) = erase_slot(&self.nvram, idle).await {
                            tracing::warn!(error = %e, "could not erase the slot before downloading again");
                        }
                        self.nvram
                            .update(|s| {
                                if let Some(p) = s.pending.as_mut() {
                                    p.bytes_downloaded = 0;
                                    p.etag = None;
                                    p.resumed = false;
                                    p.restarted_after_mismatch = true;
                                }
                            })
                            .await?;
                        continue;
                    }
                    tracing::warn!(campaign_id = %offer.campaign_id, error = %e, "downloaded image refused");
                    self.abandon(idle).await?;
                    let detail = format!("{e}: the image served is not the one the manufacturer signed; slot {idle} erased, {still}");
                    return answer(sink, offer, OfferResult::Failed, &detail).await;
                }
                Err(e @ SlotCheckError::Io { .. }) => {
                    let detail = format!("{e}; {still}");
                    return answer(sink, offer, OfferResult::Failed, &detail).await;
                }
            }
        }

        if self.therapy.in_progress() {
            tracing::info!(campaign_id = %offer.campaign_id, "image ready; installation deferred: therapy in progress");
            let detail = format!("therapy started: {} downloaded and verified in slot {idle}, installation waits; offer it again once the device reports idle", verified.version);
            return answer(sink, offer, OfferResult::Deferred, &detail).await;
        }

        let image = SlotImage {
            target_name: verified.target_name.clone(),
            version: verified.version.clone(),
            length: verified.length,
            sha256: verified.sha256.clone(),
        };
        let trial = Trial {
            slot: idle,
            campaign_id: offer.campaign_id.clone(),
            version: verified.version.clone(),
            boot_attempts: 0,
        };
        self.nvram
            .update(|s| {
                s.set_slot(idle, Some(image));
                s.trial = Some(trial);
                s.pending = None;
            })
            .await?;
        tracing::info!(campaign_id = %offer.campaign_id, version = %verified.version, slot = %idle, "firmware installed; rebooting into it");
        let detail = format!(
            "image verified (length and SHA-256 match the manufacturer's signed metadata) and installed in slot {idle}; rebooting into {}, slot {active} keeps {running} as fallback",
            verified.version
        );
        answer(sink, offer, OfferResult::Installed { slot: idle }, &detail).await
    }

    /// Forget the pending update and erase its slot.
    async fn abandon(&mut self, slot: Slot) -> Result<(), OtaError> {
        if let Err(e) = erase_slot(&self.nvram, slot).await {
            tracing::warn!(error = %e, "could not erase the slot of a refused image");
        }
        self.nvram.update(|s| s.pending = None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_detail_is_made_fit_for_the_wire() {
        let long = "é".repeat(300);
        let r = UpdateReport::new("c1", "2.0.0", OtaOutcome::Failed, &format!("a\nb{long}"));
        let d = r.detail.unwrap();
        assert!(d.len() <= MAX_TEXT);
        assert!(d.starts_with("a b"));
        assert!(!d.chars().any(char::is_control));
        let msg = UpdateReport::new("c1", "2.0.0", OtaOutcome::Healthy, "ok").to_message(9);
        let json = serde_json::to_vec(&msg).unwrap();
        assert_eq!(OtaReport::from_json(&json).unwrap().seq, 9);
    }
}
