//! The Wardgate central OTA server.
//!
//! Serves the TUF repository over HTTPS (consistent snapshots, Range and
//! ETag on targets), takes manufacturer releases and publishes them
//! atomically after checking the delegation signature and path scope, keeps
//! the timestamp fresh with its online key, and runs update campaigns whose
//! state lives in SQLite. Manufacturer keys never reach this server.
