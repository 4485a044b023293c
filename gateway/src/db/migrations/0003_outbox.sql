-- Durable telemetry outbox (owned by uplink).
--
-- One row per accepted telemetry message, committed before the device's
-- PUBACK leaves the gateway and deleted only after the upstream broker's
-- PUBACK. The payload is sealed with ChaCha20-Poly1305 under a key kept
-- outside this database (see gateway/src/uplink/seal.rs); the row id and the
-- device id are its associated data, so a row cannot be moved to another id
-- or device. Nothing in clear here is a vital sign: device id, sequence
-- number, topic, times and sizes only.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id    TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    topic        TEXT    NOT NULL,
    received_ms  INTEGER NOT NULL,   -- gateway receive time, Unix milliseconds
    critical     INTEGER NOT NULL DEFAULT 0 CHECK (critical IN (0, 1)),
    nonce        BLOB    NOT NULL CHECK (length(nonce) = 12),
    sealed       BLOB    NOT NULL    -- ciphertext || 16-byte tag
);

-- drop_oldest looks for the oldest non-critical rows.
CREATE INDEX outbox_noncritical ON outbox (critical, id);
