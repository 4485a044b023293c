//! The update client wired into a device's MQTT session ([`run_device`]),
//! over a real broker (Mosquitto with TLS and client certificates) and the
//! real HTTPS image server: the gateway's side is played by a second MQTT
//! client that publishes offers on `ota/offer` and reads `status` and
//! `ota/report` as the gateway's update agent will.
//!
//! Shows the contract: the device subscribes to its own offers, reports
//! `downloading`, `installed`, "reboots" (a new MQTT session whose `status`
//! carries the new firmware version) and reports `healthy`; telemetry goes
//! on during the download; `seq` only grows across the reboot; a device in
//! therapy answers `deferred` without ever saying `updating`, reports
//! `idle` when therapy ends, and then takes the same offer.

mod support;

use std::time::Duration;

use device_sim::ota::{run_device, OtaConfig, OtaError, OtaSession, RunEnd, RunPlan};
use device_sim::{DeviceEvent, DeviceOptions, SimDevice};
use support::*;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wardgate_protocol::{DeviceActivity, OtaOffer, OtaOutcome, OtaReport, Status, Telemetry};

/// What the gateway side saw from the device, in order.
#[derive(Debug, Clone)]
enum Seen {
    Status(Status),
    Report(OtaReport),
    Telemetry(u64),
}

impl Seen {
    fn seq(&self) -> u64 {
        match self {
            Seen::Status(s) => s.seq,
            Seen::Report(r) => r.seq,
            Seen::Telemetry(s) => *s,
        }
    }
}

struct GatewaySide {
    client: SimDevice,
    device: String,
    seen: Vec<Seen>,
}

impl GatewaySide {
    async fn connect(b: &Bench, port: u16, device: &str) -> Self {
        let opts: DeviceOptions = b.device_options("gateway-ota-agent", port);
        let mut client = SimDevice::connect(&opts).await.unwrap();
        client
            .subscribe(&format!("wardgate/v1/devices/{device}/#"))
            .await
            .unwrap();
        Self {
            client,
            device: device.into(),
            seen: Vec::new(),
        }
    }

    async fn offer(&mut self, offer: &OtaOffer) {
        self.client
            .publish_raw(
                &format!("wardgate/v1/devices/{}/ota/offer", self.device),
                serde_json::to_vec(offer).unwrap(),
            )
            .await
            .unwrap();
    }

    /// Read until `done` holds for what was seen, at most 30 s.
    async fn until(&mut self, what: &str, done: impl Fn(&[Seen]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = self
                .client
                .next_event(left)
                .await
                .unwrap_or_else(|e| panic!("waiting for {what}: {e}; seen {:#?}", self.seen));
            let DeviceEvent::Message { topic, payload } = ev else {
                continue;
            };
            let leaf = topic.rsplit_once(&self.device).map(|(_, l)| l.to_owned());
            match leaf.as_deref() {
                Some("/status") => self
                    .seen
                    .push(Seen::Status(Status::from_json(&payload).unwrap())),
                Some("/ota/report") => self
                    .seen
                    .push(Seen::Report(OtaReport::from_json(&payload).unwrap())),
                Some("/telemetry") => self
                    .seen
                    .push(Seen::Telemetry(Telemetry::from_json(&payload).unwrap().seq)),
                _ => {}
            }
        }
    }

    /// Read until the device reports `healthy` and then says it runs
    /// `version`, as after an update and its reboot.
    async fn until_healthy_on(&mut self, version: &str) {
        self.until("healthy", |s| has_report(s, OtaOutcome::Healthy))
            .await;
        self.until(&format!("status with {version}"), |s| {
            has_status(s, DeviceActivity::Idle, version)
        })
        .await;
    }

    fn outcomes(&self) -> Vec<OtaOutcome> {
        self.seen
            .iter()
            .filter_map(|s| match s {
                Seen::Report(r) => Some(r.outcome),
                _ => None,
            })
            .collect()
    }

    fn statuses(&self) -> Vec<(DeviceActivity, String)> {
        self.seen
            .iter()
            .filter_map(|s| match s {
                Seen::Status(s) => Some((s.activity, s.firmware_version.clone())),
                _ => None,
            })
            .collect()
    }
}

fn has_status(seen: &[Seen], activity: DeviceActivity, fw: &str) -> bool {
    seen.iter().any(
        |s| matches!(s, Seen::Status(st) if st.activity == activity && st.firmware_version == fw),
    )
}

fn has_report(seen: &[Seen], outcome: OtaOutcome) -> bool {
    seen.iter()
        .any(|s| matches!(s, Seen::Report(r) if r.outcome == outcome))
}

/// A device running [`run_device`] on its own task until [`Running::stop`].
struct Running {
    stop: CancellationToken,
    task: JoinHandle<(OtaSession, Result<RunEnd, OtaError>)>,
}

impl Running {
    /// Start device `id` with `cfg` on the broker at `port`, sending
    /// telemetry every `telemetry_interval` (`None`: none) and reconnecting
    /// quickly.
    fn start(
        b: &Bench,
        port: u16,
        id: &str,
        cfg: OtaConfig,
        telemetry_interval: Option<Duration>,
    ) -> Self {
        let mut session = OtaSession::open(cfg).unwrap();
        let opts = b.device_options(id, port);
        let plan = RunPlan {
            telemetry_interval,
            reconnect_delay: Duration::from_millis(100),
            ..RunPlan::default()
        };
        let stop = CancellationToken::new();
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let end = run_device(&opts, &mut session, &plan, &stop).await;
                (session, end)
            })
        };
        Self { stop, task }
    }

    /// Shut the device down; it must end with [`RunEnd::Shutdown`].
    /// Returns its session.
    async fn stop(self) -> OtaSession {
        self.stop.cancel();
        let (session, end) = self.task.await.unwrap();
        assert_eq!(end.unwrap(), RunEnd::Shutdown);
        session
    }
}

#[tokio::test]
async fn an_offer_over_mqtt_installs_reboots_and_reports_healthy_with_the_new_version() {
    let (b, rel, url) = Bench::with_release(image(2 * 1024 * 1024, 21), Some("\"v1\"")).await;
    let broker = b.broker();
    // Cut the download once, so the session also lives through a resume.
    b.server.cut_next_response_at(700_001);

    let mut gw = GatewaySide::connect(&b, broker.port, "pump-30").await;
    let device = Running::start(
        &b,
        broker.port,
        "pump-30",
        b.config("pump-30", "1.0.0"),
        Some(Duration::from_millis(50)),
    );

    gw.until("the first status", |s| {
        has_status(s, DeviceActivity::Idle, "1.0.0")
    })
    .await;
    gw.offer(&rel.offer("c-7", &url)).await;
    gw.until_healthy_on("2.1.0").await;
    // Some telemetry after the reboot, too.
    gw.until("telemetry after the reboot", |s| {
        let healthy = s
            .iter()
            .position(|x| matches!(x, Seen::Report(r) if r.outcome == OtaOutcome::Healthy));
        healthy.is_some_and(|h| s[h..].iter().any(|x| matches!(x, Seen::Telemetry(_))))
    })
    .await;
    let session = device.stop().await;
    assert_eq!(session.firmware_version().to_string(), "2.1.0");

    assert_eq!(
        gw.outcomes(),
        [
            OtaOutcome::Downloading,
            OtaOutcome::Installed,
            OtaOutcome::Healthy
        ],
        "{:#?}",
        gw.seen
    );
    // Status: 1.0.0 idle, updating while downloading, then the new version.
    let statuses = gw.statuses();
    let updating = statuses
        .iter()
        .position(|s| s == &(DeviceActivity::Updating, "1.0.0".to_owned()))
        .expect("status updating");
    let new = statuses
        .iter()
        .position(|s| s == &(DeviceActivity::Idle, "2.1.0".to_owned()))
        .unwrap();
    assert!(updating < new, "{statuses:?}");
    // The reboot's status comes before the healthy report.
    let pos = |f: &dyn Fn(&Seen) -> bool| gw.seen.iter().position(f).unwrap();
    assert!(
        pos(&|s| matches!(s, Seen::Status(st) if st.firmware_version == "2.1.0"))
            < pos(&|s| matches!(s, Seen::Report(r) if r.outcome == OtaOutcome::Healthy))
    );
    // seq strictly increases over everything the device sent, across the
    // reboot's new MQTT session.
    let seqs: Vec<u64> = gw.seen.iter().map(Seen::seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // The download was resumed after the cut.
    let reqs = b.server.requests();
    assert_eq!(reqs[1].range.as_deref(), Some("bytes=700001-"), "{reqs:?}");
}

#[tokio::test]
async fn a_device_in_therapy_defers_then_reports_idle_and_takes_the_offer() {
    let (b, rel, url) = Bench::with_release(image(100_000, 22), None).await;
    let broker = b.broker();
    let mut gw = GatewaySide::connect(&b, broker.port, "pump-31").await;
    let mut cfg = b.config("pump-31", "1.0.0");
    cfg.faults.therapy_for = Some(Duration::from_secs(2));
    let device = Running::start(&b, broker.port, "pump-31", cfg, None);
    gw.until("therapy status", |s| {
        has_status(s, DeviceActivity::TherapyInProgress, "1.0.0")
    })
    .await;
    // A gateway that offers anyway: refused by the device.
    gw.offer(&rel.offer("c-8", &url)).await;
    gw.until("deferred", |s| has_report(s, OtaOutcome::Deferred))
        .await;
    assert!(b.server.requests().is_empty());
    gw.until("idle status", |s| {
        has_status(s, DeviceActivity::Idle, "1.0.0")
    })
    .await;
    // No status between said `updating`: therapy was never interrupted.
    assert!(
        !gw.statuses()
            .iter()
            .any(|(a, _)| *a == DeviceActivity::Updating),
        "{:?}",
        gw.statuses()
    );
    gw.offer(&rel.offer("c-8", &url)).await;
    gw.until_healthy_on("2.1.0").await;
    device.stop().await;
    assert_eq!(
        gw.outcomes(),
        [
            OtaOutcome::Deferred,
            OtaOutcome::Downloading,
            OtaOutcome::Installed,
            OtaOutcome::Healthy
        ]
    );
    let deferred = gw
        .seen
        .iter()
        .find_map(|s| match s {
            Seen::Report(r) if r.outcome == OtaOutcome::Deferred => r.detail.clone(),
            _ => None,
        })
        .unwrap();
    assert!(deferred.contains("therapy in progress"), "{deferred}");
}
