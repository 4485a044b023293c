//! Refusals that cost nothing: 5,000 bad TLS handshakes from one peer make
//! a bounded number of audit rows, the peer is throttled at accept, and a
//! bystander device on another address keeps streaming throughout.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::TestGateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// Bad handshakes the attacker makes.
const ATTEMPTS: usize = 5000;
/// Connections it keeps going at once.
const PARALLEL: usize = 8;

/// One connection from `from` that sends bytes that are not TLS and reads
/// until the gateway closes it.
async fn bad_handshake(from: SocketAddr, to: SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(from).unwrap();
    let Ok(mut stream) = socket.connect(to).await else {
        return;
    };
    let _ = stream
        .write_all(b"\x16\x03\x01\x00\x05hello, not tls")
        .await;
    let mut buf = [0u8; 256];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

// control: audit, resilience
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_bad_handshakes_from_one_peer_cost_a_few_rows_and_are_throttled() {
    let gw = TestGateway::start_with(|_| {}).await;
    let to: SocketAddr = format!("127.0.0.1:{}", gw.port()).parse().unwrap();
    // The attacker is another loopback address, so that throttling it
    // leaves the bystander (127.0.0.1) alone, as on a ward network.
    let from: SocketAddr = "127.0.0.2:0".parse().unwrap();

    let mut bystander = gw.device("bystander").await;
    let flood = tokio::spawn(async move {
        let started = Instant::now();
        let mut next = 0;
        let mut running = tokio::task::JoinSet::new();
        while next < ATTEMPTS || !running.is_empty() {
            while next < ATTEMPTS && running.len() < PARALLEL {
                running.spawn(bad_handshake(from, to));
                next += 1;
            }
            running.join_next().await;
        }
        started.elapsed()
    });

    // The bystander streams while the flood runs: every message is
    // acknowledged, each within a bound.
    let mut v = device_sim::VitalsGenerator::new(11);
    let mut sent = 0;
    let mut slowest = Duration::ZERO;
    while !flood.is_finished() || sent < 20 {
        let t = Instant::now();
        bystander
            .publish_telemetry(v.next_readings())
            .await
            .unwrap();
        bystander
            .wait_puback(Duration::from_secs(10))
            .await
            .expect("the bystander's message is acknowledged during the flood");
        slowest = slowest.max(t.elapsed());
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let flood_took = flood.await.unwrap();
    println!(
        "{ATTEMPTS} bad handshakes in {flood_took:?}; bystander: {sent} messages, slowest ack {slowest:?}"
    );

    let metrics = &gw.handle().context.metrics.edge;
    let refused = metrics.connection_count("tls_handshake");
    let throttled = metrics.connection_count("peer_throttled");
    assert_eq!(
        usize::try_from(refused + throttled).unwrap(),
        ATTEMPTS,
        "every attempt was refused or throttled"
    );
    // Throttled after edge.peer_refusals_before_throttle (100) refusals;
    // handshakes already accepted when the 100th failed may still finish.
    assert!(
        (100..100 + PARALLEL as u64).contains(&refused),
        "the peer was throttled once it had 100 refusals: {refused}"
    );
    // While the interval runs, only the first refusal of each reason has a
    // row: one here.
    let rows = gw
        .handle()
        .context
        .audit
        .all()
        .unwrap()
        .into_iter()
        .filter(|r| r.actor.starts_with("peer:127.0.0.2"))
        .count();
    assert_eq!(rows, 1, "one row for 5,000 refusals until the summary");
    // And the gateway still accepts a new device on the other address.
    gw.assert_others_work("newcomer").await;
}

// control: audit
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interval_ends_in_one_summary_row_per_peer() {
    let gw = TestGateway::start_with(|c| {
        c.edge.peer_refusal_interval = Duration::from_secs(1);
    })
    .await;
    let to: SocketAddr = format!("127.0.0.1:{}", gw.port()).parse().unwrap();
    let from: SocketAddr = "127.0.0.3:0".parse().unwrap();
    for _ in 0..30 {
        bad_handshake(from, to).await;
    }
    let audit = gw.handle().context.audit.clone();
    let summary = wardgate_tests::wait::wait_for(Duration::from_secs(15), || {
        audit
            .all()
            .unwrap()
            .into_iter()
            .find(|r| r.action == "edge.refused.summary" && r.subject == "127.0.0.3")
    })
    .await
    .expect("a summary row once the interval ends");
    let detail = summary.detail_json();
    assert!(
        detail["reasons"]["tls_handshake"].as_u64().unwrap() >= 1,
        "{detail}"
    );
    assert_eq!(summary.outcome, "refused");
    // None is lost: each refusal is in its interval's summary, or is the
    // single refusal of an interval, which has its own row and no summary.
    let tally = || {
        let rows = audit.all().unwrap();
        let of_peer = |action: &str| {
            rows.iter()
                .filter(|r| r.action == action && r.subject == "127.0.0.3")
                .cloned()
                .collect::<Vec<_>>()
        };
        let summed: u64 = of_peer("edge.refused.summary")
            .iter()
            .map(|r| r.detail_json()["refusals"].as_u64().unwrap())
            .sum();
        (summed, of_peer("edge.tls").len() as u64)
    };
    let accounted = wardgate_tests::wait::wait_for(Duration::from_secs(15), || {
        let (summed, firsts) = tally();
        summed + firsts >= 30
    })
    .await;
    let (summed, firsts) = tally();
    assert!(
        accounted,
        "30 refusals, {summed} summarised, {firsts} first rows"
    );
    assert!(
        summed <= 30,
        "no refusal counted twice in summaries: {summed}"
    );
}
