//! Herald: notification delivery from a `notification_messages` table.
//!
//! Layers, lowest first (a module only uses modules on its own floor or below):
//! 1. [`domain`], [`clock`], [`prometheus`]: pure types and helpers
//! 2. [`config`], [`retry`], [`ratelimit`], [`breaker`], [`receipts`], [`signing`]: settings and pure policies
//! 3. [`store`]: the tables, on SQLite or PostgreSQL
//! 4. [`providers`], [`templates`]: delivery services and rendering
//! 5. [`processor`]: claim → send → record, with leases and retries; [`outbound`]:
//!    status webhooks to the POS, delivered from the outbox; [`alerts`]:
//!    rules over the statistics (its settings are plain data [`config`] fills in)
//! 6. [`http`]: the API, webhooks and operations endpoints
//! 7. [`app`]: building all of it from a [`config::Config`]
//!
//! See `ARCHITECTURE.md` for the flow and how to extend each layer.

pub mod alerts;
pub mod app;
pub mod breaker;
pub mod clock;
pub mod config;
pub mod dns;
pub mod domain;
pub mod http;
pub mod outbound;
pub mod processor;
pub mod prometheus;
pub mod providers;
pub mod ratelimit;
pub mod receipts;
pub mod retention;
pub mod retry;
pub mod signing;
pub mod store;
pub mod telemetry;
pub mod templates;
