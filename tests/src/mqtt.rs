//! Raw MQTT 3.1.1 bytes, for tests that play a misbehaving or hostile
//! client: packets are built by hand here (not by the codec under test), so
//! a test can send exactly the bytes it means, cut them short or mix valid
//! and invalid ones in one write.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Keep-alive the raw CONNECT asks for, in seconds.
pub const KEEP_ALIVE_SECS: u16 = 30;

/// The variable-length "remaining length" of an MQTT fixed header.
#[must_use]
pub fn remaining_length(mut len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4);
    loop {
        // The low seven bits of a usize always fit in a u8.
        let mut byte = u8::try_from(len % 128).unwrap_or(0);
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            return out;
        }
    }
}

/// A UTF-8 string or binary field: two-byte length, then the bytes
/// (truncated at 65 535 bytes, the most the format can say).
fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend(len.to_be_bytes());
    out.extend(&bytes[..usize::from(len)]);
}

/// A whole packet: `first` byte, remaining length, `body`.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(remaining_length(body.len()));
    out.extend(body);
    out
}

/// An MQTT 3.1.1 CONNECT for `client_id` with a clean session, and a
/// username / password if `login` is given.
#[must_use]
pub fn connect_v4(client_id: &str, login: Option<(&str, &str)>) -> Vec<u8> {
    const CLEAN_SESSION: u8 = 0x02;
    const USERNAME: u8 = 0x80;
    const PASSWORD: u8 = 0x40;
    let mut body = Vec::new();
    field(&mut body, b"MQTT");
    body.push(4); // protocol level 3.1.1
    body.push(CLEAN_SESSION | login.map_or(0, |_| USERNAME | PASSWORD));
    body.extend(KEEP_ALIVE_SECS.to_be_bytes());
    field(&mut body, client_id.as_bytes());
    if let Some((user, pass)) = login {
        field(&mut body, user.as_bytes());
        field(&mut body, pass.as_bytes());
    }
    packet(0x10, &body)
}

/// An MQTT 3.1.1 QoS 1 PUBLISH of `payload` on `topic` with packet id
/// `pkid` (not retained, not a duplicate).
#[must_use]
pub fn publish_v4(topic: &str, payload: &[u8], pkid: u16) -> Vec<u8> {
    let mut body = Vec::new();
    field(&mut body, topic.as_bytes());
    body.extend(pkid.to_be_bytes());
    body.extend(payload);
    packet(0x32, &body)
}

/// Read from `stream` until the peer closes it (EOF or error) and return
/// every byte read; `None` if it is still open after `limit`.
pub async fn read_until_closed<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok()?;
    Some(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_uses_continuation_bits() {
        assert_eq!(remaining_length(0), [0x00]);
        assert_eq!(remaining_length(127), [0x7f]);
        assert_eq!(remaining_length(128), [0x80, 0x01]);
        assert_eq!(remaining_length(16_383), [0xff, 0x7f]);
        assert_eq!(remaining_length(2_097_152), [0x80, 0x80, 0x80, 0x01]);
    }

    #[test]
    fn connect_and_publish_have_the_3_1_1_layout() {
        let c = connect_v4("dev", Some(("u", "p")));
        assert_eq!(
            c,
            [
                0x10, 21, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xc2, 0, 30, 0, 3, b'd', b'e', b'v', 0,
                1, b'u', 0, 1, b'p'
            ]
        );
        let p = publish_v4("a/b", b"hi", 7);
        assert_eq!(p, [0x32, 9, 0, 3, b'a', b'/', b'b', 0, 7, b'h', b'i']);
    }
}
