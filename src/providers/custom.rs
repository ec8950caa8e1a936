//! The custom HTTP provider: Herald POSTs each message as JSON to a URL of
//! yours, signed so that you can tell it came from Herald.
//!
//! Headers: `X-Herald-Timestamp` (unix seconds) and `X-Herald-Signature`
//! (`v1=` + hex HMAC-SHA256 keyed with `CUSTOM_PROVIDER_SECRET` over
//! `timestamp + "." + raw body`). 2xx = sent (an optional `{"id": "..."}` is
//! kept as the provider id); 429 = slow down (`Retry-After` honoured);
//! other 4xx = permanent; 5xx = retry.
//!
//! Look-up (optional, `CUSTOM_LOOKUP_URL`): before sending again a message
//! whose earlier attempt may have reached you (a timeout, a 5xx, a worker
//! killed mid-send), Herald asks `GET {CUSTOM_LOOKUP_URL}?message_id={id}`,
//! signed the same way over `timestamp + "." + id`. Answer 200 (optionally
//! `{"id": "..."}`) if you received that message, 404 if not. With it, a
//! crash never makes Herald send a message twice through you.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::http;
use super::{BoxFuture, Provider, Receipt, SendError, Window};
use crate::clock::Clock;
use crate::config::CustomSettings;
use crate::domain::{Channel, OutgoingMessage};

pub const TIMESTAMP_HEADER: &str = "X-Herald-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Herald-Signature";
pub const MESSAGE_ID_HEADER: &str = "X-Herald-Message-Id";

pub struct Custom {
    client: reqwest::Client,
    settings: CustomSettings,
    clock: Arc<dyn Clock>,
}

/// `v1=` + hex(HMAC-SHA256(secret, timestamp + "." + body)).
pub fn signature(secret: &SecretString, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(3 + digest.len() * 2);
    out.push_str("v1=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Custom {
    pub fn new(settings: CustomSettings, timeout: std::time::Duration, clock: Arc<dyn Clock>) -> Self {
        Custom {
            client: http::client(timeout),
            settings,
            clock,
        }
    }

    fn url(&self, channel: Channel) -> Option<&str> {
        match channel {
            Channel::Sms => self.settings.sms_url.as_deref(),
            Channel::Whatsapp => self.settings.whatsapp_url.as_deref(),
            Channel::Email => self.settings.email_url.as_deref(),
        }
    }

    pub fn payload(msg: &OutgoingMessage) -> serde_json::Value {
        serde_json::to_value(super::MessageView::of(msg)).expect("message view serializes")
    }
}

/// The provider's id from a JSON answer (`{"id": ...}`), if any.
fn id_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| match v.get("id") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
}

pub(super) fn classify(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> SendError {
    let message = format!("HTTP {status}: {}", http::snippet(body));
    http::classify_status(
        status,
        format!("http_{status}"),
        message,
        http::retry_after(headers, now),
        now,
    )
}

impl Provider for Custom {
    fn name(&self) -> &'static str {
        super::CUSTOM
    }

    fn sender(&self, channel: Channel) -> String {
        self.url(channel).unwrap_or_default().to_owned()
    }

    fn send<'a>(&'a self, msg: &'a OutgoingMessage) -> BoxFuture<'a, Result<Receipt, SendError>> {
        Box::pin(async move {
            let Some(url) = self.url(msg.channel()) else {
                return Err(SendError::permanent(
                    "not_configured",
                    format!("no CUSTOM_{}_URL", msg.channel()),
                ));
            };
            let body = Self::payload(msg).to_string().into_bytes();
            let now = self.clock.now();
            let ts = now.timestamp();
            let req = self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(TIMESTAMP_HEADER, ts.to_string())
                .header(SIGNATURE_HEADER, signature(&self.settings.secret, ts, &body))
                .header(MESSAGE_ID_HEADER, msg.id.to_string())
                .body(body);
            let (status, headers, body) = http::send(req).await?;
            if (200..300).contains(&status) {
                return Ok(Receipt {
                    provider_message_id: id_of(&body),
                });
            }
            Err(classify(status, &headers, &body, self.clock.now()))
        })
    }

    /// Herald's message id is the key: the answer is exact, whatever the window.
    fn reconcile<'a>(
        &'a self,
        msg: &'a OutgoingMessage,
        _window: Window,
    ) -> BoxFuture<'a, Result<Vec<Receipt>, SendError>> {
        Box::pin(async move {
            let Some(url) = self.settings.lookup_url.as_deref() else {
                return Ok(Vec::new());
            };
            let id = msg.id.to_string();
            let ts = self.clock.now().timestamp();
            let req = self
                .client
                .get(url)
                .query(&[("message_id", &id)])
                .header(TIMESTAMP_HEADER, ts.to_string())
                .header(SIGNATURE_HEADER, signature(&self.settings.secret, ts, id.as_bytes()))
                .header(MESSAGE_ID_HEADER, &id);
            let (status, headers, body) = http::send(req).await?;
            match status {
                200..=299 => Ok(vec![Receipt {
                    provider_message_id: id_of(&body),
                }]),
                404 => Ok(Vec::new()),
                _ => Err(classify(status, &headers, &body, self.clock.now())),
            }
        })
    }

    fn can_reconcile(&self) -> bool {
        self.settings.lookup_url.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_value() {
        // Computed independently: printf '1700000000.{"id":1}' | openssl dgst -sha256 -hmac 'a-secret-of-16-chars'
        let secret = SecretString::from("a-secret-of-16-chars".to_owned());
        let sig = signature(&secret, 1_700_000_000, br#"{"id":1}"#);
        assert_eq!(
            sig,
            "v1=f4708e4e6b38d0e57829a8f784d908696f7d90ddd909ba01858e654e42adaf87"
        );
        assert!(sig.starts_with("v1=") && sig.len() == 67);
    }
}
