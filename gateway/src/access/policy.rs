//! Least privilege for the admin API, in one place.
//!
//! Every route names an [`Action`]; [`Action::min_role`] is the single
//! route-to-role table and [`Action::is_mutating`] says which calls need a
//! TOTP code from a bound token. The guard of the HTTP layer
//! (`crate::admin::guard`) is the only code that enforces them; a refused
//! call becomes a [`super::refusal::Refusal`].

use serde::Serialize;

use super::role::Role;

/// Something a caller can ask the admin API to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `GET /api/v1/status`
    ReadStatus,
    /// `GET /metrics`
    ReadMetrics,
    /// `GET /api/v1/devices`, `GET /api/v1/devices/{id}`
    ReadDevices,
    /// `GET /api/v1/audit`, `GET /api/v1/audit/verify`
    ReadAudit,
    /// `POST /api/v1/devices/{id}/quarantine`
    QuarantineDevice,
    /// `POST /api/v1/devices/{id}/reactivate`
    ReactivateDevice,
    /// `POST /api/v1/devices`
    EnrollDevice,
    /// `POST /api/v1/devices/{id}/revoke`
    RevokeDevice,
    /// `GET /api/v1/tokens`
    ListTokens,
    /// `GET /api/v1/access/review`
    ReviewAccess,
    /// `POST /api/v1/tokens`
    CreateToken,
    /// `DELETE /api/v1/tokens/{id}`
    RevokeToken,
    /// `GET /api/v1/ota/status`
    ReadOtaStatus,
    /// `POST /api/v1/ota/devices/{id}/retry`
    RetryOtaUpdate,
    /// `GET /api/v1/alerts`
    ReadAlerts,
    /// `POST /api/v1/alerts/{id}/acknowledge`
    AcknowledgeAlert,
    /// `POST /api/v1/alerts/{id}/release`
    ReleaseDevice,
}

impl Action {
    /// Every action, for tests and documentation.
    pub const ALL: [Action; 17] = [
        Action::ReadStatus,
        Action::ReadMetrics,
        Action::ReadDevices,
        Action::ReadAudit,
        Action::QuarantineDevice,
        Action::ReactivateDevice,
        Action::EnrollDevice,
        Action::RevokeDevice,
        Action::ListTokens,
        Action::ReviewAccess,
        Action::CreateToken,
        Action::RevokeToken,
        Action::ReadOtaStatus,
        Action::RetryOtaUpdate,
        Action::ReadAlerts,
        Action::AcknowledgeAlert,
        Action::ReleaseDevice,
    ];

    /// The least privileged role allowed to perform this action.
    #[must_use]
    pub fn min_role(self) -> Role {
        match self {
            Action::ReadStatus
            | Action::ReadMetrics
            | Action::ReadDevices
            | Action::ReadAudit
            | Action::ReadOtaStatus
            | Action::ReadAlerts => Role::Viewer,
            Action::QuarantineDevice
            | Action::ReactivateDevice
            | Action::RetryOtaUpdate
            | Action::AcknowledgeAlert
            | Action::ReleaseDevice => Role::Operator,
            Action::EnrollDevice
            | Action::RevokeDevice
            | Action::ListTokens
            | Action::ReviewAccess
            | Action::CreateToken
            | Action::RevokeToken => Role::Admin,
        }
    }

    /// Whether the action changes state (and so needs a TOTP code from a
    /// TOTP-bound token).
    #[must_use]
    pub fn is_mutating(self) -> bool {
        !matches!(
            self,
            Action::ReadStatus
                | Action::ReadMetrics
                | Action::ReadDevices
                | Action::ReadAudit
                | Action::ReadOtaStatus
                | Action::ListTokens
                | Action::ReviewAccess
                | Action::ReadAlerts
        )
    }

    /// The name used in audit rows and metric labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadStatus => "read_status",
            Action::ReadMetrics => "read_metrics",
            Action::ReadDevices => "read_devices",
            Action::ReadAudit => "read_audit",
            Action::QuarantineDevice => "quarantine_device",
            Action::ReactivateDevice => "reactivate_device",
            Action::EnrollDevice => "enroll_device",
            Action::RevokeDevice => "revoke_device",
            Action::ListTokens => "list_tokens",
            Action::ReviewAccess => "review_access",
            Action::CreateToken => "create_token",
            Action::RevokeToken => "revoke_token",
            Action::ReadOtaStatus => "read_ota_status",
            Action::RetryOtaUpdate => "retry_ota_update",
            Action::ReadAlerts => "read_alerts",
            Action::AcknowledgeAlert => "acknowledge_alert",
            Action::ReleaseDevice => "release_device",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_privilege_table() {
        use Action::*;
        for a in Action::ALL {
            let expected = match a {
                ReadStatus | ReadMetrics | ReadDevices | ReadAudit | ReadOtaStatus | ReadAlerts => {
                    Role::Viewer
                }
                QuarantineDevice | ReactivateDevice | RetryOtaUpdate | AcknowledgeAlert
                | ReleaseDevice => Role::Operator,
                EnrollDevice | RevokeDevice | ListTokens | ReviewAccess | CreateToken
                | RevokeToken => Role::Admin,
            };
            assert_eq!(a.min_role(), expected, "{a:?}");
            // Every mutating action needs more than viewer.
            if a.is_mutating() {
                assert!(a.min_role() > Role::Viewer, "{a:?}");
            }
        }
    }
}
