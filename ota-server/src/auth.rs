//! Who is calling: bearer tokens for administrators and manufacturers,
//! client certificates for gateways.
//!
//! Tokens are stored only as SHA-256 hashes (tokens are 256-bit random
//! values, so a fast hash is enough) and compared in constant time.
//! Gateways are identified by the certificate the TLS layer verified against
//! the ward CA: the SAN URI `urn:wardgate:gateway:<id>`, else the CN.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::names::{GatewayId, ManufacturerName};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An operator using the campaign API.
    Admin(String),
    /// A manufacturer uploading releases for its delegated role.
    Manufacturer(ManufacturerName),
}

impl Principal {
    /// The audit-log actor string.
    #[must_use]
    pub fn actor(&self) -> String {
        match self {
            Self::Admin(n) => format!("admin:{n}"),
            Self::Manufacturer(m) => format!("manufacturer:{m}"),
        }
    }
}

/// The identity the TLS layer verified for this connection, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Gateway named by a verified client certificate.
    pub gateway: Option<GatewayId>,
}

/// Token hashes from the configuration.
#[derive(Debug, Clone)]
pub struct Tokens {
    entries: Vec<([u8; 32], Principal)>,
}

impl Tokens {
    /// Collects admin and manufacturer token hashes (validated config).
    #[must_use]
    pub fn from_config(cfg: &Config) -> Self {
        let mut entries = Vec::new();
        let parse = |h: &str| -> Option<[u8; 32]> { hex::decode(h).ok()?.try_into().ok() };
        for a in &cfg.admins {
            if let Some(h) = parse(&a.token_sha256) {
                entries.push((h, Principal::Admin(a.name.clone())));
            }
        }
        for m in &cfg.manufacturers {
            if let Some(h) = parse(&m.token_sha256) {
                entries.push((h, Principal::Manufacturer(m.name.clone())));
            }
        }
        Self { entries }
    }

    /// The principal holding `token`, if any. Checks every entry so timing
    /// does not reveal which one matched.
    #[must_use]
    pub fn lookup(&self, token: &str) -> Option<Principal> {
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (stored, p) in &self.entries {
            if bool::from(stored.ct_eq(&h)) {
                found = Some(p.clone());
            }
        }
        found
    }
}

/// A new random token and its SHA-256 hex, for `ota-server token`.
#[must_use]
pub fn new_token() -> (String, String) {
    use rand::RngCore;
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = format!("wgota_{}", hex::encode(raw));
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    (token, hash)
}

/// Reads the gateway id from a verified client certificate (DER): the one
/// SAN URI `urn:wardgate:gateway:<id>`, else the CN
/// ([`wardgate_tls::identity_from_cert`]). `None` if it names no single
/// valid gateway id.
#[must_use]
pub fn gateway_from_cert(der: &[u8]) -> Option<GatewayId> {
    match wardgate_tls::identity_from_cert(der, wardgate_tls::GATEWAY_URN_PREFIX) {
        Ok(found) => GatewayId::new(&found.name).ok(),
        Err(e) => {
            tracing::warn!(error = %e, "client certificate names no gateway");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip() {
        let (tok, hash) = new_token();
        let mut cfg = Config::default();
        cfg.admins.push(crate::config::TokenEntry {
            name: "ops".into(),
            token_sha256: hash,
        });
        let t = Tokens::from_config(&cfg);
        assert_eq!(t.lookup(&tok), Some(Principal::Admin("ops".into())));
        assert_eq!(t.lookup("wgota_wrong"), None);
    }
}
