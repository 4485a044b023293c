//! The OTA server's OpenAPI 3.1 document, generated from the handlers'
//! `#[utoipa::path]` annotations and served at [`DOCUMENT_PATH`].
//!
//! It is served like `/healthz`: on the same TLS listener as every route
//! (the client certificate stays optional there, as for TUF clients and
//! token holders), without a token, because it describes routes and holds
//! no secrets or data. The three ways in are its security schemes: an
//! admin token, a manufacturer token, and a gateway's client certificate
//! (`mutualTLS`).
//!
//! Added here to every operation: 401 where a route needs a credential
//! (`unauthenticated`, `client_certificate_required`), 429 (the per-peer
//! request limit), 408 (the
//! `limits.request_timeout` of the JSON routes, an empty body) and 500.
//! The unit tests check that the document lists exactly the routes of
//! [`super::router`]. `ota-server/tests/openapi_schemathesis.rs` runs
//! schemathesis against the served document.

use std::sync::OnceLock;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{campaigns, releases, repo, ApiError};

/// Where both Wardgate servers serve their OpenAPI document.
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Wardgate OTA server API",
        description = "The TUF repository (metadata and targets), manufacturer uploads, the \
            administrators' campaign API and the gateways' assignments and results. Errors are \
            `{\"error\": {\"code\", \"message\"}}`. See docs/ota-server.md."
    ),
    paths(
        repo::metadata,
        repo::target,
        releases::list,
        releases::audit,
        releases::upload,
        campaigns::create,
        campaigns::list,
        campaigns::status,
        campaigns::pause,
        campaigns::resume,
        campaigns::assignments,
        campaigns::results,
        super::healthz,
        super::metrics,
        serve,
    ),
    components(schemas(super::ErrorBody)),
    modifiers(&Common),
    tags(
        (name = "tuf"), (name = "releases"), (name = "audit"), (name = "campaigns"),
        (name = "gateway"), (name = "health"), (name = "openapi")
    )
)]
struct OtaApi;

/// The security schemes and the answers every route may give.
struct Common;

impl Modify for Common {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        let token = |who: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(format!(
                        "A {who} token from the server's configuration (`ota-server token`)"
                    )))
                    .build(),
            )
        };
        components.add_security_scheme("admin_token", token("administrator"));
        components.add_security_scheme("manufacturer_token", token("manufacturer"));
        components.add_security_scheme(
            "gateway_certificate",
            SecurityScheme::MutualTls {
                description: Some(
                    "A gateway client certificate from the ward CA naming \
                     urn:wardgate:gateway:<id>"
                        .to_owned(),
                ),
                extensions: None,
            },
        );
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
        for item in doc.paths.paths.values_mut() {
            for op in [item.get.as_mut(), item.post.as_mut()]
                .into_iter()
                .flatten()
            {
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let responses = &mut op.responses.responses;
                if secured {
                    responses.entry("401".into()).or_insert_with(|| {
                        error(
                            "`unauthenticated` (no or an unknown token) or \
                             `client_certificate_required`",
                        )
                    });
                }
                // The per-peer request limit runs before everything else.
                responses.entry("429".into()).or_insert_with(|| {
                    error(
                        "`rate_limited`: over `limits.requests_per_peer_per_second`; retry \
                         after `Retry-After` seconds",
                    )
                });
                responses.entry("408".into()).or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new()
                            .description("Longer than `limits.request_timeout` (no body)")
                            .build(),
                    )
                });
                responses
                    .entry("500".into())
                    .or_insert_with(|| error("`internal`: see the server log"));
            }
        }
    }
}

/// The document.
#[must_use]
pub fn document() -> Document {
    OtaApi::openapi()
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every (method, path) the router of [`super::super::router`] serves,
    /// in axum's spelling: the list a change to the router must change
    /// too. `ota-server/tests/openapi_schemathesis.rs` checks against the
    /// running server that each documented route is routed.
    const SERVED: [(&str, &str); 15] = [
        ("GET", "/metadata/{file}"),
        ("GET", "/targets/{*path}"),
        ("GET", "/api/v1/releases"),
        ("GET", "/api/v1/audit"),
        ("POST", "/api/v1/campaigns"),
        ("GET", "/api/v1/campaigns"),
        ("GET", "/api/v1/campaigns/{id}"),
        ("POST", "/api/v1/campaigns/{id}/pause"),
        ("POST", "/api/v1/campaigns/{id}/resume"),
        ("POST", "/api/v1/gateway/assignments"),
        ("POST", "/api/v1/gateway/results"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", DOCUMENT_PATH),
        ("POST", "/api/v1/releases/{*target}"),
    ];

    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(document()).expect("document serialises");
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("item").keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn document_lists_exactly_the_served_routes() {
        let served: BTreeSet<(String, String)> = SERVED
            .iter()
            .map(|(m, p)| ((*m).to_owned(), p.replace("{*", "{")))
            .collect();
        assert_eq!(documented(), served);
    }
}
