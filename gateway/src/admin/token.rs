//! The access-token store: bearer tokens kept only as SHA-256 hashes, each
//! with a role, an optional expiry, created/last-used timestamps, an
//! optional TOTP binding, and the time-limited break-glass kind.
//!
//! A token reads `wgt_<id>_<secret>`: `<id>` (16 hex digits) is public and
//! names the row; `<secret>` is 256 random bits (base64url). Lookup is by id,
//! then the SHA-256 of the whole presented string is compared in constant
//! time with the stored hash. The secret is shown once, at creation.
//!
//! [`TokenStore::authenticate`] and [`TokenStore::check_totp`] change
//! nothing on refusal; only [`TokenStore::record_use`] (called once a request
//! is fully authorised) and an accepted TOTP code write to the row.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::clock::Clock;
use super::policy::Refusal;
use super::role::Role;
use super::totp::{matching_step, TotpCode, TotpSecret};
use super::vault::TotpVault;
use super::AdminError;

const PREFIX: &str = "wgt_";
/// Wrong TOTP codes in a row that lock a token's mutating calls.
pub const TOTP_MAX_FAILURES: i64 = 5;
/// How long that lock lasts.
pub const TOTP_LOCKOUT_SECONDS: i64 = 300;
const ID_HEX: usize = 16;
const SECRET_BYTES: usize = 32;

/// The public id of a token: 16 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TokenId(String);

impl TokenId {
    /// Parse a token id.
    ///
    /// # Errors
    /// [`AdminError::InvalidTokenId`] unless it is 16 lowercase hex digits.
    pub fn parse(s: &str) -> Result<Self, AdminError> {
        if s.len() == ID_HEX && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(AdminError::InvalidTokenId(s.chars().take(40).collect()))
        }
    }

    fn random() -> Self {
        let mut bytes = [0u8; ID_HEX / 2];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(hex::encode(bytes))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A human label for a token (who or what holds it): 1 to 64 characters
/// from `A-Z a-z 0-9 . _ @ -`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TokenName(String);

impl TokenName {
    /// Parse a token name.
    ///
    /// # Errors
    /// [`AdminError::InvalidTokenName`] if empty, too long or with other characters.
    pub fn parse(s: &str) -> Result<Self, AdminError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(AdminError::InvalidTokenName(s.chars().take(80).collect()))
        }
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A bearer token as presented or as just issued. Zeroed on drop, never
/// logged (its `Debug` shows only the id).
#[derive(Clone)]
pub struct BearerToken {
    id: TokenId,
    full: Zeroizing<String>,
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerToken({}, ..)", self.id)
    }
}

impl BearerToken {
    /// Parse a presented token string.
    ///
    /// # Errors
    /// [`Refusal::MalformedToken`] if it does not have the `wgt_<id>_<secret>` shape.
    pub fn parse(s: &str) -> Result<Self, Refusal> {
        let rest = s.strip_prefix(PREFIX).ok_or(Refusal::MalformedToken)?;
        let (id, secret) = rest.split_once('_').ok_or(Refusal::MalformedToken)?;
        let id = TokenId::parse(id).map_err(|_| Refusal::MalformedToken)?;
        let secret_ok = secret.len() == 43
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !secret_ok {
            return Err(Refusal::MalformedToken);
        }
        Ok(Self {
            id,
            full: Zeroizing::new(s.to_owned()),
        })
    }

    fn generate() -> Self {
        let id = TokenId::random();
        let mut secret = Zeroizing::new([0u8; SECRET_BYTES]);
        rand::rngs::OsRng.fill_bytes(secret.as_mut());
        let encoded = Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.as_ref()),
        );
        let full = Zeroizing::new(format!("{PREFIX}{id}_{}", encoded.as_str()));
        Self { id, full }
    }

    /// The public id inside the token.
    #[must_use]
    pub fn id(&self) -> &TokenId {
        &self.id
    }

    /// The full secret string, to hand to its holder once.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.full
    }

    fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.full.as_bytes()).into()
    }
}

/// Ordinary tokens, or the time-limited emergency admin token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A token issued for a person or a system.
    Standard,
    /// An emergency admin token with a short expiry, audited on every use.
    BreakGlass,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Standard => "standard",
            TokenKind::BreakGlass => "break_glass",
        }
    }
}

/// A stored token, without its secret or TOTP secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    /// Public id.
    pub id: TokenId,
    /// Holder label.
    pub name: TokenName,
    /// Granted role.
    pub role: Role,
    /// Standard or break-glass.
    pub kind: TokenKind,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last fully authorised use.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether mutating calls need a TOTP code.
    pub totp_bound: bool,
}

impl TokenRecord {
    /// Whether the token is past its expiry at `now`.
    #[must_use]
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Holder label.
    pub name: TokenName,
    /// Granted role.
    pub role: Role,
    /// Lifetime from now; `None` for no expiry.
    pub lifetime: Option<Duration>,
    /// Bind a fresh TOTP secret (operator and admin only).
    pub bind_totp: bool,
}

/// A freshly issued token: the only time its secret and TOTP secret are seen.
#[derive(Debug)]
pub struct IssuedToken {
    /// The stored record.
    pub record: TokenRecord,
    /// The bearer token to hand over.
    pub token: BearerToken,
    /// The TOTP secret to enrol in an authenticator app, if bound.
    pub totp: Option<TotpSecret>,
}

/// Why a token appears in the access review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewFlag {
    /// Not used (or never used since creation) for the stale period.
    Stale,
    /// Past its expiry but not revoked.
    Expired,
    /// Revoked.
    Revoked,
    /// A break-glass token.
    BreakGlass,
}

/// One line of the access review.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewEntry {
    /// The token.
    pub record: TokenRecord,
    /// Days since last use (or creation, if never used).
    pub idle_days: i64,
    /// What needs attention; empty if nothing.
    pub flags: Vec<ReviewFlag>,
}

/// Why authentication did not produce a token record.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// The caller is refused (401/403 to the peer, audit row).
    #[error("{0}")]
    Refused(Refusal),
    /// The store failed (500 to the peer).
    #[error(transparent)]
    Store(#[from] AdminError),
}

impl From<Refusal> for AuthFailure {
    fn from(r: Refusal) -> Self {
        AuthFailure::Refused(r)
    }
}

/// The token table, over its own connection to the gateway database.
#[derive(Debug)]
pub struct TokenStore {
    conn: Mutex<Connection>,
    vault: TotpVault,
    clock: Arc<dyn Clock>,
    totp_skew: u8,
}

impl TokenStore {
    /// Open the store on the gateway database at `db_path`.
    ///
    /// # Errors
    /// [`AdminError::Db`] if the database cannot be opened or migrated.
    pub fn open(db_path: &Path, clock: Arc<dyn Clock>, totp_skew: u8) -> Result<Self, AdminError> {
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

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Issue a standard token.
    ///
    /// # Errors
    /// [`AdminError::TotpForViewer`] if TOTP is asked for a viewer token,
    /// [`AdminError::InvalidLifetime`] for a non-positive lifetime, or a
    /// database error.
    pub fn create(&self, new: NewToken) -> Result<IssuedToken, AdminError> {
        if new.bind_totp && new.role == Role::Viewer {
            return Err(AdminError::TotpForViewer);
        }
        if new.lifetime.is_some_and(|d| d <= Duration::zero()) {
            return Err(AdminError::InvalidLifetime);
        }
        let totp = new.bind_totp.then(TotpSecret::generate);
        self.insert(new.name, new.role, TokenKind::Standard, new.lifetime, totp)
    }

    /// Issue a break-glass admin token valid for `minutes` (1 to `max_minutes`).
    ///
    /// # Errors
    /// [`AdminError::BreakGlassWindow`] outside that range, or a database error.
    pub fn break_glass(
        &self,
        minutes: u32,
        max_minutes: u32,
        name: TokenName,
    ) -> Result<IssuedToken, AdminError> {
        if minutes == 0 || minutes > max_minutes {
            return Err(AdminError::BreakGlassWindow {
                minutes,
                max_minutes,
            });
        }
        let lifetime = Duration::minutes(i64::from(minutes));
        self.insert(
            name,
            Role::Admin,
            TokenKind::BreakGlass,
            Some(lifetime),
            None,
        )
    }

    fn insert(
        &self,
        name: TokenName,
        role: Role,
        kind: TokenKind,
        lifetime: Option<Duration>,
        totp: Option<TotpSecret>,
    ) -> Result<IssuedToken, AdminError> {
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
    pub fn get(&self, id: &TokenId) -> Result<Option<TokenRecord>, AdminError> {
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
    pub fn list(&self) -> Result<Vec<TokenRecord>, AdminError> {
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
    /// [`AdminError::UnknownToken`], [`AdminError::AlreadyRevoked`], or a
    /// database error.
    pub fn revoke(&self, id: &TokenId) -> Result<TokenRecord, AdminError> {
        let now = truncate(self.clock.now());
        let record = self
            .get(id)?
            .ok_or_else(|| AdminError::UnknownToken(id.clone()))?;
        if record.revoked_at.is_some() {
            return Err(AdminError::AlreadyRevoked(id.clone()));
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

    /// Check a presented token string. Changes nothing.
    ///
    /// # Errors
    /// [`AuthFailure::Refused`] with the reason (malformed, unknown, wrong
    /// secret, revoked, expired), or [`AuthFailure::Store`].
    pub fn authenticate(&self, presented: &str) -> Result<TokenRecord, AuthFailure> {
        let token = BearerToken::parse(presented)?;
        let row: Option<(Vec<u8>, Result<TokenRecord, AdminError>)> = self
            .conn()
            .query_row(
                &format!("SELECT token_hash, {COLUMNS} FROM admin_tokens WHERE id = ?1"),
                [token.id().as_str()],
                |row| Ok((row.get::<_, Vec<u8>>(0)?, record_from_row_at(row, 1)?)),
            )
            .optional()
            .map_err(AdminError::from)?;
        // Hash even when the id is unknown so both paths cost the same.
        let presented_hash = token.hash();
        let Some((stored_hash, record)) = row else {
            let _ = presented_hash.ct_eq(&[0u8; 32]);
            return Err(Refusal::UnknownToken.into());
        };
        if !bool::from(presented_hash.as_slice().ct_eq(stored_hash.as_slice())) {
            return Err(Refusal::WrongSecret.into());
        }
        let record = record?;
        if record.revoked_at.is_some() {
            return Err(Refusal::RevokedToken.into());
        }
        if record.is_expired(self.clock.now()) {
            return Err(Refusal::ExpiredToken.into());
        }
        Ok(record)
    }

    /// Check a TOTP code for a bound token and, if it is good and its step
    /// not used before, remember the step. A token without TOTP passes.
    ///
    /// # Errors
    /// [`Refusal::TotpRequired`] if no code, [`Refusal::TotpMalformed`],
    /// [`Refusal::TotpInvalid`], [`Refusal::TotpReused`] (this step or an
    /// earlier one was already used), [`Refusal::TotpLocked`] (after
    /// [`TOTP_MAX_FAILURES`] wrong codes in a row, for
    /// [`TOTP_LOCKOUT_SECONDS`]), or a store error. Wrong and malformed codes
    /// are counted; a good code resets the count.
    pub fn check_totp(&self, id: &TokenId, code: Option<&str>) -> Result<(), AuthFailure> {
        let conn = self.conn();
        let stored: Option<TotpRow> = conn
            .query_row(
                "SELECT totp_secret, totp_last_step, totp_locked_until FROM admin_tokens WHERE id = ?1",
                [id.as_str()],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(AdminError::from)?;
        let Some((secret, last_step, locked_until)) = stored else {
            return Err(Refusal::UnknownToken.into());
        };
        let Some(secret) = secret else {
            return Ok(());
        };
        let now = self.clock.now().timestamp();
        if locked_until.is_some_and(|until| now < until) {
            return Err(Refusal::TotpLocked.into());
        }
        let secret = self.vault.open(id, &secret)?;
        let code = code.ok_or(Refusal::TotpRequired)?;
        let matched = TotpCode::parse(code)
            .map_err(|_| Refusal::TotpMalformed)
            .and_then(|code| {
                let secs = u64::try_from(now).unwrap_or(0);
                matching_step(&secret, &code, secs, self.totp_skew)
                    .and_then(|step| i64::try_from(step).ok())
                    .ok_or(Refusal::TotpInvalid)
            });
        let step = match matched {
            Ok(step) => step,
            Err(refusal) => {
                // Count the miss; the fifth in a row locks TOTP calls for a while.
                conn.execute(
                    "UPDATE admin_tokens SET totp_failures = totp_failures + 1,
                         totp_locked_until = CASE WHEN totp_failures + 1 >= ?2 THEN ?3 ELSE totp_locked_until END
                     WHERE id = ?1",
                    params![id.as_str(), TOTP_MAX_FAILURES, now + TOTP_LOCKOUT_SECONDS],
                )
                .map_err(AdminError::from)?;
                return Err(refusal.into());
            }
        };
        if last_step.is_some_and(|last| step <= last) {
            return Err(Refusal::TotpReused.into());
        }
        // Compare-and-set: two concurrent requests with one code cannot both pass.
        let changed = conn
            .execute(
                "UPDATE admin_tokens SET totp_last_step = ?2, totp_failures = 0, totp_locked_until = NULL
                 WHERE id = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                params![id.as_str(), step],
            )
            .map_err(AdminError::from)?;
        if changed == 0 {
            return Err(Refusal::TotpReused.into());
        }
        Ok(())
    }

    /// Note a fully authorised use of the token.
    ///
    /// # Errors
    /// A database error.
    pub fn record_use(&self, id: &TokenId) -> Result<(), AdminError> {
        let now = truncate(self.clock.now());
        self.conn().execute(
            "UPDATE admin_tokens SET last_used_at = ?2 WHERE id = ?1",
            params![id.as_str(), now.timestamp()],
        )?;
        Ok(())
    }

    /// Every token with what needs attention: unused for `stale_after`,
    /// past expiry, revoked, break-glass.
    ///
    /// # Errors
    /// A database error.
    pub fn review(&self, stale_after: Duration) -> Result<Vec<ReviewEntry>, AdminError> {
        let now = self.clock.now();
        Ok(self
            .list()?
            .into_iter()
            .map(|record| {
                let since = record.last_used_at.unwrap_or(record.created_at);
                let idle = now - since;
                let mut flags = Vec::new();
                if record.revoked_at.is_some() {
                    flags.push(ReviewFlag::Revoked);
                } else {
                    if idle >= stale_after {
                        flags.push(ReviewFlag::Stale);
                    }
                    if record.is_expired(now) {
                        flags.push(ReviewFlag::Expired);
                    }
                }
                if record.kind == TokenKind::BreakGlass {
                    flags.push(ReviewFlag::BreakGlass);
                }
                ReviewEntry {
                    idle_days: idle.num_days(),
                    record,
                    flags,
                }
            })
            .collect())
    }
}

/// `(totp_secret, totp_last_step, totp_locked_until)` of one token.
type TotpRow = (Option<Vec<u8>>, Option<i64>, Option<i64>);

const COLUMNS: &str =
    "id, name, role, kind, created_at, expires_at, last_used_at, revoked_at, totp_secret IS NOT NULL";

fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<Result<TokenRecord, AdminError>> {
    record_from_row_at(row, 0)
}

/// Rows are parsed back through the same constructors as input, so a
/// tampered row surfaces as [`AdminError::CorruptRow`] rather than a panic.
fn record_from_row_at(
    row: &Row<'_>,
    at: usize,
) -> rusqlite::Result<Result<TokenRecord, AdminError>> {
    let id: String = row.get(at)?;
    let name: String = row.get(at + 1)?;
    let role: String = row.get(at + 2)?;
    let kind: String = row.get(at + 3)?;
    let created: i64 = row.get(at + 4)?;
    let expires: Option<i64> = row.get(at + 5)?;
    let last_used: Option<i64> = row.get(at + 6)?;
    let revoked: Option<i64> = row.get(at + 7)?;
    let totp_bound: bool = row.get(at + 8)?;
    let corrupt = |what: &str| AdminError::CorruptRow {
        id: id.clone(),
        what: what.to_owned(),
    };
    let ts = |v: i64, what: &str| DateTime::from_timestamp(v, 0).ok_or_else(|| corrupt(what));
    let parsed = (|| {
        Ok(TokenRecord {
            id: TokenId::parse(&id).map_err(|_| corrupt("id"))?,
            name: TokenName::parse(&name).map_err(|_| corrupt("name"))?,
            role: role.parse().map_err(|_| corrupt("role"))?,
            kind: match kind.as_str() {
                "standard" => TokenKind::Standard,
                "break_glass" => TokenKind::BreakGlass,
                _ => return Err(corrupt("kind")),
            },
            created_at: ts(created, "created_at")?,
            expires_at: expires.map(|v| ts(v, "expires_at")).transpose()?,
            last_used_at: last_used.map(|v| ts(v, "last_used_at")).transpose()?,
            revoked_at: revoked.map(|v| ts(v, "revoked_at")).transpose()?,
            totp_bound,
        })
    })();
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::clock::ManualClock;
    use crate::admin::totp::STEP_SECONDS;

    fn store() -> (tempfile::TempDir, Arc<ManualClock>, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(
            DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        ));
        let store = TokenStore::open(&dir.path().join("gw.db"), clock.clone(), 1).unwrap();
        (dir, clock, store)
    }

    fn new(name: &str, role: Role) -> NewToken {
        NewToken {
            name: TokenName::parse(name).unwrap(),
            role,
            lifetime: None,
            bind_totp: false,
        }
    }

    fn refusal(r: Result<impl fmt::Debug, AuthFailure>) -> Refusal {
        match r {
            Err(AuthFailure::Refused(r)) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

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

    #[test]
    fn refuses_malformed_unknown_wrong_revoked_expired() {
        let (_dir, clock, store) = store();
        let issued = store
            .create(NewToken {
                lifetime: Some(Duration::hours(1)),
                ..new("bob", Role::Viewer)
            })
            .unwrap();
        let good = issued.token.expose().to_owned();
        assert_eq!(
            refusal(store.authenticate("Bearer x")),
            Refusal::MalformedToken
        );
        assert_eq!(refusal(store.authenticate("")), Refusal::MalformedToken);
        let other = BearerToken::generate();
        assert_eq!(
            refusal(store.authenticate(other.expose())),
            Refusal::UnknownToken
        );
        // Right id, wrong secret.
        let forged = format!("{PREFIX}{}_{}", issued.token.id(), &other.expose()[21..]);
        assert_eq!(refusal(store.authenticate(&forged)), Refusal::WrongSecret);
        clock.advance(Duration::hours(1));
        assert_eq!(refusal(store.authenticate(&good)), Refusal::ExpiredToken);
        clock.advance(Duration::hours(-2));
        store.authenticate(&good).unwrap();
        store.revoke(issued.token.id()).unwrap();
        assert_eq!(refusal(store.authenticate(&good)), Refusal::RevokedToken);
        assert!(matches!(
            store.revoke(issued.token.id()),
            Err(AdminError::AlreadyRevoked(_))
        ));
    }

    #[test]
    fn totp_required_checked_and_not_reusable() {
        let (_dir, clock, store) = store();
        let issued = store
            .create(NewToken {
                bind_totp: true,
                ..new("carol", Role::Admin)
            })
            .unwrap();
        let id = issued.token.id().clone();
        let secret = issued.totp.unwrap();
        let now = || u64::try_from(clock.now().timestamp()).unwrap();
        assert_eq!(refusal(store.check_totp(&id, None)), Refusal::TotpRequired);
        assert_eq!(
            refusal(store.check_totp(&id, Some("12ab56"))),
            Refusal::TotpMalformed
        );
        let good = secret.code_at(now());
        let wrong = (0..10)
            .map(|d| format!("{}{d}", &good[..5]))
            .find(|c| (0..3).all(|k| *c != secret.code_at(now() + k * STEP_SECONDS - STEP_SECONDS)))
            .unwrap();
        assert_eq!(
            refusal(store.check_totp(&id, Some(&wrong))),
            Refusal::TotpInvalid
        );
        store.check_totp(&id, Some(&good)).unwrap();
        assert_eq!(
            refusal(store.check_totp(&id, Some(&good))),
            Refusal::TotpReused
        );
        // An older step's code is refused once a newer step was used.
        clock.advance(Duration::seconds(i64::try_from(STEP_SECONDS).unwrap()));
        let next = secret.code_at(now());
        store.check_totp(&id, Some(&next)).unwrap();
        let previous = secret.code_at(now() - STEP_SECONDS);
        assert_eq!(
            refusal(store.check_totp(&id, Some(&previous))),
            Refusal::TotpReused
        );
        // Tokens without TOTP pass.
        let plain = store.create(new("dave", Role::Admin)).unwrap();
        store.check_totp(plain.token.id(), None).unwrap();
        // Viewers cannot be bound (they never mutate).
        assert!(matches!(
            store.create(NewToken {
                bind_totp: true,
                ..new("eve", Role::Viewer)
            }),
            Err(AdminError::TotpForViewer)
        ));
    }

    #[test]
    fn repeated_wrong_totp_codes_lock_the_token_for_a_while() {
        let (_dir, clock, store) = store();
        let issued = store
            .create(NewToken {
                bind_totp: true,
                ..new("mallory-target", Role::Admin)
            })
            .unwrap();
        let id = issued.token.id().clone();
        let secret = issued.totp.unwrap();
        let now = || u64::try_from(clock.now().timestamp()).unwrap();
        let valid: Vec<String> = (0..3)
            .map(|k| secret.code_at(now() + k * STEP_SECONDS - STEP_SECONDS))
            .collect();
        let wrong = (0..1_000_000)
            .map(|n| format!("{n:06}"))
            .find(|c| !valid.contains(c))
            .unwrap();
        // Four misses, then a good code: accepted, and the count resets.
        for _ in 0..4 {
            assert_eq!(
                refusal(store.check_totp(&id, Some(&wrong))),
                Refusal::TotpInvalid
            );
        }
        store.check_totp(&id, Some(&secret.code_at(now()))).unwrap();
        clock.advance(Duration::seconds(30));
        for _ in 0..4 {
            assert_eq!(
                refusal(store.check_totp(&id, Some(&wrong))),
                Refusal::TotpInvalid
            );
        }
        // The fifth miss in a row locks: even the right code is refused.
        assert_eq!(
            refusal(store.check_totp(&id, Some("abc"))),
            Refusal::TotpMalformed
        );
        assert_eq!(
            refusal(store.check_totp(&id, Some(&secret.code_at(now())))),
            Refusal::TotpLocked
        );
        clock.advance(Duration::seconds(TOTP_LOCKOUT_SECONDS - 1));
        assert_eq!(
            refusal(store.check_totp(&id, Some(&secret.code_at(now())))),
            Refusal::TotpLocked
        );
        clock.advance(Duration::seconds(1));
        store.check_totp(&id, Some(&secret.code_at(now()))).unwrap();
        // Reads never consult TOTP, so the lock does not stop authentication.
        store.authenticate(issued.token.expose()).unwrap();
    }

    #[test]
    fn totp_secret_is_sealed_and_a_copied_database_alone_is_useless() {
        let (dir, clock, store) = store();
        let issued = store
            .create(NewToken {
                bind_totp: true,
                ..new("sealed", Role::Admin)
            })
            .unwrap();
        let secret = issued.totp.unwrap();
        let stored: Vec<u8> = store
            .conn()
            .query_row("SELECT totp_secret FROM admin_tokens", [], |r| r.get(0))
            .unwrap();
        assert!(!stored
            .windows(secret.as_bytes().len())
            .any(|w| w == secret.as_bytes()));
        // A backup of the database without the key file beside it.
        let elsewhere = tempfile::tempdir().unwrap();
        let copy = elsewhere.path().join("gw.db");
        store
            .conn()
            .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
            .unwrap();
        assert!(dir.path().join(super::super::vault::KEY_FILE).exists());
        let thief = TokenStore::open(&copy, clock.clone(), 1).unwrap();
        let code = secret.code_at(u64::try_from(clock.now().timestamp()).unwrap());
        assert!(matches!(
            thief.check_totp(issued.token.id(), Some(&code)),
            Err(AuthFailure::Store(AdminError::TotpKey { .. }))
        ));
        // The real store still accepts it.
        store.check_totp(issued.token.id(), Some(&code)).unwrap();
    }

    #[test]
    fn break_glass_is_admin_and_expires() {
        let (_dir, clock, store) = store();
        assert!(matches!(
            store.break_glass(0, 240, TokenName::parse("bg").unwrap()),
            Err(AdminError::BreakGlassWindow { .. })
        ));
        assert!(store
            .break_glass(241, 240, TokenName::parse("bg").unwrap())
            .is_err());
        let issued = store
            .break_glass(30, 240, TokenName::parse("bg").unwrap())
            .unwrap();
        let rec = store.authenticate(issued.token.expose()).unwrap();
        assert_eq!((rec.role, rec.kind), (Role::Admin, TokenKind::BreakGlass));
        clock.advance(Duration::minutes(29));
        store.authenticate(issued.token.expose()).unwrap();
        clock.advance(Duration::minutes(1));
        assert_eq!(
            refusal(store.authenticate(issued.token.expose())),
            Refusal::ExpiredToken
        );
    }

    #[test]
    fn review_flags_stale_and_expired() {
        let (_dir, clock, store) = store();
        let used = store.create(new("used", Role::Viewer)).unwrap();
        let idle = store.create(new("idle", Role::Viewer)).unwrap();
        let short = store
            .create(NewToken {
                lifetime: Some(Duration::days(10)),
                ..new("short", Role::Operator)
            })
            .unwrap();
        clock.advance(Duration::days(85));
        store.record_use(used.token.id()).unwrap();
        clock.advance(Duration::days(6));
        let review = store.review(Duration::days(90)).unwrap();
        let flags = |id: &TokenId| {
            review
                .iter()
                .find(|e| &e.record.id == id)
                .unwrap()
                .flags
                .clone()
        };
        assert_eq!(flags(used.token.id()), vec![]);
        assert_eq!(flags(idle.token.id()), vec![ReviewFlag::Stale]);
        assert_eq!(
            flags(short.token.id()),
            vec![ReviewFlag::Stale, ReviewFlag::Expired]
        );
        let entry = review
            .iter()
            .find(|e| &e.record.id == idle.token.id())
            .unwrap();
        assert_eq!(entry.idle_days, 91);
    }

    #[test]
    fn names_and_ids_are_parsed() {
        assert!(TokenName::parse("ops.alice@ward-3").is_ok());
        for bad in ["", "a b", "x;drop", &"a".repeat(65)] {
            assert!(TokenName::parse(bad).is_err(), "{bad}");
        }
        assert!(TokenId::parse("0123456789abcdef").is_ok());
        assert!(TokenId::parse("0123456789ABCDEF").is_err());
        assert!(TokenId::parse("../../etc").is_err());
    }

    proptest::proptest! {
        #[test]
        fn bearer_parse_never_panics(s in ".{0,120}") {
            let _ = BearerToken::parse(&s);
        }

        #[test]
        fn parsed_names_and_ids_hold_only_safe_characters(s in ".{0,80}") {
            if let Ok(name) = TokenName::parse(&s) {
                proptest::prop_assert!(name.as_str().bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b';'));
            }
            if let Ok(id) = TokenId::parse(&s) {
                proptest::prop_assert_eq!(id.as_str().len(), 16);
            }
        }

        #[test]
        fn generated_tokens_always_parse_back(_seed in 0u8..8) {
            let t = BearerToken::generate();
            let parsed = BearerToken::parse(t.expose()).unwrap();
            proptest::prop_assert_eq!(parsed.id(), t.id());
            proptest::prop_assert_eq!(parsed.hash(), t.hash());
        }
    }
}
