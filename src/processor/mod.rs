//! Claim → send → record.
//!
//! Invariants:
//! - A message is sent only while this worker holds its lease, and only if
//!   the lease outlasts the send timeout; so a slow (not dead) worker never
//!   races the worker that reclaims its messages after the lease expires.
//! - No transaction is open during a provider call: claiming is one short
//!   statement, recording is one short transaction guarded by the lease owner.
//! - A worker that dies loses nothing: its leased rows are claimed again when
//!   the lease expires. Only a message whose send was in flight at the
//!   moment of death can be sent twice.
//!
//! - `run.rs`: the claim loop and the record loop
//! - `claimed.rs`: a claimed row → a message a provider may send
//! - `send.rs`: rate limit, send slot, reconciliation, the provider call
//! - `outcome.rs`: what to write back for each result

mod circuits;
mod claimed;
mod claimsize;
mod concurrency;
mod config;
mod fallback;
mod metrics;
mod outcome;
mod reconcile;
mod run;
mod send;
mod shutdown;
mod stats;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

use concurrency::{AdaptiveLimit, Window, INITIAL_CONCURRENCY};

use crate::clock::{Clock, Random};
use crate::domain::Channel;
use crate::providers::Providers;
use crate::ratelimit::RateLimiter;
use crate::store::Store;

pub use circuits::CircuitView;
pub use config::{default_worker_id, ProcessorConfig, DEFAULT_BATCH_SIZE};
pub use metrics::SendMetrics;
pub use shutdown::{Shutdown, ShutdownHandle};
pub use stats::{ProcessorStats, RunSummary};

/// How long to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Send everything due now, then return (cron). Retries scheduled for
    /// later are left for the next run.
    Once,
    /// Run until shutdown.
    Watch,
}

pub struct Processor {
    store: Store,
    providers: Providers,
    clock: Arc<dyn Clock>,
    random: Random,
    config: ProcessorConfig,
    stats: Arc<ProcessorStats>,
    wake: Arc<Notify>,
    limiter: RateLimiter,
    /// Provider calls in flight, per channel: a slow provider fills only its
    /// own. Each limit adapts to how its provider answers.
    slots: HashMap<Channel, Arc<AdaptiveLimit>>,
    metrics: Arc<SendMetrics>,
    /// Claimed messages whose send (or other handling) has not finished.
    unsent: std::sync::atomic::AtomicUsize,
    /// Notified each time one of them is done.
    handled: Notify,
    /// Outcomes cannot be written right now: claim nothing.
    recording_blocked: std::sync::atomic::AtomicBool,
    /// Provider ids that look-ups here matched to a message.
    reserved: reconcile::Reserved,
    /// Each provider's circuit breaker, shared with the other workers.
    circuits: circuits::Circuits,
}

impl Processor {
    pub fn new(
        store: Store,
        providers: Providers,
        clock: Arc<dyn Clock>,
        random: Random,
        config: ProcessorConfig,
    ) -> Self {
        let mut config = config;
        // A send must fit inside the lease with room to record it.
        config.send_timeout = config.send_timeout.min(config.lease / 2);
        let limits = Channel::ALL
            .into_iter()
            .map(|c| (c, config.channel_limits(c)))
            .collect();
        // Workers sharing a PostgreSQL database share its rate limits.
        let limiter = if store.shares_rate_limits() {
            RateLimiter::shared(limits)
        } else {
            RateLimiter::new(limits)
        };
        let slots = Channel::ALL
            .into_iter()
            .map(|c| {
                // A rate-limited channel starts with enough calls in flight
                // to reach its rate at up to a second per call.
                let limits = config.channel_limits(c);
                let max = limits.concurrency.max(1);
                let initial = INITIAL_CONCURRENCY.max(limits.rate.ceil() as usize).min(max);
                (c, AdaptiveLimit::new(Window::new(initial, 1, max)))
            })
            .collect();
        Processor {
            store,
            providers,
            clock,
            random,
            stats: Arc::new(ProcessorStats::default()),
            wake: Arc::new(Notify::new()),
            limiter,
            slots,
            metrics: Arc::new(SendMetrics::default()),
            unsent: Default::default(),
            handled: Notify::new(),
            recording_blocked: Default::default(),
            reserved: Default::default(),
            circuits: circuits::Circuits::new(config.breaker, &config.worker_id, config.send_timeout),
            config,
        }
    }

    /// Each provider's circuit, as this worker sees it.
    pub fn circuits(&self) -> Vec<CircuitView> {
        self.circuits.views()
    }

    pub fn stats(&self) -> Arc<ProcessorStats> {
        self.stats.clone()
    }

    pub fn metrics(&self) -> Arc<SendMetrics> {
        self.metrics.clone()
    }

    /// Wake a watching processor now (e.g. after an API enqueue in-process).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn config(&self) -> &ProcessorConfig {
        &self.config
    }
}
