//! Provider webhooks: Twilio status callbacks and the SendGrid Event
//! Webhook. Authenticated by the providers' signatures (not API keys); an
//! unsigned or wrongly signed request changes nothing.

use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::domain::{Channel, Recipient};
use crate::prometheus::{Exposition, Kind};
use crate::providers::{HERALD_ID_ARG, SENDGRID, TWILIO};
use crate::receipts::{fresh_timestamp, rank, sendgrid_delivery_status, twilio_delivery_status, verify_twilio};
use crate::store::{ReceiptResult, ReceiptUpdate};

/// Receipts by provider and result, for `/metrics`.
#[derive(Debug, Default)]
pub struct ReceiptCounters {
    pub twilio_applied: AtomicU64,
    pub twilio_duplicate: AtomicU64,
    pub twilio_unmatched: AtomicU64,
    pub twilio_rejected: AtomicU64,
    pub sendgrid_applied: AtomicU64,
    pub sendgrid_duplicate: AtomicU64,
    pub sendgrid_unmatched: AtomicU64,
    pub sendgrid_rejected: AtomicU64,
}

impl ReceiptCounters {
    fn count(&self, provider: &str, r: &ReceiptResult) {
        let c = match (provider, r) {
            (TWILIO, ReceiptResult::Applied(_)) => &self.twilio_applied,
            (TWILIO, ReceiptResult::Duplicate(_)) => &self.twilio_duplicate,
            (TWILIO, ReceiptResult::Unmatched) => &self.twilio_unmatched,
            (_, ReceiptResult::Applied(_)) => &self.sendgrid_applied,
            (_, ReceiptResult::Duplicate(_)) => &self.sendgrid_duplicate,
            (_, ReceiptResult::Unmatched) => &self.sendgrid_unmatched,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, out: &mut Exposition) {
        out.family(
            "herald_receipts_total",
            Kind::Counter,
            "Delivery receipts received, by provider and result.",
        );
        for (provider, result, c) in [
            ("twilio", "applied", &self.twilio_applied),
            ("twilio", "duplicate", &self.twilio_duplicate),
            ("twilio", "unmatched", &self.twilio_unmatched),
            ("twilio", "rejected", &self.twilio_rejected),
            ("sendgrid", "applied", &self.sendgrid_applied),
            ("sendgrid", "duplicate", &self.sendgrid_duplicate),
            ("sendgrid", "unmatched", &self.sendgrid_unmatched),
            ("sendgrid", "rejected", &self.sendgrid_rejected),
        ] {
            out.sample(
                "herald_receipts_total",
                &[("provider", provider), ("result", result)],
                c.load(Ordering::Relaxed),
            );
        }
    }
}

/// Put the recipient of message `id` on its channel's suppression list.
async fn suppress_recipient_of(state: &AppState, id: i64, reason: &str, source: &str) -> Result<(), ApiError> {
    let m = state.store.get(id).await?;
    // The message was sent, so its recipient parsed then; a row edited since
    // is left alone.
    let Some(recipient) = Channel::parse(&m.channel)
        .ok()
        .and_then(|c| Recipient::parse(c, &m.recipient).ok())
    else {
        return Ok(());
    };
    state
        .store
        .suppress(&recipient, reason, source, state.clock.now())
        .await?;
    Ok(())
}

/// The largest Twilio status callback accepted: a form of a dozen short
/// fields is well under 4 KiB.
pub const TWILIO_MAX_BODY: usize = 64 * 1024;
/// The largest SendGrid event batch accepted: SendGrid posts batches of
/// at most about 1,000 events (a few hundred KiB to 2 MiB).
pub const SENDGRID_MAX_BODY: usize = 4 * 1024 * 1024;
/// Signed webhook requests handled at once; more wait for a slot.
pub const WEBHOOK_CONCURRENCY: usize = 8;
/// How long a webhook request waits for a slot before a 503 (the
/// providers retry those).
const WEBHOOK_SLOT_WAIT: Duration = Duration::from_secs(5);

/// Read a webhook's body once its signature header has been seen: wait for
/// one of the few webhook slots, refuse a declared length over `max`
/// before reading any of it, and stop reading at `max`.
async fn read_signed_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than this webhook accepts ({max} bytes)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let permit = tokio::time::timeout(WEBHOOK_SLOT_WAIT, state.webhook_slots.clone().acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many webhook requests at once; retry shortly",
            )
        })?;
    let bytes = axum::body::to_bytes(body, max).await.map_err(|_| too_large())?;
    Ok((bytes, permit))
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "invalid_signature", message)
}

fn disabled(what: &str) -> ApiError {
    ApiError::not_found(format!("{what} is not enabled on this server"))
}

/// Twilio status callback.
#[utoipa::path(
    post, path = "/webhooks/twilio/status", tag = "webhooks",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Twilio's status callback form"),
    responses(
        (status = 200, description = "Receipt accepted (also for unknown messages, so Twilio stops retrying)"),
        (status = 400, description = "Malformed callback", body = ErrorBody),
        (status = 403, description = "Missing or wrong X-Twilio-Signature; nothing changed", body = ErrorBody),
        (status = 404, description = "Not enabled: needs TWILIO_AUTH_TOKEN and PUBLIC_URL", body = ErrorBody),
    )
)]
pub(super) async fn twilio_status(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let hooks = &state.webhooks;
    let (Some(token), Some(public)) = (&hooks.twilio_token, &hooks.public_url) else {
        return Err(disabled(
            "the Twilio status callback (set TWILIO_AUTH_TOKEN and PUBLIC_URL)",
        ));
    };
    let (parts, body) = req.into_parts();
    let signature = parts
        .headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if signature.is_empty() {
        hooks.counters.twilio_rejected.fetch_add(1, Ordering::Relaxed);
        return Err(forbidden("X-Twilio-Signature is missing or wrong"));
    }
    let (body, _slot) = read_signed_body(&state, &parts.headers, body, TWILIO_MAX_BODY).await?;
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    // The URL Twilio called: the public one, not what this server saw behind a proxy.
    let uri = &parts.uri;
    let url = format!(
        "{public}{}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path())
    );
    if !verify_twilio(token.expose_secret(), &url, &params, signature) {
        hooks.counters.twilio_rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("Twilio status callback with a missing or wrong signature rejected");
        return Err(forbidden("X-Twilio-Signature is missing or wrong"));
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (Some(sid), Some(status)) = (
        get("MessageSid").or_else(|| get("SmsSid")),
        get("MessageStatus").or_else(|| get("SmsStatus")),
    ) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_callback",
            "MessageSid and MessageStatus are required",
        ));
    };
    let error_code = get("ErrorCode").filter(|c| !c.is_empty() && c != "0");
    let detail: Value = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let update = ReceiptUpdate {
        provider: TWILIO,
        message_id: None,
        provider_message_id: Some(sid.clone()),
        email: None,
        event: status.clone(),
        delivery_status: twilio_delivery_status(&status).map(|s| (s, rank(s))),
        occurred_at: None,
        error_code: error_code.clone(),
        dedupe_key: format!("twilio:{sid}:{status}:{}", error_code.as_deref().unwrap_or("")),
        detail,
        // A WhatsApp message that did not reach its recipient soon after
        // it was sent falls back to SMS; one the recipient blocked
        // (63014) or opted out of (21610) does not.
        fallback_within: hooks
            .whatsapp_fallback
            .filter(|_| matches!(status.as_str(), "undelivered" | "failed"))
            .filter(|_| !matches!(error_code.as_deref(), Some("63014" | "21610")))
            .map(|f| f.receipt_window)
            .filter(|w| !w.is_zero()),
    };
    let result = state.store.apply_receipt(&update, state.clock.now()).await?;
    hooks.counters.count(TWILIO, &result);
    if let (Some("21610"), ReceiptResult::Applied(id)) = (error_code.as_deref(), &result) {
        // The recipient replied STOP.
        suppress_recipient_of(&state, *id, "replied STOP (Twilio 21610)", TWILIO).await?;
    }
    if result == ReceiptResult::Unmatched {
        tracing::info!(message_sid = %sid, "Twilio receipt for an unknown message acknowledged");
    }
    Ok(StatusCode::OK.into_response())
}

/// SendGrid Event Webhook.
#[utoipa::path(
    post, path = "/webhooks/sendgrid/events", tag = "webhooks",
    request_body(content = Vec<Object>, description = "A batch of SendGrid events"),
    responses(
        (status = 200, description = "Events accepted (unknown messages are acknowledged too)"),
        (status = 400, description = "Not a JSON array of events", body = ErrorBody),
        (status = 403, description = "Missing, wrong or stale signature; nothing changed", body = ErrorBody),
        (status = 404, description = "Not enabled: needs SENDGRID_WEBHOOK_PUBLIC_KEY", body = ErrorBody),
    )
)]
pub(super) async fn sendgrid_events(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let hooks = &state.webhooks;
    let Some(key) = &hooks.sendgrid_key else {
        return Err(disabled("the SendGrid Event Webhook (set SENDGRID_WEBHOOK_PUBLIC_KEY)"));
    };
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let ts = header("x-twilio-email-event-webhook-timestamp");
    let sig = header("x-twilio-email-event-webhook-signature");
    let fresh = fresh_timestamp(&ts, state.clock.now(), chrono::Duration::minutes(5)).is_some();
    if !fresh || sig.is_empty() {
        hooks.counters.sendgrid_rejected.fetch_add(1, Ordering::Relaxed);
        return Err(forbidden("the event webhook signature is missing, wrong or too old"));
    }
    let (body, _slot) = read_signed_body(&state, headers, body, SENDGRID_MAX_BODY).await?;
    if !key.verify(&ts, &body, &sig) {
        hooks.counters.sendgrid_rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            fresh,
            "SendGrid event webhook with a missing, wrong or stale signature rejected"
        );
        return Err(forbidden("the event webhook signature is missing, wrong or too old"));
    }
    let Ok(Value::Array(events)) = serde_json::from_slice::<Value>(&body) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_events",
            "expected a JSON array of events",
        ));
    };
    let now = state.clock.now();
    for ev in &events {
        let Some(event) = ev.get("event").and_then(Value::as_str) else {
            continue;
        };
        let Some(event_id) = ev.get("sg_event_id").and_then(Value::as_str) else {
            continue;
        };
        let herald_id = match ev.get(HERALD_ID_ARG) {
            Some(Value::String(s)) => s.parse::<i64>().ok(),
            Some(Value::Number(n)) => n.as_i64(),
            _ => None,
        };
        // sg_message_id = <X-Message-Id>.<suffix>
        let provider_id = ev
            .get("sg_message_id")
            .and_then(Value::as_str)
            .map(|s| s.split('.').next().unwrap_or(s).to_owned());
        let (delivery_status, suppress) = sendgrid_delivery_status(event, ev.get("type").and_then(Value::as_str));
        let update = ReceiptUpdate {
            provider: SENDGRID,
            message_id: herald_id,
            provider_message_id: provider_id,
            email: Some(ev.get("email").and_then(Value::as_str).unwrap_or_default().to_owned()),
            event: event.to_owned(),
            delivery_status: delivery_status.map(|s| (s, rank(s))),
            occurred_at: ev
                .get("timestamp")
                .and_then(Value::as_i64)
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
            error_code: ev.get("status").and_then(Value::as_str).map(str::to_owned),
            dedupe_key: format!("sendgrid:{event_id}"),
            detail: ev.clone(),
            fallback_within: None,
        };
        let result = state.store.apply_receipt(&update, now).await?;
        hooks.counters.count(SENDGRID, &result);
        if let (Some(reason), ReceiptResult::Applied(id)) = (suppress, &result) {
            suppress_recipient_of(&state, *id, reason, SENDGRID).await?;
        }
    }
    Ok((StatusCode::OK, axum::Json(json!({"received": events.len()}))).into_response())
}
