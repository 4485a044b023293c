-- Admin access tokens (owned by admin).
--
-- A bearer token is shown once at creation; only its SHA-256 is kept.
-- `id` is the public part of the token (it appears inside the token string
-- and in audit rows), so a lookup never needs the secret. Timestamps are
-- Unix seconds (UTC).
CREATE TABLE admin_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    kind          TEXT NOT NULL DEFAULT 'standard' CHECK (kind IN ('standard', 'break_glass')),
    token_hash    BLOB NOT NULL CHECK (length(token_hash) = 32),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    last_used_at  INTEGER,
    revoked_at    INTEGER,
    -- RFC 6238 shared secret when the token is bound to TOTP, sealed with
    -- ChaCha20-Poly1305 under a key kept outside the database (admin/vault.rs).
    totp_secret   BLOB,
    -- Highest TOTP time step already accepted: a code is never accepted twice.
    totp_last_step INTEGER,
    -- Wrong TOTP codes in a row, and the lockout they triggered (Unix s):
    -- guessing six digits online is bounded by the lockout, not by luck.
    totp_failures  INTEGER NOT NULL DEFAULT 0,
    totp_locked_until INTEGER
);

CREATE INDEX admin_tokens_by_name ON admin_tokens (name);
