//! What the store hands back: rows of Herald's tables, decoded the same way
//! from either backend's row type.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::mysql::MySqlRow;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{Result, StoreError};
use crate::clock::parse_ts;
use crate::domain::TemplateParts;

/// A row of `notification_messages`, as the API and CLI show it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Message {
    pub id: i64,
    pub channel: String,
    pub recipient: String,
    pub subject: Option<String>,
    pub body: Option<String>,
    pub html_body: Option<String>,
    pub status: String,
    pub attempts: i32,
    /// The `error` column's JSON, parsed (a non-JSON value is kept as a string).
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub send_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// The template this message was rendered from, and its version.
    pub template: Option<String>,
    pub template_version: Option<i32>,
    pub locale: Option<String>,
    /// Direct inserts: data to render `template` with when claimed.
    #[serde(skip)]
    pub template_data: Option<String>,
    /// Twilio Content API template SID (`HX…`), instead of a body.
    pub content_sid: Option<String>,
    /// The template's variables, a JSON object.
    #[schema(value_type = Option<Object>)]
    pub content_variables: Option<serde_json::Value>,
    /// The latest delivery receipt: queued, sending, sent, delivered, read,
    /// opened, clicked, deferred, undelivered, failed, bounced, dropped,
    /// spam_reported, unsubscribed.
    pub delivery_status: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The provider's error code from a failed receipt (e.g. Twilio 30003).
    pub delivery_error_code: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub retry_base: i32,
    /// This SMS replaces WhatsApp message `fallback_of`, which its
    /// recipient could not get (`WHATSAPP_FALLBACK=sms`).
    pub fallback_of: Option<i64>,
    /// This WhatsApp message fell back to SMS message `fallback_message_id`.
    pub fallback_message_id: Option<i64>,
    /// `send_at` holds text that is not a time (possible only on SQLite,
    /// where another program wrote it).
    #[serde(skip)]
    pub send_at_invalid: bool,
    /// The `metadata` column as stored, for re-parsing.
    #[serde(skip)]
    pub metadata_raw: Option<String>,
    #[serde(skip)]
    pub content_variables_raw: Option<String>,
}

impl Message {
    /// Attempts made in the current round (since the last manual retry).
    pub fn round_attempts(&self) -> i32 {
        self.attempts - self.retry_base
    }
}

/// One provider call, from `notification_attempts`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Attempt {
    pub attempt: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub provider: String,
    pub outcome: String,
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
    pub provider_message_id: Option<String>,
    pub worker: Option<String>,
}

/// A delivery receipt, as stored in `notification_events`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Event {
    pub provider: String,
    /// The provider's own word (`delivered`, `bounce`, `open`…).
    pub event: String,
    /// What it means for `delivery_status`.
    pub delivery_status: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub received_at: Option<DateTime<Utc>>,
    /// The receipt as received.
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

/// One saved version of a template in one locale.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TemplateVersion {
    pub name: String,
    pub version: i32,
    pub locale: String,
    /// The channel it is for; null = every channel.
    pub channel: Option<String>,
    #[serde(flatten)]
    pub parts: TemplateParts,
    /// The locale used when neither the requested locale nor its language exists.
    pub is_default: bool,
    pub created_at: Option<DateTime<Utc>>,
}

/// A recipient who must not be messaged on a channel.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Suppression {
    pub channel: String,
    pub recipient: String,
    pub reason: String,
    /// Who added it: `twilio`, `sendgrid`, `api`, `cli`.
    pub source: String,
    pub created_at: Option<DateTime<Utc>>,
}

/// Message counts by status and channel.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Count {
    pub status: String,
    pub channel: String,
    pub count: i64,
    /// The database's estimate, not a count (`sent` on a table of more than
    /// [`crate::store::EXACT_COUNT_ROWS`] rows; channel `all`).
    pub estimated: bool,
}

/// Reads a message from either backend's row type.
pub(super) trait MessageRow: Row {
    fn message(&self) -> Result<Message, sqlx::Error>;
    fn attempt(&self) -> Result<Attempt, sqlx::Error>;
    fn event(&self) -> Result<Event, sqlx::Error>;
    fn template(&self) -> Result<TemplateVersion, sqlx::Error>;
    fn suppression(&self) -> Result<Suppression, sqlx::Error>;
}

fn json_column(text: Option<String>) -> Option<serde_json::Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
}

/// Timestamp columns: text on SQLite (parsed; other programs may have written
/// any format), `timestamptz` on PostgreSQL.
pub(super) trait TimeColumn: Row {
    /// The time, and whether the column held something that is not a time.
    fn time(&self, col: &str) -> Result<(Option<DateTime<Utc>>, bool), sqlx::Error>;

    fn ts(&self, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.time(col).map(|(t, _)| t)
    }
}

impl TimeColumn for SqliteRow {
    fn time(&self, col: &str) -> Result<(Option<DateTime<Utc>>, bool), sqlx::Error> {
        let text: Option<String> = self.try_get(col)?;
        let t = text.as_deref().and_then(parse_ts);
        Ok((t, text.is_some() && t.is_none()))
    }
}

impl TimeColumn for MySqlRow {
    fn time(&self, col: &str) -> Result<(Option<DateTime<Utc>>, bool), sqlx::Error> {
        Ok((self.try_get(col)?, false))
    }
}

impl TimeColumn for PgRow {
    fn time(&self, col: &str) -> Result<(Option<DateTime<Utc>>, bool), sqlx::Error> {
        Ok((self.try_get(col)?, false))
    }
}

macro_rules! impl_message_row {
    ($row:ty) => {
        impl MessageRow for $row {
            fn message(&self) -> Result<Message, sqlx::Error> {
                let (send_at, send_at_invalid) = self.time("send_at")?;
                let metadata_raw: Option<String> = self.try_get("metadata")?;
                let content_variables_raw: Option<String> = self.try_get("content_variables")?;
                Ok(Message {
                    id: self.try_get("id")?,
                    channel: self.try_get("channel")?,
                    recipient: self.try_get("recipient")?,
                    subject: self.try_get("subject")?,
                    body: self.try_get("body")?,
                    html_body: self.try_get("html_body")?,
                    status: self.try_get("status")?,
                    attempts: self.try_get("attempts")?,
                    error: json_column(self.try_get("error")?),
                    provider: self.try_get("provider")?,
                    provider_message_id: self.try_get("provider_message_id")?,
                    send_at_invalid,
                    send_at,
                    sent_at: self.ts("sent_at")?,
                    created_at: self.ts("created_at")?,
                    updated_at: self.ts("updated_at")?,
                    metadata: json_column(metadata_raw.clone()),
                    metadata_raw,
                    content_sid: self.try_get("content_sid")?,
                    template: self.try_get("template")?,
                    template_version: self.try_get("template_version")?,
                    locale: self.try_get("locale")?,
                    template_data: self.try_get("template_data")?,
                    delivery_status: self.try_get("delivery_status")?,
                    delivered_at: self.ts("delivered_at")?,
                    delivery_error_code: self.try_get("delivery_error_code")?,
                    content_variables: json_column(content_variables_raw.clone()),
                    content_variables_raw,
                    next_attempt_at: self.ts("next_attempt_at")?,
                    lease_owner: self.try_get("lease_owner")?,
                    lease_expires_at: self.ts("lease_expires_at")?,
                    retry_base: self.try_get("retry_base")?,
                    fallback_of: self.try_get("fallback_of")?,
                    fallback_message_id: self.try_get("fallback_message_id")?,
                })
            }

            fn event(&self) -> Result<Event, sqlx::Error> {
                Ok(Event {
                    provider: self.try_get("provider")?,
                    event: self.try_get("event")?,
                    delivery_status: self.try_get("delivery_status")?,
                    occurred_at: self.ts("occurred_at")?,
                    received_at: self.ts("received_at")?,
                    detail: json_column(self.try_get("detail")?),
                })
            }

            fn template(&self) -> Result<TemplateVersion, sqlx::Error> {
                let parts: String = self.try_get("parts")?;
                Ok(TemplateVersion {
                    name: self.try_get("name")?,
                    version: self.try_get("version")?,
                    locale: self.try_get("locale")?,
                    channel: self.try_get("channel")?,
                    parts: serde_json::from_str(&parts).unwrap_or_default(),
                    is_default: self.try_get::<i32, _>("is_default")? != 0,
                    created_at: self.ts("created_at")?,
                })
            }

            fn suppression(&self) -> Result<Suppression, sqlx::Error> {
                Ok(Suppression {
                    channel: self.try_get("channel")?,
                    recipient: self.try_get("recipient")?,
                    reason: self.try_get("reason")?,
                    source: self.try_get("source")?,
                    created_at: self.ts("created_at")?,
                })
            }

            fn attempt(&self) -> Result<Attempt, sqlx::Error> {
                Ok(Attempt {
                    attempt: self.try_get("attempt")?,
                    started_at: self.ts("started_at")?,
                    finished_at: self.ts("finished_at")?,
                    provider: self.try_get("provider")?,
                    outcome: self.try_get("outcome")?,
                    error: json_column(self.try_get("error")?),
                    provider_message_id: self.try_get("provider_message_id")?,
                    worker: self.try_get("worker")?,
                })
            }
        }
    };
}
impl_message_row!(SqliteRow);
impl_message_row!(PgRow);
impl_message_row!(MySqlRow);

pub(super) fn messages<R: MessageRow>(rows: Vec<R>) -> Result<Vec<Message>> {
    rows.iter().map(|r| r.message().map_err(StoreError::from)).collect()
}
