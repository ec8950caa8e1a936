//! `herald serve`: the HTTP API, health, metrics and OpenAPI description.
//!
//! Routes are registered through `utoipa_axum::OpenApiRouter`, so the router
//! and `/api/openapi.json` come from the same list and cannot drift apart.
//!
//! - `state.rs`: what handlers reach; `auth.rs`: API keys; `error.rs`: one error type
//! - `messages.rs`, `suppressions.rs`, `templates.rs`: the API
//! - `webhooks.rs`: providers' delivery receipts
//! - `ops.rs`: health, readiness, metrics; `openapi.rs`: the document

mod alerting;
mod auth;
mod dashboard;
mod enqueuer;
mod error;
mod gauges;
mod messages;
mod openapi;
mod ops;
mod queueing;
mod schema;
mod serve;
mod state;
mod stats;
mod suppressions;
mod templates;
mod webhook_endpoints;
mod webhooks;

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorBody};
pub use serve::{serve, ServerLimits};
pub use state::{AppState, Webhooks, DEFAULT_METRICS_CACHE};
pub use webhooks::{SENDGRID_MAX_BODY, TWILIO_MAX_BODY, WEBHOOK_CONCURRENCY};

/// Largest single-message request (an email may carry a few MiB of HTML).
pub const MAX_BODY: usize = 12 * 1024 * 1024;
/// Largest batch request.
pub const MAX_BATCH_BODY: usize = 32 * 1024 * 1024;
/// No request may take longer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

async fn timeout(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", "the request took too long").into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// The API routes and their OpenAPI description, from one list.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(queueing::create, messages::list))
        .routes(routes!(messages::get))
        .routes(routes!(messages::retry))
        .routes(routes!(messages::cancel))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(suppressions::list, suppressions::add))
        .routes(routes!(suppressions::remove))
        .routes(routes!(templates::list))
        .routes(routes!(templates::put, templates::show, templates::delete))
        .routes(routes!(templates::preview))
        .routes(routes!(stats::stats))
        .routes(routes!(alerting::list))
        .routes(routes!(alerting::add))
        .routes(routes!(alerting::remove))
        .routes(routes!(webhook_endpoints::create, webhook_endpoints::list))
        .routes(routes!(
            webhook_endpoints::get,
            webhook_endpoints::update,
            webhook_endpoints::delete
        ))
        .routes(routes!(webhook_endpoints::rotate))
        .routes(routes!(webhook_endpoints::replay))
        .routes(routes!(webhook_endpoints::deliveries))
        .routes(routes!(webhook_endpoints::attempts))
}

fn webhook_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(webhooks::twilio_status))
        .routes(routes!(webhooks::sendgrid_events))
}

/// The OpenAPI document (also served at `/api/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = api_routes().routes(routes!(queueing::create_batch)).split_for_parts();
    let (_, ops) = ops_routes().split_for_parts();
    let (_, hooks) = webhook_routes().split_for_parts();
    let mut doc = api;
    doc.merge(ops);
    doc.merge(hooks);
    openapi::document_common_errors(&mut doc);
    doc
}

fn ops_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
}

/// The whole application: `main` and the tests build it the same way.
pub fn router(state: AppState) -> Router {
    let (batch, _) = OpenApiRouter::new()
        .routes(routes!(queueing::create_batch))
        .split_for_parts();
    let (api, _) = api_routes().split_for_parts();
    let (ops, _) = ops_routes().split_for_parts();
    let (hooks, _) = webhook_routes().split_for_parts();
    // The webhook handlers check their signature header before reading a
    // body, and read it with their own limits.
    let hooks = hooks.layer(DefaultBodyLimit::disable());
    let batch = batch
        .layer(DefaultBodyLimit::max(MAX_BATCH_BODY))
        .layer(middleware::from_fn_with_state(MAX_BATCH_BODY, reject_oversized));
    let api = api
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(MAX_BODY, reject_oversized))
        .merge(batch)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_api_key));
    Router::new()
        .merge(api)
        .merge(ops)
        .merge(hooks)
        .merge(dashboard::router().layer(DefaultBodyLimit::max(MAX_BODY)))
        .route_layer(middleware::from_fn(reject_control_characters))
        .fallback(not_found)
        .layer(middleware::from_fn(timeout))
        .with_state(state)
}

/// Refuse a request whose declared `Content-Length` is over `max` before
/// reading any of it, and close the connection after the answer (bodies
/// sent without a length are cut off at `max` as they are read).
async fn reject_oversized(
    axum::extract::State(max): axum::extract::State<usize>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        let mut r = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than this route accepts ({max} bytes)"),
        )
        .into_response();
        r.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return r;
    }
    next.run(req).await
}

/// Refuse a request whose query or path parameters hold a control
/// character (NUL among them; no database stores NUL alike) with a 400
/// naming the parameter, before any handler sees it.
async fn reject_control_characters(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let uri = req.uri();
    let control = |s: &str| s.chars().any(|c| c < ' ' || c == '\u{7f}');
    if let Some(query) = uri.query() {
        if let Some((name, _)) = form_urlencoded::parse(query.as_bytes()).find(|(k, v)| control(k) || control(v)) {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("query parameter {name:?} holds a control character"),
            )
            .field(name.into_owned())
            .into_response();
        }
    }
    if let Some(matched) = matched {
        for (pattern, actual) in matched.as_str().split('/').zip(uri.path().split('/')) {
            let Some(name) = pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) else {
                continue;
            };
            if decoded_has_control(actual) {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_path",
                    format!("path parameter {name:?} holds a control character"),
                )
                .field(name.trim_start_matches('*'))
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// Whether a percent-encoded path segment decodes to a control character.
fn decoded_has_control(segment: &str) -> bool {
    let b = segment.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut i = 0;
    while i < b.len() {
        let byte = if b[i] == b'%' && i + 2 < b.len() {
            match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    i += 2;
                    (h * 16 + l) as u8
                }
                _ => b[i],
            }
        } else {
            b[i]
        };
        if byte < b' ' || byte == 0x7f {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether `host` is reachable only from this machine.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_path_segments() {
        for bad in ["%00", "a%00b", "%1F", "%7f", "x%0a"] {
            assert!(decoded_has_control(bad), "{bad}");
        }
        for ok in ["abc", "%2B14153234567", "%20", "%", "a%0", "%zz", "caf%C3%A9"] {
            assert!(!decoded_has_control(ok), "{ok}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "127.8.9.1", "::1", "localhost"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["0.0.0.0", "::", "10.0.0.5", "example.com"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
