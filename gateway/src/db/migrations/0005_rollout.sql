-- OTA rollout on the ward (owned by gateway/src/ota: agent, device_state,
-- offers, image_server).
--
-- The OTA server decides campaigns, waves, halts and windows; this gateway
-- keeps what it needs to execute them across restarts: the campaigns it was
-- last assigned, each device's update state in each campaign, the last
-- status every device published and the sequence number of the last offer
-- sent to it. Timestamps are Unix milliseconds (UTC).

-- Campaigns as the OTA server last assigned them to this gateway.
CREATE TABLE ota_campaigns (
    id           TEXT PRIMARY KEY NOT NULL,
    target_name  TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    length       INTEGER NOT NULL,
    -- Firmware version from the verified TUF target (custom.version).
    version      TEXT,
    wave         INTEGER NOT NULL,
    -- 'active' while the server hands the campaign out; 'inactive' once it
    -- stops doing so (paused, halted, completed or withdrawn).
    state        TEXT NOT NULL CHECK (state IN ('active', 'inactive')),
    -- Why installs wait (the server's maintenance window), if they do.
    deferred     TEXT,
    -- The last problem for an operator (unverifiable target, refused result).
    note         TEXT,
    first_seen   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- One row per device and campaign: the per-device update state machine of
-- gateway/src/ota/device_state.rs.
CREATE TABLE ota_device_updates (
    campaign_id  TEXT NOT NULL REFERENCES ota_campaigns(id),
    device_id    TEXT NOT NULL,
    wave         INTEGER NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'offered', 'downloading',
                 'installed', 'healthy', 'failed', 'rolled_back', 'deferred')),
    -- When the current state was entered, and the last sign of progress in
    -- it (an offer sent, a report, image bytes served): timeouts count
    -- from these.
    since        INTEGER NOT NULL,
    progress_at  INTEGER NOT NULL,
    -- Offers sent in the current attempt; 1 + operator retries.
    offers       INTEGER NOT NULL DEFAULT 0,
    attempts     INTEGER NOT NULL DEFAULT 1,
    detail       TEXT NOT NULL DEFAULT '',
    -- When the terminal outcome was accepted by the OTA server (NULL: not
    -- yet, or not terminal).
    reported_at  INTEGER,
    PRIMARY KEY (campaign_id, device_id)
);

CREATE INDEX ota_device_updates_by_device ON ota_device_updates (device_id, state);

-- The last status each device published (retained topic `status`).
CREATE TABLE ota_device_status (
    device_id         TEXT PRIMARY KEY NOT NULL,
    activity          TEXT NOT NULL,
    firmware_version  TEXT NOT NULL,
    seen_at           INTEGER NOT NULL
);

-- Gateway-side sequence number of the last offer sent to each device
-- (`OtaOffer.seq`), so it keeps rising across restarts.
CREATE TABLE ota_offer_seq (
    device_id  TEXT PRIMARY KEY NOT NULL,
    seq        INTEGER NOT NULL
);
