//! What the processor writes back for a claimed message: the row's new
//! state, and the provider call for the attempt history.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::format_ts;
use crate::domain::{AttemptOutcome, MessageStatus};

/// The new state of a claimed message, written only if its lease is still
/// ours. Serialized into the JSON array the `complete` statement reads; the
/// short wire names (`pmid`, `ad`, `bd`, `r_*`) keep that array small on the
/// hot path.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    pub id: i64,
    pub status: MessageStatus,
    /// JSON text for the `error` column.
    pub error: Option<String>,
    pub provider: Option<String>,
    #[serde(rename = "pmid", serialize_with = "ser_text_opt")]
    pub provider_message_id: Option<String>,
    #[serde(serialize_with = "ser_ts_opt")]
    pub sent_at: Option<DateTime<Utc>>,
    #[serde(rename = "next_at", serialize_with = "ser_ts_opt")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Added to `attempts`: -1 undoes the claim's increment when no provider
    /// call was made.
    #[serde(rename = "ad")]
    pub attempts_delta: i32,
    /// Added to `retry_base`: 1 when this attempt does not use up a retry.
    #[serde(rename = "bd")]
    pub base_delta: i32,
    /// Content rendered from a template at claim time (rows inserted with
    /// `template` + `template_data`): stored so the row shows what was sent.
    #[serde(flatten)]
    pub rendered: Option<RenderedFields>,
}

impl Completion {
    fn new(id: i64, status: MessageStatus) -> Completion {
        Completion {
            id,
            status,
            error: None,
            provider: None,
            provider_message_id: None,
            sent_at: None,
            next_attempt_at: None,
            attempts_delta: 0,
            base_delta: 0,
            rendered: None,
        }
    }

    /// The provider accepted it.
    pub fn sent(id: i64, provider: &str, provider_message_id: Option<String>, at: DateTime<Utc>) -> Completion {
        Completion {
            provider: Some(provider.to_owned()),
            provider_message_id,
            sent_at: Some(at),
            ..Completion::new(id, MessageStatus::Sent)
        }
    }

    /// A provider call failed: `failed` for good, or `pending` until `retry_at`.
    /// `counts_as_retry` is false for waits that do not use up a retry.
    pub fn attempt_failed(
        id: i64,
        provider: &str,
        provider_message_id: Option<String>,
        error: String,
        retry_at: Option<DateTime<Utc>>,
        counts_as_retry: bool,
    ) -> Completion {
        let status = if retry_at.is_some() {
            MessageStatus::Pending
        } else {
            MessageStatus::Failed
        };
        Completion {
            error: Some(error),
            provider: Some(provider.to_owned()),
            provider_message_id,
            next_attempt_at: retry_at,
            base_delta: i32::from(retry_at.is_some() && !counts_as_retry),
            ..Completion::new(id, status)
        }
    }

    /// `failed` without a provider call (the claim's attempt is undone).
    pub fn failed_unsent(id: i64, error: String) -> Completion {
        Completion {
            error: Some(error),
            attempts_delta: -1,
            ..Completion::new(id, MessageStatus::Failed)
        }
    }

    /// Back to the queue untouched, due at `due` (no provider call was made).
    pub fn released(id: i64, due: Option<DateTime<Utc>>) -> Completion {
        Completion {
            next_attempt_at: due,
            attempts_delta: -1,
            ..Completion::new(id, MessageStatus::Pending)
        }
    }

    pub fn with_rendered(mut self, rendered: Option<RenderedFields>) -> Completion {
        self.rendered = rendered;
        self
    }
}

/// Template output written back to a message row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RenderedFields {
    #[serde(rename = "r_subject")]
    pub subject: Option<String>,
    #[serde(rename = "r_body")]
    pub body: Option<String>,
    #[serde(rename = "r_html")]
    pub html_body: Option<String>,
    #[serde(rename = "r_sid")]
    pub content_sid: Option<String>,
    /// JSON text.
    #[serde(rename = "r_vars")]
    pub content_variables: Option<String>,
    #[serde(rename = "r_version")]
    pub template_version: i32,
    #[serde(rename = "r_locale")]
    pub locale: String,
}

/// A provider call to add to `notification_attempts`.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub message_id: i64,
    pub attempt: i32,
    #[serde(serialize_with = "ser_ts")]
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "ser_ts")]
    pub finished_at: DateTime<Utc>,
    pub provider: String,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
    #[serde(rename = "pmid", serialize_with = "ser_text_opt")]
    pub provider_message_id: Option<String>,
}

/// Text a provider chose: stored whatever it holds (NUL, which no backend
/// stores, becomes U+FFFD).
fn ser_text_opt<S: serde::Serializer>(t: &Option<String>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&crate::domain::scrub_nul(t)),
        None => s.serialize_none(),
    }
}

fn ser_ts<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format_ts(*t))
}

fn ser_ts_opt<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_ts(*t)),
        None => s.serialize_none(),
    }
}
