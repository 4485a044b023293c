//! Schema of the OTA server database and its forward migrations.
//!
//! The schema version lives in `PRAGMA user_version`. Each entry of
//! [`MIGRATIONS`] moves the schema from version `i` to `i + 1` inside one
//! transaction; a database newer than this binary is refused.

use rusqlite::Connection;

/// Forward migrations; index `i` upgrades from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: releases, audit log, campaigns, gateway inventory, assignments, results.
    r"
    CREATE TABLE releases (
        target          TEXT PRIMARY KEY,
        manufacturer    TEXT NOT NULL,
        length          INTEGER NOT NULL,
        sha256          TEXT NOT NULL,
        role_version    INTEGER NOT NULL,
        snapshot_version INTEGER NOT NULL,
        published_at    TEXT NOT NULL
    );
    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      TEXT NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        outcome TEXT NOT NULL,
        code    TEXT,
        detail  TEXT NOT NULL
    );
    CREATE TABLE campaigns (
        id                 TEXT PRIMARY KEY,
        name               TEXT NOT NULL,
        target             TEXT NOT NULL REFERENCES releases(target),
        waves              TEXT NOT NULL,
        failure_threshold_percent REAL NOT NULL,
        window             TEXT,
        state              TEXT NOT NULL,
        current_wave       INTEGER NOT NULL,
        halt_reason        TEXT,
        created_at         TEXT NOT NULL,
        updated_at         TEXT NOT NULL
    );
    CREATE TABLE campaign_gateways (
        campaign_id TEXT NOT NULL REFERENCES campaigns(id),
        gateway_id  TEXT NOT NULL,
        PRIMARY KEY (campaign_id, gateway_id)
    );
    CREATE TABLE inventory (
        gateway_id TEXT NOT NULL,
        device_id  TEXT NOT NULL,
        seen_at    TEXT NOT NULL,
        PRIMARY KEY (gateway_id, device_id)
    );
    CREATE TABLE assignments (
        campaign_id TEXT NOT NULL REFERENCES campaigns(id),
        gateway_id  TEXT NOT NULL,
        device_id   TEXT NOT NULL,
        wave        INTEGER NOT NULL,
        outcome     TEXT,
        detail      TEXT,
        reported_at TEXT,
        PRIMARY KEY (campaign_id, gateway_id, device_id)
    );
    ",
    // 2: campaigns scoped to the hardware their release is built for; the
    // hardware id and firmware each gateway reports per device.
    r"
    ALTER TABLE campaigns ADD COLUMN hardware_ids TEXT;
    ALTER TABLE inventory ADD COLUMN hardware_id TEXT;
    ALTER TABLE inventory ADD COLUMN firmware_version TEXT;
    ",
];

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The database was written by a newer server.
    #[error("database schema version {found} is newer than this ota-server supports ({supported}); run the newer binary or restore a backup")]
    TooNew {
        /// Version in the file.
        found: i64,
        /// Highest version this binary knows.
        supported: i64,
    },
    /// SQLite failed.
    #[error("migration to schema version {to} failed: {source}")]
    Sql {
        /// The version being created.
        to: i64,
        /// SQLite's error.
        source: rusqlite::Error,
    },
}

/// Brings `conn` to the latest schema version.
///
/// # Errors
/// [`MigrationError`] when the file is newer than this binary or a step fails.
pub fn migrate(conn: &mut Connection) -> Result<(), MigrationError> {
    let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|source| MigrationError::Sql { to: 0, source })?;
    if found > supported {
        return Err(MigrationError::TooNew { found, supported });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let to = i64::try_from(i + 1).unwrap_or(i64::MAX);
        let tx = conn
            .transaction()
            .map_err(|source| MigrationError::Sql { to, source })?;
        tx.execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "user_version", to))
            .and_then(|()| tx.commit())
            .map_err(|source| MigrationError::Sql { to, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, i64::try_from(MIGRATIONS.len()).unwrap());
        c.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            migrate(&mut c),
            Err(MigrationError::TooNew { found: 99, .. })
        ));
    }
}
