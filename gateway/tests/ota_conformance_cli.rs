//! `gateway ota tuf-client`, the TUF client command line of the TUF
//! conformance suite's protocol (`init`, `refresh`, `download`; exit code 0
//! or 1; unversioned metadata names in the metadata directory), driven as
//! the suite drives a client: the real binary, against an `ota-server
//! export` served as a static HTTPS mirror.

mod ota_support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use ota_support::{image, OtaServer, StaticServer};

const BIN: &str = env!("CARGO_BIN_EXE_gateway");

struct Client<'a> {
    server: &'a OtaServer,
    mirror: String,
    metadata_dir: std::path::PathBuf,
    target_dir: std::path::PathBuf,
}

impl Client<'_> {
    async fn run(&self, args: &[&str]) -> Output {
        let pki = &self.server.pki;
        tokio::process::Command::new(BIN)
            .args(["ota", "tuf-client"])
            .args(args)
            .arg("--ca-cert")
            .arg(&pki.ca_pem)
            .arg("--client-cert")
            .arg(&pki.gateway_cert)
            .arg("--client-key")
            .arg(&pki.gateway_key)
            .env_remove("WARDGATE_CONFIG")
            .output()
            .await
            .expect("run gateway")
    }

    async fn init(&self, root: &Path) -> Output {
        let dir = self.metadata_dir.display().to_string();
        let root = root.display().to_string();
        self.run(&["--metadata-dir", &dir, "init", &root]).await
    }

    async fn refresh(&self) -> Output {
        // Argument order as the conformance runner passes it.
        let url = format!("{}metadata", self.mirror);
        let dir = self.metadata_dir.display().to_string();
        self.run(&["--metadata-url", &url, "--metadata-dir", &dir, "refresh"])
            .await
    }

    async fn download(&self, target: &str) -> Output {
        let url = format!("{}metadata", self.mirror);
        let targets = format!("{}targets", self.mirror);
        let dir = self.metadata_dir.display().to_string();
        let out = self.target_dir.display().to_string();
        self.run(&[
            "--metadata-url",
            &url,
            "--metadata-dir",
            &dir,
            "--target-name",
            target,
            "--target-dir",
            &out,
            "--target-base-url",
            &targets,
            "download",
        ])
        .await
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_protocol_against_an_ota_server_export() {
    let img = image(200 * 1024, 21);
    let (mut server, target, role_bytes) = OtaServer::with_pump(&img).await;
    let mirror_dir = server.dir.path().join("mirror");
    server.export(&mirror_dir);
    let mirror = StaticServer::start(&server.pki, &mirror_dir).await;
    let work = tempfile::tempdir().unwrap();
    let client = Client {
        server: &server,
        mirror: mirror.base_url(),
        metadata_dir: work.path().join("metadata"),
        target_dir: work.path().join("targets"),
    };
    std::fs::create_dir_all(&client.metadata_dir).unwrap();
    std::fs::create_dir_all(&client.target_dir).unwrap();

    // refresh before init fails with 1 and says what to do.
    let o = client.refresh().await;
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("init"), "{}", stderr(&o));

    // init: the trusted root is copied, nothing is fetched.
    let o = client.init(&server.root_json).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        std::fs::read(client.metadata_dir.join("root.json")).unwrap(),
        std::fs::read(&server.root_json).unwrap()
    );

    // refresh: every role stored under its unversioned name, byte for byte
    // what the repository serves.
    let o = client.refresh().await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        files(&client.metadata_dir),
        [
            "acme.json",
            "globex.json",
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );
    assert_eq!(
        std::fs::read(client.metadata_dir.join("acme.json")).unwrap(),
        role_bytes
    );
    assert_eq!(
        std::fs::read(client.metadata_dir.join("timestamp.json")).unwrap(),
        std::fs::read(mirror_dir.join("metadata/timestamp.json")).unwrap()
    );

    // download: the verified target lands in the target dir; a second
    // download finds it there and fetches nothing.
    let o = client.download(&target).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let stored = client.target_dir.join("acme%2Fpump-2.0.0.bin");
    assert_eq!(std::fs::read(&stored).unwrap(), img);
    let o = client.download(&target).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("already"),
        "{o:?}"
    );

    // A target that is not listed: exit 1.
    let o = client.download("acme/unknown.bin").await;
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("not listed"), "{}", stderr(&o));

    // Tampered target on the mirror: exit 1, nothing stored.
    std::fs::remove_file(&stored).unwrap();
    let sha = ota_support::sha256_hex(&img);
    let served = mirror_dir.join(format!("targets/acme/{sha}.pump-2.0.0.bin"));
    let mut evil = img.clone();
    evil[1234] ^= 0x40;
    std::fs::remove_file(&served).unwrap();
    std::fs::write(&served, &evil).unwrap();
    let o = client.download(&target).await;
    assert_eq!(code(&o), 1, "tampered target accepted");
    assert!(stderr(&o).contains("SHA-256"), "{}", stderr(&o));
    assert!(
        files(&client.target_dir).is_empty(),
        "{:?}",
        files(&client.target_dir)
    );

    // Expired timestamp (a frozen mirror re-signed to expire now): exit 1,
    // and the trusted timestamp stays the previous one.
    let trusted_ts = std::fs::read(client.metadata_dir.join("timestamp.json")).unwrap();
    tuf_repo::refresh_timestamp(
        &tuf_repo::RepoDir::new(&mirror_dir),
        std::slice::from_ref(&server.keys.timestamp),
        Duration::ZERO,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let o = client.refresh().await;
    assert_eq!(code(&o), 1, "expired timestamp accepted");
    assert!(stderr(&o).contains("expired"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(client.metadata_dir.join("timestamp.json")).unwrap(),
        trusted_ts
    );
    server.stop().await;
}
