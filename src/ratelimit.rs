//! Token buckets keyed by (channel, provider, sender), and per-provider
//! pauses after a 429. Every function takes `now`: no clock is read here, so
//! the behaviour is tested without sleeping.
//!
//! A bucket lives in memory (one worker: SQLite), or in the database
//! (PostgreSQL, where several workers share one limit): then the claim loop
//! reserves tokens from the database for each claim ([`RateLimiter::add_grant`])
//! and each send takes the next one. Tokens not used are not given back:
//! other workers may have reserved later moments since, and moving the
//! bucket back would let those and the returned ones go out together. The
//! group sends a little below the limit when claims come back short, never
//! above it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::Channel;

/// A token bucket that may go into debt: a reservation always succeeds and
/// says *when* its token is available, so concurrent senders are spaced out
/// in order instead of racing for each refill.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: DateTime<Utc>,
}

impl Bucket {
    /// `rate` tokens per second (> 0), at most `burst` saved up; starts full.
    pub fn new(rate: f64, burst: u32, now: DateTime<Utc>) -> Bucket {
        let burst = f64::from(burst.max(1));
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: DateTime<Utc>) {
        let elapsed = (now - self.last).to_std().unwrap_or(Duration::ZERO).as_secs_f64();
        if elapsed > 0.0 {
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
            self.last = now;
        }
    }

    /// Take a token; returns when it may be used (`now` if one is there).
    pub fn reserve(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            now
        } else {
            now + chrono::Duration::microseconds(((-self.tokens) / self.rate * 1e6).ceil() as i64)
        }
    }

    /// Give back a reserved token that was not used.
    pub fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    /// When [`Self::available_within`] will next be at least 1.
    pub fn next_available(&mut self, now: DateTime<Utc>, horizon: Duration) -> DateTime<Utc> {
        self.refill(now);
        let missing = 1.0 - self.tokens - horizon.as_secs_f64() * self.rate;
        if missing <= 0.0 {
            now
        } else {
            now + chrono::Duration::microseconds((missing / self.rate * 1e6).ceil() as i64)
        }
    }

    /// How many reservations would be usable within `horizon` from `now`.
    pub fn available_within(&mut self, now: DateTime<Utc>, horizon: Duration) -> u32 {
        self.refill(now);
        let n = self.tokens + horizon.as_secs_f64() * self.rate;
        if n <= 0.0 {
            0
        } else {
            n.floor().min(f64::from(u32::MAX)) as u32
        }
    }
}

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

impl ChannelLimits {
    /// The most provider calls in flight per channel when nothing else is
    /// configured (the processor finds how many the provider takes, up to
    /// this): enough for 3,000 msg/s at 300 ms per call.
    pub const DEFAULT_CONCURRENCY: usize = 1000;

    /// No rate limit, [`Self::DEFAULT_CONCURRENCY`] calls in flight.
    pub const UNLIMITED: ChannelLimits = ChannelLimits {
        rate: 0.0,
        burst: 1,
        concurrency: Self::DEFAULT_CONCURRENCY,
    };
}

type Key = (Channel, String, String);

/// All buckets and pauses of one processor.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: HashMap<Channel, ChannelLimits>,
    buckets: Mutex<HashMap<Key, Bucket>>,
    paused: Mutex<HashMap<String, DateTime<Utc>>>,
    /// The buckets are in the database: tokens are reserved per claim.
    shared: bool,
    shared_state: Mutex<HashMap<Key, Shared>>,
}

/// One sender's tokens taken from the shared bucket.
#[derive(Debug, Default)]
struct Shared {
    /// When each token held may be used, soonest first.
    held: VecDeque<DateTime<Utc>>,
    /// When the bucket will next have a token within the horizon (set
    /// when a reservation got none).
    next: Option<DateTime<Utc>>,
}

impl RateLimiter {
    pub fn new(limits: HashMap<Channel, ChannelLimits>) -> RateLimiter {
        RateLimiter {
            limits,
            ..RateLimiter::default()
        }
    }

    /// Buckets kept in the database, shared with other workers.
    pub fn shared(limits: HashMap<Channel, ChannelLimits>) -> RateLimiter {
        RateLimiter {
            limits,
            shared: true,
            ..RateLimiter::default()
        }
    }

    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The channel's limits, when it has a rate limit.
    pub fn limit(&self, channel: Channel) -> Option<ChannelLimits> {
        self.limits.get(&channel).copied().filter(|l| l.rate > 0.0)
    }

    /// The shared bucket's name for a sender.
    pub fn bucket_name(channel: Channel, provider: &str, sender: &str) -> String {
        format!("{channel}:{provider}:{sender}")
    }

    fn with_shared<T>(&self, key: Key, f: impl FnOnce(&mut Shared) -> T) -> T {
        let mut all = self.shared_state.lock().unwrap_or_else(|e| e.into_inner());
        f(all.entry(key).or_default())
    }

    /// Shared buckets: tokens reserved at `now` ([`crate::store::Grant`]).
    /// Returns how many.
    pub fn add_grant(
        &self,
        channel: Channel,
        provider: &str,
        sender: &str,
        now: DateTime<Utc>,
        grant: crate::store::Grant,
        horizon: Duration,
    ) -> u32 {
        let crate::store::Grant { tokens, granted } = grant;
        let Some(limit) = self.limit(channel) else {
            return 0;
        };
        let at = |offset: f64| {
            if offset <= 0.0 {
                now
            } else {
                now + chrono::Duration::microseconds((offset * 1e6).ceil() as i64)
            }
        };
        self.with_shared((channel, provider.to_owned(), sender.to_owned()), |s| {
            for i in 1..=granted {
                s.held.push_back(at((f64::from(i) - tokens) / limit.rate));
            }
            s.next = (granted == 0).then(|| at((1.0 - tokens - horizon.as_secs_f64() * limit.rate) / limit.rate));
        });
        granted
    }

    /// Shared buckets: the last `n` tokens reserved will not be used (they
    /// are dropped, not given back: see the module's note).
    pub fn drop_unused(&self, channel: Channel, provider: &str, sender: &str, n: u32) {
        self.with_shared((channel, provider.to_owned(), sender.to_owned()), |s| {
            let keep = s.held.len().saturating_sub(n as usize);
            s.held.truncate(keep);
        });
    }

    fn with_bucket<T>(
        &self,
        channel: Channel,
        provider: &str,
        sender: &str,
        now: DateTime<Utc>,
        f: impl FnOnce(&mut Bucket) -> T,
    ) -> Option<T> {
        let limit = self.limit(channel)?;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets
            .entry((channel, provider.to_owned(), sender.to_owned()))
            .or_insert_with(|| Bucket::new(limit.rate, limit.burst, now));
        Some(f(bucket))
    }

    /// Reserve a send for this sender; returns when it may go.
    ///
    /// Shared buckets: at the moment of the next token reserved from the
    /// database, and no sooner than this worker's own bucket allows (a token
    /// granted for a moment already past, because its message waited for a
    /// send slot, does not make a burst). A message claimed without a token
    /// (its channel spelled `SMS` rather than `sms`: found by the claim of
    /// unknown channels) is paced by this worker's bucket alone.
    pub fn reserve(&self, channel: Channel, provider: &str, sender: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        let own = self
            .with_bucket(channel, provider, sender, now, |b| b.reserve(now))
            .unwrap_or(now);
        if self.shared && self.limit(channel).is_some() {
            let granted = self.with_shared((channel, provider.to_owned(), sender.to_owned()), |s| {
                s.held.pop_front()
            });
            return granted.map_or(own, |g| g.max(own));
        }
        own
    }

    pub fn refund(&self, channel: Channel, provider: &str, sender: &str, now: DateTime<Utc>) {
        // A shared token is not given back (see the module's note); this
        // worker's own bucket is.
        self.with_bucket(channel, provider, sender, now, Bucket::refund);
    }

    /// How many messages this sender may start within `horizon`: `None` when
    /// unlimited, 0 while its provider is paused.
    pub fn budget(
        &self,
        channel: Channel,
        provider: &str,
        sender: &str,
        now: DateTime<Utc>,
        horizon: Duration,
    ) -> Option<u32> {
        if self.paused_until(provider, now).is_some() {
            return Some(0);
        }
        self.with_bucket(channel, provider, sender, now, |b| b.available_within(now, horizon))
    }

    /// When a sender whose [`Self::budget`] is 0 may start a message again
    /// (`None` when unlimited or paused: a pause ends at its own time).
    pub fn next_budget_at(
        &self,
        channel: Channel,
        provider: &str,
        sender: &str,
        now: DateTime<Utc>,
        horizon: Duration,
    ) -> Option<DateTime<Utc>> {
        if self.paused_until(provider, now).is_some() {
            return None;
        }
        if self.shared && self.limit(channel).is_some() {
            return self.with_shared((channel, provider.to_owned(), sender.to_owned()), |s| s.next);
        }
        self.with_bucket(channel, provider, sender, now, |b| b.next_available(now, horizon))
    }

    /// The provider said "too many requests": send nothing through it until `until`.
    pub fn pause(&self, provider: &str, until: DateTime<Utc>) {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        let entry = paused.entry(provider.to_owned()).or_insert(until);
        if *entry < until {
            *entry = until;
        }
    }

    pub fn paused_until(&self, provider: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        paused.get(provider).copied().filter(|t| *t > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    fn secs(s: f64) -> chrono::Duration {
        chrono::Duration::microseconds((s * 1e6) as i64)
    }

    #[test]
    fn rate_is_held_after_the_burst() {
        let mut b = Bucket::new(2.0, 3, t0());
        // The burst goes at once.
        for _ in 0..3 {
            assert_eq!(b.reserve(t0()), t0());
        }
        // Then one every 0.5 s, in order.
        assert_eq!(b.reserve(t0()), t0() + secs(0.5));
        assert_eq!(b.reserve(t0()), t0() + secs(1.0));
        assert_eq!(b.reserve(t0()), t0() + secs(1.5));
        // 10 s later the bucket is full again, but no fuller than the burst.
        let later = t0() + secs(10.0);
        for _ in 0..3 {
            assert_eq!(b.reserve(later), later);
        }
        assert!(b.reserve(later) > later);
    }

    #[test]
    fn over_a_long_run_the_rate_is_exact() {
        let mut b = Bucket::new(1.0, 1, t0());
        let mut last = t0();
        for _ in 0..100 {
            last = b.reserve(t0());
        }
        // 100 messages at 1/s with a burst of 1: the last goes at 99 s.
        assert_eq!(last, t0() + secs(99.0));
    }

    #[test]
    fn refund_and_budget() {
        let mut b = Bucket::new(1.0, 2, t0());
        assert_eq!(b.available_within(t0(), Duration::from_secs(3)), 5);
        b.reserve(t0());
        b.reserve(t0());
        assert_eq!(b.available_within(t0(), Duration::ZERO), 0);
        assert_eq!(b.available_within(t0(), Duration::from_secs(2)), 2);
        b.reserve(t0()); // in debt: usable at +1 s
        assert_eq!(b.available_within(t0(), Duration::from_millis(500)), 0);
        b.refund();
        assert_eq!(b.reserve(t0()), t0() + secs(1.0));
    }

    fn limiter() -> RateLimiter {
        RateLimiter::new(HashMap::from([
            (
                Channel::Sms,
                ChannelLimits {
                    rate: 1.0,
                    burst: 1,
                    concurrency: 1,
                },
            ),
            (
                Channel::Whatsapp,
                ChannelLimits {
                    rate: 10.0,
                    burst: 10,
                    concurrency: 1,
                },
            ),
            (
                Channel::Email,
                ChannelLimits {
                    rate: 0.0,
                    burst: 1,
                    concurrency: 1,
                },
            ),
        ]))
    }

    #[test]
    fn senders_are_separate() {
        let l = limiter();
        assert_eq!(l.reserve(Channel::Sms, "twilio", "+15550001", t0()), t0());
        assert_eq!(l.reserve(Channel::Sms, "twilio", "+15550001", t0()), t0() + secs(1.0));
        // Another number has its own bucket; so does the same provider's WhatsApp sender.
        assert_eq!(l.reserve(Channel::Sms, "twilio", "+15550002", t0()), t0());
        assert_eq!(l.reserve(Channel::Whatsapp, "twilio", "whatsapp:+15550001", t0()), t0());
        // Unlimited channels never wait.
        for _ in 0..1000 {
            assert_eq!(l.reserve(Channel::Email, "sendgrid", "shop@example.com", t0()), t0());
        }
        assert_eq!(
            l.budget(
                Channel::Email,
                "sendgrid",
                "shop@example.com",
                t0(),
                Duration::from_secs(1)
            ),
            None
        );
        assert!(l.limit(Channel::Sms).is_some());
        assert!(RateLimiter::new(HashMap::new()).limit(Channel::Sms).is_none());
    }

    #[test]
    fn a_pause_stops_only_that_provider() {
        let l = limiter();
        let until = t0() + secs(30.0);
        l.pause("sendgrid", until);
        l.pause("sendgrid", t0() + secs(5.0)); // an earlier end never shortens a pause
        assert_eq!(l.paused_until("sendgrid", t0()), Some(until));
        assert_eq!(l.paused_until("twilio", t0()), None);
        assert_eq!(
            l.budget(
                Channel::Email,
                "sendgrid",
                "a@example.com",
                t0(),
                Duration::from_secs(1)
            ),
            Some(0)
        );
        assert_eq!(
            l.budget(Channel::Whatsapp, "twilio", "whatsapp:+1", t0(), Duration::from_secs(1)),
            Some(20)
        );
        assert!(l.paused_until("sendgrid", t0()).is_some());
        assert_eq!(l.paused_until("sendgrid", until), None, "the pause ends on time");
        assert!(l.paused_until("sendgrid", until).is_none());
    }

    fn grant(tokens: f64, granted: u32) -> crate::store::Grant {
        crate::store::Grant { tokens, granted }
    }

    #[test]
    fn shared_tokens_are_spaced_as_granted_and_unused_ones_are_dropped() {
        let l = RateLimiter::shared(limiter().limits);
        let h = Duration::from_secs(2);
        // The bucket held 1.5 tokens (rate 1/s): three granted, at 0, 0.5 s and 1.5 s.
        assert_eq!(l.add_grant(Channel::Sms, "twilio", "+1", t0(), grant(1.5, 3), h), 3);
        assert_eq!(l.reserve(Channel::Sms, "twilio", "+1", t0()), t0());
        // The last one will not be used: it is dropped.
        l.drop_unused(Channel::Sms, "twilio", "+1", 1);
        // Granted for 0.5 s, but this worker's own bucket (1/s, burst 1)
        // paces it to 1 s: no worker sends faster than the limit itself.
        assert_eq!(l.reserve(Channel::Sms, "twilio", "+1", t0()), t0() + secs(1.0));
        // No token held (a message claimed outside the budget): paced by the
        // worker's own bucket alone.
        assert_eq!(l.reserve(Channel::Sms, "twilio", "+1", t0()), t0() + secs(2.0));
        // None granted: the bucket was 3 tokens in debt, so with a 2 s horizon
        // the next is usable from 2 s on.
        assert_eq!(l.add_grant(Channel::Sms, "twilio", "+1", t0(), grant(-3.0, 0), h), 0);
        assert_eq!(
            l.next_budget_at(Channel::Sms, "twilio", "+1", t0(), h),
            Some(t0() + secs(2.0))
        );
        // Unlimited channels never hold tokens.
        assert_eq!(l.reserve(Channel::Email, "sendgrid", "a@b.c", t0()), t0());
    }

    #[test]
    fn a_sender_out_of_tokens_knows_when_it_can_start_again() {
        let mut b = Bucket::new(1.0, 1, t0());
        let horizon = Duration::from_secs(2);
        assert_eq!(b.next_available(t0(), horizon), t0());
        for _ in 0..3 {
            b.reserve(t0());
        }
        // Three reserved at t0 (-2 tokens); one can start within 2 s from t0 + 1 s.
        assert_eq!(b.available_within(t0(), horizon), 0);
        let at = b.next_available(t0(), horizon);
        assert_eq!(at, t0() + chrono::Duration::seconds(1));
        assert_eq!(b.available_within(at, horizon), 1);
    }
}
