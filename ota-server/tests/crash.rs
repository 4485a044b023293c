//! Kill -9 of the real `ota-server` binary during uploads: after a restart
//! the repository verifies, nothing half-published is visible, and each
//! release is either fully there (its image verifies) or absent.

mod support;

use std::time::Duration;

use support::{Harness, Opts};
use wardgate_tests::wait::wait_for_async;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_upload_leaves_the_repository_intact() {
    let mut h = Harness::new(Opts {
        max_upload_bytes: 64 * 1024 * 1024,
        ..Opts::default()
    })
    .await;
    h.start_process();
    let image: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect();
    let b = h
        .release("acme", "pump-1.0.0.bin", "1.0.0", None, &image)
        .await;
    let before = h.metadata_files();

    // 1. Killed while the image is still streaming in.
    let mut body = b.role_bytes.clone();
    body.extend_from_slice(&b.image);
    let chunks: Vec<Vec<u8>> = body.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
    let slow = futures::stream::unfold(chunks.into_iter(), |mut it| async move {
        let c = it.next()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        Some((Ok::<_, std::io::Error>(c), it))
    });
    let client = h.client();
    let url = format!("{}/api/v1/releases/{}", h.base_url(), b.target);
    let upload = tokio::spawn(
        client
            .post(url)
            .bearer_auth(&h.acme_token)
            .header("X-Wardgate-Metadata-Length", b.role_bytes.len().to_string())
            .body(reqwest::Body::wrap_stream(slow))
            .send(),
    );
    let tmp = h.data_dir.join("repo/tmp");
    let receiving = wait_for_async(Duration::from_secs(30), || {
        let tmp = tmp.clone();
        async move { staged_bytes(&tmp) > 256 * 1024 }
    })
    .await;
    assert!(receiving, "the server never started receiving the upload");
    h.kill9();
    assert!(
        upload.await.unwrap().is_err(),
        "the upload cannot have succeeded"
    );

    h.start_process();
    support::assert_same_metadata(&before, &h.metadata_files(), "kill -9 mid-upload");
    let err = h.tough_fetch(&b.target).await.unwrap_err();
    assert!(err.contains("not"), "half-uploaded target visible: {err}");
    assert_eq!(staged_bytes(&tmp), 0, "staged upload survived the restart");

    // 2. Killed at varying points after the whole body was sent: whatever
    //    the moment, the release is all there or not there at all.
    for (i, delay_ms) in [0u64, 5, 40].into_iter().enumerate() {
        let file = format!("mon-{}.0.0.bin", i + 2);
        let img: Vec<u8> = (0..2 * 1024 * 1024u32)
            .map(|x| ((x + i as u32) % 239) as u8)
            .collect();
        let b = h
            .release("acme", &file, &format!("{}.0.0", i + 2), None, &img)
            .await;
        let before = h.metadata_files();
        let (role, im, target) = (b.role_bytes.clone(), b.image.clone(), b.target.clone());
        let client = h.client();
        let url = format!("{}/api/v1/releases/{target}", h.base_url());
        let token = h.acme_token.clone();
        let up = tokio::spawn(async move {
            let mut body = role.clone();
            body.extend_from_slice(&im);
            client
                .post(url)
                .bearer_auth(token)
                .header("X-Wardgate-Metadata-Length", role.len().to_string())
                .body(body)
                .send()
                .await
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        h.kill9();
        let _ = up.await;
        h.start_process();
        match h.tough_fetch(&target).await {
            Ok(got) => assert_eq!(got, img, "release present but wrong"),
            Err(e) => {
                assert!(e.contains("not"), "repository broken after kill -9: {e}");
                support::assert_same_metadata(
                    &before,
                    &h.metadata_files(),
                    "kill -9 before publish",
                );
            }
        }
        // The first, killed upload never resurfaces.
        let earlier = h.tough_fetch("acme/pump-1.0.0.bin").await;
        assert!(
            earlier.is_err(),
            "the first, killed upload must stay absent"
        );
    }
    // And the server still takes releases.
    let b = h
        .release("acme", "final-9.0.0.bin", "9.0.0", None, b"final")
        .await;
    let r = h.upload_bundle(&h.acme_token, &b).await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        h.python_fetch(&b.target).unwrap(),
        support::sha256_hex(b"final")
    );
}

/// Bytes in staged uploads under `tmp/`.
fn staged_bytes(tmp: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(tmp) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("upload-"))
        .filter_map(|e| std::fs::read_dir(e.path()).ok())
        .flat_map(Iterator::flatten)
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum()
}
