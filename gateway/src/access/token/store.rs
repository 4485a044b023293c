//! The token table (`admin_tokens` in the gateway database), over its own
//! connection: issue, look up, list, revoke, and note the last use.
//!
//! Rows are parsed back through the same constructors as input, so a
//! tampered row surfaces as [`AccessError::CorruptRow`] rather than a panic.
//! The checks made on a presented token live beside this module, each under
//! its own name: [`super::authenticate`] (hash, revocation, expiry),
//! [`crate::access::lockout`] (TOTP replay and lockout),
//! [`crate::access::break_glass`] and [`crate::access::review`].

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::bearer::BearerToken;
use super::name::{TokenId, TokenName};
use super::record::{IssuedToken, NewToken, TokenKind, TokenRecord};
use crate::access::clock::Clock;
use crate::access::error::AccessError;
use crate::access::role::Role;
use crate::access::totp::code::TotpSecret;
use crate::access::totp::vault::TotpVault;

/// The token table, over its own connection to the gateway database.
#[derive(Debug)]
pub struct TokenStore {
    conn: Mutex<Connection>,
    vault: TotpVault,
    clock: Arc<dyn Clock>,
    totp_skew: u8,
}

/// The record columns, in the order [`record_from_row_at`] reads them.
pub(in crate::access) const COLUMNS: &str =
    "id, name, role, kind, created_at, expires_at, last_used_at, revoked_at, totp_secret IS NOT NULL";

impl TokenStore {
    /// Open the store on the gateway database at `db_path`; the TOTP
    /// sealing key is read (or created) beside it.
    ///
    /// # Errors
    /// [`AccessError::Db`] if the database cannot be opened or migrated,
    /// [`AccessError::Vault`] if the sealing key is unusable.
    pub fn open(db_path: &Path, clock: Arc<dyn Clock>, totp_skew: u8) -> Result<Self, AccessError> {
        let conn = crate::db::open(db_path)?;
        let vault = TotpVault::load_or_create(db_path.parent().unwrap_or_else(|| Path::new(".")))?;
        Ok(Self {
            conn: Mutex::new(conn),
            vault,
            clock,
            totp_skew,
        })
    }

    /// The store's clock.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(in crate::access) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(in crate::access) fn vault(&self) -> &TotpVault {
        &self.vault
    }

    pub(in crate::access) fn totp_skew(&self) -> u8 {
        self.totp_skew
    }

    /// Issue a standard token.
    ///
    /// # Errors
    /// [`AccessError::TotpForViewer`] if TOTP is asked for a viewer token,
    /// [`AccessError::InvalidLifetime`] for a non-positive lifetime, or a
    /// database error.
    pub fn create(&self, new: NewToken) -> Result<IssuedToken, AccessError> {
        if new.bind_totp && new.role == Role::Viewer {
            return Err(AccessError::TotpForViewer);
        }
        if new.lifetime.is_some_and(|d| d <= Duration::zero()) {
            return Err(AccessError::InvalidLifetime);
        }
        let totp = new.bind_totp.then(TotpSecret::generate);
        self.insert(new.name, new.role, TokenKind::Standard, new.lifetime, totp)
    }

    pub(in crate::access) fn insert(
        &self,
        name: TokenName,
        role: Role,
        kind: TokenKind,
        lifetime: Option<Duration>,
        totp: Option<TotpSecret>,
    ) -> Result<IssuedToken, AccessError> {
        let now = truncate(self.clock.now());
        let token = BearerToken::generate();
        let record = TokenRecord {
            id: token.id().clone(),
            name,
            role,
            kind,
            created_at: now,
            expires_at: lifetime.map(|d| now + d),
            last_used_at: None,
            revoked_at: None,
            totp_bound: totp.is_some(),
        };
        let sealed = totp
            .as_ref()
            .map(|secret| self.vault.seal(&record.id, secret))
            .transpose()?;
        self.conn().execute(
            "INSERT INTO admin_tokens (id, name, role, kind, token_hash, created_at, expires_at, totp_secret)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                record.id.as_str(),
                record.name.as_str(),
                role.as_str(),
                kind.as_str(),
                token.hash().as_slice(),
                now.timestamp(),
                record.expires_at.map(|t| t.timestamp()),
                sealed,
            ],
        )?;
        Ok(IssuedToken {
            record,
            token,
            totp,
        })
    }

    /// One token by id.
    ///
    /// # Errors
    /// A database error.
    pub fn get(&self, id: &TokenId) -> Result<Option<TokenRecord>, AccessError> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM admin_tokens WHERE id = ?1"),
                [id.as_str()],
                record_from_row,
            )
            .optional()?
            .transpose()
    }

    /// Every token, oldest first.
    ///
    /// # Errors
    /// A database error.
    pub fn list(&self) -> Result<Vec<TokenRecord>, AccessError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM admin_tokens ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([], record_from_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    /// Revoke a token; it stops working at once.
    ///
    /// # Errors
    /// [`AccessError::UnknownToken`], [`AccessError::AlreadyRevoked`], or a
    /// database error.
    pub fn revoke(&self, id: &TokenId) -> Result<TokenRecord, AccessError> {
        let now = truncate(self.clock.now());
        let record = self
            .get(id)?
            .ok_or_else(|| AccessError::UnknownToken(id.clone()))?;
        if record.revoked_at.is_some() {
            return Err(AccessError::AlreadyRevoked(id.clone()));
        }
        self.conn().execute(
            "UPDATE admin_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id.as_str(), now.timestamp()],
        )?;
        Ok(TokenRecord {
            revoked_at: Some(now),
            ..record
        })
    }

    /// Note a fully authorised use of the token.
    ///
    /// # Errors
    /// A database error.
    pub fn record_use(&self, id: &TokenId) -> Result<(), AccessError> {
        let now = truncate(self.clock.now());
        self.conn().execute(
            "UPDATE admin_tokens SET last_used_at = ?2 WHERE id = ?1",
            params![id.as_str(), now.timestamp()],
        )?;
        Ok(())
    }
}

/// Whole seconds, as stored.
fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<Result<TokenRecord, AccessError>> {
    record_from_row_at(row, 0)
}

/// The record in [`COLUMNS`] starting at column `at`.
pub(in crate::access) fn record_from_row_at(
    row: &Row<'_>,
    at: usize,
) -> rusqlite::Result<Result<TokenRecord, AccessError>> {
    let id: String = row.get(at)?;
    let name: String = row.get(at + 1)?;
    let role: String = row.get(at + 2)?;
    let kind: String = row.get(at + 3)?;
    let created: i64 = row.get(at + 4)?;
    let expires: Option<i64> = row.get(at + 5)?;
    let last_used: Option<i64> = row.get(at + 6)?;
    let revoked: Option<i64> = row.get(at + 7)?;
    let totp_bound: bool = row.get(at + 8)?;
    let corrupt = |what: &str| AccessError::CorruptRow {
        id: id.clone(),
        what: what.to_owned(),
    };
    let ts = |v: i64, what: &str| DateTime::from_timestamp(v, 0).ok_or_else(|| corrupt(what));
    let parsed = (|| {
        Ok(TokenRecord {
            id: TokenId::parse(&id).map_err(|_| corrupt("id"))?,
            name: TokenName::parse(&name).map_err(|_| corrupt("name"))?,
            role: role.parse().map_err(|_| corrupt("role"))?,
            kind: TokenKind::from_column(&kind).ok_or_else(|| corrupt("kind"))?,
            created_at: ts(created, "created_at")?,
            expires_at: expires.map(|v| ts(v, "expires_at")).transpose()?,
            last_used_at: last_used.map(|v| ts(v, "last_used_at")).transpose()?,
            revoked_at: revoked.map(|v| ts(v, "revoked_at")).transpose()?,
            totp_bound,
        })
    })();
    Ok(parsed)
}

/// Fixtures for the unit tests of the access modules.
#[cfg(test)]
pub(in crate::access) mod fixture {
    use std::sync::Arc;

    use chrono::DateTime;

    use super::TokenStore;
    use crate::access::clock::ManualClock;
    use crate::access::name::TokenName;
    use crate::access::refusal::{AuthFailure, Refusal};
    use crate::access::role::Role;
    use crate::access::token::record::NewToken;

    /// A store in a temp dir with a manual clock at a fixed instant.
    pub fn store() -> (tempfile::TempDir, Arc<ManualClock>, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(
            DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        ));
        let store = TokenStore::open(&dir.path().join("gw.db"), clock.clone(), 1).unwrap();
        (dir, clock, store)
    }

    /// A standard token without expiry or TOTP.
    pub fn new(name: &str, role: Role) -> NewToken {
        NewToken {
            name: TokenName::parse(name).unwrap(),
            role,
            lifetime: None,
            bind_totp: false,
        }
    }

    /// An admin token bound to TOTP.
    pub fn totp_admin(name: &str) -> NewToken {
        NewToken {
            bind_totp: true,
            ..new(name, Role::Admin)
        }
    }

    /// The refusal inside `r`, or a panic.
    pub fn refusal(r: Result<impl std::fmt::Debug, AuthFailure>) -> Refusal {
        match r {
            Err(AuthFailure::Refused(r)) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::fixture::{new, store};
    use super::*;

    #[test]
    fn only_the_hash_is_stored_and_the_token_authenticates() {
        let (_dir, _clock, store) = store();
        let issued = store.create(new("alice", Role::Operator)).unwrap();
        let secret = issued.token.expose().to_owned();
        let stored: Vec<u8> = store
            .conn()
            .query_row("SELECT token_hash FROM admin_tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, Sha256::digest(secret.as_bytes()).to_vec());
        let dump: String = store
            .conn()
            .query_row(
                "SELECT group_concat(quote(id) || name || role) FROM admin_tokens",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!dump.contains(&secret[21..]));
        let record = store.authenticate(&secret).unwrap();
        assert_eq!(record.role, Role::Operator);
        assert_eq!(record.last_used_at, None, "authenticate changes nothing");
    }
}
