//! The development provider: records each message and reports success.
//! Used for every channel whose provider is not configured.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{BoxFuture, MessageView, Provider, Receipt, SendError};
use crate::clock::{Clock, SystemClock};
use crate::domain::OutgoingMessage;

pub struct LogProvider {
    outbox: Option<(PathBuf, Mutex<File>)>,
    clock: Arc<dyn Clock>,
}

impl LogProvider {
    /// Log only.
    pub fn new() -> Self {
        LogProvider {
            outbox: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// Also append one JSON line per message to `path` (the `LOG_OUTBOX`
    /// file, created readable by its owner only: it holds customers'
    /// numbers and messages), stamped by `clock`.
    pub fn with_outbox(path: &Path, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        Ok(LogProvider {
            outbox: Some((path.to_owned(), Mutex::new(file))),
            clock,
        })
    }
}

impl Default for LogProvider {
    fn default() -> Self {
        LogProvider::new()
    }
}

impl Provider for LogProvider {
    fn name(&self) -> &'static str {
        super::LOG
    }

    fn send<'a>(&'a self, msg: &'a OutgoingMessage) -> BoxFuture<'a, Result<Receipt, SendError>> {
        Box::pin(async move {
            let c = &msg.content;
            tracing::info!(
                message_id = msg.id,
                channel = %msg.channel(),
                recipient = %msg.recipient.masked(),
                subject = c.subject.as_deref().unwrap_or(""),
                body = c.body.as_deref().unwrap_or(""),
                has_html = c.html_body.is_some(),
                "log provider: message recorded, not sent"
            );
            if let Some((path, file)) = &self.outbox {
                #[derive(serde::Serialize)]
                struct Line<'a> {
                    #[serde(flatten)]
                    message: MessageView<'a>,
                    at: String,
                }
                let line = serde_json::to_value(Line {
                    message: MessageView::of(msg),
                    at: crate::clock::format_ts(self.clock.now()),
                })
                .expect("outbox line serializes");
                let mut bytes = line.to_string().into_bytes();
                bytes.push(b'\n');
                // One write per line on an O_APPEND file: lines from several
                // processes never interleave.
                let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
                f.write_all(&bytes).map_err(|e| {
                    SendError::retryable(
                        "outbox_write",
                        format!("could not write LOG_OUTBOX {}: {e}", path.display()),
                    )
                })?;
            }
            Ok(Receipt::new(format!("log-{}-{}", msg.id, msg.attempt)))
        })
    }
}
