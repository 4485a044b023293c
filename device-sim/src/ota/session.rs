//! The update client wired into a device's MQTT session.
//!
//! [`OtaSession`] is what a device's session loop calls: at boot
//! ([`OtaSession::boot`]), on every (re)connect ([`OtaSession::on_connect`]:
//! `seq` from NVRAM, subscribe to its own `ota/offer`, `status` with the
//! running firmware, reports still owed), for every message
//! ([`OtaSession::on_message`]), and in its `select!` for the progress of a
//! running update ([`OtaSession::next_step`], [`OtaSession::on_step`]). An
//! update runs in its own task so the session keeps publishing telemetry
//! and answering the broker while an image downloads. [`run_device`] is such
//! a loop, complete: boot, connect, telemetry, updates, reboots, reconnects.
//!
//! Queues are bounded: reports not yet handed to MQTT (an outbox of
//! [`OUTBOX_CAP`], the oldest dropped when full, each drop logged), offers
//! that arrive during an update ([`QUEUED_OFFERS_CAP`], the oldest dropped),
//! and the report channel of a running update (8; the update waits).

use std::collections::VecDeque;
use std::time::Duration;

use semver::Version;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wardgate_protocol::{topic, DeviceActivity, OtaOffer, OtaOutcome, TopicKind};

use crate::ota::client::{OfferResult, OtaClient, OtaConfig, UpdateReport};
use crate::ota::error::OtaError;
use crate::ota::faults::PowerLossMode;
use crate::ota::seq::SeqLease;
use crate::ota::therapy::Therapy;
use crate::{DeviceEvent, DeviceOptions, SimDevice, SimError, VitalsGenerator};

/// Reports kept while they cannot be published.
pub const OUTBOX_CAP: usize = 16;
/// Offers kept while an update runs.
pub const QUEUED_OFFERS_CAP: usize = 4;

type UpdateTask = JoinHandle<(OtaClient, Result<OfferResult, OtaError>)>;

enum ClientState {
    Idle(Box<OtaClient>),
    Updating {
        task: UpdateTask,
        reports: mpsc::Receiver<UpdateReport>,
    },
    Gone,
}

/// Progress of a running update, from [`OtaSession::next_step`].
#[derive(Debug)]
pub struct Step(StepKind);

#[derive(Debug)]
enum StepKind {
    Report(UpdateReport),
    Finished(Result<OfferResult, OtaError>),
}

/// What the session loop does after [`OtaSession::on_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Carry on.
    Continue,
    /// An update was installed: end the MQTT session, call
    /// [`OtaSession::boot`], connect again.
    Reboot,
}

/// One device's updates over its MQTT session.
pub struct OtaSession {
    config: OtaConfig,
    client: ClientState,
    seq: SeqLease,
    last_seq: u64,
    therapy: Therapy,
    firmware: Version,
    outbox: VecDeque<UpdateReport>,
    offers: VecDeque<OtaOffer>,
    published: Option<DeviceActivity>,
    /// The running update has reported `downloading` (status says
    /// `updating` only from then on: a deferred or refused offer does not
    /// touch the therapy status).
    downloading: bool,
    /// The `therapy-on-offer` fault switch has fired (once per process).
    therapy_on_offer_fired: bool,
}

impl std::fmt::Debug for OtaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtaSession")
            .field("state_dir", &self.config.state_dir)
            .field("firmware", &self.firmware)
            .field("updating", &self.is_updating())
            .finish_non_exhaustive()
    }
}

impl Drop for OtaSession {
    /// A running update ends with its session (as on a power cut: the state
    /// folder holds what was written; the download resumes next time).
    fn drop(&mut self) {
        if let ClientState::Updating { task, .. } = &self.client {
            task.abort();
        }
    }
}

impl OtaSession {
    /// Open the device's state folder (see [`OtaClient::open`]) and its
    /// `seq` lease.
    ///
    /// # Errors
    /// [`OtaError`] for an unusable state folder or TLS configuration.
    pub fn open(config: OtaConfig) -> Result<Self, OtaError> {
        let client = OtaClient::open(&config)?;
        let seq = SeqLease::open(&config.state_dir)?;
        Ok(Self {
            therapy: client.therapy().clone(),
            firmware: client.firmware_version(),
            last_seq: seq.boot_seq(),
            client: ClientState::Idle(Box::new(client)),
            seq,
            config,
            outbox: VecDeque::new(),
            offers: VecDeque::new(),
            published: None,
            downloading: false,
            therapy_on_offer_fired: false,
        })
    }

    /// The therapy handle (start or stop therapy from outside).
    #[must_use]
    pub fn therapy(&self) -> &Therapy {
        &self.therapy
    }

    /// The firmware version running since the last boot.
    #[must_use]
    pub fn firmware_version(&self) -> &Version {
        &self.firmware
    }

    /// Whether an update is running (from the offer to its end).
    #[must_use]
    pub fn is_updating(&self) -> bool {
        matches!(self.client, ClientState::Updating { .. })
    }

    /// The update client, when no update is running.
    #[must_use]
    pub fn client(&self) -> Option<&OtaClient> {
        match &self.client {
            ClientState::Idle(c) => Some(c),
            _ => None,
        }
    }

    /// The activity `status` reports now.
    #[must_use]
    pub fn activity(&self) -> DeviceActivity {
        if self.downloading {
            DeviceActivity::Updating
        } else {
            self.therapy.activity()
        }
    }

    fn idle_client(&mut self) -> Result<&mut OtaClient, OtaError> {
        match &mut self.client {
            ClientState::Idle(c) => Ok(c),
            _ => Err(OtaError::StateInvalid {
                path: self.config.state_dir.clone(),
                reason: "the update client is busy or was lost".into(),
            }),
        }
    }

    /// Boot the device (before connecting): a trial slot runs its
    /// self-test and is kept or rolled back; the reports wait in the outbox
    /// for [`OtaSession::on_connect`].
    ///
    /// # Errors
    /// [`OtaError`] if the state folder cannot be written, or an update is
    /// still running.
    pub async fn boot(&mut self) -> Result<(), OtaError> {
        let boot = self.idle_client()?.boot().await?;
        self.firmware = boot.firmware_version;
        for r in boot.reports {
            self.queue_report(r);
        }
        self.published = None;
        Ok(())
    }

    fn queue_report(&mut self, r: UpdateReport) {
        if self.outbox.len() >= OUTBOX_CAP {
            if let Some(old) = self.outbox.pop_front() {
                tracing::warn!(campaign_id = %old.campaign_id, outcome = ?old.outcome, "update report outbox full; oldest report dropped");
            }
        }
        self.outbox.push_back(r);
    }

    /// After a CONNACK: continue `seq` above everything used before,
    /// subscribe to the device's own offers, publish `status` with the
    /// running firmware and the reports still owed.
    ///
    /// # Errors
    /// [`OtaError::Session`] if the MQTT client is gone, or a state fault.
    pub async fn on_connect(&mut self, dev: &mut SimDevice) -> Result<(), OtaError> {
        dev.set_seq(self.last_seq.max(dev.next_seq().saturating_sub(1)));
        dev.subscribe(&topic(&dev.id, TopicKind::OtaOffer)).await?;
        self.published = None;
        self.publish_status(dev).await?;
        self.flush(dev).await
    }

    /// Reserve the `seq` of the next publish in NVRAM; call before every
    /// publish the session loop makes itself (telemetry).
    ///
    /// # Errors
    /// [`OtaError::State`]: do not publish then.
    pub async fn cover_seq(&mut self, dev: &SimDevice) -> Result<(), OtaError> {
        let next = dev.next_seq();
        self.seq.cover(next).await?;
        self.last_seq = next;
        Ok(())
    }

    /// Publish `status` (retained) with the current activity and firmware.
    ///
    /// # Errors
    /// [`OtaError::Session`] or a state fault.
    pub async fn publish_status(&mut self, dev: &mut SimDevice) -> Result<(), OtaError> {
        let activity = self.activity();
        self.cover_seq(dev).await?;
        dev.publish_status(activity, &self.firmware.to_string())
            .await?;
        self.published = Some(activity);
        Ok(())
    }

    /// Publish `status` if the activity changed since the last one (therapy
    /// ended, an update began or ended). Call it now and then.
    ///
    /// # Errors
    /// [`OtaError::Session`] or a state fault.
    pub async fn publish_status_if_changed(&mut self, dev: &mut SimDevice) -> Result<(), OtaError> {
        if self.published != Some(self.activity()) {
            self.publish_status(dev).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, dev: &mut SimDevice) -> Result<(), OtaError> {
        let report_topic = topic(&dev.id, TopicKind::OtaReport);
        while let Some(r) = self.outbox.front() {
            let seq = dev.next_seq();
            self.seq.cover(seq).await?;
            self.last_seq = seq;
            dev.set_seq(seq);
            let payload = serde_json::to_vec(&r.to_message(seq))?;
            dev.publish_raw(&report_topic, payload).await?;
            self.outbox.pop_front();
        }
        Ok(())
    }

    /// Handle a message from the broker. An offer on the device's own
    /// `ota/offer` starts an update (or waits in a queue while one runs);
    /// returns whether the message was an offer.
    ///
    /// # Errors
    /// [`OtaError::Session`] if a report cannot be published.
    pub async fn on_message(
        &mut self,
        dev: &mut SimDevice,
        topic_name: &str,
        payload: &[u8],
    ) -> Result<bool, OtaError> {
        if topic_name != topic(&dev.id, TopicKind::OtaOffer) {
            return Ok(false);
        }
        let offer = match OtaOffer::from_json(payload) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "malformed firmware offer refused");
                self.queue_report(UpdateReport::new(
                    "",
                    "",
                    OtaOutcome::Failed,
                    &format!("offer refused: {e}"),
                ));
                self.flush(dev).await?;
                return Ok(true);
            }
        };
        if let Some(d) = self.config.faults.therapy_on_offer {
            if !self.therapy_on_offer_fired {
                // Fault switch: an infusion starts just as the offer
                // arrives; the last status said idle.
                self.therapy_on_offer_fired = true;
                self.therapy.start_for(d);
                tracing::info!(device_id = %dev.id, campaign_id = %offer.campaign_id, therapy_for = ?d, "therapy started as the offer arrived (fault switch therapy-on-offer); the last status said idle");
            }
        }
        if self.is_updating() {
            if self.offers.len() >= QUEUED_OFFERS_CAP {
                if let Some(old) = self.offers.pop_front() {
                    tracing::warn!(campaign_id = %old.campaign_id, "offer queue full; oldest waiting offer dropped");
                }
            }
            self.offers.push_back(offer);
            return Ok(true);
        }
        self.start(offer)?;
        Ok(true)
    }

    fn start(&mut self, offer: OtaOffer) -> Result<(), OtaError> {
        let ClientState::Idle(mut client) = std::mem::replace(&mut self.client, ClientState::Gone)
        else {
            return Err(OtaError::StateInvalid {
                path: self.config.state_dir.clone(),
                reason: "an update was started while another runs".into(),
            });
        };
        let (mut tx, reports) = mpsc::channel(8);
        let task = tokio::spawn(async move {
            let result = client.handle_offer(&offer, &mut tx).await;
            (*client, result)
        });
        self.client = ClientState::Updating { task, reports };
        Ok(())
    }

    /// The next report or the end of the running update; never ready when
    /// none runs. Cancel-safe, for a `select!` branch.
    pub async fn next_step(&mut self) -> Step {
        let ClientState::Updating { task, reports } = &mut self.client else {
            return std::future::pending().await;
        };
        let joined = tokio::select! {
            biased;
            Some(r) = reports.recv() => return Step(StepKind::Report(r)),
            joined = task => joined,
        };
        let mut left = Vec::new();
        while let Ok(r) = reports.try_recv() {
            left.push(r);
        }
        for r in left {
            self.queue_report(r);
        }
        match joined {
            Ok((client, result)) => {
                self.client = ClientState::Idle(Box::new(client));
                Step(StepKind::Finished(result))
            }
            Err(e) => {
                tracing::error!(error = %e, "the update task ended abnormally; reopening the device state");
                match OtaClient::open(&self.config) {
                    Ok(c) => {
                        self.client = ClientState::Idle(Box::new(c));
                        Step(StepKind::Finished(Ok(OfferResult::Failed)))
                    }
                    Err(e) => {
                        self.client = ClientState::Gone;
                        Step(StepKind::Finished(Err(e)))
                    }
                }
            }
        }
    }

    /// Act on a [`Step`]: publish a report, or finish an update.
    ///
    /// # Errors
    /// [`OtaError::Session`] if publishing fails (the report stays in the
    /// outbox for the next connection), [`OtaError::PowerLoss`] from the
    /// fault switch, or a state fault.
    pub async fn on_step(&mut self, dev: &mut SimDevice, step: Step) -> Result<Next, OtaError> {
        match step.0 {
            StepKind::Report(r) => {
                if r.outcome == OtaOutcome::Downloading {
                    self.downloading = true;
                }
                self.queue_report(r);
                self.publish_status_if_changed(dev).await?;
                self.flush(dev).await?;
                Ok(Next::Continue)
            }
            StepKind::Finished(result) => {
                self.downloading = false;
                let result = result?;
                if let OfferResult::Installed { .. } = result {
                    // Reboot even if the reports cannot go out now: they
                    // stay in the outbox for the session after the reboot.
                    self.offers.clear();
                    if let Err(e) = self.flush(dev).await {
                        tracing::warn!(error = %e, "reports not published before the reboot; kept for the next session");
                    }
                    return Ok(Next::Reboot);
                }
                self.flush(dev).await?;
                if let Some(offer) = self.offers.pop_front() {
                    self.start(offer)?;
                }
                self.publish_status_if_changed(dev).await?;
                Ok(Next::Continue)
            }
        }
    }
}

/// What [`run_device`] does besides updates.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Telemetry interval (`None`: no telemetry).
    pub telemetry_interval: Option<Duration>,
    /// Stop after this many telemetry messages (0: run until shut down).
    pub telemetry_count: u64,
    /// Seed of the vitals generator.
    pub vitals_seed: u64,
    /// Wait before connecting again after the connection was lost.
    pub reconnect_delay: Duration,
}

impl Default for RunPlan {
    fn default() -> Self {
        Self {
            telemetry_interval: Some(Duration::from_secs(1)),
            telemetry_count: 0,
            vitals_seed: 0,
            reconnect_delay: Duration::from_secs(1),
        }
    }
}

/// Why [`run_device`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The shutdown token was cancelled.
    Shutdown,
    /// `telemetry_count` messages were sent.
    TelemetryDone,
}

enum SessionEnd {
    Reboot,
    Reconnect,
    Done(RunEnd),
}

/// Run one device until `shutdown`: boot, connect, stream telemetry,
/// take offers, reboot after an install, reconnect after a lost
/// connection. A power loss (fault switch) ends the process with exit code
/// 137 in [`PowerLossMode::ExitProcess`], else returns
/// [`OtaError::PowerLoss`].
///
/// # Errors
/// [`OtaError`] for a state folder fault or a power loss.
pub async fn run_device(
    opts: &DeviceOptions,
    session: &mut OtaSession,
    plan: &RunPlan,
    shutdown: &CancellationToken,
) -> Result<RunEnd, OtaError> {
    let mut vitals = VitalsGenerator::new(plan.vitals_seed);
    let mut sent = 0u64;
    loop {
        session.boot().await?;
        loop {
            let connected = tokio::select! {
                () = shutdown.cancelled() => return Ok(RunEnd::Shutdown),
                d = SimDevice::connect(opts) => d,
            };
            let mut dev = match connected {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(device_id = %opts.id, error = %e, "cannot connect to the gateway; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(RunEnd::Shutdown),
                        () = tokio::time::sleep(plan.reconnect_delay) => continue,
                    }
                }
            };
            let end = match session.on_connect(&mut dev).await {
                Ok(()) => {
                    connected_loop(&mut dev, session, plan, shutdown, &mut vitals, &mut sent).await
                }
                Err(e) => Err(e),
            };
            match end {
                Ok(SessionEnd::Done(end)) => {
                    disconnect(&mut dev).await;
                    return Ok(end);
                }
                Ok(SessionEnd::Reboot) => {
                    tracing::info!(device_id = %opts.id, "rebooting into the new firmware");
                    disconnect(&mut dev).await;
                    break;
                }
                Ok(SessionEnd::Reconnect) | Err(OtaError::Session(_)) => {
                    tracing::warn!(device_id = %opts.id, "connection to the gateway lost; reconnecting");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(RunEnd::Shutdown),
                        () = tokio::time::sleep(plan.reconnect_delay) => {}
                    }
                }
                Err(OtaError::PowerLoss { bytes, slot }) => {
                    tracing::warn!(device_id = %opts.id, bytes, %slot, "simulated power loss");
                    if session.config.faults.power_loss_mode == PowerLossMode::ExitProcess {
                        std::process::exit(137);
                    }
                    return Err(OtaError::PowerLoss { bytes, slot });
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// End the session cleanly: what was queued (the last reports) goes out
/// before the DISCONNECT, and the client's event loop gets to send both
/// before it is dropped (dropping a `SimDevice` aborts its event loop).
async fn disconnect(dev: &mut SimDevice) {
    if dev.disconnect().await.is_ok() {
        let _ = dev.wait_disconnected(Duration::from_secs(5)).await;
    }
}

async fn connected_loop(
    dev: &mut SimDevice,
    session: &mut OtaSession,
    plan: &RunPlan,
    shutdown: &CancellationToken,
    vitals: &mut VitalsGenerator,
    sent: &mut u64,
) -> Result<SessionEnd, OtaError> {
    let mut telemetry = plan.telemetry_interval.map(|d| {
        let mut t = tokio::time::interval(d);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    });
    let mut status = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(SessionEnd::Done(RunEnd::Shutdown)),
            step = session.next_step() => {
                if session.on_step(dev, step).await? == Next::Reboot {
                    return Ok(SessionEnd::Reboot);
                }
            }
            ev = dev.next_event(Duration::from_secs(3600)) => match ev {
                Ok(DeviceEvent::Message { topic, payload }) => {
                    session.on_message(dev, &topic, &payload).await?;
                }
                Ok(DeviceEvent::Disconnected(e)) | Err(SimError::Closed(e)) => {
                    tracing::warn!(device_id = %dev.id, error = %e, "disconnected");
                    return Ok(SessionEnd::Reconnect);
                }
                Ok(_) | Err(_) => {}
            },
            _ = async { match telemetry.as_mut() { Some(t) => t.tick().await, None => std::future::pending().await } } => {
                session.cover_seq(dev).await?;
                dev.publish_telemetry(vitals.next_readings()).await?;
                *sent += 1;
                if plan.telemetry_count > 0 && *sent >= plan.telemetry_count {
                    return Ok(SessionEnd::Done(RunEnd::TelemetryDone));
                }
            }
            _ = status.tick() => session.publish_status_if_changed(dev).await?,
        }
    }
}
