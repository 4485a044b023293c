//! Everything that can go wrong in the uplink, in one enum.

use std::sync::Arc;

/// Everything that can go wrong in the uplink.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// The gateway database could not be opened or migrated.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// An SQL statement on the outbox failed (shared: one failed commit
    /// answers every caller in its batch).
    #[error("outbox database error: {0}; check disk space and the database file")]
    Sql(#[source] Arc<rusqlite::Error>),
    /// A stored row names a device id that does not parse: the gateway
    /// never writes one, so the database was altered.
    #[error("outbox row {id} holds an invalid device id ({source}); the gateway never writes one, so check the database file for tampering")]
    RowDeviceId {
        /// The row id.
        id: i64,
        /// Why the stored id is not a device id.
        #[source]
        source: wardgate_protocol::ProtocolError,
    },
    /// The outbox key is missing, malformed or unprotected.
    #[error("outbox key: {0}")]
    Key(#[source] wardgate_tls::SealError),
    /// Sealing a payload failed.
    #[error("cannot seal outbox row {id}")]
    Seal {
        /// The row id.
        id: i64,
        /// The cipher's refusal.
        #[source]
        source: wardgate_tls::SealError,
    },
    /// A row did not decrypt: wrong key or tampered row.
    #[error("outbox row {id} does not decrypt with the current key (wrong key file, or the row was altered)")]
    Open {
        /// The row id.
        id: i64,
        /// The cipher's refusal.
        #[source]
        source: wardgate_tls::SealError,
    },
    /// The outbox thread could not start.
    #[error("cannot start the outbox thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The outbox was shut down.
    #[error("outbox is shut down")]
    Closed,
    /// A TLS file for the upstream connection is unusable (the error names
    /// the `uplink.*` field).
    #[error("uplink TLS: {0}")]
    Tls(#[from] wardgate_tls::TlsError),
}

impl From<rusqlite::Error> for UplinkError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(Arc::new(e))
    }
}
