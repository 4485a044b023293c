//! `device-sim`'s load mode against a real gateway over mutual TLS: a
//! fleet streams for a fixed time and the report counts what the gateway
//! acknowledged, with PUBACK latency percentiles.

mod support;

use std::sync::Arc;
use std::time::Duration;

use device_sim::fleet::{self, FleetOptions};
use device_sim::load::LoadStats;
use support::TestGateway;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_streams_for_its_duration_and_reports_what_was_acknowledged() {
    let gw = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ["load-00", "load-01", "load-02"];
    for id in ids {
        let tls = gw.enroll(id);
        std::fs::write(dir.path().join("ca.pem"), &tls.ca_pem).unwrap();
        std::fs::write(dir.path().join(format!("{id}.pem")), &tls.cert_pem).unwrap();
        std::fs::write(dir.path().join(format!("{id}.key")), &tls.key_pem).unwrap();
    }
    let opts = FleetOptions {
        host: "localhost".into(),
        port: gw.port(),
        ca: dir.path().join("ca.pem"),
        cert_dir: dir.path().to_path_buf(),
        devices: ids.len(),
        first: 0,
        prefix: "load".into(),
        interval: Duration::from_millis(20),
        count: 0,
        duration: Some(Duration::from_secs(3)),
        ota: None,
    };
    let stats = Arc::new(LoadStats::default());
    let started = std::time::Instant::now();
    let failed = tokio::time::timeout(
        Duration::from_secs(30),
        fleet::run_measured(
            opts,
            CancellationToken::new(),
            |e| panic!("{e}"),
            stats.clone(),
        ),
    )
    .await
    .expect("the fleet stops at its duration");
    let report = stats.report(ids.len(), started.elapsed());
    assert_eq!(failed, 0);
    // 3 devices, one reading per 20 ms each, for 3 s: up to 450, and on a
    // loaded machine well over a third of that.
    assert!((150..=460).contains(&report.messages), "{report}");
    assert!(
        report.p50 > Duration::ZERO && report.p50 <= report.p99,
        "{report}"
    );
    assert!(report.p99 <= report.max, "{report}");
    // What the gateway forwarded agrees with what the fleet counted (its
    // counter may trail the last PUBACK by a moment).
    let accepted = || {
        gw.handle()
            .context
            .metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("wardgate_edge_messages_total{kind=\"telemetry\"}"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    let agreed =
        wardgate_tests::wait::wait_for(Duration::from_secs(5), || accepted() == report.messages)
            .await;
    assert!(agreed, "gateway counted {}, fleet {report}", accepted());
    println!("{report}");
}
