//! The `notification_messages` table as a queue: enqueue, claim with a
//! lease, complete guarded by the lease owner, and the operator's views and
//! levers; plus the tables around it (attempts, receipts, suppressions,
//! templates, idempotency keys).
//!
//! One Rust implementation serves every backend: the statements differ
//! (`sql/`, built once at connect time), the code that binds and reads
//! them does not.
//!
//! - `backend.rs`: pools, migrations, parameter binding
//! - `rows.rs`: the rows handed back ([`Message`], [`Attempt`], …)
//! - `queue.rs`: enqueue, claim, complete, next due
//! - `operator.rs`: get, list, retry, cancel, counts
//! - `receipts.rs`, `suppressions.rs`, `templates.rs`: the other tables
//! - `retention.rs`: pruning finished messages and old rows (`herald prune`)
//! - `listen.rs`: wake-ups from the database (PostgreSQL LISTEN/NOTIFY)
//! - `buckets.rs`: rate-limit token buckets shared by workers (PostgreSQL)

#[macro_use]
mod backend;
mod alerts;
mod buckets;
mod circuits;
mod completion;
mod listen;
mod online;
mod operator;
mod outcomes;
mod queue;
mod receipts;
mod retention;
mod rows;
mod schema;
mod sessions;
mod sql;
mod stats;
mod suppressions;
mod templates;
mod webhooks;

use std::sync::Arc;

pub use alerts::{AlertEvent, AlertState};
pub use buckets::Grant;
pub use circuits::{CircuitRow, ProbeBid};
pub use completion::{AttemptRecord, Completion, RenderedFields};
pub use online::{Backfill, BACKFILL_BATCH};
pub use operator::{metadata_filter, ListFilter, EXACT_COUNT_ROWS, METADATA_MAX_CHARS};
pub use outcomes::PastAttempt;
pub use queue::{ClaimFilter, Idempotent, IDEMPOTENCY_KEY_HOURS};
pub use receipts::{ReceiptResult, ReceiptUpdate};
pub use retention::{ArchivedMessage, PruneCounts};
pub use rows::{Attempt, Count, Event, Message, Suppression, TemplateVersion};
pub use schema::{Column, Inspection, Plan, Step};
pub use sessions::Session;
pub use sql::{Layout, MAPPABLE};
pub use stats::{
    aggregate, minute_of, percentile_ms, Bucket, StatDelta, StatEvent, StatGroups, StatRow, LATENCY_BOUNDS_MS,
};
pub use webhooks::{
    Delivery, DeliveryAttempt, DeliveryResult, DeliveryRow, DeliveryState, Endpoint, EndpointKeys, OutboxEvent, Wanted,
    MAX_REPLAY,
};

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: backend::Backend,
    sql: Arc<sql::Statements>,
    /// How the message table is read (its column names, as adopted).
    layout: Layout,
    /// Which status-webhook event types endpoints want (cached).
    subscriptions: Arc<webhooks::Subscriptions>,
    /// Notified when this process wrote status-webhook events.
    outbound_wake: Arc<tokio::sync::Notify>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("message {0} not found")]
    NotFound(i64),
    #[error(
        "notification_messages exists but Herald has not adopted it yet: run `herald migrate --dry-run` to see what would change, then `herald migrate`"
    )]
    NotAdopted,
    #[error("outcomes cannot be recorded in notification_messages: {0}")]
    CannotRecord(String),
    #[error("message {id} is {status}; only {allowed} messages can be {action}")]
    WrongStatus {
        id: i64,
        status: String,
        allowed: &'static str,
        action: &'static str,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
