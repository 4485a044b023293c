//! The admin API's OpenAPI 3.1 document, generated from the handlers'
//! `#[utoipa::path]` annotations and served without a token at
//! [`DOCUMENT_PATH`] (like `/healthz`: it describes routes, it holds no
//! secrets or data).
//!
//! What the guard does to every guarded route is added here from the route
//! table of [`super::routes`], so that it cannot be forgotten on one
//! handler: 401 (token or TOTP refused). The per-route parts that depend
//! on the [`Action`](crate::access::policy::Action) are written on each handler (the `bearer` security
//! requirement, plus `totp` where `Action::is_mutating`; 403 where
//! `Action::min_role` is above viewer), and the unit tests below check
//! them against the same table, as they check that the document lists
//! exactly the routes the router serves. Every route may also answer 429
//! (the per-peer request limit), 500 (internal error) and 503
//! (`admin.request_timeout` passed).
//!
//! `schemathesis` runs against the served document in
//! `gateway/tests/admin_openapi_schemathesis.rs`.

use std::sync::OnceLock;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::ApiError;
use super::headers::TOTP_HEADER;
use super::route_table::guarded_routes;
pub use super::route_table::DOCUMENT_PATH;
use super::{alerts_api, console_api, error, handlers};
#[cfg(test)]
use crate::access::policy::Action;

/// Name of the bearer-token security scheme in the document.
pub const BEARER_SCHEME: &str = "bearer";

/// Name of the TOTP-header security scheme in the document.
pub const TOTP_SCHEME: &str = "totp";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Wardgate admin API",
        description = "The gateway's admin HTTPS API and ward console. Callers present \
            `Authorization: Bearer wgt_...`; mutating calls with a TOTP-bound token also \
            send the current code in `X-Wardgate-TOTP`. Errors are \
            `{\"error\": {\"code\", \"message\"}}`. See docs/admin.md."
    ),
    paths(
        handlers::healthz,
        serve,
        handlers::metrics,
        handlers::status,
        handlers::list_devices,
        handlers::enroll_device,
        handlers::get_device,
        handlers::quarantine,
        handlers::reactivate,
        handlers::revoke,
        handlers::recent_audit,
        handlers::verify_audit,
        handlers::list_tokens,
        handlers::create_token,
        handlers::revoke_token,
        handlers::review_access,
        handlers::ota_status,
        handlers::retry_ota_update,
        console_api::readings,
        console_api::session,
        console_api::page,
        console_api::page_slash,
        console_api::file,
        alerts_api::list,
        alerts_api::acknowledge,
        alerts_api::release,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&GuardResponses),
    tags(
        (name = "health"), (name = "openapi"), (name = "status"), (name = "devices"),
        (name = "audit"), (name = "tokens"), (name = "ota"), (name = "alerts"),
        (name = "console")
    )
)]
struct AdminApi;

/// The security schemes, and the answers the guard and the router's
/// limits give on top of each handler's own.
struct GuardResponses;

impl Modify for GuardResponses {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("wgt_<id>_<secret>")
                    .description(Some(
                        "An access token (`gateway access token create`); the role must reach \
                         the route's minimum.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            TOTP_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Wardgate-TOTP",
                "The current 6-digit TOTP code; needed on mutating routes when the token is \
                 TOTP-bound. Each code is accepted once; wrong codes in a row lock the token's \
                 mutating calls.",
            ))),
        );
        let guarded: Vec<(String, String)> = guarded_routes()
            .iter()
            .map(|r| (r.method.as_str().to_lowercase(), r.path.to_owned()))
            .collect();
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        Content::new(Some(RefOr::<utoipa::openapi::schema::Schema>::Ref(
                            Ref::from_schema_name("ErrorBody"),
                        ))),
                    )
                    .build(),
            )
        };
        for (path, item) in &mut doc.paths.paths {
            for (method, op) in [
                ("get", item.get.as_mut()),
                ("post", item.post.as_mut()),
                ("delete", item.delete.as_mut()),
            ] {
                let Some(op) = op else { continue };
                let responses = &mut op.responses.responses;
                if guarded.contains(&(method.to_owned(), path.clone())) {
                    responses.entry("401".into()).or_insert_with(|| {
                        error(&format!(
                            "`unauthenticated`: no, an unknown, revoked or expired token; or \
                             `totp_required`, `totp_invalid`, `totp_reused`, `totp_locked` \
                             for the `{TOTP_HEADER}` code of a TOTP-bound token"
                        ))
                    });
                }
                // The per-peer request limit runs before everything else.
                responses.entry("429".into()).or_insert_with(|| {
                    error(
                        "`rate_limited`: over `admin.requests_per_peer_per_second`; retry after \
                         `Retry-After` seconds",
                    )
                });
                responses
                    .entry("500".into())
                    .or_insert_with(|| error("`internal`: see the gateway's log"));
                responses.entry("503".into()).or_insert_with(|| {
                    error("`timeout`: the call took longer than `admin.request_timeout`")
                });
            }
        }
    }
}

/// The document, built once.
#[must_use]
pub fn document() -> Document {
    AdminApi::openapi()
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "openapi",
    responses((status = 200, description = "This document (OpenAPI 3.1)",
        content_type = "application/json", body = Object)))]
pub(crate) async fn serve() -> Response {
    static JSON: OnceLock<Result<String, String>> = OnceLock::new();
    match JSON.get_or_init(|| document().to_pretty_json().map_err(|e| e.to_string())) {
        Ok(json) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json.clone(),
        )
            .into_response(),
        Err(e) => ApiError::internal(&format!("the OpenAPI document does not serialise: {e}"))
            .into_response(),
    }
}

/// The [`Action`] of a guarded (method, path), for the tests.
#[cfg(test)]
fn action_of(method: &str, path: &str) -> Option<Action> {
    guarded_routes()
        .into_iter()
        .find(|r| r.method.as_str().eq_ignore_ascii_case(method) && r.path == path)
        .map(|r| r.action)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::access::role::Role;
    use crate::admin::route_table::UNGUARDED_ROUTES;

    fn doc() -> Value {
        serde_json::to_value(document()).expect("document serialises")
    }

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                if ["get", "post", "put", "delete", "patch", "head", "options"]
                    .contains(&method.as_str())
                {
                    out.push((method.to_uppercase(), path.clone(), op.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn document_lists_exactly_the_routes_the_router_serves() {
        let doc = doc();
        let documented: BTreeSet<(String, String)> = operations(&doc)
            .into_iter()
            .map(|(m, p, _)| (m, p))
            .collect();
        let served: BTreeSet<(String, String)> = guarded_routes()
            .iter()
            .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
            .chain(
                UNGUARDED_ROUTES
                    .iter()
                    .map(|(m, p)| ((*m).to_owned(), (*p).to_owned())),
            )
            .collect();
        assert_eq!(
            documented, served,
            "the OpenAPI paths and the router's routes differ"
        );
    }

    #[test]
    fn security_and_refusals_follow_each_routes_action() {
        let doc = doc();
        for (method, path, op) in operations(&doc) {
            let security = op["security"].as_array().cloned().unwrap_or_default();
            let responses = op["responses"].as_object().expect("responses");
            let Some(action) = action_of(&method, &path) else {
                assert!(
                    security.is_empty(),
                    "{method} {path} is served without a token but documents security"
                );
                assert!(!responses.contains_key("401"), "{method} {path}: 401");
                continue;
            };
            let schemes: BTreeSet<String> = security
                .iter()
                .flat_map(|req| req.as_object().expect("requirement").keys().cloned())
                .collect();
            let mut expected = BTreeSet::from([BEARER_SCHEME.to_owned()]);
            if action.is_mutating() {
                expected.insert(TOTP_SCHEME.to_owned());
            }
            assert_eq!(schemes, expected, "{method} {path} ({})", action.as_str());
            assert_eq!(security.len(), 1, "{method} {path}: one requirement");
            assert!(responses.contains_key("401"), "{method} {path}: 401");
            assert_eq!(
                responses.contains_key("403"),
                action.min_role() > Role::Viewer,
                "{method} {path}: 403 documented iff {} needs more than a viewer",
                action.as_str()
            );
        }
    }

    #[test]
    fn every_response_has_a_body_description_and_errors_are_json() {
        let doc = doc();
        for (method, path, op) in operations(&doc) {
            for (status, response) in op["responses"].as_object().expect("responses") {
                let content = response["content"]
                    .as_object()
                    .unwrap_or_else(|| panic!("{method} {path} {status}: no content"));
                assert!(!content.is_empty(), "{method} {path} {status}");
                if !status.starts_with('2') {
                    assert!(
                        content.contains_key("application/json"),
                        "{method} {path} {status}: errors are JSON"
                    );
                }
            }
        }
    }

    #[test]
    fn schemes_are_declared() {
        let doc = doc();
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes[BEARER_SCHEME]["scheme"], "bearer");
        assert_eq!(schemes[TOTP_SCHEME]["in"], "header");
        assert_eq!(
            schemes[TOTP_SCHEME]["name"]
                .as_str()
                .map(str::to_ascii_lowercase),
            Some(TOTP_HEADER.to_owned())
        );
    }
}
