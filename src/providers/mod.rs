//! Providers deliver one message each and classify their own failures.
//!
//! The processor never interprets a provider's error codes: it acts only on
//! [`FailureClass`]. A provider written in Rust implements [`Provider`]:
//!
//! ```
//! use herald::providers::{BoxFuture, Provider, Receipt, SendError};
//! use herald::domain::OutgoingMessage;
//!
//! struct Pigeon;
//!
//! impl Provider for Pigeon {
//!     fn name(&self) -> &'static str { "pigeon" }
//!     fn send<'a>(&'a self, msg: &'a OutgoingMessage) -> BoxFuture<'a, Result<Receipt, SendError>> {
//!         Box::pin(async move {
//!             if msg.content.body.as_deref().unwrap_or("").contains("storm") {
//!                 return Err(SendError::retryable("weather", "too windy to fly"));
//!             }
//!             Ok(Receipt::new(format!("pigeon-{}", msg.id)))
//!         })
//!     }
//! }
//! ```

mod custom;
mod http;
mod log;
mod sendgrid;
mod smtp;
mod twilio;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use crate::domain::FailureClass;
use crate::domain::{Channel, OutgoingMessage};

pub use custom::{signature as custom_signature, Custom, MESSAGE_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
pub use log::LogProvider;
pub use sendgrid::{Sendgrid, HERALD_ID_ARG};
pub use smtp::Smtp;
pub use twilio::{Twilio, WHATSAPP_UNREACHABLE};

pub use crate::domain::provider_name::{CUSTOM, LOG, SENDGRID, SMTP, TWILIO};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A message delivery service for one or more channels.
pub trait Provider: Send + Sync + 'static {
    /// Stored in `provider` and in metrics: `twilio`, `sendgrid`, `smtp`, `custom`, `log`.
    fn name(&self) -> &'static str;

    /// Hand one message to the provider. `Ok` means the provider accepted it.
    fn send<'a>(&'a self, msg: &'a OutgoingMessage) -> BoxFuture<'a, Result<Receipt, SendError>>;

    /// Before sending a message that may already have gone out (an earlier
    /// attempt timed out or got a 5xx after the request was written, or the
    /// worker that claimed it stopped before recording an outcome), list
    /// what the provider has that could be that earlier attempt: messages
    /// to this recipient with this content, created inside `window`. The
    /// processor decides: exactly one that no other message owns = it was
    /// sent (not sent again); none = send; several = send again and mark
    /// it as a possible duplicate. An empty list also means "this provider
    /// cannot look messages up".
    fn reconcile<'a>(
        &'a self,
        msg: &'a OutgoingMessage,
        window: Window,
    ) -> BoxFuture<'a, Result<Vec<Receipt>, SendError>> {
        let _ = (msg, window);
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Whether [`Provider::reconcile`] can find anything at all (Twilio
    /// lists messages; the custom provider when `CUSTOM_LOOKUP_URL` is set).
    fn can_reconcile(&self) -> bool {
        false
    }

    /// Who sends on this channel (a phone number, a messaging service, an
    /// email address): rate limits apply per provider and per sender.
    fn sender(&self, channel: Channel) -> String {
        let _ = channel;
        String::new()
    }
}

/// When an earlier attempt may have reached the provider: from shortly
/// before it started to shortly after it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Window {
    /// Whether `t` falls inside (providers' clocks and Herald's differ by
    /// a little; their dates may have one-second precision).
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let slack = chrono::Duration::seconds(2);
        t >= self.from - slack && t <= self.to + slack
    }
}

/// An outgoing message as JSON: the custom provider's request body and the
/// log provider's outbox line share this shape.
#[derive(Debug, serde::Serialize)]
pub struct MessageView<'a> {
    pub id: i64,
    pub attempt: u32,
    pub channel: Channel,
    pub recipient: String,
    pub subject: Option<&'a str>,
    pub body: Option<&'a str>,
    pub html: Option<&'a str>,
    pub content_sid: Option<&'a str>,
    pub content_variables: Option<&'a serde_json::Map<String, serde_json::Value>>,
    pub metadata: Option<&'a serde_json::Value>,
}

impl<'a> MessageView<'a> {
    pub fn of(msg: &'a OutgoingMessage) -> MessageView<'a> {
        let c = &msg.content;
        MessageView {
            id: msg.id,
            attempt: msg.attempt,
            channel: msg.channel(),
            recipient: msg.recipient.to_string(),
            subject: c.subject.as_deref(),
            body: c.body.as_deref(),
            html: c.html_body.as_deref(),
            content_sid: c.template.as_ref().map(|t| t.content_sid.as_str()),
            content_variables: c.template.as_ref().map(|t| &t.variables),
            metadata: msg.metadata.as_ref(),
        }
    }
}

/// What a provider returns when it accepts a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The provider's id for the message (Twilio SID, SendGrid X-Message-Id, SMTP Message-ID).
    pub provider_message_id: Option<String>,
}

impl Receipt {
    pub fn new(id: impl Into<String>) -> Self {
        Receipt {
            provider_message_id: Some(id.into()),
        }
    }

    pub fn without_id() -> Self {
        Receipt {
            provider_message_id: None,
        }
    }
}

/// A failed send, classified by the provider that knows what its codes mean.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SendError {
    pub class: FailureClass,
    /// A short stable code: the provider's own (`21211`, `550`) or Herald's
    /// (`timeout`, `connection`, `invalid_response`).
    pub code: String,
    /// A human-readable reason; never contains credentials.
    pub message: String,
    /// The request may have reached the provider (timeout or 5xx after
    /// sending): the message may have gone out even though we saw a failure.
    pub outcome_unknown: bool,
    /// HTTP status or SMTP reply code, when there was one.
    pub status: Option<u16>,
    /// Operators should be told (bad credentials, account suspended).
    pub alert: bool,
    /// The provider's id, if it assigned one before failing.
    pub provider_message_id: Option<String>,
    /// The recipient opted out (e.g. replied STOP): add them to the
    /// channel's suppression list, with this reason.
    pub suppress: Option<String>,
    /// The recipient cannot get messages on this channel (not a WhatsApp
    /// user, outside WhatsApp's 24-hour window): another channel may reach
    /// them (`WHATSAPP_FALLBACK=sms`).
    pub unreachable: bool,
}

impl SendError {
    pub fn new(class: FailureClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        SendError {
            class,
            code: code.into(),
            message: message.into(),
            outcome_unknown: false,
            status: None,
            alert: false,
            provider_message_id: None,
            suppress: None,
            unreachable: false,
        }
    }

    /// The provider certainly did not take the message: no connection was
    /// made, it answered 429 or 503, or it refused Herald's credentials.
    /// Only then may another provider be tried at once (a timeout or
    /// another 5xx may have been acted on).
    pub fn not_accepted(&self) -> bool {
        if self.outcome_unknown {
            return false;
        }
        matches!(
            self.class,
            FailureClass::RateLimited { .. } | FailureClass::Unauthorized
        ) || matches!(self.code.as_str(), "connection" | "busy")
            || self.status == Some(503)
    }

    /// What this failure says about the provider's health (its circuit).
    pub fn health(&self) -> crate::breaker::Health {
        use crate::breaker::Health;
        match self.class {
            FailureClass::Unauthorized => Health::Refused,
            FailureClass::RateLimited { .. } => Health::Neutral,
            // "busy": Herald's own queue for the provider was full.
            FailureClass::Retryable if self.code == "busy" => Health::Neutral,
            FailureClass::Retryable
                if self.outcome_unknown
                    || self.status.is_some_and(|s| s >= 500)
                    || matches!(self.code.as_str(), "connection" | "timeout" | "network") =>
            {
                Health::Trouble
            }
            // The provider answered: it refused this message (a bad
            // number, a full queue for this sender), not because it is down.
            FailureClass::Retryable | FailureClass::Permanent => Health::Answered,
        }
    }

    /// The recipient cannot get it on this channel (see [`SendError::unreachable`]).
    pub fn with_unreachable(mut self) -> Self {
        self.unreachable = true;
        self
    }

    pub fn with_suppression(mut self, reason: impl Into<String>) -> Self {
        self.suppress = Some(reason.into());
        self
    }

    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        SendError::new(FailureClass::Permanent, code, message)
    }

    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        SendError::new(FailureClass::Retryable, code, message)
    }

    /// The provider refused Herald's credentials (operators are alerted).
    pub fn unauthorized(code: impl Into<String>, message: impl Into<String>) -> Self {
        SendError::new(FailureClass::Unauthorized, code, message).with_alert()
    }

    pub fn rate_limited(until: DateTime<Utc>, code: impl Into<String>, message: impl Into<String>) -> Self {
        SendError::new(FailureClass::RateLimited { until }, code, message)
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_outcome_unknown(mut self) -> Self {
        self.outcome_unknown = true;
        self
    }

    pub fn with_alert(mut self) -> Self {
        self.alert = true;
        self
    }
}

/// An error and its causes on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The providers of each channel, in the order they are tried: the first
/// is the primary, the others take over while it is unavailable.
#[derive(Clone)]
pub struct Providers {
    by_channel: HashMap<Channel, Vec<Arc<dyn Provider>>>,
}

impl Providers {
    /// Every channel uses `provider`.
    pub fn all(provider: Arc<dyn Provider>) -> Self {
        Providers {
            by_channel: Channel::ALL.into_iter().map(|c| (c, vec![provider.clone()])).collect(),
        }
    }

    /// `channel` uses `provider` alone.
    pub fn set(&mut self, channel: Channel, provider: Arc<dyn Provider>) {
        self.by_channel.insert(channel, vec![provider]);
    }

    /// `channel` uses these providers, the first first. Each provider
    /// appears once (a name twice is ignored after its first place).
    pub fn set_chain(&mut self, channel: Channel, chain: Vec<Arc<dyn Provider>>) {
        let mut unique: Vec<Arc<dyn Provider>> = Vec::new();
        for p in chain {
            if !unique.iter().any(|u| u.name() == p.name()) {
                unique.push(p);
            }
        }
        assert!(!unique.is_empty(), "a channel needs a provider");
        self.by_channel.insert(channel, unique);
    }

    /// The channel's primary provider.
    pub fn get(&self, channel: Channel) -> &Arc<dyn Provider> {
        &self.chain(channel)[0]
    }

    /// The channel's providers, primary first (never empty).
    pub fn chain(&self, channel: Channel) -> &[Arc<dyn Provider>] {
        self.by_channel.get(&channel).expect("every channel has a provider")
    }

    /// Every distinct provider, by name.
    pub fn all_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.by_channel.values().flatten().map(|p| p.name()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}
