//! Signing a role with the keys it trusts, through `tough::editor`.
//!
//! Before tough signs, we check the offered keys ourselves so the refusal
//! names the role and the key: a key the role does not list is
//! [`Error::UntrustedKey`]; too few trusted keys is [`Error::ThresholdNotMet`].

use std::num::NonZeroU64;

use aws_lc_rs::rand::SystemRandom;
use serde::Serialize;
use tough::editor::signed::SignedRole;
use tough::schema::{KeyHolder, Role, RoleKeys, RoleType, Root, Signed};

use crate::error::{Error, Result};
use crate::keys::SigningKey;

/// The key ids (hex) and threshold a key holder gives a role.
pub(crate) fn trusted_ids(role_keys: &RoleKeys) -> Vec<String> {
    role_keys.keyids.iter().map(|k| hex::encode(&**k)).collect()
}

/// Checks the offered keys against the role's keys and threshold.
pub(crate) fn check_signers(role: &str, role_keys: &RoleKeys, keys: &[SigningKey]) -> Result<()> {
    let trusted = trusted_ids(role_keys);
    for k in keys {
        if !trusted.iter().any(|t| t == k.key_id()) {
            return Err(Error::UntrustedKey {
                role: role.to_owned(),
                key_id: k.key_id().to_owned(),
                trusted,
            });
        }
    }
    let mut ids: Vec<&str> = keys.iter().map(SigningKey::key_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let valid = ids.len() as u64;
    if valid < role_keys.threshold.get() {
        return Err(Error::ThresholdNotMet {
            role: role.to_owned(),
            threshold: role_keys.threshold.get(),
            valid,
        });
    }
    Ok(())
}

/// The root's keys for a top-level role.
pub(crate) fn root_role_keys(root: &Root, role: tough::schema::RoleType) -> Result<RoleKeys> {
    root.roles
        .get(&role)
        .cloned()
        .ok_or_else(|| Error::UnknownRole {
            role: role.to_string(),
            hint: "root.json does not list it; re-create the root with `tuf-repo init`",
        })
}

/// Signs the top-level `role` (of type `kind`, named `role_name`) with
/// `keys`, checked against the keys and threshold `root` gives that role.
pub(crate) async fn sign_under_root<T>(
    role_name: &str,
    kind: RoleType,
    role: T,
    root: Root,
    keys: &[SigningKey],
) -> Result<SignedRole<T>>
where
    T: Role + Serialize,
{
    let role_keys = root_role_keys(&root, kind)?;
    sign_role(role_name, role, &KeyHolder::Root(root), &role_keys, keys).await
}

/// Signs `role` with `keys` through tough's editor, after checking them
/// against `holder`'s keys for `role_name` (`role_keys`).
pub(crate) async fn sign_role<T>(
    role_name: &str,
    role: T,
    holder: &KeyHolder,
    role_keys: &RoleKeys,
    keys: &[SigningKey],
) -> Result<SignedRole<T>>
where
    T: Role + Serialize,
{
    check_signers(role_name, role_keys, keys)?;
    let sources: Vec<Box<dyn tough::key_source::KeySource>> =
        keys.iter().map(SigningKey::key_source).collect();
    let rng = SystemRandom::new();
    SignedRole::new(role, holder, &sources, &rng)
        .await
        .map_err(|e| Error::tough(format!("signing role '{role_name}'"), e))
}

/// Counts the valid signatures on `signed` from keys in `role_keys`, using
/// the keys map of the holder (root keys or delegation keys).
pub(crate) fn count_valid<T: Serialize>(
    signed: &Signed<T>,
    role_keys: &RoleKeys,
    keys: &std::collections::HashMap<
        tough::schema::decoded::Decoded<tough::schema::decoded::Hex>,
        tough::schema::key::Key,
    >,
) -> u64 {
    let mut data = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut data, olpc_cjson::CanonicalFormatter::new());
    if signed.signed.serialize(&mut ser).is_err() {
        return 0;
    }
    let mut seen = std::collections::HashSet::new();
    let mut valid = 0;
    for sig in &signed.signatures {
        if !role_keys.keyids.contains(&sig.keyid) || !seen.insert(sig.keyid.clone()) {
            continue;
        }
        let Some(tough::schema::key::Key::Ed25519 { keyval, .. }) = keys.get(&sig.keyid) else {
            continue;
        };
        let Ok(pk_bytes) = <[u8; 32]>::try_from(&*keyval.public) else {
            continue;
        };
        let Ok(pk) = ed25519_dalek::VerifyingKey::from_bytes(&pk_bytes) else {
            continue;
        };
        let Ok(sig_bytes) = <[u8; 64]>::try_from(&*sig.sig) else {
            continue;
        };
        if pk
            .verify_strict(&data, &ed25519_dalek::Signature::from_bytes(&sig_bytes))
            .is_ok()
        {
            valid += 1;
        }
    }
    valid
}

/// A threshold from a count, refusing zero.
pub(crate) fn threshold(role: &str, n: u64) -> Result<NonZeroU64> {
    NonZeroU64::new(n).ok_or_else(|| Error::InvalidArgument {
        what: "threshold",
        reason: format!("role '{role}' needs a threshold of at least 1"),
    })
}
