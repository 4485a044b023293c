//! RFC 6238 time-based one-time passwords (`totp-rs`) as the second factor
//! for mutating calls made with operator and admin tokens.
//!
//! Parameters are the ones every authenticator app understands: HMAC-SHA1,
//! six digits, 30-second steps. A code is accepted for the current step and
//! `skew` steps either side; [`matching_step`] returns the step it matched so
//! [`super::lockout`] can refuse a code whose step was already used.

use std::fmt;

use rand::RngCore;
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

/// Seconds per TOTP step.
pub const STEP_SECONDS: u64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Bytes of a freshly generated secret (160 bits, as RFC 4226 recommends).
pub const SECRET_BYTES: usize = 20;
/// Shortest secret accepted (128 bits, the RFC minimum).
pub const MIN_SECRET_BYTES: usize = 16;

/// A TOTP shared secret. Zeroed when dropped; never logged.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

/// Why a TOTP secret or code was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpFormatError {
    /// The stored secret is shorter than RFC 4226 allows.
    #[error("TOTP secret is {0} bytes, shorter than the 16-byte minimum; rebind the token with `gateway access token create --totp`")]
    SecretTooShort(usize),
    /// The code is not six ASCII digits.
    #[error("TOTP code must be exactly 6 digits")]
    MalformedCode,
}

impl TotpSecret {
    /// A new random secret from the operating system's generator.
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_BYTES]);
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Wrap stored secret bytes.
    ///
    /// # Errors
    /// [`TotpFormatError::SecretTooShort`] below 128 bits.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, TotpFormatError> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(TotpFormatError::SecretTooShort(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// The raw secret, for storage.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn totp(&self, account: &str) -> TOTP {
        // `new_unchecked`: the length is checked at construction above and
        // the account name is only used for the otpauth URL.
        TOTP::new_unchecked(
            Algorithm::SHA1,
            DIGITS,
            0,
            STEP_SECONDS,
            self.0.to_vec(),
            Some("Wardgate".to_owned()),
            account.replace(':', "_"),
        )
    }

    /// The secret in base32, as typed into an authenticator app.
    #[must_use]
    pub fn base32(&self) -> String {
        self.totp("").get_secret_base32()
    }

    /// An `otpauth://` URL for enrolling the secret in an authenticator app.
    #[must_use]
    pub fn otpauth_url(&self, account: &str) -> String {
        self.totp(account).get_url()
    }

    /// The code valid at `unix_seconds`.
    #[must_use]
    pub fn code_at(&self, unix_seconds: u64) -> String {
        self.totp("").generate(unix_seconds)
    }
}

/// A presented TOTP code: exactly six ASCII digits.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCode(String);

impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCode(..)")
    }
}

impl TotpCode {
    /// Parse a presented code.
    ///
    /// # Errors
    /// [`TotpFormatError::MalformedCode`] unless it is six ASCII digits.
    pub fn parse(s: &str) -> Result<Self, TotpFormatError> {
        if s.len() == DIGITS && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(TotpFormatError::MalformedCode)
        }
    }

    /// The digits.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The TOTP step `unix_seconds` falls in.
#[must_use]
pub fn step_of(unix_seconds: u64) -> u64 {
    unix_seconds / STEP_SECONDS
}

/// The step whose code equals `code`, looking at the step of `unix_seconds`
/// and `skew` steps either side (latest first). Constant-time per compare.
#[must_use]
pub fn matching_step(
    secret: &TotpSecret,
    code: &TotpCode,
    unix_seconds: u64,
    skew: u8,
) -> Option<u64> {
    use subtle::ConstantTimeEq;
    let totp = secret.totp("");
    let current = step_of(unix_seconds);
    let skew = u64::from(skew);
    let mut found = None;
    for step in (current.saturating_sub(skew)..=current.saturating_add(skew)).rev() {
        let expected = totp.generate(step * STEP_SECONDS);
        if bool::from(expected.as_bytes().ct_eq(code.as_str().as_bytes())) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA1 secret "12345678901234567890", 8 digits
    /// truncated to the 6 least significant digits.
    #[test]
    fn matches_rfc6238_vectors() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap();
        for (t, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            assert_eq!(secret.code_at(t), &eight[2..], "t={t}");
        }
    }

    #[test]
    fn accepts_within_skew_and_reports_step() {
        let secret = TotpSecret::generate();
        let now = 1_800_000_000;
        let code = TotpCode::parse(&secret.code_at(now - STEP_SECONDS)).unwrap();
        assert_eq!(
            matching_step(&secret, &code, now, 1),
            Some(step_of(now) - 1)
        );
        assert_eq!(
            matching_step(&secret, &code, now + 3 * STEP_SECONDS, 1),
            None
        );
        let other = TotpSecret::generate();
        let foreign = TotpCode::parse(&other.code_at(now)).unwrap();
        // A code from another secret matches only by a one-in-a-million chance.
        if foreign != TotpCode::parse(&secret.code_at(now)).unwrap() {
            assert_eq!(matching_step(&secret, &foreign, now, 0), None);
        }
    }

    #[test]
    fn refuses_malformed_codes_and_short_secrets() {
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert_eq!(
                TotpCode::parse(bad),
                Err(TotpFormatError::MalformedCode),
                "{bad}"
            );
        }
        assert!(matches!(
            TotpSecret::from_bytes(vec![0; 10]),
            Err(TotpFormatError::SecretTooShort(10))
        ));
    }

    #[test]
    fn otpauth_url_carries_secret_and_issuer() {
        let secret = TotpSecret::generate();
        let url = secret.otpauth_url("alice");
        assert!(url.starts_with("otpauth://totp/"));
        assert!(url.contains(&secret.base32()));
        assert!(url.contains("issuer=Wardgate"));
    }

    proptest::proptest! {
        #[test]
        fn code_parse_accepts_exactly_six_ascii_digits(s in ".{0,12}") {
            let ok = s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit());
            proptest::prop_assert_eq!(TotpCode::parse(&s).is_ok(), ok);
        }
    }
}
