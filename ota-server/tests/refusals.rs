//! Every refused upload or request: the peer is refused with a stable JSON
//! code, the reason is recorded (audit row and metric), the repository
//! metadata is byte-for-byte unchanged, and other clients keep working (a
//! valid release by another manufacturer is published and verifies).

mod support;

use std::time::Duration;

use support::{Bundle, Harness, Opts};
use wardgate_tests::pki::Ca;
use wardgate_tests::wait::wait_for_async;

async fn started() -> Harness {
    Harness::started(Opts::default()).await
}

/// Checks the three things every refusal test must show.
async fn assert_refused(
    h: &Harness,
    before: &std::collections::BTreeMap<String, Vec<u8>>,
    resp: reqwest::Response,
    status: u16,
    code: &str,
) {
    assert_eq!(resp.status().as_u16(), status, "wrong status for {code}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        !body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "an operator needs a message"
    );
    recorded_and_unchanged(h, before, code).await;
}

/// Uploads `role_bytes` then `image` as `target` (with a bearer `token`
/// if given) and checks that the server refuses it as [`assert_refused`]
/// says, against the metadata as it was just before the upload.
async fn assert_upload_refused(
    h: &Harness,
    token: Option<&str>,
    target: &str,
    role_bytes: &[u8],
    image: &[u8],
    status: u16,
    code: &str,
) {
    let before = h.metadata_files();
    let r = h.upload(token, target, role_bytes, image).await;
    assert_refused(h, &before, r, status, code).await;
}

async fn recorded_and_unchanged(
    h: &Harness,
    before: &std::collections::BTreeMap<String, Vec<u8>>,
    code: &str,
) {
    let ok = wait_for_async(Duration::from_secs(10), || async {
        h.last_audit().await["code"] == code
    })
    .await;
    assert!(
        ok,
        "no audit row with code {code}: {}",
        h.last_audit().await
    );
    let m = h
        .metric(&format!("wardgate_ota_refusals_total{{code=\"{code}\"}}"))
        .await;
    assert!(m >= 1.0, "refusal metric for {code} not counted");
    support::assert_same_metadata(before, &h.metadata_files(), code);
    assert!(
        std::fs::read_dir(h.data_dir.join("repo/tmp"))
            .unwrap()
            .all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("upload-")),
        "staged upload left behind"
    );
    others_keep_working(h).await;
}

/// Another manufacturer publishes and a TUF client verifies it.
async fn others_keep_working(h: &Harness) {
    let n = h
        .admin_get("/api/v1/releases")
        .await
        .as_array()
        .unwrap()
        .len();
    let file = format!("globex-fw-{n}.0.0.bin");
    let img = format!("globex image {n}").into_bytes();
    let b = h
        .release("globex", &file, &format!("{}.0.0", n + 1), None, &img)
        .await;
    let r = h.upload_bundle(&h.globex_token, &b).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(h.tough_fetch(&format!("globex/{file}")).await.unwrap(), img);
}

/// Re-signs a role's `signed` part with `key` (replacing signatures).
fn resign(
    role: &[u8],
    key: &tuf_repo::SigningKey,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Vec<u8> {
    use serde::Serialize;
    let mut v: serde_json::Value = serde_json::from_slice(role).unwrap();
    edit(&mut v["signed"]);
    let mut canon = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut canon, olpc_cjson::CanonicalFormatter::new());
    v["signed"].serialize(&mut ser).unwrap();
    let sig = key.sign_bytes(&canon);
    v["signatures"] = serde_json::json!([{ "keyid": key.key_id(), "sig": hex::encode(sig) }]);
    serde_json::to_vec_pretty(&v).unwrap()
}

async fn acme_bundle(h: &Harness, file: &str, version: &str) -> Bundle {
    h.release("acme", file, version, None, &vec![7u8; 4096])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_signed_by_another_manufacturers_key_is_refused() {
    let h = started().await;
    let b = acme_bundle(&h, "pump-1.0.0.bin", "1.0.0").await;
    let forged = resign(&b.role_bytes, &h.keys.globex, |_| {});
    let acme = Some(h.acme_token.as_str());
    assert_upload_refused(&h, acme, &b.target, &forged, &b.image, 403, "bad_signature").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_outside_the_manufacturers_pattern_is_refused() {
    let h = started().await;
    let acme = Some(h.acme_token.as_str());
    // acme signs metadata naming a globex path.
    let b = acme_bundle(&h, "pump-1.0.0.bin", "1.0.0").await;
    let evil = resign(&b.role_bytes, &h.keys.acme, |s| {
        let targets = s["targets"].as_object_mut().unwrap();
        let t = targets.remove("acme/pump-1.0.0.bin").unwrap();
        targets.insert("globex/pump-1.0.0.bin".into(), t);
    });
    let target = "acme/pump-1.0.0.bin";
    assert_upload_refused(&h, acme, target, &evil, &b.image, 403, "scope_violation").await;
    // acme's token cannot upload into globex's path either, even with a
    // correctly signed globex bundle.
    let g = h
        .release("globex", "x-9.0.0.bin", "9.0.0", None, b"x")
        .await;
    let (role, image) = (&g.role_bytes, &g.image);
    assert_upload_refused(&h, acme, &g.target, role, image, 403, "scope_violation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_hash_or_length_mismatch_is_refused() {
    let h = started().await;
    let b = acme_bundle(&h, "pump-1.0.0.bin", "1.0.0").await;
    let mut flipped = b.image.clone();
    flipped[100] ^= 1;
    let short = &b.image[..b.image.len() - 10];
    for (image, code) in [(&flipped[..], "hash_mismatch"), (short, "length_mismatch")] {
        let acme = Some(h.acme_token.as_str());
        assert_upload_refused(&h, acme, &b.target, &b.role_bytes, image, 422, code).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_or_equal_version_is_refused() {
    let h = started().await;
    let b = acme_bundle(&h, "pump-2.0.0.bin", "2.0.0").await;
    assert_eq!(h.upload_bundle(&h.acme_token, &b).await.status(), 201);
    let before = h.metadata_files();
    // The same bundle again (equal metadata version).
    let r = h.upload_bundle(&h.acme_token, &b).await;
    assert_refused(&h, &before, r, 409, "not_newer").await;
    // A new metadata version carrying an older firmware version: signed
    // by hand, since `tuf-repo release` itself refuses it.
    let old = b"old firmware".to_vec();
    let forged = resign(&b.role_bytes, &h.keys.acme, |s| {
        s["version"] = serde_json::json!(s["version"].as_u64().unwrap() + 1);
        let t = s["targets"]["acme/pump-2.0.0.bin"].clone();
        let mut t2 = t.clone();
        t2["length"] = serde_json::json!(old.len());
        t2["hashes"]["sha256"] = serde_json::json!(support::sha256_hex(&old));
        t2["custom"]["version"] = serde_json::json!("1.9.0");
        s["targets"]["acme/pump-1.9.0.bin"] = t2;
    });
    let (acme, older) = (Some(h.acme_token.as_str()), "acme/pump-1.9.0.bin");
    assert_upload_refused(&h, acme, older, &forged, &old, 409, "not_newer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_upload_is_refused() {
    let h = started().await;
    let before = h.metadata_files();
    let b = acme_bundle(&h, "pump-1.0.0.bin", "1.0.0").await;
    let mut head = b.role_bytes.clone();
    head.extend_from_slice(&b.image[..1000]);
    // The client dies mid-body: the stream errors after the first part has
    // gone out on the wire.
    let chunks = futures::stream::unfold(0, move |step| {
        let head = head.clone();
        async move {
            match step {
                0 => Some((Ok(head), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Some((Err(std::io::Error::other("client crashed")), 2))
                }
                _ => None,
            }
        }
    });
    let r = h
        .client()
        .post(format!("{}/api/v1/releases/{}", h.base_url(), b.target))
        .bearer_auth(&h.acme_token)
        .header("X-Wardgate-Metadata-Length", b.role_bytes.len().to_string())
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    assert!(r.is_err() || !r.unwrap().status().is_success());
    recorded_and_unchanged(&h, &before, "upload_incomplete").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_over_the_size_limit_is_refused() {
    let h = started().await; // limit 4 MiB
    let before = h.metadata_files();
    let big = vec![1u8; 5 * 1024 * 1024];
    let b = h
        .release("acme", "huge-1.0.0.bin", "1.0.0", None, &big)
        .await;
    // Declared length over the limit: refused before the body is read.
    // The server answers 413 from the headers and closes without reading
    // the body, so a client still writing may see the connection cut before
    // it reads the answer. Both are refusals; the record must exist either way.
    match h
        .try_upload(Some(&h.acme_token), &b.target, &b.role_bytes, &b.image)
        .await
    {
        Ok(r) => assert_refused(&h, &before, r, 413, "upload_too_large").await,
        Err(e) => {
            assert!(e.is_request(), "unexpected client error: {e}");
            recorded_and_unchanged(&h, &before, "upload_too_large").await;
        }
    }
    // Streamed without a length: refused once the limit is crossed.
    let before = h.metadata_files();
    let mut body = b.role_bytes.clone();
    body.extend_from_slice(&b.image);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(256 * 1024).map(|c| Ok(c.to_vec())).collect();
    let r = h
        .client()
        .post(format!("{}/api/v1/releases/{}", h.base_url(), b.target))
        .bearer_auth(&h.acme_token)
        .header("X-Wardgate-Metadata-Length", b.role_bytes.len().to_string())
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    recorded_and_unchanged(&h, &before, "upload_too_large").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_or_wrongly_authenticated_requests_are_refused() {
    let h = started().await;
    let b = acme_bundle(&h, "pump-1.0.0.bin", "1.0.0").await;
    // No token, a made-up one, and the admin's (not a manufacturer's).
    for (token, status, code) in [
        (None, 401, "unauthenticated"),
        (Some("wgota_not-a-token"), 401, "unauthenticated"),
        (Some(h.admin_token.as_str()), 403, "forbidden"),
    ] {
        assert_upload_refused(&h, token, &b.target, &b.role_bytes, &b.image, status, code).await;
    }
    // A manufacturer token is not an admin token.
    let before = h.metadata_files();
    let r = h.get_as("/api/v1/audit", &h.acme_token).await;
    assert_refused(&h, &before, r, 403, "forbidden").await;
    // The gateway API without a client certificate.
    let before = h.metadata_files();
    let r = h
        .client()
        .post(format!("{}/api/v1/gateway/assignments", h.base_url()))
        .json(&serde_json::json!({"devices": ["pump-01"]}))
        .send()
        .await
        .unwrap();
    assert_refused(&h, &before, r, 401, "client_certificate_required").await;
    // A gateway certificate from a CA the server does not trust: the TLS
    // handshake is refused and counted.
    let before = h.metadata_files();
    let rogue = Ca::generate("Rogue CA", 30).unwrap();
    let failures = h.metric("wardgate_ota_tls_handshake_failures_total").await;
    let r = h
        .gateway_client(&rogue, "ward-x")
        .post(format!("{}/api/v1/gateway/assignments", h.base_url()))
        .json(&serde_json::json!({"devices": ["pump-01"]}))
        .send()
        .await;
    assert!(r.is_err(), "untrusted client certificate accepted");
    // The server counts the failed handshake once its side of it ends,
    // which may be just after the client has given up.
    let counted = wait_for_async(Duration::from_secs(5), || async {
        h.metric("wardgate_ota_tls_handshake_failures_total").await > failures
    })
    .await;
    assert!(counted, "the refused handshake was not counted");
    support::assert_same_metadata(&before, &h.metadata_files(), "untrusted client certificate");
    others_keep_working(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_refused() {
    let h = started().await;
    let before = h.metadata_files();
    let r = h
        .client()
        .post(format!("{}/api/v1/campaigns", h.base_url()))
        .bearer_auth(&h.admin_token)
        .header("content-type", "application/json")
        .body("{\"name\": \"x\", \"target\": ")
        .send()
        .await
        .unwrap();
    assert_refused(&h, &before, r, 400, "malformed_json").await;
    // Malformed release metadata.
    let acme = Some(h.acme_token.as_str());
    let (target, role) = ("acme/pump-1.0.0.bin", b"{not json");
    assert_upload_refused(&h, acme, target, role, b"image", 400, "malformed_metadata").await;
    // Well-formed JSON with a field of the wrong type.
    let before = h.metadata_files();
    let r = h
        .client()
        .post(format!("{}/api/v1/campaigns", h.base_url()))
        .bearer_auth(&h.admin_token)
        .json(&serde_json::json!({"name": "x", "target": "../etc", "gateways": [], "waves": [], "failure_threshold_percent": 5}))
        .send()
        .await
        .unwrap();
    assert_refused(&h, &before, r, 422, "malformed_json").await;
}
