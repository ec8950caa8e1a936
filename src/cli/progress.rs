//! `herald process` on a terminal: one status line on stderr, redrawn four
//! times a second (sent, failed, retrying, the rate, and what is left),
//! cleared when a log line is written and at the end. Nothing when stderr
//! is not a terminal or with `--quiet`.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::processor::{ProcessorStats, RunSummary};
use herald::store::Store;

/// How often the line is redrawn, and how often what is left is counted.
const REDRAW: Duration = Duration::from_millis(250);
const RECOUNT: Duration = Duration::from_secs(2);

pub(super) struct Progress {
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Start drawing, if stderr is a terminal.
    pub(super) fn start(stats: Arc<ProcessorStats>, store: Store) -> Option<Progress> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        herald::telemetry::set_status_line(true);
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let first = stats.summary();
            let mut rate = Rate::default();
            let mut left: Option<i64> = None;
            let mut counted: Option<Instant> = None;
            loop {
                if counted.is_none_or(|c| c.elapsed() >= RECOUNT) {
                    counted = Some(Instant::now());
                    left = store.open_counts().await.ok().map(|counts| {
                        counts
                            .iter()
                            .filter(|c| c.status == "pending" || c.status == "processing")
                            .map(|c| c.count)
                            .sum()
                    });
                }
                let now = stats.summary().since(first);
                let per_sec = rate.update(now.sent + now.failed, start.elapsed());
                let line = status_line(&now, per_sec, left);
                draw(&line);
                tokio::time::sleep(REDRAW).await;
            }
        });
        Some(Progress { task })
    }

    /// Stop drawing and clear the line.
    pub(super) fn finish(self) {
        self.task.abort();
        herald::telemetry::set_status_line(false);
        draw("");
    }
}

fn draw(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{line}");
    let _ = err.flush();
}

/// Messages per second over the last few seconds.
#[derive(Default)]
struct Rate {
    samples: std::collections::VecDeque<(Duration, u64)>,
}

impl Rate {
    fn update(&mut self, done: u64, at: Duration) -> f64 {
        self.samples.push_back((at, done));
        while self.samples.len() > 2 && at - self.samples[0].0 > Duration::from_secs(3) {
            self.samples.pop_front();
        }
        let (t0, d0) = self.samples[0];
        let secs = (at - t0).as_secs_f64();
        if secs > 0.0 {
            (done - d0) as f64 / secs
        } else {
            0.0
        }
    }
}

fn status_line(s: &RunSummary, per_sec: f64, left: Option<i64>) -> String {
    let mut line = format!(
        "sent {} · failed {} · retrying {} · {:.0} msg/s",
        thousands(s.sent),
        thousands(s.failed),
        thousands(s.retried),
        per_sec
    );
    if let Some(left) = left {
        line.push_str(&format!(" · {} open", thousands(left.max(0) as u64)));
        if per_sec >= 1.0 && left > 0 {
            line.push_str(&format!(" (about {}s left)", (left as f64 / per_sec).ceil() as u64));
        }
    }
    line
}

/// 1234567 → "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_reads_well() {
        let s = RunSummary {
            sent: 1_234_567,
            failed: 3,
            retried: 12,
            ..RunSummary::default()
        };
        assert_eq!(
            status_line(&s, 20_000.0, Some(40_000)),
            "sent 1,234,567 · failed 3 · retrying 12 · 20000 msg/s · 40,000 open (about 2s left)"
        );
        assert_eq!(
            status_line(&RunSummary::default(), 0.0, None),
            "sent 0 · failed 0 · retrying 0 · 0 msg/s"
        );
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
    }

    #[test]
    fn the_rate_is_over_the_last_seconds() {
        let mut r = Rate::default();
        assert_eq!(r.update(0, Duration::ZERO), 0.0);
        assert_eq!(r.update(500, Duration::from_millis(500)), 1000.0);
        assert_eq!(r.update(1000, Duration::from_secs(1)), 1000.0);
        // Old samples drop out: nothing more for 4 s reads as a slowdown.
        r.update(1000, Duration::from_secs(5));
        assert_eq!(r.update(1000, Duration::from_millis(5250)), 0.0);
    }
}
