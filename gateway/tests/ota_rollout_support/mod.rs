//! Harness of the rollout tests: one ward, in-process and over real TLS
//! sockets: a real `ota-server` (mutual TLS) with a manufacturer's release,
//! a gateway (edge, broker, registry, audit) with its TUF client, image
//! cache and rollout, and simulated devices running `device-sim`'s OTA
//! client (A/B slots, verification, self-test, rollback). The gateway can
//! be restarted on the same data dir and ports.
//!
//! Needs `crate::support` (the gateway harness) and `crate::ota_support`
//! (the OTA server harness) declared by the test crate.
#![allow(dead_code, clippy::missing_panics_doc, missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use device_sim::ota::{Factory, Faults, OtaConfig as DeviceOtaConfig, OtaSession, RunPlan};
use device_sim::{DeviceOptions, DeviceTls};
use gateway::ota::agent::RolloutHandle;
use gateway::ota::api::CampaignProgress;
use gateway::ota::device_state::UpdateState;
use gateway::ota::{CacheSettings, ImageCache, OtaConfig, OtaRolloutConfig, Rollout, TufClient};
use gateway::registry::NewDevice;
use gateway::{Gateway, GatewayHandle};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use wardgate_protocol::DeviceId;

use crate::ota_support::{OtaServer, HW};
use crate::support::{test_config, TestPki};
use wardgate_tests::ota::campaign_request;
use wardgate_tests::wait::wait_for_async;

/// The release every rollout test rolls out (see [`Ward::start`]).
pub const TARGET: &str = "acme/pump-2.0.0.bin";

/// The ward's gateway id in the OTA server harness's gateway certificate.
pub const GATEWAY_ID: &str = "ward-3a";

/// Every device of `c` is in `state` and its result reported to the server.
pub fn all_reported(c: &CampaignProgress, state: UpdateState) -> bool {
    c.devices.iter().all(|d| d.state == state && d.reported)
}

/// Some device of `c` is in `state` with its result reported to the server.
pub fn any_reported(c: &CampaignProgress, state: UpdateState) -> bool {
    c.devices.iter().any(|d| d.state == state && d.reported)
}

/// Rollout settings for tests: loopback listener, short intervals.
pub fn rollout_config() -> OtaRolloutConfig {
    OtaRolloutConfig {
        image_listen: Some("127.0.0.1:0".parse().unwrap()),
        assignments_interval: Duration::from_secs(1),
        tick_interval: Duration::from_millis(500),
        device_reoffer_after: Duration::from_secs(1),
        device_offer_timeout: Duration::from_secs(10),
        ..OtaRolloutConfig::default()
    }
}

/// A running gateway with its OTA parts.
pub struct RunningGateway {
    pub handle: GatewayHandle,
    pub tuf: Arc<TufClient>,
    pub images: Arc<ImageCache>,
    pub rollout: RolloutHandle,
}

/// One ward.
pub struct Ward {
    pub server: OtaServer,
    pub pki: TestPki,
    pub data: tempfile::TempDir,
    pub ota: OtaConfig,
    pub rollout_config: OtaRolloutConfig,
    pub gw: Option<RunningGateway>,
    /// Health window of the devices started after it is set (10 s, for
    /// the tests' handful of devices; the campaign bench sets one fit for
    /// 100 devices on a loaded machine).
    pub device_health_window: Duration,
    edge: Option<SocketAddr>,
    devices: Vec<(DeviceId, CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Ward {
    /// An OTA server with `acme/pump-2.0.0.bin` (hardware [`HW`]) published,
    /// and a gateway with `config`.
    pub async fn start(image: &[u8], config: OtaRolloutConfig) -> Self {
        Self::start_with_timestamps(image, config, "1day", "6h").await
    }

    /// As [`Ward::start`], with the OTA server's timestamp expiry and
    /// re-signing interval.
    pub async fn start_with_timestamps(
        image: &[u8],
        config: OtaRolloutConfig,
        expiry: &'static str,
        refresh: &'static str,
    ) -> Self {
        let server = OtaServer::started(expiry, refresh).await;
        server.publish_pump(image).await;
        let ota = server.ota_config(&server.base_url());
        let mut w = Self {
            server,
            pki: TestPki::new(),
            data: tempfile::tempdir().unwrap(),
            ota,
            rollout_config: config,
            gw: None,
            device_health_window: Duration::from_secs(10),
            edge: None,
            devices: Vec::new(),
        };
        w.start_gateway().await;
        w
    }

    /// (Re)start the gateway on the same data dir and, after the first
    /// start, the same edge and image server ports.
    pub async fn start_gateway(&mut self) {
        let mut config = test_config(&self.pki, &self.data.path().join("state"));
        if let Some(edge) = self.edge {
            config.edge.listen = edge;
        }
        let handle = Gateway::start(config).await.unwrap();
        self.edge = Some(handle.edge_addr());
        let ctx = handle.context.clone();
        let metrics = gateway::ota::OtaMetrics::register(&ctx.metrics);
        let tuf = Arc::new(
            TufClient::open(&self.ota, &ctx.data_dir, ctx.audit.clone(), metrics.clone())
                .await
                .unwrap(),
        );
        tuf.refresh().await.unwrap();
        ctx.tasks.spawn(Arc::clone(&tuf).run(ctx.shutdown.clone()));
        let images = Arc::new(
            ImageCache::open(
                &ctx.data_dir,
                tuf.http_client(),
                CacheSettings::from(&self.ota),
                ctx.audit.clone(),
                metrics,
            )
            .await
            .unwrap(),
        );
        let rollout = Rollout::start_in(
            &ctx,
            &handle.broker,
            &self.ota,
            self.rollout_config.clone(),
            Arc::clone(&tuf),
            Arc::clone(&images),
        )
        .await
        .unwrap();
        // Keep the image server's port across restarts (offers name it).
        self.rollout_config.image_listen = Some(rollout.image_addr);
        self.gw = Some(RunningGateway {
            handle,
            tuf,
            images,
            rollout,
        });
    }

    /// Stop the gateway (every task), keeping its data dir.
    pub async fn stop_gateway(&mut self) {
        if let Some(g) = self.gw.take() {
            g.handle.shutdown(Duration::from_secs(10)).await;
        }
    }

    pub fn gw(&self) -> &RunningGateway {
        self.gw.as_ref().expect("gateway running")
    }

    pub fn rollout(&self) -> &RolloutHandle {
        &self.gw().rollout
    }

    /// Enrol `id` (hardware [`HW`], firmware 1.0.0); its TLS material.
    pub fn enroll(&self, id: &str) -> DeviceTls {
        let id = DeviceId::parse(id).unwrap();
        self.gw()
            .handle
            .context
            .registry
            .enroll(
                &NewDevice {
                    id: id.clone(),
                    model: "Pump X1".into(),
                    hardware_id: HW.into(),
                    manufacturer: "acme".into(),
                    firmware_version: "1.0.0".into(),
                    cert_fingerprint: None,
                },
                "test",
            )
            .unwrap();
        let issued = self.pki.ca.issue_device(&id, 10).unwrap();
        self.pki.device_tls(&issued)
    }

    pub fn device_options(&self, id: &str, tls: DeviceTls) -> DeviceOptions {
        DeviceOptions {
            id: DeviceId::parse(id).unwrap(),
            client_id: None,
            host: "localhost".into(),
            port: self.edge.unwrap().port(),
            tls,
            keep_alive: Duration::from_secs(30),
        }
    }

    /// The device's state folder (its NVRAM).
    pub fn nvram(&self, id: &str) -> PathBuf {
        self.data.path().join("devices").join(id)
    }

    /// Run a simulated device (built by acme for [`HW`], firmware 1.0.0)
    /// until the ward is dropped or [`Ward::stop_device`].
    pub fn run_device(&mut self, id: &str, tls: &DeviceTls, faults: Faults) {
        let opts = self.device_options(id, tls.clone());
        let mut cfg = DeviceOtaConfig::new(
            self.nvram(id),
            Factory {
                hardware_id: HW.into(),
                manufacturer_key: self.server.keys.acme.verifying_key(),
                firmware_version: "1.0.0".parse().unwrap(),
            },
            Arc::new(device_sim::client_config(tls).unwrap()),
        );
        cfg.faults = faults;
        cfg.health_window = self.device_health_window;
        let stop = CancellationToken::new();
        let s = stop.clone();
        let device = opts.id.clone();
        let task = tokio::spawn(async move {
            let mut session = OtaSession::open(cfg).unwrap();
            let plan = RunPlan {
                telemetry_interval: None,
                reconnect_delay: Duration::from_millis(200),
                ..RunPlan::default()
            };
            let _ = device_sim::ota::run_device(&opts, &mut session, &plan, &s).await;
        });
        self.devices.push((device, stop, task));
    }

    /// Whether the device's process has ended by itself (a power loss).
    pub fn device_ended(&self, id: &str) -> bool {
        self.devices
            .iter()
            .any(|(d, _, t)| d.as_str() == id && t.is_finished())
    }

    /// Stop a device's process (as a power cut would, between messages).
    pub async fn stop_device(&mut self, id: &str) {
        if let Some(i) = self.devices.iter().position(|(d, _, _)| d.as_str() == id) {
            let (_, stop, task) = self.devices.remove(i);
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Create a campaign for `acme/pump-2.0.0.bin` on this ward's gateway.
    pub async fn campaign(&self, waves: &[&str], threshold: f64) -> String {
        let body = campaign_request("pump 2.0.0", TARGET, &[GATEWAY_ID], waves, threshold);
        let r = self
            .server
            .pki
            .client()
            .post(format!("{}api/v1/campaigns", self.server.base_url()))
            .bearer_auth(&self.server.admin_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        let id = v["id"].as_str().unwrap().to_owned();
        self.rollout().sync_now();
        id
    }

    /// The campaign as the OTA server sees it.
    pub async fn server_campaign(&self, id: &str) -> Value {
        let url = format!("{}api/v1/campaigns/{id}", self.server.base_url());
        let http = self.server.pki.client();
        wardgate_tests::https::get_json(&http, &url, &self.server.admin_token)
            .await
            .unwrap()
    }

    /// The rollout's progress (what `GET /api/v1/ota/status` serves).
    pub fn status(&self) -> gateway::ota::api::OtaStatus {
        gateway::ota::api::status(self.rollout().states()).unwrap()
    }

    /// The device's update state in `campaign`.
    pub fn state_of(
        &self,
        campaign: &str,
        id: &str,
    ) -> Option<gateway::ota::device_state::UpdateState> {
        self.rollout()
            .states()
            .update(campaign, &DeviceId::parse(id).unwrap())
            .unwrap()
            .map(|u| u.state)
    }

    /// Wait until `f` holds for the rollout's progress.
    pub async fn wait_status(
        &self,
        timeout: Duration,
        what: &str,
        f: impl Fn(&gateway::ota::api::OtaStatus) -> bool,
    ) {
        let ok = wait_for_async(timeout, || async {
            let s = self.status();
            f(&s).then_some(())
        })
        .await;
        assert!(
            ok.is_some(),
            "timed out waiting for {what}: {:#?}",
            self.status()
        );
    }

    /// Enrols `pump-01` to `pump-<n>` and runs each without faults: a ward
    /// whose rollout should simply succeed. Returns their ids.
    pub fn run_healthy_pumps(&mut self, n: usize) -> Vec<String> {
        let ids: Vec<String> = (1..=n).map(|i| format!("pump-{i:02}")).collect();
        for id in &ids {
            let tls = self.enroll(id);
            self.run_device(id, &tls, Faults::default());
        }
        ids
    }

    /// Wait until `f` holds for the first campaign's progress (there is
    /// only one in most tests).
    pub async fn wait_first_campaign(
        &self,
        timeout: Duration,
        what: &str,
        f: impl Fn(&CampaignProgress) -> bool,
    ) {
        self.wait_status(timeout, what, |s| s.campaigns.first().is_some_and(&f))
            .await;
    }

    /// Audit rows with `action` (any subject), oldest first.
    pub fn audit(&self, action: &str) -> Vec<gateway::audit::AuditRecord> {
        self.gw()
            .handle
            .context
            .audit
            .all()
            .unwrap()
            .into_iter()
            .filter(|r| r.action == action)
            .collect()
    }

    /// Let the rollout run `n` more complete rounds with the server (for
    /// checks that something did not happen).
    pub async fn rounds(&self, n: f64) {
        let metric = "wardgate_ota_server_requests_total{endpoint=\"assignments\",outcome=\"ok\"}";
        let target = self.metric(metric) + n;
        self.rollout().sync_now();
        wardgate_tests::wait::wait_for(Duration::from_secs(30), || {
            (self.metric(metric) >= target).then_some(())
        })
        .await
        .expect("rollout rounds");
    }

    /// The gateway's Prometheus text.
    pub fn metrics_text(&self) -> String {
        self.gw().handle.context.metrics.encode()
    }

    /// Sum of the gateway's metric lines starting with `prefix`.
    pub fn metric(&self, prefix: &str) -> f64 {
        self.metrics_text()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// An HTTPS client presenting `tls`'s device certificate (or none).
    pub fn image_client(&self, tls: Option<&DeviceTls>) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.pki.ca.cert_pem.as_bytes()).unwrap(),
            )
            .no_proxy()
            .timeout(Duration::from_secs(20));
        if let Some(t) = tls {
            b = b.identity(
                reqwest::Identity::from_pem(format!("{}{}", t.cert_pem, t.key_pem).as_bytes())
                    .unwrap(),
            );
        }
        b.build().unwrap()
    }

    /// `https://127.0.0.1:<port>/images/<sha>` (the server certificate
    /// names 127.0.0.1).
    pub fn image_url(&self, sha256: &str) -> String {
        format!("{}images/{sha256}", self.rollout().image_url())
    }
}

impl Drop for Ward {
    fn drop(&mut self) {
        for (_, stop, task) in &self.devices {
            stop.cancel();
            task.abort();
        }
        if let Some(g) = self.gw.take() {
            g.handle.context.shutdown.cancel();
        }
    }
}
