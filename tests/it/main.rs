//! End-to-end tests: the queue and processor against real SQLite files and a
//! real PostgreSQL, and the `herald` binary as a user runs it.

#[macro_use]
mod support;

mod adoption;
mod alerts;
mod api;
mod cli;
mod contract;
mod crash;
mod dashboard;
mod deploy;
mod doctor;
mod duplicates;
mod e2e;
mod failover;
mod fallback;
mod hardening;
mod outbound;
mod providers;
mod queue;
mod ratelimits;
mod receipts;
mod recording;
mod retention;
mod router;
mod scale;
mod smtp;
mod stats;
mod templates;
mod zones;
