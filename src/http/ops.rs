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
    // Providers' circuits: detail only. An open circuit does not make
    // Herald unready (messages queue and wait, or go to the next provider).
    let circuits: serde_json::Map<String, serde_json::Value> = if migrated {
        state
            .store
            .circuits()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                let detail = serde_json::json!({
                    "state": c.state,
                    "until": c.blocked_until().map(crate::clock::format_ts),
                    "reason": c.reason,
                });
                (c.provider, detail)
            })
            .collect()
    } else {
        Default::default()
    };
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ready" } else { "not ready" },
        "database": if db { "ok" } else { "unreachable" },
        "migrations": if migrated { "applied" } else { "pending" },
        "circuits": circuits,
    });
    (status, Json(body)).into_response()
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = Exposition::new();
    let now = state.clock.now();
    let snapshot = state.gauges.get(&state.store, now).await;
    out.family(
        "herald_messages",
        Kind::Gauge,
        "Messages in the table by status and channel (from a snapshot at most METRICS_CACHE_SECONDS old; on a table of more than 300,000 rows, sent is the database's estimate, with channel=\"all\").",
    );
    if let Some(counts) = snapshot.as_ref().and_then(|s| s.counts.as_ref()) {
        for c in counts {
            out.sample(
                "herald_messages",
                &[("status", &c.status), ("channel", &c.channel)],
                c.count,
            );
        }
    }
    let age = match snapshot.as_ref().map(|s| s.oldest_due) {
        Some(Ok(Some(t))) => (now - t).num_milliseconds().max(0) as f64 / 1000.0,
        Some(Ok(None)) => 0.0,
        _ => f64::NAN,
    };
    out.family(
        "herald_oldest_due_pending_age_seconds",
        Kind::Gauge,
        "Age of the oldest message that is due and still pending (NaN: unknown).",
    )
    .sample("herald_oldest_due_pending_age_seconds", &[], age);
    out.family(
        "herald_metrics_snapshot_age_seconds",
        Kind::Gauge,
        "How old the queue gauges above are (NaN: no snapshot yet).",
    )
    .sample(
        "herald_metrics_snapshot_age_seconds",
        &[],
        snapshot.as_ref().map_or(f64::NAN, |s| s.taken.elapsed().as_secs_f64()),
    );
    out.family(
        "herald_metrics_snapshots_total",
        Kind::Counter,
        "Snapshots of the queue gauges taken (each is one round of whole-table queries).",
    )
    .sample("herald_metrics_snapshots_total", &[], state.gauges.refreshes());
    out.family(
        "herald_circuit_state",
        Kind::Gauge,
        "Each provider's circuit breaker, as every worker sees it: 0 closed, 1 open (nothing is sent through it), \
         2 half-open (a few probes go through).",
    );
    for c in state.store.circuits().await.unwrap_or_default() {
        out.sample("herald_circuit_state", &[("provider", &c.provider)], c.state.gauge());
    }
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
    if let Some(o) = &state.outbound {
        o.render(&mut out);
    }
    out.family(
        "herald_webhook_pending",
        Kind::Gauge,
        "Status webhooks waiting to be delivered (or retried), per endpoint.",
    );
    for (endpoint, n) in state.store.pending_deliveries().await.unwrap_or_default() {
        out.sample("herald_webhook_pending", &[("endpoint", &endpoint.to_string())], n);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out.finish(),
    )
        .into_response()
}
