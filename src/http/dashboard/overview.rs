//! The overview: the queue now, and what happened over a range, from the
//! statistics rollup (never a scan of `notification_messages`).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::chart::{stacked_bars, Bar};
use super::{page, Signed};
use crate::http::AppState;
use crate::store::{percentile_ms, Bucket, StatGroups, StatRow};

/// The ranges offered, and the bucket each is drawn in.
const RANGES: [(&str, i64, Bucket); 4] = [
    ("1h", 60, Bucket::Minute),
    ("24h", 24 * 60, Bucket::Hour),
    ("7d", 7 * 24 * 60, Bucket::Hour),
    ("30d", 30 * 24 * 60, Bucket::Day),
];

#[derive(Debug, Deserialize)]
pub(super) struct OverviewQuery {
    range: Option<String>,
}

#[derive(Debug, Serialize)]
struct Queue {
    depth: i64,
    oldest: Option<String>,
    /// The oldest due message has waited over a minute.
    stale: bool,
}

#[derive(Debug, Serialize, Default)]
struct ChannelTotals {
    channel: String,
    sent: i64,
    failed: i64,
    delivered: i64,
    delivery_rate: String,
    segments: i64,
}

#[derive(Debug, Serialize)]
struct ProviderHealth {
    provider: String,
    calls: i64,
    success_rate: String,
    /// Delivered (from receipts) / sent.
    delivery_rate: String,
    /// `ok`, `warn` or `bad`.
    health: &'static str,
    latency: String,
    rate_limited: i64,
    last_error: Option<String>,
    last_error_at: String,
    credentials_failing: bool,
}

#[derive(Debug, Serialize)]
struct TopError {
    code: String,
    channel: String,
    count: i64,
    href: String,
}

fn is_call(event: &str) -> bool {
    !event.starts_with("delivery:") && event != "failed" && event != "webhook_rejected"
}

fn percent(part: i64, whole: i64) -> String {
    if whole == 0 {
        "—".into()
    } else {
        format!("{:.1} %", part as f64 * 100.0 / whole as f64)
    }
}

fn age(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

/// Totals per channel over the range.
fn totals(rows: &[StatRow]) -> Vec<ChannelTotals> {
    let mut by: BTreeMap<String, ChannelTotals> = BTreeMap::new();
    for r in rows {
        let channel = r.channel.clone().unwrap_or_default();
        if channel.is_empty() {
            continue;
        }
        let t = by.entry(channel.clone()).or_insert_with(|| ChannelTotals {
            channel,
            ..ChannelTotals::default()
        });
        match r.event.as_deref().unwrap_or("") {
            "sent" | "reconciled" => {
                t.sent += r.count;
                t.segments += r.segments;
            }
            "failed" => t.failed += r.count,
            "delivery:delivered" | "delivery:read" | "delivery:opened" | "delivery:clicked" => t.delivered += r.count,
            _ => {}
        }
    }
    by.into_values()
        .map(|mut t| {
            t.delivery_rate = if t.delivered == 0 {
                "—".into()
            } else {
                percent(t.delivered, t.sent)
            };
            t
        })
        .collect()
}

impl super::super::AppState {
    fn credentials_failing(&self) -> Vec<String> {
        self.processor
            .as_ref()
            .map(|p| p.metrics.credentials_failing())
            .unwrap_or_default()
    }
}

pub(super) async fn overview(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<OverviewQuery>,
) -> Response {
    let (range, minutes, bucket) = RANGES
        .iter()
        .find(|(name, _, _)| Some(*name) == q.range.as_deref())
        .copied()
        .unwrap_or(RANGES[1]);
    let now = state.clock.now();
    let to = now + Duration::minutes(1);
    let from = bucket.truncate(now - Duration::minutes(minutes));
    let store = &state.store;
    let all = StatGroups {
        channel: true,
        provider: true,
        event: true,
        code: true,
    };
    let (rows, series, open, oldest, failures) = tokio::join!(
        store.stats(from, to, None, all),
        store.stats(
            from,
            to,
            Some(bucket),
            StatGroups {
                event: true,
                ..StatGroups::default()
            }
        ),
        store.open_counts(),
        store.oldest_due(now),
        store.recent_failures(),
    );
    let mut problems = Vec::new();
    let mut ok = |what: &str, e: &crate::store::StoreError| problems.push(format!("{what}: {e}"));
    let rows = rows.unwrap_or_else(|e| {
        ok("statistics", &e);
        Vec::new()
    });
    let series = series.unwrap_or_else(|e| {
        ok("throughput", &e);
        Vec::new()
    });
    let open = open.unwrap_or_else(|e| {
        ok("queue", &e);
        Vec::new()
    });
    let oldest: Option<DateTime<Utc>> = oldest.unwrap_or_else(|e| {
        ok("oldest due", &e);
        None
    });
    let failures = failures.unwrap_or_default();

    let queue = Queue {
        depth: open.iter().map(|c| c.count).sum(),
        oldest: oldest.map(|t| age(now - t)),
        stale: oldest.is_some_and(|t| now - t > Duration::minutes(1)),
    };
    let totals = totals(&rows);
    // The chart: one bar per bucket, including empty ones.
    let mut bars: BTreeMap<DateTime<Utc>, [i64; 3]> = BTreeMap::new();
    let step = match bucket {
        Bucket::Minute => Duration::minutes(1),
        Bucket::Hour => Duration::hours(1),
        Bucket::Day => Duration::days(1),
    };
    let mut t = from;
    while t < to {
        bars.insert(t, [0; 3]);
        t += step;
    }
    for r in &series {
        let Some(b) = r.bucket else { continue };
        let slot = match r.event.as_deref().unwrap_or("") {
            "sent" | "reconciled" => 0,
            "retryable" | "unknown" | "rate_limited" | "unauthorized" => 1,
            "failed" => 2,
            _ => continue,
        };
        bars.entry(b).or_insert([0; 3])[slot] += r.count;
    }
    let label_format = match bucket {
        Bucket::Minute | Bucket::Hour => "%H:%M",
        Bucket::Day => "%b %d",
    };
    let bars: Vec<Bar> = bars
        .into_iter()
        .map(|(t, values)| Bar {
            label: t.format(label_format).to_string(),
            values,
        })
        .collect();
    let chart = minijinja::Value::from_safe_string(stacked_bars(&bars));

    // Providers: calls, success, latency, slow-downs, last error.
    let failing = state.credentials_failing();
    let mut providers: BTreeMap<String, (i64, i64, i64, Vec<i64>)> = BTreeMap::new();
    for r in rows.iter().filter(|r| is_call(r.event.as_deref().unwrap_or(""))) {
        let p = providers.entry(r.provider.clone().unwrap_or_default()).or_insert((
            0,
            0,
            0,
            vec![0; r.latency_histogram.len()],
        ));
        p.0 += r.count;
        match r.event.as_deref() {
            Some("sent" | "reconciled") => p.1 += r.count,
            Some("rate_limited") => p.2 += r.count,
            _ => {}
        }
        for (i, n) in r.latency_histogram.iter().enumerate() {
            if let Some(slot) = p.3.get_mut(i) {
                *slot += n;
            }
        }
    }
    let mut delivered: BTreeMap<String, i64> = BTreeMap::new();
    for r in rows.iter().filter(|r| {
        matches!(
            r.event.as_deref(),
            Some("delivery:delivered" | "delivery:read" | "delivery:opened" | "delivery:clicked")
        )
    }) {
        *delivered.entry(r.provider.clone().unwrap_or_default()).or_default() += r.count;
    }
    let providers: Vec<ProviderHealth> = providers
        .into_iter()
        .map(|(provider, (calls, good, slowed, hist))| {
            let rate = if calls == 0 { 1.0 } else { good as f64 / calls as f64 };
            let last = failures.iter().find(|(p, _, _)| *p == provider);
            let latency = match (percentile_ms(&hist, 0.5), percentile_ms(&hist, 0.95)) {
                (Some(a), Some(b)) => format!("≤{a} / ≤{b} ms"),
                _ => "—".into(),
            };
            ProviderHealth {
                credentials_failing: failing.contains(&provider),
                success_rate: percent(good, calls),
                delivery_rate: match delivered.get(&provider) {
                    Some(d) if *d > 0 => percent(*d, good),
                    _ => "—".into(),
                },
                health: if rate >= 0.95 {
                    "ok"
                } else if rate >= 0.8 {
                    "warn"
                } else {
                    "bad"
                },
                latency,
                rate_limited: slowed,
                last_error: last.and_then(|(_, e, _)| e.as_ref()).map(|e| {
                    format!(
                        "{} {}",
                        e.get("code").and_then(|c| c.as_str()).unwrap_or(""),
                        e.get("message").and_then(|c| c.as_str()).unwrap_or("")
                    )
                }),
                last_error_at: super::when(last.and_then(|(_, _, at)| *at)),
                calls,
                provider,
            }
        })
        .collect();

    // Top error codes of messages that failed.
    let mut errors: Vec<TopError> = rows
        .iter()
        .filter(|r| r.event.as_deref() == Some("failed"))
        .fold(BTreeMap::<(String, String), i64>::new(), |mut m, r| {
            *m.entry((
                r.code.clone().unwrap_or_default(),
                r.channel.clone().unwrap_or_default(),
            ))
            .or_default() += r.count;
            m
        })
        .into_iter()
        .map(|((code, channel), count)| TopError {
            href: format!(
                "/dashboard/messages?status=failed&channel={}&code={}",
                channel,
                form_urlencoded::byte_serialize(code.as_bytes()).collect::<String>()
            ),
            code,
            channel,
            count,
        })
        .collect();
    errors.sort_by(|a, b| b.count.cmp(&a.count).then(a.code.cmp(&b.code)));
    errors.truncate(10);

    let prices = &state.prices;
    let mut cost = 0.0;
    let mut priced = false;
    for t in &totals {
        let (price, units) = match t.channel.as_str() {
            "sms" => (prices.sms_per_segment, t.segments),
            "whatsapp" => (prices.whatsapp_per_message, t.sent),
            "email" => (prices.email_per_message, t.sent),
            _ => (None, 0),
        };
        if let Some(p) = price {
            cost += p * units as f64;
            priced = true;
        }
    }
    let flash = (!problems.is_empty()).then(|| problems.join("; "));
    page(
        &signed,
        "overview.html",
        "Overview",
        "overview",
        flash.and_then(super::Flash::error),
        minijinja::context! {
            range, ranges => RANGES.iter().map(|r| r.0).collect::<Vec<_>>(),
            bucket => match bucket { Bucket::Minute => "minute", Bucket::Hour => "hour", Bucket::Day => "day" },
            queue, open, totals, chart, providers, errors,
            cost => priced.then(|| format!("{cost:.2} {}", prices.currency)),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(Duration::seconds(5)), "5 s");
        assert_eq!(age(Duration::seconds(600)), "10 min");
        assert_eq!(age(Duration::hours(5)), "5 h");
        assert_eq!(percent(1, 3), "33.3 %");
        assert_eq!(percent(1, 0), "—");
    }
}
