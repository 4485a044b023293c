//! Anchors of the audit chain: its head (last row id and hash, and the
//! number of rows) signed with the gateway's Ed25519 anchor key, kept
//! somewhere the gateway cannot rewrite.
//!
//! The chain alone cannot show rows cut off its end: what is left is a
//! valid, shorter chain. An anchor taken before the cut can. The gateway
//! writes one every `audit.anchor_interval` to `audit.anchor_file` (JSON
//! lines, appended, for the operator to ship to a SIEM) and publishes it
//! retained, QoS 1, on `<uplink.topic_prefix>/audit/anchor` at the
//! hospital broker ([`crate::anchoring`]); `gateway audit anchor` writes
//! one on demand. `gateway audit verify --anchor <file>` checks every
//! anchor in the file (or in a broker capture: `mosquitto_sub -v` lines)
//! against the log: a row the anchor names that is gone, or that holds
//! another hash, is named; an anchor whose signature does not verify is
//! refused.
//!
//! The anchor key is 32 random bytes (an Ed25519 seed) in
//! [`KEY_FILE`] beside the database, mode 0600, created on first use the
//! way the other key files are ([`wardgate_tls::keyfile`]). Someone who
//! can rewrite the database and the key can sign a new, shorter head; the
//! anchors already shipped elsewhere then no longer verify under the key
//! the operator recorded (`--anchor-key`), which is itself the finding.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use wardgate_tls::keyfile::{self, KeyFileError};

use super::AuditRecord;

/// The anchor key's file name in the data directory.
pub const KEY_FILE: &str = "audit-anchor.key";

/// The `schema` of an anchor, also the first element of what is signed.
pub const SCHEMA: &str = "wardgate.audit-anchor.v1";

/// Why anchoring or checking an anchor failed (not what a check found).
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The key file is unsafe, unreadable or could not be written.
    #[error("audit anchor key: {0}")]
    KeyFile(#[from] KeyFileError),
    /// The key file exists but does not hold a key.
    #[error("audit anchor key {path} is not 32 bytes ({len}); move it aside and run `gateway audit anchor` to create a new key, then record its public key")]
    KeyLength {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// Reading the key or an anchor file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A public key given to check with is not one.
    #[error(
        "`{0}` is not an Ed25519 public key (64 hex digits, as `gateway audit anchor` prints it)"
    )]
    PublicKey(String),
}

/// The gateway's anchor signing key (`Debug` shows the public half only,
/// as `ed25519_dalek` does).
#[derive(Debug)]
pub struct AnchorKey {
    signing: SigningKey,
}

impl AnchorKey {
    /// The key in `data_dir`, created (0600) if there is none yet. Two
    /// processes creating it at once agree on one key: the loser of the
    /// race reads the winner's file.
    ///
    /// # Errors
    /// [`AnchorError`] when the file is unsafe (readable by others),
    /// malformed or cannot be written.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, AnchorError> {
        let path = data_dir.join(KEY_FILE);
        if path.symlink_metadata().is_err() {
            let seed: [u8; 32] = rand::random();
            match keyfile::write_private_new(&path, &seed) {
                Ok(()) | Err(KeyFileError::Exists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Self::load(&path)
    }

    /// The key in the file `path`.
    ///
    /// # Errors
    /// As [`AnchorKey::load_or_create`], and when the file does not exist.
    pub fn load(path: &Path) -> Result<Self, AnchorError> {
        keyfile::check_private(path)?;
        let bytes = std::fs::read(path).map_err(|source| AnchorError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let seed: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| AnchorError::KeyLength {
                path: path.to_path_buf(),
                len: bytes.len(),
            })?;
        Ok(Self {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// The public key that checks this key's anchors.
    #[must_use]
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key as hex, as anchors carry it and operators record it.
    #[must_use]
    pub fn public_hex(&self) -> String {
        hex::encode(self.verifying_key().as_bytes())
    }

    /// Sign the chain head `head` of gateway `gateway` at `at`.
    #[must_use]
    pub fn sign(&self, gateway: &str, head: &ChainHead, at: DateTime<Utc>) -> Anchor {
        let signed_at = at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let message = signed_bytes(gateway, head, &signed_at);
        Anchor {
            schema: SCHEMA.to_owned(),
            gateway: gateway.to_owned(),
            row_id: head.row_id,
            hash: head.hash.clone(),
            rows: head.rows,
            signed_at,
            key: self.public_hex(),
            signature: hex::encode(self.signing.sign(&message).to_bytes()),
        }
    }
}

/// Append `line` and a newline to `path`, creating it (0640) if missing,
/// and wait until it is on disk: the anchor file, written by the running
/// gateway and by `gateway audit anchor` alike.
///
/// # Errors
/// The file cannot be opened or written.
pub fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o640);
    }
    let mut f = options.open(path)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_data()
}

/// Parse a public key given as 64 hex digits.
///
/// # Errors
/// [`AnchorError::PublicKey`].
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, AnchorError> {
    let bad = || AnchorError::PublicKey(text.to_owned());
    let bytes: [u8; 32] = hex::decode(text.trim())
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

/// The head of the chain: its last row and how many rows it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The last row's id.
    pub row_id: i64,
    /// The last row's hash.
    pub hash: String,
    /// Rows in the log.
    pub rows: u64,
}

/// One signed anchor, as written to the anchor file and published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// [`SCHEMA`].
    pub schema: String,
    /// The gateway (its `uplink.client_id`).
    pub gateway: String,
    /// The last row's id when signed.
    pub row_id: i64,
    /// That row's hash.
    pub hash: String,
    /// Rows in the log when signed.
    pub rows: u64,
    /// When signed (RFC 3339, UTC, milliseconds).
    pub signed_at: String,
    /// The signing public key, hex (informational: checks use the key the
    /// operator trusts, never this field alone).
    pub key: String,
    /// Ed25519 signature over [`SCHEMA`], gateway, row id, hash, rows and
    /// time as a JSON array, hex.
    pub signature: String,
}

impl Anchor {
    /// Whether the signature verifies under `key`.
    #[must_use]
    pub fn verifies_with(&self, key: &VerifyingKey) -> bool {
        let Ok(bytes) = hex::decode(&self.signature) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&bytes) else {
            return false;
        };
        let head = ChainHead {
            row_id: self.row_id,
            hash: self.hash.clone(),
            rows: self.rows,
        };
        self.schema == SCHEMA
            && key
                .verify(
                    &signed_bytes(&self.gateway, &head, &self.signed_at),
                    &signature,
                )
                .is_ok()
    }
}

fn signed_bytes(gateway: &str, head: &ChainHead, signed_at: &str) -> Vec<u8> {
    serde_json::json!([
        SCHEMA,
        gateway,
        head.row_id,
        head.hash,
        head.rows,
        signed_at
    ])
    .to_string()
    .into_bytes()
}

/// What checking a file of anchors against the log found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AnchorReport {
    /// Anchors that verified and were checked against the log.
    pub checked: usize,
    /// The highest row an intact anchor vouches for.
    pub covered_to: Option<i64>,
    /// Anchors refused: not an anchor, or the signature does not verify
    /// under the trusted key (altered, or another gateway's).
    pub refused: Vec<String>,
    /// What the log lacks or holds differently from the anchors.
    pub problems: Vec<String>,
}

impl AnchorReport {
    /// True if every anchor verified and the log holds what each vouches
    /// for.
    #[must_use]
    pub fn is_intact(&self) -> bool {
        self.refused.is_empty() && self.problems.is_empty()
    }
}

/// Check the anchors in `text` (JSON lines; a line may start with a topic,
/// as `mosquitto_sub -v` prints it) against `records`, the whole log in
/// row order, trusting `key`.
#[must_use]
pub fn check(text: &str, records: &[AuditRecord], key: &VerifyingKey) -> AnchorReport {
    let mut report = AnchorReport::default();
    let last_id = records.last().map_or(0, |r| r.id);
    let mut missing_reported = false;
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let json = match line.find('{') {
            Some(start) => &line[start..],
            None if line.trim().is_empty() => continue,
            None => {
                report
                    .refused
                    .push(format!("line {line_no} is not an anchor (no JSON object)"));
                continue;
            }
        };
        let anchor: Anchor = match serde_json::from_str(json) {
            Ok(a) => a,
            Err(e) => {
                report
                    .refused
                    .push(format!("line {line_no} is not an anchor: {e}"));
                continue;
            }
        };
        if !anchor.verifies_with(key) {
            report.refused.push(format!(
                "line {line_no} (row {} at {}): the signature does not verify with the trusted anchor key {}: this anchor was altered or is another gateway's",
                anchor.row_id,
                anchor.signed_at,
                hex::encode(key.as_bytes())
            ));
            continue;
        }
        report.checked += 1;
        let held = records.binary_search_by_key(&anchor.row_id, |r| r.id);
        match held {
            Ok(i) if records[i].hash == anchor.hash => {
                report.covered_to = report.covered_to.max(Some(anchor.row_id));
            }
            Ok(_) => report.problems.push(format!(
                "row {} is not the row anchored at {} (its hash differs): the log was rewritten from there",
                anchor.row_id, anchor.signed_at
            )),
            Err(_) if anchor.row_id > last_id => {
                if !missing_reported {
                    missing_reported = true;
                    let highest = highest_anchored(text, key).unwrap_or(anchor.row_id);
                    report.problems.push(format!(
                        "rows {}..={highest} are missing from the end of the log: they were anchored (line {line_no} at {}) and have been cut off; the log now ends at row {last_id}",
                        last_id + 1,
                        anchor.signed_at
                    ));
                }
            }
            Err(_) => report.problems.push(format!(
                "row {} was anchored at {} and is gone from the log",
                anchor.row_id, anchor.signed_at
            )),
        }
    }
    report
}

/// The highest row id any verifying anchor in `text` names.
fn highest_anchored(text: &str, key: &VerifyingKey) -> Option<i64> {
    text.lines()
        .filter_map(|l| l.find('{').map(|s| &l[s..]))
        .filter_map(|j| serde_json::from_str::<Anchor>(j).ok())
        .filter(|a| a.verifies_with(key))
        .map(|a| a.row_id)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::log_with;
    use crate::audit::AuditLog;

    fn anchor_now(dir: &Path, log: &AuditLog) -> (AnchorKey, String) {
        let key = AnchorKey::load_or_create(dir).unwrap();
        let head = log.head().unwrap().unwrap();
        let line = serde_json::to_string(&key.sign("gw-1", &head, Utc::now())).unwrap();
        (key, line)
    }

    // control: audit
    #[test]
    fn an_anchor_of_the_intact_log_verifies() {
        let (dir, log) = log_with(4);
        let (key, line) = anchor_now(dir.path(), &log);
        let report = check(&line, &log.all().unwrap(), &key.verifying_key());
        assert!(report.is_intact(), "{report:?}");
        assert_eq!((report.checked, report.covered_to), (1, Some(4)));
        // The same key again from the file, not a new one.
        let again = AnchorKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.public_hex(), key.public_hex());
    }

    // control: audit
    #[test]
    fn rows_cut_off_the_end_are_named() {
        let (dir, log) = log_with(6);
        let (key, line) = anchor_now(dir.path(), &log);
        let mut records = log.all().unwrap();
        records.truncate(4);
        let report = check(&line, &records, &key.verifying_key());
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert!(
            report.problems[0].starts_with("rows 5..=6 are missing from the end of the log"),
            "{report:?}"
        );
    }

    // control: audit
    #[test]
    fn an_altered_or_foreign_anchor_is_refused() {
        let (dir, log) = log_with(3);
        let (key, line) = anchor_now(dir.path(), &log);
        let records = log.all().unwrap();
        let lowered = line.replace("\"row_id\":3", "\"row_id\":2");
        assert_ne!(lowered, line);
        let report = check(&lowered, &records, &key.verifying_key());
        assert_eq!(report.refused.len(), 1, "{report:?}");
        assert!(report.refused[0].contains("does not verify"), "{report:?}");
        let other = AnchorKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        let report = check(&line, &records, &other.verifying_key());
        assert_eq!(report.refused.len(), 1, "{report:?}");
        let report = check("not an anchor\n{\"x\":1}\n", &records, &key.verifying_key());
        assert_eq!(report.refused.len(), 2, "{report:?}");
    }

    #[test]
    fn a_rewritten_anchored_row_and_a_broker_capture_line() {
        let (dir, log) = log_with(3);
        let (key, line) = anchor_now(dir.path(), &log);
        let mut records = log.all().unwrap();
        records[2].hash = "00".repeat(32);
        let captured = format!("wardgate/gw-1/audit/anchor {line}");
        let report = check(&captured, &records, &key.verifying_key());
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert!(
            report.problems[0].contains("its hash differs"),
            "{report:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        AnchorKey::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = AnchorKey::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, AnchorError::KeyFile(_)), "{err}");
    }
}
