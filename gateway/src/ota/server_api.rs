//! Client of the OTA server's gateway API: report the ward's inventory and
//! receive assignments (`POST /api/v1/gateway/assignments`), report each
//! device's outcome (`POST /api/v1/gateway/results`).
//!
//! The server authenticates the gateway by its client certificate (the same
//! HTTPS client, ward CA and `ota.client_cert`, as the TUF client), and
//! decides everything about a campaign: which devices are in the current
//! wave, whether it is paused, halted or outside its maintenance window.
//! The gateway only executes. The JSON types here mirror the server's; the
//! server refuses unknown fields, so nothing is sent that it does not know.

use serde::{Deserialize, Serialize};
use url::Url;
use wardgate_protocol::DeviceId;

use crate::ota::device_state::ResultOutcome;

/// Why a call to the OTA server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerApiError {
    /// The server could not be reached or the connection broke.
    #[error("OTA server {url} unreachable: {source}; check ota.server_url, the network and the gateway's client certificate (ota.client_cert)")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("OTA server refused {endpoint} with {status} ({code}): {message}")]
    Refused {
        /// Which call.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// The server's stable error code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The answer did not parse.
    #[error("OTA server's answer to {endpoint} does not parse: {detail}; is ota.server_url an ota-server?")]
    Decode {
        /// Which call.
        endpoint: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// `ota.server_url` cannot be joined with the API path.
    #[error("ota.server_url cannot be used for the gateway API: {0}")]
    Url(String),
}

impl ServerApiError {
    /// The server's error code, if it answered with one.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A short label for metrics.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Refused { .. } => "refused",
            Self::Decode { .. } => "bad_answer",
            Self::Url(_) => "bad_url",
        }
    }
}

/// One device of the inventory the gateway reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryDevice {
    /// The device.
    pub device_id: DeviceId,
    /// Hardware model its firmware is built for.
    pub hardware_id: String,
    /// Firmware it runs (its last status, else the registry).
    pub firmware_version: String,
}

/// What the server wants this gateway to do for one campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Campaign id.
    pub campaign_id: String,
    /// TUF target name to install.
    pub target: String,
    /// Image SHA-256 (hex), as the server knows it (checked against TUF).
    pub sha256: String,
    /// Image length, as the server knows it (checked against TUF).
    pub length: u64,
    /// Current wave (0-based).
    pub wave: u32,
    /// Devices of this gateway to install now (no result recorded yet).
    pub devices: Vec<String>,
    /// Why installs wait (outside the maintenance window), if they do.
    pub deferred: Option<String>,
}

/// One device's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceResult {
    /// The device.
    pub device_id: DeviceId,
    /// Success or failure.
    pub outcome: ResultOutcome,
    /// The reason, for the campaign's operator.
    pub detail: String,
}

/// The campaign as the server sees it after results were recorded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CampaignState {
    /// Campaign id.
    pub id: String,
    /// `active`, `paused`, `halted` or `completed`.
    pub state: String,
    /// Why it halted.
    #[serde(default)]
    pub halt_reason: Option<String>,
    /// Current wave.
    #[serde(default)]
    pub current_wave: u32,
}

#[derive(Serialize)]
struct InventoryBody<'a> {
    devices: &'a [InventoryDevice],
}

#[derive(Serialize)]
struct ResultsBody<'a> {
    campaign_id: &'a str,
    results: &'a [DeviceResult],
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// The gateway API client; cheap to clone.
#[derive(Debug, Clone)]
pub struct ServerApi {
    client: reqwest::Client,
    base: Url,
}

impl ServerApi {
    /// A client for the server at `server_url` using `client` (which must
    /// present the gateway's certificate).
    ///
    /// # Errors
    /// [`ServerApiError::Url`] if `server_url` cannot be a base URL.
    pub fn new(client: reqwest::Client, server_url: &Url) -> Result<Self, ServerApiError> {
        let mut base = server_url.clone();
        if base.cannot_be_a_base() {
            return Err(ServerApiError::Url(format!(
                "{server_url} is not a base URL"
            )));
        }
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        Ok(Self { client, base })
    }

    async fn post<B: Serialize + ?Sized, T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &'static str,
        body: &B,
    ) -> Result<T, ServerApiError> {
        let url = self
            .base
            .join(endpoint)
            .map_err(|e| ServerApiError::Url(e.to_string()))?;
        let unreachable = |source| ServerApiError::Unreachable {
            url: url.to_string(),
            source,
        };
        let resp = self
            .client
            .post(url.clone())
            .json(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let (code, message) = serde_json::from_slice::<ErrorBody>(&bytes).map_or_else(
                |_| {
                    (
                        "unknown".to_owned(),
                        String::from_utf8_lossy(&bytes).chars().take(300).collect(),
                    )
                },
                |e| (e.error.code, e.error.message),
            );
            return Err(ServerApiError::Refused {
                endpoint,
                status: status.as_u16(),
                code,
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ServerApiError::Decode {
            endpoint,
            detail: e.to_string(),
        })
    }

    /// Report the inventory; the server's assignments for every active
    /// campaign that targets this gateway.
    ///
    /// # Errors
    /// [`ServerApiError`] if the call fails.
    pub async fn assignments(
        &self,
        devices: &[InventoryDevice],
    ) -> Result<Vec<Assignment>, ServerApiError> {
        self.post("api/v1/gateway/assignments", &InventoryBody { devices })
            .await
    }

    /// Report outcomes of `campaign_id`. The server takes all or none.
    ///
    /// # Errors
    /// [`ServerApiError`] if the call fails; `Refused` with code
    /// `campaign_state` when the campaign no longer takes results (paused,
    /// halted, completed), `not_assigned` for a device it did not assign.
    pub async fn results(
        &self,
        campaign_id: &str,
        results: &[DeviceResult],
    ) -> Result<CampaignState, ServerApiError> {
        self.post(
            "api/v1/gateway/results",
            &ResultsBody {
                campaign_id,
                results,
            },
        )
        .await
    }
}
