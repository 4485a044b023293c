//! The real binary: refuses an insecure configuration naming the field,
//! exports the repository as static files, prints tokens; the example
//! configuration parses; oversized request heads are refused.

mod support;

use std::process::Command;

use support::{Harness, Opts};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ota-server"))
}

/// `ota-server serve` with the configuration `text` written to `path`.
fn serve_config(path: &std::path::Path, text: &str) -> std::process::Output {
    std::fs::write(path, text).unwrap();
    bin()
        .args(["serve", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_refuses_bad_config_and_exports_a_mirror() {
    let mut h = Harness::new(Opts::default()).await;
    // Insecure: refresh as long as the expiry.
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    let bad = h.dir.path().join("bad.toml");
    let out = serve_config(
        &bad,
        &text.replace("timestamp_refresh = \"6h\"", "timestamp_refresh = \"1day\""),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tuf.timestamp_refresh"), "{err}");
    // A token stored in clear instead of its hash.
    let out = serve_config(
        &bad,
        &text.replacen("token_sha256 = \"", "token_sha256 = \"secret", 1),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("admins[0].token_sha256"));
    // Environment overrides are applied and checked too.
    let out = bin()
        .args(["serve", "--config"])
        .arg(&h.config_path)
        .env("WARDGATE_OTA_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARDGATE_OTA_LISTEN"));

    // Export a static mirror with the real binary, then verify it offline.
    h.start().await;
    let b = h
        .release("acme", "pump-1.0.0.bin", "1.0.0", None, b"mirror me")
        .await;
    assert_eq!(h.upload_bundle(&h.acme_token, &b).await.status(), 201);
    h.stop().await;
    let out_dir = h.dir.path().join("mirror");
    let out = bin()
        .args(["export", "--config"])
        .arg(&h.config_path)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = tuf_repo::verify::fetch_target(
        &tuf_repo::RepoLocation::Dir(out_dir),
        &h.root_json,
        tough::FilesystemTransport,
        "acme/pump-1.0.0.bin",
    )
    .await
    .unwrap();
    assert_eq!(got, b"mirror me");

    let out = bin().arg("token").output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("wgota_") && s.contains("token_sha256"));
}

#[test]
fn example_config_parses() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ota-server.example.toml");
    let cfg = ota_server::config::Config::load(Some(&p), Vec::new()).unwrap();
    assert_eq!(cfg.manufacturers[0].name.as_str(), "acme");
    // Validation names the first missing file.
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("tls.cert"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_head_is_refused() {
    let mut h = Harness::started(Opts::default()).await;
    let r = h
        .client()
        .get(format!("{}/healthz", h.base_url()))
        .header("x-padding", "a".repeat(64 * 1024))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), 431),
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    // The server still answers others.
    let ok = h.get("/healthz").await;
    assert_eq!(ok.status(), 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_repository_is_refused_at_start_up() {
    let h = Harness::new(Opts::default()).await;
    let ts = h.current_gen().join("metadata/timestamp.json");
    let text = std::fs::read_to_string(&ts).unwrap();
    // Push the expiry out without re-signing: the signature no longer holds.
    let forged = text.replacen("\"expires\": \"20", "\"expires\": \"21", 1);
    assert_ne!(text, forged);
    std::fs::write(&ts, forged).unwrap();
    let cfg = ota_server::cli::load_config(&h.config_path).unwrap();
    let e = ota_server::server::start(cfg, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("timestamp.json"), "{e}");
}
