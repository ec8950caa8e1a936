//! Status webhooks to the POS: the dispatcher that delivers the outbox.
//!
//! Each delivery is leased (like a message), POSTed with the Standard
//! Webhooks headers (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`), and recorded: delivered on a 2xx, else tried again
//! on the schedule of `schedule.rs` (about three days). The dispatcher has
//! its own HTTP client and its own slots (`WEBHOOK_CONCURRENCY`), so a slow
//! or dead endpoint never holds up the messages. An endpoint that fails
//! without a single success for `WEBHOOK_DISABLE_AFTER_HOURS` is disabled
//! (its deliveries wait for it to be enabled again); one that answers 410
//! Gone is disabled at once.
//!
//! - `schedule.rs`: when to try again (pure)

pub mod schedule;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use tokio::sync::{mpsc, Semaphore};

use crate::clock::{chrono_duration, format_ts, Clock, Random};
use crate::processor::Shutdown;
use crate::prometheus::{Exposition, Kind};
use crate::signing::{signature_header, WebhookSecret};
use crate::store::{Delivery, DeliveryResult, DeliveryState, EndpointKeys, Store};

/// The most of an endpoint's answer kept in the delivery log.
const MAX_ANSWER_KEPT: usize = 300;
/// The most of an endpoint's answer read at all.
const MAX_ANSWER_READ: usize = 16 * 1024;

pub use crate::config::OutboundSettings;

/// What the dispatcher counts for `/metrics`.
#[derive(Debug, Default)]
pub struct OutboundMetrics {
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    disabled: AtomicU64,
}

impl OutboundMetrics {
    pub fn render(&self, out: &mut Exposition) {
        out.family(
            "herald_webhook_deliveries_total",
            Kind::Counter,
            "Status webhook requests to the POS by result: delivered (2xx), retry (failed, tried again later), \
             failed (retries used up, or the endpoint answered 410).",
        );
        for (result, n) in [
            ("delivered", &self.delivered),
            ("retry", &self.retried),
            ("failed", &self.failed),
        ] {
            out.sample(
                "herald_webhook_deliveries_total",
                &[("result", result)],
                n.load(Ordering::Relaxed),
            );
        }
        out.family(
            "herald_webhook_endpoints_disabled_total",
            Kind::Counter,
            "Endpoints Herald disabled because they kept failing.",
        )
        .sample(
            "herald_webhook_endpoints_disabled_total",
            &[],
            self.disabled.load(Ordering::Relaxed),
        );
    }
}

pub struct Dispatcher {
    store: Store,
    clock: Arc<dyn Clock>,
    random: Random,
    settings: OutboundSettings,
    worker: String,
    http: reqwest::Client,
    metrics: Arc<OutboundMetrics>,
}

/// What a drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DrainSummary {
    pub delivered: u64,
    pub retrying: u64,
    pub failed: u64,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        random: Random,
        settings: OutboundSettings,
        worker: &str,
    ) -> Dispatcher {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            // A signed request goes only where the endpoint says.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client");
        Dispatcher {
            store,
            clock,
            random,
            settings,
            worker: worker.to_owned(),
            http,
            metrics: Arc::default(),
        }
    }

    pub fn metrics(&self) -> Arc<OutboundMetrics> {
        self.metrics.clone()
    }

    /// A lease that outlasts any request and its recording: a dispatcher
    /// killed mid-request leaves its deliveries to others this soon after.
    fn lease_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono_duration(self.settings.timeout + Duration::from_secs(5))
    }

    /// Deliver until `shutdown`; requests in flight then finish and are
    /// recorded.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        if !self.settings.deliver {
            tracing::info!("WEBHOOK_DELIVERY=false: status webhooks are left to other processes");
            return;
        }
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let (tx, rx) = mpsc::unbounded_channel::<DeliveryResult>();
        let recorder = tokio::spawn(self.clone().record_loop(rx));
        let wake = self.store.outbound_wake();
        let mut failures = 0u32;
        loop {
            if shutdown.is_triggered() {
                break;
            }
            // Claim in batches (half the slots at least, unless nothing is
            // in flight): every claim reads the outbox's due index, and one
            // claim per freed slot would read it thousands of times a second.
            let total = self.settings.concurrency.max(1);
            let free = slots.available_permits();
            if free == 0 || (free < total.div_ceil(2) && free < total) {
                let want = total.div_ceil(2).max(1) as u32;
                tokio::select! {
                    p = slots.clone().acquire_many_owned(want) => drop(p),
                    _ = tokio::time::sleep(Duration::from_millis(20)), if free > 0 => {}
                    _ = shutdown.wait() => {}
                }
                if shutdown.is_triggered() {
                    break;
                }
                if slots.available_permits() == 0 {
                    continue;
                }
            }
            let free = slots.available_permits();
            let now = self.clock.now();
            let claimed = match self
                .store
                .claim_deliveries(&self.worker, now, self.lease_until(now), free.min(200) as u32)
                .await
            {
                Ok(c) => {
                    failures = 0;
                    c
                }
                Err(e) => {
                    failures += 1;
                    tracing::error!(error = %e, "could not read the status webhook outbox");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(250 * u64::from(failures.min(20)))) => {}
                        _ = shutdown.wait() => {}
                    }
                    continue;
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(self.settings.poll) => {}
                    _ = shutdown.wait() => {}
                }
                continue;
            }
            let keys = self.keys_for(&claimed, now).await;
            for d in claimed {
                let permit = slots
                    .clone()
                    .try_acquire_owned()
                    .expect("claimed no more than the free slots");
                let this = self.clone();
                let tx = tx.clone();
                let key = keys.get(&d.endpoint_id).cloned();
                tokio::spawn(async move {
                    let result = this.deliver(d, key).await;
                    let _ = tx.send(result);
                    drop(permit);
                });
            }
        }
        // Let requests in flight finish (each within its timeout).
        let _all = slots.acquire_many(self.settings.concurrency.max(1) as u32).await;
        drop(tx);
        let _ = recorder.await;
    }

    /// Deliver everything due now, once (`herald process`): retries that
    /// fall due later are left for the next run.
    pub async fn drain(self: &Arc<Self>) -> DrainSummary {
        let mut summary = DrainSummary::default();
        if !self.settings.deliver {
            return summary;
        }
        loop {
            let now = self.clock.now();
            let claimed = match self
                .store
                .claim_deliveries(
                    &self.worker,
                    now,
                    self.lease_until(now),
                    self.settings.concurrency.max(1) as u32,
                )
                .await
            {
                Ok(c) if !c.is_empty() => c,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %e, "could not read the status webhook outbox");
                    break;
                }
            };
            let keys = self.keys_for(&claimed, now).await;
            let mut set = tokio::task::JoinSet::new();
            for d in claimed {
                let key = keys.get(&d.endpoint_id).cloned();
                let this = self.clone();
                set.spawn(async move { this.deliver(d, key).await });
            }
            let mut results = Vec::new();
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(r) => results.push(r),
                    Err(e) => tracing::error!(error = %e, "a status webhook delivery task failed"),
                }
            }
            for r in &results {
                match r.state {
                    DeliveryState::Delivered => summary.delivered += 1,
                    DeliveryState::RetryAt(_) => summary.retrying += 1,
                    DeliveryState::Failed => summary.failed += 1,
                }
            }
            self.record(&results).await;
        }
        summary
    }

    async fn keys_for(&self, claimed: &[Delivery], now: DateTime<Utc>) -> HashMap<i64, EndpointKeys> {
        let mut ids: Vec<i64> = claimed.iter().map(|d| d.endpoint_id).collect();
        ids.sort_unstable();
        ids.dedup();
        match self.store.endpoint_keys(&ids, now).await {
            Ok(keys) => keys.into_iter().map(|k| (k.id, k)).collect(),
            Err(e) => {
                tracing::error!(error = %e, "could not read the webhook endpoints");
                HashMap::new()
            }
        }
    }

    async fn record_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<DeliveryResult>) {
        let mut batch = Vec::with_capacity(500);
        while rx.recv_many(&mut batch, 500).await > 0 {
            self.record(&batch).await;
            batch.clear();
        }
    }

    /// Write results (retrying the write for a while: the deliveries stay
    /// leased meanwhile, and are delivered again if it never works), then
    /// disable endpoints that kept failing.
    async fn record(&self, results: &[DeliveryResult]) {
        for attempt in 1..=20u64 {
            match self.store.record_deliveries(&self.worker, results).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, attempt, "could not record status webhook deliveries");
                    tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
                }
            }
        }
        let gone: Vec<i64> = results
            .iter()
            .filter(|r| r.status == Some(410))
            .map(|r| r.delivery.endpoint_id)
            .collect();
        if results.iter().any(|r| r.state != DeliveryState::Delivered) {
            self.disable_failing(&gone).await;
        }
    }

    async fn disable_failing(&self, gone: &[i64]) {
        let now = self.clock.now();
        let Ok(endpoints) = self.store.endpoints().await else {
            return;
        };
        let limit = chrono_duration(self.settings.disable_after);
        for e in endpoints.iter().filter(|e| e.enabled) {
            let reason = if gone.contains(&e.id) {
                "it answered 410 Gone".to_owned()
            } else {
                match e.failing_since {
                    Some(since) if now - since >= limit => format!(
                        "every delivery failed since {} ({} h without a success; WEBHOOK_DISABLE_AFTER_HOURS)",
                        format_ts(since),
                        self.settings.disable_after.as_secs() / 3600
                    ),
                    _ => continue,
                }
            };
            match self.store.disable_endpoint(e.id, &reason, now).await {
                Ok(true) => {
                    self.metrics.disabled.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        endpoint = e.id,
                        reason = %reason,
                        "status webhook endpoint {} disabled: {reason}; its events wait for it (enable it again \
                         with PATCH /api/webhook-endpoints/{} or `herald webhooks enable {}`)",
                        e.id,
                        e.id,
                        e.id
                    )
                }
                Ok(false) => {}
                Err(err) => tracing::error!(endpoint = e.id, error = %err, "could not disable a failing endpoint"),
            }
        }
    }

    /// POST one delivery; what came of it.
    async fn deliver(&self, d: Delivery, key: Option<EndpointKeys>) -> DeliveryResult {
        let started = std::time::Instant::now();
        let (status, error) = match &key {
            None => (None, Some("the endpoint is gone".to_owned())),
            Some(k) => self.post(&d, k).await,
        };
        let at = self.clock.now();
        let latency_ms = started.elapsed().as_millis() as i64;
        let delivered = status.is_some_and(|s| (200..300).contains(&s));
        let state = if delivered {
            self.metrics.delivered.fetch_add(1, Ordering::Relaxed);
            DeliveryState::Delivered
        } else if status == Some(410) || key.is_none() {
            self.metrics.failed.fetch_add(1, Ordering::Relaxed);
            DeliveryState::Failed
        } else {
            match schedule::retry_delay(d.attempt, (self.random)()) {
                Some(wait) => {
                    self.metrics.retried.fetch_add(1, Ordering::Relaxed);
                    DeliveryState::RetryAt(at + chrono_duration(wait))
                }
                None => {
                    self.metrics.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        event_id = %d.event_id,
                        endpoint = d.endpoint_id,
                        "a status webhook failed on every attempt; replay it once the endpoint works"
                    );
                    DeliveryState::Failed
                }
            }
        };
        if !delivered {
            tracing::debug!(
                event_id = %d.event_id,
                endpoint = d.endpoint_id,
                status,
                error = error.as_deref().unwrap_or(""),
                "status webhook not delivered"
            );
        }
        DeliveryResult {
            delivery: d,
            at,
            state,
            status,
            latency_ms,
            error,
        }
    }

    /// The request: the endpoint's status (if it answered), and what went
    /// wrong (no answer, or the start of a non-2xx answer).
    async fn post(&self, d: &Delivery, k: &EndpointKeys) -> (Option<u16>, Option<String>) {
        let mut secrets = Vec::new();
        for s in std::iter::once(&k.secret).chain(k.previous.as_ref()) {
            match WebhookSecret::parse(s.expose_secret()) {
                Ok(s) => secrets.push(s),
                Err(e) => return (None, Some(format!("the endpoint's secret is unusable: {e}"))),
            }
        }
        let timestamp = self.clock.now().timestamp();
        let signature = signature_header(&secrets, &d.event_id, timestamp, d.payload.as_bytes());
        let sent = self
            .http
            .post(&k.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &d.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(d.payload.clone())
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            // Without the URL: it may carry a token of the POS's.
            Err(e) => return (None, Some(crate::providers::error_chain(&e.without_url()))),
        };
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return (Some(status), None);
        }
        if (300..400).contains(&status) {
            return (
                Some(status),
                Some(format!(
                    "HTTP {status}: redirects are not followed (give the endpoint's final URL)"
                )),
            );
        }
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            let room = MAX_ANSWER_READ.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_ANSWER_READ {
                break;
            }
        }
        let text: String = String::from_utf8_lossy(&body)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(MAX_ANSWER_KEPT)
            .collect();
        (
            Some(status),
            Some(format!("HTTP {status}: {text}").trim_end_matches(": ").to_owned()),
        )
    }
}
