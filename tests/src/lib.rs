//! The one test harness for every Wardgate crate's tests, and the home of
//! the end-to-end tests that run the crates together (`tests/tests/`).
//!
//! Integration tests in `gateway`, `ota-server`, `tuf-repo` and `device-sim`
//! dev-depend on this crate; what is truly local to one crate (starting an
//! in-process gateway from a `gateway::Config`, authoring a TUF repository
//! with `tuf-repo`) stays in that crate's `tests/support`, built on these
//! parts. This library therefore depends on none of those crates (a normal
//! dependency back would build a second copy of the crate under test), only
//! on the leaf crates `wardgate-protocol` and `wardgate-tls` and on external
//! crates.
//!
//! One module per concept:
//! - [`bins`]: the workspace's own binaries as processes, built once for
//!   the end-to-end tests, and running a command to its output.
//! - [`pki`]: the one way to make a test PKI (rcgen): a CA, device
//!   certificates (`urn:wardgate:device:<id>` + CN), gateway client
//!   certificates (`urn:wardgate:gateway:<id>`), server certificates for
//!   `127.0.0.1` / `localhost`, CN-only, expired and other-CA certificates;
//!   private keys written 0600.
//! - [`tls`]: client and server configs over that PKI (built with
//!   `wardgate-tls`, like every Wardgate endpoint), and a raw TLS client
//!   socket for tests that speak bytes.
//! - [`https`]: a `reqwest` client that trusts only the test CA.
//! - [`mqtt`]: raw MQTT 3.1.1 packet builders for attack tests, and reading
//!   a socket until the peer closes it.
//! - [`mosquitto`]: a real Mosquitto with mutual TLS on a free loopback
//!   port, killed on drop, and a persistent-session subscriber on it.
//! - [`process`]: a spawned binary that is killed on drop, with readiness by
//!   polling a port or waiting for a line.
//! - [`port`]: free loopback ports and waiting until one accepts.
//! - [`wait`]: polling a condition until it holds, never a fixed sleep.
//! - [`telemetry`]: device telemetry with chosen readings, and its raw
//!   JSON.
//! - [`python`]: the Python interpreter with the independent checkers
//!   (python-tuf, fhir.resources).
//! - [`schemathesis`]: the `schemathesis` CLI from the same venv, run
//!   against a server's OpenAPI document, and the count of test cases it
//!   generated.
//! - [`hash`]: SHA-256 in hex.
//! - [`ota_ward`]: one ward with the real processes (`tuf-repo`,
//!   `ota-server`, `gateway`, `device-sim`) for the end-to-end OTA tests,
//!   driven only through the binaries.
//! - [`bins`]: the workspace binaries an end-to-end test runs, built once
//!   when missing or stale.
//! - [`ota`]: the operator's and the manufacturer's OTA steps with the
//!   `tuf-repo` binary (repository, signed release and upload body), and
//!   the OTA server's and a gateway's `[ota]` configuration from them.
//!
//! Every fallible part returns [`HarnessError`], whose message names what
//! failed and what to do (usually: run `scripts/setup-test-deps`).

pub mod bins;
pub mod error;
pub mod hash;
pub mod https;
pub mod mosquitto;
pub mod mqtt;
pub mod ota;
pub mod ota_ward;
pub mod pki;
pub mod port;
pub mod process;
pub mod python;
pub mod schemathesis;
pub mod telemetry;
pub mod tls;
pub mod wait;

pub use error::HarnessError;

/// Result of a harness operation.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
