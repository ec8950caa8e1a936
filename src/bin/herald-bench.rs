//! Throughput and latency benchmark for the queue and processor.
//!
//! Burns down N queued messages through a provider that does no I/O and
//! prints messages per second, for SQLite and PostgreSQL; then measures how
//! long a directly inserted row takes to be sent by a watching processor.
//!
//!     cargo run --release --bin herald-bench -- --messages 100000
//!
//! PostgreSQL: a database `herald_bench` is created (and dropped) on the
//! server named by `--pg-url` (default postgres://postgres@127.0.0.1:5432/test).

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use herald::clock::{system_random, SystemClock};
use herald::config::DatabaseUrl;
use herald::domain::OutgoingMessage;
use herald::processor::{default_worker_id, Mode, Processor, ProcessorConfig, Shutdown};
use herald::providers::{BoxFuture, Provider, Providers, Receipt, SendError};
use herald::ratelimit::ChannelLimits;
use herald::store::Store;

#[derive(Parser)]
struct Args {
    /// Messages queued before the clock starts.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// sqlite, postgres or both
    #[arg(long, default_value = "both")]
    backend: String,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg_url: String,
    /// Messages claimed per statement (BATCH_SIZE).
    #[arg(long, default_value_t = 500)]
    batch_size: u32,
    /// Concurrent processors (each with its own pool), as separate workers would be.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Single-message pick-up latency samples (0 to skip).
    #[arg(long, default_value_t = 50)]
    latency_samples: usize,
}

/// Accepts every message at once: measures Herald, not a provider.
struct Noop;

impl Provider for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }
    fn send<'a>(&'a self, msg: &'a OutgoingMessage) -> BoxFuture<'a, Result<Receipt, SendError>> {
        Box::pin(async move { Ok(Receipt::new(format!("noop-{}", msg.id))) })
    }
}

fn processor(store: Store, batch_size: u32, poll: Duration) -> Arc<Processor> {
    let mut cfg = ProcessorConfig::new(default_worker_id());
    cfg.batch_size = batch_size;
    for channel in herald::domain::Channel::ALL {
        cfg.limits.insert(
            channel,
            ChannelLimits {
                rate: 0.0,
                burst: 1,
                concurrency: 1000,
            },
        );
    }
    cfg.poll_interval = poll;
    Arc::new(Processor::new(
        store,
        Providers::all(Arc::new(Noop)),
        Arc::new(SystemClock),
        system_random(),
        cfg,
    ))
}

async fn fill(store: &Store, n: u64) -> anyhow::Result<()> {
    let sql = if store.backend_name() == "postgres" {
        format!(
            "INSERT INTO notification_messages (channel, recipient, body)
             SELECT 'sms', '+1415' || (2000000 + x)::text, 'bench ' || x FROM generate_series(1, {n}) AS x"
        )
    } else {
        format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n})
             INSERT INTO notification_messages (channel, recipient, body)
             SELECT 'sms', '+1415' || (2000000 + x), 'bench ' || x FROM c"
        )
    };
    store.execute_raw(&sql).await?;
    Ok(())
}

async fn bench(name: &str, url: &str, args: &Args) -> anyhow::Result<()> {
    let url = DatabaseUrl::parse(url).map_err(anyhow::Error::msg)?;
    let mut store = Store::connect(&url, 16).await?;
    store.migrate().await?;
    let t = Instant::now();
    fill(&store, args.messages).await?;
    println!("{name}: queued {} messages in {:.2?}", args.messages, t.elapsed());

    let start = Instant::now();
    let mut runs = Vec::new();
    for _ in 0..args.workers {
        let s = if args.workers == 1 {
            store.clone()
        } else {
            Store::connect(&url, 8).await?
        };
        let p = processor(s, args.batch_size, Duration::from_millis(50));
        runs.push(tokio::spawn(async move { p.run(Mode::Once, Shutdown::never()).await }));
    }
    let mut sent = 0;
    for r in runs {
        sent += r.await??.sent;
    }
    let secs = start.elapsed().as_secs_f64();
    let remaining: i64 = store
        .counts()
        .await?
        .iter()
        .filter(|c| c.status != "sent")
        .map(|c| c.count)
        .sum();
    println!(
        "{name}: sent {sent} in {secs:.2} s = {:.0} messages/s (batch {}, workers {}; {remaining} not sent)",
        sent as f64 / secs,
        args.batch_size,
        args.workers
    );

    if args.latency_samples > 0 {
        // A watching processor; rows inserted by plain SQL, as a POS would.
        let poll = if store.backend_name() == "postgres" {
            Duration::from_millis(1000)
        } else {
            Duration::from_millis(50)
        };
        let p = processor(store.clone(), args.batch_size, poll);
        let (handle, shutdown) = Shutdown::new();
        let run = tokio::spawn({
            let p = p.clone();
            async move { p.run(Mode::Watch, shutdown).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut samples = Vec::new();
        for i in 0..args.latency_samples {
            let t = Instant::now();
            store
                .execute_raw(&format!(
                    "INSERT INTO notification_messages (channel, recipient, body) VALUES ('sms', '+14152000000', 'latency {i}')"
                ))
                .await?;
            let id = store
                .list(&herald::store::ListFilter {
                    limit: 1,
                    ..Default::default()
                })
                .await?[0]
                .id;
            loop {
                if store.get(id).await?.status == "sent" {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            samples.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(fastrand::u64(5..30))).await;
        }
        handle.trigger();
        run.await??;
        samples.sort();
        let pct = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
        println!(
            "{name}: insert-to-sent latency over {} direct inserts (watch mode, poll {:?}): p50 {:.1?}, p95 {:.1?}, max {:.1?}",
            samples.len(),
            poll,
            pct(0.5),
            pct(0.95),
            samples[samples.len() - 1]
        );
    }
    store.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    herald::telemetry::init(herald::config::LogFormat::Text, "error");
    println!(
        "herald-bench: {} messages, {} CPU cores, release build: {}",
        args.messages,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        !cfg!(debug_assertions)
    );
    if matches!(args.backend.as_str(), "sqlite" | "both") {
        let dir = std::env::temp_dir().join(format!("herald-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let url = format!("sqlite://{}", dir.join("bench.db").display());
        let r = bench("sqlite", &url, &args).await;
        let _ = std::fs::remove_dir_all(&dir);
        r?;
    }
    if matches!(args.backend.as_str(), "postgres" | "both") {
        let admin = Store::connect(&DatabaseUrl::parse(&args.pg_url).map_err(anyhow::Error::msg)?, 2).await?;
        admin
            .execute_raw("DROP DATABASE IF EXISTS herald_bench WITH (FORCE)")
            .await?;
        admin.execute_raw("CREATE DATABASE herald_bench").await?;
        let base = args
            .pg_url
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or_default();
        let r = bench("postgres", &format!("{base}/herald_bench"), &args).await;
        admin
            .execute_raw("DROP DATABASE IF EXISTS herald_bench WITH (FORCE)")
            .await?;
        r?;
    }
    Ok(())
}
