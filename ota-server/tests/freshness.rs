//! Freeze attacks: the running server keeps timestamp.json fresh, while a
//! client served a timestamp that stopped being refreshed (a frozen mirror,
//! or this server with its refresher stopped) sees it expire and refuses.
//! Short expiries, polling loops, no timing asserts.

mod support;

use std::time::Duration;

use support::{Harness, Opts};
use tuf_repo::RepoLocation;
use wardgate_tests::wait::wait_for_async;

async fn verify_dir(h: &Harness, dir: &std::path::Path) -> Result<(), String> {
    tuf_repo::verify::verify(
        &RepoLocation::Dir(dir.to_owned()),
        &h.root_json,
        tough::FilesystemTransport,
        false,
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

async fn verify_server(h: &Harness) -> Result<(), String> {
    let loc = RepoLocation::Url(url::Url::parse(&h.base_url()).unwrap());
    tuf_repo::verify::verify(&loc, &h.root_json, h.transport(), false)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_refresh_is_detected_while_the_server_stays_fresh() {
    let mut h = Harness::new(Opts {
        timestamp_expiry: "4s",
        timestamp_refresh: "1s",
        ..Opts::default()
    })
    .await;
    h.start().await;
    // A mirror that copied the repository once and never refreshes.
    let mirror = h.dir.path().join("frozen-mirror");
    ota_server::repo::export::export(&h.server().state().repo, &mirror).unwrap();
    verify_dir(&h, &mirror).await.expect("fresh copy verifies");

    // Poll until the frozen copy is refused as expired; each time, the live
    // server must still verify.
    let mut frozen_err = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        verify_server(&h)
            .await
            .expect("live server must stay fresh");
        if let Err(e) = verify_dir(&h, &mirror).await {
            frozen_err = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let e = frozen_err.expect("frozen mirror never expired");
    assert!(e.contains("expire"), "expected an expiry refusal, got: {e}");
    verify_server(&h).await.unwrap();
    assert!(h.metric("wardgate_ota_timestamp_refreshes_total").await >= 1.0);

    // Now stop the server's own refresher: its clients detect the freeze.
    h.server().stop_timestamp_refresh();
    let stale = wait_for_async(Duration::from_secs(60), || async {
        verify_server(&h).await.is_err()
    })
    .await;
    assert!(stale, "stopped refresh never became visible to clients");
    let e = verify_server(&h).await.unwrap_err();
    assert!(e.contains("expire"), "{e}");
    let health = h.get("/healthz").await;
    assert_eq!(health.status(), 503);
    h.stop().await;
}
