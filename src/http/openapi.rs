//! The OpenAPI description, generated from the same route list the router
//! is built from (see `super::api_routes`).

use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Herald", description = "Notification delivery: SMS, WhatsApp and email from a notification_messages table."),
    modifiers(&BearerAuth),
    tags(
        (name = "messages", description = "Queue, inspect and steer messages"),
        (name = "suppressions", description = "Recipients who must not be messaged"),
        (name = "templates", description = "Message templates (MiniJinja), versioned, per locale"),
        (name = "alerts", description = "Alert rules, their state and history"),
        (name = "webhooks", description = "Delivery receipts from providers, authenticated by their signatures"),
        (name = "webhook endpoints", description = "Status webhooks to the POS (Standard Webhooks): endpoints, deliveries, replays"),
        (name = "operations", description = "Health and metrics (no API key needed)")
    )
)]
pub(super) struct ApiDoc;

static OPENAPI: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();

/// This document: the OpenAPI 3 description of every route.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 JSON"), (status = 401, description = "Missing or wrong API key", body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn openapi_json() -> Response {
    Json(OPENAPI.get_or_init(super::openapi)).into_response()
}

/// Add the error answers an operation can give by how it is served (API key,
/// JSON body, path and query parsing, the request timeout), so the document
/// lists every status the server really answers with.
pub(super) fn document_common_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let api = path.starts_with("/api/");
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let json_body = api && op.request_body.is_some();
            let responses = &mut op.responses.responses;
            let mut add = |code: &str, description: &str| {
                responses.entry(code.to_owned()).or_insert_with(|| error(description));
            };
            if api {
                add("401", "Missing or wrong API key");
            }
            if json_body {
                add("400", "The body is not valid JSON");
                add("413", "The body is larger than the route allows");
                add("415", "The body is not sent as Content-Type: application/json");
                add(
                    "422",
                    "A field is missing, of the wrong type or invalid (`field` names it)",
                );
            }
            // Every route refuses control characters in its path and query.
            add("400", "A path or query parameter is malformed (`field` names it)");
            if api {
                add("500", "The database failed; nothing was changed");
            }
            if path.starts_with("/webhooks/") {
                add("413", "The body is larger than the provider ever sends");
            }
            add(
                "503",
                "The request took longer than the server allows, too many webhook requests at once, or the server is shutting down",
            );
        }
    }
}
