//! Authoring and verifying Wardgate's TUF repository.
//!
//! Keys (Ed25519), root with per-role thresholds, the operator's targets role
//! that only delegates, one delegated targets role per manufacturer scoped to
//! `<manufacturer>/*`, releases signed by the manufacturer alone, snapshot and
//! timestamp re-signing, root rotation, and verification through `tough` as a
//! real client would. Used by the OTA server and by manufacturers.
