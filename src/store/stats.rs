//! Statistics kept as outcomes and receipts are recorded: counts per
//! minute, channel, provider, event and code (`herald_stats`), so that the
//! dashboard, `/api/stats` and alerts never scan `notification_messages`.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, Utc};
use serde::Serialize;

use super::{Result, Store};
use crate::clock::{format_ts, parse_ts};

/// Upper bounds (milliseconds) of the latency histogram's buckets; the last
/// bucket is everything slower. The same bounds as `/metrics`.
pub const LATENCY_BOUNDS_MS: [u64; 12] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000];
const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// One thing to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatEvent {
    pub at: DateTime<Utc>,
    pub channel: String,
    pub provider: String,
    /// An attempt outcome, `failed`, `delivery:<status>` or `webhook_rejected`.
    pub event: String,
    /// The error code, for failures ('' otherwise).
    pub code: String,
    /// How long the provider call took, for attempts.
    pub latency_ms: Option<u64>,
    /// SMS segments, for sent SMS.
    pub segments: u32,
}

/// What is added to one row of `herald_stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatDelta {
    pub bucket: String,
    pub channel: String,
    pub provider: String,
    pub event: String,
    pub code: String,
    pub count: i64,
    pub segments: i64,
    pub latency_ms: i64,
    pub lat: [i64; BUCKETS],
}

/// The minute `t` falls in.
pub fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::minutes(1)).unwrap_or(t)
}

/// The hour `t` falls in.
pub(crate) fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::hours(1)).unwrap_or(t)
}

/// Sum events into one delta per row of `herald_stats` (per minute), in
/// key order (so concurrent writers lock rows in the same order).
pub fn aggregate<'a>(events: impl IntoIterator<Item = &'a StatEvent>) -> Vec<StatDelta> {
    aggregate_by(events, minute_of)
}

/// [`aggregate`] with the bucket `at` gives (a minute or an hour).
pub(crate) fn aggregate_by<'a>(
    events: impl IntoIterator<Item = &'a StatEvent>,
    at: impl Fn(DateTime<Utc>) -> DateTime<Utc>,
) -> Vec<StatDelta> {
    let mut rows: BTreeMap<(String, String, String, String, String), StatDelta> = BTreeMap::new();
    for e in events {
        let bucket = format_ts(at(e.at));
        let key = (
            bucket.clone(),
            e.channel.clone(),
            e.provider.clone(),
            e.event.clone(),
            e.code.clone(),
        );
        let row = rows.entry(key).or_insert_with(|| StatDelta {
            bucket,
            channel: e.channel.clone(),
            provider: e.provider.clone(),
            event: e.event.clone(),
            code: e.code.clone(),
            count: 0,
            segments: 0,
            latency_ms: 0,
            lat: [0; BUCKETS],
        });
        row.count += 1;
        row.segments += i64::from(e.segments);
        if let Some(ms) = e.latency_ms {
            row.latency_ms += ms as i64;
            let i = LATENCY_BOUNDS_MS.iter().position(|b| ms <= *b).unwrap_or(BUCKETS - 1);
            row.lat[i] += 1;
        }
    }
    rows.into_values().collect()
}

/// Counts over a time range, grouped as asked.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StatRow {
    /// Start of the bucket (minute, hour or day), when grouped by time.
    pub bucket: Option<DateTime<Utc>>,
    pub channel: Option<String>,
    pub provider: Option<String>,
    pub event: Option<String>,
    pub code: Option<String>,
    pub count: i64,
    pub segments: i64,
    /// Sum of provider call latencies, milliseconds.
    pub latency_ms: i64,
    /// Latency histogram: calls per bucket of `LATENCY_BOUNDS_MS` (the last: slower).
    pub latency_histogram: Vec<i64>,
}

/// A grouped row's key: (bucket, channel, provider, event, code).
type GroupKey = (
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// How to group statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatGroups {
    pub channel: bool,
    pub provider: bool,
    pub event: bool,
    pub code: bool,
}

/// Time buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    pub fn parse(s: &str) -> Option<Bucket> {
        match s {
            "minute" => Some(Bucket::Minute),
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            _ => None,
        }
    }

    pub fn truncate(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let d = match self {
            Bucket::Minute => chrono::Duration::minutes(1),
            Bucket::Hour => chrono::Duration::hours(1),
            Bucket::Day => chrono::Duration::days(1),
        };
        t.duration_trunc(d).unwrap_or(t)
    }
}

/// The value the latency percentile `q` (0..1) falls under, in ms, from a
/// histogram (the bucket's upper bound; `None` without data).
pub fn percentile_ms(histogram: &[i64], q: f64) -> Option<u64> {
    let total: i64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let want = (q * total as f64).ceil().max(1.0) as i64;
    let mut seen = 0;
    for (i, n) in histogram.iter().enumerate() {
        seen += n;
        if seen >= want {
            return Some(LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(60_000));
        }
    }
    None
}

impl Store {
    /// Add to the statistics (outside the recording transaction's fate:
    /// callers run it where a failure cannot block recording).
    pub async fn add_stats(&self, events: &[StatEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let minutes = serde_json::to_string(&aggregate(events)).expect("stats serialize");
        let hours = serde_json::to_string(&aggregate_by(events, hour_of)).expect("stats serialize");
        let (by_minute, by_hour) = (&self.sql.stats_add, &self.sql.stats_add_hourly);
        let _turn = self.write_turn().await;
        with_pool_retrying!(self, |pool| {
            // Both or neither: the two tables must agree.
            let mut tx = pool.begin_with(self.sql.begin_write).await?;
            bound!(sqlx::query(&by_minute.sql), by_minute, [minutes.as_str()])
                .execute(&mut *tx)
                .await?;
            bound!(sqlx::query(&by_hour.sql), by_hour, [hours.as_str()])
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Statistics from `from` (inclusive) to `to` (exclusive), grouped by
    /// time bucket (if any) and the chosen columns.
    pub async fn stats(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket: Option<Bucket>,
        groups: StatGroups,
    ) -> Result<Vec<StatRow>> {
        type Row = (String, String, String, String, String, i64, i64, i64, String);
        // Whole hours come from the hourly table; the minutes before the
        // first and after the last whole hour from the per-minute one.
        let h1 = if hour_of(from) == from {
            from
        } else {
            hour_of(from) + chrono::Duration::hours(1)
        };
        let h2 = hour_of(to);
        let mut parts = Vec::new();
        // Minute buckets need the per-minute table (ranges of 2 days at most).
        if h1 < h2 && bucket != Some(Bucket::Minute) {
            // Hours summed per day by the database when hours are not asked for.
            let hours = if bucket == Some(Bucket::Hour) {
                &self.sql.stats_range_hourly
            } else {
                &self.sql.stats_range_daily
            };
            parts.push((&self.sql.stats_range, from, h1));
            parts.push((hours, h1, h2));
            parts.push((&self.sql.stats_range, h2, to));
        } else {
            parts.push((&self.sql.stats_range, from, to));
        }
        let mut rows: Vec<Row> = Vec::new();
        for (s, a, b) in parts {
            if a >= b {
                continue;
            }
            let got: Vec<Row> = with_pool!(self, |pool| bound!(
                sqlx::query_as(&s.sql),
                s,
                [format_ts(a), format_ts(b)]
            )
            .fetch_all(pool)
            .await?);
            rows.extend(got);
        }
        // Group here: a range reads at most 2 × 59 minutes and its hours
        // (a few thousand rows for 30 days of busy traffic).
        let mut out: BTreeMap<GroupKey, StatRow> = BTreeMap::new();
        for (b, channel, provider, event, code, count, segments, latency_ms, lat) in rows {
            let bucket_at = bucket.and_then(|k| parse_ts(&b).map(|t| k.truncate(t)));
            let key = (
                bucket_at,
                groups.channel.then(|| channel.clone()),
                groups.provider.then(|| provider.clone()),
                groups.event.then(|| event.clone()),
                groups.code.then(|| code.clone()),
            );
            let row = out.entry(key).or_insert_with(|| StatRow {
                bucket: bucket_at,
                channel: groups.channel.then_some(channel),
                provider: groups.provider.then_some(provider),
                event: groups.event.then_some(event),
                code: groups.code.then_some(code),
                count: 0,
                segments: 0,
                latency_ms: 0,
                latency_histogram: vec![0; BUCKETS],
            });
            row.count += count;
            row.segments += segments;
            row.latency_ms += latency_ms;
            for (i, n) in histogram_values(&lat).enumerate().take(BUCKETS) {
                row.latency_histogram[i] += n;
            }
        }
        Ok(out.into_values().collect())
    }
}

/// The numbers of `[1,2,3]` (SQLite's JSON) or `{1,2,3}` (PostgreSQL's
/// array text).
fn histogram_values(text: &str) -> impl Iterator<Item = i64> + '_ {
    text.trim_matches(|c| matches!(c, '[' | ']' | '{' | '}'))
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
}

#[cfg(test)]
fn parse_histogram(text: &str) -> Vec<i64> {
    histogram_values(text).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ev(sec: u32, event: &str, ms: Option<u64>) -> StatEvent {
        StatEvent {
            at: Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, sec).unwrap(),
            channel: "sms".into(),
            provider: "twilio".into(),
            event: event.into(),
            code: String::new(),
            latency_ms: ms,
            segments: 1,
        }
    }

    #[test]
    fn events_sum_per_minute_and_key() {
        let rows = aggregate(&[
            ev(1, "sent", Some(3)),
            ev(59, "sent", Some(700)),
            ev(2, "permanent", Some(40)),
        ]);
        assert_eq!(rows.len(), 2);
        let sent = rows.iter().find(|r| r.event == "sent").unwrap();
        assert_eq!((sent.count, sent.segments, sent.latency_ms), (2, 2, 703));
        assert_eq!(sent.bucket, "2026-11-25T12:00:00.000Z");
        assert_eq!(sent.lat[0], 1, "3 ms is in the first bucket");
        assert_eq!(sent.lat[7], 1, "700 ms is under 1 s");
    }

    #[test]
    fn percentiles_from_the_histogram() {
        let mut h = vec![0i64; BUCKETS];
        h[1] = 50; // <= 10 ms
        h[5] = 45; // <= 250 ms
        h[9] = 5; // <= 5 s
        assert_eq!(percentile_ms(&h, 0.5), Some(10));
        assert_eq!(percentile_ms(&h, 0.95), Some(250));
        assert_eq!(percentile_ms(&h, 0.99), Some(5000));
        assert_eq!(percentile_ms(&[0; BUCKETS], 0.5), None);
        assert_eq!(parse_histogram("{1,2,3}"), vec![1, 2, 3]);
        assert_eq!(parse_histogram("[1, 2]"), vec![1, 2]);
    }
}
