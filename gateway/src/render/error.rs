//! Why a message could not be rendered.

use wardgate_protocol::ProtocolError;

/// Why a message could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The stored payload is not a telemetry message this gateway reads.
    #[error("payload is not a telemetry message: {0}")]
    Parse(#[source] ProtocolError),
    /// Serialising the rendering failed.
    #[error("cannot serialise rendering: {0}")]
    Serialise(#[from] serde_json::Error),
}
