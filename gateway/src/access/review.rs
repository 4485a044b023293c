//! The access review: every token with what needs a person's attention
//! (unused for `admin.stale_after_days`, past expiry but not revoked,
//! revoked, break-glass), as `gateway access review` and
//! `GET /api/v1/access/review` show it.

use chrono::Duration;
use serde::Serialize;

use super::error::AccessError;
use super::token::record::{TokenKind, TokenRecord};
use super::token::store::TokenStore;

/// Why a token appears in the access review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReviewEntry {
    /// The token.
    pub record: TokenRecord,
    /// Days since last use (or creation, if never used).
    pub idle_days: i64,
    /// What needs attention; empty if nothing.
    pub flags: Vec<ReviewFlag>,
}

impl TokenStore {
    /// Every token with what needs attention: unused for `stale_after`,
    /// past expiry, revoked, break-glass.
    ///
    /// # Errors
    /// A database error.
    pub fn review(&self, stale_after: Duration) -> Result<Vec<ReviewEntry>, AccessError> {
        let now = self.clock().now();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::name::TokenId;
    use crate::access::role::Role;
    use crate::access::token::record::NewToken;
    use crate::access::token::store::fixture::{new, store};

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
}
