//! rustls and webpki errors in an operator's words.
//!
//! rustls reports an X.509 v1 device certificate as `invalid peer
//! certificate: Other(OtherError(UnsupportedCertVersion))`; the engineer on
//! the ward needs "the client certificate of the device is X.509 version 1;
//! Wardgate needs version 3 certificates (issue one with `gateway pki
//! device`)". [`tls_error`] turns each refusal into such a sentence, worded
//! for the side that saw it and naming the configuration field at fault: a
//! peer certificate from an unknown CA points at the trust-anchor field
//! (`uplink.ca_file`), a peer refusing *our* certificate points at our own
//! certificate's field (`uplink.cert_file`). The rustls text follows in
//! brackets so that the exact cause can still be searched for.
//!
//! Errors arrive wrapped (`std::io::Error` from `tokio-rustls`, `rumqttc`'s
//! connection error, `reqwest`'s error): [`find_tls_error`] digs the rustls
//! error out of any such chain, and [`error_chain`] describes whatever it
//! finds.

use std::error::Error as StdError;
use std::fmt::Write as _;

use rustls::{AlertDescription, CertificateError};

/// Which end of the handshake this endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// We are the server: the certificate refused is a client's.
    Server,
    /// We are the client: the certificate refused is the server's.
    Client,
}

/// What a description needs to know about the connection.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Which end we are.
    pub side: Side,
    /// The peer in words: `device`, `upstream broker`, `OTA server`.
    pub peer: &'a str,
    /// The field holding the CA that verifies the peer (`edge.ca_cert`).
    pub trust_field: &'a str,
    /// The field holding our own certificate, if we present one
    /// (`edge.server_cert`, `uplink.cert_file`).
    pub own_cert_field: Option<&'a str>,
    /// How the peer gets a good certificate, e.g. "issue one with
    /// `gateway pki device`".
    pub reissue: &'a str,
}

impl Context<'_> {
    fn subject(&self) -> String {
        match self.side {
            Side::Server => format!("the client certificate of the {}", self.peer),
            Side::Client => format!("the certificate of the {}", self.peer),
        }
    }

    fn own(&self) -> String {
        self.own_cert_field.map_or_else(
            || "this side's certificate".to_owned(),
            |f| format!("the certificate in {f}"),
        )
    }
}

/// The first rustls error in `err`'s chain, looking inside `std::io::Error`s
/// (whose `source()` skips the error they wrap).
#[must_use]
pub fn find_tls_error<'e>(err: &'e (dyn StdError + 'static)) -> Option<&'e rustls::Error> {
    let mut next: Option<&'e (dyn StdError + 'static)> = Some(err);
    // Bounded: error chains are short, and a cycle must not hang us.
    for _ in 0..32 {
        let current = next?;
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                let inner: &(dyn StdError + 'static) = inner;
                if let Some(found) = find_tls_error(inner) {
                    return Some(found);
                }
            }
        }
        next = current.source();
    }
    None
}

/// Describe any error of a TLS connection: the rustls error in its chain in
/// words (see [`tls_error`]), else the chain's own texts joined by `: `.
#[must_use]
pub fn error_chain(err: &(dyn StdError + 'static), cx: &Context<'_>) -> String {
    if let Some(tls) = find_tls_error(err) {
        return tls_error(tls, cx);
    }
    let mut text = err.to_string();
    let mut source = err.source();
    for _ in 0..8 {
        let Some(s) = source else { break };
        let more = s.to_string();
        if !text.contains(&more) {
            let _ = write!(text, ": {more}");
        }
        source = s.source();
    }
    text
}

/// Describe a failed handshake reported as an I/O error (`tokio-rustls`'
/// accept and connect): the rustls refusal in words, or what happened to
/// the connection.
#[must_use]
pub fn handshake_error(err: &std::io::Error, cx: &Context<'_>) -> String {
    if let Some(tls) = find_tls_error(err) {
        return tls_error(tls, cx);
    }
    match err.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::BrokenPipe => format!(
            "the {} closed the connection during the TLS handshake ({err}); it may not trust {} or may not speak TLS",
            cx.peer,
            cx.own()
        ),
        _ => format!("the TLS handshake with the {} failed: {err}", cx.peer),
    }
}

/// A short phrase for a certificate refusal without connection context
/// (used for this side's own certificate when it is loaded).
#[must_use]
pub fn certificate_words(err: &rustls::Error) -> String {
    if let rustls::Error::InvalidCertificate(CertificateError::Other(other)) = err {
        if let Some(w) = other.0.downcast_ref::<webpki::Error>() {
            if matches!(w, webpki::Error::UnsupportedCertVersion) {
                return "it is an X.509 version 1 certificate; Wardgate needs version 3".into();
            }
        }
    }
    if let rustls::Error::InvalidCertificate(CertificateError::BadEncoding) = err {
        return "it is not a valid DER X.509 certificate".into();
    }
    err.to_string()
}

/// Describe one rustls error for the connection `cx`.
#[must_use]
pub fn tls_error(err: &rustls::Error, cx: &Context<'_>) -> String {
    let words = match err {
        rustls::Error::InvalidCertificate(cert) => certificate_error(cert, cx),
        rustls::Error::NoCertificatesPresented => match cx.side {
            Side::Server => format!(
                "the {} presented no client certificate; it needs one from the CA in {} ({})",
                cx.peer, cx.trust_field, cx.reissue
            ),
            Side::Client => format!("the {} presented no certificate", cx.peer),
        },
        rustls::Error::AlertReceived(alert) => alert_words(*alert, cx),
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => format!(
            "the {} does not speak TLS as expected (plain MQTT or HTTP on a TLS port, or a broken client)",
            cx.peer
        ),
        rustls::Error::PeerIncompatible(why) => format!(
            "the {} has no TLS version, cipher suite or signature scheme in common with Wardgate (TLS 1.2 or 1.3 with modern suites): {why:?}; update its TLS settings",
            cx.peer
        ),
        rustls::Error::PeerMisbehaved(why) => {
            format!("the {} broke the TLS protocol ({why:?})", cx.peer)
        }
        rustls::Error::NoApplicationProtocol => format!(
            "the {} offers no application protocol (ALPN) this side accepts",
            cx.peer
        ),
        rustls::Error::DecryptError => format!(
            "a TLS record from the {} does not decrypt (a damaged or tampered connection)",
            cx.peer
        ),
        rustls::Error::PeerSentOversizedRecord => {
            format!("the {} sent an oversized TLS record", cx.peer)
        }
        other => format!("the TLS handshake with the {} failed: {other}", cx.peer),
    };
    format!("{words} [rustls: {err}]")
}

fn alert_words(alert: AlertDescription, cx: &Context<'_>) -> String {
    match alert {
        AlertDescription::BadCertificate
        | AlertDescription::UnknownCA
        | AlertDescription::CertificateUnknown
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateRevoked
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::AccessDenied => format!(
            "the {} refused {} (TLS alert {alert:?}); it must trust the CA that issued it, and the certificate must be valid and unexpired",
            cx.peer,
            cx.own()
        ),
        AlertDescription::CertificateRequired => format!(
            "the {} requires a client certificate and this side presented none; configure {}",
            cx.peer,
            cx.own_cert_field.unwrap_or("a client certificate")
        ),
        AlertDescription::HandshakeFailure
        | AlertDescription::ProtocolVersion
        | AlertDescription::InsufficientSecurity => format!(
            "the {} found no TLS version or cipher suite in common (TLS alert {alert:?}); Wardgate speaks TLS 1.2 and 1.3 with modern suites",
            cx.peer
        ),
        AlertDescription::UnrecognisedName => format!(
            "the {} does not serve the name this side asked for (TLS alert {alert:?}); check the host name configured for it",
            cx.peer
        ),
        other => format!("the {} ended the handshake (TLS alert {other:?})", cx.peer),
    }
}

fn certificate_error(err: &CertificateError, cx: &Context<'_>) -> String {
    let subject = cx.subject();
    let (trust, reissue) = (cx.trust_field, cx.reissue);
    match err {
        CertificateError::BadEncoding => {
            format!("{subject} is not a valid DER X.509 certificate ({reissue})")
        }
        CertificateError::Expired => format!("{subject} has expired or has an invalid validity period ({reissue})"),
        CertificateError::ExpiredContext { time, not_after } => format!(
            "{subject} expired on {} (the time here is {}); {reissue}",
            utc(not_after.as_secs()),
            utc(time.as_secs())
        ),
        CertificateError::NotValidYet => format!(
            "{subject} is not valid yet; check the clock of this machine and of the CA host"
        ),
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "{subject} is not valid before {} but the time here is {}; check the clock of this machine and of the CA host",
            utc(not_before.as_secs()),
            utc(time.as_secs())
        ),
        CertificateError::Revoked => format!("{subject} has been revoked ({reissue})"),
        CertificateError::UnknownIssuer => format!(
            "{subject} was not issued by the CA in {trust}; {reissue}, or point {trust} at the CA that issued it"
        ),
        CertificateError::BadSignature => format!(
            "the signature on {subject} does not verify against the CA in {trust} (signed by another CA of the same name, or altered); {reissue}"
        ),
        CertificateError::NotValidForName => format!(
            "{subject} does not name the host this side connected to; connect using a name in the certificate, or re-issue it with that name"
        ),
        CertificateError::NotValidForNameContext { expected, presented } => {
            let names = if presented.is_empty() {
                "no names".to_owned()
            } else {
                presented.join(", ")
            };
            format!(
                "{subject} is not valid for {:?} (it names {names}); connect using a name in the certificate, or re-issue it with that name",
                expected.to_str()
            )
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            let want = match cx.side {
                Side::Server => "client authentication",
                Side::Client => "server authentication",
            };
            format!("{subject} is not issued for {want} (extended key usage); {reissue}")
        }
        CertificateError::UnhandledCriticalExtension => format!(
            "{subject} carries a critical extension Wardgate does not understand; {reissue}"
        ),
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => format!(
            "{subject} is signed with an algorithm Wardgate does not accept (use ECDSA P-256/P-384, Ed25519, or RSA with SHA-256 or stronger); {reissue}"
        ),
        CertificateError::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
            Some(w) => webpki_words(w, &subject, cx),
            None => format!("{subject} was refused: {other}"),
        },
        other => format!("{subject} was refused: {other}"),
    }
}

fn webpki_words(err: &webpki::Error, subject: &str, cx: &Context<'_>) -> String {
    let (trust, reissue) = (cx.trust_field, cx.reissue);
    match err {
        webpki::Error::UnsupportedCertVersion => format!(
            "{subject} is X.509 version 1; Wardgate needs version 3 certificates ({reissue})"
        ),
        webpki::Error::CaUsedAsEndEntity => format!(
            "{subject} is a CA certificate, not one issued to the {} itself; {reissue}",
            cx.peer
        ),
        webpki::Error::EndEntityUsedAsCa => format!(
            "{subject} was signed by a certificate that is not a CA; {reissue}, or point {trust} at the real CA"
        ),
        webpki::Error::PathLenConstraintViolated | webpki::Error::MaximumPathDepthExceeded => {
            format!("{subject} chains through more intermediate CAs than its CA allows; {reissue}")
        }
        webpki::Error::NameConstraintViolation => {
            format!("{subject} names a host its CA may not issue for; {reissue}")
        }
        webpki::Error::UnsupportedCriticalExtension => format!(
            "{subject} carries a critical extension Wardgate does not understand; {reissue}"
        ),
        webpki::Error::MalformedExtensions | webpki::Error::ExtensionValueInvalid => {
            format!("{subject} has damaged extensions; {reissue}")
        }
        webpki::Error::InvalidSerialNumber => {
            format!("{subject} has an invalid serial number; {reissue}")
        }
        other => format!("{subject} was refused by the certificate check ({other:?}); {reissue}"),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the Unix epoch.
fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
