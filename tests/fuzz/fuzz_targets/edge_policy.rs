//! `DevicePolicy` over decoded packets, as the edge's inspection applies it
//! for one admitted device (`pump-1`): the first input byte picks the codec
//! (bit 0: v4 or v5) and the registry state (bit 1: active or quarantined);
//! the rest is a stream of packets. Each PUBLISH that decodes goes through
//! the topic-alias refusal, the UTF-8 topic check and
//! `DevicePolicy::check_publish`; each SUBSCRIBE and UNSUBSCRIBE filter
//! through `check_filter`. Whatever the policy lets through is checked
//! against the MQTT contract of `docs/architecture.md`, so a hole in the
//! ACL is a crash, not only a panic.

#![no_main]

use bytes::BytesMut;
use gateway::config::EdgeConfig;
use gateway::edge::frame::{take_frame, PacketKind};
use gateway::edge::fuzzing::Codec;
use gateway::edge::policy::DevicePolicy;
use gateway::registry::DeviceState;
use libfuzzer_sys::fuzz_target;
use rumqttd::protocol::Packet;
use wardgate_protocol::{topic, DeviceId, DeviceMessage, Direction, TopicKind};

const DEVICE: &str = "pump-1";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let codec = if selector & 1 == 0 {
        Codec::V4
    } else {
        Codec::V5
    };
    let confined = selector & 2 != 0;
    let state = if confined {
        DeviceState::Quarantined
    } else {
        DeviceState::Active
    };
    let cfg = EdgeConfig::default();
    let device = DeviceId::parse(DEVICE).expect("valid device id");
    let policy = DevicePolicy::new(device.clone(), state, cfg.max_payload_bytes);
    let own = |kind| topic(&device, kind);
    let mut buf = BytesMut::from(stream);
    while let Ok(Some(frame)) = take_frame(&mut buf, cfg.max_packet_bytes) {
        // Inspection decodes only these kinds (`edge/inspect.rs`).
        if !matches!(
            frame.kind,
            PacketKind::Publish
                | PacketKind::Subscribe
                | PacketKind::Unsubscribe
                | PacketKind::PubAck
                | PacketKind::PubRec
                | PacketKind::PubRel
                | PacketKind::PubComp
                | PacketKind::PingReq
        ) {
            continue;
        }
        let Ok(packet) = codec.decode(&frame, cfg.max_packet_bytes) else {
            continue;
        };
        match packet {
            Packet::Publish(publish, props) => {
                if props.as_ref().is_some_and(|p| p.topic_alias.is_some()) {
                    continue;
                }
                let Ok(t) = std::str::from_utf8(&publish.topic) else {
                    continue;
                };
                let (qos, retain) = (frame.publish_qos(), frame.publish_retain());
                let Ok((kind, message)) = policy.check_publish(t, qos, retain, &publish.payload)
                else {
                    continue;
                };
                assert_eq!(t, own(kind), "accepted a topic outside the device's own");
                assert_eq!(kind.direction(), Direction::DeviceToGateway);
                assert!(qos <= 1, "accepted QoS {qos}");
                assert!(
                    !retain || kind == TopicKind::Status,
                    "accepted RETAIN on {t}"
                );
                assert!(
                    !confined || matches!(kind, TopicKind::Status | TopicKind::OtaReport),
                    "a quarantined device published on {t}"
                );
                assert!(publish.payload.len() <= cfg.max_payload_bytes);
                // The message parsed is the one the topic names.
                let parsed = DeviceMessage::parse(kind, &publish.payload).expect("re-parses");
                assert_eq!(parsed, message);
            }
            Packet::Subscribe(sub, _) => {
                for f in &sub.filters {
                    check_filter(&policy, &device, confined, &f.path);
                }
            }
            Packet::Unsubscribe(unsub, _) => {
                for f in &unsub.filters {
                    check_filter(&policy, &device, confined, f);
                }
            }
            _ => {}
        }
    }
});

fn check_filter(policy: &DevicePolicy, device: &DeviceId, confined: bool, filter: &str) {
    if policy.check_filter(filter).is_err() {
        return;
    }
    let prefix = format!("wardgate/v1/devices/{device}/");
    assert!(
        filter.starts_with(&prefix),
        "accepted filter {filter:?} outside the device's subtree"
    );
    assert!(!filter.starts_with('$'), "accepted {filter:?}");
    if confined {
        assert!(
            filter == topic(device, TopicKind::Cmd) || filter == topic(device, TopicKind::OtaOffer),
            "a quarantined device subscribed to {filter:?}"
        );
    }
}
