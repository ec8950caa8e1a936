//! Before sending a message that may already have gone out, ask its
//! provider. Two ways a message gets here:
//!
//! - its last recorded attempt has an unknown outcome (a timeout, a 5xx
//!   after the request was written);
//! - it was claimed before in this round and that claim recorded nothing
//!   (the worker was killed between claiming and recording). Each such claim
//!   is added to the attempt history as an `unknown` call, so the history
//!   shows every call that may have reached the provider.
//!
//! The provider lists candidates (Twilio: same recipient, sender and body,
//! created in the window; the custom provider: by Herald's id). A candidate
//! whose provider id another message already holds is not ours; of the
//! rest, exactly one = it was sent (recorded, not sent again), none = send,
//! several = send again and mark the attempt as a possible duplicate (a
//! possible duplicate beats a certain loss).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::Processor;
use crate::clock::chrono_duration;
use crate::domain::{AttemptOutcome, ErrorColumn, OutgoingMessage};
use crate::providers::{Provider, Receipt, Window};
use crate::store::{AttemptRecord, Message, PastAttempt};

/// How long a provider id picked by a look-up here stays reserved for its
/// message (another look-up in this process cannot pick it meanwhile).
const RESERVED_FOR: chrono::Duration = chrono::Duration::hours(1);

/// (provider, provider id) → (message, when it was matched).
type Matches = HashMap<(String, String), (i64, DateTime<Utc>)>;

/// Provider ids that look-ups in this process matched to a message.
#[derive(Debug, Default)]
pub(super) struct Reserved(Mutex<Matches>);

impl Reserved {
    /// Reserve `id` for `message`, unless another message holds it.
    fn take(&self, provider: &str, id: &str, message: i64, now: DateTime<Utc>) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, (_, at)| now - *at < RESERVED_FOR);
        match m.get(&(provider.to_owned(), id.to_owned())) {
            Some((owner, _)) if *owner != message => false,
            _ => {
                m.insert((provider.to_owned(), id.to_owned()), (message, now));
                true
            }
        }
    }

    fn held_by_other(&self, provider: &str, id: &str, message: i64) -> bool {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&(provider.to_owned(), id.to_owned()))
            .is_some_and(|(owner, _)| *owner != message)
    }
}

/// What the look-up came to.
#[derive(Debug)]
pub(super) enum Lookup {
    /// The earlier attempt reached the provider: record it, do not send.
    Found(Receipt),
    /// The provider has nothing that could be it: send.
    NotFound,
    /// Sending again may duplicate it; the reason is counted and noted on
    /// the attempt (`no_lookup`, `ambiguous`, `lookup_failed`).
    Unsure(&'static str, String),
}

/// The attempts of this round that a claim started but nobody recorded:
/// attempt numbers after `retry_base` and before the current claim's with
/// no row in the history. (A claim that handed its message back undid its
/// attempt, so a gap is a claim whose worker stopped.)
pub(super) fn unrecorded_attempts(msg: &Message, history: &[&PastAttempt]) -> Vec<i32> {
    (msg.retry_base + 1..msg.attempts)
        .filter(|n| !history.iter().any(|a| a.attempt == *n))
        .collect()
}

/// When the unrecorded claims may have called the provider: after the
/// last recorded call (or the message's creation), until now.
pub(super) fn unrecorded_window(msg: &Message, history: &[&PastAttempt], now: DateTime<Utc>) -> Window {
    let from = history
        .iter()
        .filter_map(|a| a.finished_at)
        .max()
        .or(msg.created_at)
        .unwrap_or(now - chrono::Duration::days(1));
    Window { from, to: now }
}

impl Processor {
    /// History rows for claims that recorded nothing: outcome `unknown`,
    /// and an error saying what happened.
    pub(super) fn unrecorded_records(&self, msg: &Message, provider: &str, attempts: &[i32]) -> Vec<AttemptRecord> {
        let now = self.clock.now();
        attempts
            .iter()
            .map(|n| {
                let mut e = ErrorColumn::unsent(
                    "worker_stopped",
                    "the worker that claimed this attempt stopped before recording its outcome; \
                     the provider may have been called",
                    *n,
                    now,
                );
                e.provider = Some(provider.to_owned());
                e.outcome_unknown = true;
                AttemptRecord {
                    message_id: msg.id,
                    attempt: *n,
                    started_at: now,
                    finished_at: now,
                    provider: provider.to_owned(),
                    outcome: AttemptOutcome::Unknown,
                    error: Some(e.to_json()),
                    provider_message_id: None,
                }
            })
            .collect()
    }

    /// Ask `provider` whether the earlier attempt in `window` reached it.
    pub(super) async fn look_up(
        &self,
        provider: &dyn Provider,
        msg: &Message,
        parsed: &OutgoingMessage,
        window: Window,
    ) -> Lookup {
        if !provider.can_reconcile() {
            return Lookup::Unsure(
                "no_lookup",
                format!(
                    "{} cannot be asked whether the earlier attempt reached it",
                    provider.name()
                ),
            );
        }
        let candidates = match provider.reconcile(parsed, window).await {
            Ok(c) => c,
            Err(e) => {
                return Lookup::Unsure(
                    "lookup_failed",
                    format!("asking {} about the earlier attempt failed: {e}", provider.name()),
                )
            }
        };
        let ids: Vec<String> = candidates
            .iter()
            .filter_map(|r| r.provider_message_id.clone())
            .collect();
        let owned = match self
            .store
            .provider_ids_owned_elsewhere(provider.name(), &ids, msg.id)
            .await
        {
            Ok(o) => o,
            Err(e) => {
                return Lookup::Unsure(
                    "lookup_failed",
                    format!("could not check which message owns the provider's ids: {e}"),
                )
            }
        };
        let free: Vec<Receipt> = candidates
            .into_iter()
            .filter(|r| {
                r.provider_message_id.as_deref().is_none_or(|id| {
                    !owned.iter().any(|o| o == id) && !self.reserved.held_by_other(provider.name(), id, msg.id)
                })
            })
            .collect();
        match free.as_slice() {
            [] => Lookup::NotFound,
            [one] => match one.provider_message_id.as_deref() {
                Some(id) if !self.reserved.take(provider.name(), id, msg.id, self.clock.now()) => Lookup::Unsure(
                    "ambiguous",
                    "the provider's only candidate was just matched to another message".into(),
                ),
                _ => Lookup::Found(one.clone()),
            },
            many => Lookup::Unsure(
                "ambiguous",
                format!(
                    "{} has {} messages that could be the earlier attempt",
                    provider.name(),
                    many.len()
                ),
            ),
        }
    }

    /// [`Processor::look_up`] at every provider of the chain, first first:
    /// claims that recorded nothing may have called any of them. Found at
    /// one = found; not found at every one = not found; else unsure. With
    /// the provider that answered.
    pub(super) async fn look_up_chain(
        &self,
        chain: &[std::sync::Arc<dyn Provider>],
        msg: &Message,
        parsed: &OutgoingMessage,
        window: Window,
    ) -> (Lookup, &'static str) {
        let mut unsure: Option<(&'static str, &'static str, String)> = None;
        for p in chain {
            match self.look_up(p.as_ref(), msg, parsed, window).await {
                Lookup::Found(r) => return (Lookup::Found(r), p.name()),
                Lookup::NotFound => {}
                Lookup::Unsure(reason, text) => {
                    unsure.get_or_insert((p.name(), reason, text));
                }
            }
        }
        match unsure {
            Some((provider, reason, text)) => (Lookup::Unsure(reason, text), provider),
            None => (Lookup::NotFound, chain[0].name()),
        }
    }

    /// The window of an earlier attempt whose outcome is unknown, from the
    /// time it ended (the request went out up to a send timeout before).
    pub(super) fn unknown_attempt_window(&self, ended: DateTime<Utc>) -> Window {
        Window {
            from: ended - chrono_duration(self.config.send_timeout),
            to: ended,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn past(attempt: i32) -> PastAttempt {
        PastAttempt {
            message_id: 1,
            attempt,
            provider: "twilio".into(),
            outcome: Some(AttemptOutcome::Retryable),
            provider_message_id: None,
            finished_at: None,
        }
    }

    fn msg(attempts: i32, retry_base: i32) -> Message {
        Message {
            attempts,
            retry_base,
            ..Message::default()
        }
    }

    #[test]
    fn gaps_in_this_round_are_unrecorded_claims() {
        let (a1, a3) = (past(1), past(3));
        // Claims 1..=4 before this one (5); 2 and 4 recorded nothing.
        assert_eq!(unrecorded_attempts(&msg(5, 0), &[&a1, &a3]), vec![2, 4]);
        // A new round starts after attempt 3: only 4 counts.
        assert_eq!(unrecorded_attempts(&msg(5, 3), &[&a1, &a3]), vec![4]);
        // First claim of a round: nothing before it.
        assert!(unrecorded_attempts(&msg(4, 3), &[&a3]).is_empty());
    }

    #[test]
    fn a_reserved_id_belongs_to_one_message() {
        let r = Reserved::default();
        let now = chrono::Utc::now();
        assert!(r.take("twilio", "SM1", 1, now));
        assert!(r.take("twilio", "SM1", 1, now), "the same message may look again");
        assert!(!r.take("twilio", "SM1", 2, now));
        assert!(r.held_by_other("twilio", "SM1", 2));
        assert!(
            r.take("twilio", "SM1", 2, now + chrono::Duration::hours(2)),
            "reservations expire"
        );
    }
}
