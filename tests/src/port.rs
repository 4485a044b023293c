//! Loopback ports for servers under test: a free one to configure, and
//! waiting until a server accepts on one.
//!
//! Tests only ever listen on 127.0.0.1. A server that can bind port 0 and
//! report its address should; [`free_port`] is for programs configured by
//! file (Mosquitto, `gateway run`) that need the number up front.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::wait::wait_blocking;
use crate::{HarnessError, Result};

/// A loopback port that was free a moment ago (bound, then released).
///
/// # Errors
/// [`HarnessError::Network`] if no port can be bound.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| HarnessError::Network {
        what: "bind a free port on 127.0.0.1".into(),
        source,
    })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| HarnessError::Network {
            what: "read the free port's address".into(),
            source,
        })
}

/// Whether something accepts TCP connections on `127.0.0.1:port` now.
#[must_use]
pub fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Block until `127.0.0.1:port` accepts, or `limit` passes; true if it did.
#[must_use]
pub fn wait_until_accepting(port: u16, limit: Duration) -> bool {
    wait_blocking(limit, || accepts(port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_seen_and_a_closed_port_is_not() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(wait_until_accepting(port, Duration::from_secs(5)));
        drop(l);
        let free = free_port().unwrap();
        assert!(!accepts(free));
    }
}
