//! Token buckets, now shared with the OTA server: see
//! [`wardgate_protocol::token_bucket`]. Re-exported so the edge's
//! `crate::token_bucket` paths keep working.

pub use wardgate_protocol::token_bucket::*;
