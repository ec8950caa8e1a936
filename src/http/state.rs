//! What every handler can reach: the store, the clock, the API keys, the
//! provider webhooks' secrets, and the in-process processor (if any).

use std::sync::Arc;

use secrecy::SecretString;
use tokio::sync::Notify;

use super::enqueuer::Enqueuer;
use super::gauges::QueueGauges;
use super::webhooks::ReceiptCounters;
use crate::clock::Clock;
use crate::processor::{Processor, ProcessorStats, SendMetrics};
use crate::receipts::SendgridKey;
use crate::store::Store;

/// How old the queue gauges of `/metrics` may be, by default.
pub const DEFAULT_METRICS_CACHE: std::time::Duration = std::time::Duration::from_secs(5);

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub(super) enqueuer: Enqueuer,
    pub(super) api_keys: Arc<Vec<SecretString>>,
    /// The in-process processor, when `serve` runs one.
    pub(super) processor: Option<ProcessorHandles>,
    pub(super) webhooks: Arc<Webhooks>,
    /// Slots for signed webhook requests being read and applied.
    pub(super) webhook_slots: Arc<tokio::sync::Semaphore>,
    /// The queue gauges of `/metrics`, refreshed at most once per period.
    pub(super) gauges: Arc<QueueGauges>,
}

/// What the provider webhooks need to authenticate requests.
#[derive(Default)]
pub struct Webhooks {
    /// `PUBLIC_URL`: the URL Twilio signs.
    pub public_url: Option<String>,
    pub twilio_token: Option<SecretString>,
    pub sendgrid_key: Option<SendgridKey>,
    pub counters: ReceiptCounters,
}

/// The in-process processor's levers and counters.
#[derive(Clone)]
pub(super) struct ProcessorHandles {
    pub wake: Arc<Notify>,
    pub stats: Arc<ProcessorStats>,
    pub metrics: Arc<SendMetrics>,
}

impl AppState {
    /// The state for one server. `processor` is the in-process processor:
    /// new messages wake it, and its counters appear in `/metrics`.
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        api_keys: Vec<SecretString>,
        webhooks: Webhooks,
        processor: Option<&Processor>,
    ) -> AppState {
        let handles = processor.map(|p| ProcessorHandles {
            wake: p.waker(),
            stats: p.stats(),
            metrics: p.metrics(),
        });
        let enqueuer = Enqueuer::start(store.clone(), clock.clone(), handles.as_ref().map(|h| h.wake.clone()));
        AppState {
            store,
            clock,
            enqueuer,
            api_keys: Arc::new(api_keys),
            processor: handles,
            webhooks: Arc::new(webhooks),
            webhook_slots: Arc::new(tokio::sync::Semaphore::new(super::webhooks::WEBHOOK_CONCURRENCY)),
            gauges: Arc::new(QueueGauges::new(DEFAULT_METRICS_CACHE)),
        }
    }

    /// Serve the queue gauges of `/metrics` from snapshots at most this old
    /// (`METRICS_CACHE_SECONDS`).
    pub fn with_metrics_cache(mut self, max_age: std::time::Duration) -> AppState {
        self.gauges = Arc::new(QueueGauges::new(max_age));
        self
    }

    /// Wake the in-process processor (a message was queued or re-queued).
    pub(super) fn wake(&self) {
        if let Some(p) = &self.processor {
            p.wake.notify_one();
        }
    }
}
