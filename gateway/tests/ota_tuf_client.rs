//! The gateway's TUF client against a real `ota-server` over mutual TLS:
//! a refresh gives each manufacturer's signed metadata exactly as a device
//! checks it; every refused refresh (expired timestamp, a key that is not
//! delegated, a target outside the manufacturer's path, older metadata after
//! a restart) keeps the last good state, is audited and counted, and raises
//! one `update_metadata_refused` alert for the operator. Hostile
//! repositories are served as a compromised server or mirror would: a copy
//! of the real one, changed and re-signed with the online snapshot and
//! timestamp keys (never a manufacturer's key).

mod ota_support;

use std::time::Duration;

use chrono::Utc;
use gateway::ota::{OtaError, RefreshFailure};
use ota_support::{image, target_entry, GatewaySide, OtaServer, StaticServer, HW};
use wardgate_protocol::message::OtaOffer;

const TARGET: &str = "acme/pump-2.0.0.bin";

fn offer(info: &gateway::ota::TargetInfo) -> OtaOffer {
    OtaOffer {
        schema: 1,
        seq: 1,
        ts: Utc::now(),
        campaign_id: "c-1".into(),
        target_name: info.name.clone(),
        version: info.firmware.version.to_string(),
        length: info.length,
        sha256: info.sha256.clone(),
        hardware_id: HW.into(),
        download_url: "https://gateway.ward/ota/image".into(),
        targets_metadata: info.targets_metadata.to_string(),
    }
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn failure(e: &OtaError) -> RefreshFailure {
    e.refresh_failure()
        .unwrap_or_else(|| panic!("expected a refused refresh, got {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_gives_the_manufacturers_signed_metadata_that_devices_accept() {
    let img = image(64 * 1024, 1);
    let (mut server, target, role_bytes) = OtaServer::with_pump(&img).await;
    assert_eq!(target, TARGET);

    let gw = GatewaySide::new();
    let tuf = gw.tuf(&server.ota_config(&server.base_url())).await;
    let now = Utc::now();
    assert!(!tuf.is_fresh(now), "nothing verified yet");
    assert!(matches!(tuf.target(TARGET), Err(OtaError::NoMetadata)));

    let trusted = tuf.refresh().await.expect("refresh from the real server");
    assert!(tuf.is_fresh(Utc::now()));
    assert!(tuf.expires().unwrap() > Utc::now());
    assert_eq!(trusted.target_names(), vec![TARGET.to_owned()]);
    assert_eq!(gw.metrics.refresh_count("ok"), 1);

    let info = tuf.fresh_target(TARGET, Utc::now()).expect("signed target");
    assert_eq!(info.manufacturer, "acme");
    assert_eq!(info.length, img.len() as u64);
    assert_eq!(info.sha256, ota_support::sha256_hex(&img));
    assert_eq!(info.firmware.version.to_string(), "2.0.0");
    assert_eq!(info.firmware.hardware_ids, vec![HW.to_owned()]);
    assert!(info.url.as_str().starts_with(&server.base_url()));
    // Exactly the bytes the manufacturer signed and uploaded.
    assert_eq!(info.targets_metadata.as_bytes(), role_bytes.as_slice());

    // The device's own check accepts it with the manufacturer's key, and
    // only with that key.
    let installed: semver::Version = "1.5.0".parse().unwrap();
    let verified = wardgate_protocol::verify_offer(
        &offer(&info),
        &server.keys.acme.verifying_key(),
        HW,
        &installed,
        Utc::now(),
    )
    .expect("device accepts the offer");
    verified.check_image(&img).expect("image matches");
    let foreign = wardgate_protocol::verify_offer(
        &offer(&info),
        &server.keys.globex.verifying_key(),
        HW,
        &installed,
        Utc::now(),
    )
    .unwrap_err();
    assert!(foreign.to_string().contains("not signed"), "{foreign}");

    // Lookups that must not succeed.
    let e = tuf.target("globex/pump-2.0.0.bin").unwrap_err();
    assert!(e.to_string().contains("not listed"), "{e}");
    assert!(tuf.target("acme/../globex/x.bin").is_err());

    // The metadata directory holds the trusted files under unversioned
    // names, exactly as served.
    let dir = tuf.metadata_dir().to_owned();
    for f in [
        "root.json",
        "timestamp.json",
        "snapshot.json",
        "targets.json",
        "acme.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert_eq!(std::fs::read(dir.join("acme.json")).unwrap(), role_bytes);
    let versioned: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    assert!(
        versioned.is_empty(),
        "versioned files in the metadata dir: {versioned:?}"
    );

    // A new release is picked up by the next refresh and audited once.
    server
        .publish("acme", "pump-2.1.0.bin", "2.1.0", &image(1000, 2))
        .await;
    let again = tuf.refresh().await.unwrap();
    assert!(again.snapshot_version() > trusted.snapshot_version());
    assert!(tuf.target("acme/pump-2.1.0.bin").is_ok());
    let accepted = gw
        .audit
        .all()
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "ota.refresh" && r.outcome == "allowed")
        .count();
    assert_eq!(accepted, 2);
    assert!(gw.refusals().is_empty());
    let text = gw.registry.encode();
    assert!(
        text.contains("wardgate_ota_refresh_total{outcome=\"ok\"} 2"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_timestamp_is_refused_audited_and_stops_rollout_steps() {
    let mut server = OtaServer::started("3s", "1s").await;
    server.publish_pump(&image(4096, 3)).await;
    let gw = GatewaySide::new();
    let tuf = gw.tuf(&server.ota_config(&server.base_url())).await;
    let good = tuf.refresh().await.expect("fresh server");
    assert!(tuf.is_fresh(Utc::now()));

    // The server stops re-signing its timestamp (frozen); refreshes keep
    // succeeding until the served timestamp expires, then are refused.
    server.stop_timestamp_refresh();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let refused = loop {
        match tuf.refresh().await {
            Ok(_) => {}
            Err(e) => break e,
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timestamp never expired"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(failure(&refused), RefreshFailure::Expired, "{refused}");
    let message = refused.to_string();
    assert!(
        message.contains("timestamp") && message.contains("expired at"),
        "{message}"
    );

    // Refused, recorded, and no rollout step may start on what is kept.
    let now = Utc::now();
    assert!(!tuf.is_fresh(now));
    assert!(matches!(
        tuf.fresh_target(TARGET, now),
        Err(OtaError::NotFresh { .. })
    ));
    let kept = tuf.current().expect("last good state kept");
    assert_eq!(kept.snapshot_version(), good.snapshot_version());
    assert!(
        tuf.target(TARGET).is_ok(),
        "lookups on the kept state still work"
    );
    let rows = gw.refusals();
    let last = rows.last().expect("an ota.refresh refusal row");
    assert_eq!(last["reason"], "expired");
    assert_eq!(last["fresh"], false);
    assert!(gw.metrics.refresh_count("expired") >= 1);
    let status = tuf.status();
    assert_eq!(status.last_failure, Some(RefreshFailure::Expired));
    assert!(!status.fresh);
    // The operator is alerted once for the episode, however often the
    // refresh is refused again.
    assert!(tuf.refresh().await.is_err());
    let alerts: Vec<_> = gw
        .alert_store()
        .list(100, false)
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == gateway::anomaly::AlertKind::UpdateMetadataRefused)
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].evidence["reason"], "expired");
    assert_eq!(alerts[0].evidence["fresh"], false);
    assert!(alerts[0].device.is_none() && alerts[0].subject.starts_with("ota:"));
    server.stop().await;
}

// control: firmware-integrity
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_signed_by_a_key_that_is_not_delegated_is_refused() {
    let (mut server, _, _) = OtaServer::with_pump(&image(4096, 4)).await;
    let gw = GatewaySide::new();
    gw.tuf(&server.ota_config(&server.base_url()))
        .await
        .refresh()
        .await
        .unwrap();

    // A compromised server publishes an acme release signed by its own key.
    let evil = image(4096, 5);
    let rogue = tuf_repo::SigningKey::generate();
    let mirror_dir = server.dir.path().join("hostile");
    server
        .tampered_copy(&mirror_dir, "acme", &rogue, |signed| {
            signed["targets"]["acme/pump-9.9.9.bin"] = target_entry(&evil, "9.9.9");
        })
        .await;
    let mirror = StaticServer::start(&server.pki, &mirror_dir).await;

    // The gateway restarts pointed at it: last good state restored from disk.
    let tuf = gw.tuf(&server.ota_config(&mirror.base_url())).await;
    assert!(tuf.is_fresh(Utc::now()), "last good state restored");
    let e = tuf.refresh().await.unwrap_err();
    assert_eq!(failure(&e), RefreshFailure::BadSignature, "{e}");
    assert!(e.to_string().contains("acme.json"), "{e}");
    assert!(tuf.target("acme/pump-9.9.9.bin").is_err());
    assert!(
        tuf.target(TARGET).is_ok(),
        "the genuine release stays usable"
    );
    assert!(tuf.is_fresh(Utc::now()));
    let rows = gw.refusals();
    assert_eq!(rows.last().unwrap()["reason"], "bad_signature");
    assert_eq!(gw.metrics.refresh_count("bad_signature"), 1);

    // A gateway without history refuses it just the same.
    let fresh = GatewaySide::new();
    let other = fresh.tuf(&server.ota_config(&mirror.base_url())).await;
    assert_eq!(
        failure(&other.refresh().await.unwrap_err()),
        RefreshFailure::BadSignature
    );
    assert!(other.current().is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_outside_the_manufacturers_path_is_refused() {
    let (mut server, _, _) = OtaServer::with_pump(&image(4096, 6)).await;
    let gw = GatewaySide::new();
    let tuf = gw.tuf(&server.ota_config(&server.base_url())).await;
    tuf.refresh().await.unwrap();

    // acme (with its genuine key) signs a file in globex's path.
    let mirror_dir = server.dir.path().join("outside");
    let acme = server.keys.acme.clone();
    server
        .tampered_copy(&mirror_dir, "acme", &acme, |signed| {
            signed["targets"]["globex/monitor-5.0.0.bin"] = target_entry(b"not globex's", "5.0.0");
        })
        .await;
    let mirror = StaticServer::start(&server.pki, &mirror_dir).await;
    let tuf = gw.tuf(&server.ota_config(&mirror.base_url())).await;
    let e = tuf.refresh().await.unwrap_err();
    assert_eq!(failure(&e), RefreshFailure::OutsideDelegation, "{e}");
    assert!(tuf.target("globex/monitor-5.0.0.bin").is_err());
    assert!(tuf.target(TARGET).is_ok());
    assert_eq!(
        gw.refusals().last().unwrap()["reason"],
        "outside_delegation"
    );
    assert_eq!(gw.metrics.refresh_count("outside_delegation"), 1);
    server.stop().await;
}

// control: update-rollback
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_metadata_served_after_a_restart_is_refused() {
    let mut server = OtaServer::started("1day", "6h").await;
    let gw = GatewaySide::new();
    let config = server.ota_config(&server.base_url());
    {
        let tuf = gw.tuf(&config).await;
        tuf.refresh().await.unwrap();
    }
    // A copy of the repository as it is now (still valid for a day)...
    let old_dir = server.dir.path().join("old-copy");
    server.export(&old_dir);
    // ...then a release, which the gateway sees.
    server.publish_pump(&image(4096, 7)).await;
    let newest = {
        let tuf = gw.tuf(&config).await;
        tuf.refresh().await.unwrap().snapshot_version()
    };

    // After a restart, the old copy is served (a restored backup, a replay).
    let old = StaticServer::start(&server.pki, &old_dir).await;
    let tuf = gw.tuf(&server.ota_config(&old.base_url())).await;
    assert_eq!(tuf.current().unwrap().snapshot_version(), newest);
    let e = tuf.refresh().await.unwrap_err();
    assert_eq!(failure(&e), RefreshFailure::Rollback, "{e}");
    assert!(e.to_string().contains("older than version"), "{e}");
    assert_eq!(tuf.current().unwrap().snapshot_version(), newest);
    assert!(tuf.target(TARGET).is_ok(), "the newer release stays known");
    assert_eq!(gw.refusals().last().unwrap()["reason"], "rollback");
    assert_eq!(gw.metrics.refresh_count("rollback"), 1);

    // The refusal comes from the persisted state: a gateway that never saw
    // the newer metadata accepts the old copy.
    let fresh = GatewaySide::new();
    let other = fresh.tuf(&server.ota_config(&old.base_url())).await;
    assert!(other.refresh().await.is_ok());

    // And the real server still refreshes fine after the refusal.
    let tuf = gw.tuf(&config).await;
    assert_eq!(tuf.refresh().await.unwrap().snapshot_version(), newest);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_pinned_to_another_root_refuses_the_server() {
    let mut server = OtaServer::started("1day", "6h").await;
    let other_repo = server.dir.path().join("other-repo");
    ota_support::author_repo(&other_repo).await;
    let mut config = server.ota_config(&server.base_url());
    config.trusted_root = other_repo.join("metadata/1.root.json");
    let gw = GatewaySide::new();
    let tuf = gw.tuf(&config).await;
    let e = tuf.refresh().await.unwrap_err();
    assert_eq!(failure(&e), RefreshFailure::BadSignature, "{e}");
    assert!(tuf.current().is_none());
    assert_eq!(gw.refusals().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_loop_runs_at_start_on_demand_and_stops_on_shutdown() {
    let mut server = OtaServer::started("1day", "6h").await;
    let gw = GatewaySide::new();
    let mut config = server.ota_config(&server.base_url());
    config.refresh_interval = Duration::from_secs(3600);
    let tuf = std::sync::Arc::new(gw.tuf(&config).await);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(std::sync::Arc::clone(&tuf).run(shutdown.clone()));

    wait_until("first refresh at start", || {
        gw.metrics.refresh_count("ok") == 1
    })
    .await;
    assert!(tuf.is_fresh(Utc::now()));

    // A release appears; an on-demand refresh picks it up long before the
    // hourly tick.
    server.publish_pump(&image(2048, 8)).await;
    tuf.request_refresh();
    wait_until("refresh on demand", || tuf.target(TARGET).is_ok()).await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the loop stops on shutdown")
        .unwrap();
    server.stop().await;
}
