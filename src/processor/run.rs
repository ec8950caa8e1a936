//! The two loops of a run: claim (and hand each message to a send task),
//! and record (write outcomes back in batches).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

use super::claimed::{suppression_key, Verdict};
use super::claimsize::ClaimSize;
use super::outcome::Outcome;
use super::reconcile::{unrecorded_attempts, unrecorded_window};
use super::stats::ProcessorStats;
use super::{Mode, Processor, RunSummary, Shutdown};
use crate::clock::chrono_duration;
use crate::domain::{Channel, SmsFallback};
use crate::providers::Window;
use crate::ratelimit::RateLimiter;
use crate::store::{AttemptRecord, ClaimFilter, Completion, Message, PastAttempt, StoreError};

/// How far ahead a claim looks at a rate-limited sender's tokens: messages
/// are only claimed if they can be sent within this time.
const RATE_HORIZON: Duration = Duration::from_secs(2);

/// Outcomes written per statement.
const MAX_RECORD_BATCH: usize = 1000;

type Done = (Outcome, OwnedSemaphorePermit);

/// A round of claims: the messages, whether all that was wanted came, when
/// a throttled sender next has a token, and when a channel skipped for want
/// of an available provider has one again.
type Claimed = (Vec<Message>, bool, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

impl Processor {
    /// Run until everything due is done (`Once`) or until `shutdown` fires.
    /// On shutdown: stop claiming, let sends in flight finish, hand back
    /// messages not yet started, record everything, return.
    pub async fn run(self: &Arc<Self>, mode: Mode, shutdown: Shutdown) -> anyhow::Result<RunSummary> {
        let before = self.stats.summary();
        // Nothing is sent unless its outcome can be recorded.
        self.store
            .self_check(&self.config.worker_id, self.clock.now())
            .await
            .context("the start-up check failed, so nothing was sent")?;
        let max_in_flight = self.config.max_in_flight();
        let in_flight = Arc::new(Semaphore::new(max_in_flight));
        let recorded = Arc::new(Notify::new());
        let (tx, rx) = mpsc::unbounded_channel::<Done>();
        let recorder = tokio::spawn(self.clone().record_loop(rx, recorded.clone(), shutdown.clone()));
        let listener = match mode {
            Mode::Watch => self.store.listen(self.wake.clone()),
            Mode::Once => None,
        };
        // What other workers know of the providers' circuits.
        self.circuits.sync(&self.store, true).await;

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
        tx: &mpsc::UnboundedSender<Done>,
    ) -> anyhow::Result<()> {
        let max_in_flight = self.config.max_in_flight();
        let mut db_failures = 0u32;
        let mut claim_size = ClaimSize::new(self.config.batch_size);
        let mut round = 0usize;
        let mut last_unknown = std::time::Instant::now() - Duration::from_secs(1);
        loop {
            if shutdown.is_triggered() {
                return Ok(());
            }
            if self.recording_blocked.load(Ordering::Relaxed) {
                // Outcomes cannot be written: claim nothing more (each claim
                // would be a message whose outcome is lost) until they can.
                tokio::select! {
                    _ = recorded.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = shutdown.wait() => {}
                }
                continue;
            }
            let available = in_flight.available_permits();
            if available == 0 {
                tokio::select! {
                    _ = recorded.notified() => {}
                    _ = shutdown.wait() => {}
                }
                continue;
            }
            // Keep about one claim's worth waiting for the senders (a sent
            // message waiting to be recorded is not waiting for a sender).
            let waiting = self.unsent.load(Ordering::Relaxed).saturating_sub(self.sending());
            if !claim_size.should_claim(waiting) {
                tokio::select! {
                    _ = self.handled.notified() => {}
                    _ = shutdown.wait() => {}
                }
                continue;
            }
            let want = (claim_size.get() as usize).min(available) as u32;
            // Whether anything was in flight *before* this claim: if not, and
            // the claim finds nothing, nothing can make more messages due
            // (checking afterwards would race with sends finishing meanwhile).
            let idle_before = in_flight.available_permits() == max_in_flight;
            // Rows whose channel is none of Herald's are failed, not sent:
            // looked for once a second (the due index leads with the channel).
            let unknown_due = last_unknown.elapsed() >= Duration::from_secs(1);
            if unknown_due {
                last_unknown = std::time::Instant::now();
            }
            round = round.wrapping_add(1);
            self.circuits.sync(&self.store, false).await;
            let (claimed, full, throttled, blocked) = match self.claim_round(want, round, unknown_due).await {
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
            claim_size.after_claim(full, waiting);
            ProcessorStats::add(&self.stats.claimed, got as u64);
            self.dispatch(claimed, shutdown, in_flight, tx).await;
            if full {
                continue; // there may be more due right now
            }
            match (mode, throttled) {
                // A sender is out of tokens while messages may wait for it:
                // its next token is the next thing that can happen. The
                // messages claimed already hold up to RATE_HORIZON of tokens,
                // so waking for every single token would only cost round
                // trips: look again after a quarter of it at the soonest.
                (_, Some(at)) if got == 0 => {
                    let at = at.max(self.clock.now() + chrono_duration(RATE_HORIZON / 4));
                    tokio::select! {
                        _ = self.clock.sleep_until(at) => {}
                        _ = self.wake.notified(), if mode == Mode::Watch => {}
                        _ = shutdown.wait() => {}
                    }
                }
                (Mode::Once, _) if idle_before && got == 0 => return Ok(()), // nothing due, nothing in flight
                (Mode::Once, _) => {
                    // Outcomes may make more messages due (or release some).
                    tokio::select! {
                        _ = recorded.notified() => {}
                        _ = shutdown.wait() => {}
                    }
                }
                (Mode::Watch, _) => {
                    // Nothing claimable: the due rows may all be waiting
                    // for a circuit (no point looking before it admits).
                    let sleep = match blocked {
                        Some(at) if got == 0 => (at - self.clock.now()).to_std().unwrap_or_default().clamp(
                            Duration::from_millis(5),
                            self.config.poll_interval.max(Duration::from_millis(5)),
                        ),
                        _ => self.idle_sleep().await,
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(sleep) => {}
                        _ = self.wake.notified() => {}
                        _ = shutdown.wait() => {}
                    }
                }
            }
        }
    }

    /// Start a send task for each claimed message, after one look-up of
    /// the suppression list for the batch and one of the attempt history
    /// for messages claimed before in this round (an earlier claim may have
    /// sent them without recording it).
    async fn dispatch(
        self: &Arc<Self>,
        claimed: Vec<Message>,
        shutdown: &Shutdown,
        in_flight: &Arc<Semaphore>,
        tx: &mpsc::UnboundedSender<Done>,
    ) {
        let keys: Vec<_> = claimed.iter().map(suppression_key).collect();
        let recipients: Vec<_> = keys.iter().flatten().collect();
        let suppressed = match self.store.suppressed_among(&recipients).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "could not read the suppression list; handing the batch back");
                None
            }
        };
        let reclaimed: Vec<i64> = claimed
            .iter()
            .filter(|m| m.round_attempts() > 1)
            .map(|m| m.id)
            .collect();
        let history = match self.store.attempt_history(&reclaimed).await {
            Ok(list) => Some(list),
            Err(e) => {
                tracing::error!(error = %e, "could not read the attempt history; handing re-claimed messages back");
                None
            }
        };
        let mut by_message: HashMap<i64, Vec<&PastAttempt>> = HashMap::new();
        for a in history.iter().flatten() {
            by_message.entry(a.message_id).or_default().push(a);
        }
        // Claims that recorded nothing go into the history first, as calls
        // with an unknown outcome.
        let now = self.clock.now();
        let mut unrecorded: HashMap<i64, (Vec<i32>, Window)> = HashMap::new();
        let mut records = Vec::new();
        for msg in claimed.iter().filter(|m| reclaimed.contains(&m.id)) {
            let mine = by_message.get(&msg.id).map(Vec::as_slice).unwrap_or_default();
            if mine.iter().any(|a| a.attempt > msg.retry_base && a.accepted()) {
                continue;
            }
            let gaps = unrecorded_attempts(msg, mine);
            if gaps.is_empty() {
                continue;
            }
            let provider = Channel::parse(&msg.channel)
                .map(|c| self.providers.get(c).name())
                .unwrap_or("unknown");
            records.extend(self.unrecorded_records(msg, provider, &gaps));
            unrecorded.insert(msg.id, (gaps, unrecorded_window(msg, mine, now)));
        }
        let history_ok = history.is_some()
            && match self.store.add_attempts(&self.config.worker_id, &records).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(error = %e, "could not add unrecorded claims to the attempt history; handing re-claimed messages back");
                    false
                }
            };
        for (msg, recipient) in claimed.into_iter().zip(keys) {
            let earlier = by_message.get(&msg.id).and_then(|list| {
                list.iter()
                    .rev()
                    .find(|a| a.attempt > msg.retry_base && a.accepted())
                    .map(|a| (*a).clone())
            });
            let verdict = match &suppressed {
                None => Verdict::HandBack,
                _ if !history_ok && reclaimed.contains(&msg.id) => Verdict::HandBack,
                _ if earlier.is_some() => Verdict::AlreadyAccepted(earlier.expect("checked")),
                _ if msg.round_attempts() > self.config.retry.max_retries as i32 + 1 => {
                    Verdict::Abandoned(msg.round_attempts())
                }
                Some(s) => match recipient
                    .as_ref()
                    .and_then(|r| s.get(&(r.channel(), r.to_string())).cloned())
                {
                    Some(reason) => Verdict::Suppressed(reason),
                    None => Verdict::Send {
                        unrecorded: unrecorded.get(&msg.id).map(|(_, w)| *w),
                    },
                },
            };
            let permit = in_flight
                .clone()
                .try_acquire_owned()
                .expect("claimed no more than the free permits");
            self.unsent.fetch_add(1, Ordering::Relaxed);
            let this = self.clone();
            let shutdown = shutdown.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let outcome = match verdict {
                    Verdict::Send { unrecorded } => this.handle(&msg, recipient, unrecorded, shutdown).await,
                    Verdict::Suppressed(reason) => this.suppressed(&msg, &reason),
                    Verdict::AlreadyAccepted(a) => this.already_accepted(&msg, &a),
                    Verdict::Abandoned(claims) => this.abandoned(&msg, claims),
                    Verdict::HandBack => this.release(&msg, "history_unavailable", None),
                }
                .of_message(&msg);
                this.unsent.fetch_sub(1, Ordering::Relaxed);
                this.handled.notify_one();
                // The receiver lives until every permit is back.
                let _ = tx.send((outcome, permit));
            });
        }
    }

    /// One claim per channel (each reads its own part of the due index),
    /// each taking what is left of `want`, and no more than a rate-limited
    /// sender can start within [`RATE_HORIZON`]; the first channel changes
    /// each round so that none waits behind another's backlog. A channel
    /// whose every provider is unavailable (open circuits, a 429's pause)
    /// is skipped; one whose only available provider is being probed takes
    /// as many as it may probe. Returns the messages, whether all of `want`
    /// was claimed (there may be more), when the soonest sender that had
    /// no tokens for this round gets one, and when the soonest skipped
    /// channel has a provider again.
    async fn claim_round(&self, want: u32, round: usize, unknown_due: bool) -> Result<Claimed, StoreError> {
        let now = self.clock.now();
        let lease_until = now + chrono_duration(self.config.lease);
        let worker = &self.config.worker_id;
        let mut throttled: Option<DateTime<Utc>> = None;
        let mut blocked: Option<DateTime<Utc>> = None;
        let mut all = Vec::new();
        let mut left = want;
        let n = Channel::ALL.len();
        for channel in (0..n).map(|i| Channel::ALL[(round + i) % n]) {
            if left == 0 {
                break;
            }
            let Some((provider, probes)) = self.available(channel, now, &mut blocked) else {
                continue; // its providers come back at their own time
            };
            let (name, sender) = (provider.name(), provider.sender(channel));
            let left_here = probes.map_or(left, |n| n.min(left));
            let limit = self.limiter.limit(channel);
            let shared = limit.is_some() && self.limiter.is_shared();
            let budget = match limit {
                None => left_here,
                Some(limit) if shared => {
                    let bucket = RateLimiter::bucket_name(channel, name, &sender);
                    match self
                        .store
                        .reserve_tokens(&bucket, limit, left_here, now, RATE_HORIZON)
                        .await?
                    {
                        Some(g) => self.limiter.add_grant(channel, name, &sender, now, g, RATE_HORIZON),
                        None => 0,
                    }
                }
                Some(_) => self
                    .limiter
                    .budget(channel, name, &sender, now, RATE_HORIZON)
                    .unwrap_or(left_here)
                    .min(left_here),
            };
            if budget == 0 {
                if let Some(at) = self.limiter.next_budget_at(channel, name, &sender, now, RATE_HORIZON) {
                    throttled = Some(throttled.map_or(at, |t| t.min(at)));
                }
                continue;
            }
            let got = match self
                .store
                .claim(ClaimFilter::Channel(channel), worker, now, lease_until, budget)
                .await
            {
                Ok(got) => got,
                Err(e) => {
                    if shared {
                        self.limiter.drop_unused(channel, name, &sender, budget);
                    }
                    return Err(e);
                }
            };
            let got_n = got.len() as u32;
            if shared && got_n < budget {
                self.limiter.drop_unused(channel, name, &sender, budget - got_n);
            }
            left -= got_n.min(left);
            all.extend(got);
        }
        if unknown_due && left > 0 {
            all.extend(
                self.store
                    .claim(ClaimFilter::UnknownChannel, worker, now, lease_until, left)
                    .await?,
            );
        }
        let full = all.len() >= want as usize;
        Ok((all, full, throttled, blocked))
    }

    /// The channel's first provider that may be sent to now, and how many
    /// messages it may take when only probes may go (`None`: no such
    /// bound). `None` when none may: then `blocked` learns when the
    /// soonest comes back.
    fn available(
        &self,
        channel: Channel,
        now: DateTime<Utc>,
        blocked: &mut Option<DateTime<Utc>>,
    ) -> Option<(Arc<dyn crate::providers::Provider>, Option<u32>)> {
        let mut note = |t: DateTime<Utc>| *blocked = Some(blocked.map_or(t, |b| b.min(t)));
        let mut probing: Option<(Arc<dyn crate::providers::Provider>, u32)> = None;
        for p in self.providers.chain(channel) {
            if let Some(until) = self.limiter.paused_until(p.name(), now) {
                note(until);
                continue;
            }
            match self.circuits.capacity(p.name(), now) {
                None => {
                    // Closed. Probes of an earlier provider go first; the
                    // rest of the claim comes here.
                    return Some(match probing {
                        Some((first, _)) => (first, None),
                        None => (p.clone(), None),
                    });
                }
                Some(0) => note(self.circuits.blocked_until(p.name(), now).unwrap_or(now)),
                Some(n) => {
                    if probing.is_none() {
                        probing = Some((p.clone(), n));
                    }
                }
            }
        }
        probing.map(|(p, n)| (p, Some(n)))
    }

    /// Provider calls in flight now, on every channel.
    fn sending(&self) -> usize {
        self.slots.values().map(|s| s.in_use()).sum()
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

    /// Write outcomes in batches as they arrive; give the in-flight permits
    /// back only once their outcome is stored. Provider calls go into the
    /// attempt history first; then the message rows are updated. While a
    /// write fails, claiming stops (see `claim_loop`) and the write is
    /// retried; on shutdown it is given up after `record_grace`, and the
    /// outcomes left are counted as unrecorded (the history keeps the
    /// accepted sends, so they are recorded, not resent, on the next claim).
    async fn record_loop(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Done>,
        recorded: Arc<Notify>,
        shutdown: Shutdown,
    ) {
        let mut batch = Vec::with_capacity(MAX_RECORD_BATCH);
        let worker = &self.config.worker_id;
        while rx.recv_many(&mut batch, MAX_RECORD_BATCH).await > 0 {
            let completions: Vec<Completion> = batch.iter().map(|(o, _)| o.completion.clone()).collect();
            let attempts: Vec<AttemptRecord> = batch.iter().flat_map(|(o, _)| o.calls().cloned()).collect();
            let fallbacks: Vec<SmsFallback> = batch.iter().filter_map(|(o, _)| o.fallback.clone()).collect();
            let mut history_written = attempts.is_empty();
            let mut failures = 0u32;
            let mut gave_up_at: Option<std::time::Instant> = None;
            loop {
                let pending_attempts = (!history_written).then_some(attempts.as_slice());
                let (written, result) = self
                    .store
                    .record_outcomes(worker, self.clock.now(), &completions, pending_attempts, &fallbacks)
                    .await;
                history_written |= written;
                match result {
                    Ok(applied) => {
                        if applied.len() < completions.len() {
                            let lost = completions.len() - applied.len();
                            ProcessorStats::add(&self.stats.lease_lost, lost as u64);
                            tracing::warn!(
                                lost,
                                "lease lost before recording; another worker owns these messages now"
                            );
                        }
                        if failures > 0 {
                            tracing::info!("recording outcomes works again; claiming resumes");
                        }
                        self.recording_blocked.store(false, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => {
                        failures += 1;
                        self.recording_blocked.store(true, Ordering::Relaxed);
                        if shutdown.is_triggered() {
                            let since = *gave_up_at.get_or_insert_with(std::time::Instant::now);
                            if since.elapsed() >= self.config.record_grace {
                                ProcessorStats::add(&self.stats.unrecorded, completions.len() as u64);
                                tracing::error!(
                                    error = %e,
                                    count = completions.len(),
                                    history_written,
                                    "shutting down with outcomes that could not be recorded"
                                );
                                break;
                            }
                        }
                        tracing::error!(error = %e, "recording outcomes failed; claiming stops until it works again");
                        let wait = Duration::from_millis(250 * u64::from(failures.min(8)));
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.wait(), if !shutdown.is_triggered() => {}
                        }
                    }
                }
            }
            // The statistics: counted once the outcomes are written; they
            // never hold recording up (a failure here is only logged).
            let now = self.clock.now();
            let events: Vec<_> = batch.iter().flat_map(|(o, _)| o.stat_events(now)).collect();
            batch.clear(); // returns the permits
            recorded.notify_one();
            if let Err(e) = self.store.add_stats(&events).await {
                tracing::warn!(error = %e, "could not update the statistics");
            }
        }
    }
}
