//! Sending one claimed message: take a send slot, pick the channel's first
//! provider whose circuit admits it, wait for that sender's rate limit,
//! make sure the lease outlasts the send, ask the provider about an
//! earlier attempt whose outcome is unknown, then call it. When the
//! provider certainly did not take the message (no connection, 429, 503,
//! refused credentials), the next provider of the chain is tried at once.

use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::concurrency::Signal;
use super::outcome::Outcome;
use super::reconcile::Lookup;
use super::{Processor, Shutdown};
use crate::breaker::Admission;
use crate::clock::{chrono_duration, format_ts};
use crate::domain::{AttemptOutcome, ErrorColumn, FailureClass, OutgoingMessage, Recipient};
use crate::providers::{Provider, Receipt, SendError, Window};
use crate::store::{AttemptRecord, Message};
use crate::templates::RenderError;

/// A provider of the chain, chosen for the next call.
enum Route {
    /// Call the provider at this index of the chain.
    Call(usize),
    /// No provider may be called now; the soonest one may at this time.
    Wait(Option<DateTime<Utc>>),
}

/// One provider call: when it started and ended, and what it said.
struct Call {
    provider: &'static str,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    result: Result<Receipt, SendError>,
    /// What the answer says about the channel's capacity.
    signal: Signal,
}

impl Processor {
    /// Prepare, wait for the sender's rate limit and a send slot, send, classify.
    /// `recipient` is the row's, when already parsed (for the suppression list).
    /// `unrecorded`: earlier claims in this round recorded nothing; they
    /// may have called the provider in this window.
    pub(super) async fn handle(
        &self,
        msg: &Message,
        recipient: Option<Recipient>,
        unrecorded: Option<Window>,
        shutdown: Shutdown,
    ) -> Outcome {
        match self.prepare(msg, recipient).await {
            Ok((parsed, rendered)) => self
                .handle_parsed(msg, parsed, unrecorded, shutdown)
                .await
                .with_rendered(rendered),
            Err(RenderError::Invalid(e)) => self.invalid(msg, e),
            Err(RenderError::Limit(text)) => self.template_limit(msg, text),
        }
    }

    async fn handle_parsed(
        &self,
        msg: &Message,
        parsed: OutgoingMessage,
        unrecorded: Option<Window>,
        shutdown: Shutdown,
    ) -> Outcome {
        let channel = parsed.channel();
        let chain = self.providers.chain(channel);
        // An earlier attempt whose outcome is unknown keeps the message on
        // its provider until that provider rules it out: sending it
        // elsewhere could deliver it twice.
        let mut pinned = unknown_outcome_since(msg).and_then(|(name, ended)| {
            chain
                .iter()
                .position(|p| p.name() == name)
                .map(|i| (i, self.unknown_attempt_window(ended)))
        });
        let now = self.clock.now();
        if let Route::Wait(until) = self.route(chain, pinned.map(|(i, _)| i), &[], now) {
            return self.release(msg, "provider_unavailable", until);
        }
        // A send slot first, then the token: a token is only taken when the
        // message can go at its moment, so tokens never pile up behind busy
        // slots and then go out together (which would be a burst).
        let slot = tokio::select! {
            slot = self.slots[&channel].acquire() => slot,
            _ = shutdown.wait() => return self.release(msg, "shutdown", None),
        };
        if shutdown.is_triggered() {
            return self.release(msg, "shutdown", None);
        }
        // Boxed: a message waiting for its slot holds only the small future
        // above; the calls' state is allocated when they start.
        Box::pin(async {
            // Look-ups about earlier attempts, before anything is sent.
            let mut unsure = None;
            if let Some((i, window)) = pinned {
                match self.look_up(chain[i].as_ref(), msg, &parsed, window).await {
                    Lookup::Found(receipt) => return self.reconciled(msg, chain[i].name(), receipt),
                    // The provider does not have it: any provider may send.
                    Lookup::NotFound => pinned = None,
                    Lookup::Unsure(reason, text) => unsure = Some((chain[i].name(), reason, text)),
                }
            } else if let Some(window) = unrecorded {
                match self.look_up_chain(chain, msg, &parsed, window).await {
                    (Lookup::Found(receipt), provider) => return self.reconciled(msg, provider, receipt),
                    (Lookup::NotFound, _) => {}
                    (Lookup::Unsure(reason, text), provider) => unsure = Some((provider, reason, text)),
                }
            }
            let mut calls: Vec<Call> = Vec::new();
            // Providers whose circuit turned the message away after it
            // waited its turn (it opened meanwhile, or another worker probes).
            let mut refused: Vec<&str> = Vec::new();
            let mut probe_waits = 0;
            loop {
                let mut passed: Vec<&str> = calls.iter().map(|c| c.provider).collect();
                passed.extend(&refused);
                let now = self.clock.now();
                let index = match self.route(chain, pinned.map(|(i, _)| i), &passed, now) {
                    Route::Call(i) => i,
                    Route::Wait(until) if calls.is_empty() => {
                        let due = until.unwrap_or(now + chrono::Duration::seconds(1));
                        return self.release(msg, "provider_unavailable", Some(due));
                    }
                    Route::Wait(_) => break,
                };
                let provider = chain[index].as_ref();
                if let Err(handed_back) = self.wait_turn(msg, channel, provider, &shutdown).await {
                    if calls.is_empty() {
                        return handed_back;
                    }
                    break;
                }
                // The circuit decides at the moment of the call.
                let answered = self.circuits.answered().notified();
                tokio::pin!(answered);
                answered.as_mut().enable();
                let admission = self
                    .circuits
                    .admit(&self.store, provider.name(), self.clock.now())
                    .await;
                if !admission.allows() {
                    // Every probe of a half-open circuit is out: their
                    // answers come within a send; wait for them.
                    if self.circuits.probing(provider.name()) && probe_waits < 3 {
                        probe_waits += 1;
                        tokio::select! {
                            _ = answered => {}
                            _ = tokio::time::sleep(self.config.send_timeout) => {}
                            _ = shutdown.wait() => {}
                        }
                        continue;
                    }
                    refused.push(provider.name());
                    continue;
                }
                let call = self
                    .call(provider, admission, &parsed)
                    .instrument(tracing::info_span!(
                        "send",
                        message_id = msg.id,
                        channel = %channel,
                        provider = provider.name(),
                        recipient = %parsed.recipient.masked(),
                        attempt = parsed.attempt + calls.len() as u32,
                    ))
                    .await;
                let next = match &call.result {
                    Err(e) if e.not_accepted() && pinned.is_none() => {
                        passed.push(call.provider);
                        match self.route(chain, None, &passed, self.clock.now()) {
                            Route::Call(i) => Some(chain[i].name()),
                            Route::Wait(_) => None,
                        }
                    }
                    _ => None,
                };
                calls.push(call);
                match next {
                    Some(to) => {
                        let from = calls.last().map_or("", |c| c.provider);
                        tracing::warn!(
                            message_id = msg.id,
                            from,
                            to,
                            "{from} did not take the message; trying {to}"
                        );
                        self.metrics.record_failover(channel.as_str(), from, to);
                    }
                    None => break,
                }
            }
            // The send slot says how the channel's providers kept up: a
            // congested answer anywhere counts.
            let signal = calls
                .iter()
                .map(|c| c.signal)
                .find(|s| matches!(s, Signal::Congested))
                .or(calls.last().map(|c| c.signal))
                .unwrap_or(Signal::None);
            slot.done(signal);
            self.metrics
                .set_concurrency_limit(channel.as_str(), self.slots[&channel].limit());
            let unreachable = calls
                .last()
                .is_some_and(|c| matches!(&c.result, Err(e) if e.unreachable));
            let outcome = self.outcome_of_calls(msg, calls);
            let outcome = if unreachable && self.config.whatsapp_fallback {
                self.fall_back(outcome, msg, &parsed).await
            } else {
                outcome
            };
            match unsure {
                Some((provider, reason, text)) => self.mark_possible_duplicate(outcome, msg, provider, reason, &text),
                None => outcome,
            }
        })
        .await
    }

    /// The first provider of the chain that may be called now (not paused
    /// after a 429, its circuit not open), skipping `passed`; with
    /// `pinned`, that provider only. Nothing is taken: the circuit admits
    /// the call itself when it is made ([`super::circuits::Circuits::admit`]).
    fn route(
        &self,
        chain: &[std::sync::Arc<dyn Provider>],
        pinned: Option<usize>,
        passed: &[&str],
        now: DateTime<Utc>,
    ) -> Route {
        let mut soonest: Option<DateTime<Utc>> = None;
        let mut note = |t: DateTime<Utc>| soonest = Some(soonest.map_or(t, |s| s.min(t)));
        for (i, p) in chain.iter().enumerate() {
            if pinned.is_some_and(|pin| pin != i) || passed.contains(&p.name()) {
                continue;
            }
            if let Some(until) = self.limiter.paused_until(p.name(), now) {
                note(until);
                continue;
            }
            match self.circuits.blocked_until(p.name(), now) {
                Some(until) => note(until),
                None => return Route::Call(i),
            }
        }
        Route::Wait(soonest)
    }

    /// Wait this sender's turn. Over the limit, a message waits in memory
    /// only while its lease allows; otherwise it goes back to the queue,
    /// due when its token is. The lease must outlast the send.
    async fn wait_turn(
        &self,
        msg: &Message,
        channel: crate::domain::Channel,
        provider: &dyn Provider,
        shutdown: &Shutdown,
    ) -> Result<(), Outcome> {
        let sender = provider.sender(channel);
        let now = self.clock.now();
        let ready = self.limiter.reserve(channel, provider.name(), &sender, now);
        if ready > now {
            let must_start_by = msg
                .lease_expires_at
                .map(|e| e - chrono_duration(self.config.send_timeout));
            if must_start_by.is_some_and(|latest| ready >= latest) {
                self.limiter.refund(channel, provider.name(), &sender, now);
                return Err(self.release(msg, "rate_limited", Some(ready)));
            }
            self.metrics
                .record_rate_limit_wait(channel.as_str(), (ready - now).to_std().unwrap_or_default());
            tokio::select! {
                _ = self.clock.sleep_until(ready) => {}
                _ = shutdown.wait() => {
                    self.limiter.refund(channel, provider.name(), &sender, self.clock.now());
                    return Err(self.release(msg, "shutdown", None));
                }
            }
        }
        let now = self.clock.now();
        if let Some(until) = self.limiter.paused_until(provider.name(), now) {
            return Err(self.release(msg, "provider_paused", Some(until)));
        }
        // Only send if the lease outlasts the longest possible send.
        let safe_until = now + chrono_duration(self.config.send_timeout);
        if msg.lease_expires_at.is_some_and(|exp| exp <= safe_until) {
            return Err(self.release(msg, "lease_too_short", None));
        }
        Ok(())
    }

    /// Call `provider`, and act on what its answer says about it: its
    /// circuit, its send slots, a pause it asked for, a recipient who
    /// opted out.
    async fn call(&self, provider: &dyn Provider, admission: Admission, parsed: &OutgoingMessage) -> Call {
        let started = self.clock.now();
        // A backstop: providers enforce their own timeout, but nothing may
        // hold a message past its lease.
        let result = match tokio::time::timeout(self.config.send_timeout, provider.send(parsed)).await {
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
        let result = result.map_err(|e| self.clamp_provider_wait(e, provider.name()));
        let finished = self.clock.now();
        // A refusal of this message says nothing about the provider's
        // capacity; a 429, a timeout, a 5xx or a broken connection does.
        let took = (finished - started).to_std().unwrap_or_default().as_secs_f64();
        let signal = match &result {
            Ok(_) => Signal::Fine(took),
            Err(e) => match e.class {
                FailureClass::RateLimited { .. } | FailureClass::Retryable => Signal::Congested,
                FailureClass::Permanent | FailureClass::Unauthorized => Signal::Fine(took),
            },
        };
        let (health, reason) = match &result {
            Ok(_) => (crate::breaker::Health::Answered, String::new()),
            Err(e) => (e.health(), e.to_string()),
        };
        self.circuits
            .record(&self.store, provider.name(), admission, health, &reason, finished)
            .await;
        if let Err(SendError {
            suppress: Some(reason), ..
        }) = &result
        {
            if let Err(e) = self
                .store
                .suppress(&parsed.recipient, reason, provider.name(), self.clock.now())
                .await
            {
                tracing::error!(error = %e, "could not add the recipient to the suppression list");
            }
        }
        match &result {
            Err(SendError {
                class: FailureClass::RateLimited { until },
                ..
            }) => {
                // Only this provider waits; the others carry on.
                tracing::warn!(until = %format_ts(*until), "provider asked us to slow down; pausing it");
                self.limiter.pause(provider.name(), *until);
            }
            Err(
                e @ SendError {
                    class: FailureClass::Unauthorized,
                    ..
                },
            ) => {
                tracing::error!(
                    code = %e.code,
                    error = %e.message,
                    "{} refused Herald's credentials: nothing is sent through it until they are fixed (its circuit \
                     is open; it is tried again when the circuit's time is up); messages go to the channel's next \
                     provider or wait without using retries",
                    provider.name()
                );
                self.metrics.set_credentials_failing(provider.name(), true);
            }
            Ok(_) => self.metrics.set_credentials_failing(provider.name(), false),
            Err(_) => {}
        }
        Call {
            provider: provider.name(),
            started,
            finished,
            result,
            signal,
        }
    }

    /// What the calls made for one message come to: the last one decides;
    /// the ones before (each through another provider that did not take
    /// the message) are kept in the attempt history and use up no retry.
    fn outcome_of_calls(&self, msg: &Message, mut calls: Vec<Call>) -> Outcome {
        let last = calls.pop().expect("at least one call");
        let earlier: Vec<AttemptRecord> = calls
            .into_iter()
            .enumerate()
            .map(|(k, c)| {
                let mut m = msg.clone();
                m.attempts += k as i32;
                self.failover_record(&m, &c)
            })
            .collect();
        let k = earlier.len() as i32;
        let mut m = msg.clone();
        m.attempts += k;
        m.retry_base += k;
        let mut outcome = self.classify(&m, last.provider, last.started, last.finished, last.result);
        outcome.completion.attempts_delta += k;
        outcome.completion.base_delta += k;
        outcome.earlier = earlier;
        outcome
    }

    /// The attempt record of a call another provider took over from.
    fn failover_record(&self, msg: &Message, c: &Call) -> AttemptRecord {
        let took = (c.finished - c.started).to_std().unwrap_or_default();
        let (outcome, error, pmid) = match &c.result {
            Ok(r) => (AttemptOutcome::Sent, None, r.provider_message_id.clone()),
            Err(e) => {
                let mut col = super::outcome::error_column(e, c.provider, msg.attempts, c.finished, None);
                col.fallback = None;
                (
                    super::outcome::failed_outcome(e),
                    Some(col.to_json()),
                    e.provider_message_id.clone(),
                )
            }
        };
        self.metrics.record_send(c.provider, outcome, took);
        AttemptRecord {
            message_id: msg.id,
            attempt: msg.attempts,
            started_at: c.started,
            finished_at: c.finished,
            provider: c.provider.to_owned(),
            outcome,
            error,
            provider_message_id: pmid,
        }
    }

    /// An earlier attempt did reach `provider`: record it as sent.
    fn reconciled(&self, msg: &Message, provider: &'static str, receipt: Receipt) -> Outcome {
        tracing::info!(
            message_id = msg.id,
            provider,
            provider_message_id = receipt.provider_message_id.as_deref(),
            "the earlier attempt did reach the provider; not sending again"
        );
        let now = self.clock.now();
        self.classify(msg, provider, now, now, Ok(receipt))
            .with_attempt_outcome(AttemptOutcome::Reconciled)
    }

    /// A provider's "slow down until" is data from outside: keep it within
    /// one second and `RATE_LIMIT_MAX_WAIT_SECONDS` from now (whatever the
    /// header said: a date in year 9999, a huge reset), and say so loudly
    /// when it asked for more.
    fn clamp_provider_wait(&self, mut e: SendError, provider: &str) -> SendError {
        if let FailureClass::RateLimited { until } = e.class {
            let now = self.clock.now();
            let latest = now + chrono_duration(self.config.retry.max_rate_limit_wait);
            let earliest = now + chrono::Duration::seconds(1);
            if until > latest {
                tracing::warn!(
                    provider,
                    asked_until = %format_ts(until),
                    waiting_until = %format_ts(latest),
                    "{provider} asked Herald to wait longer than RATE_LIMIT_MAX_WAIT_SECONDS ({}s); waiting only that long",
                    self.config.retry.max_rate_limit_wait.as_secs()
                );
            }
            e.class = FailureClass::RateLimited {
                until: until.clamp(earliest, latest),
            };
        }
        e
    }
}

/// The provider of the last attempt and when it ended, if its outcome is
/// unknown.
fn unknown_outcome_since(msg: &Message) -> Option<(String, DateTime<Utc>)> {
    let e = ErrorColumn::from_value(msg.error.as_ref()?)?;
    if e.outcome_unknown {
        let at = e.at_time()?;
        Some((e.provider?, at))
    } else {
        None
    }
}
