//! `/api/messages`: inspect and steer messages (queueing is in `queueing.rs`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiPath, ErrorBody};
use super::AppState;
use crate::domain::{parse_instant, Channel, MessageStatus};
use crate::store::{Attempt, Event, ListFilter, Message};

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MessageList {
    pub messages: Vec<Message>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MessageDetail {
    #[serde(flatten)]
    pub message: Message,
    /// Every provider call, oldest first (`attempts` is the count).
    pub attempt_history: Vec<Attempt>,
    /// Every delivery receipt, oldest first.
    pub events: Vec<Event>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// pending, processing, sent, failed or cancelled
    #[param(schema_with = super::schema::status)]
    pub status: Option<String>,
    /// sms, whatsapp or email
    #[param(schema_with = super::schema::channel)]
    pub channel: Option<String>,
    /// Exact recipient as stored (E.164, whatsapp:+E164, or email)
    pub recipient: Option<String>,
    /// Created at or after (RFC 3339, years 1970 to 9999)
    #[param(format = DateTime)]
    pub created_from: Option<String>,
    /// Created before (RFC 3339, years 1970 to 9999)
    #[param(format = DateTime)]
    pub created_to: Option<String>,
    /// Only messages still scheduled for the future
    #[param(value_type = Option<bool>)]
    pub scheduled: Option<String>,
    /// Only messages made from this template (its name)
    pub template: Option<String>,
    /// Only messages whose metadata has this key (with `metadata_value`), e.g. `order_id`
    #[param(max_length = 200)]
    pub metadata_key: Option<String>,
    /// The value of `metadata_key`: a string as it is, a number or boolean as JSON writes it (`1234`, `true`); at most 200 characters
    #[param(max_length = 200)]
    pub metadata_value: Option<String>,
    /// From `next_cursor` of the previous page
    #[param(pattern = "^[0-9]+$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50)
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

fn time_param(field: &'static str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|s| {
        parse_instant(field, s)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.message).field(field))
    })
    .transpose()
}

/// List messages, newest first (within a creation range: newest created first), with filters and cursor pagination.
#[utoipa::path(
    get, path = "/api/messages", tag = "messages",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of messages", body = MessageList),
        (status = 400, description = "A bad filter; `field` names it", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<MessageList>, ApiError> {
    let Query(q) = query?;
    let bad = |field: &'static str, e: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e).field(field);
    let status = q
        .status
        .as_deref()
        .map(MessageStatus::parse)
        .transpose()
        .map_err(|e| bad("status", e.message))?;
    let channel = q
        .channel
        .as_deref()
        .map(Channel::parse)
        .transpose()
        .map_err(|e| bad("channel", e.to_string()))?;
    let limit = q.limit.as_deref().map_or(Some(50), |l| l.trim().parse::<u32>().ok());
    let Some(limit) = limit.filter(|l| (1..=1000).contains(l)) else {
        return Err(bad("limit", "limit must be a whole number from 1 to 1000".into()));
    };
    let scheduled = match q.scheduled.as_deref().map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(bad("scheduled", "scheduled must be true or false".into())),
    };
    let before_id = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| bad("cursor", "cursor must be a next_cursor value".into()))?,
        ),
    };
    let metadata = match (q.metadata_key.as_deref(), q.metadata_value.as_deref()) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(bad(
                "metadata_value",
                "metadata_value is required with metadata_key".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(bad(
                "metadata_key",
                "metadata_key is required with metadata_value".into(),
            ))
        }
        (Some(k), Some(v)) => Some(crate::store::metadata_filter(k, v).map_err(|(field, e)| bad(field, e))?),
    };
    let template = match q.template.as_deref().map(str::trim) {
        Some("") => return Err(bad("template", "template must not be empty".into())),
        t => t.map(str::to_owned),
    };
    let filter = ListFilter {
        status,
        channel,
        recipient: q.recipient.clone(),
        created_from: time_param("created_from", q.created_from.as_deref())?,
        created_to: time_param("created_to", q.created_to.as_deref())?,
        before_id,
        limit,
        scheduled_after: scheduled.then(|| state.clock.now()),
        template,
        metadata,
    };
    let messages = state.store.list(&filter).await?;
    let next_cursor = if messages.len() == limit as usize {
        messages.last().map(|m| m.id.to_string())
    } else {
        None
    };
    Ok(Json(MessageList { messages, next_cursor }))
}

/// One message with every attempt.
#[utoipa::path(
    get, path = "/api/messages/{id}", tag = "messages",
    params(("id" = i64, Path, description = "Message id")),
    responses(
        (status = 200, description = "The message", body = MessageDetail),
        (status = 404, description = "No such message", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<MessageDetail>, ApiError> {
    let message = state.store.get(id).await?;
    let attempts = state.store.attempts(id).await?;
    let events = state.store.events(id).await?;
    Ok(Json(MessageDetail {
        message,
        attempt_history: attempts,
        events,
    }))
}

/// Queue a failed message again (a fresh round of retries), or send a
/// pending one that waits for a retry delay or a provider's pause now.
#[utoipa::path(
    post, path = "/api/messages/{id}/retry", tag = "messages",
    params(("id" = i64, Path, description = "Message id")),
    responses(
        (status = 200, description = "Pending and due now", body = Message),
        (status = 404, description = "No such message", body = ErrorBody),
        (status = 409, description = "Only failed messages, and pending ones waiting for a retry, can be retried", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn retry(State(state): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<Json<Message>, ApiError> {
    // The answer shows the row as the retry left it (a processor may take it
    // the moment after).
    let message = state.store.retry_one(id, state.clock.now()).await?;
    state.wake();
    Ok(Json(message))
}

/// Cancel a pending (or scheduled) message.
#[utoipa::path(
    post, path = "/api/messages/{id}/cancel", tag = "messages",
    params(("id" = i64, Path, description = "Message id")),
    responses(
        (status = 200, description = "Cancelled", body = Message),
        (status = 404, description = "No such message", body = ErrorBody),
        (status = 409, description = "Only pending messages can be cancelled", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn cancel(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Message>, ApiError> {
    Ok(Json(state.store.cancel(id, state.clock.now()).await?))
}
