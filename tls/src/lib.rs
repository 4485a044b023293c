//! Wardgate's one place for TLS and key files.
//!
//! Every Wardgate binary (gateway, OTA server, `tuf-repo`'s HTTPS transport,
//! the device simulator) builds its TLS from this crate, so the rules are
//! written once: `rustls` with the *ring* provider, TLS 1.2 and 1.3 with
//! rustls' safe defaults, private CAs only (never the platform's trust
//! store), and errors that name the configuration field at fault and say what
//! to do. The architecture is described in the repository's
//! `docs/architecture.md`.
//!
//! | concept | module | main items |
//! | --- | --- | --- |
//! | PEM certificates, keys and trust anchors, loaded from a config field | [`pem`] | [`Credentials`], [`TrustAnchors`], [`TlsError`] |
//! | server configuration (client auth required / optional / none, ALPN) | [`server`] | [`ServerTls`], [`ClientAuth`] |
//! | client configuration (private roots, optional client certificate) | [`client`] | [`ClientTls`] |
//! | the name a verified certificate carries (SAN URI, else CN) | [`identity`] | [`identity_from_cert`], [`fingerprint`] |
//! | private-key file permissions, 0600 files written atomically | [`keyfile`] | [`keyfile::check_private`], [`keyfile::write_private_new`] |
//! | a 256-bit sealing key from an env var or key file; ChaCha20-Poly1305 | [`sealed`] | [`SealingKey`] |
//! | rustls / webpki errors in an operator's words | [`describe`] | [`describe::Context`] |
//!
//! Callers keep their own types: the gateway parses the name from
//! [`identity_from_cert`] into a `DeviceId`, the OTA server into its gateway
//! id; the gateway's outbox and TOTP store wrap [`SealingKey`] with their own
//! associated data.

#![deny(missing_docs)]

use std::sync::Arc;

pub mod client;
pub mod describe;
pub mod identity;
pub mod keyfile;
pub mod pem;
pub mod sealed;
pub mod server;

pub use client::ClientTls;
pub use identity::{
    fingerprint, identity_from_cert, CertIdentity, IdentityError, NameSource, DEVICE_URN_PREFIX,
    GATEWAY_URN_PREFIX,
};
pub use keyfile::KeyFileError;
pub use pem::{Credentials, Problem, TlsError, TrustAnchors};
pub use sealed::{SealError, SealingKey};
pub use server::{ClientAuth, ServerTls};

/// The `rustls` version this crate builds configurations for, re-exported so
/// that callers name the same types.
pub use rustls;

/// ALPN protocols of an HTTPS server or client: HTTP/2, then HTTP/1.1.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The crypto provider every Wardgate TLS endpoint uses (*ring*).
#[must_use]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
