//! Per-device publish rate limit: a token bucket per device.
//!
//! Each device has one [`TokenBucket`] of `edge.rate_burst` tokens refilled
//! at `edge.rate_per_second`; every PUBLISH takes one before anything else
//! is done with it, and a PUBLISH that finds the bucket empty is a
//! [`crate::edge::violation::Violation::RateLimited`], which ends the
//! session.
//!
//! The buckets live in [`DeviceBuckets`], beside the edge's other state
//! across sessions, not in the session: a device cut off for flooding that
//! reconnects at once finds its bucket as empty as it left it, instead of a
//! fresh burst per connection. That is what keeps one flooding device to its
//! share of the sink and the outbox, whoever else is streaming (fairness).
//! Two sessions of one device at once share one bucket too.

use wardgate_protocol::DeviceId;

pub use crate::token_bucket::TokenBucket;

/// The publish rate bucket of every device, shared by the edge's sessions.
pub type DeviceBuckets = crate::token_bucket::KeyedBuckets<DeviceId>;
