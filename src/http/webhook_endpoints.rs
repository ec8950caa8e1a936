//! `/api/webhook-endpoints`: where Herald sends status webhooks (Standard
//! Webhooks), which events each endpoint gets, its signing secret, its
//! deliveries and their log, and replays.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiPath, ErrorBody};
use super::AppState;
use crate::domain::{check_text, EndpointUrl, EventFilter, TextKind, ValidationError};
use crate::signing::WebhookSecret;
use crate::store::{DeliveryAttempt, DeliveryRow, Endpoint, MAX_REPLAY};

/// The longest a rotated secret keeps signing.
pub(crate) const MAX_OVERLAP_HOURS: i64 = 7 * 24;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewEndpoint {
    /// `https://…` (or `http://` to 127.0.0.1, `[::1]` or localhost).
    #[schema(required = true)]
    pub url: Option<String>,
    /// Event types to send (`message.sent`, `message.failed`, …) or `["*"]`.
    #[schema(required = true)]
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// An empty string removes it.
    pub description: Option<String>,
    /// `true` enables it again (also after Herald disabled it).
    pub enabled: Option<bool>,
}

/// A new endpoint, with its secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_…`: verify the `webhook-signature` header with it. Shown only now.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct EndpointList {
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateRequest {
    /// How long the old secret keeps signing too (0 to 168 hours, default 24).
    pub overlap_hours: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Rotated {
    /// The new secret (shown only now).
    pub secret: String,
    /// Until then each webhook carries both signatures.
    pub previous_valid_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayRequest {
    /// One event, by its `webhook-id`.
    pub event_id: Option<String>,
    /// Or every event created from `from` (RFC 3339) …
    pub from: Option<String>,
    /// … to `to`.
    pub to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Replayed {
    /// Deliveries queued.
    pub replayed: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeliveryList {
    pub deliveries: Vec<DeliveryRow>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AttemptList {
    pub attempts: Vec<DeliveryAttempt>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// `pending`, `delivered` or `failed` (deliveries only)
    pub status: Option<String>,
    /// Only ids below this (the next page)
    #[param(value_type = Option<i64>)]
    pub before: Option<String>,
    /// At most this many (1 to 1000, default 100)
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

fn invalid(e: ValidationError) -> ApiError {
    ApiError::from(e)
}

fn parse_events(words: &[String]) -> Result<EventFilter, ApiError> {
    EventFilter::parse(words).map_err(invalid)
}

fn parse_description(d: &str) -> Result<Option<String>, ApiError> {
    check_text("description", d, TextKind::SingleLine).map_err(invalid)?;
    if d.chars().count() > 500 {
        return Err(invalid(ValidationError::new(
            "description",
            "description is at most 500 characters",
        )));
    }
    Ok(Some(d.trim().to_owned()).filter(|d| !d.is_empty()))
}

async fn endpoint_or_404(state: &AppState, id: i64) -> Result<Endpoint, ApiError> {
    state
        .store
        .endpoint(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("webhook endpoint {id} not found")))
}

/// Add an endpoint. The answer carries its signing secret: it is not shown again.
#[utoipa::path(post, path = "/api/webhook-endpoints", tag = "webhook endpoints", request_body = NewEndpoint,
    responses((status = 201, body = CreatedEndpoint), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn create(
    State(state): State<AppState>,
    body: Result<Json<NewEndpoint>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let url = EndpointUrl::parse(req.url.as_deref().unwrap_or("")).map_err(invalid)?;
    let Some(words) = req.events else {
        return Err(invalid(ValidationError::new(
            "events",
            "events is required: a list of event types, or [\"*\"]",
        )));
    };
    let events = parse_events(&words)?;
    let description = match req.description.as_deref() {
        Some(d) => parse_description(d)?,
        None => None,
    };
    let secret = WebhookSecret::generate();
    let endpoint = state
        .store
        .create_endpoint(
            &url,
            description.as_deref(),
            &events,
            secret.expose(),
            req.enabled.unwrap_or(true),
            state.clock.now(),
        )
        .await?;
    tracing::info!(endpoint = endpoint.id, "status webhook endpoint added");
    Ok((
        StatusCode::CREATED,
        Json(CreatedEndpoint {
            endpoint,
            secret: secret.expose().to_owned(),
        }),
    )
        .into_response())
}

/// List endpoints (never their secrets).
#[utoipa::path(get, path = "/api/webhook-endpoints", tag = "webhook endpoints",
    responses((status = 200, body = EndpointList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<EndpointList>, ApiError> {
    Ok(Json(EndpointList {
        endpoints: state.store.endpoints().await?,
    }))
}

/// One endpoint.
#[utoipa::path(get, path = "/api/webhook-endpoints/{id}", tag = "webhook endpoints", params(("id" = i64, Path)),
    responses((status = 200, body = Endpoint), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn get(State(state): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(endpoint_or_404(&state, id).await?))
}

/// Change an endpoint: its URL, events, description, or whether it is
/// enabled (enabling one Herald disabled resumes its waiting deliveries).
#[utoipa::path(patch, path = "/api/webhook-endpoints/{id}", tag = "webhook endpoints", params(("id" = i64, Path)),
    request_body = EndpointPatch,
    responses((status = 200, body = Endpoint), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn update(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    body: Result<Json<EndpointPatch>, JsonRejection>,
) -> Result<Json<Endpoint>, ApiError> {
    let Json(patch) = body?;
    let mut e = endpoint_or_404(&state, id).await?;
    if let Some(u) = &patch.url {
        e.url = EndpointUrl::parse(u).map_err(invalid)?.as_str().to_owned();
    }
    if let Some(words) = &patch.events {
        e.events = parse_events(words)?.words();
    }
    if let Some(d) = &patch.description {
        e.description = parse_description(d)?;
    }
    if let Some(enabled) = patch.enabled {
        if enabled && !e.enabled {
            tracing::info!(endpoint = id, "status webhook endpoint enabled");
            e.failing_since = None;
        }
        e.enabled = enabled;
        // Herald's reason goes once an operator decides; an operator's
        // disabling holds events back no longer (they are not kept).
        e.disabled_reason = None;
    }
    state.store.update_endpoint(&e, state.clock.now()).await?;
    Ok(Json(endpoint_or_404(&state, id).await?))
}

/// Delete an endpoint with its deliveries and their log.
#[utoipa::path(delete, path = "/api/webhook-endpoints/{id}", tag = "webhook endpoints", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn delete(State(state): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<Response, ApiError> {
    if state.store.delete_endpoint(id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("webhook endpoint {id} not found")))
    }
}

/// A new signing secret; the old one keeps signing too for `overlap_hours`.
#[utoipa::path(post, path = "/api/webhook-endpoints/{id}/rotate-secret", tag = "webhook endpoints",
    params(("id" = i64, Path)), request_body = RotateRequest,
    responses((status = 200, body = Rotated), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn rotate(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    body: Result<Json<RotateRequest>, JsonRejection>,
) -> Result<Json<Rotated>, ApiError> {
    let Json(req) = body?;
    let hours = req.overlap_hours.unwrap_or(24);
    if !(0..=MAX_OVERLAP_HOURS).contains(&hours) {
        return Err(invalid(ValidationError::new(
            "overlap_hours",
            format!("overlap_hours is 0 to {MAX_OVERLAP_HOURS}"),
        )));
    }
    endpoint_or_404(&state, id).await?;
    let secret = WebhookSecret::generate();
    let now = state.clock.now();
    let until = now + chrono::Duration::hours(hours);
    state
        .store
        .rotate_endpoint_secret(id, secret.expose(), until, now)
        .await?;
    tracing::info!(endpoint = id, overlap_hours = hours, "status webhook secret rotated");
    Ok(Json(Rotated {
        secret: secret.expose().to_owned(),
        previous_valid_until: (hours > 0).then_some(until),
    }))
}

fn time_field(field: &'static str, v: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(v.trim()).map(|t| t.to_utc()).map_err(|_| {
        invalid(ValidationError::new(
            field,
            format!("{field} must be RFC 3339, e.g. 2026-12-01T00:00:00Z"),
        ))
    })
}

/// Deliver again one event (by `event_id`, its `webhook-id`), or every
/// event the endpoint wants created in a time range (at most 100,000).
/// Replays keep their `webhook-id`: a receiver that already handled one
/// sees it again and can skip it.
#[utoipa::path(post, path = "/api/webhook-endpoints/{id}/replay", tag = "webhook endpoints",
    params(("id" = i64, Path)), request_body = ReplayRequest,
    responses((status = 202, body = Replayed), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn replay(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    body: Result<Json<ReplayRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    endpoint_or_404(&state, id).await?;
    let now = state.clock.now();
    let replayed = match (req.event_id.as_deref(), req.from.as_deref(), req.to.as_deref()) {
        (Some(ev), None, None) => {
            if !state.store.replay_event(id, ev.trim(), now).await? {
                return Err(ApiError::not_found(format!("no event {ev:?} was ever sent")).field("event_id"));
            }
            1
        }
        (None, Some(from), to) => {
            let from = time_field("from", from)?;
            let to = match to {
                Some(t) => time_field("to", t)?,
                None => now,
            };
            if to <= from {
                return Err(invalid(ValidationError::new("to", "to must be after from")));
            }
            state.store.replay_range(id, from, to, now).await?
        }
        _ => {
            return Err(invalid(ValidationError::new(
                "event_id",
                format!("give event_id, or from (and optionally to) for a range of at most {MAX_REPLAY} events"),
            )))
        }
    };
    Ok((StatusCode::ACCEPTED, Json(Replayed { replayed })).into_response())
}

fn page(q: &PageQuery) -> Result<(Option<i64>, i64), ApiError> {
    let before = match q.before.as_deref() {
        None => None,
        Some(b) => Some(b.trim().parse::<i64>().map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", "before must be an id").field("before")
        })?),
    };
    let limit = q.limit.as_deref().map_or(Some(100), |l| l.trim().parse::<i64>().ok());
    let Some(limit) = limit.filter(|l| (1..=1000).contains(l)) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit must be a whole number from 1 to 1000",
        )
        .field("limit"));
    };
    Ok((before, limit))
}

/// The endpoint's deliveries (one per event), newest first.
#[utoipa::path(get, path = "/api/webhook-endpoints/{id}/deliveries", tag = "webhook endpoints",
    params(("id" = i64, Path), PageQuery),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn deliveries(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let Query(q) = query?;
    let (before, limit) = page(&q)?;
    if let Some(s) = q.status.as_deref() {
        if !matches!(s, "pending" | "delivered" | "failed") {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "status is pending, delivered or failed",
            )
            .field("status"));
        }
    }
    endpoint_or_404(&state, id).await?;
    Ok(Json(DeliveryList {
        deliveries: state.store.deliveries(id, q.status.as_deref(), before, limit).await?,
    }))
}

/// The endpoint's delivery log: every request, its status and latency.
#[utoipa::path(get, path = "/api/webhook-endpoints/{id}/attempts", tag = "webhook endpoints",
    params(("id" = i64, Path), PageQuery),
    responses((status = 200, body = AttemptList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn attempts(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<AttemptList>, ApiError> {
    let Query(q) = query?;
    let (before, limit) = page(&q)?;
    endpoint_or_404(&state, id).await?;
    Ok(Json(AttemptList {
        attempts: state.store.delivery_attempts(id, before, limit).await?,
    }))
}
