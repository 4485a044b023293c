-- Replay state of each device (owned by the edge; written by the outbox
-- thread in the same transaction as the message it describes).
--
-- `devices.last_seq` holds the highest stored `seq`; this table holds the
-- payload digests (SHA-256, first 16 bytes) of the device's most recent
-- stored messages (at most edge::replay::REPLAY_WINDOW rows per device), so
-- that a QoS 1 resend of a message that was stored but whose PUBACK was lost
-- (also across a gateway crash) is acknowledged again instead of being
-- refused as a replay. No payload is kept here.
CREATE TABLE device_seq_recent (
    device_id TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    digest    BLOB    NOT NULL CHECK (length(digest) = 16),
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
