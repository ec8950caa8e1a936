//! SendGrid v3 Mail Send: `POST {SENDGRID_API_URL}/v3/mail/send`, JSON,
//! `Authorization: Bearer <key>`. 202 with `X-Message-Id` means accepted.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use reqwest::header::HeaderMap;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::http;
use super::{BoxFuture, Provider, Receipt, SendError};
use crate::clock::Clock;
use crate::config::{EmailFrom, SendgridSettings};
use crate::domain::{Channel, OutgoingMessage};

/// The custom arg that carries Herald's message id (events echo it back).
pub const HERALD_ID_ARG: &str = "herald_id";

pub struct Sendgrid {
    client: reqwest::Client,
    settings: SendgridSettings,
    from: EmailFrom,
    clock: Arc<dyn Clock>,
}

impl Sendgrid {
    pub fn new(
        settings: SendgridSettings,
        from: EmailFrom,
        timeout: std::time::Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Sendgrid {
            client: http::client(timeout),
            settings,
            from,
            clock,
        }
    }

    /// The request body. SendGrid's rules beyond its OpenAPI file: custom
    /// args are strings, absent fields are omitted (never null), and
    /// text/plain comes before text/html.
    pub fn body(&self, msg: &OutgoingMessage) -> Value {
        let mut from = json!({ "email": self.from.address.as_str() });
        if let Some(name) = &self.from.name {
            from["name"] = json!(name);
        }
        let mut content = Vec::new();
        if let Some(text) = &msg.content.body {
            content.push(json!({ "type": "text/plain", "value": text }));
        }
        if let Some(html) = &msg.content.html_body {
            content.push(json!({ "type": "text/html", "value": html }));
        }
        json!({
            "personalizations": [{
                "to": [{ "email": msg.recipient.to_string() }],
                "custom_args": { HERALD_ID_ARG: msg.id.to_string() },
            }],
            "from": from,
            "subject": msg.content.subject.clone().unwrap_or_default(),
            "content": content,
        })
    }
}

/// `X-RateLimit-Reset` (unix seconds) when SendGrid sends it.
fn rate_limit_reset(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    let secs = headers
        .get("x-ratelimit-reset")?
        .to_str()
        .ok()?
        .trim()
        .parse::<i64>()
        .ok()?;
    Utc.timestamp_opt(secs, 0).single()
}

/// Classify a SendGrid error answer.
pub(super) fn classify(status: u16, headers: &HeaderMap, body: &[u8], now: DateTime<Utc>) -> SendError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            let errors = v.get("errors")?.as_array()?.clone();
            let parts: Vec<String> = errors
                .iter()
                .map(|e| {
                    let m = e.get("message").and_then(Value::as_str).unwrap_or("error");
                    match e.get("field").and_then(Value::as_str) {
                        Some(f) => format!("{f}: {m}"),
                        None => m.to_owned(),
                    }
                })
                .collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        })
        .unwrap_or_else(|| format!("HTTP {status}: {}", http::snippet(body)));
    let retry_at = rate_limit_reset(headers).or_else(|| http::retry_after(headers, now));
    http::classify_status(status, status.to_string(), message, retry_at, now)
}

impl Provider for Sendgrid {
    fn name(&self) -> &'static str {
        super::SENDGRID
    }

    fn sender(&self, _channel: Channel) -> String {
        self.from.address.to_string()
    }

    fn send<'a>(&'a self, msg: &'a OutgoingMessage) -> BoxFuture<'a, Result<Receipt, SendError>> {
        Box::pin(async move {
            let body = self.body(msg).to_string();
            let req = self
                .client
                .post(format!("{}/v3/mail/send", self.settings.api_url))
                .bearer_auth(self.settings.api_key.expose_secret())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            let (status, headers, body) = http::send(req).await?;
            if (200..300).contains(&status) {
                let id = headers
                    .get("x-message-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if id.is_none() {
                    tracing::warn!(status, "SendGrid accepted the message without an X-Message-Id");
                }
                return Ok(Receipt {
                    provider_message_id: id,
                });
            }
            Err(classify(status, &headers, &body, self.clock.now()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::FailureClass;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    #[test]
    fn classification() {
        let h = HeaderMap::new();
        let body = br#"{"errors":[{"message":"The from email does not contain a valid address.","field":"from.email","help":null}]}"#;
        for s in [400u16, 401, 403, 404, 405, 413, 451] {
            let e = classify(s, &h, body, now());
            let class = if s == 401 || s == 403 {
                FailureClass::Unauthorized
            } else {
                FailureClass::Permanent
            };
            assert_eq!(e.class, class, "{s}");
            assert_eq!(
                e.message,
                "from.email: The from email does not contain a valid address."
            );
            assert_eq!(e.alert, s == 401 || s == 403);
        }
        let e = classify(500, &h, b"", now());
        assert_eq!((e.class, e.outcome_unknown), (FailureClass::Retryable, true));
        assert_eq!(
            classify(
                429,
                &h,
                br#"{"errors":[{"field":null,"message":"too many requests"}]}"#,
                now()
            )
            .class,
            FailureClass::RateLimited {
                until: now() + chrono::Duration::seconds(5)
            }
        );
        let mut h = HeaderMap::new();
        let reset = now().timestamp() + 42;
        h.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
        assert_eq!(
            classify(429, &h, b"", now()).class,
            FailureClass::RateLimited {
                until: Utc.timestamp_opt(reset, 0).unwrap()
            }
        );
    }
}
