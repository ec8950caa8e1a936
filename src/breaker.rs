//! Circuit breakers: one per provider, so that a provider that is down (or
//! refuses Herald's credentials) is not called message after message, each
//! burning a retry. Pure: every function takes `now`, so the behaviour is
//! tested without sleeping; the processor keeps the breakers and shares
//! their changes through the database (`herald_circuits`).
//!
//! - **Closed**: calls go through. `failures_to_open` provider troubles in
//!   a row (connection errors, timeouts, 5xx) open it; a refusal of the
//!   credentials opens it at once.
//! - **Open** until a time: nothing is sent through the provider; its
//!   messages go to the next provider of the channel's chain, or wait
//!   without using up retries. Each opening after a failed probe lasts
//!   twice as long as the one before, up to `max_open_for`.
//! - **Half-open**: a few real messages (`probes`) go through. One that the
//!   provider answers closes the circuit; one that fails opens it again.
//!   With several workers, one worker at a time probes (the database
//!   decides which).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::chrono_duration;

/// How the reason of a circuit opened for refused credentials begins.
pub const CREDENTIALS_REFUSED: &str = "credentials refused";

/// When breakers open and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Provider troubles in a row that open the circuit
    /// (`CIRCUIT_FAILURE_THRESHOLD`).
    pub failures_to_open: u32,
    /// How long the first opening lasts (`CIRCUIT_OPEN_SECONDS`).
    pub open_for: Duration,
    /// The longest an opening lasts, however often probes fail.
    pub max_open_for: Duration,
    /// How long an opening for refused credentials lasts (they need an
    /// operator: trying again sooner only repeats the refusal).
    pub credentials_open_for: Duration,
    /// Messages a half-open circuit lets through at once.
    pub probes: u32,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failures_to_open: 5,
            open_for: Duration::from_secs(30),
            max_open_for: Duration::from_secs(600),
            credentials_open_for: crate::retry::CREDENTIALS_RECHECK,
            probes: 3,
        }
    }
}

impl BreakerPolicy {
    /// How long opening number `opens` (1 for the first) lasts.
    pub fn open_duration(&self, opens: u32, credentials: bool) -> Duration {
        if credentials {
            return self.credentials_open_for;
        }
        let exp = opens.saturating_sub(1).min(20);
        self.open_for.saturating_mul(1u32 << exp).min(self.max_open_for)
    }
}

/// What one provider call said about the provider's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The provider answered (accepted the message, or refused this one
    /// message for a reason of its own: it is up).
    Answered,
    /// The provider is in trouble: no connection, a timeout, a 5xx.
    Trouble,
    /// The provider refused Herald's credentials or account.
    Refused,
    /// Says nothing either way (a 429: the provider is up but busy; its
    /// pause is handled by the rate limiter).
    Neutral,
}

/// The state of a circuit, as stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    pub fn parse(s: &str) -> Option<CircuitState> {
        match s {
            "closed" => Some(CircuitState::Closed),
            "open" => Some(CircuitState::Open),
            "half_open" => Some(CircuitState::HalfOpen),
            _ => None,
        }
    }

    /// For the `herald_circuit_state` gauge.
    pub fn gauge(self) -> u8 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        }
    }
}

/// May a call go through the provider now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Yes (closed).
    Admit,
    /// Yes, as one of the half-open circuit's probes.
    Probe,
    /// The opening is over: this worker may probe if it wins the right to
    /// (see [`Breaker::start_probing`]).
    ProbeDue,
    /// No; try again at this time.
    Reject(DateTime<Utc>),
}

impl Admission {
    pub fn allows(self) -> bool {
        matches!(self, Admission::Admit | Admission::Probe)
    }
}

/// A change worth telling the other workers (and the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Opened until `until`; `opens` counts the openings since it was last
    /// closed (1 the first time).
    Opened {
        until: DateTime<Utc>,
        opens: u32,
        reason: String,
    },
    Closed,
}

/// One provider's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: CircuitState,
    /// Provider troubles in a row while closed.
    failures: u32,
    /// Openings since the circuit was last closed.
    opens: u32,
    open_until: DateTime<Utc>,
    /// Probes in flight while half-open.
    probes_out: u32,
    reason: String,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: CircuitState::Closed,
            failures: 0,
            opens: 0,
            open_until: DateTime::<Utc>::MIN_UTC,
            probes_out: 0,
            reason: String::new(),
        }
    }
}

impl Breaker {
    pub fn state(&self) -> CircuitState {
        self.state
    }

    pub fn open_until(&self) -> Option<DateTime<Utc>> {
        (self.state != CircuitState::Closed).then_some(self.open_until)
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub fn opens(&self) -> u32 {
        self.opens
    }

    /// Whether a call may go now. A probe slot is taken by
    /// [`Admission::Probe`] and given back by [`Breaker::record`].
    pub fn admit(&mut self, policy: &BreakerPolicy, now: DateTime<Utc>) -> Admission {
        match self.state {
            CircuitState::Closed => Admission::Admit,
            CircuitState::Open if now < self.open_until => Admission::Reject(self.open_until),
            CircuitState::Open => Admission::ProbeDue,
            CircuitState::HalfOpen if self.probes_out < policy.probes.max(1) => {
                self.probes_out += 1;
                Admission::Probe
            }
            // Every probe is out: their answers decide.
            CircuitState::HalfOpen => Admission::Reject(now + chrono::Duration::seconds(1)),
        }
    }

    /// Whether a call could go now, without taking a probe slot (for
    /// deciding how many messages to claim).
    pub fn capacity(&self, policy: &BreakerPolicy, now: DateTime<Utc>) -> Option<u32> {
        match self.state {
            CircuitState::Closed => None,
            CircuitState::Open if now < self.open_until => Some(0),
            CircuitState::Open => Some(policy.probes.max(1)),
            CircuitState::HalfOpen => Some(policy.probes.max(1).saturating_sub(self.probes_out)),
        }
    }

    /// This worker won the right to probe (or works alone): half-open.
    pub fn start_probing(&mut self) {
        if self.state == CircuitState::Open {
            self.state = CircuitState::HalfOpen;
            self.probes_out = 0;
        }
    }

    /// Another worker is probing: wait until `until` (then look again).
    pub fn wait_for_probe(&mut self, until: DateTime<Utc>) {
        if self.state == CircuitState::Open {
            self.open_until = self.open_until.max(until);
        }
    }

    /// What the provider's answer to a call admitted as `admission` says.
    pub fn record(
        &mut self,
        policy: &BreakerPolicy,
        admission: Admission,
        health: Health,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Option<Transition> {
        let probe = admission == Admission::Probe;
        if probe {
            self.probes_out = self.probes_out.saturating_sub(1);
        }
        match (self.state, probe, health) {
            (CircuitState::Closed, _, Health::Answered) => {
                self.failures = 0;
                None
            }
            (CircuitState::Closed, _, Health::Trouble) => {
                self.failures += 1;
                (self.failures >= policy.failures_to_open.max(1)).then(|| {
                    self.open(
                        policy,
                        false,
                        format!("{} failures in a row; the last: {reason}", self.failures),
                        now,
                    )
                })
            }
            (CircuitState::Closed, _, Health::Refused) => {
                Some(self.open(policy, true, format!("{CREDENTIALS_REFUSED}: {reason}"), now))
            }
            (CircuitState::HalfOpen, true, Health::Answered) => {
                *self = Breaker::default();
                Some(Transition::Closed)
            }
            (CircuitState::HalfOpen, true, Health::Trouble) => {
                Some(self.open(policy, false, format!("a probe failed: {reason}"), now))
            }
            (CircuitState::HalfOpen, true, Health::Refused) => {
                Some(self.open(policy, true, format!("{CREDENTIALS_REFUSED}: {reason}"), now))
            }
            // Answers to calls admitted before the circuit opened, and
            // neutral answers, change nothing: the probes decide.
            _ => None,
        }
    }

    fn open(&mut self, policy: &BreakerPolicy, credentials: bool, reason: String, now: DateTime<Utc>) -> Transition {
        self.opens += 1;
        self.state = CircuitState::Open;
        self.failures = 0;
        self.probes_out = 0;
        self.open_until = now + chrono_duration(policy.open_duration(self.opens, credentials));
        self.reason = reason.clone();
        Transition::Opened {
            until: self.open_until,
            opens: self.opens,
            reason,
        }
    }

    /// Take the state another worker wrote to the database.
    pub fn adopt(&mut self, state: CircuitState, until: Option<DateTime<Utc>>, opens: u32, reason: &str) {
        match state {
            CircuitState::Closed => *self = Breaker::default(),
            // Half-open elsewhere: another worker is probing. Here it is
            // open until its probes had time to answer.
            CircuitState::Open | CircuitState::HalfOpen => {
                self.state = CircuitState::Open;
                self.open_until = until.unwrap_or(self.open_until);
                self.opens = opens;
                self.failures = 0;
                self.probes_out = 0;
                self.reason = reason.to_owned();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap()
    }

    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failures_to_open: 3,
            open_for: Duration::from_secs(30),
            max_open_for: Duration::from_secs(100),
            credentials_open_for: Duration::from_secs(60),
            probes: 2,
        }
    }

    #[test]
    fn troubles_in_a_row_open_it_an_answer_in_between_does_not() {
        let p = policy();
        let mut b = Breaker::default();
        for _ in 0..2 {
            assert_eq!(b.record(&p, Admission::Admit, Health::Trouble, "503", now()), None);
        }
        assert_eq!(b.record(&p, Admission::Admit, Health::Answered, "", now()), None);
        for _ in 0..2 {
            assert_eq!(b.record(&p, Admission::Admit, Health::Trouble, "503", now()), None);
        }
        let t = b.record(&p, Admission::Admit, Health::Trouble, "503 Service Unavailable", now());
        assert_eq!(
            t,
            Some(Transition::Opened {
                until: now() + secs(30),
                opens: 1,
                reason: "3 failures in a row; the last: 503 Service Unavailable".into()
            })
        );
        assert_eq!(b.admit(&p, now() + secs(29)), Admission::Reject(now() + secs(30)));
        // Late answers to calls admitted before it opened change nothing.
        assert_eq!(b.record(&p, Admission::Admit, Health::Answered, "", now()), None);
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[test]
    fn refused_credentials_open_it_at_once_for_the_credentials_time() {
        let p = policy();
        let mut b = Breaker::default();
        let t = b.record(&p, Admission::Admit, Health::Refused, "20003", now());
        assert!(matches!(t, Some(Transition::Opened { until, .. }) if until == now() + secs(60)));
        assert_eq!(b.admit(&p, now()), Admission::Reject(now() + secs(60)));
    }

    #[test]
    fn half_open_lets_a_few_probes_through_and_an_answer_closes_it() {
        let p = policy();
        let mut b = Breaker::default();
        b.record(&p, Admission::Admit, Health::Refused, "401", now());
        let later = now() + secs(61);
        assert_eq!(b.capacity(&p, now()), Some(0));
        assert_eq!(b.admit(&p, later), Admission::ProbeDue);
        b.start_probing();
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert_eq!(b.admit(&p, later), Admission::Probe);
        assert_eq!(b.admit(&p, later), Admission::Probe);
        assert!(matches!(b.admit(&p, later), Admission::Reject(_)), "two probes at most");
        assert_eq!(b.capacity(&p, later), Some(0));
        assert_eq!(
            b.record(&p, Admission::Probe, Health::Neutral, "429", later),
            None,
            "a 429 decides nothing"
        );
        assert_eq!(b.capacity(&p, later), Some(1));
        assert_eq!(
            b.record(&p, Admission::Probe, Health::Answered, "", later),
            Some(Transition::Closed)
        );
        assert_eq!(b.admit(&p, later), Admission::Admit);
        assert_eq!(b.capacity(&p, later), None);
        assert_eq!(b.opens(), 0);
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_twice_as_long_up_to_the_cap() {
        let p = policy();
        let mut b = Breaker::default();
        let mut t = now();
        for _ in 0..3 {
            b.record(&p, Admission::Admit, Health::Trouble, "timeout", t);
        }
        let mut expected = [30, 60, 100, 100].into_iter();
        assert_eq!(b.open_until(), Some(t + secs(expected.next().unwrap())));
        for want in expected {
            t = b.open_until().unwrap();
            assert_eq!(b.admit(&p, t), Admission::ProbeDue);
            b.start_probing();
            assert_eq!(b.admit(&p, t), Admission::Probe);
            b.record(&p, Admission::Probe, Health::Trouble, "timeout", t);
            assert_eq!(b.open_until(), Some(t + secs(want)));
        }
        assert_eq!(b.opens(), 4);
    }

    #[test]
    fn another_workers_state_is_adopted() {
        let p = policy();
        let mut b = Breaker::default();
        b.adopt(CircuitState::Open, Some(now() + secs(10)), 2, "elsewhere");
        assert_eq!(b.admit(&p, now()), Admission::Reject(now() + secs(10)));
        assert_eq!(b.reason(), "elsewhere");
        // Another worker won the probe: wait for its answer.
        assert_eq!(b.admit(&p, now() + secs(10)), Admission::ProbeDue);
        b.wait_for_probe(now() + secs(20));
        assert_eq!(b.admit(&p, now() + secs(15)), Admission::Reject(now() + secs(20)));
        b.adopt(CircuitState::Closed, None, 0, "");
        assert_eq!(b.admit(&p, now()), Admission::Admit);
    }

    #[test]
    fn states_round_trip() {
        for s in [CircuitState::Closed, CircuitState::Open, CircuitState::HalfOpen] {
            assert_eq!(CircuitState::parse(s.as_str()), Some(s));
        }
        assert_eq!(CircuitState::parse("ajar"), None);
    }
}
