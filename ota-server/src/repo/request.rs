//! Which published image a `GET /targets/...` request names.
//!
//! With consistent snapshots a client asks for an image by its name and its
//! SHA-256, and the two TUF clients spell that differently: `tough` puts the
//! digest before the whole name (`<sha256>.<manufacturer>/<file>`),
//! python-tuf and the spec before the file name
//! (`<manufacturer>/<sha256>.<file>`). [`TargetRequest::parse`] understands
//! both and yields a checked [`TargetPath`] (tuf-repo's rule, the one every
//! upload passed), so the file lookup that follows never sees `..`, an
//! absolute path or any other name that was not published.

use tuf_repo::TargetPath;

/// Why a request path under `targets/` names no target.
#[derive(Debug, thiserror::Error)]
pub enum TargetRequestError {
    /// No 64-hex-digit SHA-256 prefix in either consistent-snapshot spelling.
    #[error("target request {path:?} must carry the SHA-256 prefix of a consistent snapshot (`<sha256>.<manufacturer>/<file>` or `<manufacturer>/<sha256>.<file>`)")]
    NoDigest {
        /// The refused path (truncated to 80 characters).
        path: String,
    },
    /// The name after the digest is not a valid target name.
    #[error("target request names an invalid target: {0}")]
    Target(#[source] tuf_repo::Error),
}

/// A request path under `targets/` resolved to the target it names and the
/// SHA-256 it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRequest {
    /// The target name.
    pub target: TargetPath,
    /// Lower-case hex SHA-256 the client expects.
    pub sha256_hex: String,
}

/// Splits `<64 lower-case hex>.<rest>`.
fn split_digest(s: &str) -> Option<(&str, &str)> {
    let (digest, rest) = s.split_at_checked(64)?;
    let rest = rest.strip_prefix('.')?;
    digest
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        .then_some((digest, rest))
}

impl TargetRequest {
    /// Parses a path below `targets/`.
    ///
    /// # Errors
    /// [`TargetRequestError`] when the path carries no digest or names no
    /// valid target.
    pub fn parse(path: &str) -> Result<Self, TargetRequestError> {
        let target = |name: &str| TargetPath::new(name).map_err(TargetRequestError::Target);
        if let Some((digest, rest)) = split_digest(path) {
            return Ok(Self {
                target: target(rest)?,
                sha256_hex: digest.to_owned(),
            });
        }
        if let Some((dir, file)) = path.rsplit_once('/') {
            if let Some((digest, base)) = split_digest(file) {
                return Ok(Self {
                    target: target(&format!("{dir}/{base}"))?,
                    sha256_hex: digest.to_owned(),
                });
            }
        }
        Err(TargetRequestError::NoDigest {
            path: path.chars().take(80).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn both_consistent_spellings_resolve() {
        let h = "ab".repeat(32);
        let t = TargetPath::new("acme/pump.bin").unwrap();
        for form in [t.consistent_file_spec(&h), t.consistent_file_tough(&h)] {
            let r = TargetRequest::parse(&form).unwrap();
            assert_eq!(r.target, t);
            assert_eq!(r.sha256_hex, h);
        }
        assert!(matches!(
            TargetRequest::parse("acme/pump.bin"),
            Err(TargetRequestError::NoDigest { .. })
        ));
        assert!(TargetRequest::parse(&format!("{h}.../x")).is_err());
        for escape in [format!("{h}.acme/../x.bin"), format!("acme/../{h}.x.bin")] {
            assert!(
                matches!(
                    TargetRequest::parse(&escape),
                    Err(TargetRequestError::Target(_))
                ),
                "{escape}"
            );
        }
    }

    proptest! {
        #[test]
        fn target_request_never_panics_nor_escapes(s in "\\PC{0,200}") {
            if let Ok(r) = TargetRequest::parse(&s) {
                let name = r.target.to_string();
                prop_assert!(!name.contains(".."));
                prop_assert!(!name.starts_with('/'));
            }
        }
    }
}
