//! The guard in front of every protected route: bearer token, role, TOTP,
//! break-glass, and the audit row and metric for every refusal. The
//! decisions are access control's ([`crate::access`]); this middleware
//! reads the headers, asks, and answers a refused call with a JSON error.
//!
//! Order: token (401) -> role against [`Action::min_role`] (403) -> TOTP for
//! mutating calls with a bound token (401) -> last use recorded -> handler.
//! Nothing is written on a refusal except the audit row and the metric, so
//! a refused call changes neither the registry nor the token table.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::headers::{bearer, totp_code};
use super::state::AdminState;
use crate::access::error::AccessError;
use crate::access::policy::Action;
use crate::access::refusal::{AuthFailure, Refusal};
use crate::access::token::bearer::BearerToken;
use crate::access::token::record::{TokenKind, TokenRecord};
use crate::access::token::store::TokenStore;
use crate::audit::{AuditEvent, Outcome};

/// The authenticated, authorised caller, available to handlers as an
/// `Extension<Caller>`.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token used.
    pub token: TokenRecord,
}

impl Caller {
    /// The audit actor: `admin:<token id>`.
    #[must_use]
    pub fn actor(&self) -> String {
        format!("admin:{}", self.token.id)
    }
}

/// Outcome of the blocking part of the check.
enum Denied {
    Refused(Refusal, Option<Box<TokenRecord>>),
    Internal(String),
}

/// Middleware body: authorise `action` or answer with a JSON refusal.
pub(crate) async fn guard(
    State(state): State<Arc<AdminState>>,
    action: Action,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let presented = bearer(req.headers());
    // The public id a refused caller claimed, for the audit row (never the secret).
    let claimed = presented
        .as_ref()
        .ok()
        .and_then(|t| BearerToken::parse(t).ok())
        .map(|t| t.id().to_string());
    let decision = match presented {
        Err(refusal) => Err(Denied::Refused(refusal, None)),
        Ok(presented) => {
            let totp = totp_code(req.headers());
            let tokens = state.tokens.clone();
            tokio::task::spawn_blocking(move || {
                decide(&tokens, action, &presented, totp.as_deref())
            })
            .await
            .unwrap_or_else(|e| Err(Denied::Internal(e.to_string())))
        }
    };
    let caller = match decision {
        Ok(token) => Caller { token },
        Err(Denied::Internal(e)) => return ApiError::internal(&e).into_response(),
        Err(Denied::Refused(refusal, token)) => {
            state.metrics.refusal(refusal.reason());
            let actor = token.as_ref().map_or_else(
                || peer.map_or_else(|| "peer:unknown".to_owned(), |p| format!("peer:{p}")),
                |t| format!("admin:{}", t.id),
            );
            tracing::warn!(
                action = action.as_str(),
                reason = refusal.reason(),
                %actor,
                %method,
                %path,
                "admin API call refused"
            );
            let event = AuditEvent::new(actor, "admin.refused", action.as_str(), Outcome::Refused)
                .with_detail(serde_json::json!({
                    "reason": refusal.reason(),
                    "method": method.as_str(),
                    "path": path,
                    "peer": peer.map(|p| p.to_string()),
                    "role": token.as_ref().map(|t| t.role.as_str()),
                    "claimed_token_id": claimed,
                }));
            if let Err(e) = state.audit.append_async(event).await {
                tracing::error!(error = %e, "could not write the audit row for a refused admin call");
            }
            return ApiError::from(refusal).into_response();
        }
    };
    if caller.token.kind == TokenKind::BreakGlass {
        tracing::warn!(
            token_id = %caller.token.id,
            token_name = caller.token.name.as_str(),
            action = action.as_str(),
            %method,
            %path,
            expires_at = ?caller.token.expires_at,
            "BREAK-GLASS token used"
        );
        let event = AuditEvent::new(
            caller.actor(),
            "admin.break_glass.use",
            caller.token.id.as_str(),
            Outcome::Allowed,
        )
        .with_detail(serde_json::json!({
            "action": action.as_str(),
            "method": method.as_str(),
            "path": path,
            "peer": peer.map(|p| p.to_string()),
            "expires_at": caller.token.expires_at,
        }));
        // Break-glass use that cannot be audited is not allowed.
        if let Err(e) = state.audit.append_async(event).await {
            return ApiError::internal(&format!("break-glass use not audited, call refused: {e}"))
                .into_response();
        }
    }
    state.metrics.request(action.as_str());
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn decide(
    tokens: &TokenStore,
    action: Action,
    presented: &str,
    totp: Option<&str>,
) -> Result<TokenRecord, Denied> {
    let lift = |f: AuthFailure, token: Option<&TokenRecord>| match f {
        AuthFailure::Refused(r) => Denied::Refused(r, token.cloned().map(Box::new)),
        AuthFailure::Store(e) => Denied::Internal(e.to_string()),
    };
    let record = tokens.authenticate(presented).map_err(|f| lift(f, None))?;
    let need = action.min_role();
    if !record.role.allows(need) {
        return Err(Denied::Refused(
            Refusal::Forbidden {
                have: record.role,
                need,
                action: action.as_str(),
            },
            Some(Box::new(record)),
        ));
    }
    if action.is_mutating() {
        tokens
            .check_totp(&record.id, totp)
            .map_err(|f| lift(f, Some(&record)))?;
    }
    tokens
        .record_use(&record.id)
        .map_err(|e: AccessError| Denied::Internal(e.to_string()))?;
    Ok(record)
}
