//! The console's page, style sheet and scripts, compiled into the binary
//! (no build step, nothing read from disk at run time) and served without
//! a token: they hold no data. Every response carries [`SECURITY_HEADERS`]:
//! a content security policy that allows only this origin's own script and
//! style files (no inline script, no `eval`, no other hosts), refuses
//! framing, plus `no-store`, `nosniff` and no referrer.

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

/// The content security policy of every console response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// Headers on every console response.
pub const SECURITY_HEADERS: [(&str, &str); 7] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    ),
];

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The page is `index.html`; the rest are served under `/console/<name>`.
const ASSETS: [Asset; 4] = [
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("static/index.html"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("static/console.css"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("static/console.js"),
    },
    Asset {
        name: "wording.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("static/wording.js"),
    },
];

fn serve(asset: &Asset) -> Response {
    let mut response = ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response();
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// The console page (`GET /console`).
#[must_use]
pub fn page() -> Response {
    serve(&ASSETS[0])
}

/// One of the page's files by name (`GET /console/{file}`); `None` for a
/// name the console does not have, which the HTTP layer answers with 404.
#[must_use]
pub fn file(name: &str) -> Option<Response> {
    ASSETS.iter().find(|a| a.name == name).map(serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_no_inline_script() {
        let html = ASSETS[0].body;
        assert!(html.contains(r#"src="/console/console.js""#));
        // No inline script or handler that the policy would block anyway.
        assert!(!html.contains("<script>"), "no inline script");
        assert!(!html.contains(" onclick="), "no inline handlers");
        assert!(!html.contains("style="), "no inline style");
        for a in &ASSETS {
            for other in ["src=\"http", "href=\"http", "import(\"http", "from \"http"] {
                assert!(
                    !a.body.contains(other),
                    "{} loads nothing from elsewhere",
                    a.name
                );
            }
        }
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
    }

    #[test]
    fn every_alert_kind_is_explained_in_plain_words() {
        let wording = include_str!("static/wording.js");
        for kind in crate::anomaly::AlertKind::ALL {
            assert!(
                wording.contains(&format!("  {}: {{", kind.as_str())),
                "wording.js has no entry for alert kind {kind}"
            );
        }
    }

    #[test]
    fn every_response_carries_the_security_headers() {
        let r = serve(&ASSETS[2]);
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(r.headers()[name], value, "{name}");
        }
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
    }
}
