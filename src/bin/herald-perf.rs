//! End-to-end performance of `herald process` as users run it.
//!
//! Starts its own loopback Twilio-shaped sink (it checks each request as
//! Twilio would: path, Basic auth, form fields; answers 201 with Twilio's
//! message JSON after a configurable latency), runs the real `herald`
//! binary from the same build directory against SQLite files and a
//! PostgreSQL database, and prints each case's figure, with the ratios the
//! targets are stated in.
//!
//!     cargo build --release --bins && target/release/herald-perf
//!
//! `--only drain,sink,slow,workers,big,scheduled,latency,webhooks,prune,scale` picks cases.
//! PostgreSQL and MariaDB: a database `herald_perf` is created (and
//! dropped) on the server at `--pg-url` / `--mysql-url`. `--backend` picks
//! sqlite, postgres, mariadb, both (the first two) or all.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::Engine;
use clap::Parser;
use herald::config::DatabaseUrl;
use herald::store::Store;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// The backlog of the drain cases.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// The backlog of the big-backlog case.
    #[arg(long, default_value_t = 1_000_000)]
    big: u64,
    /// sqlite, postgres, mariadb, both (sqlite and postgres) or all
    #[arg(long, default_value = "both")]
    backend: String,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg_url: String,
    /// MariaDB or MySQL (a database `herald_perf` is created and dropped).
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306/test")]
    mysql_url: String,
    /// The slow sink's answer time.
    #[arg(long, default_value_t = 300)]
    latency_ms: u64,
    /// SMS_RATE_LIMIT values for the slow sink.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    rates: Vec<u32>,
    /// Workers, their shared SMS_RATE_LIMIT, and how long the sink counts.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    #[arg(long, default_value_t = 50)]
    worker_rate: u32,
    #[arg(long, default_value_t = 60)]
    worker_seconds: u64,
    /// The finished messages of the scale case (PostgreSQL).
    #[arg(long, default_value_t = 10_000_000)]
    scale: u64,
    /// Cases to run (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Extra environment for every herald run (`--env SMS_CONCURRENCY=32`).
    #[arg(long = "env", value_parser = parse_env)]
    extra_env: Vec<(String, String)>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s}: expected NAME=value"))
}

static EXTRA_ENV: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

const SID: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "perf-auth-token";
const FROM: &str = "+14155550100";

// ---------------------------------------------------------------- the sink

#[derive(Default)]
struct Sink {
    latency: Mutex<Duration>,
    arrivals: Mutex<Vec<Instant>>,
    /// Insert → arrival, for bodies that carry `t=<unix µs>`.
    delays_us: Mutex<Vec<u64>>,
    rejected: AtomicU64,
    next: AtomicU64,
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({"code": code, "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status.as_u16()});
    (status, Json(body)).into_response()
}

async fn create_message(
    State(sink): State<Arc<Sink>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"))
    );
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(auth.as_str());
    if account != SID || !authorized {
        sink.rejected.fetch_add(1, Ordering::Relaxed);
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let to = form.get("To").cloned().unwrap_or_default();
    let body = form.get("Body").cloned().unwrap_or_default();
    if !to.starts_with('+') || form.get("From").map(String::as_str) != Some(FROM) || body.is_empty() {
        sink.rejected.fetch_add(1, Ordering::Relaxed);
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21604,
            "A 'To' phone number, a 'From' and a 'Body' are required.",
        );
    }
    // Counted as the provider sees it: when the request arrives.
    let now = Instant::now();
    sink.arrivals.lock().unwrap_or_else(|e| e.into_inner()).push(now);
    if let Some(t) = body.strip_prefix("t=").and_then(|t| t.parse::<u64>().ok()) {
        let delay = unix_us().saturating_sub(t);
        sink.delays_us.lock().unwrap_or_else(|e| e.into_inner()).push(delay);
    }
    let latency = *sink.latency.lock().unwrap_or_else(|e| e.into_inner());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let sid = format!("SM{:032x}", sink.next.fetch_add(1, Ordering::Relaxed));
    let created = json!({
        "account_sid": SID, "api_version": "2010-04-01", "body": body,
        "date_created": chrono::Utc::now().to_rfc2822(), "date_sent": null,
        "date_updated": chrono::Utc::now().to_rfc2822(), "direction": "outbound-api",
        "error_code": null, "error_message": null, "from": FROM, "messaging_service_sid": null,
        "num_media": "0", "num_segments": "1", "price": null, "price_unit": null, "sid": sid,
        "status": "queued", "to": to,
        "subresource_uris": {"media": format!("/2010-04-01/Accounts/{SID}/Messages/{sid}/Media.json")},
        "uri": format!("/2010-04-01/Accounts/{SID}/Messages/{sid}.json"),
    });
    (StatusCode::CREATED, Json(created)).into_response()
}

async fn start_sink() -> anyhow::Result<(Arc<Sink>, String)> {
    let sink = Arc::new(Sink::default());
    let app = Router::new()
        .route("/2010-04-01/Accounts/{account}/Messages.json", post(create_message))
        .with_state(sink.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((sink, url))
}

impl Sink {
    fn reset(&self, latency: Duration) {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner()) = latency;
        self.arrivals.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.delays_us.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Arrivals per second from the first to the last.
    fn rate(&self) -> f64 {
        let a = self.arrivals();
        match (a.first(), a.last()) {
            (Some(f), Some(l)) if a.len() > 1 => (a.len() - 1) as f64 / (*l - *f).as_secs_f64(),
            _ => 0.0,
        }
    }
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The sink's raw capacity: requests per second that 64 keep-alive
/// connections of this process get through it, as Herald's sends look.
async fn capacity(url: &str) -> anyhow::Result<f64> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let endpoint = format!("{url}/2010-04-01/Accounts/{SID}/Messages.json");
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (client, endpoint, done) = (client.clone(), endpoint.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let r = client
                    .post(&endpoint)
                    .basic_auth(SID, Some(TOKEN))
                    .form(&[
                        ("To", format!("+1415{}", 2_000_000 + i)),
                        ("From", FROM.to_owned()),
                        ("Body", "capacity".to_owned()),
                    ])
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status() == 201) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

// ------------------------------------------------------------- databases

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
    Mariadb,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mariadb => "mariadb",
        }
    }
}

struct Db {
    url: String,
    store: Store,
    dir: Option<PathBuf>,
    admin: Option<Store>,
}

async fn fresh_db(backend: Backend, args: &Args) -> anyhow::Result<Db> {
    let pg_url = args.pg_url.as_str();
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(format!("herald-perf-{}-{}", std::process::id(), fastrand::u32(..)));
            std::fs::create_dir_all(&dir)?;
            let url = format!("sqlite://{}", dir.join("perf.db").display());
            let mut store = Store::connect(&DatabaseUrl::parse(&url).map_err(anyhow::Error::msg)?, 4).await?;
            store.migrate().await?;
            Ok(Db {
                url,
                store,
                dir: Some(dir),
                admin: None,
            })
        }
        Backend::Postgres => {
            let admin = Store::connect(&DatabaseUrl::parse(pg_url).map_err(anyhow::Error::msg)?, 2).await?;
            admin
                .execute_raw("DROP DATABASE IF EXISTS herald_perf WITH (FORCE)")
                .await?;
            admin.execute_raw("CREATE DATABASE herald_perf").await?;
            let base = pg_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or_default();
            let url = format!("{base}/herald_perf");
            let mut store = Store::connect(&DatabaseUrl::parse(&url).map_err(anyhow::Error::msg)?, 4).await?;
            store.migrate().await?;
            Ok(Db {
                url,
                store,
                dir: None,
                admin: Some(admin),
            })
        }
        Backend::Mariadb => {
            let admin = Store::connect(&DatabaseUrl::parse(&args.mysql_url).map_err(anyhow::Error::msg)?, 2).await?;
            admin.execute_raw("DROP DATABASE IF EXISTS herald_perf").await?;
            admin
                .execute_raw("CREATE DATABASE herald_perf CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
                .await?;
            let base = args
                .mysql_url
                .rsplit_once('/')
                .map(|(b, _)| b.to_owned())
                .unwrap_or_default();
            let url = format!("{base}/herald_perf");
            let mut store = Store::connect(&DatabaseUrl::parse(&url).map_err(anyhow::Error::msg)?, 4).await?;
            store.migrate().await?;
            Ok(Db {
                url,
                store,
                dir: None,
                admin: Some(admin),
            })
        }
    }
}

impl Db {
    /// `n` SMS rows, due now or at `send_at` (SQL expression).
    async fn fill(&self, n: u64, send_at: Option<&str>) -> anyhow::Result<()> {
        self.fill_with(n, send_at, None).await
    }

    /// `n` finished (cancelled) SMS rows created `days` days ago: what
    /// retention prunes.
    async fn fill_old(&self, n: u64, days: u32) -> anyhow::Result<()> {
        let created = match self.store.backend_name() {
            "postgres" => format!("now() - interval '{days} days'"),
            "mysql" => format!("UTC_TIMESTAMP(6) - INTERVAL {days} DAY"),
            _ => format!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{days} days')"),
        };
        self.fill_with(n, None, Some(("'cancelled'", &created))).await
    }

    async fn fill_with(&self, n: u64, send_at: Option<&str>, finished: Option<(&str, &str)>) -> anyhow::Result<()> {
        let send_at = send_at.unwrap_or("NULL");
        let (extra_cols, extra_vals) = match finished {
            Some((status, created)) => (
                ", status, created_at, updated_at".to_owned(),
                format!(", {status}, {created}, {created}"),
            ),
            None => (String::new(), String::new()),
        };
        let backend = self.store.backend_name();
        let sql = if backend == "postgres" {
            format!(
                "INSERT INTO notification_messages (channel, recipient, body, send_at{extra_cols})
                 SELECT 'sms', '+1415' || (2000000 + x % 1000000)::text, 'perf ' || x, {send_at}{extra_vals}
                   FROM generate_series(1, {n}) AS x"
            )
        } else if backend == "mysql" {
            // Numbers 1..=n from digits (MySQL bounds recursive CTEs).
            let digits = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
                           UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)";
            anyhow::ensure!(n <= 10_000_000, "at most 10,000,000 rows on MariaDB");
            format!(
                "INSERT INTO notification_messages (channel, recipient, body, send_at{extra_cols})
                 SELECT 'sms', CONCAT('+1415', 2000000 + x % 1000000), CONCAT('perf ', x), {send_at}{extra_vals}
                   FROM (SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 100000 * g.d + 1000000 * h.d + 1 AS x
                           FROM {digits} a, {digits} b, {digits} c, {digits} e, {digits} f, {digits} g, {digits} h) n
                  WHERE x <= {n} ORDER BY x"
            )
        } else {
            format!(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n})
                 INSERT INTO notification_messages (channel, recipient, body, send_at{extra_cols})
                 SELECT 'sms', '+1415' || (2000000 + x % 1000000), 'perf ' || x, {send_at}{extra_vals} FROM c"
            )
        };
        self.store.execute_raw(&sql).await?;
        Ok(())
    }

    async fn sent(&self) -> anyhow::Result<i64> {
        Ok(self
            .store
            .counts_exact()
            .await?
            .iter()
            .filter(|c| c.status == "sent")
            .map(|c| c.count)
            .sum())
    }

    async fn drop(self) {
        self.store.close().await;
        if let Some(dir) = self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(admin) = self.admin {
            let force = if admin.backend_name() == "postgres" {
                " WITH (FORCE)"
            } else {
                ""
            };
            let _ = admin
                .execute_raw(&format!("DROP DATABASE IF EXISTS herald_perf{force}"))
                .await;
        }
    }
}

// ------------------------------------------------------------------ herald

fn herald_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the running program's path");
    exe.with_file_name("herald")
}

fn herald(db: &Db, env: &[(&str, String)], args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(herald_bin());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for (k, v) in EXTRA_ENV.get().into_iter().flatten() {
        cmd.env(k, v);
    }
    cmd
}

fn twilio_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SMS_PROVIDER", "twilio".into()),
        ("TWILIO_API_URL", url.into()),
        ("TWILIO_ACCOUNT_SID", SID.into()),
        ("TWILIO_AUTH_TOKEN", TOKEN.into()),
        ("TWILIO_PHONE_NUMBER", FROM.into()),
    ]
}

/// Peak resident memory (kB) of a running process, from /proc.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

struct Run {
    secs: f64,
    sent: i64,
    rss_mb: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.sent as f64 / self.secs
    }
}

/// `herald process` until it exits; wall time, messages sent, peak RSS.
async fn process(db: &Db, env: &[(&str, String)]) -> anyhow::Result<Run> {
    let before = db.sent().await?;
    let start = Instant::now();
    let mut child = herald(db, env, &["process"]).spawn()?;
    let pid = child.id().unwrap_or(0);
    let mut peak = 0;
    let status = loop {
        if let Some(kb) = peak_rss_kb(pid) {
            peak = peak.max(kb);
        }
        tokio::select! {
            s = child.wait() => break s?,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    };
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(status.success(), "herald process failed: {status}");
    Ok(Run {
        secs,
        sent: db.sent().await? - before,
        rss_mb: peak as f64 / 1024.0,
    })
}

// ------------------------------------------------------- the POS endpoint

/// A POS receiving status webhooks: counts them and answers 204.
#[derive(Default)]
struct Pos {
    received: AtomicU64,
    unsigned: AtomicU64,
}

async fn pos_hook(State(pos): State<Arc<Pos>>, headers: HeaderMap) -> StatusCode {
    if headers.get("webhook-signature").is_none() || headers.get("webhook-id").is_none() {
        pos.unsigned.fetch_add(1, Ordering::Relaxed);
    }
    pos.received.fetch_add(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

async fn start_pos() -> anyhow::Result<(Arc<Pos>, String)> {
    let pos = Arc::new(Pos::default());
    let router = Router::new().route("/herald", post(pos_hook)).with_state(pos.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((pos, format!("http://{addr}/herald")))
}

// ------------------------------------------------------------------- cases

struct Report {
    lines: Vec<String>,
}

impl Report {
    fn line(&mut self, s: String) {
        println!("{s}");
        self.lines.push(s);
    }
}

fn env_of(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

async fn drain_case(args: &Args, backend: Backend, r: &mut Report) -> anyhow::Result<f64> {
    let mut best = 0.0f64;
    let mut default = 0.0;
    for (label, env) in [
        ("defaults", vec![]),
        ("BATCH_SIZE=500", vec![("BATCH_SIZE", "500")]),
        ("BATCH_SIZE=2000", vec![("BATCH_SIZE", "2000")]),
    ] {
        let db = fresh_db(backend, args).await?;
        db.fill(args.messages, None).await?;
        let mut env = env_of(&env);
        env.push(("SMS_PROVIDER", "log".into()));
        let run = process(&db, &env).await?;
        db.drop().await;
        r.line(format!(
            "drain {} {label}: {} messages in {:.2} s = {:.0} msg/s (peak RSS {:.1} MB)",
            backend.name(),
            run.sent,
            run.secs,
            run.rate(),
            run.rss_mb
        ));
        if label == "defaults" {
            default = run.rate();
        }
        best = best.max(run.rate());
    }
    r.line(format!(
        "drain {}: defaults are {:.0} % of the best tuned figure",
        backend.name(),
        100.0 * default / best
    ));
    Ok(default)
}

/// The columns of the scale case's rows (SQL with `||`: PostgreSQL and
/// SQLite) from `x` and the creation time `t`: 70 % SMS, 20 % email, 10 %
/// WhatsApp, 2.1 % failed over every channel, 0.1 % cancelled, 20 % from
/// the template `receipt`, 0.1 % from `birthday`, metadata `order_id` and
/// `till`.
const SCALE_ROW: &str = "CASE WHEN x % 10 < 7 THEN 'sms' WHEN x % 10 < 9 THEN 'email' ELSE 'whatsapp' END,
    CASE WHEN x % 10 BETWEEN 7 AND 8 THEN 'c' || (x % 1000000) || '@example.com'
         WHEN x % 10 = 9 THEN 'whatsapp:+1415' || (2000000 + x % 1000000)
         ELSE '+1415' || (2000000 + x % 1000000) END,
    'message ' || x,
    CASE WHEN x % 47 = 0 THEN 'failed' WHEN x % 1000 = 1 THEN 'cancelled' ELSE 'sent' END, 1, 'log',
    '{\"order_id\": ' || x || ', \"till\": ' || (x % 20) || '}',
    CASE WHEN x % 5 = 0 THEN 'receipt' WHEN x % 1000 = 7 THEN 'birthday' END,
    t, t, t";

/// Messages still open (pending or processing), from the open rows' index.
async fn open_left(db: &Db) -> anyhow::Result<i64> {
    Ok(db.store.open_counts().await?.iter().map(|c| c.count).sum())
}

/// `n` due messages drained by the running `herald process --watch`: the
/// rate, and the longest time in which no message finished.
async fn watch_drain(db: &Db, n: u64) -> anyhow::Result<(f64, f64)> {
    db.fill(n, None).await?;
    let start = Instant::now();
    let mut last = open_left(db).await?;
    let mut moved = Instant::now();
    let mut stall = Duration::ZERO;
    while last > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = open_left(db).await?;
        if now < last {
            stall = stall.max(moved.elapsed());
            moved = Instant::now();
            last = now;
        }
        anyhow::ensure!(
            moved.elapsed() < Duration::from_secs(300),
            "the drain stopped for 5 minutes"
        );
    }
    Ok((n as f64 / start.elapsed().as_secs_f64(), stall.as_secs_f64() * 1000.0))
}

/// The release before migration 9: no metadata index, no status and
/// template indexes (what an upgrade starts from).
async fn as_before_migration_9(db: &Db) -> anyhow::Result<()> {
    for s in [
        "DROP TRIGGER herald_metadata_insert ON notification_messages",
        "DROP TRIGGER herald_metadata_update ON notification_messages",
        "DROP TRIGGER herald_metadata_delete ON notification_messages",
        "DROP FUNCTION herald_index_metadata()",
        "DROP FUNCTION herald_metadata_pairs(text)",
        "DROP TABLE herald_message_metadata",
        "DROP TABLE herald_backfills",
        "DROP INDEX notification_messages_status",
        "DROP INDEX notification_messages_template",
        "DROP INDEX notification_messages_channel",
        "DELETE FROM _sqlx_migrations WHERE version = 9",
    ] {
        db.store.execute_raw(s).await?;
    }
    Ok(())
}

/// A year of a busy shop on PostgreSQL: `--scale` finished messages (70 %
/// SMS, 20 % email, 10 % WhatsApp, 2 % failed, 0.1 % cancelled, 20 % from
/// a template, each with an `order_id`, created over 400 days) written by
/// the release before the scale migration, with a worker (`herald process
/// --watch`) running. Then: the drain on that schema; `herald migrate`
/// while the worker drains (the rate and the longest stall); the drain on
/// the new schema (the new indexes' write cost); every operator query;
/// the drain again with `herald prune --older-than 90d` alongside.
async fn scale_case(args: &Args, r: &mut Report) -> anyhow::Result<()> {
    let db = fresh_db(Backend::Postgres, args).await?;
    let n = args.scale;
    let log = [("SMS_PROVIDER", "log".to_owned())];
    let mut worker = herald(&db, &log, &["process", "--watch"]).spawn()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    as_before_migration_9(&db).await?;
    let started = Instant::now();
    db.store
        .execute_raw(&format!(
            "INSERT INTO notification_messages (channel, recipient, body, status, attempts, provider, metadata,
                                                template, created_at, updated_at, sent_at)
             SELECT {SCALE_ROW}
               FROM (SELECT x, now() - (x % 400) * interval '1 day' - (x % 86400) * interval '1 second' AS t
                       FROM generate_series(1, {n}) AS x) AS g"
        ))
        .await?;
    db.store.execute_raw("VACUUM ANALYZE notification_messages").await?;
    r.line(format!(
        "scale postgres: {n} finished messages written in {:.0} s (schema of the release before)",
        started.elapsed().as_secs_f64()
    ));
    let batch = args.messages;
    let (before, before_stall) = watch_drain(&db, batch).await?;
    r.line(format!(
        "scale postgres drain of {batch} due by a running worker, before the upgrade: {before:.0} msg/s (longest stall {before_stall:.0} ms)"
    ));

    // The upgrade while the worker drains.
    let migrate_started = Instant::now();
    let mut migrate = herald(&db, &[], &["migrate"]).spawn()?;
    let mut during = Vec::new();
    let mut migrated = None;
    while migrated.is_none() {
        during.push(watch_drain(&db, batch).await?);
        if let Some(status) = migrate.try_wait()? {
            migrated = Some(status);
        }
    }
    let status = migrated.expect("migrate ended");
    anyhow::ensure!(status.success(), "herald migrate failed: {status}");
    let migrate_secs = migrate_started.elapsed().as_secs_f64();
    let mut rates: Vec<f64> = during.iter().map(|(r, _)| *r).collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    let stall = during.iter().map(|(_, s)| *s).fold(0.0, f64::max);
    r.line(format!(
        "scale postgres `herald migrate` (migration 9, three indexes built concurrently, metadata of {n} rows indexed) while the worker drains: \
         done in {migrate_secs:.0} s; {} drains of {batch} meanwhile: min {:.0}, median {:.0}, max {:.0} msg/s ({:.0} % of before at the median); longest stall {stall:.0} ms",
        rates.len(),
        rates[0],
        rates[rates.len() / 2],
        rates[rates.len() - 1],
        100.0 * rates[rates.len() / 2] / before
    ));
    let size = |t: &str| format!("SELECT pg_total_relation_size('{t}')");
    let pool = sqlx::PgPool::connect(&db.url).await?;
    for t in ["notification_messages", "herald_message_metadata"] {
        let bytes: i64 = sqlx::query_scalar(&size(t)).fetch_one(&pool).await?;
        r.line(format!(
            "scale postgres size of {t} with its indexes: {:.2} GB",
            bytes as f64 / 1e9
        ));
    }
    pool.close().await;
    // The upgrade's writes (20 million metadata rows) leave autovacuum work
    // that would be measured as the new indexes' cost: done first.
    db.store.execute_raw("VACUUM ANALYZE").await?;
    let (after, after_stall) = watch_drain(&db, batch).await?;
    r.line(format!(
        "scale postgres drain of {batch} due by a running worker, after the upgrade (and VACUUM ANALYZE): {after:.0} msg/s ({:.0} % of before; longest stall {after_stall:.0} ms)",
        100.0 * after / before
    ));
    let _ = worker.start_kill();
    let _ = worker.wait().await;
    db.fill(20, Some("now() + interval '1 year'")).await?;
    db.store.execute_raw("VACUUM ANALYZE").await?;

    operator_queries(&db, "postgres", n, r).await?;
    // The drain on this table, alone and with a prune alongside.
    for prune_args in [None, Some("--busy-pause-ms 0"), Some("defaults")] {
        db.fill(args.messages, None).await?;
        let prune_started = Instant::now();
        let mut prune = match prune_args {
            None => None,
            Some(extra) => {
                let mut a = vec!["prune", "--older-than", "90d"];
                if extra != "defaults" {
                    a.extend(extra.split(' '));
                }
                Some(herald(&db, &[], &a).spawn()?)
            }
        };
        let run = process(&db, &log).await?;
        let label = if let Some(child) = prune.as_mut() {
            let _ = child.start_kill();
            let _ = child.wait().await;
            format!(
                "with `herald prune --older-than 90d` ({}) alongside (stopped after {:.1} s)",
                prune_args.unwrap_or_default(),
                prune_started.elapsed().as_secs_f64(),
            )
        } else {
            "alone".to_owned()
        };
        r.line(format!(
            "scale postgres drain of {} due on the {n}-row table, {label}: {:.0} msg/s",
            args.messages,
            run.rate()
        ));
    }
    db.drop().await;
    Ok(())
}

/// Every operator query on a big table (`n` rows from the scale case's
/// generator), 20 times each through the store (counts 5 times).
async fn operator_queries(db: &Db, backend: &str, n: u64, r: &mut Report) -> anyhow::Result<()> {
    use herald::domain::{Channel, MessageStatus};
    use herald::store::ListFilter;
    let base = ListFilter {
        limit: 50,
        ..Default::default()
    };
    let day = chrono::Utc::now() - chrono::Duration::days(200);
    let cases: Vec<(&str, ListFilter)> = vec![
        ("newest 50", base.clone()),
        (
            "by recipient",
            ListFilter {
                // An SMS recipient of the table's middle row (x % 10 = 0).
                recipient: Some(format!("+1415{}", 2_000_000 + (n / 20 * 10) % 1_000_000)),
                ..base.clone()
            },
        ),
        (
            "by status (failed)",
            ListFilter {
                status: Some(MessageStatus::Failed),
                ..base.clone()
            },
        ),
        (
            "by status (cancelled, 0.1 %)",
            ListFilter {
                status: Some(MessageStatus::Cancelled),
                ..base.clone()
            },
        ),
        (
            "by status (pending: 20 scheduled for next year)",
            ListFilter {
                status: Some(MessageStatus::Pending),
                ..base.clone()
            },
        ),
        (
            "by status (sent)",
            ListFilter {
                status: Some(MessageStatus::Sent),
                ..base.clone()
            },
        ),
        (
            "by channel (whatsapp)",
            ListFilter {
                channel: Some(Channel::Whatsapp),
                ..base.clone()
            },
        ),
        (
            "by status and channel (failed whatsapp)",
            ListFilter {
                status: Some(MessageStatus::Failed),
                channel: Some(Channel::Whatsapp),
                ..base.clone()
            },
        ),
        (
            "by date range (a day, 200 days ago)",
            ListFilter {
                created_from: Some(day),
                created_to: Some(day + chrono::Duration::days(1)),
                ..base.clone()
            },
        ),
        (
            "by template (receipt, 20 %)",
            ListFilter {
                template: Some("receipt".into()),
                ..base.clone()
            },
        ),
        (
            "by template (birthday, 0.1 %)",
            ListFilter {
                template: Some("birthday".into()),
                ..base.clone()
            },
        ),
        (
            "by metadata order_id (one message)",
            ListFilter {
                metadata: Some(("order_id".into(), (n / 3).to_string())),
                ..base.clone()
            },
        ),
        (
            "by metadata till (5 % of the table)",
            ListFilter {
                metadata: Some(("till".into(), "7".into())),
                ..base.clone()
            },
        ),
        (
            "by metadata order_id with a date range (400 days)",
            ListFilter {
                metadata: Some(("order_id".into(), (n / 3).to_string())),
                created_from: Some(chrono::Utc::now() - chrono::Duration::days(401)),
                created_to: Some(chrono::Utc::now()),
                ..base.clone()
            },
        ),
    ];
    for (label, f) in cases {
        let mut times = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let rows = db.store.list(&f).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(!rows.is_empty(), "{label}: no rows");
        }
        times.sort_by(|a, b| a.total_cmp(b));
        r.line(format!(
            "scale {backend} {label}: median {:.1} ms, max {:.1} ms",
            times[10], times[19]
        ));
    }
    let mut times = Vec::new();
    for i in 0..20u64 {
        let t = Instant::now();
        db.store.get(1000 + i as i64 * 997).await?;
        db.store.attempts(1000 + i as i64 * 997).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    r.line(format!(
        "scale {backend} message detail (row and attempts): median {:.2} ms, max {:.2} ms",
        times[10], times[19]
    ));
    for label in [
        "open counts (/readyz, progress)",
        "counts by status (herald status, /metrics)",
        "counts by status, every row (herald status --exact)",
    ] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            if label.starts_with("open") {
                db.store.open_counts().await?;
            } else if label.contains("exact") {
                db.store.counts_exact().await?;
            } else {
                db.store.counts().await?;
            }
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        r.line(format!(
            "scale {backend} {label}: median {:.1} ms, max {:.1} ms",
            times[2], times[4]
        ));
    }
    Ok(())
}

/// The scale case's table on SQLite or MariaDB (`--scale` rows written by
/// SQL through the metadata triggers), then every operator query.
async fn scale_queries_case(args: &Args, backend: Backend, r: &mut Report) -> anyhow::Result<()> {
    let db = fresh_db(backend, args).await?;
    let n = args.scale;
    let started = Instant::now();
    let cols =
        "channel, recipient, body, status, attempts, provider, metadata, template, created_at, updated_at, sent_at";
    let sql = if backend == Backend::Sqlite {
        format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}),
                  g AS (SELECT x, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || (x % 400) || ' days', '-' || (x % 86400) || ' seconds') AS t FROM c)
             INSERT INTO notification_messages ({cols})
             SELECT {SCALE_ROW}
               FROM g"
        )
    } else {
        anyhow::ensure!(n <= 10_000_000, "at most 10,000,000 rows on MariaDB");
        let digits = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
                       UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)";
        format!(
            "INSERT INTO notification_messages ({cols})
             SELECT CASE WHEN x % 10 < 7 THEN 'sms' WHEN x % 10 < 9 THEN 'email' ELSE 'whatsapp' END,
                    CASE WHEN x % 10 BETWEEN 7 AND 8 THEN CONCAT('c', x % 1000000, '@example.com')
                         WHEN x % 10 = 9 THEN CONCAT('whatsapp:+1415', 2000000 + x % 1000000)
                         ELSE CONCAT('+1415', 2000000 + x % 1000000) END,
                    CONCAT('message ', x),
                    CASE WHEN x % 47 = 0 THEN 'failed' WHEN x % 1000 = 1 THEN 'cancelled' ELSE 'sent' END, 1, 'log',
                    CONCAT('{{\"order_id\": ', x, ', \"till\": ', x % 20, '}}'),
                    CASE WHEN x % 5 = 0 THEN 'receipt' WHEN x % 1000 = 7 THEN 'birthday' END,
                    t, t, t
               FROM (SELECT x, UTC_TIMESTAMP(6) - INTERVAL (x % 400) DAY - INTERVAL (x % 86400) SECOND AS t
                       FROM (SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 100000 * g.d + 1000000 * h.d + 1 AS x
                               FROM {digits} a, {digits} b, {digits} c, {digits} e, {digits} f, {digits} g, {digits} h) n
                      WHERE x <= {n} ORDER BY x) AS s"
        )
    };
    db.store.execute_raw(&sql).await?;
    let scheduled = if backend == Backend::Sqlite {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+1 year')"
    } else {
        "UTC_TIMESTAMP(6) + INTERVAL 1 YEAR"
    };
    db.fill(20, Some(scheduled)).await?;
    db.store
        .execute_raw(if backend == Backend::Sqlite {
            "ANALYZE"
        } else {
            "ANALYZE TABLE notification_messages, herald_message_metadata"
        })
        .await?;
    r.line(format!(
        "scale {}: {n} finished messages written (through the metadata triggers) in {:.0} s",
        backend.name(),
        started.elapsed().as_secs_f64()
    ));
    operator_queries(&db, backend.name(), n, r).await?;
    db.drop().await;
    Ok(())
}

/// Retention while draining: `n` due messages behind `big` old finished
/// ones, drained by `herald process` alone, then with `herald prune
/// --older-than 90d` deleting the old rows at the same time.
async fn prune_case(args: &Args, backend: Backend, r: &mut Report) -> anyhow::Result<()> {
    let mut alone = 0.0;
    // Full speed (20 ms between batches whatever the queue holds), then the
    // defaults (20 ms, 200 ms while messages are due).
    for (with_prune, pause) in [(false, ""), (true, "--busy-pause-ms 0"), (true, "defaults")] {
        let db = fresh_db(backend, args).await?;
        db.fill_old(args.big, 400).await?;
        db.fill(args.messages, None).await?;
        let started = Instant::now();
        let mut prune = if with_prune {
            let mut a = vec!["prune", "--older-than", "90d"];
            if pause != "defaults" {
                a.extend(pause.split(' '));
            }
            Some(herald(&db, &[], &a).spawn()?)
        } else {
            None
        };
        let run = process(&db, &[("SMS_PROVIDER", "log".into())]).await?;
        let drained = started.elapsed().as_secs_f64();
        let pruned = match prune.as_mut() {
            Some(child) => {
                let status = child.wait().await?;
                anyhow::ensure!(status.success(), "herald prune failed: {status}");
                Some(started.elapsed().as_secs_f64())
            }
            None => None,
        };
        let left = db
            .store
            .counts_exact()
            .await?
            .iter()
            .filter(|c| c.status == "cancelled")
            .map(|c| c.count)
            .sum::<i64>();
        db.drop().await;
        match pruned {
            None => {
                alone = run.rate();
                r.line(format!(
                    "drain {} {} due behind {} old finished rows, defaults: {:.0} msg/s",
                    backend.name(),
                    args.messages,
                    args.big,
                    run.rate()
                ));
            }
            Some(secs) => {
                r.line(format!(
                    "drain {} the same with `herald prune --older-than 90d` ({pause}) running alongside: {:.0} msg/s ({:.0} % of the drain alone; drained in {:.1} s)",
                    backend.name(),
                    run.rate(),
                    100.0 * run.rate() / alone,
                    drained
                ));
                r.line(format!(
                    "prune {} ({pause}): {} old finished rows deleted in {:.1} s = {:.0} rows/s, the drain running meanwhile ({} left)",
                    backend.name(),
                    args.big,
                    secs,
                    args.big as f64 / secs,
                    left
                ));
            }
        }
    }
    Ok(())
}

/// `herald process --watch` draining `n` messages, with or without a POS
/// endpoint subscribed to `message.sent`: the drain's rate, and how soon
/// every webhook arrived.
async fn webhooks_case(args: &Args, backend: Backend, r: &mut Report) -> anyhow::Result<()> {
    let n = args.messages;
    for (with_endpoint, delivering) in [(false, true), (true, false), (true, true)] {
        let db = fresh_db(backend, args).await?;
        db.fill(n, None).await?;
        let (pos, url) = start_pos().await?;
        if with_endpoint {
            db.store
                .create_endpoint(
                    &herald::domain::EndpointUrl::parse(&url).map_err(|e| anyhow::anyhow!(e.message))?,
                    Some("herald-perf"),
                    &herald::domain::EventFilter::parse(&["message.sent".to_owned()])
                        .map_err(|e| anyhow::anyhow!(e.message))?,
                    herald::signing::WebhookSecret::generate().expose(),
                    true,
                    chrono::Utc::now(),
                )
                .await?;
        }
        let start = Instant::now();
        let delivery = if delivering { "true" } else { "false" };
        let mut child = herald(
            &db,
            &env_of(&[("SMS_PROVIDER", "log"), ("WEBHOOK_DELIVERY", delivery)]),
            &["process", "--watch"],
        )
        .spawn()?;
        let pid = child.id().unwrap_or(0);
        let mut peak = 0;
        let mut drained = None;
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            if let Some(kb) = peak_rss_kb(pid) {
                peak = peak.max(kb);
            }
            if drained.is_none() && db.sent().await? as u64 >= n {
                drained = Some(start.elapsed().as_secs_f64());
            }
            let told = pos.received.load(Ordering::Relaxed);
            if drained.is_some() && (!with_endpoint || !delivering || told >= n) {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the webhooks case did not finish in 30 minutes"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let all = start.elapsed().as_secs_f64();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let _ = child.wait().await;
        let drained = drained.unwrap_or(all);
        if with_endpoint && !delivering {
            r.line(format!(
                "webhooks {}: endpoint, WEBHOOK_DELIVERY=false (events written, delivered elsewhere): {n} messages \
                 drained in {drained:.2} s = {:.0} msg/s (peak RSS {:.1} MB)",
                backend.name(),
                n as f64 / drained,
                peak as f64 / 1024.0
            ));
        } else if with_endpoint {
            r.line(format!(
                "webhooks {}: {n} messages drained in {drained:.2} s = {:.0} msg/s while delivering; all {} webhooks \
                 received after {all:.2} s = {:.0} webhooks/s ({} unsigned; peak RSS {:.1} MB)",
                backend.name(),
                n as f64 / drained,
                pos.received.load(Ordering::Relaxed),
                n as f64 / all,
                pos.unsigned.load(Ordering::Relaxed),
                peak as f64 / 1024.0
            ));
        } else {
            r.line(format!(
                "webhooks {}: no endpoint: {n} messages drained in {drained:.2} s = {:.0} msg/s (process --watch; peak RSS {:.1} MB)",
                backend.name(),
                n as f64 / drained,
                peak as f64 / 1024.0
            ));
        }
        db.drop().await;
    }
    Ok(())
}

async fn sink_case(args: &Args, backend: Backend, sink: &Sink, url: &str, r: &mut Report) -> anyhow::Result<()> {
    sink.reset(Duration::ZERO);
    let cap = capacity(url).await?;
    r.line(format!(
        "fast sink raw capacity (64 connections from this program): {cap:.0} req/s"
    ));
    let n = args.messages.min(50_000);
    let mut figures = Vec::new();
    for (label, extra) in [
        ("defaults", vec![]),
        (
            "SMS_CONCURRENCY=64 BATCH_SIZE=1000",
            vec![("SMS_CONCURRENCY", "64"), ("BATCH_SIZE", "1000")],
        ),
    ] {
        sink.reset(Duration::ZERO);
        let db = fresh_db(backend, args).await?;
        db.fill(n, None).await?;
        let mut env = twilio_env(url);
        env.push(("SMS_RATE_LIMIT", "0".into()));
        env.extend(env_of(&extra));
        let run = process(&db, &env).await?;
        db.drop().await;
        r.line(format!(
            "fast sink {} {label}: {} sent in {:.2} s = {:.0} msg/s, {:.0} % of the sink's capacity (peak RSS {:.1} MB)",
            backend.name(),
            run.sent,
            run.secs,
            run.rate(),
            100.0 * run.rate() / cap,
            run.rss_mb
        ));
        figures.push(run.rate());
    }
    r.line(format!(
        "fast sink {}: defaults are {:.0} % of the tuned figure",
        backend.name(),
        100.0 * figures[0] / figures[1]
    ));
    Ok(())
}

async fn slow_case(args: &Args, backend: Backend, sink: &Sink, url: &str, r: &mut Report) -> anyhow::Result<()> {
    let latency = Duration::from_millis(args.latency_ms);
    let mut cases: Vec<u32> = args.rates.clone();
    cases.push(0);
    for rate in cases {
        sink.reset(latency);
        // About 10 s of sending at the limit (20,000 messages unlimited).
        let n = if rate == 0 { 20_000 } else { u64::from(rate) * 10 };
        let db = fresh_db(backend, args).await?;
        db.fill(n, None).await?;
        let mut env = twilio_env(url);
        env.push(("SMS_RATE_LIMIT", rate.to_string()));
        let run = process(&db, &env).await?;
        db.drop().await;
        let at_sink = sink.rate();
        let target = if rate == 0 {
            "unlimited".to_owned()
        } else {
            // The bucket starts full (SMS_RATE_BURST defaults to the rate):
            // past those, the sink should see the rate.
            let a = sink.arrivals();
            let span = match (a.first(), a.last()) {
                (Some(f), Some(l)) => (*l - *f).as_secs_f64(),
                _ => 0.0,
            };
            let sustained = (a.len() as f64 - f64::from(rate)) / span;
            format!(
                "past the burst of {rate}: {sustained:.0} msg/s = {:.1} % of SMS_RATE_LIMIT={rate}; most in any 1 s: {} (rate + burst = {})",
                100.0 * sustained / f64::from(rate),
                max_in_window(&a, Duration::from_secs(1)),
                2 * rate
            )
        };
        r.line(format!(
            "{} ms sink {} SMS_RATE_LIMIT={rate}: {} sent in {:.2} s = {:.0} msg/s; at the sink {at_sink:.0} msg/s ({target}); peak RSS {:.1} MB",
            args.latency_ms,
            backend.name(),
            run.sent,
            run.secs,
            run.rate(),
            run.rss_mb
        ));
    }
    Ok(())
}

/// Most arrivals within any `window`, from `from` on.
fn max_in_window(arrivals: &[Instant], window: Duration) -> usize {
    let mut best = 0;
    let mut j = 0;
    for i in 0..arrivals.len() {
        while arrivals[i] - arrivals[j] >= window {
            j += 1;
        }
        best = best.max(i - j + 1);
    }
    best
}

async fn workers_case(args: &Args, sink: &Sink, url: &str, r: &mut Report) -> anyhow::Result<()> {
    sink.reset(Duration::from_millis(50));
    let db = fresh_db(Backend::Postgres, args).await?;
    let rate = args.worker_rate;
    db.fill(u64::from(rate) * (args.worker_seconds + 30), None).await?;
    let mut env = twilio_env(url);
    env.push(("SMS_RATE_LIMIT", rate.to_string()));
    let mut children = Vec::new();
    for _ in 0..args.workers {
        children.push(herald(&db, &env, &["process", "--watch"]).spawn()?);
    }
    // Count for the configured time from the first arrival.
    let deadline = Instant::now() + Duration::from_secs(args.worker_seconds + 30);
    let first = loop {
        if let Some(f) = sink.arrivals().first() {
            break *f;
        }
        anyhow::ensure!(Instant::now() < deadline, "no message reached the sink");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep_until((first + Duration::from_secs(args.worker_seconds)).into()).await;
    for c in &children {
        if let Some(pid) = c.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }
    let arrivals: Vec<Instant> = sink
        .arrivals()
        .into_iter()
        .filter(|a| *a < first + Duration::from_secs(args.worker_seconds))
        .collect();
    let after_first_second: Vec<Instant> = arrivals
        .iter()
        .copied()
        .filter(|a| *a >= first + Duration::from_secs(1))
        .collect();
    let steady = after_first_second.len() as f64 / (args.worker_seconds - 1) as f64;
    r.line(format!(
        "{} workers on one PostgreSQL, SMS_RATE_LIMIT={rate} (burst {rate}): the sink saw {} in {} s = {:.1} msg/s \
         ({:.1} % of the limit); after the first second {steady:.1} msg/s ({:.1} %); most in any 1 s: {} (limit + burst = {}); \
         most in any 1 s after the first: {}",
        args.workers,
        arrivals.len(),
        args.worker_seconds,
        arrivals.len() as f64 / args.worker_seconds as f64,
        100.0 * arrivals.len() as f64 / args.worker_seconds as f64 / f64::from(rate),
        100.0 * steady / f64::from(rate),
        max_in_window(&arrivals, Duration::from_secs(1)),
        2 * rate,
        max_in_window(&after_first_second, Duration::from_secs(1)),
    ));
    for mut c in children {
        let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
    }
    db.drop().await;
    Ok(())
}

async fn big_case(args: &Args, backend: Backend, small_rate: f64, r: &mut Report) -> anyhow::Result<()> {
    let db = fresh_db(backend, args).await?;
    db.fill(args.big, None).await?;
    let run = process(&db, &[("SMS_PROVIDER", "log".into())]).await?;
    db.drop().await;
    r.line(format!(
        "drain {} {} backlog, defaults: {:.2} s = {:.0} msg/s ({:.0} % of the {} rate); peak RSS {:.1} MB",
        backend.name(),
        args.big,
        run.secs,
        run.rate(),
        100.0 * run.rate() / small_rate,
        args.messages,
        run.rss_mb
    ));
    Ok(())
}

async fn scheduled_case(args: &Args, backend: Backend, small_rate: f64, r: &mut Report) -> anyhow::Result<()> {
    let db = fresh_db(backend, args).await?;
    let next_week = match backend {
        Backend::Postgres => "now() + interval '7 days'",
        Backend::Mariadb => "UTC_TIMESTAMP(6) + INTERVAL 7 DAY",
        Backend::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+7 days')",
    };
    db.fill(args.big, Some(next_week)).await?;
    db.fill(args.messages, None).await?;
    let run = process(&db, &[("SMS_PROVIDER", "log".into())]).await?;
    db.drop().await;
    r.line(format!(
        "drain {} {} due now behind {} scheduled next week, defaults: {} sent in {:.2} s = {:.0} msg/s ({:.0} % of the no-backlog rate)",
        backend.name(),
        args.messages,
        args.big,
        run.sent,
        run.secs,
        run.rate(),
        100.0 * run.rate() / small_rate
    ));
    Ok(())
}

async fn latency_case(args: &Args, backend: Backend, sink: &Sink, url: &str, r: &mut Report) -> anyhow::Result<()> {
    sink.reset(Duration::ZERO);
    let db = fresh_db(backend, args).await?;
    let mut env = twilio_env(url);
    env.push(("SMS_RATE_LIMIT", "0".into()));
    let mut child = herald(&db, &env, &["process", "--watch"]).spawn()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // 1,000 msg/s for 10 s: ten rows every 10 ms, each carrying its insert time.
    let start = Instant::now();
    for tick in 0..1000u32 {
        tokio::time::sleep_until((start + Duration::from_millis(10 * u64::from(tick))).into()).await;
        let t = unix_us();
        let values: Vec<String> = (0..10)
            .map(|i| format!("('sms', '+1415{}', 't={t}')", 2_000_000 + i))
            .collect();
        db.store
            .execute_raw(&format!(
                "INSERT INTO notification_messages (channel, recipient, body) VALUES {}",
                values.join(", ")
            ))
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.delays_us.lock().unwrap_or_else(|e| e.into_inner()).len() < 10_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    db.drop().await;
    let mut d = sink.delays_us.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if std::env::var_os("HERALD_PERF_TRACE").is_some() {
        for (i, chunk) in d.chunks(500).enumerate() {
            eprintln!(
                "arrivals {i}: max {:.1} ms",
                chunk.iter().max().copied().unwrap_or(0) as f64 / 1000.0
            );
        }
    }
    d.sort_unstable();
    let pct = |q: f64| {
        d.get(((d.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    r.line(format!(
        "latency {} at 1,000 msg/s inserted by SQL (watch mode, fast sink): {} arrived; insert to provider p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        backend.name(),
        d.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    ));
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    EXTRA_ENV.get_or_init(|| args.extra_env.clone());
    anyhow::ensure!(
        herald_bin().exists(),
        "{} not found: build it first (cargo build --release --bins)",
        herald_bin().display()
    );
    let wants = |case: &str| args.only.is_empty() || args.only.iter().any(|c| c == case);
    let backends: Vec<Backend> = match args.backend.as_str() {
        "sqlite" => vec![Backend::Sqlite],
        "postgres" => vec![Backend::Postgres],
        "mariadb" | "mysql" => vec![Backend::Mariadb],
        "all" => vec![Backend::Sqlite, Backend::Postgres, Backend::Mariadb],
        _ => vec![Backend::Sqlite, Backend::Postgres],
    };
    println!(
        "herald-perf: {} CPU cores, release build: {}, herald at {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        !cfg!(debug_assertions),
        herald_bin().display()
    );
    let (sink, url) = start_sink().await?;
    let mut r = Report { lines: Vec::new() };
    let mut small: HashMap<&str, f64> = HashMap::new();
    for &b in &backends {
        if wants("drain") || wants("big") || wants("scheduled") {
            small.insert(b.name(), drain_case(&args, b, &mut r).await?);
        }
        if wants("sink") {
            sink_case(&args, b, &sink, &url, &mut r).await?;
        }
        if wants("slow") {
            slow_case(&args, b, &sink, &url, &mut r).await?;
        }
        if wants("big") {
            big_case(&args, b, small[b.name()], &mut r).await?;
        }
        if wants("scheduled") {
            scheduled_case(&args, b, small[b.name()], &mut r).await?;
        }
        if wants("latency") {
            latency_case(&args, b, &sink, &url, &mut r).await?;
        }
        if wants("webhooks") {
            webhooks_case(&args, b, &mut r).await?;
        }
        if wants("prune") {
            prune_case(&args, b, &mut r).await?;
        }
    }
    if wants("scale") && backends.contains(&Backend::Postgres) {
        scale_case(&args, &mut r).await?;
    }
    for backend in [Backend::Sqlite, Backend::Mariadb] {
        if wants("scale") && backends.contains(&backend) {
            scale_queries_case(&args, backend, &mut r).await?;
        }
    }
    if wants("workers") && backends.contains(&Backend::Postgres) {
        workers_case(&args, &sink, &url, &mut r).await?;
    }
    let rejected = sink.rejected.load(Ordering::Relaxed);
    r.line(format!("requests the sink refused as Twilio would: {rejected}"));
    println!("\nsummary:");
    for l in &r.lines {
        println!("  {l}");
    }
    Ok(())
}
