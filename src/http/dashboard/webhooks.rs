//! Status webhooks to the POS: endpoints (add, enable, disable, rotate the
//! secret, delete), each one's delivery log, and replays; and the
//! providers' circuit breakers.

use axum::extract::{Form, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{error_flash, page, see_other, when, Flash, Signed};
use crate::domain::{EndpointUrl, EventFilter, EventType};
use crate::http::error::ApiPath;
use crate::http::AppState;
use crate::signing::WebhookSecret;

#[derive(Debug, Deserialize)]
pub(super) struct DoneQuery {
    done: Option<String>,
}

fn done_flash(done: Option<&str>) -> Option<Flash> {
    match done {
        Some("enabled") => Flash::ok("Enabled: its waiting deliveries go out now."),
        Some("disabled") => Flash::ok("Disabled."),
        Some("deleted") => Flash::ok("Deleted."),
        Some(d) if d.starts_with("replayed:") => Flash::ok(format!(
            "{} delivery(ies) queued again.",
            d.trim_start_matches("replayed:")
        )),
        Some(e) if e.starts_with("error:") => Flash::error(e.trim_start_matches("error:").to_owned()),
        _ => None,
    }
}

async fn list_page(state: &AppState, signed: &Signed, flash: Option<Flash>, secret: Option<(i64, String)>) -> Response {
    let (endpoints, pending, circuits) = tokio::join!(
        state.store.endpoints(),
        state.store.pending_deliveries(),
        state.store.circuits()
    );
    let (endpoints, flash) = match endpoints {
        Ok(e) => (e, flash),
        Err(e) => (Vec::new(), Flash::error(e.to_string())),
    };
    let pending = pending.unwrap_or_default();
    let rows: Vec<_> = endpoints
        .iter()
        .map(|e| {
            let waiting = pending.iter().find(|(id, _)| *id == e.id).map_or(0, |(_, n)| *n);
            minijinja::context! {
                id => e.id, url => e.url, description => e.description, events => e.events.join(", "),
                enabled => e.enabled, disabled_reason => e.disabled_reason, pending => waiting,
                failing_since => when(e.failing_since), last_success_at => when(e.last_success_at),
            }
        })
        .collect();
    let circuits: Vec<_> = circuits
        .unwrap_or_default()
        .into_iter()
        .map(|c| minijinja::context! { provider => c.provider, state => c.state.as_str(), until => when(c.blocked_until()), reason => c.reason })
        .collect();
    page(
        signed,
        "webhooks.html",
        "Webhooks",
        "webhooks",
        flash,
        minijinja::context! {
            endpoints => rows, circuits, event_types => EventType::ALL.map(EventType::as_str),
            new_secret => secret.as_ref().map(|(_, s)| s.clone()), new_id => secret.map(|(id, _)| id),
        },
    )
}

pub(super) async fn list(State(state): State<AppState>, signed: Signed, Query(q): Query<DoneQuery>) -> Response {
    list_page(&state, &signed, done_flash(q.done.as_deref()), None).await
}

#[derive(Debug, Deserialize)]
pub(super) struct AddForm {
    csrf: String,
    url: String,
    /// Comma-separated, or `*`.
    events: String,
    description: Option<String>,
}

pub(super) async fn add(State(state): State<AppState>, signed: Signed, Form(f): Form<AddForm>) -> Response {
    if let Err(r) = signed.check_csrf(&f.csrf) {
        return axum::response::IntoResponse::into_response(r);
    }
    let url = match EndpointUrl::parse(&f.url) {
        Ok(u) => u,
        Err(e) => return error_flash("/dashboard/webhooks", e),
    };
    let words: Vec<String> = f
        .events
        .split(',')
        .map(|w| w.trim().to_owned())
        .filter(|w| !w.is_empty())
        .collect();
    let events = match EventFilter::parse(&words) {
        Ok(e) => e,
        Err(e) => return error_flash("/dashboard/webhooks", e),
    };
    let description = f.description.as_deref().map(str::trim).filter(|d| !d.is_empty());
    if let Some(d) = description {
        if let Err(e) = crate::domain::check_text("description", d, crate::domain::TextKind::SingleLine) {
            return error_flash("/dashboard/webhooks", e);
        }
    }
    let secret = WebhookSecret::generate();
    match state
        .store
        .create_endpoint(&url, description, &events, secret.expose(), true, state.clock.now())
        .await
    {
        // The secret is shown on this answer only (never stored in a URL).
        Ok(e) => {
            list_page(
                &state,
                &signed,
                Flash::ok("Added. Copy its secret now: it is not shown again."),
                Some((e.id, secret.expose().to_owned())),
            )
            .await
        }
        Err(e) => error_flash("/dashboard/webhooks", e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ActionForm {
    csrf: String,
    /// `enable`, `disable`, `rotate`, `delete`, `replay`.
    action: String,
    event_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

pub(super) async fn act(
    State(state): State<AppState>,
    signed: Signed,
    ApiPath(id): ApiPath<i64>,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Err(r) = signed.check_csrf(&f.csrf) {
        return axum::response::IntoResponse::into_response(r);
    }
    let now = state.clock.now();
    let back = format!("/dashboard/webhooks/{id}");
    let Ok(Some(mut e)) = state.store.endpoint(id).await else {
        return error_flash("/dashboard/webhooks", format!("no webhook endpoint {id}"));
    };
    match f.action.as_str() {
        "enable" | "disable" => {
            let enable = f.action == "enable";
            if enable && !e.enabled {
                e.failing_since = None;
            }
            e.enabled = enable;
            e.disabled_reason = None;
            match state.store.update_endpoint(&e, now).await {
                Ok(_) => see_other(&format!("{back}?done={}d", f.action)),
                Err(err) => error_flash(&back, err),
            }
        }
        "delete" => match state.store.delete_endpoint(id).await {
            Ok(_) => see_other("/dashboard/webhooks?done=deleted"),
            Err(err) => error_flash(&back, err),
        },
        "rotate" => {
            let secret = WebhookSecret::generate();
            let until = now + chrono::Duration::hours(24);
            match state
                .store
                .rotate_endpoint_secret(id, secret.expose(), until, now)
                .await
            {
                Ok(_) => {
                    let text = format!(
                        "New secret (copy it now: it is not shown again): {} — the old one also signs until {}",
                        secret.expose(),
                        when(Some(until))
                    );
                    detail_page(&state, &signed, id, Flash::ok(text)).await
                }
                Err(err) => error_flash(&back, err),
            }
        }
        "replay" => {
            let field = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
            let result = match (field(&f.event_id), field(&f.from)) {
                (Some(ev), _) => match state.store.replay_event(id, &ev, now).await {
                    Ok(true) => Ok(1),
                    Ok(false) => Err(format!("no event {ev:?} was ever sent")),
                    Err(err) => Err(err.to_string()),
                },
                (None, Some(from)) => {
                    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).map(|t| t.to_utc());
                    match (parse(&from), field(&f.to).map(|t| parse(&t)).transpose()) {
                        (Ok(from), Ok(to)) => state
                            .store
                            .replay_range(id, from, to.unwrap_or(now), now)
                            .await
                            .map_err(|e| e.to_string()),
                        _ => Err("from and to are RFC 3339 times, e.g. 2026-12-01T00:00:00Z".to_owned()),
                    }
                }
                _ => Err("give an event id, or a time range".to_owned()),
            };
            match result {
                Ok(n) => see_other(&format!("{back}?done=replayed:{n}")),
                Err(text) => error_flash(&back, text),
            }
        }
        other => error_flash(&back, format!("no such action: {other:?}")),
    }
}

async fn detail_page(state: &AppState, signed: &Signed, id: i64, flash: Option<Flash>) -> Response {
    let Ok(Some(e)) = state.store.endpoint(id).await else {
        return error_flash("/dashboard/webhooks", format!("no webhook endpoint {id}"));
    };
    let (attempts, deliveries) = tokio::join!(
        state.store.delivery_attempts(id, None, 100),
        state.store.deliveries(id, None, None, 100)
    );
    let attempts: Vec<_> = attempts
        .unwrap_or_default()
        .into_iter()
        .map(|a| minijinja::context! { at => when(a.at), event_id => a.event_id, event_type => a.event_type, message_id => a.message_id, attempt => a.attempt, status => a.status, latency_ms => a.latency_ms, error => a.error })
        .collect();
    let deliveries: Vec<_> = deliveries
        .unwrap_or_default()
        .into_iter()
        .map(|d| minijinja::context! { event_id => d.event_id, event_type => d.event_type, message_id => d.message_id, status => d.status, attempts => d.attempts, next => when(d.next_attempt_at), delivered => when(d.delivered_at), last_status => d.last_status })
        .collect();
    page(
        signed,
        "webhook.html",
        "Webhook endpoint",
        "webhooks",
        flash,
        minijinja::context! {
            e => minijinja::context! { id => e.id, url => e.url, description => e.description, events => e.events.join(", "), enabled => e.enabled, disabled_reason => e.disabled_reason, failing_since => when(e.failing_since), last_success_at => when(e.last_success_at), previous_secret_until => when(e.previous_secret_until) },
            attempts, deliveries,
        },
    )
}

pub(super) async fn detail(
    State(state): State<AppState>,
    signed: Signed,
    ApiPath(id): ApiPath<i64>,
    Query(q): Query<DoneQuery>,
) -> Response {
    detail_page(&state, &signed, id, done_flash(q.done.as_deref())).await
}
