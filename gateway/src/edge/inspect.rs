//! Inspection of one device packet: the order in which the edge's controls
//! run, and what may pass.
//!
//! For a PUBLISH, in this order: the [`crate::edge::rate_limit`] takes a
//! token; the packet is decoded; MQTT 5 topic aliases are refused (they
//! would hide the topic from the ACL); the [`crate::edge::acl`] checks topic,
//! direction, QoS and RETAIN; the [`crate::edge::payload`] checks size,
//! schema and ranges; the [`crate::edge::replay`] check classifies the
//! device's `seq` as new, a resend of a stored or in-flight message, or a
//! replay. SUBSCRIBE and UNSUBSCRIBE filters go through the ACL.
//! Acknowledgements and PINGREQ must decode; DISCONNECT ends the session;
//! anything else from a device is a protocol violation.
//!
//! Inspection decides only; committing telemetry to the sink and writing to
//! the broker is the relay's part, so the two can be pipelined apart.

use std::sync::Arc;
use std::time::Instant;

use rumqttd::protocol::Packet;
use wardgate_protocol::{DeviceId, DeviceMessage, TopicKind};

use super::codec::Codec;
use super::frame::{Frame, PacketKind};
use super::policy::DevicePolicy;
use super::rate_limit::DeviceBuckets;
use super::replay::{PayloadDigest, SeqTracker, SeqVerdict, SessionSeqs};
use super::shared::Shared;
use super::violation::Violation;
use crate::registry::DeviceState;
use crate::sink::AcceptedTelemetry;

/// What to do with a packet that passed inspection.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // short-lived, moved once into the pipeline step
pub(crate) enum Decision {
    /// Forward it to the broker.
    Forward,
    /// A SUBSCRIBE or UNSUBSCRIBE: forward it, and remember the change if
    /// the session is persistent ([`crate::edge::persistent_session`]).
    Subscriptions {
        /// Filters subscribed, with their QoS.
        subscribed: Vec<(String, u8)>,
        /// Filters unsubscribed.
        unsubscribed: Vec<String>,
    },
    /// A PUBLISH of `kind`: if new, store it (with `telemetry`, if any)
    /// and then forward it; if a resend, acknowledge it again.
    Publish {
        /// New or a resend.
        verdict: SeqVerdict,
        /// Its `seq`.
        seq: u64,
        /// Its payload digest.
        digest: PayloadDigest,
        /// The session's previous new message, which must be stored first.
        after: Option<u64>,
        /// Its packet id, for QoS 1.
        pkid: Option<u16>,
        /// The kind of topic, for the message counter.
        kind: TopicKind,
        /// The telemetry to commit first, when the edge has a sink.
        telemetry: Option<AcceptedTelemetry>,
        /// The checked message, for the edge's observer.
        message: DeviceMessage,
        /// Payload size in bytes.
        payload_bytes: usize,
    },
    /// A DISCONNECT: forward it and end the session.
    Disconnect,
}

/// The per-session state of the controls.
pub(crate) struct Inspector {
    device: DeviceId,
    codec: Codec,
    max_packet: usize,
    policy: DevicePolicy,
    /// Every device's publish rate bucket (this device's outlives the
    /// session).
    buckets: Arc<DeviceBuckets>,
    /// Whether accepted telemetry is handed to a sink (else not collected).
    collect: bool,
    /// The messages this session accepted as new.
    seqs: SessionSeqs,
}

impl Inspector {
    /// The controls of one admitted session of `device`, with the edge's
    /// limits and its per-device rate buckets.
    pub(crate) fn for_session(
        shared: &Shared,
        device: DeviceId,
        codec: Codec,
        state: DeviceState,
    ) -> Self {
        let cfg = &shared.ctx.config.edge;
        Self {
            policy: DevicePolicy::new(device.clone(), state, cfg.max_payload_bytes),
            device,
            codec,
            max_packet: cfg.max_packet_bytes,
            buckets: shared.buckets.clone(),
            collect: shared.sink.is_some(),
            seqs: SessionSeqs::default(),
        }
    }

    /// The policy, for registry changes applied to the live session.
    pub(crate) fn policy_mut(&mut self) -> &mut DevicePolicy {
        &mut self.policy
    }

    /// Decide one device packet.
    pub(crate) fn inspect(
        &mut self,
        frame: &Frame,
        seqs: &SeqTracker,
    ) -> Result<Decision, Violation> {
        match frame.kind {
            PacketKind::Publish => self.publish(frame, seqs),
            PacketKind::Subscribe => {
                let Packet::Subscribe(sub, _) = self.decode(frame)? else {
                    return Err(Violation::Protocol("SUBSCRIBE did not decode".into()));
                };
                for f in &sub.filters {
                    self.policy.check_filter(&f.path)?;
                }
                Ok(Decision::Subscriptions {
                    subscribed: sub
                        .filters
                        .into_iter()
                        .map(|f| (f.path, f.qos as u8))
                        .collect(),
                    unsubscribed: Vec::new(),
                })
            }
            PacketKind::Unsubscribe => {
                let Packet::Unsubscribe(unsub, _) = self.decode(frame)? else {
                    return Err(Violation::Protocol("UNSUBSCRIBE did not decode".into()));
                };
                for f in &unsub.filters {
                    self.policy.check_filter(f)?;
                }
                Ok(Decision::Subscriptions {
                    subscribed: Vec::new(),
                    unsubscribed: unsub.filters,
                })
            }
            PacketKind::PubAck
            | PacketKind::PubRec
            | PacketKind::PubRel
            | PacketKind::PubComp
            | PacketKind::PingReq => {
                self.decode(frame)?;
                Ok(Decision::Forward)
            }
            PacketKind::Disconnect => Ok(Decision::Disconnect),
            other => Err(Violation::Protocol(format!(
                "{other:?} is not allowed from a device here"
            ))),
        }
    }

    fn decode(&self, frame: &Frame) -> Result<Packet, Violation> {
        self.codec.decode(frame, self.max_packet)
    }

    fn publish(&mut self, frame: &Frame, seqs: &SeqTracker) -> Result<Decision, Violation> {
        if !self.buckets.try_take(&self.device, Instant::now()) {
            return Err(Violation::RateLimited);
        }
        let Packet::Publish(publish, props) = self.decode(frame)? else {
            return Err(Violation::Protocol("PUBLISH did not decode".into()));
        };
        if props.as_ref().is_some_and(|p| p.topic_alias.is_some()) {
            return Err(Violation::TopicAlias);
        }
        let topic = std::str::from_utf8(&publish.topic)
            .map_err(|_| Violation::Protocol("topic is not UTF-8".into()))?;
        let (kind, message) = self.policy.check_publish(
            topic,
            frame.publish_qos(),
            frame.publish_retain(),
            &publish.payload,
        )?;
        let seq = message.seq();
        let digest = PayloadDigest::of(&publish.payload);
        let verdict = seqs.check(&self.device, seq, digest, &self.seqs)?;
        let after = self.seqs.previous();
        if verdict == SeqVerdict::New {
            self.seqs.accepted(seq, digest);
        }
        let payload_bytes = publish.payload.len();
        let telemetry = match &message {
            DeviceMessage::Telemetry(t) if self.collect && verdict == SeqVerdict::New => {
                Some(AcceptedTelemetry {
                    device_id: self.device.clone(),
                    seq: t.seq,
                    topic: topic.to_owned(),
                    payload: publish.payload,
                    received_at: chrono::Utc::now(),
                })
            }
            _ => None,
        };
        Ok(Decision::Publish {
            verdict,
            seq,
            digest,
            after,
            pkid: frame.publish_pkid(),
            kind,
            telemetry,
            message,
            payload_bytes,
        })
    }
}
