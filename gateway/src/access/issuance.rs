//! Token operations shared by the CLI and the API, each with its audit row:
//! issue and revoke. An issued token whose audit row cannot be written is
//! revoked again at once, so no usable token exists that the audit log does
//! not know about.

use chrono::Duration;
use serde_json::json;

use super::error::AccessError;
use super::name::TokenId;
use super::token::record::{IssuedToken, NewToken, TokenRecord};
use super::token::store::TokenStore;
use crate::audit::{AuditEvent, AuditLog, Outcome};

/// Issue a token and audit it as `actor`.
///
/// # Errors
/// As [`TokenStore::create`]; an audit failure revokes the new token again
/// and is returned as [`AccessError::Audit`].
pub fn create_token(
    store: &TokenStore,
    audit: &AuditLog,
    new: NewToken,
    actor: &str,
) -> Result<IssuedToken, AccessError> {
    let issued = store.create(new)?;
    let event = AuditEvent::new(
        actor,
        "admin.token.create",
        issued.record.id.as_str(),
        Outcome::Allowed,
    )
    .with_detail(json!({
        "name": issued.record.name.as_str(),
        "role": issued.record.role.as_str(),
        "expires_at": issued.record.expires_at,
        "totp": issued.record.totp_bound,
    }));
    audited(store, audit, &issued, &event)?;
    tracing::info!(token_id = %issued.record.id, role = %issued.record.role, %actor, "admin token created");
    Ok(issued)
}

/// Revoke a token and audit it as `actor`.
///
/// # Errors
/// As [`TokenStore::revoke`], or [`AccessError::Audit`].
pub fn revoke_token(
    store: &TokenStore,
    audit: &AuditLog,
    id: &TokenId,
    actor: &str,
) -> Result<TokenRecord, AccessError> {
    let record = store.revoke(id)?;
    audit.append(
        &AuditEvent::new(
            actor,
            "admin.token.revoke",
            record.id.as_str(),
            Outcome::Allowed,
        )
        .with_detail(json!({"name": record.name.as_str(), "role": record.role.as_str()})),
    )?;
    tracing::info!(token_id = %record.id, %actor, "admin token revoked");
    Ok(record)
}

/// Write `event` for the just-issued token, or revoke the token again and
/// return the audit failure.
///
/// # Errors
/// [`AccessError::Audit`] if the row cannot be written.
pub(in crate::access) fn audited(
    store: &TokenStore,
    audit: &AuditLog,
    issued: &IssuedToken,
    event: &AuditEvent,
) -> Result<(), AccessError> {
    if let Err(e) = audit.append(event) {
        // Never leave a usable token that the audit log does not know about.
        if let Err(revoke) = store.revoke(&issued.record.id) {
            tracing::error!(token_id = %issued.record.id, error = %revoke, "could not revoke unaudited token");
        }
        return Err(e.into());
    }
    Ok(())
}

/// Default lifetime suggestion for the CLI and the API: 90 days.
#[must_use]
pub fn default_lifetime() -> Duration {
    Duration::days(90)
}
