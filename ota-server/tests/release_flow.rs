//! A manufacturer release goes through the API and is fetched and verified
//! by independent TUF clients (tough and python-tuf) over real HTTPS; Range
//! resumes a partial download.

mod support;

use support::{sha256_hex, Harness, Opts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_release_verifies_with_tough_and_python_tuf() {
    let mut h = Harness::started(Opts::default()).await;
    let image: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let b = h
        .release("acme", "pump-fw-1.0.0.bin", "1.0.0", None, &image)
        .await;
    let r = h.upload_bundle(&h.acme_token, &b).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let published: serde_json::Value = r.json().await.unwrap();
    assert_eq!(published["sha256"], sha256_hex(&image));

    // tough, root pinned to version 1, over HTTPS with the private CA.
    let got = h.tough_fetch("acme/pump-fw-1.0.0.bin").await.unwrap();
    assert_eq!(got, image);
    // python-tuf's ngclient, independently.
    let py = h.python_fetch("acme/pump-fw-1.0.0.bin").unwrap();
    assert_eq!(py, sha256_hex(&image));

    // A second release by the same manufacturer keeps the first one.
    let image2 = vec![42u8; 1000];
    let b2 = h
        .release("acme", "pump-fw-1.1.0.bin", "1.1.0", None, &image2)
        .await;
    let r = h.upload_bundle(&h.acme_token, &b2).await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        h.tough_fetch("acme/pump-fw-1.1.0.bin").await.unwrap(),
        image2
    );
    assert_eq!(
        h.tough_fetch("acme/pump-fw-1.0.0.bin").await.unwrap(),
        image
    );
    assert_eq!(
        h.python_fetch("acme/pump-fw-1.1.0.bin").unwrap(),
        sha256_hex(&image2)
    );

    // Operations endpoints reflect it.
    assert_eq!(h.metric("wardgate_ota_releases_published_total").await, 2.0);
    let releases = h.admin_get("/api/v1/releases").await;
    assert_eq!(releases.as_array().unwrap().len(), 2);
    let health: serde_json::Value = h.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["releases"], 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_request_resumes_a_partial_download() {
    let (mut h, image) =
        Harness::with_patterned_acme_release("mon-2.0.0.bin", "2.0.0", 200_000).await;
    let sha = sha256_hex(&image);
    let url = h.acme_target_url("mon-2.0.0.bin", &image);
    let c = h.client();
    // A GET of the image with these request headers.
    let get_with = |headers: &[(&str, &str)]| {
        let mut rb = c.get(&url);
        for (name, value) in headers {
            rb = rb.header(*name, *value);
        }
        async move { rb.send().await.unwrap() }
    };

    // First attempt: only part arrives (the client stops reading).
    let full = c.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.content_length(), Some(image.len() as u64));
    let etag = full.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{sha}\""));
    let mut stream = full;
    let mut partial = Vec::new();
    while partial.len() < 70_000 {
        let chunk = stream.chunk().await.unwrap().unwrap();
        partial.extend_from_slice(&chunk);
    }
    drop(stream);

    // Resume from where it stopped, conditional on the same ETag.
    let range = format!("bytes={}-", partial.len());
    let resumed = get_with(&[("Range", &range), ("If-Range", &etag)]).await;
    assert_eq!(resumed.status(), 206);
    assert_eq!(
        resumed.headers()["content-range"].to_str().unwrap(),
        format!(
            "bytes {}-{}/{}",
            partial.len(),
            image.len() - 1,
            image.len()
        )
    );
    partial.extend_from_slice(&resumed.bytes().await.unwrap());
    assert_eq!(
        sha256_hex(&partial),
        sha,
        "resumed download does not verify"
    );

    // tough's spelling of the same file, ETag revalidation, bad ranges.
    let tough_url = format!("{}/targets/{sha}.acme/mon-2.0.0.bin", h.base_url());
    assert_eq!(
        c.get(&tough_url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len(),
        image.len()
    );
    let nm = get_with(&[("If-None-Match", &etag)]).await;
    assert_eq!(nm.status(), 304);
    let bad = get_with(&[("Range", "bytes=999999999-")]).await;
    assert_eq!(bad.status(), 416);
    let stale = get_with(&[("Range", "bytes=10-"), ("If-Range", "\"other\"")]).await;
    assert_eq!(
        stale.status(),
        200,
        "a stale If-Range must get the whole image"
    );
    // A digest that is not published is not served.
    let wrong = format!(
        "{}/targets/acme/{}.mon-2.0.0.bin",
        h.base_url(),
        "0".repeat(64)
    );
    assert_eq!(c.get(&wrong).send().await.unwrap().status(), 404);
    h.stop().await;
}
