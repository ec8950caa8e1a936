//! `/api/alerts`: the rules (the environment's and stored ones), each
//! condition's state and the history; add and remove stored rules.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ApiPath, ErrorBody};
use super::AppState;
use crate::alerts::Rule;
use crate::store::AlertEvent;

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConditionState {
    /// The rule and its subject (`failure-ratio/channel=sms`).
    pub key: String,
    pub firing: bool,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub summary: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Alerts {
    pub rules: Vec<Rule>,
    pub conditions: Vec<ConditionState>,
    /// The newest 100 events, newest first.
    pub events: Vec<AlertEvent>,
}

/// Alert rules, the state of each condition, and the history.
#[utoipa::path(get, path = "/api/alerts", tag = "alerts",
    responses((status = 200, body = Alerts), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<Alerts>, ApiError> {
    let rules = state.alerts.rules().await;
    let conditions = state
        .store
        .alert_states()
        .await?
        .into_iter()
        .map(|s| ConditionState {
            summary: s
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .and_then(|v| v.get("summary").and_then(|x| x.as_str()).map(str::to_owned)),
            key: s.key,
            firing: s.firing,
            since: s.since,
        })
        .collect();
    let events = state.store.alert_events(100).await?;
    Ok(Json(Alerts {
        rules,
        conditions,
        events,
    }))
}

/// Add a rule (kept in the database; the environment's rules stay as set).
#[utoipa::path(post, path = "/api/alerts/rules", tag = "alerts", request_body = Rule,
    responses((status = 201, body = Rule), (status = 409, description = "A rule with this id exists", body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn add(
    State(state): State<AppState>,
    body: Result<Json<Rule>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(mut rule) = body?;
    rule.source = "stored".into();
    rule.validate()
        .map_err(|(field, e)| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", e).field(field))?;
    let conflict = || ApiError::new(StatusCode::CONFLICT, "exists", "a rule with this id exists").field("id");
    if state.alerts.rules().await.iter().any(|r| r.id == rule.id) {
        return Err(conflict());
    }
    let json = serde_json::to_string(&rule).expect("rule serializes");
    if !state.store.add_alert_rule(&rule.id, &json, state.clock.now()).await? {
        return Err(conflict());
    }
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

/// Remove a stored rule.
#[utoipa::path(delete, path = "/api/alerts/rules/{id}", tag = "alerts", params(("id" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, description = "No stored rule with this id", body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn remove(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    if state.store.delete_alert_rule(&id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "no stored rule named {id:?} (rules from the environment are changed there)"
        )))
    }
}
