//! Following the ward as its operator would, through the gateway's admin
//! API, the OTA server's campaign and the hospital broker: what changed is
//! printed in words, and the summary's figures are read from those same
//! parts at the end, never assumed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ward::{Ward, ATTACKER, NEW_VERSION, OLD_VERSION, PUMPS};

/// What the demo saw happen while it followed the ward.
#[derive(Debug, Default)]
pub struct Story {
    /// Seconds from the campaign's start until the rollout ended.
    pub rollout_s: Option<f64>,
    /// Seconds until the attacker was quarantined.
    pub caught_s: Option<f64>,
    /// Whether the story ended before the time limit.
    pub finished: bool,
}

/// The campaign's entry in `GET /api/v1/ota/status`.
async fn campaign(ward: &Ward) -> Option<Value> {
    let status = ward.admin_get("/api/v1/ota/status").await.ok()?;
    status["campaigns"]
        .as_array()?
        .iter()
        .find(|c| c["campaign_id"] == ward.campaign.as_str())
        .cloned()
}

fn device_states(c: &Value) -> BTreeMap<String, (String, u64)> {
    c["devices"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .filter_map(|d| {
                    Some((
                        d["device_id"].as_str()?.to_owned(),
                        (
                            d["state"].as_str().unwrap_or("?").to_owned(),
                            d["wave"].as_u64().unwrap_or(0),
                        ),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn device_state(ward: &Ward, id: &str) -> Option<String> {
    let d = ward
        .admin_get(&format!("/api/v1/devices/{id}"))
        .await
        .ok()?;
    d["state"].as_str().map(str::to_owned)
}

/// Prints what happens until the rollout is over and the attacker is
/// quarantined, or `limit` passes.
pub async fn follow(ward: &mut Ward, limit: Duration) -> Story {
    println!("\n== 6. the ward at work (the console shows the same, live)");
    let started = Instant::now();
    let mut story = Story::default();
    let mut last_line = String::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut alerts_seen: BTreeSet<i64> = BTreeSet::new();
    let mut last_upstream = Instant::now();
    let mut rollout_done = false;
    while started.elapsed() < limit {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = started.elapsed().as_secs_f64();
        if let Some(c) = campaign(ward).await {
            let states = device_states(&c);
            for (id, (state, wave)) in &states {
                if seen.get(id) == Some(state) {
                    continue;
                }
                let before = seen.insert(id.clone(), state.clone());
                match state.as_str() {
                    "deferred" => println!(
                        "   [{t:5.1}s] {id} (wave {}) is giving therapy: deferred, not interrupted; offered again once it reports idle",
                        wave + 1
                    ),
                    "rolled_back" => println!(
                        "   [{t:5.1}s] {id} (wave {}): {NEW_VERSION} failed its self-test; the pump switched back to {OLD_VERSION} on its own and reported it",
                        wave + 1
                    ),
                    "healthy" if before.as_deref() == Some("deferred") || *id == ward.therapy_pump => println!(
                        "   [{t:5.1}s] {id} finished its therapy and now runs {NEW_VERSION}"
                    ),
                    _ => {}
                }
            }
            let mut per_state: BTreeMap<&str, usize> = BTreeMap::new();
            let mut wave = 0;
            for (state, w) in states.values() {
                *per_state.entry(state.as_str()).or_default() += 1;
                wave = wave.max(*w);
            }
            let line = format!(
                "rollout: wave {} of 3, {} of {PUMPS} assigned: {}",
                wave + 1,
                states.len(),
                per_state
                    .iter()
                    .map(|(s, n)| format!("{n} {}", s.replace('_', " ")))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if line != last_line {
                println!("   [{t:5.1}s] {line}");
                last_line = line;
            }
            let terminal = states
                .values()
                .filter(|(s, _)| matches!(s.as_str(), "healthy" | "failed" | "rolled_back"))
                .count();
            if !rollout_done && states.len() == PUMPS && terminal == PUMPS {
                rollout_done = true;
                story.rollout_s = Some(t);
                println!("   [{t:5.1}s] rollout over: every pump has its result");
            }
        }
        if let Ok(a) = ward.admin_get("/api/v1/alerts?limit=50").await {
            for alert in a["alerts"].as_array().into_iter().flatten() {
                let Some(id) = alert["id"].as_i64() else {
                    continue;
                };
                if alerts_seen.insert(id) {
                    println!(
                        "   [{t:5.1}s] ALERT {} on {}: {}",
                        alert["kind"].as_str().unwrap_or("?"),
                        alert["subject"].as_str().unwrap_or("?"),
                        if alert["quarantined"] == true {
                            "the device is quarantined: cut off, its certificate refused until an operator releases it"
                        } else {
                            "recorded for the operator"
                        }
                    );
                }
            }
        }
        if story.caught_s.is_none()
            && device_state(ward, ATTACKER).await.as_deref() == Some("quarantined")
        {
            story.caught_s = Some(t);
        }
        if let Some((_, sub)) = &ward.upstream {
            if last_upstream.elapsed() >= Duration::from_secs(10) {
                last_upstream = Instant::now();
                println!(
                    "   [{t:5.1}s] hospital broker: {} readings received",
                    sub.snapshot().count("/telemetry")
                );
            }
        }
        if rollout_done && story.caught_s.is_some() {
            story.finished = true;
            break;
        }
    }
    if !story.finished {
        println!("   the story did not end within {limit:?}");
    }
    story
}

/// The figures at the end, each read from the part that knows it.
#[derive(Debug)]
pub struct Summary {
    /// Readings the hospital broker received (`None`: no broker).
    pub upstream: Option<usize>,
    /// Pumps on the new version, healthy.
    pub updated: usize,
    /// Pumps that rolled back.
    pub rollbacks: usize,
    /// Pumps deferred for therapy at least once (audit rows `ota.defer`).
    pub deferred: usize,
    /// Alerts raised.
    pub alerts: usize,
    /// Devices quarantined.
    pub quarantined: Vec<String>,
    /// `gateway audit verify` said the chain is intact, and its words.
    pub audit: (bool, String),
    /// What the demo saw.
    pub rollout_s: Option<f64>,
    pub caught_s: Option<f64>,
    pub finished: bool,
}

impl Summary {
    /// Whether every part of the story happened.
    pub fn complete(&self) -> bool {
        self.finished
            && self.updated == PUMPS - 1
            && self.rollbacks == 1
            && self.deferred >= 1
            && self.quarantined == [ATTACKER.to_owned()]
            && self.audit.0
            && self.upstream.is_none_or(|n| n > 0)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\n== summary")?;
        match self.upstream {
            Some(n) => writeln!(f, "   messages delivered upstream: {n}")?,
            None => writeln!(
                f,
                "   messages delivered upstream: none (no hospital broker)"
            )?,
        }
        writeln!(
            f,
            "   devices updated: {} of {PUMPS} to {NEW_VERSION}",
            self.updated
        )?;
        writeln!(f, "   rollbacks: {}", self.rollbacks)?;
        writeln!(f, "   deferrals for therapy: {}", self.deferred)?;
        writeln!(f, "   alerts: {}", self.alerts)?;
        writeln!(
            f,
            "   quarantined: {}",
            if self.quarantined.is_empty() {
                "none".to_owned()
            } else {
                self.quarantined.join(", ")
            }
        )?;
        if let Some(s) = self.rollout_s {
            writeln!(f, "   rollout time: {s:.0} s")?;
        }
        if let Some(s) = self.caught_s {
            writeln!(f, "   attacker quarantined after: {s:.0} s")?;
        }
        writeln!(
            f,
            "   audit chain verified: {} ({})",
            if self.audit.0 { "yes" } else { "NO" },
            self.audit.1
        )
    }
}

pub async fn summarise(ward: &Ward, story: &Story) -> Result<Summary, String> {
    let c = campaign(ward)
        .await
        .ok_or("the gateway reports no campaign")?;
    let devices = c["devices"].as_array().cloned().unwrap_or_default();
    let updated = devices
        .iter()
        .filter(|d| d["state"] == "healthy" && d["firmware_version"] == NEW_VERSION)
        .count();
    let rollbacks = devices
        .iter()
        .filter(|d| d["state"] == "rolled_back")
        .count();
    let export = ward.gateway_cli(&["audit", "export"])?;
    let deferred: BTreeSet<String> = export
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["action"] == "ota.defer")
        .filter_map(|r| r["subject"].as_str().map(str::to_owned))
        .collect();
    let alerts = ward.admin_get("/api/v1/alerts?limit=500").await?["alerts"]
        .as_array()
        .map_or(0, Vec::len);
    let quarantined = ward
        .admin_get("/api/v1/devices")
        .await?
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["state"] == "quarantined")
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect();
    let audit = match ward.gateway_cli(&["audit", "verify"]) {
        Ok(out) => (true, out.lines().last().unwrap_or("").trim().to_owned()),
        Err(e) => (false, e),
    };
    Ok(Summary {
        upstream: ward
            .upstream
            .as_ref()
            .map(|(_, s)| s.snapshot().count("/telemetry")),
        updated,
        rollbacks,
        deferred: deferred.len(),
        alerts,
        quarantined,
        audit,
        rollout_s: story.rollout_s,
        caught_s: story.caught_s,
        finished: story.finished,
    })
}
