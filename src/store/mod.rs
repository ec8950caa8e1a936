//! The `notification_messages` table as a queue: enqueue, claim with a lease,
//! complete guarded by the lease owner, and the operator's views and levers.
//!
//! One Rust implementation serves SQLite and PostgreSQL: the statements
//! differ (see `sql.rs`), the code that binds and reads them does not.

mod sql;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::Row;

use crate::clock::{format_ts, parse_ts};
use crate::domain::{MessageStatus, NewMessage};

use sql::Sql;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("message {0} not found")]
    NotFound(i64),
    #[error("message {id} is {status}; only {allowed} messages can be {action}")]
    WrongStatus {
        id: i64,
        status: String,
        allowed: &'static str,
        action: &'static str,
    },
    #[error("DATABASE_URL {0:?} is not a sqlite: or postgres:// URL")]
    BadUrl(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A row of `notification_messages`, as the API and CLI show it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
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
    pub parts: crate::templates::TemplateParts,
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

/// A receipt to apply to a message.
#[derive(Debug, Clone)]
pub struct ReceiptUpdate {
    pub provider: &'static str,
    /// Herald's id when the receipt carries it, else the provider's id.
    pub message_id: Option<i64>,
    pub provider_message_id: Option<String>,
    pub event: String,
    pub delivery_status: Option<&'static str>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub error_code: Option<String>,
    /// Receipts with the same key are stored once.
    pub dedupe_key: String,
    pub detail: serde_json::Value,
}

/// What became of a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptResult {
    /// Stored, for this message (its delivery status moved only if the receipt ranks higher).
    Applied(i64),
    /// Seen before: nothing changed.
    Duplicate(i64),
    /// No message matches.
    Unmatched,
}

/// The new state of a claimed message, written only if its lease is still ours.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    pub id: i64,
    pub status: MessageStatus,
    /// JSON text for the `error` column.
    pub error: Option<String>,
    pub provider: Option<String>,
    #[serde(rename = "pmid")]
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
    pub outcome: &'static str,
    pub error: Option<String>,
    #[serde(rename = "pmid")]
    pub provider_message_id: Option<String>,
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

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_KEY_HOURS: i64 = 24;

/// The result of an idempotent enqueue.
#[derive(Debug)]
pub enum Idempotent {
    /// First use of the key: these messages were created.
    Created(Vec<Message>),
    /// The key was used before with the same request: its messages.
    Replayed(Vec<Message>),
    /// The key was used before with a different request.
    Conflict,
}

/// New messages as the JSON rows the bulk insert reads.
fn rows_json(msgs: &[NewMessage]) -> String {
    let rows: Vec<serde_json::Value> = msgs
        .iter()
        .map(|m| {
            serde_json::json!({
                "channel": m.channel().as_str(),
                "recipient": m.recipient.to_string(),
                "subject": m.content.subject,
                "body": m.content.body,
                "html_body": m.content.html_body,
                "send_at": m.send_at.map(format_ts),
                "metadata": m.metadata.as_ref().map(|v| v.to_string()),
                "content_sid": m.content.template.as_ref().map(|t| t.content_sid.clone()),
                                "content_variables": m.content.template.as_ref().map(|t| serde_json::Value::Object(t.variables.clone()).to_string()),
                "template": m.template.as_ref().map(|t| t.name.clone()),
                "template_version": m.template.as_ref().map(|t| t.version),
                "locale": m.template.as_ref().map(|t| t.locale.clone()),
            })
        })
        .collect();
    serde_json::to_string(&rows).expect("rows serialize")
}

/// Which rows a claim may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimFilter {
    Any,
    Channel(crate::domain::Channel),
    /// Rows whose `channel` is none of Herald's (they are failed, not sent).
    UnknownChannel,
}

/// Filters for listing messages, newest first.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<MessageStatus>,
    pub channel: Option<String>,
    pub recipient: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    /// Cursor: only ids below this one.
    pub before_id: Option<i64>,
    pub limit: u32,
    /// Only messages whose `send_at` is still in the future.
    pub scheduled_only: bool,
}

/// Message counts by status and channel.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Count {
    pub status: String,
    pub channel: String,
    pub count: i64,
}

#[derive(Clone)]
enum Backend {
    Sqlite {
        pool: SqlitePool,
        /// SQLite has one writer at a time; taking turns in-process avoids
        /// busy-waiting inside SQLite. Other processes are handled by the
        /// busy timeout.
        write: Arc<tokio::sync::Mutex<()>>,
    },
    Postgres {
        pool: PgPool,
    },
}

/// A handle on the queue; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    sql: &'static Sql,
}

/// Run `$body` with `$pool` bound to the backend's pool; the body is compiled
/// once per backend, so it can use the concrete pool and row types.
macro_rules! with_pool {
    ($self:expr, |$pool:ident| $body:expr) => {
        match &$self.backend {
            Backend::Sqlite { pool: $pool, .. } => $body,
            Backend::Postgres { pool: $pool } => $body,
        }
    };
}

/// Reads a message from either backend's row type.
trait MessageRow: Row {
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
trait TimeColumn: Row {
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

fn messages<R: MessageRow>(rows: Vec<R>) -> Result<Vec<Message>> {
    rows.iter().map(|r| r.message().map_err(StoreError::from)).collect()
}

fn migrator(pg: bool) -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType};
    use std::borrow::Cow;
    #[rustfmt::skip]
    let files: &[(i64, &str, &str)] = if pg {
        &[
            (1, "queue", include_str!("../../migrations/postgres/0001_queue.sql")),
            (2, "providers", include_str!("../../migrations/postgres/0002_providers.sql")),
            (3, "api", include_str!("../../migrations/postgres/0003_api.sql")),
            (4, "receipts", include_str!("../../migrations/postgres/0004_receipts.sql")),
            (5, "templates", include_str!("../../migrations/postgres/0005_templates.sql")),
        ]
    } else {
        &[
            (1, "queue", include_str!("../../migrations/sqlite/0001_queue.sql")),
            (2, "providers", include_str!("../../migrations/sqlite/0002_providers.sql")),
            (3, "api", include_str!("../../migrations/sqlite/0003_api.sql")),
            (4, "receipts", include_str!("../../migrations/sqlite/0004_receipts.sql")),
            (5, "templates", include_str!("../../migrations/sqlite/0005_templates.sql")),
        ]
    };
    let migrations = files
        .iter()
        .map(|(v, d, sql)| Migration::new(*v, Cow::Borrowed(d), MigrationType::Simple, Cow::Borrowed(sql), false))
        .collect::<Vec<_>>();
    // The fields are what `sqlx::migrate!` fills in; building the migrator
    // here embeds the SQL without compiling sqlx's proc-macros.
    sqlx::migrate::Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

impl Store {
    /// Open the database named by `url`: `sqlite:path`, `sqlite://path`
    /// (created if missing) or `postgres://…`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?.application_name("herald");
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(2))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            Backend::Postgres { pool }
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let pool = SqlitePoolOptions::new()
                .max_connections(if in_memory { 1 } else { max_connections.clamp(1, 8) })
                .connect_with(opts)
                .await?;
            Backend::Sqlite {
                pool,
                write: Arc::new(tokio::sync::Mutex::new(())),
            }
        } else {
            return Err(StoreError::BadUrl(url.to_owned()));
        };
        let sql = match backend {
            Backend::Sqlite { .. } => &*sql::SQLITE,
            Backend::Postgres { .. } => &*sql::POSTGRES,
        };
        Ok(Store { backend, sql })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    pub fn backend_name(&self) -> &'static str {
        if self.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.backend {
            Backend::Postgres { pool } => Some(pool),
            Backend::Sqlite { .. } => None,
        }
    }

    /// SQLite: take the in-process writer turn. PostgreSQL: nothing.
    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.backend {
            Backend::Sqlite { write, .. } => Some(write.lock().await),
            Backend::Postgres { .. } => None,
        }
    }

    /// Apply every migration not yet applied.
    pub async fn migrate(&self) -> Result<()> {
        let _turn = self.write_turn().await;
        with_pool!(self, |pool| migrator(self.is_postgres()).run(pool).await?);
        Ok(())
    }

    /// Whether every migration Herald knows is applied (for readiness checks).
    pub async fn migrations_applied(&self) -> Result<bool> {
        let expected = migrator(self.is_postgres()).migrations.len() as i64;
        let q = "SELECT count(*) FROM _sqlx_migrations WHERE success";
        let applied: std::result::Result<i64, sqlx::Error> =
            with_pool!(self, |pool| sqlx::query_scalar(q).fetch_one(pool).await);
        Ok(applied.map(|n| n >= expected).unwrap_or(false))
    }

    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, |pool| sqlx::query("SELECT 1").execute(pool).await.map(|_| ())?);
        Ok(())
    }

    /// Queue one message.
    pub async fn enqueue(&self, msg: &NewMessage, now: DateTime<Utc>) -> Result<Message> {
        let metadata = msg.metadata.as_ref().map(|m| m.to_string());
        let _turn = self.write_turn().await;
        let row = with_pool!(self, |pool| {
            let row = sqlx::query(&self.sql.insert)
                .bind(msg.channel().as_str())
                .bind(msg.recipient.to_string())
                .bind(msg.content.subject.as_deref())
                .bind(msg.content.body.as_deref())
                .bind(msg.content.html_body.as_deref())
                .bind(msg.send_at.map(format_ts))
                .bind(metadata)
                .bind(format_ts(now))
                .bind(msg.content.template.as_ref().map(|t| t.content_sid.clone()))
                .bind(
                    msg.content
                        .template
                        .as_ref()
                        .map(|t| serde_json::Value::Object(t.variables.clone()).to_string()),
                )
                .bind(msg.template.as_ref().map(|t| t.name.clone()))
                .bind(msg.template.as_ref().map(|t| t.version))
                .bind(msg.template.as_ref().map(|t| t.locale.clone()))
                .fetch_one(pool)
                .await?;
            row.message()?
        });
        Ok(row)
    }

    /// Queue many messages in one statement (all or none), in order.
    pub async fn enqueue_many(&self, msgs: &[NewMessage], now: DateTime<Utc>) -> Result<Vec<Message>> {
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        let rows = rows_json(msgs);
        let _turn = self.write_turn().await;
        let mut out = with_pool!(self, |pool| messages(
            sqlx::query(&self.sql.insert_many)
                .bind(&rows)
                .bind(format_ts(now))
                .fetch_all(pool)
                .await?
        )?);
        out.sort_by_key(|m| m.id);
        Ok(out)
    }

    /// Queue messages under an idempotency key, atomically: the first request
    /// with a key creates the messages; a repeat with the same request hash
    /// gets the same messages back; a different request with the key is refused.
    pub async fn enqueue_idempotent(
        &self,
        key: &str,
        request_hash: &str,
        msgs: &[NewMessage],
        now: DateTime<Utc>,
    ) -> Result<Idempotent> {
        enum Step {
            Created(Vec<Message>),
            Replay(Vec<i64>),
            Conflict,
        }
        let rows = rows_json(msgs);
        let step = {
            let _turn = self.write_turn().await;
            with_pool!(self, |pool| {
                let mut tx = pool.begin().await?;
                // Keys are kept for a day (as Stripe does): enough for any retry.
                sqlx::query(if self.is_postgres() {
                    "DELETE FROM herald_idempotency_keys WHERE created_at < $1::timestamptz"
                } else {
                    "DELETE FROM herald_idempotency_keys WHERE created_at < $1"
                })
                .bind(format_ts(now - chrono::Duration::hours(IDEMPOTENCY_KEY_HOURS)))
                .execute(&mut *tx)
                .await?;
                // Concurrent requests with the same key wait here for the first
                // to commit (PostgreSQL's unique index; SQLite's write lock).
                let inserted = sqlx::query(&self.sql.idem_insert)
                    .bind(key)
                    .bind(request_hash)
                    .bind(format_ts(now))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let step = if inserted == 1 {
                    let mut created = messages(
                        sqlx::query(&self.sql.insert_many)
                            .bind(&rows)
                            .bind(format_ts(now))
                            .fetch_all(&mut *tx)
                            .await?,
                    )?;
                    created.sort_by_key(|m| m.id);
                    let ids: Vec<i64> = created.iter().map(|m| m.id).collect();
                    sqlx::query(&self.sql.idem_set)
                        .bind(key)
                        .bind(serde_json::to_string(&ids).expect("ids serialize"))
                        .execute(&mut *tx)
                        .await?;
                    Step::Created(created)
                } else {
                    let (hash, ids): (String, String) =
                        sqlx::query_as(&self.sql.idem_get).bind(key).fetch_one(&mut *tx).await?;
                    if hash == request_hash {
                        Step::Replay(serde_json::from_str(&ids).unwrap_or_default())
                    } else {
                        Step::Conflict
                    }
                };
                tx.commit().await?;
                step
            })
        };
        Ok(match step {
            Step::Created(m) => Idempotent::Created(m),
            Step::Replay(ids) => Idempotent::Replayed(self.get_many(&ids).await?),
            Step::Conflict => Idempotent::Conflict,
        })
    }

    /// Messages by id, in id order (missing ids are skipped).
    pub async fn get_many(&self, ids: &[i64]) -> Result<Vec<Message>> {
        let ids_json = serde_json::to_string(ids).expect("ids serialize");
        let mut rows = with_pool!(self, |pool| messages(
            sqlx::query(&self.sql.get_many).bind(&ids_json).fetch_all(pool).await?
        )?);
        rows.sort_by_key(|m| m.id);
        Ok(rows)
    }

    /// Lease up to `limit` due messages to `worker` until `lease_until`:
    /// pending messages whose time has come, and messages whose previous
    /// holder's lease ran out (its worker died). `attempts` is incremented
    /// here, so a message that kills its worker every time still runs out of
    /// retries.
    pub async fn claim(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        self.claim_after(worker, now, lease_until, limit, 0).await
    }

    /// [`Store::claim`], looking only at ids above `after_id`. A processor
    /// sweeping a long backlog passes the last id it claimed, so each claim
    /// starts where the previous one stopped instead of walking again over
    /// index entries of rows it has just finished (on PostgreSQL those stay
    /// in the index until vacuum).
    pub async fn claim_after(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        after_id: i64,
    ) -> Result<Vec<Message>> {
        self.claim_filtered(ClaimFilter::Any, worker, now, lease_until, limit, after_id)
            .await
    }

    /// [`Store::claim_after`] restricted to one channel (or to rows whose
    /// channel is not one Herald knows, so that they can be failed).
    pub async fn claim_filtered(
        &self,
        filter: ClaimFilter,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        after_id: i64,
    ) -> Result<Vec<Message>> {
        let sql = match filter {
            ClaimFilter::Any => &self.sql.claim,
            ClaimFilter::Channel(_) => &self.sql.claim_channel,
            ClaimFilter::UnknownChannel => &self.sql.claim_other,
        };
        let _turn = self.write_turn().await;
        let mut claimed = with_pool!(self, |pool| {
            let q = sqlx::query(sql)
                .bind(worker)
                .bind(format_ts(now))
                .bind(format_ts(lease_until))
                .bind(i64::from(limit))
                .bind(after_id);
            // Only the channel filter has a sixth parameter: a dummy one would
            // skew PostgreSQL's row estimates for the generic plan.
            let q = match filter {
                ClaimFilter::Channel(c) => q.bind(c.as_str()),
                _ => q,
            };
            messages(q.fetch_all(pool).await?)?
        });
        claimed.sort_by_key(|m| m.id);
        Ok(claimed)
    }

    /// Record outcomes and attempts in one transaction. Only rows still
    /// leased to `worker` change; their ids are returned. Attempt records are
    /// kept either way: the provider call happened.
    pub async fn complete(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        completions: &[Completion],
        attempts: &[AttemptRecord],
    ) -> Result<Vec<i64>> {
        if completions.is_empty() && attempts.is_empty() {
            return Ok(Vec::new());
        }
        let completions_json = serde_json::to_string(completions).expect("completions serialize");
        let attempts_json = serde_json::to_string(attempts).expect("attempts serialize");
        let _turn = self.write_turn().await;
        let ids = with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let ids: Vec<i64> = if completions.is_empty() {
                Vec::new()
            } else {
                sqlx::query_scalar(&self.sql.complete)
                    .bind(&completions_json)
                    .bind(format_ts(now))
                    .bind(worker)
                    .fetch_all(&mut *tx)
                    .await?
            };
            if !attempts.is_empty() {
                sqlx::query(&self.sql.insert_attempts)
                    .bind(&attempts_json)
                    .bind(worker)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            ids
        });
        Ok(ids)
    }

    /// When the next open message becomes due (it may already be due).
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let t: Option<String> = with_pool!(self, |pool| sqlx::query_scalar(&self.sql.next_due)
            .fetch_one(pool)
            .await?);
        Ok(t.as_deref().and_then(parse_ts))
    }

    pub async fn get(&self, id: i64) -> Result<Message> {
        let found = with_pool!(self, |pool| {
            match sqlx::query(&self.sql.get).bind(id).fetch_optional(pool).await? {
                Some(row) => Some(row.message()?),
                None => None,
            }
        });
        found.ok_or(StoreError::NotFound(id))
    }

    pub async fn list(&self, f: &ListFilter) -> Result<Vec<Message>> {
        let rows = with_pool!(self, |pool| messages(
            sqlx::query(&self.sql.list)
                .bind(f.status.map(|s| s.as_str()))
                .bind(f.channel.as_deref())
                .bind(f.recipient.as_deref())
                .bind(f.created_from.map(format_ts))
                .bind(f.created_to.map(format_ts))
                .bind(f.before_id)
                .bind(i64::from(f.limit))
                .bind(i32::from(f.scheduled_only))
                .fetch_all(pool)
                .await?
        )?);
        Ok(rows)
    }

    pub async fn attempts(&self, id: i64) -> Result<Vec<Attempt>> {
        let rows = with_pool!(self, |pool| sqlx::query(&self.sql.attempts)
            .bind(id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.attempt())
            .collect::<std::result::Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// Put failed messages back in the queue, with a fresh round of retries.
    /// Returns the ids that were failed and are now pending.
    pub async fn retry(&self, ids: &[i64], now: DateTime<Utc>) -> Result<Vec<i64>> {
        let ids_json = serde_json::to_string(ids).expect("ids serialize");
        let _turn = self.write_turn().await;
        let mut done: Vec<i64> = with_pool!(self, |pool| sqlx::query_scalar(&self.sql.retry_ids)
            .bind(&ids_json)
            .bind(format_ts(now))
            .fetch_all(pool)
            .await?);
        done.sort_unstable();
        Ok(done)
    }

    /// Put every failed message back in the queue.
    pub async fn retry_all_failed(&self, now: DateTime<Utc>) -> Result<Vec<i64>> {
        let _turn = self.write_turn().await;
        let mut done: Vec<i64> = with_pool!(self, |pool| sqlx::query_scalar(&self.sql.retry_failed)
            .bind(format_ts(now))
            .fetch_all(pool)
            .await?);
        done.sort_unstable();
        Ok(done)
    }

    /// Cancel a pending (or scheduled) message.
    pub async fn cancel(&self, id: i64, now: DateTime<Utc>) -> Result<Message> {
        let cancelled = {
            let _turn = self.write_turn().await;
            with_pool!(self, |pool| {
                match sqlx::query(&self.sql.cancel)
                    .bind(id)
                    .bind(format_ts(now))
                    .fetch_optional(pool)
                    .await?
                {
                    Some(row) => Some(row.message()?),
                    None => None,
                }
            })
        };
        match cancelled {
            Some(m) => Ok(m),
            None => Err(self.wrong_status(id, "pending", "cancelled").await),
        }
    }

    /// Explain why a state change did not apply.
    pub async fn wrong_status(&self, id: i64, allowed: &'static str, action: &'static str) -> StoreError {
        let status: std::result::Result<Option<String>, sqlx::Error> =
            with_pool!(self, |pool| sqlx::query_scalar(&self.sql.status_of)
                .bind(id)
                .fetch_optional(pool)
                .await);
        match status {
            Ok(Some(status)) => StoreError::WrongStatus {
                id,
                status,
                allowed,
                action,
            },
            Ok(None) => StoreError::NotFound(id),
            Err(e) => StoreError::Database(e),
        }
    }

    /// Record a delivery receipt and move the message's delivery status
    /// forward (never backwards), in one transaction.
    pub async fn apply_receipt(&self, r: &ReceiptUpdate, now: DateTime<Utc>) -> Result<ReceiptResult> {
        let _turn = self.write_turn().await;
        let result = with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let id: Option<i64> = match (r.message_id, &r.provider_message_id) {
                (Some(id), _) => {
                    sqlx::query_scalar(&self.sql.id_exists)
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?
                }
                (None, Some(pid)) => {
                    sqlx::query_scalar(&self.sql.find_by_provider_id)
                        .bind(pid)
                        .bind(r.provider)
                        .fetch_optional(&mut *tx)
                        .await?
                }
                (None, None) => None,
            };
            let result = match id {
                None => ReceiptResult::Unmatched,
                Some(id) => {
                    let inserted = sqlx::query(&self.sql.insert_event)
                        .bind(id)
                        .bind(r.provider)
                        .bind(&r.event)
                        .bind(r.delivery_status)
                        .bind(r.occurred_at.map(format_ts))
                        .bind(format_ts(now))
                        .bind(&r.dedupe_key)
                        .bind(r.detail.to_string())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if inserted == 0 {
                        ReceiptResult::Duplicate(id)
                    } else {
                        if let Some(status) = r.delivery_status {
                            sqlx::query(&self.sql.apply_delivery)
                                .bind(id)
                                .bind(status)
                                .bind(crate::receipts::rank(status))
                                .bind(format_ts(r.occurred_at.unwrap_or(now)))
                                .bind(r.error_code.as_deref())
                                .execute(&mut *tx)
                                .await?;
                        }
                        ReceiptResult::Applied(id)
                    }
                }
            };
            tx.commit().await?;
            result
        });
        Ok(result)
    }

    /// Every receipt for a message, oldest first.
    pub async fn events(&self, id: i64) -> Result<Vec<Event>> {
        let rows = with_pool!(self, |pool| sqlx::query(&self.sql.events)
            .bind(id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.event())
            .collect::<std::result::Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// Add a recipient to a channel's suppression list (kept if already there).
    pub async fn suppress(
        &self,
        channel: &str,
        recipient: &str,
        reason: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let _turn = self.write_turn().await;
        let n = with_pool!(self, |pool| sqlx::query(&self.sql.suppress)
            .bind(channel)
            .bind(recipient)
            .bind(reason)
            .bind(source)
            .bind(format_ts(now))
            .execute(pool)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// Remove a suppression (the customer opted back in). False if there was none.
    pub async fn unsuppress(&self, channel: &str, recipient: &str) -> Result<bool> {
        let _turn = self.write_turn().await;
        let n = with_pool!(self, |pool| sqlx::query(&self.sql.unsuppress)
            .bind(channel)
            .bind(recipient)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    pub async fn suppressions(&self, channel: Option<&str>, limit: u32) -> Result<Vec<Suppression>> {
        let rows = with_pool!(self, |pool| sqlx::query(&self.sql.suppressions)
            .bind(channel)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.suppression())
            .collect::<std::result::Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// Which of these (channel, recipient) pairs are suppressed, with the reason.
    pub async fn suppressed_among(
        &self,
        pairs: &[(String, String)],
    ) -> Result<std::collections::HashMap<(String, String), String>> {
        if pairs.is_empty() {
            return Ok(Default::default());
        }
        let recipients: Vec<&str> = pairs.iter().map(|(_, r)| r.as_str()).collect();
        let json = serde_json::to_string(&recipients).expect("recipients serialize");
        let rows: Vec<(String, String, String)> = with_pool!(self, |pool| sqlx::query_as(&self.sql.suppressed_among)
            .bind(&json)
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .filter(|(c, r, _)| pairs.iter().any(|(pc, pr)| pc == c && pr == r))
            .map(|(c, r, reason)| ((c, r), reason))
            .collect())
    }

    /// Save a new version of template `name` in `locale`; returns it. The
    /// version number grows across all locales of the name.
    /// (Placeholders are `$n` in order of first use: SQLite and PostgreSQL both read them.)
    pub async fn put_template(
        &self,
        name: &str,
        locale: &str,
        channel: Option<&str>,
        parts: &crate::templates::TemplateParts,
        is_default: bool,
    ) -> Result<TemplateVersion> {
        const NEXT: &str = "SELECT coalesce(max(version), 0) + 1 FROM notification_templates WHERE name = $1";
        const INSERT: &str = "INSERT INTO notification_templates (name, version, locale, channel, parts, is_default)
                              VALUES ($1, $2, $3, $4, $5, $6)";
        const WAS_DEFAULT: &str =
            "SELECT count(*) FROM notification_templates WHERE name = $1 AND locale = $2 AND is_default = 1";
        const UNDEFAULT: &str = "UPDATE notification_templates SET is_default = 0 WHERE name = $1 AND locale <> $2";
        let parts_json = serde_json::to_string(parts).expect("parts serialize");
        {
            let _turn = self.write_turn().await;
            with_pool!(self, |pool| {
                let mut tx = pool.begin().await?;
                let version: i32 = sqlx::query_scalar(NEXT).bind(name).fetch_one(&mut *tx).await?;
                // The first locale saved is the default until another is marked so;
                // a new version of the default locale stays the default.
                let was_default: i64 = sqlx::query_scalar(WAS_DEFAULT)
                    .bind(name)
                    .bind(locale)
                    .fetch_one(&mut *tx)
                    .await?;
                let is_default = is_default || version == 1 || was_default > 0;
                if is_default {
                    sqlx::query(UNDEFAULT).bind(name).bind(locale).execute(&mut *tx).await?;
                }
                sqlx::query(INSERT)
                    .bind(name)
                    .bind(version)
                    .bind(locale)
                    .bind(channel)
                    .bind(&parts_json)
                    .bind(i32::from(is_default))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            });
        }
        let all = self.templates(Some(name)).await?;
        all.into_iter()
            .find(|t| t.locale == locale)
            .ok_or(StoreError::NotFound(0))
    }

    /// The latest version of each (name, locale), optionally for one name.
    pub async fn templates(&self, name: Option<&str>) -> Result<Vec<TemplateVersion>> {
        let cast = if self.is_postgres() { "::text" } else { "" };
        let q = format!(
            "SELECT name, version, locale, channel, parts, is_default, created_at
               FROM notification_templates t
              WHERE ($1{cast} IS NULL OR name = $1)
                AND version = (SELECT max(version) FROM notification_templates
                                WHERE name = t.name AND locale = t.locale)
              ORDER BY name, locale"
        );
        let rows = with_pool!(self, |pool| sqlx::query(&q)
            .bind(name)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.template())
            .collect::<std::result::Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// The template to use for `name` in `locale`: the locale, then its
    /// language, then the template's default locale (the one saved as
    /// default, else the first one saved).
    pub async fn find_template(&self, name: &str, locale: Option<&str>) -> Result<Option<TemplateVersion>> {
        let all = self.templates(Some(name)).await?;
        let default = all
            .iter()
            .find(|t| t.is_default)
            .or_else(|| all.iter().min_by_key(|t| t.version))
            .map(|t| t.locale.clone())
            .unwrap_or_default();
        for l in crate::templates::locale_chain(locale, &default) {
            if let Some(t) = all.iter().find(|t| t.locale.eq_ignore_ascii_case(&l)) {
                return Ok(Some(t.clone()));
            }
        }
        Ok(None)
    }

    /// Delete every version of a template. Messages keep what they were rendered with.
    pub async fn delete_template(&self, name: &str) -> Result<bool> {
        let _turn = self.write_turn().await;
        let n = with_pool!(self, |pool| sqlx::query(
            "DELETE FROM notification_templates WHERE name = $1"
        )
        .bind(name)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n > 0)
    }

    /// Message counts by status and channel.
    pub async fn counts(&self) -> Result<Vec<Count>> {
        let rows: Vec<(String, String, i64)> =
            with_pool!(self, |pool| sqlx::query_as(&self.sql.counts).fetch_all(pool).await?);
        let mut counts: Vec<Count> = rows
            .into_iter()
            .map(|(status, channel, count)| Count { status, channel, count })
            .collect();
        counts.sort_by(|a, b| (&a.status, &a.channel).cmp(&(&b.status, &b.channel)));
        Ok(counts)
    }

    /// Creation time of the oldest message that is due and still pending.
    pub async fn oldest_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let t: Option<String> = with_pool!(self, |pool| sqlx::query_scalar(&self.sql.oldest_due)
            .bind(format_ts(now))
            .fetch_one(pool)
            .await?);
        Ok(t.as_deref().and_then(parse_ts))
    }

    /// Run one statement of test or tooling SQL (no results).
    pub async fn execute_raw(&self, sql: &str) -> Result<u64> {
        let _turn = self.write_turn().await;
        let n = with_pool!(self, |pool| sqlx::query(sql).execute(pool).await?.rows_affected());
        Ok(n)
    }

    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await);
    }
}
