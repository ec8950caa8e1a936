//! What to write back after handling one claimed message: the new state of
//! the row and, when a provider was called, the attempt record.

use chrono::{DateTime, Utc};

use super::stats::ProcessorStats;
use super::Processor;
use crate::clock::format_ts;
use crate::domain::{AttemptOutcome, ErrorColumn, FailureClass, MessageStatus, SmsFallback, ValidationError};
use crate::providers::{Receipt, SendError};
use crate::retry::Decision;
use crate::store::{AttemptRecord, Completion, Message, PastAttempt, RenderedFields, StatEvent};

/// The outcome of handling one claimed message.
pub(super) struct Outcome {
    pub completion: Completion,
    /// The provider call, if one was made.
    pub attempt: Option<AttemptRecord>,
    /// Calls made before it in this claim, each through a provider that
    /// did not take the message (the next one of the chain was tried).
    pub earlier: Vec<AttemptRecord>,
    /// A WhatsApp message its recipient cannot get: the SMS to queue
    /// with its outcome (`WHATSAPP_FALLBACK=sms`).
    pub fallback: Option<SmsFallback>,
    /// The message's channel and SMS segments, for the statistics.
    pub channel: String,
    pub segments: u32,
    /// An alert Herald sends about itself: not counted (its failures must
    /// not feed the alerts that sent it).
    pub alert: bool,
}

impl Outcome {
    fn unsent(completion: Completion) -> Outcome {
        Outcome {
            completion,
            attempt: None,
            earlier: Vec::new(),
            fallback: None,
            channel: String::new(),
            segments: 0,
            alert: false,
        }
    }

    /// Note what the statistics need from the message.
    pub(super) fn of_message(mut self, msg: &Message) -> Outcome {
        self.channel = msg.channel.clone();
        self.alert = msg.metadata.as_ref().is_some_and(|m| m.get("herald_alert").is_some());
        if msg.channel == "sms" && self.attempt.as_ref().is_some_and(|a| a.outcome == AttemptOutcome::Sent) {
            let body = self
                .completion
                .rendered
                .as_ref()
                .and_then(|r| r.body.as_deref())
                .or(msg.body.as_deref())
                .unwrap_or("");
            self.segments = crate::domain::sms_segments(body);
        }
        self
    }

    /// What to count: the provider call, and the message's failure.
    /// `now` dates a failure that made no provider call.
    pub(super) fn stat_events(&self, now: DateTime<Utc>) -> Vec<StatEvent> {
        let code_of = |error: Option<&str>| {
            error
                .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok())
                .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned))
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        if self.alert {
            return out;
        }
        for (a, last) in self
            .earlier
            .iter()
            .map(|a| (a, false))
            .chain(self.attempt.iter().map(|a| (a, true)))
        {
            let code = if a.outcome == AttemptOutcome::Sent {
                String::new()
            } else {
                code_of(a.error.as_deref())
            };
            out.push(StatEvent {
                at: a.finished_at,
                channel: self.channel.clone(),
                provider: a.provider.clone(),
                event: a.outcome.as_str().to_owned(),
                code,
                latency_ms: Some((a.finished_at - a.started_at).num_milliseconds().max(0) as u64),
                segments: if last { self.segments } else { 0 },
            });
        }
        if self.completion.status == MessageStatus::Failed {
            out.push(StatEvent {
                at: self.attempt.as_ref().map_or(now, |a| a.finished_at),
                channel: self.channel.clone(),
                provider: self
                    .completion
                    .provider
                    .clone()
                    .or_else(|| self.attempt.as_ref().map(|a| a.provider.clone()))
                    .unwrap_or_default(),
                event: "failed".into(),
                code: code_of(self.completion.error.as_deref()),
                latency_ms: None,
                segments: 0,
            });
        }
        out
    }

    /// Every provider call made for the message, in order.
    pub(super) fn calls(&self) -> impl Iterator<Item = &AttemptRecord> {
        self.earlier.iter().chain(self.attempt.iter())
    }

    pub(super) fn with_rendered(mut self, rendered: Option<RenderedFields>) -> Outcome {
        self.completion = self.completion.with_rendered(rendered);
        self
    }

    pub(super) fn with_attempt_outcome(mut self, outcome: AttemptOutcome) -> Outcome {
        if let Some(a) = self.attempt.as_mut() {
            a.outcome = outcome;
        }
        self
    }
}

/// The attempt-history word for a failed call.
pub(super) fn failed_outcome(err: &SendError) -> AttemptOutcome {
    match (err.class, err.outcome_unknown) {
        (_, true) => AttemptOutcome::Unknown,
        (FailureClass::Permanent, _) => AttemptOutcome::Permanent,
        (FailureClass::Retryable, _) => AttemptOutcome::Retryable,
        (FailureClass::RateLimited { .. }, _) => AttemptOutcome::RateLimited,
        (FailureClass::Unauthorized, _) => AttemptOutcome::Unauthorized,
    }
}

/// The `error` column for a failed provider call.
pub(super) fn error_column(
    err: &SendError,
    provider: &str,
    attempt: i32,
    at: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
) -> ErrorColumn {
    ErrorColumn {
        code: err.code.clone(),
        message: err.message.clone(),
        provider: Some(provider.to_owned()),
        retryable: err.class.is_retryable(),
        attempt,
        at: format_ts(at),
        status: err.status,
        outcome_unknown: err.outcome_unknown,
        rate_limited_until: match err.class {
            FailureClass::RateLimited { until } => Some(format_ts(until)),
            _ => None,
        },
        next_attempt_at: next.map(format_ts),
        alert: err.alert,
        field: None,
        fallback: None,
    }
}

impl Processor {
    /// What a provider call came to.
    pub(super) fn classify(
        &self,
        msg: &Message,
        provider: &str,
        started: DateTime<Utc>,
        finished: DateTime<Utc>,
        result: Result<Receipt, SendError>,
    ) -> Outcome {
        let took = (finished - started).to_std().unwrap_or_default();
        let mut attempt = AttemptRecord {
            message_id: msg.id,
            attempt: msg.attempts,
            started_at: started,
            finished_at: finished,
            provider: provider.to_owned(),
            outcome: AttemptOutcome::Sent,
            error: None,
            provider_message_id: None,
        };
        let completion = match result {
            Ok(receipt) => {
                // One line per send drowns the log at thousands a second; the
                // attempt history keeps every send (LOG_LEVEL=debug shows them).
                tracing::debug!(provider_message_id = receipt.provider_message_id.as_deref(), "sent");
                ProcessorStats::add(&self.stats.sent, 1);
                self.metrics.record_send(provider, AttemptOutcome::Sent, took);
                attempt.provider_message_id = receipt.provider_message_id.clone();
                Completion::sent(msg.id, provider, receipt.provider_message_id, finished)
            }
            Err(err) => {
                let round = u32::try_from(msg.round_attempts().max(1)).unwrap_or(1);
                let (retry_at, counts_as_retry) =
                    match self.config.retry.decide(err.class, round, finished, (self.random)()) {
                        Decision::Fail => (None, true),
                        Decision::RetryAt { at, counts_as_retry } => (Some(at), counts_as_retry),
                    };
                let error = error_column(&err, provider, msg.attempts, finished, retry_at).to_json();
                attempt.outcome = failed_outcome(&err);
                attempt.error = Some(error.clone());
                attempt.provider_message_id = err.provider_message_id.clone();
                self.metrics.record_send(provider, attempt.outcome, took);
                if retry_at.is_none() {
                    ProcessorStats::add(&self.stats.failed, 1);
                    tracing::warn!(code = %err.code, error = %err.message, alert = err.alert, "failed");
                } else {
                    ProcessorStats::add(&self.stats.retried, 1);
                    tracing::info!(code = %err.code, error = %err.message, next_attempt_at = ?retry_at, "will retry");
                }
                Completion::attempt_failed(
                    msg.id,
                    provider,
                    err.provider_message_id,
                    error,
                    retry_at,
                    counts_as_retry,
                )
            }
        };
        Outcome {
            completion,
            attempt: Some(attempt),
            earlier: Vec::new(),
            fallback: None,
            channel: String::new(),
            segments: 0,
            alert: false,
        }
    }

    /// A send after an earlier attempt that may have gone out, which the
    /// provider could not rule out: if it was accepted, its attempt says
    /// "possible duplicate" (visible in the history and `/metrics`).
    pub(super) fn mark_possible_duplicate(
        &self,
        mut outcome: Outcome,
        msg: &Message,
        provider: &str,
        reason: &'static str,
        text: &str,
    ) -> Outcome {
        if let Some(a) = outcome.attempt.as_mut().filter(|a| a.outcome == AttemptOutcome::Sent) {
            let mut e = ErrorColumn::unsent(
                "possible_duplicate",
                format!("sent again after an attempt that may have gone out ({reason}: {text}); the recipient may get it twice"),
                msg.attempts,
                a.finished_at,
            );
            e.provider = Some(provider.to_owned());
            a.error = Some(e.to_json());
            self.metrics.record_possible_duplicate(provider, reason);
        }
        outcome
    }

    /// A row that cannot be sent as written: fail it without a provider call.
    pub(super) fn invalid(&self, msg: &Message, e: ValidationError) -> Outcome {
        tracing::warn!(message_id = msg.id, field = e.field, error = %e.message, "message is invalid; not sent");
        let mut error = ErrorColumn::unsent("invalid_message", e.message, msg.attempts - 1, self.clock.now());
        error.field = Some(e.field.to_owned());
        self.fail_unsent(msg, error)
    }

    /// Its template reached a rendering limit: fail without a provider call.
    pub(super) fn template_limit(&self, msg: &Message, text: String) -> Outcome {
        tracing::warn!(message_id = msg.id, error = %text, "template reached a limit; not sent");
        let mut error = ErrorColumn::unsent("template_limit", text, msg.attempts - 1, self.clock.now());
        error.field = Some("template".into());
        self.fail_unsent(msg, error)
    }

    /// Claimed `claims` times in this round, more than its retries allow,
    /// because earlier claims ended without an outcome: fail it now, without
    /// another provider call.
    pub(super) fn abandoned(&self, msg: &Message, claims: i32) -> Outcome {
        let budget = self.config.retry.max_retries + 1;
        let message = format!(
            "claimed {claims} times but only {budget} attempts are allowed, and the last claims recorded no outcome \
             (the worker stopped or a send never returned each time); given up without another attempt"
        );
        tracing::error!(
            message_id = msg.id,
            claims,
            "message abandoned: its claims keep ending without an outcome"
        );
        let error = ErrorColumn::unsent("abandoned", message, msg.attempts - 1, self.clock.now());
        self.fail_unsent(msg, error)
    }

    /// The recipient is on the suppression list: fail without a provider call.
    pub(super) fn suppressed(&self, msg: &Message, reason: &str) -> Outcome {
        tracing::info!(message_id = msg.id, reason, "recipient is suppressed; not sent");
        let message = format!(
            "the recipient is on the {} suppression list ({reason}); remove them from it to send again",
            msg.channel
        );
        let error = ErrorColumn::unsent("suppressed", message, msg.attempts - 1, self.clock.now());
        self.fail_unsent(msg, error)
    }

    /// The attempt history says an earlier claim's provider call was
    /// accepted, but its outcome never reached the row (the worker died, or
    /// the table refused the write): record it now; do not send again.
    pub(super) fn already_accepted(&self, msg: &Message, a: &PastAttempt) -> Outcome {
        tracing::info!(
            message_id = msg.id,
            attempt = a.attempt,
            provider = %a.provider,
            "sent by an earlier claim whose outcome was not recorded; recording it, not sending again"
        );
        let mut c = Completion::sent(
            msg.id,
            &a.provider,
            a.provider_message_id.clone(),
            a.finished_at.unwrap_or_else(|| self.clock.now()),
        );
        c.attempts_delta = -1;
        Outcome::unsent(c)
    }

    /// `failed` without a provider call (the claim's attempt is undone).
    fn fail_unsent(&self, msg: &Message, error: ErrorColumn) -> Outcome {
        ProcessorStats::add(&self.stats.failed, 1);
        Outcome::unsent(Completion::failed_unsent(msg.id, error.to_json()))
    }

    /// Hand a message back to the queue untouched: no provider call was made.
    /// `due` delays it (rate limit, provider pause).
    pub(super) fn release(&self, msg: &Message, why: &'static str, due: Option<DateTime<Utc>>) -> Outcome {
        tracing::debug!(message_id = msg.id, why, "released without sending");
        self.metrics.record_held_back(why);
        ProcessorStats::add(&self.stats.released, 1);
        Outcome::unsent(Completion::released(msg.id, due.or(msg.next_attempt_at)))
    }
}
