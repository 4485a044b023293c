//! Firmware updates on the simulated device: A/B slots, the device-side
//! offer check, a resumable download over mutual TLS, install, self-test
//! and automatic rollback (DESIGN data flow 2, "devices verify too").
//!
//! # Components
//!
//! - [`nvram`]: the device's state folder (its NVRAM): slots, the active
//!   and trial slot, the pending download, the manufacturer key and
//!   hardware id the device was built with; every write atomic.
//! - [`seq`]: the `seq` high-water mark kept across restarts.
//! - [`slot`]: the two slots and the streaming image check of a slot file.
//! - [`download`]: HTTPS download into the idle slot, resumed with `Range`
//!   and `If-Range` after an interruption or a restart.
//! - [`client`]: [`OtaClient`], offer to `installed`, and the boot that
//!   confirms (`healthy`) or rolls back (`rolled_back`).
//! - [`selftest`]: the self-test of a newly booted slot.
//! - [`therapy`]: whether therapy is in progress (updates wait).
//! - [`faults`]: fault switches for tests and the demo.
//! - [`session`]: [`OtaSession`], the client wired into a device's MQTT
//!   session, and [`run_device`], a complete device loop.
//! - [`error`]: the module's error type, [`OtaError`].
//!
//! # Where the device's controls live
//!
//! | control | item |
//! | --- | --- |
//! | offer signed by the device's manufacturer, for its hardware, newer, `min_version`, not expired | [`OtaClient::handle_offer`] via `wardgate_protocol::verify_offer` |
//! | image length and SHA-256 before switching slots | [`slot::check_slot_file`] via `wardgate_protocol::ImageCheck` |
//! | never install during therapy | [`OtaClient::handle_offer`], [`therapy::Therapy`] |
//! | download only over mutual TLS, at most the signed length | [`download::Downloader`] |
//! | the running slot is never written | [`nvram::DeviceState::idle_slot`], checked on every state write |
//! | no health confirmation, no new slot | [`OtaClient::boot`] |

pub mod client;
pub mod download;
pub mod error;
pub mod faults;
pub mod nvram;
pub mod selftest;
pub mod seq;
pub mod session;
pub mod slot;
pub mod therapy;

pub use client::{
    Boot, OfferResult, OtaClient, OtaConfig, ReportSink, UpdateReport, DEFAULT_HEALTH_WINDOW,
};
pub use download::{DownloadSettings, Downloader};
pub use error::OtaError;
pub use faults::{Fault, Faults, PowerLossMode};
pub use nvram::{DeviceState, Factory, Nvram};
pub use seq::SeqLease;
pub use session::{run_device, Next, OtaSession, RunEnd, RunPlan, Step};
pub use slot::{Slot, SlotImage};
pub use therapy::Therapy;
