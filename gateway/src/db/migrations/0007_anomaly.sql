-- Anomaly alerts (owned by gateway/src/anomaly).
--
-- One row per alert the detector raised: security and data-integrity
-- events about devices and connections, never clinical alarms. Every row
-- also has an `anomaly.alert` audit row written in the same transaction;
-- acknowledgement and release are audited too. `evidence` is JSON with
-- counts, rates and sizes (never payload bytes). Timestamps are Unix
-- milliseconds (UTC).
CREATE TABLE anomaly_alerts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    ts               INTEGER NOT NULL,
    device_id        TEXT,
    subject          TEXT NOT NULL,
    kind             TEXT NOT NULL,
    score            REAL NOT NULL,
    evidence         TEXT NOT NULL,
    response         TEXT NOT NULL CHECK (response IN ('alert', 'quarantine')),
    quarantined      INTEGER NOT NULL DEFAULT 0 CHECK (quarantined IN (0, 1)),
    acknowledged_at  INTEGER,
    acknowledged_by  TEXT,
    released_at      INTEGER,
    released_by      TEXT,
    -- When the upstream broker acknowledged the alert on the alert topic.
    published_at     INTEGER
);

CREATE INDEX anomaly_alerts_unpublished ON anomaly_alerts (published_at, id);
CREATE INDEX anomaly_alerts_by_device ON anomaly_alerts (device_id, id);
