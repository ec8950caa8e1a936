//! This worker's circuit breakers (one per provider, see `breaker.rs`),
//! kept in step with the other workers through `herald_circuits`: every
//! change made here is written there at once, and the table is read about
//! once a second (and when a run starts), so a fleet stops calling a dead
//! provider as soon as one worker finds it dead, and only one worker at a
//! time probes it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::breaker::{Admission, Breaker, BreakerPolicy, CircuitState, Health, Transition};
use crate::clock::{chrono_duration, format_ts};
use crate::store::{ProbeBid, Store};

/// How often the shared table is read.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// A lost bid to probe: look again after this long (the winner's probes
/// answer within a send).
const PROBE_LOST_WAIT: chrono::Duration = chrono::Duration::seconds(1);

#[derive(Debug, Default)]
struct Local {
    breaker: Breaker,
    /// The shared row's generation this breaker reflects.
    generation: i64,
}

/// One provider's circuit, as this worker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitView {
    pub provider: String,
    pub state: CircuitState,
    pub open_until: Option<DateTime<Utc>>,
    pub reason: String,
}

pub(super) struct Circuits {
    policy: BreakerPolicy,
    worker: String,
    /// How long a probe may take (the send timeout and some).
    probe_time: Duration,
    by_provider: Mutex<HashMap<String, Local>>,
    last_sync: Mutex<Option<Instant>>,
    /// Notified when a probe's answer is recorded.
    answered: tokio::sync::Notify,
}

impl Circuits {
    pub(super) fn new(policy: BreakerPolicy, worker: &str, send_timeout: Duration) -> Circuits {
        Circuits {
            policy,
            worker: worker.to_owned(),
            probe_time: send_timeout + Duration::from_secs(5),
            by_provider: Mutex::default(),
            last_sync: Mutex::default(),
            answered: tokio::sync::Notify::new(),
        }
    }

    /// Whether `provider` is half-open here with every probe out.
    pub(super) fn probing(&self, provider: &str) -> bool {
        self.with(provider, |l| l.breaker.state() == CircuitState::HalfOpen)
    }

    /// Notified when a probe's answer is recorded (take the `notified()`
    /// future before looking at the circuit, so no answer is missed).
    pub(super) fn answered(&self) -> &tokio::sync::Notify {
        &self.answered
    }

    fn with<T>(&self, provider: &str, f: impl FnOnce(&mut Local) -> T) -> T {
        let mut all = self.by_provider.lock().unwrap_or_else(|e| e.into_inner());
        f(all.entry(provider.to_owned()).or_default())
    }

    /// How many messages may go to `provider` now: `None` = as many as
    /// its limits allow (closed), `Some(0)` = none (open), else the probes.
    pub(super) fn capacity(&self, provider: &str, now: DateTime<Utc>) -> Option<u32> {
        self.with(provider, |l| l.breaker.capacity(&self.policy, now))
    }

    /// Until when `provider` takes nothing, if it is open (its opening
    /// not over yet).
    pub(super) fn blocked_until(&self, provider: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.with(provider, |l| match l.breaker.state() {
            CircuitState::Open => l.breaker.open_until().filter(|t| *t > now),
            _ => None,
        })
    }

    /// May a call go to `provider` now? When an opening is over, this
    /// worker bids (in the database) to be the one that probes.
    pub(super) async fn admit(&self, store: &Store, provider: &str, now: DateTime<Utc>) -> Admission {
        let first = self.with(provider, |l| l.breaker.admit(&self.policy, now));
        if first != Admission::ProbeDue {
            return first;
        }
        let until = now + chrono_duration(self.probe_time);
        match store.bid_to_probe(provider, &self.worker, now, until).await {
            Ok(ProbeBid::Won(generation)) => {
                let admission = self.with(provider, |l| {
                    l.breaker.start_probing();
                    l.generation = l.generation.max(generation);
                    l.breaker.admit(&self.policy, now)
                });
                if admission == Admission::Probe {
                    tracing::info!(
                        provider,
                        "the circuit's opening is over: probing {provider} with a few messages"
                    );
                }
                admission
            }
            Ok(ProbeBid::Lost) => self.with(provider, |l| {
                if l.breaker.state() == CircuitState::Open {
                    // Another worker probes (or changed it meanwhile).
                    let again = now + PROBE_LOST_WAIT;
                    l.breaker.wait_for_probe(again);
                    Admission::Reject(again)
                } else {
                    // This worker's own probe answered meanwhile.
                    l.breaker.admit(&self.policy, now)
                }
            }),
            Err(e) => {
                // The database cannot say who probes: probe from here (a
                // few messages at most), rather than never.
                tracing::warn!(provider, error = %e, "could not bid to probe the circuit; probing from this worker");
                self.with(provider, |l| {
                    l.breaker.start_probing();
                    l.breaker.admit(&self.policy, now)
                })
            }
        }
    }

    /// What `provider`'s answer says; a change is logged and written for
    /// the other workers. Returns the change.
    pub(super) async fn record(
        &self,
        store: &Store,
        provider: &str,
        admission: Admission,
        health: Health,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Option<Transition> {
        let change = self.with(provider, |l| {
            l.breaker.record(&self.policy, admission, health, reason, now)
        });
        if admission == Admission::Probe {
            self.answered.notify_waiters();
        }
        let change = change?;
        let written = match &change {
            Transition::Opened { until, opens, reason } => {
                tracing::error!(
                    provider,
                    until = %format_ts(*until),
                    opens,
                    reason = %reason,
                    "{provider}'s circuit is open: nothing is sent through it until then (messages go to the \
                     channel's next provider, or wait without using retries)"
                );
                store.open_circuit(provider, *until, *opens, reason, now).await
            }
            Transition::Closed => {
                tracing::info!(provider, "{provider} answered a probe: its circuit is closed again");
                store.close_circuit(provider, now).await
            }
        };
        match written {
            Ok(generation) => self.with(provider, |l| l.generation = l.generation.max(generation)),
            Err(e) => tracing::warn!(provider, error = %e, "could not share the circuit's change with other workers"),
        }
        Some(change)
    }

    /// Take what other workers wrote, at most once a second unless `force`.
    ///
    /// The first time, a circuit opened because the provider refused the
    /// credentials is not taken: this worker may have been started with
    /// fixed ones (its first call finds out, and opens it again at once if
    /// not).
    pub(super) async fn sync(&self, store: &Store, force: bool) {
        let first = {
            let mut last = self.last_sync.lock().unwrap_or_else(|e| e.into_inner());
            if !force && last.is_some_and(|t| t.elapsed() < SYNC_EVERY) {
                return;
            }
            let first = last.is_none();
            *last = Some(Instant::now());
            first
        };
        let rows = match store.circuits().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the shared circuit breakers");
                return;
            }
        };
        let mut all = self.by_provider.lock().unwrap_or_else(|e| e.into_inner());
        for row in rows {
            let local = all.entry(row.provider.clone()).or_default();
            if row.generation <= local.generation {
                continue;
            }
            let mine = row.state == CircuitState::HalfOpen && row.probe_owner.as_deref() == Some(self.worker.as_str());
            let credentials = row
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with(crate::breaker::CREDENTIALS_REFUSED));
            if first && credentials && row.state != CircuitState::Closed {
                tracing::info!(
                    provider = %row.provider,
                    "{}'s circuit was opened for refused credentials: trying them once from this worker",
                    row.provider
                );
            } else if !mine {
                let before = local.breaker.state();
                local.breaker.adopt(
                    row.state,
                    row.blocked_until(),
                    row.opens,
                    row.reason.as_deref().unwrap_or_default(),
                );
                if before != local.breaker.state() {
                    tracing::info!(
                        provider = %row.provider,
                        state = row.state.as_str(),
                        reason = row.reason.as_deref().unwrap_or_default(),
                        "another worker changed {}'s circuit",
                        row.provider
                    );
                }
            }
            local.generation = row.generation;
        }
    }

    /// Every circuit this worker knows, for `/metrics` and logs.
    pub(super) fn views(&self) -> Vec<CircuitView> {
        let all = self.by_provider.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<CircuitView> = all
            .iter()
            .map(|(p, l)| CircuitView {
                provider: p.clone(),
                state: l.breaker.state(),
                open_until: l.breaker.open_until(),
                reason: l.breaker.reason().to_owned(),
            })
            .collect();
        out.sort_by(|a, b| a.provider.cmp(&b.provider));
        out
    }
}
