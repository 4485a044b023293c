//! Break-glass: an emergency admin token for a short window (1 to
//! `admin.break_glass_max_minutes`), issued loudly (warn-level log and an
//! audit row naming who asked) and audited on every use by the HTTP guard.
//! If its audit row cannot be written it is revoked at once: there is no
//! unaudited break-glass.

use chrono::Duration;
use serde_json::json;

use super::error::AccessError;
use super::issuance::audited;
use super::name::TokenName;
use super::role::Role;
use super::token::record::{IssuedToken, TokenKind};
use super::token::store::TokenStore;
use crate::audit::{AuditEvent, AuditLog, Outcome};

impl TokenStore {
    /// Issue a break-glass admin token valid for `minutes` (1 to `max_minutes`).
    ///
    /// # Errors
    /// [`AccessError::BreakGlassWindow`] outside that range, or a database error.
    pub fn break_glass(
        &self,
        minutes: u32,
        max_minutes: u32,
        name: TokenName,
    ) -> Result<IssuedToken, AccessError> {
        if minutes == 0 || minutes > max_minutes {
            return Err(AccessError::BreakGlassWindow {
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
}

/// Issue a break-glass admin token for `minutes`, with a warn-level log and
/// an audit row naming who asked. Each later use is audited by the guard.
///
/// # Errors
/// [`AccessError::BreakGlassWindow`] outside `1..=max_minutes`; if the audit
/// row cannot be written the token is revoked at once and
/// [`AccessError::Audit`] returned (no unaudited break-glass).
pub fn issue_break_glass(
    store: &TokenStore,
    audit: &AuditLog,
    minutes: u32,
    max_minutes: u32,
    requested_by: &str,
) -> Result<IssuedToken, AccessError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::refusal::Refusal;
    use crate::access::token::store::fixture::{refusal, store};

    #[test]
    fn break_glass_is_admin_and_expires() {
        let (_dir, clock, store) = store();
        assert!(matches!(
            store.break_glass(0, 240, TokenName::parse("bg").unwrap()),
            Err(AccessError::BreakGlassWindow { .. })
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
}
