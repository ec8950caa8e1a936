//! `herald prune --older-than 90d [--dry-run] [--archive FILE.jsonl[.gz]]`:
//! delete finished messages (sent, failed, cancelled) and the old rows
//! around them, in small batches that never touch an open message.

use anyhow::Context;

use herald::config::Config;
use herald::retention::{parse_age, prune, Archive, PruneOptions};

#[derive(clap::Args)]
pub(crate) struct PruneArgs {
    /// Delete finished messages created longer ago than this: 90d, 12h, 30m
    /// (default: RETENTION_DAYS).
    #[arg(long, value_parser = parse_age)]
    older_than: Option<chrono::Duration>,
    /// Count what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Append every message (with its attempts and receipts) to this file
    /// as a JSON line before deleting it; gzip-compressed if it ends in .gz.
    #[arg(long, value_name = "FILE")]
    archive: Option<std::path::PathBuf>,
    /// Milliseconds to wait between batches of 500 while no message is
    /// waiting to be sent.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pause_ms: u64,
    /// Milliseconds to wait between batches while messages are due: the
    /// prune gives way to the drain (0: never; at least --pause-ms).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    busy_pause_ms: u64,
}

pub(crate) async fn run(config: Config, args: PruneArgs) -> anyhow::Result<()> {
    let older_than = match (args.older_than, config.retention_days) {
        (Some(age), _) => age,
        (None, Some(days)) => chrono::Duration::days(i64::from(days)),
        (None, None) => anyhow::bail!("say how old: herald prune --older-than 90d (or set RETENTION_DAYS)"),
    };
    let store = herald::app::open_store(&config).await?;
    let mut opts = PruneOptions::new(older_than);
    opts.dry_run = args.dry_run;
    opts.pause = std::time::Duration::from_millis(args.pause_ms);
    opts.busy_pause = std::time::Duration::from_millis(args.busy_pause_ms);
    let mut archive = match (&args.archive, args.dry_run) {
        (Some(path), false) => Some(Archive::open(path).with_context(|| format!("cannot open {}", path.display()))?),
        _ => None,
    };
    let now = chrono::Utc::now();
    let result = prune(&store, now, &opts, archive.as_mut(), None).await;
    let archived = match archive {
        Some(a) => Some(a.finish()?),
        None => None,
    };
    let c = result?;
    let cutoff = herald::clock::format_ts(now - older_than);
    let verb = if args.dry_run { "would delete" } else { "deleted" };
    say!(
        "{verb} {} finished message(s) created before {cutoff} (with their attempts and receipts), {} webhook deliveries, {} old template version(s), {} expired idempotency key(s)",
        c.messages,
        c.webhook_deliveries,
        c.template_versions,
        c.idempotency_keys
    );
    if let (Some(n), Some(path)) = (archived, &args.archive) {
        say!("archived {n} message(s) to {}", path.display());
    }
    if args.dry_run {
        say!("dry run: nothing was deleted");
    }
    store.close().await;
    Ok(())
}
