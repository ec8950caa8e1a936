//! Operations: liveness, readiness and Prometheus metrics (no API key).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;
use crate::prometheus::{Exposition, Kind};

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
pub(super) async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the database answers and every migration is applied.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready"), (status = 503, description = "Database unreachable or not migrated"))
)]
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
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
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = Exposition::new();
    out.family(
        "herald_messages",
        Kind::Gauge,
        "Messages in the table by status and channel.",
    );
    match state.store.counts().await {
        Ok(counts) => {
            for c in counts {
                out.sample(
                    "herald_messages",
                    &[("status", &c.status), ("channel", &c.channel)],
                    c.count,
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: could not count messages"),
    }
    let now = state.clock.now();
    let age = match state.store.oldest_due(now).await {
        Ok(Some(t)) => (now - t).num_milliseconds().max(0) as f64 / 1000.0,
        Ok(None) => 0.0,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: could not read the oldest due message");
            f64::NAN
        }
    };
    out.family(
        "herald_oldest_due_pending_age_seconds",
        Kind::Gauge,
        "Age of the oldest message that is due and still pending (NaN: unknown).",
    )
    .sample("herald_oldest_due_pending_age_seconds", &[], age);
    if let Some(p) = &state.processor {
        out.family(
            "herald_processor_messages_total",
            Kind::Counter,
            "What this process's processor did, by result.",
        );
        for (result, n) in p.stats.summary().labelled() {
            out.sample("herald_processor_messages_total", &[("result", result)], n);
        }
        p.metrics.render(&mut out);
    }
    state.webhooks.counters.render(&mut out);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out.finish(),
    )
        .into_response()
}
