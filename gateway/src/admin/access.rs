//! Token operations shared by the CLI and the API, each with its audit row:
//! issue, revoke, and the loudly audited break-glass token.

use chrono::Duration;
use serde_json::json;

use super::token::{IssuedToken, NewToken, TokenId, TokenName, TokenRecord, TokenStore};
use super::AdminError;
use crate::audit::{AuditEvent, AuditLog, Outcome};

/// Issue a token and audit it as `actor`.
///
/// # Errors
/// As [`TokenStore::create`]; an audit failure revokes the new token again
/// and is returned as [`AdminError::Audit`].
pub fn create_token(
    store: &TokenStore,
    audit: &AuditLog,
    new: NewToken,
    actor: &str,
) -> Result<IssuedToken, AdminError> {
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
/// As [`TokenStore::revoke`], or [`AdminError::Audit`].
pub fn revoke_token(
    store: &TokenStore,
    audit: &AuditLog,
    id: &TokenId,
    actor: &str,
) -> Result<TokenRecord, AdminError> {
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

/// Issue a break-glass admin token for `minutes`, with a warn-level log and
/// an audit row naming who asked. Each later use is audited by the guard.
///
/// # Errors
/// [`AdminError::BreakGlassWindow`] outside `1..=max_minutes`; if the audit
/// row cannot be written the token is revoked at once and
/// [`AdminError::Audit`] returned (no unaudited break-glass).
pub fn issue_break_glass(
    store: &TokenStore,
    audit: &AuditLog,
    minutes: u32,
    max_minutes: u32,
    requested_by: &str,
) -> Result<IssuedToken, AdminError> {
    let issued = store.break_glass(minutes, max_minutes, TokenName::parse("break-glass")?)?;
    let event = AuditEvent::new(
        requested_by,
        "admin.break_glass.create",
        issued.record.id.as_str(),
        Outcome::Allowed,
    )
    .with_detail(json!({
        "minutes": minutes,
        "expires_at": issued.record.expires_at,
        "role": issued.record.role.as_str(),
    }));
    audited(store, audit, &issued, &event)?;
    tracing::warn!(
        token_id = %issued.record.id,
        minutes,
        expires_at = ?issued.record.expires_at,
        requested_by,
        "BREAK-GLASS admin token issued; every use is audited"
    );
    Ok(issued)
}

fn audited(
    store: &TokenStore,
    audit: &AuditLog,
    issued: &IssuedToken,
    event: &AuditEvent,
) -> Result<(), AdminError> {
    if let Err(e) = audit.append(event) {
        // Never leave a usable token that the audit log does not know about.
        if let Err(revoke) = store.revoke(&issued.record.id) {
            tracing::error!(token_id = %issued.record.id, error = %revoke, "could not revoke unaudited token");
        }
        return Err(e.into());
    }
    Ok(())
}

/// Default lifetime suggestion for the CLI: 90 days.
#[must_use]
pub fn default_lifetime() -> Duration {
    Duration::days(90)
}
