//! Persistent device sessions that survive a gateway crash.
//!
//! A device that connects with clean session off (MQTT 3.1.1) or clean
//! start off (MQTT 5) keeps its unacknowledged QoS 1 messages across a lost
//! connection and resends them on reconnect, which is what keeps a reading
//! whose PUBACK was lost from being lost. But the standard (3.1.1 section
//! 3.2.2.2, 5.0 section 3.2.2.1.1) makes the client *discard* them when the
//! server's CONNACK says no session is present, and the embedded broker
//! keeps sessions in memory only: after a crash it says exactly that to
//! every device, and libraries such as `rumqttc` drop the messages they
//! held. So the edge remembers, in the gateway database, which devices hold
//! a persistent session and what they subscribed to; when the broker has
//! lost a remembered session, the edge subscribes again on the device's
//! behalf before the device hears anything, and reports the session as
//! present. Messages the broker had queued *for* the device are not kept
//! (an OTA offer is sent again by the agent).

use rumqttd::protocol::{Filter, Packet, QoS, RetainForwardRule, Subscribe};
use tokio::io::AsyncWriteExt;
use wardgate_protocol::DeviceId;

use super::broker_link::{read_packet_at, BrokerLink, LinkError};
use super::codec::Codec;
use super::frame::PacketKind;
use super::shared::Shared;
use crate::registry::StoredSubscription;

/// The session a device connects to: whether it asked for a persistent
/// one, and what was stored of it before this connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Remembered {
    /// Clean session off.
    pub(crate) persistent: bool,
    /// The stored session's subscriptions, if a persistent session was
    /// stored before this CONNECT.
    pub(crate) stored: Option<Vec<StoredSubscription>>,
}

/// Read what is stored of `device`'s session and record this CONNECT (a
/// clean session ends any stored one).
///
/// # Errors
/// The database could not be read or written; the caller refuses the
/// session rather than lose what a device holds.
pub(crate) async fn connected(
    shared: &Shared,
    device: &DeviceId,
    clean_session: bool,
) -> Result<Remembered, crate::registry::RegistryError> {
    let registry = shared.ctx.registry.clone();
    let device = device.clone();
    let persistent = !clean_session;
    tokio::task::spawn_blocking(move || {
        let stored = if persistent {
            registry.session_subscriptions(&device)?
        } else {
            None
        };
        registry.session_connected(&device, persistent)?;
        Ok(Remembered { persistent, stored })
    })
    .await
    .unwrap_or_else(|_| Err(crate::registry::RegistryError::Poisoned))
}

/// Record a forwarded SUBSCRIBE or UNSUBSCRIBE of a persistent session.
pub(crate) async fn subscriptions_changed(
    shared: &Shared,
    device: &DeviceId,
    subscribed: Vec<StoredSubscription>,
    unsubscribed: Vec<String>,
) {
    let registry = shared.ctx.registry.clone();
    let d = device.clone();
    let written = tokio::task::spawn_blocking(move || {
        registry.session_subscriptions_changed(&d, &subscribed, &unsubscribed)
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::warn!(
            "cannot record the device's subscriptions in the gateway database; after a gateway restart it must subscribe again"
        );
    }
}

/// The packet id of the SUBSCRIBE the edge sends for a device. The device's
/// own packets are not read before it is answered, so it collides with
/// nothing.
const RESTORE_PKID: u16 = 1;

/// If the broker answered `link`'s CONNECT without the session that
/// `remembered` holds, subscribe again at the broker (consuming its SUBACK)
/// and mark the CONNACK still waiting in `link.pending` "session present".
///
/// # Errors
/// [`LinkError::NoConnAck`] if the broker does not answer the SUBSCRIBE.
pub(crate) async fn restore(
    codec: Codec,
    link: &mut BrokerLink,
    remembered: &Remembered,
) -> Result<bool, LinkError> {
    let Some(stored) = remembered.stored.as_ref().filter(|_| remembered.persistent) else {
        return Ok(false);
    };
    let flags_at = connack_flags_offset(&link.pending)
        .ok_or_else(|| LinkError::NoConnAck("its CONNACK is malformed".into()))?;
    const SESSION_PRESENT: u8 = 0x01;
    const ACCEPTED: u8 = 0x00;
    if link.pending[flags_at] & SESSION_PRESENT != 0
        || link.pending.get(flags_at + 1) != Some(&ACCEPTED)
    {
        // The broker still has it (no crash), or refused the CONNECT.
        return Ok(false);
    }
    if !stored.is_empty() {
        let subscribe = Packet::Subscribe(
            Subscribe {
                pkid: RESTORE_PKID,
                filters: stored
                    .iter()
                    .map(|(path, qos)| Filter {
                        path: path.clone(),
                        qos: match qos {
                            0 => QoS::AtMostOnce,
                            _ => QoS::AtLeastOnce,
                        },
                        nolocal: false,
                        preserve_retain: false,
                        retain_forward_rule: RetainForwardRule::OnEverySubscribe,
                    })
                    .collect(),
            },
            None,
        );
        let bytes = codec.encode(subscribe).map_err(LinkError::Encode)?;
        link.wr.write_all(&bytes).await.map_err(LinkError::Write)?;
        let connack_len = flags_at + connack_body_len(&link.pending)?;
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            consume_suback(link, connack_len),
        )
        .await
        .map_err(|_| LinkError::NoConnAck("no SUBACK to the restored subscriptions".into()))??;
    }
    link.pending[flags_at] |= SESSION_PRESENT;
    Ok(true)
}

/// Read until the SUBACK after the CONNACK (the first `connack_len` bytes
/// of `link.pending`) is whole, and remove it from the buffer.
async fn consume_suback(link: &mut BrokerLink, connack_len: usize) -> Result<(), LinkError> {
    match read_packet_at(&mut link.rd, &mut link.pending, connack_len).await? {
        (PacketKind::SubAck, len) => {
            let rest = link.pending.split_off(connack_len);
            link.pending.extend_from_slice(&rest[len..]);
            Ok(())
        }
        (kind, _) => Err(LinkError::NoConnAck(format!(
            "it answered the restored subscriptions with {kind:?}"
        ))),
    }
}

/// Where the CONNACK's flags byte is: after the packet type and the
/// remaining length (1 to 4 bytes).
fn connack_flags_offset(buf: &[u8]) -> Option<usize> {
    (1..5)
        .find(|&i| buf.get(i).is_some_and(|b| b & 0x80 == 0))
        .map(|i| i + 1)
}

/// The CONNACK's remaining length, for finding what follows it.
fn connack_body_len(buf: &[u8]) -> Result<usize, LinkError> {
    let mut len = 0_usize;
    for (i, b) in buf.iter().skip(1).take(4).enumerate() {
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(len);
        }
    }
    Err(LinkError::NoConnAck("its CONNACK is malformed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_follow_the_remaining_length() {
        // MQTT 3.1.1 CONNACK: type, length 2, flags, code.
        let v4 = [0x20, 0x02, 0x00, 0x00];
        assert_eq!(connack_flags_offset(&v4), Some(2));
        assert_eq!(connack_body_len(&v4).unwrap(), 2);
        // A long (MQTT 5, many properties) CONNACK: two length bytes.
        let v5 = [0x20, 0x80, 0x01, 0x00];
        assert_eq!(connack_flags_offset(&v5), Some(3));
        assert_eq!(connack_body_len(&v5).unwrap(), 128);
        assert_eq!(connack_flags_offset(&[0x20, 0x80, 0x80, 0x80, 0x80]), None);
    }
}
