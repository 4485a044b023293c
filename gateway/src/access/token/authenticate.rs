//! Checking a presented bearer token: shape, then the row by its public id,
//! then the SHA-256 of the whole string against the stored hash in constant
//! time, then revocation and expiry. It changes nothing, whatever the
//! outcome; only [`TokenStore::record_use`] (once a request is fully
//! authorised) writes to the row.

use rusqlite::OptionalExtension;
use subtle::ConstantTimeEq;

use super::bearer::BearerToken;
use super::record::TokenRecord;
use super::store::{record_from_row_at, TokenStore, COLUMNS};
use crate::access::error::AccessError;
use crate::access::refusal::{AuthFailure, Refusal};

impl TokenStore {
    /// Check a presented token string. Changes nothing.
    ///
    /// # Errors
    /// [`AuthFailure::Refused`] with the reason (malformed, unknown, wrong
    /// secret, revoked, expired), or [`AuthFailure::Store`].
    pub fn authenticate(&self, presented: &str) -> Result<TokenRecord, AuthFailure> {
        let token = BearerToken::parse(presented)?;
        let row: Option<(Vec<u8>, Result<TokenRecord, AccessError>)> = self
            .conn()
            .query_row(
                &format!("SELECT token_hash, {COLUMNS} FROM admin_tokens WHERE id = ?1"),
                [token.id().as_str()],
                |row| Ok((row.get::<_, Vec<u8>>(0)?, record_from_row_at(row, 1)?)),
            )
            .optional()
            .map_err(AccessError::from)?;
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
        if record.is_expired(self.clock().now()) {
            return Err(Refusal::ExpiredToken.into());
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::super::bearer::PREFIX;
    use super::super::record::NewToken;
    use super::super::store::fixture::{new, refusal, store};
    use super::*;
    use crate::access::role::Role;

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
            Err(AccessError::AlreadyRevoked(_))
        ));
    }
}
