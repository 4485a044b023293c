//! `ota-server init`: takes a repository authored with `tuf-repo` (root,
//! targets with its delegations, any delegated role metadata and images)
//! and makes it the server's first generation, re-signing snapshot and
//! timestamp with the server's online keys so the server starts from
//! metadata it can keep fresh.

use std::path::Path;

use super::{io_err, tuf_err, Expiries, OnlineKeys, RepoError};

/// Copies a directory tree; files under `targets/` are hard-linked when
/// possible (images can be large), metadata is copied.
pub(crate) fn copy_tree(src: &Path, dst: &Path, link: bool) -> Result<usize, RepoError> {
    std::fs::create_dir_all(dst).map_err(io_err("creating", dst))?;
    let mut n = 0;
    for e in std::fs::read_dir(src).map_err(io_err("reading", src))? {
        let e = e.map_err(io_err("reading", src))?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let ft = e.file_type().map_err(io_err("reading", &from))?;
        if ft.is_dir() {
            n += copy_tree(&from, &to, link)?;
        } else if ft.is_file() {
            if to.exists() {
                std::fs::remove_file(&to).map_err(io_err("replacing", &to))?;
            }
            if !link || std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).map_err(io_err("copying", &from))?;
            }
            n += 1;
        }
    }
    Ok(n)
}

/// Creates the repository in `repo_dir` from the `tuf-repo` repository in
/// `src`. Refuses if `repo_dir` already holds one. Returns the number of
/// published targets.
///
/// # Errors
/// [`RepoError`] when the source does not verify, or the online keys are not
/// those root.json names.
pub async fn init_from(
    repo_dir: &Path,
    src: &Path,
    keys: &OnlineKeys,
    expiries: Expiries,
) -> Result<usize, RepoError> {
    if repo_dir.join("current").exists() {
        return Err(RepoError::Key {
            what: format!("repository {}", repo_dir.display()),
            reason: "is already initialised; releases are added through the upload API".into(),
        });
    }
    let tmp = repo_dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(io_err("creating", &tmp))?;
    let staging = tmp.join(format!("gen-init-{}", uuid::Uuid::new_v4()));
    copy_tree(&src.join("metadata"), &staging.join("metadata"), false)?;
    if src.join("targets").is_dir() {
        copy_tree(&src.join("targets"), &staging.join("targets"), true)?;
    } else {
        std::fs::create_dir_all(staging.join("targets")).map_err(io_err("creating", &staging))?;
    }
    let out = tuf_repo::RepoDir::new(&staging);
    tuf_repo::repo::online::snapshot(
        &out,
        std::slice::from_ref(&keys.snapshot),
        expiries.snapshot,
    )
    .await
    .map_err(|e| tuf_err("snapshot.json", &e))?;
    tuf_repo::refresh_timestamp(
        &out,
        std::slice::from_ref(&keys.timestamp),
        expiries.timestamp,
    )
    .await
    .map_err(|e| tuf_err("timestamp.json", &e))?;
    let probe = super::load_generation(&staging, 1)?;
    super::check_online_key(
        &probe.root,
        &keys.snapshot,
        tough::schema::RoleType::Snapshot,
    )?;
    super::check_online_key(
        &probe.root,
        &keys.timestamp,
        tough::schema::RoleType::Timestamp,
    )?;
    let dir = repo_dir.to_owned();
    let state = tokio::task::spawn_blocking(move || super::commit_generation(&dir, &staging, 1))
        .await
        .map_err(|e| RepoError::Join(e.to_string()))??;
    Ok(state.published.len())
}
