//! What the processor counts for `/metrics`: sends by provider and outcome,
//! provider call latency, and waits for rate limits.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::AttemptOutcome;
use crate::prometheus::{Exposition, Kind};

/// Upper bounds (seconds) of the latency histogram buckets.
pub(super) const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Inner {
    sends: BTreeMap<(String, AttemptOutcome), u64>,
    latency: BTreeMap<String, Histogram>,
    rate_limit_waits: BTreeMap<&'static str, u64>,
    rate_limit_wait_seconds: BTreeMap<&'static str, f64>,
    held_back: BTreeMap<&'static str, u64>,
    /// Resends after an earlier attempt whose outcome was unknown, by
    /// provider and how the look-up went.
    resent_unknown: BTreeMap<(String, &'static str), u64>,
    credentials_failing: BTreeMap<String, bool>,
    /// Messages another provider took over at once: (channel, from, to).
    failovers: BTreeMap<(&'static str, String, String), u64>,
    concurrency_limit: BTreeMap<&'static str, usize>,
}

#[derive(Debug, Default)]
pub struct SendMetrics {
    inner: Mutex<Inner>,
}

impl SendMetrics {
    /// One provider call and how it went.
    pub fn record_send(&self, provider: &str, outcome: AttemptOutcome, took: Duration) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *m.sends.entry((provider.to_owned(), outcome)).or_default() += 1;
        let h = m.latency.entry(provider.to_owned()).or_default();
        let secs = took.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// A message waited for its sender's rate limit.
    pub fn record_rate_limit_wait(&self, channel: &'static str, waited: Duration) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *m.rate_limit_waits.entry(channel).or_default() += 1;
        *m.rate_limit_wait_seconds.entry(channel).or_default() += waited.as_secs_f64();
    }

    /// Whether `provider` refuses Herald's credentials (an alert while true).
    pub fn set_credentials_failing(&self, provider: &str, failing: bool) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if failing || m.credentials_failing.contains_key(provider) {
            m.credentials_failing.insert(provider.to_owned(), failing);
        }
    }

    /// Providers refusing Herald's credentials now.
    pub fn credentials_failing(&self) -> Vec<String> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.credentials_failing
            .iter()
            .filter(|(_, f)| **f)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// `from` did not take a message, so `to` was tried at once.
    pub fn record_failover(&self, channel: &'static str, from: &str, to: &str) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *m.failovers
            .entry((channel, from.to_owned(), to.to_owned()))
            .or_default() += 1;
    }

    /// How many provider calls a channel may have in flight now (it adapts).
    pub fn set_concurrency_limit(&self, channel: &'static str, limit: usize) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.concurrency_limit.insert(channel, limit);
    }

    /// A message went back to the queue unsent (rate limit, provider pause, shutdown).
    pub fn record_held_back(&self, reason: &'static str) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *m.held_back.entry(reason).or_default() += 1;
    }

    /// A message whose earlier attempt may have gone out was sent again
    /// without the provider ruling a duplicate out; `reason`: `no_lookup`
    /// (the provider cannot be asked), `ambiguous`, `lookup_failed`.
    pub fn record_possible_duplicate(&self, provider: &str, reason: &'static str) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *m.resent_unknown.entry((provider.to_owned(), reason)).or_default() += 1;
    }

    /// Prometheus text exposition of everything above.
    pub fn render(&self, out: &mut Exposition) {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        out.family(
            "herald_sends_total",
            Kind::Counter,
            "Provider calls by provider and outcome.",
        );
        for ((provider, outcome), n) in &m.sends {
            out.sample(
                "herald_sends_total",
                &[("provider", provider), ("outcome", outcome.as_str())],
                n,
            );
        }
        out.family(
            "herald_send_duration_seconds",
            Kind::Histogram,
            "Provider call latency.",
        );
        for (provider, h) in &m.latency {
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                let le = bound.to_string();
                out.sample(
                    "herald_send_duration_seconds_bucket",
                    &[("provider", provider), ("le", &le)],
                    h.counts[i],
                );
            }
            out.sample(
                "herald_send_duration_seconds_bucket",
                &[("provider", provider), ("le", "+Inf")],
                h.count,
            )
            .sample("herald_send_duration_seconds_sum", &[("provider", provider)], h.sum)
            .sample("herald_send_duration_seconds_count", &[("provider", provider)], h.count);
        }
        out.family(
            "herald_rate_limit_waits_total",
            Kind::Counter,
            "Messages that waited for their sender's rate limit.",
        );
        for (channel, n) in &m.rate_limit_waits {
            out.sample("herald_rate_limit_waits_total", &[("channel", channel)], n);
        }
        out.family(
            "herald_rate_limit_wait_seconds_total",
            Kind::Counter,
            "Time messages spent waiting for rate limits.",
        );
        for (channel, s) in &m.rate_limit_wait_seconds {
            out.sample("herald_rate_limit_wait_seconds_total", &[("channel", channel)], s);
        }
        out.family(
            "herald_held_back_total",
            Kind::Counter,
            "Messages handed back to the queue unsent, by reason.",
        );
        for (reason, n) in &m.held_back {
            out.sample("herald_held_back_total", &[("reason", reason)], n);
        }
        out.family(
            "herald_possible_duplicates_total",
            Kind::Counter,
            "Messages sent again although an earlier attempt may have gone out and the provider could not rule it \
             out, by provider and reason (no_lookup, ambiguous, lookup_failed).",
        );
        for ((provider, reason), n) in &m.resent_unknown {
            out.sample(
                "herald_possible_duplicates_total",
                &[("provider", provider), ("reason", reason)],
                n,
            );
        }
        out.family(
            "herald_send_concurrency_limit",
            Kind::Gauge,
            "Provider calls a channel may have in flight now: grows while the provider keeps up, shrinks when it \
             pushes back (429, timeouts, 5xx), at most *_CONCURRENCY.",
        );
        for (channel, n) in &m.concurrency_limit {
            out.sample("herald_send_concurrency_limit", &[("channel", channel)], n);
        }
        out.family(
            "herald_failovers_total",
            Kind::Counter,
            "Messages a provider did not take (no connection, 429, 503, refused credentials) that the channel's next \
             provider was tried with at once.",
        );
        for ((channel, from, to), n) in &m.failovers {
            out.sample(
                "herald_failovers_total",
                &[("channel", channel), ("from", from), ("to", to)],
                n,
            );
        }
        out.family(
            "herald_provider_credentials_failing",
            Kind::Gauge,
            "1 while a provider refuses Herald's credentials (an alert: fix them; its messages wait).",
        );
        for (provider, failing) in &m.credentials_failing {
            out.sample(
                "herald_provider_credentials_failing",
                &[("provider", provider)],
                u8::from(*failing),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = SendMetrics::default();
        m.record_send("twilio", AttemptOutcome::Sent, Duration::from_millis(30));
        m.record_send("twilio", AttemptOutcome::Sent, Duration::from_millis(700));
        m.record_send("twilio", AttemptOutcome::Permanent, Duration::from_millis(20));
        m.record_rate_limit_wait("sms", Duration::from_millis(1500));
        m.set_concurrency_limit("sms", 48);
        let mut e = Exposition::new();
        m.render(&mut e);
        let out = e.finish();
        assert!(out.contains("herald_sends_total{provider=\"twilio\",outcome=\"sent\"} 2"));
        assert!(out.contains("herald_send_duration_seconds_bucket{provider=\"twilio\",le=\"0.05\"} 2"));
        assert!(out.contains("herald_send_duration_seconds_bucket{provider=\"twilio\",le=\"1\"} 3"));
        assert!(out.contains("herald_send_duration_seconds_count{provider=\"twilio\"} 3"));
        assert!(out.contains("herald_rate_limit_waits_total{channel=\"sms\"} 1"));
        assert!(out.contains("herald_send_concurrency_limit{channel=\"sms\"} 48"));
        assert!(out.contains("herald_sends_total{provider=\"twilio\",outcome=\"permanent\"} 1"));
    }
}
