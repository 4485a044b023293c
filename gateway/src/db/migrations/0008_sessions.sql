-- Persistent MQTT sessions of devices (owned by the edge).
--
-- The embedded broker keeps sessions in memory only, so after a gateway
-- crash it answers every CONNECT with "no session present", and a client
-- that asked for a persistent session must then, by the MQTT standard
-- (3.1.1 section 3.2.2.2, 5.0 section 3.2.2.1.1), discard the messages it
-- still holds unacknowledged: the readings lost with the crash. The edge
-- therefore remembers which devices hold a persistent session and their
-- subscriptions, restores the subscriptions at the broker on reconnect and
-- reports the session as present (edge::persistent_session).
CREATE TABLE device_sessions (
    device_id  TEXT NOT NULL PRIMARY KEY,
    started_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE device_session_subscriptions (
    device_id TEXT    NOT NULL REFERENCES device_sessions (device_id) ON DELETE CASCADE,
    filter    TEXT    NOT NULL,
    qos       INTEGER NOT NULL CHECK (qos IN (0, 1, 2)),
    PRIMARY KEY (device_id, filter)
) WITHOUT ROWID;
