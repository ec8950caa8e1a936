//! Retention: `herald prune` and `RETENTION_DAYS`.
//!
//! Finished messages (sent, failed, cancelled) created before a cutoff are
//! deleted with their attempts and receipts, in batches of [`BATCH`], each
//! in a short transaction that skips rows another transaction holds; a
//! pending, processing or scheduled message is never touched. Finished
//! status-webhook deliveries, template versions nothing uses any more and
//! expired idempotency keys go the same way. An archive (JSON lines,
//! gzip-compressed when the file name ends in `.gz`) receives every message
//! before it is deleted.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::processor::Shutdown;
use crate::store::{ArchivedMessage, PruneCounts, Store, IDEMPOTENCY_KEY_HOURS};

/// Messages deleted per transaction.
pub const BATCH: u32 = 500;

/// How often a worker with `RETENTION_DAYS` prunes (one worker at a time).
pub const INTERVAL: Duration = Duration::from_secs(3600);

/// The pause between batches of the hourly pruning: at most 2,500 rows a
/// second, gentle on a database that is also draining.
pub const BACKGROUND_PAUSE: Duration = Duration::from_millis(200);

/// The lease that elects the one worker that prunes.
const LEASE: &str = "retention";

/// What to prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Finished messages created longer ago than this go.
    pub older_than: chrono::Duration,
    /// Count only.
    pub dry_run: bool,
    /// Messages per transaction.
    pub batch: u32,
    /// A pause between batches, leaving the database to the drain.
    pub pause: Duration,
    /// The pause between batches while messages are due (waiting to be
    /// sent): retention gives way to the drain. At least `pause`.
    pub busy_pause: Duration,
}

impl PruneOptions {
    pub fn new(older_than: chrono::Duration) -> PruneOptions {
        PruneOptions {
            older_than,
            dry_run: false,
            batch: BATCH,
            pause: Duration::from_millis(20),
            busy_pause: BACKGROUND_PAUSE,
        }
    }
}

/// `90d`, `12h`, `30m` (or a bare number of days) as a duration.
pub fn parse_age(s: &str) -> Result<chrono::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "d"),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not an age such as 90d, 12h or 30m"))?;
    if n > 36_500 * 24 * 60 {
        return Err(format!("{s:?} is longer than a hundred years"));
    }
    match unit {
        "d" => Ok(chrono::Duration::days(n)),
        "h" => Ok(chrono::Duration::hours(n)),
        "m" => Ok(chrono::Duration::minutes(n)),
        _ => Err(format!(
            "{s:?}: the unit must be d (days), h (hours) or m (minutes), e.g. 90d"
        )),
    }
}

/// Where deleted messages are kept: one JSON object per line (the message
/// as the API shows it, with `attempts` and `events`), appended. A name
/// ending in `.gz` is written through the system's `gzip` (each run adds a
/// gzip member; `zcat` reads them all).
pub struct Archive {
    path: PathBuf,
    sink: Sink,
    written: u64,
}

enum Sink {
    Plain(std::fs::File),
    Gzip(std::process::Child),
}

impl Archive {
    pub fn open(path: &Path) -> std::io::Result<Archive> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let sink = if path.extension().is_some_and(|e| e == "gz") {
            let child = std::process::Command::new("gzip")
                .arg("-c")
                .stdin(std::process::Stdio::piped())
                .stdout(file)
                .spawn()
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("could not run gzip for {}: {e}", path.display()))
                })?;
            Sink::Gzip(child)
        } else {
            Sink::Plain(file)
        };
        Ok(Archive {
            path: path.to_owned(),
            sink,
            written: 0,
        })
    }

    /// Append `rows`, and make sure they reached the file (or gzip) before
    /// returning: only then may they be deleted.
    pub fn write(&mut self, rows: &[ArchivedMessage]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for r in rows {
            serde_json::to_writer(&mut buf, r).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        match &mut self.sink {
            Sink::Plain(f) => {
                f.write_all(&buf)?;
                f.sync_data()?;
            }
            Sink::Gzip(child) => {
                let stdin = child
                    .stdin
                    .as_mut()
                    .ok_or_else(|| std::io::Error::other("gzip closed"))?;
                stdin.write_all(&buf)?;
                stdin.flush()?;
            }
        }
        self.written += rows.len() as u64;
        Ok(())
    }

    /// Close the archive (gzip: wait for it to finish the file).
    pub fn finish(self) -> std::io::Result<u64> {
        match self.sink {
            Sink::Plain(f) => f.sync_all()?,
            Sink::Gzip(mut child) => {
                drop(child.stdin.take());
                let status = child.wait()?;
                if !status.success() {
                    return Err(std::io::Error::other(format!(
                        "gzip failed writing {} ({status})",
                        self.path.display()
                    )));
                }
            }
        }
        Ok(self.written)
    }
}

/// Prune what `opts` says at `now`; a dry run only counts. Stops early (with
/// what it deleted so far) when `shutdown` fires.
pub async fn prune(
    store: &Store,
    now: DateTime<Utc>,
    opts: &PruneOptions,
    mut archive: Option<&mut Archive>,
    shutdown: Option<&Shutdown>,
) -> anyhow::Result<PruneCounts> {
    let before = now - opts.older_than;
    let keys_before = now - chrono::Duration::hours(IDEMPOTENCY_KEY_HOURS);
    if opts.dry_run {
        return Ok(store.prunable(before, keys_before).await?);
    }
    let stopping = || shutdown.is_some_and(|s| s.is_triggered());
    let mut counts = PruneCounts::default();
    loop {
        if stopping() {
            return Ok(counts);
        }
        let ids = store.prune_candidates(before, opts.batch).await?;
        if ids.is_empty() {
            break;
        }
        if let Some(a) = archive.as_deref_mut() {
            let rows = store.archive_rows(&ids).await?;
            a.write(&rows)?;
        }
        let deleted = store.delete_finished(&ids).await?;
        counts.messages += deleted.len() as u64;
        if deleted.is_empty() {
            // Every candidate is busy (or was re-opened): next time.
            break;
        }
        tokio::time::sleep(pause_for(store, opts).await).await;
    }
    loop {
        if stopping() {
            return Ok(counts);
        }
        let n = store.prune_deliveries(before, opts.batch).await?;
        counts.webhook_deliveries += n;
        if n < u64::from(opts.batch) {
            break;
        }
        tokio::time::sleep(pause_for(store, opts).await).await;
    }
    counts.template_versions = store.prune_template_versions(before).await?;
    counts.idempotency_keys = store.prune_idempotency_keys(keys_before).await?;
    Ok(counts)
}

/// The pause before the next batch: `busy_pause` while a message is due
/// (one look at the open rows' index), `pause` when the queue is idle.
pub async fn pause_for(store: &Store, opts: &PruneOptions) -> Duration {
    if opts.busy_pause <= opts.pause {
        return opts.pause;
    }
    match store.oldest_due(Utc::now()).await {
        Ok(None) => opts.pause,
        // Due work, or the database could not say: give way.
        Ok(Some(_)) | Err(_) => opts.busy_pause,
    }
}

/// Prunes every [`INTERVAL`] with `RETENTION_DAYS`, in one worker at a time
/// (a lease in the database elects it; another takes over if it stops).
pub struct RetentionRunner {
    store: Store,
    clock: Arc<dyn Clock>,
    days: u32,
    owner: String,
}

impl RetentionRunner {
    pub fn new(store: Store, clock: Arc<dyn Clock>, days: u32, owner: String) -> RetentionRunner {
        RetentionRunner {
            store,
            clock,
            days,
            owner,
        }
    }

    /// One round: prune if this worker holds the lease. `None` when another
    /// worker does.
    pub async fn tick(&self, shutdown: Option<&Shutdown>) -> anyhow::Result<Option<PruneCounts>> {
        let now = self.clock.now();
        let until = now + chrono::Duration::from_std(INTERVAL * 2).expect("interval fits");
        if !self.store.take_lease(LEASE, &self.owner, now, until).await? {
            return Ok(None);
        }
        let mut opts = PruneOptions::new(chrono::Duration::days(i64::from(self.days)));
        opts.pause = BACKGROUND_PAUSE;
        Ok(Some(prune(&self.store, now, &opts, None, shutdown).await?))
    }

    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        // Let the processor start first.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = shutdown.wait() => return,
        }
        loop {
            match self.tick(Some(&shutdown)).await {
                Ok(Some(c)) if c != PruneCounts::default() => tracing::info!(
                    days = self.days,
                    messages = c.messages,
                    webhook_deliveries = c.webhook_deliveries,
                    template_versions = c.template_versions,
                    idempotency_keys = c.idempotency_keys,
                    "retention: pruned"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention: could not prune"),
            }
            tokio::select! {
                _ = tokio::time::sleep(INTERVAL) => {}
                _ = shutdown.wait() => return,
            }
        }
    }
}

/// Index the metadata of messages older than the metadata index (an
/// upgrade that `herald migrate` did not finish), in the background, a
/// batch every 200 ms, until done or `shutdown`. Several workers may run
/// it at once; they repeat each other's work, never corrupt it.
pub async fn backfill_metadata(store: Store, shutdown: Shutdown) {
    let mut at = match store.metadata_backfill().await {
        Ok(Some(b)) if !b.complete() => b,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, "metadata index: could not read the backfill's progress");
            return;
        }
    };
    tracing::info!(
        from_id = at.done_id + 1,
        to_id = at.until_id,
        "metadata index: indexing older messages in the background"
    );
    let mut failures = 0;
    while !at.complete() {
        match store.backfill_metadata_step(at).await {
            Ok(next) => {
                at = next;
                failures = 0;
            }
            Err(e) if failures < 10 => {
                failures += 1;
                tracing::warn!(error = %e, "metadata index: a batch failed; trying again");
            }
            Err(e) => {
                tracing::error!(error = %e, "metadata index: giving up after 10 failed batches; run `herald migrate`");
                return;
            }
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(BACKGROUND_PAUSE) => {}
        }
    }
    tracing::info!("metadata index: older messages indexed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_their_unit() {
        assert_eq!(parse_age("90d"), Ok(chrono::Duration::days(90)));
        assert_eq!(parse_age("90"), Ok(chrono::Duration::days(90)));
        assert_eq!(parse_age("12h"), Ok(chrono::Duration::hours(12)));
        assert_eq!(parse_age("30m"), Ok(chrono::Duration::minutes(30)));
        assert!(parse_age("3w").unwrap_err().contains("unit"));
        assert!(parse_age("soon").unwrap_err().contains("90d"));
        assert!(parse_age("99999999999d").is_err());
    }
}
