//! Injected time and randomness, and the one timestamp format Herald writes.
//!
//! Retry, lease and rate-limit decisions take `now` from a [`Clock`] so that
//! tests can move time by hand instead of sleeping.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// Wait until `t` by this clock. The real clock sleeps; a manual clock
    /// jumps forward, so rate-limit waits cost tests no time.
    fn sleep_until(&self, t: DateTime<Utc>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        let wait = (t - self.now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(start)))
    }

    pub fn advance(&self, by: std::time::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::zero());
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if *now < t {
            *now = t;
        }
        Box::pin(std::future::ready(()))
    }
}

/// A source of uniform random numbers in `[0, 1)`, injected for jitter.
pub type Random = Arc<dyn Fn() -> f64 + Send + Sync>;

pub fn system_random() -> Random {
    Arc::new(fastrand::f64)
}

/// A `std` duration as a `chrono` one (saturating: a huge wait stays huge).
pub fn chrono_duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Herald's stored timestamp text: RFC 3339, UTC, milliseconds, `Z` — the
/// same shape as SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ')` column default.
/// Fixed width, so on SQLite the text sorts in time order.
pub fn format_ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Read a timestamp written by Herald, by SQLite's own functions or by
/// another program: RFC 3339 with any offset, or `YYYY-MM-DD[ T]HH:MM[:SS[.f]]`
/// taken as UTC.
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    let naive = s.strip_suffix('Z').unwrap_or(s);
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, fmt) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(naive, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| Utc.from_utc_datetime(&t));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_round_trips_and_sorts() {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 2, 3, 4).unwrap() + chrono::Duration::milliseconds(5);
        let s = format_ts(t);
        assert_eq!(s, "2026-11-25T02:03:04.005Z");
        assert_eq!(parse_ts(&s), Some(t));
        let later = format_ts(t + chrono::Duration::milliseconds(1));
        assert!(later > s);
    }

    #[test]
    fn parses_what_other_programs_write() {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        for s in [
            "2026-11-25T10:00:00Z",
            "2026-11-25T12:00:00+02:00",
            "2026-11-25 10:00:00",
            "2026-11-25 10:00:00.000",
            "2026-11-25 10:00",
            "2026-11-25 10:00:00+00",
            "2026-11-25 11:00:00+01:00",
        ] {
            assert_eq!(parse_ts(s), Some(t), "{s}");
        }
        assert!(parse_ts("tomorrow").is_none());
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let c = ManualClock::new(start);
        assert_eq!(c.now(), start);
        c.advance(std::time::Duration::from_secs(90));
        assert_eq!(c.now(), start + chrono::Duration::seconds(90));
    }
}
