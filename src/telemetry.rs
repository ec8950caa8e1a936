//! Logging: readable text by default, JSON lines with `LOG_FORMAT=json`.
//! Always to stderr, so command output on stdout stays clean.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// A status line is on the terminal (`herald process` on a TTY): each log
/// line first clears it, and the status line is drawn again below.
static STATUS_LINE: AtomicBool = AtomicBool::new(false);

/// Say whether a status line is being drawn on stderr.
pub fn set_status_line(on: bool) {
    STATUS_LINE.store(on, Ordering::Relaxed);
}

/// Stderr, clearing the status line before a log line.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        if STATUS_LINE.load(Ordering::Relaxed) {
            err.write_all(b"\r\x1b[2K")?;
        }
        err.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Install the global subscriber. `RUST_LOG` overrides `level`.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{level},sqlx=warn")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| Stderr);
    let result = match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
