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
        (name = "webhooks", description = "Delivery receipts from providers, authenticated by their signatures"),
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
