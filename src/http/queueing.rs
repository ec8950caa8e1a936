//! `POST /api/messages` and `POST /api/messages/batch`: queue messages,
//! optionally under an `Idempotency-Key`.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody, ItemError};
use super::AppState;
use crate::domain::{parse_instant, NewMessage, RawMessage, ValidationError};
use crate::store::{Idempotent, Message};

/// Most messages in one batch request.
pub(super) const MAX_BATCH: usize = 1000;

/// A message to queue. Unknown fields are rejected.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MessageRequest {
    /// `sms`, `whatsapp` or `email`.
    #[schema(schema_with = super::schema::channel, required = true)]
    pub channel: Option<String>,
    /// E.164 phone number, `whatsapp:+E164`, or an email address.
    #[schema(required = true)]
    pub recipient: Option<String>,
    /// Email subject (required for email).
    pub subject: Option<String>,
    /// The text of the message.
    pub body: Option<String>,
    /// Email HTML part.
    pub html_body: Option<String>,
    /// Not before this time: RFC 3339 with an offset, years 1970 to 9999.
    #[schema(format = DateTime)]
    pub send_at: Option<String>,
    /// A JSON object given back unchanged.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Twilio Content template SID (`HX…`) instead of a body (SMS/WhatsApp).
    pub content_sid: Option<String>,
    /// The template's variables.
    #[schema(value_type = Option<Object>)]
    pub content_variables: Option<serde_json::Value>,
    /// Render this template (see /api/templates) instead of giving content.
    pub template: Option<String>,
    /// The template locale wanted, e.g. `pt-BR` (falls back to `pt`, then the template's default).
    pub locale: Option<String>,
    /// The template's variables, a JSON object.
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

impl MessageRequest {
    /// Parse, rendering the template if there is one.
    pub(super) async fn prepare(
        &self,
        store: &crate::store::Store,
    ) -> Result<NewMessage, crate::templates::PrepareError> {
        match &self.template {
            None => {
                if self.data.is_some() || self.locale.is_some() {
                    let field = if self.data.is_some() { "data" } else { "locale" };
                    return Err(ValidationError::new(field, format!("{field} is only used with a template")).into());
                }
                Ok(self.parse()?)
            }
            Some(name) => {
                let raw = self.raw()?;
                crate::templates::prepare(store, raw, name, self.locale.as_deref(), self.data.as_ref()).await
            }
        }
    }

    fn raw(&self) -> Result<RawMessage, ValidationError> {
        let send_at = match self.send_at.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(parse_instant("send_at", s)?),
        };
        Ok(RawMessage {
            channel: self.channel.clone(),
            recipient: self.recipient.clone(),
            subject: self.subject.clone(),
            body: self.body.clone(),
            html_body: self.html_body.clone(),
            send_at,
            metadata: self.metadata.clone(),
            content_sid: self.content_sid.clone(),
            content_variables: self.content_variables.clone(),
        })
    }

    /// The same parser as the CLI and the processor.
    pub(super) fn parse(&self) -> Result<NewMessage, ValidationError> {
        NewMessage::parse(&self.raw()?)
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BatchRequest {
    /// Up to 1,000 messages; all are stored or none.
    pub messages: Vec<MessageRequest>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BatchResponse {
    pub messages: Vec<Message>,
}

/// A stable hash of the request, to recognise a repeated idempotent request.
fn request_hash(value: &impl Serialize) -> String {
    // serde_json::Value sorts object keys: the same JSON gives the same text.
    let canonical = serde_json::to_value(value).map(|v| v.to_string()).unwrap_or_default();
    let digest = Sha256::digest(canonical.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `Idempotency-Key` header, scoped to the caller's API key: two keys
/// using the same idempotency key are two different requests.
fn idempotency_key(headers: &HeaderMap, caller: &Caller) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v.to_str().map(str::trim).unwrap_or("");
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            "Idempotency-Key must be 1 to 255 visible characters",
        )
        .field("Idempotency-Key"));
    }
    Ok(Some(format!("{}:{key}", caller.0)))
}

fn conflict() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_key_reused",
        "this Idempotency-Key was already used with a different request",
    )
    .field("Idempotency-Key")
}

/// Queue one message.
#[utoipa::path(
    post, path = "/api/messages", tag = "messages",
    request_body = MessageRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe: the same key and body return the original message")),
    responses(
        (status = 202, description = "Queued", body = Message),
        (status = 200, description = "Repeated request with the same Idempotency-Key: the original message", body = Message),
        (status = 400, description = "Malformed JSON or header", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 409, description = "Idempotency-Key reused with a different body", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid; `field` names it", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Json<MessageRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, &caller)?;
    let Json(req) = body?;
    let msg = req.prepare(&state.store).await?;
    match key {
        None => {
            let stored = state.enqueuer.enqueue(msg).await?;
            Ok((StatusCode::ACCEPTED, Json(stored)).into_response())
        }
        Some(key) => {
            let hash = request_hash(&req);
            match state
                .store
                .enqueue_idempotent(&key, &hash, &[msg], state.clock.now())
                .await?
            {
                Idempotent::Created(mut m) => {
                    state.wake();
                    Ok((StatusCode::ACCEPTED, Json(m.remove(0))).into_response())
                }
                Idempotent::Replayed(mut m) if !m.is_empty() => Ok((StatusCode::OK, Json(m.remove(0))).into_response()),
                Idempotent::Replayed(_) => Err(conflict()),
                Idempotent::Conflict => Err(conflict()),
            }
        }
    }
}

/// Queue up to 1,000 messages: all or none.
#[utoipa::path(
    post, path = "/api/messages/batch", tag = "messages",
    request_body = BatchRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "As for a single message")),
    responses(
        (status = 202, description = "All queued, in order", body = BatchResponse),
        (status = 200, description = "Repeated request with the same Idempotency-Key", body = BatchResponse),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 409, description = "Idempotency-Key reused with a different body", body = ErrorBody),
        (status = 422, description = "Nothing stored; `errors` lists each rejected message by index", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn create_batch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Json<BatchRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, &caller)?;
    let Json(req) = body?;
    if req.messages.is_empty() || req.messages.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!(
                "messages must hold 1 to {MAX_BATCH} messages (got {})",
                req.messages.len()
            ),
        )
        .field("messages"));
    }
    let mut parsed = Vec::with_capacity(req.messages.len());
    let mut items = Vec::new();
    for (index, m) in req.messages.iter().enumerate() {
        let prepared = match m.prepare(&state.store).await {
            Ok(p) => Ok(p),
            Err(crate::templates::PrepareError::Invalid(v)) => Err(("invalid_field", v.message, v.field)),
            Err(crate::templates::PrepareError::Limit(text)) => Err(("template_limit", text, "template")),
            Err(crate::templates::PrepareError::Store(s)) => return Err(s.into()),
        };
        match prepared {
            Ok(p) => parsed.push(p),
            Err((code, message, field)) => items.push(ItemError {
                index,
                code: code.into(),
                message,
                field: Some(format!("messages[{index}].{field}")),
            }),
        }
    }
    if !items.is_empty() {
        let mut err = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_batch",
            format!(
                "{} of {} messages are invalid; nothing was stored",
                items.len(),
                req.messages.len()
            ),
        )
        .field(items[0].field.clone().unwrap_or_default());
        err.items = items;
        return Err(err);
    }
    let now = state.clock.now();
    let (status, messages) = match key {
        None => (StatusCode::ACCEPTED, state.store.enqueue_many(&parsed, now).await?),
        Some(key) => match state
            .store
            .enqueue_idempotent(&key, &request_hash(&req), &parsed, now)
            .await?
        {
            Idempotent::Created(m) => (StatusCode::ACCEPTED, m),
            Idempotent::Replayed(m) => (StatusCode::OK, m),
            Idempotent::Conflict => return Err(conflict()),
        },
    };
    state.wake();
    Ok((status, Json(BatchResponse { messages })).into_response())
}
