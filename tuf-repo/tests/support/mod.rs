//! tuf-repo-local test support, built on the `wardgate-tests` harness
//! (which finds the Python with python-tuf): a repository fixture built
//! through the library, the CLI binary, the python-tuf client script and
//! crafted (hostile) metadata signed with tough's editor.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_lc_rs::rand::SystemRandom;
use tough::editor::signed::SignedRole;
use tough::schema::{DelegatedTargets, Hashes, KeyHolder, Signed, Target, Targets};
use tuf_repo::firmware::FirmwareMeta;
use tuf_repo::repo::init::{init, OneKeyPerRole, RoleSpec};
use tuf_repo::repo::release::{release, ReleaseRequest, UploadBundle};
use tuf_repo::repo::RepoState;
use tuf_repo::{
    accept_upload, Expiries, ManufacturerName, OnlineKeys, PublishedVersion, RepoDir, RepoLocation,
    RoleStatus, SigningKey, Upload, VerifyReport,
};

/// The `tuf-repo` binary built for this test run.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tuf-repo"))
}

/// Runs `tuf-repo` with `args` in `cwd`, with extra environment.
pub fn cli(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.current_dir(cwd)
        .args(args)
        .env_remove("WARDGATE_TUF_PASSPHRASE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run tuf-repo")
}

/// `tuf-repo init` of `repo` with the key files `root.json`, `targets.json`,
/// `snapshot.json` and `timestamp.json`.
pub fn init_args() -> Vec<&'static str> {
    [
        &["init", "--repo", "repo"][..],
        &wardgate_tests::ota::ROLE_KEY_ARGS,
    ]
    .concat()
}

/// `tuf-repo release` into `repo` as `acme-medical`, signed with `key`,
/// of `image`; the caller adds the release's own fields.
pub fn release_args<'a>(key: &'a str, image: &'a str) -> Vec<&'a str> {
    vec![
        "release",
        "--repo",
        "repo",
        "--manufacturer",
        "acme-medical",
        "--key",
        key,
        "--image",
        image,
    ]
}

/// stdout and stderr of an output, for assertion messages.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A repository with keys for every role and two delegated manufacturers.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub repo: RepoDir,
    pub root: SigningKey,
    pub targets: SigningKey,
    pub snapshot: SigningKey,
    pub timestamp: SigningKey,
    pub acme: SigningKey,
    pub other: SigningKey,
    pub expiries: Expiries,
    counter: std::cell::Cell<u32>,
}

pub fn acme() -> ManufacturerName {
    ManufacturerName::new("acme-medical").unwrap()
}

pub fn other_co() -> ManufacturerName {
    ManufacturerName::new("other-co").unwrap()
}

/// A role held by the one key `k`.
pub fn spec(k: &SigningKey) -> RoleSpec {
    RoleSpec::single(k)
}

impl Fixture {
    /// init + delegate `acme-medical` and `other-co` + snapshot + timestamp.
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = RepoDir::new(dir.path().join("repo"));
        let roles = OneKeyPerRole::generate();
        let expiries = Expiries::default();
        init(&repo, &roles.config(expiries), &roles.signers())
            .await
            .unwrap();
        let (acme_key, other_key) = (SigningKey::generate(), SigningKey::generate());
        for (m, k) in [(acme(), &acme_key), (other_co(), &other_key)] {
            roles.delegate_to(&repo, &m, k, &expiries).await.unwrap();
        }
        let f = Self {
            repo,
            root: roles.root,
            targets: roles.targets,
            snapshot: roles.snapshot,
            timestamp: roles.timestamp,
            acme: acme_key,
            other: other_key,
            expiries,
            dir,
            counter: std::cell::Cell::new(0),
        };
        f.resign_online().await;
        f
    }

    pub async fn resign_online(&self) {
        self.snapshot_with(std::slice::from_ref(&self.snapshot))
            .await
            .unwrap();
        self.timestamp_with(std::slice::from_ref(&self.timestamp))
            .await
            .unwrap();
    }

    /// Re-signs the snapshot with `keys` (trusted or not: tests of refusals
    /// offer the wrong ones).
    pub async fn snapshot_with(&self, keys: &[SigningKey]) -> tuf_repo::Result<RoleStatus> {
        tuf_repo::repo::online::snapshot(&self.repo, keys, self.expiries.snapshot).await
    }

    /// Re-signs the timestamp with `keys` (trusted or not).
    pub async fn timestamp_with(&self, keys: &[SigningKey]) -> tuf_repo::Result<RoleStatus> {
        tuf_repo::refresh_timestamp(&self.repo, keys, self.expiries.timestamp).await
    }

    /// Rotates the top-level `role` to `spec`, signed by `signers`.
    pub async fn rotate(
        &self,
        role: tough::schema::RoleType,
        spec: &RoleSpec,
        signers: &[SigningKey],
    ) -> tuf_repo::Result<u64> {
        tuf_repo::repo::rotate::rotate(&self.repo, role, spec, signers, self.expiries.root).await
    }

    /// The bytes of a metadata file of the repository (`timestamp.json`, ...).
    pub fn metadata(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.repo.metadata_file(file)).unwrap()
    }

    /// Writes acme's role `signed` into the repository as version `version`
    /// (both the versioned and the current file), as a careless or hostile
    /// operator could.
    pub fn install_acme_role(&self, version: u64, signed: &[u8]) {
        std::fs::write(
            self.repo
                .metadata_file(&format!("{version}.acme-medical.json")),
            signed,
        )
        .unwrap();
        std::fs::write(self.repo.metadata_file("acme-medical.json"), signed).unwrap();
    }

    /// acme signs a release of `acme-medical/<file>` with its own key.
    pub async fn release_acme(
        &self,
        file: &str,
        image: &Path,
        version: &str,
        hw: &str,
    ) -> tuf_repo::Result<UploadBundle> {
        self.release(
            &acme(),
            &self.acme,
            &format!("acme-medical/{file}"),
            image,
            version,
            hw,
        )
        .await
    }

    /// acme ships `pump-fw-<version>.bin` for hardware `hw`: the published
    /// state most tests start from.
    pub async fn ship_acme(&self, version: &str, hw: &str, seed: u8) -> PathBuf {
        self.ship(
            &acme(),
            &self.acme,
            &format!("pump-fw-{version}.bin"),
            version,
            hw,
            seed,
        )
        .await
    }

    /// Hand-signs `acme-medical` metadata `body` with `keys`, bypassing the
    /// release tool's checks (a hostile or mistaken manufacturer).
    pub async fn sign_acme(&self, body: Targets, keys: &[SigningKey]) -> Vec<u8> {
        sign_delegated(&self.state(), "acme-medical", body, keys).await
    }

    /// An acme upload of hand-signed metadata at version 2 that lists the
    /// image at `image` under the raw name `raw`, signed by `keys`.
    pub async fn hostile_acme_upload(
        &self,
        raw: &str,
        image: &Path,
        version: &str,
        hw: &str,
        keys: &[SigningKey],
    ) -> Upload {
        let bytes = std::fs::read(image).unwrap();
        let mut body = targets_body(2);
        insert_raw(&mut body, raw, target_entry(&bytes, version, hw));
        let signed = self.sign_acme(body, keys).await;
        acme_upload(signed, vec![image.to_owned()])
    }

    /// The server's upload check on `upload`, which the test expects to refuse.
    pub async fn refused(&self, upload: &Upload) -> tuf_repo::Error {
        match tuf_repo::repo::publish::check_upload(&self.repo, upload).await {
            Ok(_) => panic!("the upload of {} was accepted", upload.manufacturer),
            Err(e) => e,
        }
    }

    /// What python-tuf says when it refuses `target` (a panic if it
    /// fetches it).
    pub fn python_refusal(&self, target: &str) -> String {
        self.python_fetch(target)
            .expect_err("python-tuf refuses the target")
    }

    /// python-tuf fetches `target` trusting root v1 of this repository.
    pub fn python_fetch(&self, target: &str) -> Result<serde_json::Value, String> {
        python_fetch(
            self.repo.path(),
            &self.repo.metadata_file("1.root.json"),
            target,
            &self.path("py"),
        )
    }

    pub fn online(&self) -> OnlineKeys {
        OnlineKeys {
            snapshot: vec![self.snapshot.clone()],
            timestamp: vec![self.timestamp.clone()],
        }
    }

    /// A fresh path under the fixture's temp dir.
    pub fn path(&self, prefix: &str) -> PathBuf {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        self.dir.path().join(format!("{prefix}-{n}"))
    }

    /// Writes an image of `len` pseudo-random bytes (seeded by `seed`).
    pub fn image(&self, name: &str, len: usize, seed: u8) -> PathBuf {
        let d = self.path("img");
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// The manufacturer signs a release into a bundle.
    pub async fn release(
        &self,
        m: &ManufacturerName,
        key: &SigningKey,
        target: &str,
        image: &Path,
        version: &str,
        hw: &str,
    ) -> tuf_repo::Result<UploadBundle> {
        let req = ReleaseRequest {
            manufacturer: m.clone(),
            target: target.to_owned(),
            image: image.to_owned(),
            firmware: FirmwareMeta::new(
                vec![hw.to_owned()],
                version.parse().unwrap(),
                None,
                Some("notes".into()),
            )?,
            expiry: self.expiries.delegated,
        };
        release(
            &self.repo,
            &req,
            std::slice::from_ref(key),
            &self.path("bundle"),
        )
        .await
    }

    /// The server takes an upload and the new version replaces the repo.
    pub async fn accept(&self, upload: &Upload) -> tuf_repo::Result<PublishedVersion> {
        let out = self.path("next");
        let p = accept_upload(
            &self.repo,
            upload,
            &self.online(),
            self.expiries.snapshot,
            self.expiries.timestamp,
            &out,
        )
        .await?;
        let old = self.path("old");
        std::fs::rename(self.repo.path(), &old).unwrap();
        std::fs::rename(&out, self.repo.path()).unwrap();
        Ok(p)
    }

    /// Release + upload + publish in one go.
    pub async fn ship(
        &self,
        m: &ManufacturerName,
        key: &SigningKey,
        file: &str,
        version: &str,
        hw: &str,
        seed: u8,
    ) -> PathBuf {
        let img = self.image(file, 4096 + usize::from(seed), seed);
        let b = self
            .release(m, key, &format!("{m}/{file}"), &img, version, hw)
            .await
            .unwrap();
        let up = tuf_repo::repo::publish::read_bundle(&b.dir, m).unwrap();
        self.accept(&up).await.unwrap();
        img
    }

    pub fn trusted_root(&self) -> Vec<u8> {
        std::fs::read(self.repo.metadata_file("1.root.json")).unwrap()
    }

    /// Loads the repository through tough, from root v1, checking every image.
    pub async fn verify(&self) -> tuf_repo::Result<VerifyReport> {
        tuf_repo::verify::verify(
            &RepoLocation::Dir(self.repo.path().to_owned()),
            &self.trusted_root(),
            tough::FilesystemTransport,
            true,
        )
        .await
    }

    pub fn state(&self) -> RepoState {
        RepoState::load(&self.repo).unwrap()
    }
}

/// An upload for acme of the metadata `bytes` and the `images`.
pub fn acme_upload(bytes: Vec<u8>, images: Vec<PathBuf>) -> Upload {
    Upload {
        manufacturer: acme(),
        role_metadata: bytes,
        images,
    }
}

/// Signs arbitrary delegated targets metadata with `keys` (hostile uploads).
pub async fn sign_delegated(
    state: &RepoState,
    name: &str,
    targets: Targets,
    keys: &[SigningKey],
) -> Vec<u8> {
    let holder = KeyHolder::Delegations(state.targets.signed.delegations.clone().unwrap());
    let sources: Vec<Box<dyn tough::key_source::KeySource>> =
        keys.iter().map(SigningKey::key_source).collect();
    let role = DelegatedTargets {
        name: name.to_owned(),
        targets,
    };
    match SignedRole::new(role.clone(), &holder, &sources, &SystemRandom::new()).await {
        Ok(s) => s.buffer().clone(),
        // tough refuses to sign below threshold; sign by hand instead.
        Err(_) => {
            let canonical = tough::schema::Role::canonical_form(&role).unwrap();
            let signed = Signed {
                signed: role,
                signatures: keys
                    .iter()
                    .map(|k| tough::schema::Signature {
                        keyid: hex::decode(k.key_id()).unwrap().into(),
                        sig: k.sign_bytes(&canonical).to_vec().into(),
                    })
                    .collect(),
            };
            serde_json::to_vec_pretty(&signed).unwrap()
        }
    }
}

/// A target entry for `bytes` with firmware custom metadata.
pub fn target_entry(bytes: &[u8], version: &str, hw: &str) -> Target {
    use sha2::Digest;
    Target {
        length: bytes.len() as u64,
        hashes: Hashes {
            sha256: sha2::Sha256::digest(bytes).to_vec().into(),
            _extra: HashMap::new(),
        },
        custom: FirmwareMeta::new(vec![hw.to_owned()], version.parse().unwrap(), None, None)
            .unwrap()
            .to_custom(),
        _extra: HashMap::new(),
    }
}

/// Inserts a target under a raw name (bypassing our own name checks where
/// tough allows it).
pub fn insert_raw(t: &mut Targets, raw: &str, entry: Target) {
    t.targets
        .insert(tough::TargetName::new(raw).unwrap(), entry);
}

/// A new delegated targets body at `version`.
pub fn targets_body(version: u64) -> Targets {
    let expires = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * 30))
        .unwrap();
    Targets::new(
        "1.0.0".into(),
        std::num::NonZeroU64::new(version).unwrap(),
        expires,
    )
}

/// The file python-tuf downloaded (per its JSON report `j`) is `image`.
pub fn assert_python_fetched(j: &serde_json::Value, image: &Path) {
    let path = j["path"].as_str().expect("the client names its download");
    assert_eq!(
        std::fs::read(path).unwrap(),
        std::fs::read(image).unwrap(),
        "python-tuf got other bytes than {}",
        image.display()
    );
}

/// Runs the python-tuf fixture client against `repo`; Ok(json) or Err(stderr).
pub fn python_fetch(
    repo: &Path,
    trusted_root: &Path,
    target: &str,
    out: &Path,
) -> Result<serde_json::Value, String> {
    std::fs::create_dir_all(out).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tuf_client.py");
    let python = wardgate_tests::python::python().unwrap_or_else(|e| panic!("{e}"));
    let o = Command::new(python)
        .arg(script)
        .arg(repo)
        .arg(trusted_root)
        .arg(target)
        .arg(out)
        .output()
        .expect("run python");
    if o.status.success() {
        Ok(serde_json::from_slice(&o.stdout).expect("client prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}
