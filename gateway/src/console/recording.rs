//! [`RecordingSink`]: the one place the console's live view is fed from
//! the edge. It wraps the gateway's telemetry sink (the uplink's outbox,
//! or none when the uplink is off): every accepted message is first handed
//! to the inner sink, and only once that sink has taken it (so a refused
//! message is never charted as delivered) its readings are kept in
//! [`RecentActivity`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use wardgate_protocol::DeviceId;

use super::recent::RecentActivity;
use crate::sink::{
    AcceptFuture, AcceptedTelemetry, StoreRequest, StoredFuture, SubmitFuture, TelemetrySink,
};

/// A telemetry sink that records accepted readings for the console.
pub struct RecordingSink {
    recent: RecentActivity,
    inner: Option<Arc<dyn TelemetrySink>>,
}

impl RecordingSink {
    /// Record into `recent`, after committing to `inner` when there is one.
    #[must_use]
    pub fn over(
        recent: RecentActivity,
        inner: Option<Arc<dyn TelemetrySink>>,
    ) -> Arc<dyn TelemetrySink> {
        Arc::new(Self { recent, inner })
    }
}

impl TelemetrySink for RecordingSink {
    fn accept(&self, message: AcceptedTelemetry) -> AcceptFuture<'_> {
        Box::pin(async move {
            let (device, payload, at) = (
                message.device_id.clone(),
                message.payload.clone(),
                message.received_at,
            );
            if let Some(inner) = &self.inner {
                inner.accept(message).await?;
            }
            self.recent.record(&device, &payload, at);
            Ok(())
        })
    }

    // The edge stores through `store`/`submit` (replay state in the same
    // transaction, pipelined commits): pass those through to the inner sink
    // unchanged, recording only once the commit succeeded.
    fn store(&self, request: StoreRequest) -> AcceptFuture<'_> {
        Box::pin(async move {
            let seen = reading_of(&request);
            if let Some(inner) = &self.inner {
                inner.store(request).await?;
            }
            if let Some((device, payload, at)) = seen {
                self.recent.record(&device, &payload, at);
            }
            Ok(())
        })
    }

    #[allow(clippy::async_yields_async)] // the commit in progress is the result, awaited later
    fn submit(&self, request: StoreRequest) -> SubmitFuture<'_> {
        Box::pin(async move {
            let seen = reading_of(&request);
            let commit: StoredFuture = match &self.inner {
                Some(inner) => inner.submit(request).await,
                None => Box::pin(std::future::ready(Ok(()))),
            };
            let recent = self.recent.clone();
            Box::pin(async move {
                commit.await?;
                if let Some((device, payload, at)) = seen {
                    recent.record(&device, &payload, at);
                }
                Ok(())
            }) as StoredFuture
        })
    }
}

/// What [`RecentActivity::record`] needs of a store request's telemetry
/// (none for status and OTA reports), taken before the request moves on.
fn reading_of(request: &StoreRequest) -> Option<(DeviceId, bytes::Bytes, DateTime<Utc>)> {
    request
        .telemetry
        .as_ref()
        .map(|t| (t.device_id.clone(), t.payload.clone(), t.received_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::SinkError;
    use bytes::Bytes;
    use chrono::Utc;
    use wardgate_protocol::DeviceId;

    struct Refusing;

    impl TelemetrySink for Refusing {
        fn accept(&self, _: AcceptedTelemetry) -> AcceptFuture<'_> {
            Box::pin(async {
                Err(SinkError::Full {
                    detail: "test".into(),
                })
            })
        }
    }

    fn message() -> AcceptedTelemetry {
        AcceptedTelemetry {
            device_id: DeviceId::parse("mon-01").unwrap(),
            seq: 1,
            topic: "wardgate/v1/devices/mon-01/telemetry".into(),
            payload: Bytes::from_static(
                br#"{"schema":1,"seq":1,"ts":"2026-12-01T10:00:00Z","readings":[{"kind":"spo2","value":97}]}"#,
            ),
            received_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn without_an_inner_sink_readings_are_recorded() {
        let recent = RecentActivity::new();
        let sink = RecordingSink::over(recent.clone(), None);
        sink.accept(message()).await.unwrap();
        assert_eq!(
            recent.snapshot(10).values().next().unwrap().samples.len(),
            1
        );
    }

    #[tokio::test]
    async fn a_refused_message_is_not_recorded_and_the_refusal_passes_through() {
        let recent = RecentActivity::new();
        let sink = RecordingSink::over(recent.clone(), Some(Arc::new(Refusing)));
        assert!(matches!(
            sink.accept(message()).await,
            Err(SinkError::Full { .. })
        ));
        assert!(recent.snapshot(10).is_empty());
    }
}
