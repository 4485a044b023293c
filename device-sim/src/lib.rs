//! Simulated bedside devices for Wardgate.
//!
//! [`SimDevice`] is a real MQTT device client (`rumqttc`) over mutual TLS
//! that publishes valid telemetry with an increasing `seq` at QoS 1 and
//! reports what the gateway sends back ([`DeviceEvent`]). [`VitalsGenerator`]
//! produces realistic, slowly drifting vitals per device. [`fleet`] streams
//! them for N devices (what the `device-sim` binary runs, with its arguments
//! in [`cli`]); the gateway's tests and benchmarks drive the library
//! directly. The architecture is described in `docs/architecture.md`.

pub mod attack;
pub mod cli;
pub mod fleet;
pub mod load;
pub mod patient;
pub mod scenario;
pub mod steps;
pub mod ward;
pub mod ward_run;

pub mod ota;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::tokio_rustls::rustls;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc;
use wardgate_protocol::{
    topic, DeviceActivity, DeviceId, Reading, Status, Telemetry, TopicKind, VitalKind,
    SCHEMA_VERSION,
};
use wardgate_tls::{ClientTls, Credentials, TrustAnchors};

/// What went wrong in the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// TLS material could not be loaded (the error names the
    /// [`DeviceTls`] field).
    #[error("TLS setup: {0}")]
    Tls(#[from] wardgate_tls::TlsError),
    /// The MQTT client refused a request.
    #[error("MQTT client: {0}")]
    Client(#[from] rumqttc::ClientError),
    /// The connection ended before the expected event.
    #[error("connection ended: {0}")]
    Closed(String),
    /// Waiting timed out.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// Encoding a message failed.
    #[error("encode: {0}")]
    Encode(#[from] serde_json::Error),
}

/// PEM material for one device.
#[derive(Clone)]
pub struct DeviceTls {
    /// The CA that signed the gateway's server certificate.
    pub ca_pem: String,
    /// The device certificate.
    pub cert_pem: String,
    /// The device key.
    pub key_pem: String,
}

impl std::fmt::Debug for DeviceTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceTls").finish_non_exhaustive()
    }
}

/// Build a rustls client configuration from PEM text: trusts only `ca_pem`
/// and presents the device certificate.
///
/// # Errors
/// [`SimError::Tls`] naming the [`DeviceTls`] field whose PEM is unusable.
pub fn client_config(tls: &DeviceTls) -> Result<rustls::ClientConfig, SimError> {
    let roots = TrustAnchors::from_pem("DeviceTls.ca_pem", tls.ca_pem.as_bytes())?;
    let identity = Credentials::from_pem(
        "DeviceTls.cert_pem",
        tls.cert_pem.as_bytes(),
        "DeviceTls.key_pem",
        tls.key_pem.as_bytes(),
    )?;
    Ok(ClientTls::new(roots).identity(identity).build()?)
}

/// Something the device saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    /// CONNACK with its return code (`"Success"` when accepted).
    ConnAck(String),
    /// PUBACK for the packet id.
    PubAck(u16),
    /// SUBACK.
    SubAck,
    /// A message on a subscribed topic.
    Message {
        /// Topic.
        topic: String,
        /// Payload.
        payload: Vec<u8>,
    },
    /// The connection ended (with the client's error text).
    Disconnected(String),
}

/// How to reach the gateway.
#[derive(Debug, Clone)]
pub struct DeviceOptions {
    /// Device id (used as the MQTT client id).
    pub id: DeviceId,
    /// MQTT client id to present (defaults to the device id).
    pub client_id: Option<String>,
    /// Gateway host name as in its certificate (e.g. `localhost`).
    pub host: String,
    /// Gateway edge port.
    pub port: u16,
    /// TLS material.
    pub tls: DeviceTls,
    /// Keep-alive.
    pub keep_alive: Duration,
}

/// A connected (or connecting) simulated device.
pub struct SimDevice {
    /// Its id.
    pub id: DeviceId,
    client: AsyncClient,
    events: mpsc::Receiver<DeviceEvent>,
    seq: u64,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SimDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDevice")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for SimDevice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SimDevice {
    /// Start connecting; the event loop runs until the connection ends (it
    /// does not reconnect). Events are kept in a bounded queue of 1024; when
    /// it is full the oldest unread events are not kept.
    ///
    /// # Errors
    /// [`SimError::Tls`] if the TLS material is invalid.
    pub fn start(opts: &DeviceOptions) -> Result<Self, SimError> {
        let client_id = opts
            .client_id
            .clone()
            .unwrap_or_else(|| opts.id.to_string());
        let mut mqtt = MqttOptions::new(client_id, opts.host.clone(), opts.port);
        mqtt.set_keep_alive(opts.keep_alive);
        mqtt.set_clean_session(true);
        // Large enough for the oversized-payload attack to reach the gateway.
        mqtt.set_max_packet_size(256 * 1024, 256 * 1024);
        mqtt.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(client_config(&opts.tls)?),
        )));
        let (client, mut eventloop) = AsyncClient::new(mqtt, 256);
        let (tx, events) = mpsc::channel(1024);
        let task = tokio::spawn(async move {
            loop {
                let ev = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(a))) => {
                        DeviceEvent::ConnAck(format!("{:?}", a.code))
                    }
                    Ok(Event::Incoming(Packet::PubAck(a))) => DeviceEvent::PubAck(a.pkid),
                    Ok(Event::Incoming(Packet::SubAck(_))) => DeviceEvent::SubAck,
                    Ok(Event::Incoming(Packet::Publish(p))) => DeviceEvent::Message {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                    },
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.try_send(DeviceEvent::Disconnected(e.to_string()));
                        break;
                    }
                };
                let _ = tx.try_send(ev);
            }
        });
        Ok(Self {
            id: opts.id.clone(),
            client,
            events,
            seq: 0,
            task,
        })
    }

    /// Start and wait for a successful CONNACK.
    ///
    /// # Errors
    /// [`SimError::Closed`] if the gateway refused or dropped the connection.
    pub async fn connect(opts: &DeviceOptions) -> Result<Self, SimError> {
        let mut d = Self::start(opts)?;
        match d.next_event(Duration::from_secs(10)).await? {
            DeviceEvent::ConnAck(code) if code == "Success" => Ok(d),
            other => Err(SimError::Closed(format!("{other:?}"))),
        }
    }

    /// The next event, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`SimError::Timeout`] or [`SimError::Closed`] (event loop gone).
    pub async fn next_event(&mut self, timeout: Duration) -> Result<DeviceEvent, SimError> {
        match tokio::time::timeout(timeout, self.events.recv()).await {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(SimError::Closed("event loop ended".into())),
            Err(_) => Err(SimError::Timeout("device event")),
        }
    }

    /// Wait until the connection ends; returns the client's error text.
    ///
    /// # Errors
    /// [`SimError::Timeout`] if it stays up.
    pub async fn wait_disconnected(&mut self, timeout: Duration) -> Result<String, SimError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Ok(DeviceEvent::Disconnected(e)) => return Ok(e),
                Ok(_) => {}
                Err(SimError::Closed(e)) => return Ok(e),
                Err(e) => return Err(e),
            }
        }
    }

    /// Wait for the next PUBACK (skipping other events).
    ///
    /// # Errors
    /// [`SimError::Closed`] if the connection ends first, or a timeout.
    pub async fn wait_puback(&mut self, timeout: Duration) -> Result<u16, SimError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await? {
                DeviceEvent::PubAck(id) => return Ok(id),
                DeviceEvent::Disconnected(e) => return Err(SimError::Closed(e)),
                _ => {}
            }
        }
    }

    /// The next `seq` this device will use.
    #[must_use]
    pub fn next_seq(&self) -> u64 {
        self.seq + 1
    }

    /// Publish telemetry with the next `seq` at QoS 1 (queued; see
    /// [`SimDevice::wait_puback`]). Returns the seq used.
    ///
    /// # Errors
    /// [`SimError::Client`] if the client queue is closed.
    pub async fn publish_telemetry(&mut self, readings: Vec<Reading>) -> Result<u64, SimError> {
        self.publish_next(TopicKind::Telemetry, false, |seq| Telemetry {
            schema: SCHEMA_VERSION,
            seq,
            ts: Utc::now(),
            readings,
        })
        .await
    }

    /// Publish a status message (retained) with the next `seq`.
    ///
    /// # Errors
    /// [`SimError::Client`] if the client queue is closed.
    pub async fn publish_status(
        &mut self,
        activity: DeviceActivity,
        firmware: &str,
    ) -> Result<u64, SimError> {
        self.publish_next(TopicKind::Status, true, |seq| Status {
            schema: SCHEMA_VERSION,
            seq,
            ts: Utc::now(),
            activity,
            firmware_version: firmware.to_owned(),
            battery_pct: None,
        })
        .await
    }

    /// Publish the device's next message, built by `message` from the next
    /// `seq`, at QoS 1 on its `kind` topic (`retain`ed or not); the one
    /// place that advances `seq`. Returns the seq used.
    async fn publish_next<M: serde::Serialize>(
        &mut self,
        kind: TopicKind,
        retain: bool,
        message: impl FnOnce(u64) -> M,
    ) -> Result<u64, SimError> {
        self.seq += 1;
        let payload = serde_json::to_vec(&message(self.seq))?;
        self.client
            .publish(topic(&self.id, kind), QoS::AtLeastOnce, retain, payload)
            .await?;
        Ok(self.seq)
    }

    /// Publish arbitrary bytes at QoS 1 (for attack tests).
    ///
    /// # Errors
    /// [`SimError::Client`] if the client queue is closed.
    pub async fn publish_raw(&mut self, topic: &str, payload: Vec<u8>) -> Result<(), SimError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await?;
        Ok(())
    }

    /// Subscribe at QoS 1.
    ///
    /// # Errors
    /// [`SimError::Client`] if the client queue is closed.
    pub async fn subscribe(&mut self, filter: &str) -> Result<(), SimError> {
        self.client.subscribe(filter, QoS::AtLeastOnce).await?;
        Ok(())
    }

    /// Set the seq counter (to test replays).
    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Disconnect cleanly.
    ///
    /// # Errors
    /// [`SimError::Client`] if the client queue is closed.
    pub async fn disconnect(&self) -> Result<(), SimError> {
        self.client.disconnect().await?;
        Ok(())
    }
}

/// Realistic vitals for one simulated patient / pump: values drift slowly
/// around a baseline and always stay inside the physiological ranges.
#[derive(Debug)]
pub struct VitalsGenerator {
    rng: StdRng,
    hr: f64,
    spo2: f64,
    rr: f64,
    temp: f64,
    sys: f64,
    dia: f64,
    infusion: f64,
}

impl VitalsGenerator {
    /// A generator seeded from `seed` (reproducible).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        Self {
            hr: rng.gen_range(60.0..95.0),
            spo2: rng.gen_range(94.0..99.0),
            rr: rng.gen_range(12.0..20.0),
            temp: rng.gen_range(36.3..37.4),
            sys: rng.gen_range(105.0..140.0),
            dia: rng.gen_range(65.0..90.0),
            infusion: rng.gen_range(20.0..150.0),
            rng,
        }
    }

    fn drift(rng: &mut StdRng, v: &mut f64, step: f64, kind: VitalKind) {
        let (min, max) = kind.range();
        *v = (*v + rng.gen_range(-step..step)).clamp(min, max);
    }

    /// The next set of readings (monitor vitals plus the pump rate).
    pub fn next_readings(&mut self) -> Vec<Reading> {
        let r = &mut self.rng;
        Self::drift(r, &mut self.hr, 2.0, VitalKind::HeartRate);
        Self::drift(r, &mut self.spo2, 0.5, VitalKind::Spo2);
        self.spo2 = self.spo2.min(100.0);
        Self::drift(r, &mut self.rr, 0.7, VitalKind::RespiratoryRate);
        Self::drift(r, &mut self.temp, 0.05, VitalKind::Temperature);
        Self::drift(r, &mut self.sys, 2.5, VitalKind::SystolicBp);
        Self::drift(r, &mut self.dia, 2.0, VitalKind::DiastolicBp);
        Self::drift(r, &mut self.infusion, 1.0, VitalKind::InfusionRate);
        let round = |v: f64, p: f64| (v * p).round() / p;
        vec![
            Reading {
                kind: VitalKind::HeartRate,
                value: round(self.hr, 1.0),
            },
            Reading {
                kind: VitalKind::Spo2,
                value: round(self.spo2, 1.0),
            },
            Reading {
                kind: VitalKind::RespiratoryRate,
                value: round(self.rr, 1.0),
            },
            Reading {
                kind: VitalKind::Temperature,
                value: round(self.temp, 10.0),
            },
            Reading {
                kind: VitalKind::SystolicBp,
                value: round(self.sys, 1.0),
            },
            Reading {
                kind: VitalKind::DiastolicBp,
                value: round(self.dia, 1.0),
            },
            Reading {
                kind: VitalKind::InfusionRate,
                value: round(self.infusion, 10.0),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_vitals_always_pass_the_gateway_checks() {
        let mut g = VitalsGenerator::new(7);
        for seq in 1..2000 {
            let t = Telemetry {
                schema: 1,
                seq,
                ts: Utc::now(),
                readings: g.next_readings(),
            };
            let json = serde_json::to_vec(&t).unwrap();
            Telemetry::from_json(&json).unwrap();
        }
    }
}
