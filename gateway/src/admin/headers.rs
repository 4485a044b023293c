//! The credentials an admin API call carries in its headers: the bearer
//! token (`Authorization: Bearer wgt_...`) and, for mutating calls with a
//! TOTP-bound token, the current code ([`TOTP_HEADER`]). Only their shape is
//! read here; whether they are good is decided by [`crate::access`].

use axum::http::{header, HeaderMap};

use crate::access::refusal::Refusal;

/// The request header that carries the TOTP code for mutating calls.
pub const TOTP_HEADER: &str = "x-wardgate-totp";

/// The token after `Bearer ` in the `Authorization` header.
///
/// # Errors
/// [`Refusal::MissingToken`] without the header, [`Refusal::MalformedToken`]
/// if it is not `Bearer <token>` in visible ASCII.
pub fn bearer(headers: &HeaderMap) -> Result<String, Refusal> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(Refusal::MissingToken)?;
    let value = value.to_str().map_err(|_| Refusal::MalformedToken)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(Refusal::MalformedToken)?;
    Ok(token.trim().to_owned())
}

/// The TOTP code header, if sent (a value that is not visible ASCII reads
/// as empty, which the code check refuses as malformed).
#[must_use]
pub fn totp_code(headers: &HeaderMap) -> Option<String> {
    headers
        .get(TOTP_HEADER)
        .map(|v| v.to_str().unwrap_or("").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: Option<&[u8]>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(header::AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_header_shapes() {
        assert_eq!(bearer(&headers(None)), Err(Refusal::MissingToken));
        assert_eq!(
            bearer(&headers(Some(b"Basic abc"))),
            Err(Refusal::MalformedToken)
        );
        assert_eq!(
            bearer(&headers(Some(b"Bearer"))),
            Err(Refusal::MalformedToken)
        );
        assert_eq!(
            bearer(&headers(Some(b"Bearer \xff\xfe"))),
            Err(Refusal::MalformedToken)
        );
        assert_eq!(
            bearer(&headers(Some(b"Bearer wgt_x"))),
            Ok("wgt_x".to_owned())
        );
        assert_eq!(
            bearer(&headers(Some(b"bearer  wgt_y "))),
            Ok("wgt_y".to_owned())
        );
    }
}
