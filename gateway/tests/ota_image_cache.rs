//! The ward's image cache against a real `ota-server` over mutual TLS: an
//! image is downloaded once however many callers want it (central egress
//! of one copy, checked on the server's own byte counter), a transfer cut
//! mid-way resumes with an HTTP Range request after a restart, a resumed
//! file that does not verify is downloaded again, and a cached image that
//! was tampered with, or an image the server swapped, is refused, deleted,
//! audited and counted.

mod ota_support;

use std::sync::Arc;

use chrono::Utc;
use gateway::ota::{CacheSettings, Fetch, ImageCache, OtaError, TufClient};
use ota_support::{image, GatewaySide, OtaServer, StaticServer, HW};

const LEN: usize = 1024 * 1024;

async fn open_cache(gw: &GatewaySide, tuf: &TufClient) -> ImageCache {
    ImageCache::open(
        gw.data_dir(),
        tuf.http_client(),
        CacheSettings {
            download_timeout: std::time::Duration::from_secs(60),
            max_parallel_downloads: 2,
        },
        gw.audit.clone(),
        gw.metrics.clone(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_is_downloaded_once_for_the_whole_ward() {
    let img = image(LEN, 11);
    let (mut server, name, _) = OtaServer::with_pump(&img).await;
    let gw = GatewaySide::new();
    let tuf = gw.tuf(&server.ota_config(&server.base_url())).await;
    tuf.refresh().await.unwrap();
    let target = tuf.fresh_target(&name, Utc::now()).unwrap();
    let cache = Arc::new(open_cache(&gw, &tuf).await);
    assert!(cache.path_for(&target.sha256).is_none());

    let before = server.settled_sent_bytes().await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (cache, target) = (Arc::clone(&cache), target.clone());
        tasks.push(tokio::spawn(async move { cache.fetch(&target).await }));
    }
    let mut downloaded = 0;
    for t in tasks {
        let (cached, how) = t.await.unwrap().expect("fetch");
        assert_eq!(cached.length, LEN as u64);
        if let Fetch::Downloaded(d) = how {
            assert_eq!(d.resumed_from, 0);
            assert_eq!(d.received, LEN as u64);
            downloaded += 1;
        }
    }
    assert_eq!(downloaded, 1, "one download for five requests");
    let sent = server.settled_sent_bytes().await - before;
    assert!(
        (sent - LEN as f64).abs() < 1.0,
        "the server sent {sent} bytes, not one image"
    );

    let path = cache.path_for(&target.sha256).expect("complete image");
    assert!(path.ends_with(format!("ota/images/{}", target.sha256)));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes, img);
    // What devices will check passes on the cached copy.
    let offer = wardgate_protocol::message::OtaOffer {
        schema: 1,
        seq: 1,
        ts: Utc::now(),
        campaign_id: "c".into(),
        target_name: target.name.clone(),
        version: "2.0.0".into(),
        length: target.length,
        sha256: target.sha256.clone(),
        hardware_id: HW.into(),
        download_url: "https://gw/ota".into(),
        targets_metadata: target.targets_metadata.to_string(),
    };
    wardgate_protocol::verify_offer(
        &offer,
        &server.keys.acme.verifying_key(),
        HW,
        &"1.0.0".parse().unwrap(),
        Utc::now(),
    )
    .unwrap()
    .check_image(&bytes)
    .unwrap();
    assert_eq!(gw.metrics.download_count("complete"), 1);
    assert_eq!(gw.metrics.received_bytes.get(), LEN as u64);
    assert_eq!(
        gw.audit
            .find(&name, Some("ota.image.download"))
            .unwrap()
            .len(),
        1
    );

    // After a restart the cache still has it: nothing is downloaded.
    drop(cache);
    let cache = open_cache(&gw, &tuf).await;
    let (_, how) = cache.fetch(&target).await.unwrap();
    assert_eq!(how, Fetch::Cached);
    assert!((server.settled_sent_bytes().await - before - LEN as f64).abs() < 1.0);

    // Images no campaign needs any more are removed.
    assert_eq!(
        cache.remove_unused(&[&target.sha256]).await.unwrap().len(),
        0
    );
    assert_eq!(
        cache.remove_unused(&[]).await.unwrap(),
        vec![target.sha256.clone()]
    );
    assert!(cache.path_for(&target.sha256).is_none());
    assert!(!path.exists());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_download_resumes_with_range_after_a_restart() {
    let img = image(LEN, 12);
    let (mut server, name, _) = OtaServer::with_pump(&img).await;
    let proxy = ota_support::CutProxy::start(server.addr()).await;
    let gw = GatewaySide::new();
    let tuf = gw.tuf(&server.ota_config(&proxy.base_url())).await;
    tuf.refresh().await.unwrap();
    let target = tuf.target(&name).unwrap();

    // The link breaks after ~400 KiB of the image. (An attempt may also
    // fail on a pooled connection the proxy just dropped, before any byte
    // arrives; the agent simply tries again.)
    let cache = open_cache(&gw, &tuf).await;
    proxy.cut_after(400 * 1024);
    let partial = gw
        .data_dir()
        .join("ota/images/.partial")
        .join(&target.sha256);
    let mut attempts = 0;
    let have = loop {
        attempts += 1;
        assert!(attempts <= 5, "the download never got under way");
        let e = cache.fetch(&target).await.unwrap_err();
        assert!(matches!(e, OtaError::Interrupted { .. }), "{e}");
        assert!(e.to_string().contains("resumes"), "{e}");
        let len = std::fs::metadata(&partial).map_or(0, |m| m.len());
        if len > 0 {
            break len;
        }
    };
    assert!(have > 0 && have < LEN as u64, "partial holds {have} bytes");
    assert!(
        cache.path_for(&target.sha256).is_none(),
        "incomplete is never handed out"
    );
    assert_eq!(gw.metrics.download_count("interrupted"), attempts);
    drop(cache);

    // The gateway restarts, the link is back: only the rest is fetched.
    proxy.cut_after(u64::MAX);
    let before = server.settled_sent_bytes().await;
    let cache = open_cache(&gw, &tuf).await;
    let mut tries = 0;
    let (cached, how) = loop {
        tries += 1;
        match cache.fetch(&target).await {
            Ok(done) => break done,
            // A pooled connection the proxy dropped: nothing was received.
            Err(OtaError::Interrupted { received, .. }) if tries < 3 && received == have => {}
            Err(e) => panic!("resume failed: {e}"),
        }
    };
    let Fetch::Downloaded(d) = how else {
        panic!("expected a download, got {how:?}");
    };
    assert_eq!(d.resumed_from, have);
    assert_eq!(d.received, LEN as u64 - have);
    let sent = server.settled_sent_bytes().await - before;
    assert!(
        (sent - (LEN as u64 - have) as f64).abs() < 1.0,
        "the server sent {sent} bytes for the rest of {} ",
        LEN as u64 - have
    );
    assert_eq!(std::fs::read(&cached.path).unwrap(), img);
    assert!(!partial.exists());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_partial_and_tampered_cache_are_caught() {
    let img = image(LEN / 4, 13);
    let (mut server, name, _) = OtaServer::with_pump(&img).await;
    let gw = GatewaySide::new();
    let tuf = gw.tuf(&server.ota_config(&server.base_url())).await;
    tuf.refresh().await.unwrap();
    let target = tuf.target(&name).unwrap();

    // A partial file that is not the start of this image (disk trouble,
    // power loss): the resumed image does not verify, so it is deleted and
    // downloaded again from the start.
    let partial_dir = gw.data_dir().join("ota/images/.partial");
    std::fs::create_dir_all(&partial_dir).unwrap();
    std::fs::write(partial_dir.join(&target.sha256), vec![0xEE; 1000]).unwrap();
    let cache = open_cache(&gw, &tuf).await;
    let before = server.settled_sent_bytes().await;
    let (cached, how) = cache.fetch(&target).await.unwrap();
    assert_eq!(
        how,
        Fetch::Downloaded(gateway::ota::download::Downloaded {
            resumed_from: 0,
            received: img.len() as u64
        })
    );
    let sent = server.settled_sent_bytes().await - before;
    let expected = (2 * img.len() - 1000) as f64;
    assert!(
        (sent - expected).abs() < 1.0,
        "sent {sent}, expected the rest and then all"
    );
    assert_eq!(std::fs::read(&cached.path).unwrap(), img);

    // Someone changes the cached image: path_for stops handing it out,
    // verify deletes it, and both are recorded.
    let mut evil = img.clone();
    evil[10] ^= 0xFF;
    std::fs::write(&cached.path, &evil).unwrap();
    let e = cache.verify(&target.sha256).await.unwrap_err();
    assert!(matches!(e, OtaError::Tampered { .. }), "{e}");
    assert!(cache.path_for(&target.sha256).is_none());
    assert!(!cached.path.exists());
    assert_eq!(gw.metrics.corrupt.get(), 1);
    let rows = gw
        .audit
        .find(&target.sha256, Some("ota.image.verify"))
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "refused");

    // The next fetch gets a good copy again; a tampered file found at
    // start-up is removed before anything can use it.
    let (again, _) = cache.fetch(&target).await.unwrap();
    assert_eq!(std::fs::read(&again.path).unwrap(), img);
    std::fs::write(&again.path, &evil).unwrap();
    drop(cache);
    let cache = open_cache(&gw, &tuf).await;
    assert!(cache.path_for(&target.sha256).is_none());
    assert!(!again.path.exists());
    assert_eq!(gw.metrics.corrupt.get(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_swapped_on_the_server_is_refused() {
    let img = image(64 * 1024, 14);
    let (mut server, name, _) = OtaServer::with_pump(&img).await;
    // A mirror whose metadata is genuine but whose image was replaced by
    // one of the same length.
    let mirror_dir = server.dir.path().join("swapped");
    server.export(&mirror_dir);
    let sha = ota_support::sha256_hex(&img);
    let mut evil = img.clone();
    evil[0] ^= 1;
    for p in [
        mirror_dir.join(format!("targets/acme/{sha}.pump-2.0.0.bin")),
        mirror_dir.join(format!("targets/{sha}.acme/pump-2.0.0.bin")),
    ] {
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, &evil).unwrap();
    }
    let mirror = StaticServer::start(&server.pki, &mirror_dir).await;
    let gw = GatewaySide::new();
    let tuf = gw.tuf(&server.ota_config(&mirror.base_url())).await;
    tuf.refresh().await.unwrap();
    let target = tuf.target(&name).unwrap();
    let cache = open_cache(&gw, &tuf).await;
    let e = cache.fetch(&target).await.unwrap_err();
    assert!(matches!(e, OtaError::ImageRefused { .. }), "{e}");
    assert!(e.to_string().contains("SHA-256"), "{e}");
    assert!(cache.path_for(&sha).is_none());
    assert!(!gw
        .data_dir()
        .join("ota/images/.partial")
        .join(&sha)
        .exists());
    assert_eq!(gw.metrics.download_count("refused"), 1);
    let rows = gw.audit.find(&name, Some("ota.image.download")).unwrap();
    assert_eq!(rows.last().unwrap().outcome, "refused");
    server.stop().await;
}
