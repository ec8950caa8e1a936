//! `herald serve`: the HTTP API, health, metrics and OpenAPI description.
//!
//! Routes are registered through `utoipa_axum::OpenApiRouter`, so the router
//! and `/api/openapi.json` come from the same list and cannot drift apart.

mod enqueuer;
mod error;
pub mod messages;
pub mod suppressions;
pub mod templates;
pub mod webhooks;

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock::Clock;
use crate::processor::{ProcessorStats, SendMetrics};
use crate::store::Store;

pub use enqueuer::Enqueuer;
pub use error::{ApiError, ErrorBody};

/// Largest single-message request (an email may carry a few MiB of HTML).
pub const MAX_BODY: usize = 12 * 1024 * 1024;
/// Largest batch request.
pub const MAX_BATCH_BODY: usize = 32 * 1024 * 1024;
/// No request may take longer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub enqueuer: Enqueuer,
    api_keys: Arc<Vec<SecretString>>,
    /// The in-process processor, when `serve` runs one.
    processor: Option<ProcessorHandles>,
    webhooks: Arc<Webhooks>,
}

/// What the provider webhooks need to authenticate requests.
#[derive(Default)]
pub struct Webhooks {
    /// `PUBLIC_URL`: the URL Twilio signs.
    pub public_url: Option<String>,
    pub twilio_token: Option<SecretString>,
    pub sendgrid_key: Option<crate::receipts::SendgridKey>,
    pub counters: webhooks::ReceiptCounters,
}

#[derive(Clone)]
struct ProcessorHandles {
    wake: Arc<Notify>,
    stats: Arc<ProcessorStats>,
    metrics: Arc<SendMetrics>,
}

impl AppState {
    pub fn new(store: Store, clock: Arc<dyn Clock>, api_keys: Vec<SecretString>) -> AppState {
        let enqueuer = Enqueuer::start(store.clone(), clock.clone(), None);
        AppState {
            store,
            clock,
            enqueuer,
            api_keys: Arc::new(api_keys),
            processor: None,
            webhooks: Arc::default(),
        }
    }

    /// Enable the provider webhooks that have what they need.
    pub fn with_webhooks(
        mut self,
        public_url: Option<String>,
        twilio_token: Option<SecretString>,
        sendgrid_key: Option<crate::receipts::SendgridKey>,
    ) -> AppState {
        self.webhooks = Arc::new(Webhooks {
            public_url,
            twilio_token,
            sendgrid_key,
            counters: Default::default(),
        });
        self
    }

    /// Attach the in-process processor: new messages wake it, and its
    /// counters appear in `/metrics`.
    pub fn with_processor(mut self, p: &crate::processor::Processor) -> AppState {
        self.enqueuer = Enqueuer::start(self.store.clone(), self.clock.clone(), Some(p.waker()));
        self.processor = Some(ProcessorHandles {
            wake: p.waker(),
            stats: p.stats(),
            metrics: p.metrics(),
        });
        self
    }

    fn wake(&self) {
        if let Some(p) = &self.processor {
            p.wake.notify_one();
        }
    }
}

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
struct ApiDoc;

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the database answers and every migration is applied.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready"), (status = 503, description = "Database unreachable or not migrated"))
)]
async fn readyz(State(state): State<AppState>) -> Response {
    let db = state.store.ping().await.is_ok();
    let migrated = db && state.store.migrations_applied().await.unwrap_or(false);
    let status = if db && migrated {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ready" } else { "not ready" },
        "database": if db { "ok" } else { "unreachable" },
        "migrations": if migrated { "applied" } else { "pending" },
    });
    (status, Json(body)).into_response()
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP herald_messages Messages in the table by status and channel."
    );
    let _ = writeln!(out, "# TYPE herald_messages gauge");
    match state.store.counts().await {
        Ok(counts) => {
            for c in counts {
                let _ = writeln!(
                    out,
                    "herald_messages{{status=\"{}\",channel=\"{}\"}} {}",
                    escape(&c.status),
                    escape(&c.channel),
                    c.count
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: could not count messages"),
    }
    let now = state.clock.now();
    let age = match state.store.oldest_due(now).await {
        Ok(Some(t)) => (now - t).num_milliseconds().max(0) as f64 / 1000.0,
        _ => 0.0,
    };
    let _ = writeln!(
        out,
        "# HELP herald_oldest_due_pending_age_seconds Age of the oldest message that is due and still pending."
    );
    let _ = writeln!(out, "# TYPE herald_oldest_due_pending_age_seconds gauge");
    let _ = writeln!(out, "herald_oldest_due_pending_age_seconds {age}");
    if let Some(p) = &state.processor {
        let s = p.stats.summary();
        let _ = writeln!(
            out,
            "# HELP herald_processor_messages_total What this process's processor did, by result."
        );
        let _ = writeln!(out, "# TYPE herald_processor_messages_total counter");
        for (result, n) in [
            ("claimed", s.claimed),
            ("sent", s.sent),
            ("failed", s.failed),
            ("retried", s.retried),
            ("released", s.released),
            ("lease_lost", s.lease_lost),
        ] {
            let _ = writeln!(out, "herald_processor_messages_total{{result=\"{result}\"}} {n}");
        }
        p.metrics.render(&mut out);
    }
    state.webhooks.counters.render(&mut out);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
        .into_response()
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

static OPENAPI: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();

/// This document: the OpenAPI 3 description of every route.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 JSON"), (status = 401, description = "Missing or wrong API key", body = ErrorBody)),
    security(("bearer" = [])))]
async fn openapi_json() -> Response {
    Json(OPENAPI.get_or_init(openapi)).into_response()
}

/// `Authorization: Bearer <key>`, compared in constant time with every
/// configured key. No keys configured: open (loopback-only, see `serve`).
async fn require_api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.api_keys.is_empty() {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if key_matches(&state.api_keys, presented) {
        next.run(req).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// Compare against every key without stopping early, each in constant time.
fn key_matches(keys: &[SecretString], presented: &str) -> bool {
    let mut ok = subtle::Choice::from(0u8);
    for k in keys {
        let k = k.expose_secret().as_bytes();
        // Lengths are not secret (keys are long random strings); contents are.
        if k.len() == presented.len() {
            ok |= k.ct_eq(presented.as_bytes());
        }
    }
    bool::from(ok) && !presented.is_empty()
}

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
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(messages::create, messages::list))
        .routes(routes!(messages::get))
        .routes(routes!(messages::retry))
        .routes(routes!(messages::cancel))
        .routes(routes!(openapi_json))
        .routes(routes!(suppressions::list, suppressions::add))
        .routes(routes!(suppressions::remove))
        .routes(routes!(templates::list))
        .routes(routes!(templates::put, templates::show, templates::delete))
        .routes(routes!(templates::preview))
}

fn webhook_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(webhooks::twilio_status))
        .routes(routes!(webhooks::sendgrid_events))
}

/// The OpenAPI document (also served at `/api/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = api_routes().routes(routes!(messages::create_batch)).split_for_parts();
    let (_, ops) = ops_routes().split_for_parts();
    let (_, hooks) = webhook_routes().split_for_parts();
    let mut doc = api;
    doc.merge(ops);
    doc.merge(hooks);
    doc
}

fn ops_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The whole application: `main` and the tests build it the same way.
pub fn router(state: AppState) -> Router {
    let (batch, _) = OpenApiRouter::new()
        .routes(routes!(messages::create_batch))
        .split_for_parts();
    let (api, _) = api_routes().split_for_parts();
    let (ops, _) = ops_routes().split_for_parts();
    let (hooks, _) = webhook_routes().split_for_parts();
    let hooks = hooks.layer(DefaultBodyLimit::max(MAX_BATCH_BODY));
    let api = api
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .merge(batch.layer(DefaultBodyLimit::max(MAX_BATCH_BODY)))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_api_key));
    Router::new()
        .merge(api)
        .merge(ops)
        .merge(hooks)
        .fallback(not_found)
        .layer(middleware::from_fn(timeout))
        .with_state(state)
}

/// Whether `host` is reachable only from this machine.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_whole_and_exact() {
        let keys = vec![
            SecretString::from("k1-0123456789abcdef".to_owned()),
            SecretString::from("k2-0123456789abcdef".to_owned()),
        ];
        assert!(key_matches(&keys, "k1-0123456789abcdef"));
        assert!(key_matches(&keys, "k2-0123456789abcdef"));
        assert!(!key_matches(&keys, "k1-0123456789abcdeg"));
        assert!(!key_matches(&keys, "k1-0123456789abcde"));
        assert!(!key_matches(&keys, ""));
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
