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

mod metrics;
mod retry;
mod shutdown;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::clock::{format_ts, Clock, Random};
use crate::domain::{
    parse_metadata_text, Channel, Content, ContentInput, MessageStatus, OutgoingMessage, Recipient, ValidationError,
};
use crate::providers::{FailureClass, Providers, SendError};
use crate::ratelimit::{Limit, RateLimiter};
use crate::store::{AttemptRecord, ClaimFilter, Completion, Message, Store};

pub use metrics::SendMetrics;
pub use retry::{Decision, RetryPolicy};
pub use shutdown::{Shutdown, ShutdownHandle};

use retry::chrono_duration;

#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Written to `lease_owner`; unique per process.
    pub worker_id: String,
    /// Messages claimed per statement (`BATCH_SIZE`).
    pub batch_size: u32,
    /// Rate and concurrency per channel; a channel not listed is unlimited
    /// with [`DEFAULT_CONCURRENCY`] calls in flight.
    pub limits: HashMap<Channel, ChannelLimits>,
    /// How long a claim is held before other workers may take the message.
    pub lease: Duration,
    /// The longest a provider call may take; a message is only sent if its
    /// lease outlasts this.
    pub send_timeout: Duration,
    /// Watch mode: how often to look for due messages when nothing wakes us.
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
}

impl ProcessorConfig {
    pub fn new(worker_id: impl Into<String>) -> Self {
        ProcessorConfig {
            worker_id: worker_id.into(),
            batch_size: 100,
            limits: HashMap::new(),
            lease: Duration::from_secs(120),
            send_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(50),
            retry: RetryPolicy::default(),
        }
    }

    pub fn channel_limits(&self, channel: Channel) -> ChannelLimits {
        self.limits.get(&channel).copied().unwrap_or(ChannelLimits {
            rate: 0.0,
            burst: 1,
            concurrency: DEFAULT_CONCURRENCY,
        })
    }

    /// Claimed but not yet recorded: enough for the senders to stay busy
    /// while one batch is being claimed and another recorded.
    fn max_in_flight(&self) -> usize {
        let senders: usize = Channel::ALL.iter().map(|c| self.channel_limits(*c).concurrency).sum();
        senders + 2 * self.batch_size as usize
    }
}

/// Provider calls in flight per channel when nothing else is configured.
pub const DEFAULT_CONCURRENCY: usize = 100;

/// How far ahead a claim looks at a rate-limited sender's tokens: messages
/// are only claimed if they can be sent within this time.
const RATE_HORIZON: Duration = Duration::from_secs(2);

/// One channel's limits (`SMS_RATE_LIMIT`, `SMS_RATE_BURST`, `SMS_CONCURRENCY`…).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelLimits {
    /// Messages per second per sender; 0 = unlimited.
    pub rate: f64,
    /// Messages a sender may send at once after being idle.
    pub burst: u32,
    /// Provider calls in flight at once on this channel.
    pub concurrency: usize,
}

/// A worker identity that is unique across processes and hosts.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herald".to_owned());
    format!("{host}:{}:{:08x}", std::process::id(), fastrand::u32(..))
}

/// Counters for one processor's lifetime (also read by `/metrics`).
#[derive(Debug, Default)]
pub struct ProcessorStats {
    pub claimed: AtomicU64,
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub released: AtomicU64,
    pub lease_lost: AtomicU64,
}

/// A snapshot of [`ProcessorStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub claimed: u64,
    pub sent: u64,
    pub failed: u64,
    pub retried: u64,
    pub released: u64,
    pub lease_lost: u64,
}

impl RunSummary {
    /// What happened between `before` and `self`.
    fn since(self, before: RunSummary) -> RunSummary {
        RunSummary {
            claimed: self.claimed - before.claimed,
            sent: self.sent - before.sent,
            failed: self.failed - before.failed,
            retried: self.retried - before.retried,
            released: self.released - before.released,
            lease_lost: self.lease_lost - before.lease_lost,
        }
    }
}

impl ProcessorStats {
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            claimed: self.claimed.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            released: self.released.load(Ordering::Relaxed),
            lease_lost: self.lease_lost.load(Ordering::Relaxed),
        }
    }
}

/// How long to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Send everything due now, then return (cron). Retries scheduled for
    /// later are left for the next run.
    Once,
    /// Run until shutdown.
    Watch,
}

/// The outcome of handling one claimed message.
struct Outcome {
    completion: Completion,
    attempt: Option<AttemptRecord>,
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
    /// Provider calls in flight, per channel: a slow provider fills only its own.
    slots: HashMap<Channel, Arc<Semaphore>>,
    metrics: Arc<SendMetrics>,
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
        let limiter = RateLimiter::new(
            Channel::ALL
                .into_iter()
                .map(|c| {
                    let l = config.channel_limits(c);
                    (
                        c,
                        Limit {
                            rate: l.rate,
                            burst: l.burst,
                        },
                    )
                })
                .collect(),
        );
        let slots = Channel::ALL
            .into_iter()
            .map(|c| (c, Arc::new(Semaphore::new(config.channel_limits(c).concurrency.max(1)))))
            .collect();
        Processor {
            store,
            providers,
            clock,
            random,
            config,
            stats: Arc::new(ProcessorStats::default()),
            wake: Arc::new(Notify::new()),
            limiter,
            slots,
            metrics: Arc::new(SendMetrics::default()),
        }
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

    /// Run until everything due is done (`Once`) or until `shutdown` fires.
    /// On shutdown: stop claiming, let sends in flight finish, hand back
    /// messages not yet started, record everything, return.
    pub async fn run(self: &Arc<Self>, mode: Mode, shutdown: Shutdown) -> anyhow::Result<RunSummary> {
        let before = self.stats.summary();
        let max_in_flight = self.config.max_in_flight();
        let in_flight = Arc::new(Semaphore::new(max_in_flight));
        let recorded = Arc::new(Notify::new());
        let (tx, rx) = mpsc::unbounded_channel::<(Outcome, OwnedSemaphorePermit)>();
        let recorder = tokio::spawn(self.clone().record_loop(rx, recorded.clone()));
        let listener = if mode == Mode::Watch {
            self.spawn_listener().await
        } else {
            None
        };

        let result = self.claim_loop(mode, &shutdown, &in_flight, &recorded, &tx).await;

        // Wait until every claimed message has been recorded.
        let _all = in_flight.acquire_many(max_in_flight as u32).await;
        drop(tx);
        if let Err(e) = recorder.await {
            tracing::error!(error = %e, "recorder task failed");
        }
        if let Some(l) = listener {
            l.abort();
        }
        result.map(|()| self.stats.summary().since(before))
    }

    async fn claim_loop(
        self: &Arc<Self>,
        mode: Mode,
        shutdown: &Shutdown,
        in_flight: &Arc<Semaphore>,
        recorded: &Arc<Notify>,
        tx: &mpsc::UnboundedSender<(Outcome, OwnedSemaphorePermit)>,
    ) -> anyhow::Result<()> {
        let max_in_flight = self.config.max_in_flight();
        let mut db_failures = 0u32;
        // Sweep: continue after the last id claimed while batches come back
        // full; start again from the lowest id when one does not, and at
        // least every second so that retries and expired leases below the
        // cursor are not kept waiting behind a long backlog.
        let mut cursor = 0i64;
        let mut last_wrap = std::time::Instant::now();
        loop {
            if shutdown.is_triggered() {
                return Ok(());
            }
            let available = in_flight.available_permits();
            if available == 0 {
                tokio::select! {
                    _ = recorded.notified() => {}
                    _ = shutdown.wait() => {}
                }
                continue;
            }
            let want = (self.config.batch_size as usize).min(available) as u32;
            if last_wrap.elapsed() > Duration::from_secs(1) {
                cursor = 0;
            }
            if cursor == 0 {
                last_wrap = std::time::Instant::now();
            }
            let (claimed, want) = match self.claim_round(want, cursor).await {
                Ok(c) => {
                    db_failures = 0;
                    c
                }
                Err(e) if mode == Mode::Watch => {
                    db_failures += 1;
                    let wait = Duration::from_millis(250 * u64::from(db_failures.min(20)));
                    tracing::error!(error = %e, retry_in_ms = wait.as_millis() as u64, "claiming messages failed");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.wait() => {}
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let got = claimed.len();
            self.stats.claimed.fetch_add(got as u64, Ordering::Relaxed);
            let swept_from = cursor;
            cursor = if got == want as usize {
                claimed.last().map_or(0, |m| m.id)
            } else {
                0
            };
            // One look-up per batch: which recipients must not be messaged.
            let pairs: Vec<(String, String)> = claimed.iter().filter_map(suppression_key).collect();
            let suppressed = match self.store.suppressed_among(&pairs).await {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    tracing::error!(error = %e, "could not read the suppression list; handing the batch back");
                    None
                }
            };
            for msg in claimed {
                let verdict = match &suppressed {
                    None => Verdict::HandBack,
                    Some(s) => match suppression_key(&msg).and_then(|k| s.get(&k).cloned()) {
                        Some(reason) => Verdict::Suppressed(reason),
                        None => Verdict::Send,
                    },
                };
                let permit = in_flight
                    .clone()
                    .try_acquire_owned()
                    .expect("claimed no more than the free permits");
                let this = self.clone();
                let shutdown = shutdown.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let outcome = match verdict {
                        Verdict::Send => this.handle(msg, shutdown).await,
                        Verdict::Suppressed(reason) => this.suppressed(&msg, &reason),
                        Verdict::HandBack => this.release(&msg, "suppression_list_unavailable", None),
                    };
                    // The receiver lives until every permit is back.
                    let _ = tx.send((outcome, permit));
                });
            }
            if got == want as usize || swept_from > 0 {
                continue; // there may be more due right now (or below the cursor)
            }
            match mode {
                Mode::Once => {
                    if in_flight.available_permits() == max_in_flight {
                        return Ok(()); // nothing due, nothing in flight
                    }
                    // Outcomes may make more messages due (or release some).
                    tokio::select! {
                        _ = recorded.notified() => {}
                        _ = shutdown.wait() => {}
                    }
                }
                Mode::Watch => {
                    let sleep = self.idle_sleep().await;
                    tokio::select! {
                        _ = tokio::time::sleep(sleep) => {}
                        _ = self.wake.notified() => {}
                        _ = shutdown.wait() => {}
                    }
                }
            }
        }
    }

    /// One claim, or one per channel when rate limits or a provider pause
    /// are in force (so that a throttled channel is only claimed as fast as
    /// it can send, and never crowds out the others). Returns the messages
    /// and how many were asked for (a full answer means "there may be more").
    async fn claim_round(&self, want: u32, cursor: i64) -> Result<(Vec<Message>, u32), crate::store::StoreError> {
        let now = self.clock.now();
        let lease_until = now + chrono_duration(self.config.lease);
        let worker = &self.config.worker_id;
        if !self.limiter.any_limited() && !self.limiter.any_paused(now) {
            let got = self
                .store
                .claim_filtered(ClaimFilter::Any, worker, now, lease_until, want, cursor)
                .await?;
            return Ok((got, want));
        }
        let mut budgets = Vec::new();
        for channel in Channel::ALL {
            let provider = self.providers.get(channel);
            let budget = self
                .limiter
                .budget(channel, provider.name(), &provider.sender(channel), now, RATE_HORIZON)
                .unwrap_or(u32::MAX);
            if budget > 0 {
                budgets.push((channel, budget));
            }
        }
        // Share the batch between the channels that can send.
        let share = (want / (budgets.len().max(1) as u32)).max(1);
        let mut all = Vec::new();
        let mut asked = 0;
        for (channel, budget) in budgets {
            let n = budget.min(share).min(want - asked);
            if n == 0 {
                continue;
            }
            asked += n;
            // Per-channel claims always start from the lowest id: the sweep
            // cursor is for the single-claim fast path.
            all.extend(
                self.store
                    .claim_filtered(ClaimFilter::Channel(channel), worker, now, lease_until, n, 0)
                    .await?,
            );
        }
        if cursor == 0 && asked < want {
            let n = want - asked;
            all.extend(
                self.store
                    .claim_filtered(ClaimFilter::UnknownChannel, worker, now, lease_until, n, 0)
                    .await?,
            );
        }
        // Full if every channel that could take more got all it asked for.
        Ok((all, asked.max(1)))
    }

    /// How long to sleep when nothing is due: until the next scheduled
    /// message or retry, but at most the poll interval.
    async fn idle_sleep(&self) -> Duration {
        let poll = self.config.poll_interval;
        match self.store.next_due().await {
            Ok(Some(t)) => {
                let until = (t - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
                until.clamp(Duration::from_millis(5), poll.max(Duration::from_millis(5)))
            }
            Ok(None) => poll,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the next due time");
                poll
            }
        }
    }

    /// PostgreSQL: LISTEN for the insert trigger's NOTIFY and wake the claim
    /// loop. Polling still runs, so a lost connection only slows pick-up.
    async fn spawn_listener(&self) -> Option<tokio::task::JoinHandle<()>> {
        let pool = self.store.pg_pool()?.clone();
        let wake = self.wake.clone();
        Some(tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; polling meanwhile");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen("herald_messages").await {
                    tracing::warn!(error = %e, "LISTEN failed; polling meanwhile");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
                loop {
                    match listener.recv().await {
                        Ok(_) => wake.notify_one(),
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                            wake.notify_one();
                            break;
                        }
                    }
                }
            }
        }))
    }

    /// Parse, wait for the sender's rate limit and a send slot, send, classify.
    async fn handle(&self, msg: Message, shutdown: Shutdown) -> Outcome {
        // Rows inserted with `template` + `template_data` are rendered now.
        let (msg, rendered) = match self.render_stored_template(msg).await {
            Ok(r) => r,
            Err((msg, e)) => return self.invalid(&msg, e),
        };
        let mut outcome = self.handle_rendered(msg, shutdown).await;
        outcome.completion.rendered = rendered;
        outcome
    }

    /// Render a row's template (when it names one and was not rendered at
    /// enqueue time), filling its content; the rendered fields are stored
    /// with the outcome, so the row shows what was sent.
    async fn render_stored_template(
        &self,
        mut msg: Message,
    ) -> Result<(Message, Option<crate::store::RenderedFields>), (Message, ValidationError)> {
        let Some(name) = msg.template.clone() else {
            return Ok((msg, None));
        };
        if msg.template_version.is_some() {
            return Ok((msg, None));
        }
        let data = match msg.template_data.as_deref().filter(|d| !d.trim().is_empty()) {
            None => serde_json::json!({}),
            Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(v) => v,
                Err(e) => {
                    return Err((
                        msg,
                        ValidationError::new("template_data", format!("template_data is not valid JSON: {e}")),
                    ))
                }
            },
        };
        let template = match self.store.find_template(&name, msg.locale.as_deref()).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                return Err((
                    msg,
                    ValidationError::new("template", format!("there is no template named {name:?}")),
                ))
            }
            Err(e) => {
                return Err((
                    msg,
                    ValidationError::new("template", format!("could not read template {name:?}: {e}")),
                ))
            }
        };
        let r = match crate::templates::render(&template.parts, &data) {
            Ok(r) => r,
            Err(e) => return Err((msg, e)),
        };
        let fields = crate::store::RenderedFields {
            subject: r.subject.clone(),
            body: r.body.clone(),
            html_body: r.html_body.clone(),
            content_sid: r.content_sid.clone(),
            content_variables: r.content_variables.as_ref().map(|v| v.to_string()),
            template_version: template.version,
            locale: template.locale.clone(),
        };
        msg.subject = r.subject;
        msg.body = r.body;
        msg.html_body = r.html_body;
        msg.content_sid = r.content_sid;
        msg.content_variables_raw = fields.content_variables.clone();
        Ok((msg, Some(fields)))
    }

    async fn handle_rendered(&self, msg: Message, shutdown: Shutdown) -> Outcome {
        let parsed = match parse_claimed(&msg) {
            Ok(out) => out,
            Err(e) => return self.invalid(&msg, e),
        };
        let channel = parsed.channel();
        let provider = self.providers.get(channel).clone();
        let sender = provider.sender(channel);
        let now = self.clock.now();
        if let Some(until) = self.limiter.paused_until(provider.name(), now) {
            return self.release(&msg, "provider_paused", Some(until));
        }
        // Wait our turn for this sender. Over the limit, a message waits in
        // memory only while its lease allows; otherwise it goes back to the
        // queue, due when its token is.
        let ready = self.limiter.reserve(channel, provider.name(), &sender, now);
        if ready > now {
            let must_start_by = msg
                .lease_expires_at
                .map(|e| e - chrono_duration(self.config.send_timeout));
            if must_start_by.is_some_and(|latest| ready >= latest) {
                self.limiter.refund(channel, provider.name(), &sender, now);
                return self.release(&msg, "rate_limited", Some(ready));
            }
            self.metrics
                .record_rate_limit_wait(channel.as_str(), (ready - now).to_std().unwrap_or_default());
            tokio::select! {
                _ = self.clock.sleep_until(ready) => {}
                _ = shutdown.wait() => {
                    self.limiter.refund(channel, provider.name(), &sender, self.clock.now());
                    return self.release(&msg, "shutdown", None);
                }
            }
        }
        let _slot = tokio::select! {
            slot = self.slots[&channel].clone().acquire_owned() => slot.expect("send slots are never closed"),
            _ = shutdown.wait() => return self.release(&msg, "shutdown", None),
        };
        if shutdown.is_triggered() {
            return self.release(&msg, "shutdown", None);
        }
        let now = self.clock.now();
        if let Some(until) = self.limiter.paused_until(provider.name(), now) {
            return self.release(&msg, "provider_paused", Some(until));
        }
        // Only send if the lease outlasts the longest possible send.
        let safe_until = now + chrono_duration(self.config.send_timeout);
        if msg.lease_expires_at.is_some_and(|exp| exp <= safe_until) {
            return self.release(&msg, "lease_too_short", None);
        }
        let span = tracing::info_span!(
            "send",
            message_id = msg.id,
            channel = %channel,
            provider = provider.name(),
            recipient = %parsed.recipient.masked(),
            attempt = parsed.attempt,
        );
        async {
            // The previous attempt may have reached the provider: ask it first.
            if let Some(since) = unknown_outcome_since(&msg, provider.name()) {
                // `at` is when the attempt ended; the request went out up to a timeout earlier.
                let started = since - chrono_duration(self.config.send_timeout);
                match provider.reconcile(&parsed, started).await {
                    Ok(Some(receipt)) => {
                        tracing::info!(
                            provider_message_id = receipt.provider_message_id.as_deref(),
                            "the earlier attempt did reach the provider; not sending again"
                        );
                        let now = self.clock.now();
                        let mut outcome = self.classify(&msg, provider.name(), now, now, Ok(receipt));
                        if let Some(a) = outcome.attempt.as_mut() {
                            a.outcome = "reconciled";
                        }
                        return outcome;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "could not look the message up at the provider; sending again")
                    }
                }
            }
            let started = self.clock.now();
            // A backstop: providers enforce their own timeout, but nothing may
            // hold a message past its lease.
            let result = match tokio::time::timeout(self.config.send_timeout, provider.send(&parsed)).await {
                Ok(r) => r,
                Err(_) => Err(SendError::retryable(
                    "timeout",
                    format!(
                        "no answer from {} within {:?}",
                        provider.name(),
                        self.config.send_timeout
                    ),
                )
                .with_outcome_unknown()),
            };
            if let Err(SendError {
                suppress: Some(reason), ..
            }) = &result
            {
                let (ch, to) = (channel.to_string(), parsed.recipient.to_string());
                if let Err(e) = self
                    .store
                    .suppress(&ch, &to, reason, provider.name(), self.clock.now())
                    .await
                {
                    tracing::error!(error = %e, "could not add the recipient to the suppression list");
                }
            }
            if let Err(SendError {
                class: FailureClass::RateLimited { until },
                ..
            }) = &result
            {
                // Only this provider waits; the others carry on.
                tracing::warn!(until = %format_ts(*until), "provider asked us to slow down; pausing it");
                self.limiter.pause(provider.name(), *until);
            }
            let finished = self.clock.now();
            self.classify(&msg, provider.name(), started, finished, result)
        }
        .instrument(span)
        .await
    }

    fn classify(
        &self,
        msg: &Message,
        provider: &str,
        started: DateTime<Utc>,
        finished: DateTime<Utc>,
        result: Result<crate::providers::Receipt, SendError>,
    ) -> Outcome {
        let attempt_no = msg.attempts;
        let mut attempt = AttemptRecord {
            message_id: msg.id,
            attempt: attempt_no,
            started_at: started,
            finished_at: finished,
            provider: provider.to_owned(),
            outcome: "sent",
            error: None,
            provider_message_id: None,
        };
        match result {
            Ok(receipt) => {
                tracing::info!(provider_message_id = receipt.provider_message_id.as_deref(), "sent");
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                attempt.provider_message_id = receipt.provider_message_id.clone();
                self.metrics
                    .record_send(provider, "sent", (finished - started).to_std().unwrap_or_default());
                Outcome {
                    completion: Completion {
                        id: msg.id,
                        status: MessageStatus::Sent,
                        error: None,
                        provider: Some(provider.to_owned()),
                        provider_message_id: receipt.provider_message_id,
                        sent_at: Some(finished),
                        next_attempt_at: None,
                        attempts_delta: 0,
                        base_delta: 0,
                        rendered: None,
                    },
                    attempt: Some(attempt),
                }
            }
            Err(err) => {
                let round = u32::try_from(msg.round_attempts().max(1)).unwrap_or(1);
                let decision = self.config.retry.decide(err.class, round, finished, (self.random)());
                let (status, next_at, base_delta) = match decision {
                    Decision::Fail => (MessageStatus::Failed, None, 0),
                    Decision::RetryAt { at, counts_as_retry } => {
                        (MessageStatus::Pending, Some(at), i32::from(!counts_as_retry))
                    }
                };
                let error = error_json(&err, provider, attempt_no, finished, next_at);
                attempt.outcome = match (err.class, err.outcome_unknown) {
                    (_, true) => "unknown",
                    (FailureClass::Permanent, _) => "permanent",
                    (FailureClass::Retryable, _) => "retryable",
                    (FailureClass::RateLimited { .. }, _) => "rate_limited",
                };
                attempt.error = Some(error.clone());
                self.metrics.record_send(
                    provider,
                    attempt.outcome,
                    (finished - started).to_std().unwrap_or_default(),
                );
                attempt.provider_message_id = err.provider_message_id.clone();
                if status == MessageStatus::Failed {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(code = %err.code, error = %err.message, alert = err.alert, "failed");
                } else {
                    self.stats.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(code = %err.code, error = %err.message, next_attempt_at = ?next_at, "will retry");
                }
                Outcome {
                    completion: Completion {
                        id: msg.id,
                        status,
                        error: Some(error),
                        provider: Some(provider.to_owned()),
                        provider_message_id: err.provider_message_id,
                        sent_at: None,
                        next_attempt_at: next_at,
                        attempts_delta: 0,
                        base_delta,
                        rendered: None,
                    },
                    attempt: Some(attempt),
                }
            }
        }
    }

    /// A row that cannot be sent as written: fail it without a provider call.
    fn invalid(&self, msg: &Message, e: ValidationError) -> Outcome {
        tracing::warn!(message_id = msg.id, field = e.field, error = %e.message, "message is invalid; not sent");
        self.fail_unsent(msg, "invalid_message", e.message, Some(e.field))
    }

    /// The recipient is on the suppression list: fail without a provider call.
    fn suppressed(&self, msg: &Message, reason: &str) -> Outcome {
        tracing::info!(message_id = msg.id, reason, "recipient is suppressed; not sent");
        let message = format!(
            "the recipient is on the {} suppression list ({reason}); remove them from it to send again",
            msg.channel
        );
        self.fail_unsent(msg, "suppressed", message, None)
    }

    /// `failed` without a provider call (the claim's attempt is undone).
    fn fail_unsent(&self, msg: &Message, code: &str, message: String, field: Option<&str>) -> Outcome {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        let mut error = serde_json::json!({
            "code": code,
            "message": message,
            "provider": null,
            "retryable": false,
            "attempt": msg.attempts - 1,
            "at": format_ts(self.clock.now()),
        });
        if let Some(f) = field {
            error["field"] = f.into();
        }
        Outcome {
            completion: Completion {
                id: msg.id,
                status: MessageStatus::Failed,
                error: Some(error.to_string()),
                provider: None,
                provider_message_id: None,
                sent_at: None,
                next_attempt_at: None,
                attempts_delta: -1,
                base_delta: 0,
                rendered: None,
            },
            attempt: None,
        }
    }

    /// Hand a message back to the queue untouched: no provider call was made.
    /// `due` delays it (rate limit, provider pause).
    fn release(&self, msg: &Message, why: &'static str, due: Option<DateTime<Utc>>) -> Outcome {
        tracing::debug!(message_id = msg.id, why, "released without sending");
        self.metrics.record_held_back(why);
        self.stats.released.fetch_add(1, Ordering::Relaxed);
        Outcome {
            completion: Completion {
                id: msg.id,
                status: MessageStatus::Pending,
                error: None,
                provider: None,
                provider_message_id: None,
                sent_at: None,
                next_attempt_at: due.or(msg.next_attempt_at),
                attempts_delta: -1,
                base_delta: 0,
                rendered: None,
            },
            attempt: None,
        }
    }

    /// Write outcomes in batches as they arrive; give the in-flight permits
    /// back only once their outcome is stored.
    async fn record_loop(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<(Outcome, OwnedSemaphorePermit)>,
        recorded: Arc<Notify>,
    ) {
        const MAX_BATCH: usize = 1000;
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let completions: Vec<Completion> = batch.iter().map(|(o, _)| o.completion.clone()).collect();
            let attempts: Vec<AttemptRecord> = batch.iter().filter_map(|(o, _)| o.attempt.clone()).collect();
            let mut failures = 0u32;
            loop {
                match self
                    .store
                    .complete(&self.config.worker_id, self.clock.now(), &completions, &attempts)
                    .await
                {
                    Ok(applied) => {
                        if applied.len() < completions.len() {
                            let lost = completions.len() - applied.len();
                            self.stats.lease_lost.fetch_add(lost as u64, Ordering::Relaxed);
                            tracing::warn!(
                                lost,
                                "lease lost before recording; another worker owns these messages now"
                            );
                        }
                        break;
                    }
                    Err(e) => {
                        failures += 1;
                        // Keep trying: dropping an outcome would resend a message
                        // that was already sent. Give up only after ~5 minutes,
                        // when the leases have long expired anyway.
                        if failures > 60 {
                            tracing::error!(error = %e, count = completions.len(), "giving up recording outcomes");
                            break;
                        }
                        tracing::error!(error = %e, "recording outcomes failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500 * u64::from(failures.min(10)))).await;
                    }
                }
            }
            batch.clear(); // returns the permits
            recorded.notify_one();
        }
    }
}

/// When the last attempt started, if its outcome is unknown and it went to
/// this provider.
fn unknown_outcome_since(msg: &Message, provider: &str) -> Option<DateTime<Utc>> {
    let e = msg.error.as_ref()?;
    if e.get("outcome_unknown")?.as_bool()? && e.get("provider")?.as_str()? == provider {
        e.get("at").and_then(|a| a.as_str()).and_then(crate::clock::parse_ts)
    } else {
        None
    }
}

/// Whether a claimed message may go to its provider.
enum Verdict {
    Send,
    Suppressed(String),
    HandBack,
}

/// (channel, normalised recipient), as suppression entries are stored.
fn suppression_key(msg: &Message) -> Option<(String, String)> {
    let channel = Channel::parse(&msg.channel).ok()?;
    let recipient = Recipient::parse(channel, &msg.recipient).ok()?;
    Some((channel.to_string(), recipient.to_string()))
}

/// Parse a stored row into something a provider may send.
fn parse_claimed(msg: &Message) -> Result<OutgoingMessage, ValidationError> {
    let channel = Channel::parse(&msg.channel).map_err(|e| ValidationError::new("channel", e.to_string()))?;
    let recipient = Recipient::parse(channel, &msg.recipient)?;
    let content_variables = match msg.content_variables_raw.as_deref().filter(|t| !t.trim().is_empty()) {
        None => None,
        Some(text) => Some(serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
            ValidationError::new("content_variables", format!("content_variables is not valid JSON: {e}"))
        })?),
    };
    let content = Content::parse(
        channel,
        ContentInput {
            subject: msg.subject.as_deref(),
            body: msg.body.as_deref(),
            html_body: msg.html_body.as_deref(),
            content_sid: msg.content_sid.as_deref(),
            content_variables: content_variables.as_ref(),
        },
    )?;
    let metadata = parse_metadata_text(msg.metadata_raw.as_deref())?;
    if msg.send_at_invalid {
        return Err(ValidationError::new(
            "send_at",
            "send_at is not a date and time (use RFC 3339, e.g. 2026-11-25T14:30:00Z)",
        ));
    }
    Ok(OutgoingMessage {
        id: msg.id,
        attempt: u32::try_from(msg.attempts).unwrap_or(1),
        recipient,
        content,
        metadata,
    })
}

/// The `error` column: what went wrong, where, and what happens next.
fn error_json(err: &SendError, provider: &str, attempt: i32, at: DateTime<Utc>, next: Option<DateTime<Utc>>) -> String {
    let mut v = serde_json::json!({
        "code": err.code,
        "message": err.message,
        "provider": provider,
        "retryable": err.class.is_retryable(),
        "attempt": attempt,
        "at": format_ts(at),
    });
    let obj = v.as_object_mut().expect("object");
    if let Some(s) = err.status {
        obj.insert("status".into(), s.into());
    }
    if err.outcome_unknown {
        obj.insert("outcome_unknown".into(), true.into());
    }
    if let FailureClass::RateLimited { until } = err.class {
        obj.insert("rate_limited_until".into(), format_ts(until).into());
    }
    if let Some(n) = next {
        obj.insert("next_attempt_at".into(), format_ts(n).into());
    }
    if err.alert {
        obj.insert("alert".into(), true.into());
    }
    v.to_string()
}
