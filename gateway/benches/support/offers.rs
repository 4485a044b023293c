//! A ward whose devices hold open offers of one image, so the image server
//! serves them as it would in a rollout: a campaign with one `100%` wave,
//! each device connected over the edge, idle, offered. The devices then
//! download by hand (the benchmark's client), and their MQTT sessions are
//! kept alive meanwhile.

use std::time::Duration;

use device_sim::{DeviceEvent, DeviceTls, SimDevice};
use tokio_util::sync::CancellationToken;
use wardgate_protocol::{DeviceActivity, OtaOffer};

use crate::ota_rollout_support::Ward;

/// Connect `id`, say it is idle and wait for its offer.
pub async fn offered(w: &Ward, id: &str, tls: &DeviceTls) -> anyhow::Result<(SimDevice, OtaOffer)> {
    let mut d = SimDevice::connect(&w.device_options(id, tls.clone())).await?;
    d.subscribe(&format!("wardgate/v1/devices/{id}/ota/offer"))
        .await?;
    while d.next_event(Duration::from_secs(10)).await? != DeviceEvent::SubAck {}
    d.publish_status(DeviceActivity::Idle, "1.0.0").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        anyhow::ensure!(!left.is_zero(), "{id} was not offered the image in time");
        if let DeviceEvent::Message { topic, payload } = d.next_event(left).await? {
            if topic.ends_with("/ota/offer") {
                return Ok((d, OtaOffer::from_json(&payload)?));
            }
        }
    }
}

/// Devices `<prefix>-NNN` enrolled, offered the ward's image (one `100%`
/// wave) and kept connected until `stop`; their TLS material and the
/// offer's download URL.
pub async fn offered_devices(
    w: &Ward,
    prefix: &str,
    n: usize,
    stop: &CancellationToken,
) -> anyhow::Result<(Vec<DeviceTls>, String)> {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:03}")).collect();
    let tls: Vec<DeviceTls> = ids.iter().map(|id| w.enroll(id)).collect();
    w.campaign(&["100%"], 100.0).await;
    let mut url = None;
    for (id, t) in ids.iter().zip(&tls) {
        let (mut d, offer) = offered(w, id, t).await?;
        url = Some(offer.download_url);
        let stop = stop.clone();
        // Keep the session polled (keep-alive) until the benchmark ends.
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    e = d.next_event(Duration::from_secs(3600)) => if e.is_err() { break },
                }
            }
        });
    }
    Ok((tls, url.unwrap_or_default()))
}
