//! The command line: one file per command family. Arguments are parsed into
//! the same domain types the HTTP API uses, before anything is stored.

/// `println!` that ends the program quietly when stdout is closed
/// (`herald status | head`), instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod doctor;
mod messages;
mod migrate;
mod process;
mod progress;
mod prune;
mod status;
mod suppressions;
mod templates;
mod webhooks;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use herald::app;
use herald::config::Config;
use herald::domain::ValidationError;
use herald::processor::Shutdown;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Notification delivery (SMS, WhatsApp, email) from a notification_messages table"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the HTTP API (and the processor, unless ENABLE_MESSAGE_PROCESSOR=false) until SIGINT/SIGTERM.
    Serve,
    /// Send every message that is due, then exit (for cron). With --watch, run until stopped.
    Process(process::ProcessArgs),
    /// Queue one message and print its id.
    Send(messages::SendArgs),
    /// Show recent messages (the guide's monitoring query) and counts.
    Status(status::StatusArgs),
    /// Queue failed messages again, with a fresh round of retries.
    Retry(messages::RetryArgs),
    /// Cancel pending (or scheduled) messages.
    Cancel(messages::CancelArgs),
    /// Create or upgrade the database schema, or adopt an existing notification_messages table (prints every change first).
    Migrate(migrate::MigrateArgs),
    /// The suppression list: recipients who must not be messaged.
    #[command(subcommand)]
    Suppressions(suppressions::SuppressionsCommand),
    /// Message templates (MiniJinja), versioned, per locale.
    #[command(subcommand)]
    Templates(templates::TemplatesCommand),
    /// Status webhooks to the POS: endpoints, their delivery log, replays.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Delete finished messages older than --older-than (with their attempts and receipts), optionally archiving them first.
    Prune(prune::PruneArgs),
    /// Check the configuration, the database and each provider (live), with the fix for every problem; exit 1 on errors.
    Doctor(doctor::DoctorArgs),
    /// Exit 0 if the `herald serve` on this machine (HOST/PORT) answers /healthz within 3 s (for container and service health checks).
    Healthcheck,
    /// Hash a dashboard password for DASHBOARD_PASSWORD (reads it from standard input; prints an argon2 hash).
    HashPassword,
}

impl Command {
    /// The log level the command asks for, over `LOG_LEVEL` (`--quiet`).
    pub(crate) fn log_level(&self) -> Option<&'static str> {
        match self {
            Command::Process(p) if p.quiet => Some("warn"),
            _ => None,
        }
    }
}

/// `herald doctor`, with the configuration as loaded (or why it is not).
pub(crate) async fn doctor(
    args: doctor::DoctorArgs,
    config: Result<Config, herald::config::ConfigError>,
) -> std::process::ExitCode {
    doctor::run(config, args).await
}

pub(crate) async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let (handle, shutdown) = Shutdown::new();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutting down: no new requests; finishing requests and sends in flight");
                handle.trigger();
            });
            app::Application::build(config, app::Overrides::default())
                .await?
                .run_until_stopped(shutdown)
                .await
        }
        Command::Process(args) => process::run(config, args).await,
        Command::Send(args) => messages::send(config, args).await,
        Command::Status(args) => status::run(config, args).await,
        Command::Retry(args) => messages::retry(config, args).await,
        Command::Cancel(args) => messages::cancel(config, args).await,
        Command::Migrate(args) => migrate::run(config, args).await,
        Command::Suppressions(cmd) => suppressions::run(config, cmd).await,
        Command::Templates(cmd) => templates::run(config, cmd).await,
        Command::Webhooks(cmd) => webhooks::run(config, cmd).await,
        Command::Prune(args) => prune::run(config, args).await,
        Command::Healthcheck => healthcheck(&config).await,
        // Run by `main` before the configuration is checked (it reports
        // configuration errors as its first checks).
        Command::Doctor(_) => unreachable!("doctor runs from main"),
        Command::HashPassword => hash_password(),
    }
}

/// `herald healthcheck`: GET /healthz on the local server.
async fn healthcheck(config: &Config) -> anyhow::Result<()> {
    let host = match config.host.as_str() {
        "0.0.0.0" | "::" | "[::]" | "" => "127.0.0.1".to_owned(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_owned(),
    };
    let url = format!("http://{host}:{}/healthz", config.port);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let status = client
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {}", e.without_url()))?
        .status();
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    say!("ok: {url}");
    Ok(())
}

/// `herald hash-password`: the password comes from standard input (one
/// line), never from the command line, where `ps` and shell history see it.
pub(crate) fn hash_password() -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        eprintln!("Type the dashboard password (at least 12 characters) and press Enter:");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.chars().count() < 12 {
        anyhow::bail!("the password must be at least 12 characters");
    }
    let hash = herald::config::hash_password(password).map_err(anyhow::Error::msg)?;
    // Single quotes: a `.env` file keeps the `$` signs as they are.
    println!("DASHBOARD_PASSWORD='{hash}'");
    Ok(())
}

/// The error and its causes on one line, each said once (a cause whose
/// text its parent already includes is left out).
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub(crate) fn parse_time(flag: &str, s: &str) -> anyhow::Result<DateTime<Utc>> {
    herald::domain::parse_instant("time", s).map_err(|e| anyhow!("{flag}: {}", e.message))
}

/// A JSON argument, or an error naming the flag.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(flag: &str, s: &str) -> anyhow::Result<T> {
    serde_json::from_str(s).map_err(|e| anyhow!("{flag}: not valid JSON: {e}"))
}

/// A validation error phrased with the flag the user typed.
pub(crate) fn cli_field_error(e: ValidationError) -> anyhow::Error {
    let flag = match e.field {
        "recipient" => "--to",
        "html_body" => "--html",
        "send_at" => "--send-at",
        "content_sid" => "--content-sid",
        "content_variables" => "--content-variables",
        other => return anyhow!("--{other}: {}", e.message),
    };
    anyhow!("{flag}: {}", e.message)
}
