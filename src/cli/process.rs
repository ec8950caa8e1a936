//! `herald process [--watch]`: the processor on its own (cron, PM2, systemd).

use anyhow::Context;

use herald::app;
use herald::config::Config;
use herald::processor::{Mode, Shutdown};

#[derive(clap::Args)]
pub(crate) struct ProcessArgs {
    /// Keep running, picking up new messages as they arrive, until SIGINT/SIGTERM.
    #[arg(long)]
    watch: bool,
    /// Print nothing but warnings and errors (for cron).
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

pub(super) async fn run(config: Config, args: ProcessArgs) -> anyhow::Result<()> {
    app::announce_providers(&config);
    let store = app::open_store(&config).await?;
    let processor = app::build_processor(&config, store.clone(), &app::Overrides::default())?;
    let store_for_progress = store.clone();
    let (handle, shutdown) = Shutdown::new();
    tokio::spawn(async move {
        super::wait_for_signal().await;
        tracing::info!("shutting down: finishing sends in flight, handing back the rest");
        handle.trigger();
    });
    let mode = if args.watch { Mode::Watch } else { Mode::Once };
    // A worker alone (no `serve`) evaluates alerts too; one worker at a time does.
    let alerts = args.watch.then(|| {
        let runner = std::sync::Arc::new(herald::alerts::AlertRunner::new(
            store,
            std::sync::Arc::new(herald::clock::SystemClock),
            config.alerts.clone(),
            processor.config().worker_id.clone(),
        ));
        tokio::spawn(runner.run(shutdown.clone()))
    });
    if args.watch {
        tokio::spawn(herald::retention::backfill_metadata(
            store_for_progress.clone(),
            shutdown.clone(),
        ));
    }
    // Retention (RETENTION_DAYS): one worker at a time prunes, hourly.
    let retention = match (args.watch, config.retention_days) {
        (true, Some(days)) => Some(tokio::spawn(
            std::sync::Arc::new(herald::retention::RetentionRunner::new(
                store_for_progress.clone(),
                std::sync::Arc::new(herald::clock::SystemClock),
                days,
                processor.config().worker_id.clone(),
            ))
            .run(shutdown.clone()),
        )),
        _ => None,
    };
    // Status webhooks to the POS: delivered alongside, in their own slots.
    let dispatcher = app::build_dispatcher(
        &config,
        store_for_progress.clone(),
        &app::Overrides::default(),
        &processor.config().worker_id,
    );
    let outbound = args
        .watch
        .then(|| tokio::spawn(dispatcher.clone().run(shutdown.clone())));
    tracing::info!(worker = %processor.config().worker_id, watch = args.watch, "processor started");
    let started = std::time::Instant::now();
    let progress = (!args.quiet)
        .then(|| super::progress::Progress::start(processor.stats(), store_for_progress))
        .flatten();
    let summary = processor.run(mode, shutdown).await;
    if let Some(p) = progress {
        p.finish();
    }
    let summary = summary.context("processing failed")?;
    match outbound {
        Some(o) => {
            let _ = o.await;
        }
        // Once: deliver the status webhooks due now (retries due later are
        // left for the next run).
        None => {
            let d = dispatcher.drain().await;
            if d.delivered + d.retrying + d.failed > 0 {
                tracing::info!(
                    delivered = d.delivered,
                    retrying = d.retrying,
                    failed = d.failed,
                    "status webhooks"
                );
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if let Some(a) = alerts {
        let _ = a.await;
    }
    if let Some(r) = retention {
        let _ = r.await;
    }
    tracing::info!(
        sent = summary.sent,
        failed = summary.failed,
        retrying = summary.retried,
        released = summary.released,
        "processor stopped"
    );
    if !args.quiet {
        let done = summary.sent + summary.failed;
        say!(
            "sent {}, failed {}, retrying later {} ({} in {:.1}s, {:.0} msg/s)",
            summary.sent,
            summary.failed,
            summary.retried,
            done,
            secs,
            if secs > 0.0 { done as f64 / secs } else { 0.0 }
        );
    }
    Ok(())
}
