//! Sending one claimed message: wait for the sender's rate limit and a
//! send slot, make sure the lease outlasts the send, ask the provider about
//! an earlier attempt whose outcome is unknown, then call it.

use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::concurrency::Signal;
use super::outcome::Outcome;
use super::reconcile::Lookup;
use super::{Processor, Shutdown};
use crate::clock::{chrono_duration, format_ts};
use crate::domain::{AttemptOutcome, ErrorColumn, FailureClass, OutgoingMessage, Recipient};
use crate::providers::{SendError, Window};
use crate::retry::CREDENTIALS_RECHECK;
use crate::store::Message;
use crate::templates::RenderError;

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
        let provider = self.providers.get(channel).clone();
        let sender = provider.sender(channel);
        let now = self.clock.now();
        if let Some(until) = self.limiter.paused_until(provider.name(), now) {
            return self.release(msg, "provider_paused", Some(until));
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
        // Wait our turn for this sender. Over the limit, a message waits in
        // memory only while its lease allows; otherwise it goes back to the
        // queue, due when its token is.
        let now = self.clock.now();
        let ready = self.limiter.reserve(channel, provider.name(), &sender, now);
        if ready > now {
            let must_start_by = msg
                .lease_expires_at
                .map(|e| e - chrono_duration(self.config.send_timeout));
            if must_start_by.is_some_and(|latest| ready >= latest) {
                self.limiter.refund(channel, provider.name(), &sender, now);
                return self.release(msg, "rate_limited", Some(ready));
            }
            self.metrics
                .record_rate_limit_wait(channel.as_str(), (ready - now).to_std().unwrap_or_default());
            tokio::select! {
                _ = self.clock.sleep_until(ready) => {}
                _ = shutdown.wait() => {
                    self.limiter.refund(channel, provider.name(), &sender, self.clock.now());
                    return self.release(msg, "shutdown", None);
                }
            }
        }
        let now = self.clock.now();
        if let Some(until) = self.limiter.paused_until(provider.name(), now) {
            return self.release(msg, "provider_paused", Some(until));
        }
        // Only send if the lease outlasts the longest possible send.
        let safe_until = now + chrono_duration(self.config.send_timeout);
        if msg.lease_expires_at.is_some_and(|exp| exp <= safe_until) {
            return self.release(msg, "lease_too_short", None);
        }
        let span = tracing::info_span!(
            "send",
            message_id = msg.id,
            channel = %channel,
            provider = provider.name(),
            recipient = %parsed.recipient.masked(),
            attempt = parsed.attempt,
        );
        // Boxed: a message waiting for its token or slot holds only the
        // small future above; the call's state is allocated when it starts.
        Box::pin(async {
            // An earlier attempt may have reached the provider: ask it first.
            let window = unknown_outcome_since(msg, provider.name())
                .map(|ended| self.unknown_attempt_window(ended))
                .or(unrecorded);
            let mut unsure = None;
            if let Some(window) = window {
                match self.look_up(provider.as_ref(), msg, &parsed, window).await {
                    Lookup::Found(receipt) => {
                        tracing::info!(
                            provider_message_id = receipt.provider_message_id.as_deref(),
                            "the earlier attempt did reach the provider; not sending again"
                        );
                        let now = self.clock.now();
                        return self
                            .classify(msg, provider.name(), now, now, Ok(receipt))
                            .with_attempt_outcome(AttemptOutcome::Reconciled);
                    }
                    Lookup::NotFound => {}
                    Lookup::Unsure(reason, text) => {
                        tracing::warn!(reason, detail = %text, "the earlier attempt may have gone out; sending again");
                        unsure = Some((reason, text));
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
            let result = result.map_err(|e| self.clamp_provider_wait(e, provider.name()));
            // A refusal of this message says nothing about the provider's
            // capacity; a 429, a timeout, a 5xx or a broken connection does.
            let took = (self.clock.now() - started).to_std().unwrap_or_default().as_secs_f64();
            slot.done(match &result {
                Ok(_) => Signal::Fine(took),
                Err(e) => match e.class {
                    FailureClass::RateLimited { .. } | FailureClass::Retryable => Signal::Congested,
                    FailureClass::Permanent | FailureClass::Unauthorized => Signal::Fine(took),
                },
            });
            self.metrics
                .set_concurrency_limit(channel.as_str(), self.slots[&channel].limit());
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
                    let until = self.clock.now() + chrono_duration(CREDENTIALS_RECHECK);
                    tracing::error!(
                        code = %e.code,
                        error = %e.message,
                        retry_at = %format_ts(until),
                        "{} refused Herald's credentials: nothing is sent through it until they are fixed; \
                         messages wait in the queue without using retries",
                        provider.name()
                    );
                    self.metrics.set_credentials_failing(provider.name(), true);
                    self.limiter.pause(provider.name(), until);
                }
                Ok(_) => self.metrics.set_credentials_failing(provider.name(), false),
                Err(_) => {}
            }
            let finished = self.clock.now();
            let outcome = self.classify(msg, provider.name(), started, finished, result);
            match unsure {
                Some((reason, text)) => self.mark_possible_duplicate(outcome, msg, provider.name(), reason, &text),
                None => outcome,
            }
        }
        .instrument(span))
        .await
    }
}

impl Processor {
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

/// When the last attempt ended, if its outcome is unknown and it went to
/// this provider.
fn unknown_outcome_since(msg: &Message, provider: &str) -> Option<DateTime<Utc>> {
    let e = ErrorColumn::from_value(msg.error.as_ref()?)?;
    if e.outcome_unknown && e.provider.as_deref() == Some(provider) {
        e.at_time()
    } else {
        None
    }
}
