//! Twilio Programmable Messaging: SMS and WhatsApp.
//!
//! `POST {TWILIO_API_URL}/2010-04-01/Accounts/{AccountSid}/Messages.json`,
//! form-encoded, HTTP Basic auth. 201 returns the Message (its `sid` is the
//! provider id); errors return `{code, message, more_info, status}`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;

use super::http;
use super::{BoxFuture, Provider, Receipt, SendError, Window};
use crate::clock::Clock;
use crate::config::TwilioSettings;
use crate::domain::{Channel, OutgoingMessage};

pub struct Twilio {
    client: reqwest::Client,
    settings: TwilioSettings,
    status_callback: Option<String>,
    clock: Arc<dyn Clock>,
}

/// Twilio error codes after which the same request can never succeed.
/// 21610: the recipient replied STOP. 63016: WhatsApp free-form message
/// outside the 24-hour window (only an approved template can go).
const PERMANENT: &[i64] = &[
    21211, 21614, 21612, 21408, 21606, 21608, 21635, 21602, 21603, 21604, 21610, 20404, 63003, 63016, 63024, 63032,
    63049,
];

/// Codes that mean the account, not the message, is wrong: the provider
/// pauses, messages wait, and an operator is told. 20003: authentication
/// failed (bad SID/token, or a suspended account).
const UNAUTHORIZED: &[i64] = &[20003];

/// WhatsApp codes that mean this recipient cannot get the message on
/// WhatsApp, though another channel may reach them: 63003 (the number has
/// no WhatsApp), 63024 (invalid recipient), 63016 (free-form message
/// outside the 24-hour window), 63032 (a WhatsApp limitation for this
/// user), 63049 (Meta chose not to deliver it). Not 63014: the recipient
/// blocked the business, which no other channel should work around.
pub const WHATSAPP_UNREACHABLE: &[i64] = &[63003, 63016, 63024, 63032, 63049];

impl Twilio {
    pub fn new(
        settings: TwilioSettings,
        public_url: Option<&str>,
        timeout: std::time::Duration,
        clock: Arc<dyn Clock>,
    ) -> Twilio {
        Twilio {
            client: http::client(timeout),
            status_callback: public_url.map(|u| format!("{u}/webhooks/twilio/status")),
            settings,
            clock,
        }
    }

    fn endpoint(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.settings.api_url, self.settings.account_sid
        )
    }

    /// `From` or `MessagingServiceSid` for a channel. SMS: the messaging
    /// service when set, else the number. WhatsApp: the WhatsApp number when
    /// set, else the messaging service.
    fn sender_field(&self, channel: Channel) -> (&'static str, String) {
        let s = &self.settings;
        match channel {
            Channel::Whatsapp => match (&s.whatsapp_number, &s.messaging_service_sid) {
                (Some(n), _) => ("From", n.to_string()),
                (None, Some(mg)) => ("MessagingServiceSid", mg.clone()),
                (None, None) => ("From", String::new()),
            },
            _ => match (&s.messaging_service_sid, &s.phone_number) {
                (Some(mg), _) => ("MessagingServiceSid", mg.clone()),
                (None, Some(n)) => ("From", n.to_string()),
                (None, None) => ("From", String::new()),
            },
        }
    }

    /// The form Twilio receives for a message.
    pub fn form(&self, msg: &OutgoingMessage) -> Vec<(&'static str, String)> {
        let mut form = vec![("To", msg.recipient.to_string())];
        form.push(self.sender_field(msg.channel()));
        match &msg.content.template {
            Some(t) => {
                // With ContentSid, Body and MediaUrl must be left out.
                form.push(("ContentSid", t.content_sid.clone()));
                if !t.variables.is_empty() {
                    form.push((
                        "ContentVariables",
                        serde_json::Value::Object(t.variables.clone()).to_string(),
                    ));
                }
            }
            None => form.push(("Body", msg.content.body.clone().unwrap_or_default())),
        }
        if let Some(cb) = &self.status_callback {
            form.push(("StatusCallback", cb.clone()));
        }
        form
    }
}

/// Classify a Twilio error answer.
pub(super) fn classify(status: u16, body: &[u8], retry_after: Option<DateTime<Utc>>, now: DateTime<Utc>) -> SendError {
    #[derive(serde::Deserialize)]
    struct TwilioError {
        code: Option<i64>,
        message: Option<String>,
    }
    let parsed: Option<TwilioError> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|e| e.code);
    let message = parsed
        .and_then(|e| e.message)
        .unwrap_or_else(|| format!("HTTP {status}: {}", http::snippet(body)));
    let code_text = code.map(|c| c.to_string()).unwrap_or_else(|| format!("http_{status}"));
    if status == 429 || code == Some(20429) {
        return http::classify_status(429, code_text, message, retry_after, now).with_status(status);
    }
    let err = if code == Some(21611) {
        // The sender's queue is full: not processed, safe to retry.
        SendError::retryable(code_text, message)
    } else if code.is_some_and(|c| UNAUTHORIZED.contains(&c)) {
        SendError::unauthorized(code_text, message)
    } else if let Some(c) = code.filter(|c| PERMANENT.contains(c)) {
        let e = SendError::permanent(code_text, message);
        if c == 21610 {
            e.with_suppression("replied STOP (Twilio 21610)")
        } else if WHATSAPP_UNREACHABLE.contains(&c) {
            e.with_unreachable()
        } else {
            e
        }
    } else {
        // 5xx: Twilio has no idempotency key, so the message may exist anyway.
        return http::classify_status(status, code_text, message, retry_after, now);
    };
    err.with_status(status)
}

impl Provider for Twilio {
    fn name(&self) -> &'static str {
        super::TWILIO
    }

    /// Twilio has no idempotency key, but it lists an account's messages by
    /// `To` and `From`: messages with our body created inside the window
    /// are the candidates.
    fn reconcile<'a>(
        &'a self,
        msg: &'a OutgoingMessage,
        window: Window,
    ) -> BoxFuture<'a, Result<Vec<Receipt>, SendError>> {
        Box::pin(async move {
            // Template sends have no body to compare: cannot tell them apart.
            let Some(body) = msg.content.body.as_deref().filter(|_| msg.content.template.is_none()) else {
                return Ok(Vec::new());
            };
            let mut query = vec![("To", msg.recipient.to_string()), ("PageSize", "50".to_owned())];
            let (field, from) = self.sender_field(msg.channel());
            if field == "From" {
                query.push(("From", from));
            }
            let req = self
                .client
                .get(self.endpoint())
                .basic_auth(
                    &self.settings.auth_user,
                    Some(self.settings.auth_secret.expose_secret()),
                )
                .query(&query);
            let (status, headers, bytes) = http::send(req).await?;
            if !(200..300).contains(&status) {
                let now = self.clock.now();
                return Err(classify(status, &bytes, http::retry_after(&headers, now), now));
            }
            #[derive(serde::Deserialize)]
            struct Listed {
                sid: String,
                body: Option<String>,
                date_created: Option<String>,
            }
            #[derive(serde::Deserialize)]
            struct Page {
                messages: Vec<Listed>,
            }
            let page: Page = serde_json::from_slice(&bytes)
                .map_err(|e| SendError::retryable("invalid_response", format!("Twilio message list: {e}")))?;
            Ok(page
                .messages
                .into_iter()
                .filter(|m| {
                    m.body.as_deref() == Some(body)
                        && m.date_created
                            .as_deref()
                            .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
                            .is_some_and(|d| window.contains(d.with_timezone(&Utc)))
                })
                .map(|m| Receipt::new(m.sid))
                .collect())
        })
    }

    fn can_reconcile(&self) -> bool {
        true
    }

    fn sender(&self, channel: Channel) -> String {
        self.sender_field(channel).1
    }

    fn send<'a>(&'a self, msg: &'a OutgoingMessage) -> BoxFuture<'a, Result<Receipt, SendError>> {
        Box::pin(async move {
            let req = self
                .client
                .post(self.endpoint())
                .basic_auth(
                    &self.settings.auth_user,
                    Some(self.settings.auth_secret.expose_secret()),
                )
                .form(&self.form(msg));
            let (status, headers, body) = http::send(req).await?;
            if (200..300).contains(&status) {
                #[derive(serde::Deserialize)]
                struct Created {
                    sid: Option<String>,
                }
                return match serde_json::from_slice::<Created>(&body).ok().and_then(|c| c.sid) {
                    Some(sid) => Ok(Receipt::new(sid)),
                    None => {
                        // Twilio said it created the message: do not send it again.
                        tracing::warn!(status, "Twilio accepted the message but its answer had no sid");
                        Ok(Receipt::without_id())
                    }
                };
            }
            let now = self.clock.now();
            Err(classify(status, &body, http::retry_after(&headers, now), now))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::FailureClass;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    fn body(code: i64) -> Vec<u8> {
        serde_json::json!({"code": code, "message": "m", "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": 400})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn every_listed_code_is_classified_as_documented() {
        for code in PERMANENT {
            let e = classify(400, &body(*code), None, now());
            assert_eq!(e.class, FailureClass::Permanent, "{code}");
            assert_eq!(e.code, code.to_string());
            assert_eq!(e.message, "m");
        }
        assert!(classify(401, &body(20003), None, now()).alert);
        assert_eq!(classify(400, &body(21611), None, now()).class, FailureClass::Retryable);
        let e = classify(429, &body(20429), None, now());
        assert_eq!(
            e.class,
            FailureClass::RateLimited {
                until: now() + chrono::Duration::seconds(5)
            }
        );
        let later = now() + chrono::Duration::seconds(40);
        assert_eq!(
            classify(429, b"", Some(later), now()).class,
            FailureClass::RateLimited { until: later }
        );
        // A 503: the service was unavailable, the request not acted on
        // (another provider may take the message at once).
        let e = classify(503, b"<html>down</html>", None, now());
        assert_eq!(
            (e.class, e.outcome_unknown, e.code.as_str()),
            (FailureClass::Retryable, false, "http_503")
        );
        assert!(e.message.contains("down"));
        assert!(e.not_accepted());
        // Any other 5xx may have created the message.
        let e = classify(500, b"oops", None, now());
        assert_eq!((e.class, e.outcome_unknown), (FailureClass::Retryable, true));
        assert!(!e.not_accepted());
        // WhatsApp recipients another channel may reach.
        for code in WHATSAPP_UNREACHABLE {
            let e = classify(400, &body(*code), None, now());
            assert!(e.unreachable && e.class == FailureClass::Permanent, "{code}");
        }
        assert!(!classify(400, &body(21211), None, now()).unreachable);
        // An unknown 4xx code: the same request will not succeed later.
        assert_eq!(classify(400, &body(21999), None, now()).class, FailureClass::Permanent);
    }
}
