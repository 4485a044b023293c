//! Property tests for the parsers that take bytes from outside: uploaded
//! role metadata and repository metadata. Any truncation or garbage is
//! refused with an error (never a panic, never an acceptance), and a single
//! flipped byte inside the signed part is never accepted as the original.

mod support;

use proptest::prelude::*;
use support::*;
use tuf_repo::repo::publish::{check_upload, read_bundle};
use tuf_repo::{Error, Upload};

struct Setup {
    f: Fixture,
    upload: Upload,
    rt: tokio::runtime::Runtime,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let f = rt.block_on(Fixture::new());
    let img = f.image("pump-fw-2.1.0.bin", 3000, 9);
    let b = rt
        .block_on(f.release_acme("pump-fw-2.1.0.bin", &img, "2.1.0", "p"))
        .unwrap();
    let upload = read_bundle(&b.dir, &acme()).unwrap();
    // The untouched upload passes: the properties below can fail.
    rt.block_on(check_upload(&f.repo, &upload)).unwrap();
    Setup { f, upload, rt }
}

thread_local! {
    /// One fixture for all cases of a test (cases run on one thread).
    static SETUP: Setup = setup();
}

fn with_bytes(u: &Upload, bytes: Vec<u8>) -> Upload {
    Upload {
        role_metadata: bytes,
        ..u.clone()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_truncation_is_refused_as_malformed(cut in 0.0f64..1.0) {
        SETUP.with(|s| {
        let full = &s.upload.role_metadata;
        // Drop at least the closing brace (and the trailing newline).
        let n = ((full.len() - 2) as f64 * cut) as usize;
        let r = s.rt.block_on(check_upload(&s.f.repo, &with_bytes(&s.upload, full[..n].to_vec())));
        prop_assert!(matches!(r, Err(Error::Json { .. })), "cut at {}: {:?}", n, r.map(|c| c.role_version));
        Ok(())
        })?;
    }

    #[test]
    fn arbitrary_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        SETUP.with(|s| {
        let r = s.rt.block_on(check_upload(&s.f.repo, &with_bytes(&s.upload, bytes)));
        prop_assert!(r.is_err());
        Ok(())
        })?;
    }

    #[test]
    fn a_flipped_byte_in_the_signed_part_is_never_accepted(pos in 0.0f64..1.0, bit in 0u8..7) {
        SETUP.with(|s| {
        let full = s.upload.role_metadata.clone();
        let text = String::from_utf8(full.clone()).unwrap();
        let start = text.find("\"signed\"").unwrap() + 10;
        let end = text.find("\"signatures\"").unwrap();
        let i = start + ((end - start) as f64 * pos) as usize;
        let mut bytes = full;
        bytes[i] ^= 1 << bit;
        let original: serde_json::Value = serde_json::from_slice(&s.upload.role_metadata).unwrap();
        let r = s.rt.block_on(check_upload(&s.f.repo, &with_bytes(&s.upload, bytes.clone())));
        if r.is_ok() {
            // Only a change that leaves the signed content identical (e.g.
            // whitespace) may pass.
            let now: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(&now["signed"], &original["signed"]);
        }
        Ok(())
        })?;
    }
}
