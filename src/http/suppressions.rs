//! `/api/suppressions`: recipients who must not be messaged on a channel.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiPath, ErrorBody};
use super::AppState;
use crate::domain::{check_text, parse_channel_and_recipient, Channel, TextKind};
use crate::store::Suppression;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SuppressionRequest {
    #[schema(schema_with = super::schema::channel, required = true)]
    pub channel: Option<String>,
    /// E.164 phone number, `whatsapp:+E164`, or an email address.
    #[schema(required = true)]
    pub recipient: Option<String>,
    /// Why (shown in the `error` of messages it stops).
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SuppressionList {
    pub suppressions: Vec<Suppression>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SuppressionQuery {
    /// Only this channel
    #[param(schema_with = super::schema::channel)]
    pub channel: Option<String>,
    /// At most this many (1 to 1000, default 100)
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// List suppressed recipients, newest first.
#[utoipa::path(get, path = "/api/suppressions", tag = "suppressions", params(SuppressionQuery),
    responses((status = 200, body = SuppressionList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list(
    State(state): State<AppState>,
    query: Result<Query<SuppressionQuery>, QueryRejection>,
) -> Result<Json<SuppressionList>, ApiError> {
    let Query(q) = query?;
    let channel = q
        .channel
        .as_deref()
        .map(Channel::parse)
        .transpose()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.to_string()).field("channel"))?;
    let limit = q.limit.as_deref().map_or(Some(100), |l| l.trim().parse::<u32>().ok());
    let Some(limit) = limit.filter(|l| (1..=1000).contains(l)) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit must be a whole number from 1 to 1000",
        )
        .field("limit"));
    };
    let suppressions = state.store.suppressions(channel, limit).await?;
    Ok(Json(SuppressionList { suppressions }))
}

/// Add a recipient to a channel's suppression list.
#[utoipa::path(post, path = "/api/suppressions", tag = "suppressions", request_body = SuppressionRequest,
    responses((status = 201, description = "Added"), (status = 200, description = "Already there"),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn add(
    State(state): State<AppState>,
    body: Result<Json<SuppressionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let recipient = parse_channel_and_recipient(req.channel.as_deref(), req.recipient.as_deref())?;
    let channel = recipient.channel();
    if let Some(r) = &req.reason {
        check_text("reason", r, TextKind::SingleLine)?;
    }
    let reason = req
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or("added by an operator");
    let added = state
        .store
        .suppress(&recipient, reason, "api", state.clock.now())
        .await?;
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(serde_json::json!({"channel": channel, "recipient": recipient.to_string()})),
    )
        .into_response())
}

/// Remove a recipient from a channel's suppression list (they opted back in).
#[utoipa::path(delete, path = "/api/suppressions/{channel}/{recipient}", tag = "suppressions",
    params(("channel" = String, Path), ("recipient" = String, Path, description = "URL-encoded, e.g. %2B14153234567")),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn remove(
    State(state): State<AppState>,
    ApiPath((channel, recipient)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let recipient = parse_channel_and_recipient(Some(&channel), Some(&recipient))?;
    let channel = recipient.channel();
    if state.store.unsuppress(&recipient).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "{recipient} is not suppressed on {channel}"
        )))
    }
}
