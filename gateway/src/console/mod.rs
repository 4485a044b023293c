//! The ward console: a web page for ward staff, served by the admin HTTPS
//! listener, that shows every device, the uplink, the update campaign, the
//! alerts and the audit trail, and lets operators quarantine, release and
//! (admins) revoke devices.
//!
//! The console trusts nothing new. Its page, style sheet and scripts are
//! static files compiled into the binary ([`assets`]) and served without a
//! token under strict security headers (a content security policy with no
//! inline script, no framing, no caching). Every piece of data the page
//! shows comes from the admin API with the bearer token the user pasted,
//! through the same guard, roles and TOTP as any other caller; the page
//! keeps the token in `sessionStorage` and never puts it in a URL.
//!
//! | part | module |
//! | --- | --- |
//! | the embedded page and its headers (`GET /console`, `/console/{file}`) | [`assets`] |
//! | recent vitals and live connections per device, bounded, in memory | [`recent`] |
//! | the telemetry sink wrapper that feeds [`recent`] from the edge | [`recording`] |
//! | the two read routes the page needs beyond the API (`/api/v1/readings`, `/api/v1/session`) | `crate::admin::console_api` |
//!
//! The page polls (one call per panel every few seconds, never one call
//! per device), so a ward of 200 devices costs the same number of requests
//! as a ward of two.

pub mod assets;
pub mod recent;
pub mod recording;

pub use recent::{RecentActivity, MAX_DEVICES, SAMPLES_PER_DEVICE};
pub use recording::RecordingSink;
