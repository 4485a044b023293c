//! The OTA server's parsing of a manufacturer upload, with the functions
//! `POST /api/v1/releases/acme-medical/pump-fw-2.1.0.bin` runs, without the
//! HTTP server: the `X-Wardgate-Metadata-Length` header
//! (`metadata_length`), the split of the body into signed metadata and
//! image as its chunks arrive (`split_metadata`, `metadata_complete`), and
//! the release check of the signed metadata and the bundle against a real
//! repository (`repo::release::check`, which runs `tuf_repo::check_upload`).
//!
//! Input: one selector byte (bit 0: re-sign the metadata with the
//! manufacturer's key first, so the checks behind the signature see the
//! fuzzer's content; bits 1 to 7: chunk size, 0 for one chunk), then the
//! header value up to the first newline, then the body. The repository is
//! built once per process with the fixed keys of `wardgate_fuzz`, so the
//! seed bundles (signed by `examples/make_seeds.rs` with the same keys)
//! pass.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use ota_server::config::LimitsConfig;
use ota_server::http::releases::{
    metadata_complete, metadata_length, split_metadata, METADATA_LENGTH_HEADER,
};
use ota_server::repo::release::{check, Candidate};
use ota_server::repo::StagedImage;
use sha2::{Digest, Sha256};
use tuf_repo::{RepoDir, TargetPath};
use wardgate_fuzz::{manufacturer, manufacturer_key, resign, server_repo, TARGET};

struct Fixture {
    rt: tokio::runtime::Runtime,
    repo: RepoDir,
    staged: PathBuf,
    limits: LimitsConfig,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = wardgate_fuzz::fixture_dir();
        let repo = rt.block_on(server_repo(&dir)).expect("fixture repository");
        let staging = dir.join("upload");
        std::fs::create_dir_all(&staging).expect("staging directory");
        let target = TargetPath::new(TARGET).expect("valid target");
        Fixture {
            rt,
            repo,
            staged: staging.join(target.file()),
            limits: LimitsConfig::default(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let (value, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(value) {
        headers.insert(METADATA_LENGTH_HEADER, v);
    }
    let Ok(meta_len) = metadata_length(&headers, f.limits.max_metadata_bytes as usize) else {
        return;
    };
    assert!(meta_len >= 1 && meta_len <= f.limits.max_metadata_bytes as usize);

    let piece = match usize::from(selector >> 1) {
        0 => body.len().max(1),
        n => n,
    };
    let mut meta = Vec::new();
    let mut image = Vec::new();
    for chunk in body.chunks(piece) {
        image.extend_from_slice(split_metadata(&mut meta, meta_len, chunk));
    }
    if metadata_complete(&meta, meta_len).is_err() {
        assert!(body.len() < meta_len);
        return;
    }
    // However the body was cut, metadata and image are its two parts.
    assert_eq!(&meta[..], &body[..meta_len]);
    assert_eq!(&image[..], &body[meta_len..]);
    if image.len() as u64 > f.limits.max_upload_bytes {
        return;
    }

    let role_bytes = if selector & 1 == 1 {
        match resign(&meta, &manufacturer_key()) {
            Some(m) => m,
            None => return,
        }
    } else {
        meta
    };
    std::fs::write(&f.staged, &image).expect("staging the image");
    let sha256 = hex::encode(Sha256::digest(&image));
    let candidate = Candidate {
        manufacturer: manufacturer(),
        target: TargetPath::new(TARGET).expect("valid target"),
        role_bytes,
        image: StagedImage {
            path: f.staged.clone(),
            length: image.len() as u64,
            sha256: sha256.clone(),
        },
    };
    let Ok(checked) = f.rt.block_on(check(&f.repo, &candidate)) else {
        return;
    };
    // Accepted: the route's target is a new target of the metadata, and
    // the uploaded image is exactly the one it signs.
    assert_eq!(checked.manufacturer, manufacturer());
    let new = checked
        .new_targets
        .iter()
        .find(|t| t.name.to_string() == TARGET)
        .expect("the route's target is listed");
    assert_eq!(new.digest.length, image.len() as u64);
    assert_eq!(new.digest.sha256_hex(), sha256);
});
