//! The second factor as it is enforced: a TOTP code for a bound token is
//! accepted once per 30-second step (a code whose step, or a later one, was
//! already used is a replay), and [`TOTP_MAX_FAILURES`] wrong codes in a row
//! lock the token's mutating calls for [`TOTP_LOCKOUT_SECONDS`].
//!
//! The last accepted step, the failure count and the lock live in the
//! token's row; the accepted step is written with a compare-and-set, so two
//! concurrent requests carrying one code cannot both pass.

use rusqlite::{params, OptionalExtension};

use crate::access::error::AccessError;
use crate::access::name::TokenId;
use crate::access::refusal::{AuthFailure, Refusal};
use crate::access::token::store::TokenStore;
use crate::access::totp::code::{matching_step, TotpCode};

/// Wrong TOTP codes in a row that lock a token's mutating calls.
pub const TOTP_MAX_FAILURES: i64 = 5;
/// How long that lock lasts.
pub const TOTP_LOCKOUT_SECONDS: i64 = 300;

/// `(totp_secret, totp_last_step, totp_locked_until)` of one token.
type TotpRow = (Option<Vec<u8>>, Option<i64>, Option<i64>);

impl TokenStore {
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
            .map_err(AccessError::from)?;
        let Some((secret, last_step, locked_until)) = stored else {
            return Err(Refusal::UnknownToken.into());
        };
        let Some(secret) = secret else {
            return Ok(());
        };
        let now = self.clock().now().timestamp();
        if locked_until.is_some_and(|until| now < until) {
            return Err(Refusal::TotpLocked.into());
        }
        let secret = self.vault().open(id, &secret).map_err(AccessError::from)?;
        let code = code.ok_or(Refusal::TotpRequired)?;
        let matched = TotpCode::parse(code)
            .map_err(|_| Refusal::TotpMalformed)
            .and_then(|code| {
                let secs = u64::try_from(now).unwrap_or(0);
                matching_step(&secret, &code, secs, self.totp_skew())
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
                .map_err(AccessError::from)?;
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
            .map_err(AccessError::from)?;
        if changed == 0 {
            return Err(Refusal::TotpReused.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::access::clock::Clock;
    use crate::access::role::Role;
    use crate::access::token::record::NewToken;
    use crate::access::token::store::fixture::{new, refusal, store, totp_admin};
    use crate::access::totp::code::STEP_SECONDS;
    use crate::access::totp::vault::VaultError;
    use crate::access::totp::vault::KEY_FILE;

    #[test]
    fn totp_required_checked_and_not_reusable() {
        let (_dir, clock, store) = store();
        let issued = store.create(totp_admin("carol")).unwrap();
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
            Err(AccessError::TotpForViewer)
        ));
    }

    #[test]
    fn repeated_wrong_totp_codes_lock_the_token_for_a_while() {
        let (_dir, clock, store) = store();
        let issued = store.create(totp_admin("mallory-target")).unwrap();
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
        let issued = store.create(totp_admin("sealed")).unwrap();
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
        assert!(dir.path().join(KEY_FILE).exists());
        let thief = TokenStore::open(&copy, clock.clone(), 1).unwrap();
        let code = secret.code_at(u64::try_from(clock.now().timestamp()).unwrap());
        assert!(matches!(
            thief.check_totp(issued.token.id(), Some(&code)),
            Err(AuthFailure::Store(AccessError::Vault(
                VaultError::Key { .. }
            )))
        ));
        // The real store still accepts it.
        store.check_totp(issued.token.id(), Some(&code)).unwrap();
    }
}
