//! `tuf-repo`'s loading of untrusted repository metadata as the gateway's
//! OTA agent does it (`tuf_repo::verify::load_repository`, tough walking
//! root, timestamp, snapshot, targets and the delegated role), from a fixed
//! trusted root, with the files served from memory instead of HTTPS.
//!
//! The input is the served files, separated by 0xFF (a byte JSON never
//! holds): `timestamp.json`, `<n>.snapshot.json`, `<n>.targets.json`,
//! `<n>.acme-medical.json`, `2.root.json`; a missing or empty section is a
//! 404. The trusted root is built once per process from the fixed keys of
//! `wardgate_fuzz`, so the seed files (a real published repository,
//! written by `examples/make_seeds.rs` with the same keys) verify.

#![no_main]

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tough::{Transport, TransportError, TransportErrorKind, TransportStream};
use tuf_repo::verify::load_repository;
use tuf_repo::RepoLocation;
use url::Url;

/// The files in input order.
const FILES: [&str; 5] = [
    "timestamp.json",
    "snapshot.json",
    "targets.json",
    "acme-medical.json",
    "root.json",
];

#[derive(Debug, Clone)]
struct Served(Arc<Vec<Option<Bytes>>>);

impl Served {
    fn file(&self, name: &str) -> Option<Bytes> {
        // Consistent snapshots prefix the version: `3.snapshot.json`.
        let (version, bare) = match name.split_once('.') {
            Some((v, rest)) if v.bytes().all(|b| b.is_ascii_digit()) => (Some(v), rest),
            _ => (None, name),
        };
        let i = FILES.iter().position(|f| *f == bare)?;
        // Only the next root after the trusted one (version 1) is served.
        if bare == "root.json" && version != Some("2") {
            return None;
        }
        self.0.get(i).cloned().flatten()
    }
}

#[async_trait]
impl Transport for Served {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let name = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or_default()
            .to_owned();
        match self.file(&name) {
            Some(bytes) => Ok(Box::pin(futures_one(bytes))),
            None => Err(TransportError::new(TransportErrorKind::FileNotFound, url)),
        }
    }
}

fn futures_one(
    bytes: Bytes,
) -> impl futures::Stream<Item = Result<Bytes, TransportError>> + Send + Sync {
    futures::stream::iter(std::iter::once(Ok(bytes)))
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    root: Vec<u8>,
    location: RepoLocation,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = wardgate_fuzz::fixture_dir();
        let repo = rt
            .block_on(wardgate_fuzz::server_repo(&dir))
            .expect("fixture repository");
        let root = std::fs::read(repo.metadata_file("1.root.json")).expect("trusted root");
        let url = Url::parse("https://ota.invalid/repo/").expect("valid URL");
        Fixture {
            rt,
            root,
            location: RepoLocation::Url(url),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let files: Vec<Option<Bytes>> = data
        .split(|&b| b == 0xFF)
        .take(FILES.len())
        .map(|s| (!s.is_empty()).then(|| Bytes::copy_from_slice(s)))
        .collect();
    let served = Served(Arc::new(files));
    let loaded =
        f.rt.block_on(load_repository(&f.location, &f.root, served, None));
    if let Ok(repo) = loaded {
        // Everything tough accepted is readable.
        for (name, target) in repo.all_targets() {
            assert!(!name.raw().is_empty());
            let _ = target.length;
        }
    }
});
