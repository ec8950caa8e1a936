//! What every handler can reach: the store, the clock, the API keys, the
//! provider webhooks' secrets, and the in-process processor (if any).

use std::sync::Arc;

use secrecy::SecretString;
use tokio::sync::Notify;

use super::dashboard::DashboardAuth;
use super::enqueuer::Enqueuer;
use super::gauges::QueueGauges;
use super::webhooks::ReceiptCounters;
use crate::alerts::{AlertRunner, AlertSettings};
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
    /// Who may sign in to the dashboard.
    pub(super) dashboard: Arc<DashboardAuth>,
    /// Prices for the dashboard's cost estimate.
    pub(super) prices: Arc<crate::config::Prices>,
    /// Alert rules and their evaluation (run by the application).
    pub(super) alerts: Arc<AlertRunner>,
    /// The status-webhook dispatcher's counters.
    pub(super) outbound: Option<Arc<crate::outbound::OutboundMetrics>>,
}

/// What the provider webhooks need to authenticate requests.
#[derive(Default)]
pub struct Webhooks {
    /// `PUBLIC_URL`: the URL Twilio signs.
    pub public_url: Option<String>,
    pub twilio_token: Option<SecretString>,
    pub sendgrid_key: Option<SendgridKey>,
    pub counters: ReceiptCounters,
    /// `WHATSAPP_FALLBACK=sms`: undelivered WhatsApp receipts fall back.
    pub whatsapp_fallback: Option<crate::domain::FallbackPolicy>,
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
        let (store_for_alerts, clock_for_alerts) = (store.clone(), clock.clone());
        AppState {
            store,
            clock,
            enqueuer,
            api_keys: Arc::new(api_keys),
            processor: handles,
            webhooks: Arc::new(webhooks),
            webhook_slots: Arc::new(tokio::sync::Semaphore::new(super::webhooks::WEBHOOK_CONCURRENCY)),
            gauges: Arc::new(QueueGauges::new(DEFAULT_METRICS_CACHE)),
            dashboard: Arc::new(DashboardAuth::default()),
            prices: Arc::new(crate::config::Prices::default()),
            alerts: Arc::new(AlertRunner::new(
                store_for_alerts,
                clock_for_alerts,
                AlertSettings::default(),
                crate::processor::default_worker_id(),
            )),
            outbound: None,
        }
    }

    /// Show the status-webhook dispatcher's counters in `/metrics`.
    pub fn with_outbound(mut self, metrics: Arc<crate::outbound::OutboundMetrics>) -> AppState {
        self.outbound = Some(metrics);
        self
    }

    /// Evaluate alerts with these settings.
    pub fn with_alerts(mut self, settings: AlertSettings) -> AppState {
        self.alerts = Arc::new(AlertRunner::new(
            self.store.clone(),
            self.clock.clone(),
            settings,
            crate::processor::default_worker_id(),
        ));
        self
    }

    /// Count webhook requests refused for their signature in the
    /// statistics (so alerts see them, whichever worker evaluates), every
    /// `every` until `shutdown`.
    pub async fn flush_webhook_rejections(self, every: std::time::Duration, shutdown: crate::processor::Shutdown) {
        use std::sync::atomic::Ordering;
        let mut flushed = (0u64, 0u64);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait() => {}
            }
            let c = &self.webhooks.counters;
            let now = (
                c.twilio_rejected.load(Ordering::Relaxed),
                c.sendgrid_rejected.load(Ordering::Relaxed),
            );
            let at = self.clock.now();
            let event = |provider: &str| crate::store::StatEvent {
                at,
                channel: String::new(),
                provider: provider.to_owned(),
                event: "webhook_rejected".into(),
                code: String::new(),
                latency_ms: None,
                segments: 0,
            };
            let mut events = Vec::new();
            events.extend((flushed.0..now.0).take(10_000).map(|_| event(crate::providers::TWILIO)));
            events.extend(
                (flushed.1..now.1)
                    .take(10_000)
                    .map(|_| event(crate::providers::SENDGRID)),
            );
            match self.store.add_stats(&events).await {
                Ok(()) => flushed = now,
                Err(e) => tracing::warn!(error = %e, "could not count refused webhook requests"),
            }
            if shutdown.is_triggered() {
                return;
            }
        }
    }

    /// The alert evaluator (the application runs it).
    pub fn alert_runner(&self) -> Arc<AlertRunner> {
        self.alerts.clone()
    }

    /// Who may sign in to the dashboard (API keys always may), for how
    /// long, and the prices its estimates use.
    pub fn with_dashboard(mut self, settings: &crate::config::DashboardSettings) -> AppState {
        let secure = self
            .webhooks
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        self.dashboard = Arc::new(DashboardAuth {
            password_hash: settings.password_hash.clone(),
            session_ttl: settings.session_ttl,
            secure,
            ..DashboardAuth::default()
        });
        self.prices = Arc::new(settings.prices.clone());
        self
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
