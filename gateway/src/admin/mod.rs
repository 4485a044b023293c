//! The admin HTTPS API: registry, audit and status for people, with bearer
//! tokens stored as hashes, least-privilege roles, TOTP for mutating calls and
//! a loudly audited break-glass token.
