//! Herald: notification delivery from a `notification_messages` table.
//!
//! - [`domain`]: parsed types (channels, phone numbers, email addresses, messages).
//! - [`store`]: the table as a queue, on SQLite or PostgreSQL.
//! - [`processor`]: claim → send → record, with leases and retries.
//! - [`providers`]: the services that deliver messages.
//! - [`config`]: every setting, read from the environment.

pub mod app;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod processor;
pub mod providers;
pub mod ratelimit;
pub mod receipts;
pub mod store;
pub mod telemetry;
pub mod templates;
