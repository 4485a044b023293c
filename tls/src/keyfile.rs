//! Private-key files: who may read them, and writing them safely.
//!
//! A private key or sealing key readable by group or others is refused, and
//! so is one whose permissions cannot be read at all: the check fails
//! closed. New key files are written with mode 0600 from the first byte,
//! under a temporary name in the same directory, and then linked into place;
//! the link fails if the file appeared meanwhile, so two processes creating
//! the same key file at once never both win, and a crash never leaves half a
//! key under the real name.
//!
//! Permissions are Unix modes; on other platforms the check accepts the file
//! (they have ACLs instead, which this crate does not read).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a key file was refused or could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Group or others may read or write it.
    #[error("{} has mode {mode:o} and is readable by other users; it must be readable by the service user only: run `chmod 600 {}`", path.display(), path.display())]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Its permissions cannot be read (missing file, no access to the
    /// directory, ...): refused, since they cannot be checked.
    #[error("cannot read the permissions of {}: {source}; check that the file exists and the service user may reach it", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Refusing to replace an existing file.
    #[error("{} already exists; remove it first or choose another path", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Creating or writing it failed.
    #[error("cannot write {}: {source}; check that the directory exists and the service user may write to it", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Refuse `path` unless only its owner may read or write it (no bit of
/// `0o077` set). Fails closed: permissions that cannot be read are an error.
///
/// # Errors
/// [`KeyFileError::TooOpen`] with the mode and the `chmod` to run, or
/// [`KeyFileError::Unreadable`].
pub fn check_private(path: &Path) -> Result<(), KeyFileError> {
    let meta = std::fs::metadata(path).map_err(|source| KeyFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    check_mode(path, &meta)
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), KeyFileError> {
    Ok(())
}

/// Create `path` with `bytes`, readable and writable by its owner only
/// (0600), atomically: the content is written and synced under a temporary
/// name in the same directory, then linked to `path`. Never replaces a file.
///
/// # Errors
/// [`KeyFileError::Exists`] if `path` exists (also when another process
/// created it first), [`KeyFileError::Write`] otherwise.
pub fn write_private_new(path: &Path, bytes: &[u8]) -> Result<(), KeyFileError> {
    write_new(path, bytes, 0o600)
}

/// As [`write_private_new`] with another mode, for the public half beside a
/// key (a certificate, 0644).
///
/// # Errors
/// As [`write_private_new`].
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyFileError> {
    let write_err = |source| KeyFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    if path.symlink_metadata().is_ok() {
        return Err(KeyFileError::Exists {
            path: path.to_path_buf(),
        });
    }
    let temp = temp_path(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&temp).map_err(write_err)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    let linked = written.and_then(|()| std::fs::hard_link(&temp, path));
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_dir(path);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(KeyFileError::Exists {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(write_err(e)),
    }
}

/// `.<name>.<pid>.<random>.tmp` beside `path`.
fn temp_path(path: &Path) -> PathBuf {
    use rand::RngCore;
    let name = path
        .file_name()
        .map_or_else(|| "key".into(), |n| n.to_string_lossy().into_owned());
    let tag = rand::rngs::OsRng.next_u64();
    path.with_file_name(format!(".{name}.{}.{tag:016x}.tmp", std::process::id()))
}

/// Make the new directory entry durable (best effort: not every platform
/// can open a directory).
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn refuses_open_keys_and_fails_closed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        write_private_new(&path, b"secret").unwrap();
        assert_eq!(mode(&path), 0o600);
        check_private(&path).unwrap();
        for open in [0o640, 0o604, 0o660, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(open)).unwrap();
            let err = check_private(&path).unwrap_err();
            assert!(matches!(err, KeyFileError::TooOpen { mode, .. } if mode == open));
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        // Permissions that cannot be read are refused, not waved through.
        for unreadable in [
            dir.path().join("absent.key"),
            path.join("not-a-directory.key"),
        ] {
            let err = check_private(&unreadable).unwrap_err();
            assert!(matches!(err, KeyFileError::Unreadable { .. }), "{err}");
            assert!(std::error::Error::source(&err).is_some());
        }
    }

    #[test]
    fn writes_new_files_only_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_private_new(&path, b"one").unwrap();
        assert!(matches!(
            write_private_new(&path, b"two"),
            Err(KeyFileError::Exists { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("k")]);
        let err = write_private_new(&dir.path().join("no/such/dir/k"), b"x").unwrap_err();
        assert!(matches!(err, KeyFileError::Write { .. }), "{err}");
    }

    #[test]
    fn concurrent_creation_has_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("race.key");
        let barrier = std::sync::Barrier::new(8);
        let wins: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|i| {
                    let (path, barrier) = (&path, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        match write_private_new(path, &[i; 64]) {
                            Ok(()) => true,
                            Err(KeyFileError::Exists { .. }) => false,
                            Err(e) => panic!("{e}"),
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
        let content = std::fs::read(&path).unwrap();
        assert_eq!(content.len(), 64, "never a partial file");
        assert!(content.iter().all(|b| *b == content[0]));
    }
}
