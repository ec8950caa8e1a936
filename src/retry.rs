//! What to do after a failed send: a pure function of the failure, the
//! attempt number, the time and a random number.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::chrono_duration;
use crate::domain::FailureClass;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (`MAX_RETRIES`); 3 means up to 4 calls.
    pub max_retries: u32,
    /// Delay before the first retry; doubles for each one after.
    pub base_delay: Duration,
    /// No delay is longer than this.
    pub max_delay: Duration,
    /// A provider's "retry after" is clamped to this, so a bad header cannot
    /// park a message for a year.
    pub max_rate_limit_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(3600),
            max_rate_limit_wait: Duration::from_secs(3600),
        }
    }
}

/// How long a provider that refused Herald's credentials is paused before
/// a message tries it again.
pub const CREDENTIALS_RECHECK: Duration = Duration::from_secs(60);

/// The processor's next step for a message whose send failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Give up: status `failed`.
    Fail,
    /// Back to `pending`, due at `at`. `counts_as_retry` is false for rate
    /// limiting, which does not use up the retry budget.
    RetryAt { at: DateTime<Utc>, counts_as_retry: bool },
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1 for the first retry):
    /// `base * 2^(retry-1)`, capped at `max_delay`, then scaled by a random
    /// factor in [0.5, 1.0) ("equal jitter") so that messages that failed
    /// together do not retry together. `random` is in [0, 1).
    pub fn backoff(&self, retry: u32, random: f64) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        let raw = self.base_delay.saturating_mul(1u32 << exp);
        let capped = raw.min(self.max_delay);
        let factor = 0.5 + 0.5 * random.clamp(0.0, 1.0 - f64::EPSILON);
        capped.mul_f64(factor)
    }

    /// `round_attempt` is the number of provider calls made in this round,
    /// including the one that just failed (1 after the first call).
    pub fn decide(&self, class: FailureClass, round_attempt: u32, now: DateTime<Utc>, random: f64) -> Decision {
        match class {
            FailureClass::Permanent => Decision::Fail,
            FailureClass::Retryable => {
                if round_attempt > self.max_retries {
                    Decision::Fail
                } else {
                    let delay = self.backoff(round_attempt, random);
                    Decision::RetryAt {
                        at: now + chrono_duration(delay),
                        counts_as_retry: true,
                    }
                }
            }
            FailureClass::Unauthorized => Decision::RetryAt {
                at: now + chrono_duration(CREDENTIALS_RECHECK),
                counts_as_retry: false,
            },
            FailureClass::RateLimited { until } => {
                let earliest = now + chrono::Duration::seconds(1);
                let latest = now + chrono_duration(self.max_rate_limit_wait);
                Decision::RetryAt {
                    at: until.clamp(earliest, latest),
                    counts_as_retry: false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            max_rate_limit_wait: Duration::from_secs(600),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_within_bounds() {
        let p = policy();
        assert_eq!(p.backoff(1, 0.0), Duration::from_secs(5));
        assert_eq!(p.backoff(1, 0.5), Duration::from_millis(7500));
        assert_eq!(p.backoff(2, 0.0), Duration::from_secs(10));
        assert_eq!(p.backoff(3, 0.0), Duration::from_secs(20));
        // 10 * 2^3 = 80 > cap 60
        assert_eq!(p.backoff(4, 0.0), Duration::from_secs(30));
        assert!(p.backoff(4, 0.999_999) < Duration::from_secs(60));
        assert_eq!(p.backoff(100, 0.0), Duration::from_secs(30));
        for i in 0..100 {
            let r = f64::from(i) / 100.0;
            let d = p.backoff(2, r);
            assert!(d >= Duration::from_secs(10) && d < Duration::from_secs(20), "{d:?}");
        }
    }

    #[test]
    fn permanent_fails_at_once() {
        assert_eq!(policy().decide(FailureClass::Permanent, 1, now(), 0.3), Decision::Fail);
    }

    #[test]
    fn retryable_retries_max_retries_times_then_fails() {
        let p = policy();
        for round in 1..=3 {
            match p.decide(FailureClass::Retryable, round, now(), 0.0) {
                Decision::RetryAt {
                    at,
                    counts_as_retry: true,
                } => {
                    assert_eq!(at, now() + chrono_duration(p.backoff(round, 0.0)))
                }
                other => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!(p.decide(FailureClass::Retryable, 4, now(), 0.0), Decision::Fail);
        let none = RetryPolicy { max_retries: 0, ..p };
        assert_eq!(none.decide(FailureClass::Retryable, 1, now(), 0.0), Decision::Fail);
    }

    #[test]
    fn rate_limited_waits_until_the_provider_says_clamped() {
        let p = policy();
        let until = now() + chrono::Duration::seconds(42);
        assert_eq!(
            p.decide(FailureClass::RateLimited { until }, 9, now(), 0.0),
            Decision::RetryAt {
                at: until,
                counts_as_retry: false
            }
        );
        let past = now() - chrono::Duration::seconds(5);
        assert_eq!(
            p.decide(FailureClass::RateLimited { until: past }, 1, now(), 0.0),
            Decision::RetryAt {
                at: now() + chrono::Duration::seconds(1),
                counts_as_retry: false
            }
        );
        let far = now() + chrono::Duration::days(365);
        assert_eq!(
            p.decide(FailureClass::RateLimited { until: far }, 1, now(), 0.0),
            Decision::RetryAt {
                at: now() + chrono::Duration::seconds(600),
                counts_as_retry: false
            }
        );
    }
}
