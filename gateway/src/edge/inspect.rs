//! Inspection of one device packet: the order in which the edge's controls
//! run, and what may pass.
//!
//! For a PUBLISH, in this order: the [`crate::edge::rate_limit`] takes a
//! token; the packet is decoded; MQTT 5 topic aliases are refused (they
//! would hide the topic from the ACL); the [`crate::edge::acl`] checks topic,
//! direction, QoS and RETAIN; the [`crate::edge::payload`] checks size,
//! schema and ranges; the [`crate::edge::replay`] tracker advances the
//! device's `seq`. SUBSCRIBE and UNSUBSCRIBE filters go through the ACL.
//! Acknowledgements and PINGREQ must decode; DISCONNECT ends the session;
//! anything else from a device is a protocol violation.
//!
//! Inspection decides only; committing telemetry to the sink and writing to
//! the broker is the relay's part, so the two can be pipelined apart.

use std::time::Instant;

use rumqttd::protocol::Packet;
use wardgate_protocol::{DeviceId, DeviceMessage, TopicKind};

use super::codec::Codec;
use super::frame::{Frame, PacketKind};
use super::policy::DevicePolicy;
use super::rate_limit::TokenBucket;
use super::replay::SeqTracker;
use super::violation::Violation;
use crate::sink::AcceptedTelemetry;

/// What to do with a packet that passed inspection.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Forward it to the broker.
    Forward,
    /// A PUBLISH of `kind`: commit `telemetry` (if any) to the sink, then
    /// forward it.
    Publish {
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
    bucket: TokenBucket,
    /// Whether accepted telemetry is handed to a sink (else not collected).
    collect: bool,
}

impl Inspector {
    /// The controls of one session.
    pub(crate) fn new(
        device: DeviceId,
        codec: Codec,
        max_packet: usize,
        policy: DevicePolicy,
        bucket: TokenBucket,
        collect: bool,
    ) -> Self {
        Self {
            device,
            codec,
            max_packet,
            policy,
            bucket,
            collect,
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
                Ok(Decision::Forward)
            }
            PacketKind::Unsubscribe => {
                let Packet::Unsubscribe(unsub, _) = self.decode(frame)? else {
                    return Err(Violation::Protocol("UNSUBSCRIBE did not decode".into()));
                };
                for f in &unsub.filters {
                    self.policy.check_filter(f)?;
                }
                Ok(Decision::Forward)
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
        if !self.bucket.try_take(Instant::now()) {
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
        seqs.advance(&self.device, message.seq())?;
        let payload_bytes = publish.payload.len();
        let telemetry = match &message {
            DeviceMessage::Telemetry(t) if self.collect => Some(AcceptedTelemetry {
                device_id: self.device.clone(),
                seq: t.seq,
                topic: topic.to_owned(),
                payload: publish.payload,
                received_at: chrono::Utc::now(),
            }),
            _ => None,
        };
        Ok(Decision::Publish {
            kind,
            telemetry,
            message,
            payload_bytes,
        })
    }
}
