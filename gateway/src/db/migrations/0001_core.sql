-- Device registry and hash-chained audit log (owned by the edge core).
--
-- Timestamps are Unix milliseconds (UTC).

CREATE TABLE devices (
    id                  TEXT PRIMARY KEY NOT NULL,
    model               TEXT NOT NULL,
    hardware_id         TEXT NOT NULL,
    manufacturer        TEXT NOT NULL,
    firmware_version    TEXT NOT NULL,
    -- SHA-256 of the DER client certificate, lowercase hex; NULL = any
    -- certificate the device CA issued for this id.
    cert_fingerprint    TEXT,
    state               TEXT NOT NULL CHECK (state IN ('active', 'quarantined', 'revoked')),
    enrolled_at         INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    last_seen           INTEGER,
    -- Highest message `seq` accepted from the device, saved when a session
    -- ends so a replay is refused across gateway restarts too.
    last_seq            INTEGER
);

-- Append-only: every row holds the SHA-256 of the previous row's canonical
-- content (`prev_hash`) and of its own (`hash`); see gateway/src/audit.rs.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    ts          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
