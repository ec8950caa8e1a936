//! The `herald` command line.

use std::process::ExitCode;

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use herald::app;
use herald::clock::{Clock, SystemClock};
use herald::config::Config;
use herald::domain::{Channel, MessageStatus, NewMessage, RawMessage, ValidationError};
use herald::processor::{Mode, Shutdown};
use herald::store::{ListFilter, Message, StoreError};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Notification delivery (SMS, WhatsApp, email) from a notification_messages table"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API (and the processor, unless ENABLE_MESSAGE_PROCESSOR=false) until SIGINT/SIGTERM.
    Serve,
    /// Send every message that is due, then exit (for cron). With --watch, run until stopped.
    Process {
        /// Keep running, picking up new messages as they arrive, until SIGINT/SIGTERM.
        #[arg(long)]
        watch: bool,
    },
    /// Queue one message and print its id.
    Send {
        /// sms, whatsapp or email
        #[arg(long)]
        channel: String,
        /// E.164 phone number (+15551234567), whatsapp:+E164, or an email address
        #[arg(long)]
        to: String,
        /// The text of the message
        #[arg(long)]
        body: Option<String>,
        /// Email subject
        #[arg(long)]
        subject: Option<String>,
        /// Email HTML part
        #[arg(long)]
        html: Option<String>,
        /// Send no earlier than this time (RFC 3339, e.g. 2026-12-01T09:00:00+01:00)
        #[arg(long)]
        send_at: Option<String>,
        /// A JSON object stored with the message (e.g. '{"order_id": 42}')
        #[arg(long)]
        metadata: Option<String>,
        /// SMS/WhatsApp: send this Twilio Content template (HX…) instead of a body
        #[arg(long)]
        content_sid: Option<String>,
        /// The template's variables as a JSON object (e.g. '{"1": "Ana"}')
        #[arg(long)]
        content_variables: Option<String>,
        /// Render this saved template instead of giving --subject/--body/--html
        #[arg(long)]
        template: Option<String>,
        /// Template locale (e.g. pt-BR; falls back to pt, then the template's default)
        #[arg(long)]
        locale: Option<String>,
        /// Template data as a JSON object (e.g. '{"customer": "Ana", "total": "R$ 10"}')
        #[arg(long)]
        data: Option<String>,
    },
    /// Show recent messages (the guide's monitoring query) and counts.
    Status {
        /// Only messages with this status (pending, processing, sent, failed, cancelled)
        #[arg(long)]
        status: Option<String>,
        /// Only messages on this channel
        #[arg(long)]
        channel: Option<String>,
        /// How many messages to show
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10000))]
        limit: u32,
    },
    /// Queue failed messages again, with a fresh round of retries.
    Retry {
        /// Message ids
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        ids: Vec<i64>,
        /// Retry every failed message
        #[arg(long)]
        failed: bool,
    },
    /// Cancel pending (or scheduled) messages.
    Cancel {
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Create or upgrade the database schema.
    Migrate,
    /// The suppression list: recipients who must not be messaged.
    #[command(subcommand)]
    Suppressions(SuppressionsCommand),
    /// Message templates (MiniJinja), versioned, per locale.
    #[command(subcommand)]
    Templates(TemplatesCommand),
}

#[derive(Subcommand)]
enum TemplatesCommand {
    /// Create a template or save a new version of it.
    Put {
        name: String,
        /// e.g. en, pt, pt-BR
        #[arg(long, default_value = "en")]
        locale: String,
        /// sms, whatsapp or email (default: every channel)
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        subject: Option<String>,
        #[arg(long)]
        body: Option<String>,
        #[arg(long)]
        html: Option<String>,
        /// Twilio Content template SID (HX…)
        #[arg(long)]
        content_sid: Option<String>,
        /// The Content template's variables, e.g. '{"1": "{{ customer }}"}'
        #[arg(long)]
        content_variables: Option<String>,
        /// Make this locale the template's default
        #[arg(long)]
        default: bool,
    },
    /// List templates (latest version of each locale).
    List,
    /// Show one template.
    Show { name: String },
    /// Delete a template (queued messages keep their text).
    Delete { name: String },
    /// Render a template with data, without queueing anything.
    Preview {
        name: String,
        #[arg(long)]
        locale: Option<String>,
        #[arg(long, default_value = "{}")]
        data: String,
    },
}

#[derive(Subcommand)]
enum SuppressionsCommand {
    /// List suppressed recipients, newest first.
    List {
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// Suppress a recipient on a channel.
    Add {
        #[arg(long)]
        channel: String,
        #[arg(long)]
        to: String,
        #[arg(long, default_value = "added by an operator")]
        reason: String,
    },
    /// Remove a suppression (the customer opted back in).
    Remove {
        #[arg(long)]
        channel: String,
        #[arg(long)]
        to: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            for line in &e.0 {
                eprintln!("error: {line}");
            }
            return ExitCode::from(2);
        }
    };
    herald::telemetry::init(config.log_format, &config.log_level);
    match run(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let (handle, shutdown) = Shutdown::new();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutting down: no new requests; finishing requests and sends in flight");
                handle.trigger();
            });
            app::serve(config, shutdown).await
        }
        Command::Suppressions(cmd) => suppressions(config, cmd).await,
        Command::Templates(cmd) => templates(config, cmd).await,
        Command::Migrate => {
            let store = app::open_store(&config).await?;
            println!("database schema is up to date ({})", store.backend_name());
            Ok(())
        }
        Command::Process { watch } => process(config, watch).await,
        Command::Send {
            channel,
            to,
            body,
            subject,
            html,
            send_at,
            metadata,
            content_sid,
            content_variables,
            template,
            locale,
            data,
        } => {
            // Parse everything before touching the database: nothing bad is stored.
            let send_at = send_at.map(|s| parse_time("--send-at", &s)).transpose()?;
            let metadata = metadata
                .map(|m| serde_json::from_str(&m).map_err(|e| anyhow!("--metadata: not valid JSON: {e}")))
                .transpose()?;
            let content_variables = content_variables
                .map(|m| {
                    serde_json::from_str::<serde_json::Value>(&m)
                        .map_err(|e| anyhow!("--content-variables: not valid JSON: {e}"))
                })
                .transpose()?;
            let raw = RawMessage {
                content_sid,
                content_variables,
                channel: Some(channel),
                recipient: Some(to),
                subject,
                body,
                html_body: html,
                send_at,
                metadata,
            };
            let data = data
                .map(|d| {
                    serde_json::from_str::<serde_json::Value>(&d).map_err(|e| anyhow!("--data: not valid JSON: {e}"))
                })
                .transpose()?;
            let store = app::open_store(&config).await?;
            let msg = match template {
                Some(name) => herald::templates::prepare(&store, raw, &name, locale.as_deref(), data.as_ref())
                    .await
                    .map_err(|e| match e {
                        herald::templates::PrepareError::Invalid(v) => cli_field_error(v),
                        other => anyhow::Error::new(other),
                    })?,
                None => {
                    if data.is_some() || locale.is_some() {
                        return Err(anyhow!("--data and --locale are only used with --template"));
                    }
                    NewMessage::parse(&raw).map_err(cli_field_error)?
                }
            };
            let stored = store.enqueue(&msg, SystemClock.now()).await?;
            println!("{}", stored.id);
            Ok(())
        }
        Command::Status { status, channel, limit } => {
            let status = status
                .map(|s| MessageStatus::parse(&s).map_err(cli_field_error))
                .transpose()?;
            let channel = channel
                .map(|c| Channel::parse(&c).map_err(|e| anyhow!("--channel: {e}")))
                .transpose()?;
            let store = app::open_store(&config).await?;
            let filter = ListFilter {
                status,
                channel: channel.map(|c| c.to_string()),
                limit,
                ..ListFilter::default()
            };
            let mut rows = store.list(&filter).await?;
            // The guide's monitoring order.
            rows.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
            print!("{}", status_table(&rows));
            let counts = store.counts().await?;
            let mut totals: Vec<(String, i64)> = Vec::new();
            for c in counts {
                match totals.iter_mut().find(|(s, _)| *s == c.status) {
                    Some((_, n)) => *n += c.count,
                    None => totals.push((c.status, c.count)),
                }
            }
            let summary: Vec<String> = totals.iter().map(|(s, n)| format!("{s}: {n}")).collect();
            println!(
                "\n{}",
                if summary.is_empty() {
                    "no messages".to_owned()
                } else {
                    summary.join("  ")
                }
            );
            Ok(())
        }
        Command::Retry { ids, failed } => {
            let store = app::open_store(&config).await?;
            let now = SystemClock.now();
            if failed {
                let done = store.retry_all_failed(now).await?;
                println!("{} failed message(s) queued again", done.len());
                return Ok(());
            }
            let done = store.retry(&ids, now).await?;
            let mut problems = Vec::new();
            for id in &ids {
                if done.contains(id) {
                    println!("{id}: queued again");
                } else {
                    problems.push(store.wrong_status(*id, "failed", "retried").await.to_string());
                }
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(anyhow!(problems.join("; ")))
            }
        }
        Command::Cancel { ids } => {
            let store = app::open_store(&config).await?;
            let mut problems = Vec::new();
            for id in ids {
                match store.cancel(id, SystemClock.now()).await {
                    Ok(_) => println!("{id}: cancelled"),
                    Err(e @ (StoreError::NotFound(_) | StoreError::WrongStatus { .. })) => problems.push(e.to_string()),
                    Err(e) => return Err(e.into()),
                }
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(anyhow!(problems.join("; ")))
            }
        }
    }
}

async fn process(config: Config, watch: bool) -> anyhow::Result<()> {
    app::announce_providers(&config);
    let store = app::open_store(&config).await?;
    let processor = app::build_processor(&config, store)?;
    let (handle, shutdown) = Shutdown::new();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing sends in flight, handing back the rest");
        handle.trigger();
    });
    let mode = if watch { Mode::Watch } else { Mode::Once };
    tracing::info!(worker = %processor.config().worker_id, watch, "processor started");
    let summary = processor.run(mode, shutdown).await.context("processing failed")?;
    tracing::info!(
        sent = summary.sent,
        failed = summary.failed,
        retrying = summary.retried,
        released = summary.released,
        "processor stopped"
    );
    if !watch {
        println!(
            "sent {}, failed {}, retrying later {}",
            summary.sent, summary.failed, summary.retried
        );
    }
    Ok(())
}

async fn templates(config: Config, cmd: TemplatesCommand) -> anyhow::Result<()> {
    use herald::templates::{check, render, TemplateParts};
    let store = app::open_store(&config).await?;
    let print = |t: &herald::store::TemplateVersion| {
        println!(
            "{} v{} [{}{}] channel: {}",
            t.name,
            t.version,
            t.locale,
            if t.is_default { ", default" } else { "" },
            t.channel.as_deref().unwrap_or("any")
        );
        for (label, part) in [
            ("subject", &t.parts.subject),
            ("body", &t.parts.body),
            ("html", &t.parts.html_body),
            ("content_sid", &t.parts.content_sid),
        ] {
            if let Some(p) = part {
                println!("  {label}: {p}");
            }
        }
    };
    match cmd {
        TemplatesCommand::Put {
            name,
            locale,
            channel,
            subject,
            body,
            html,
            content_sid,
            content_variables,
            default,
        } => {
            let channel = channel
                .map(|c| Channel::parse(&c).map_err(|e| anyhow!("--channel: {e}")))
                .transpose()?;
            let content_variables = content_variables
                .map(|v| {
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&v)
                        .map_err(|e| anyhow!("--content-variables: {e}"))
                })
                .transpose()?;
            let parts = TemplateParts {
                subject,
                body,
                html_body: html,
                content_sid,
                content_variables,
            };
            check(&parts).map_err(cli_field_error)?;
            let t = store
                .put_template(&name, &locale, channel.map(|c| c.as_str()), &parts, default)
                .await?;
            print(&t);
        }
        TemplatesCommand::List => {
            let all = store.templates(None).await?;
            if all.is_empty() {
                println!("no templates");
            }
            for t in all {
                print(&t);
            }
        }
        TemplatesCommand::Show { name } => {
            let all = store.templates(Some(&name)).await?;
            if all.is_empty() {
                return Err(anyhow!("no template named {name:?}"));
            }
            for t in all {
                print(&t);
            }
        }
        TemplatesCommand::Delete { name } => {
            if !store.delete_template(&name).await? {
                return Err(anyhow!("no template named {name:?}"));
            }
            println!("template {name} deleted");
        }
        TemplatesCommand::Preview { name, locale, data } => {
            let data: serde_json::Value =
                serde_json::from_str(&data).map_err(|e| anyhow!("--data: not valid JSON: {e}"))?;
            let t = store
                .find_template(&name, locale.as_deref())
                .await?
                .ok_or_else(|| anyhow!("no template named {name:?}"))?;
            let r = render(&t.parts, &data).map_err(cli_field_error)?;
            println!("{} v{} [{}]", t.name, t.version, t.locale);
            for (label, part) in [
                ("subject", r.subject),
                ("body", r.body),
                ("html", r.html_body),
                ("content_sid", r.content_sid),
            ] {
                if let Some(p) = part {
                    println!("{label}: {p}");
                }
            }
            if let Some(v) = r.content_variables {
                println!("content_variables: {v}");
            }
        }
    }
    Ok(())
}

async fn suppressions(config: Config, cmd: SuppressionsCommand) -> anyhow::Result<()> {
    use herald::http::suppressions::parse_entry;
    let entry = |channel: &str, to: &str| parse_entry(Some(channel), Some(to)).map_err(cli_field_error);
    match cmd {
        SuppressionsCommand::List { channel, limit } => {
            let channel = channel
                .map(|c| Channel::parse(&c).map_err(|e| anyhow!("--channel: {e}")))
                .transpose()?;
            let store = app::open_store(&config).await?;
            let rows = store.suppressions(channel.map(|c| c.as_str()), limit).await?;
            if rows.is_empty() {
                println!("no suppressed recipients");
            }
            for r in rows {
                let at = r
                    .created_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                println!(
                    "{:<9} {:<32} {:<20} {:<9} {}",
                    r.channel, r.recipient, at, r.source, r.reason
                );
            }
            Ok(())
        }
        SuppressionsCommand::Add { channel, to, reason } => {
            let (channel, recipient) = entry(&channel, &to)?;
            let store = app::open_store(&config).await?;
            let added = store
                .suppress(
                    channel.as_str(),
                    &recipient.to_string(),
                    &reason,
                    "cli",
                    SystemClock.now(),
                )
                .await?;
            println!(
                "{recipient} {} on {channel}",
                if added { "suppressed" } else { "was already suppressed" }
            );
            Ok(())
        }
        SuppressionsCommand::Remove { channel, to } => {
            let (channel, recipient) = entry(&channel, &to)?;
            let store = app::open_store(&config).await?;
            if store.unsuppress(channel.as_str(), &recipient.to_string()).await? {
                println!("{recipient} removed from the {channel} suppression list");
                Ok(())
            } else {
                Err(anyhow!("{recipient} is not suppressed on {channel}"))
            }
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn parse_time(flag: &str, s: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| anyhow!("{flag}: {s:?} is not an RFC 3339 time with an offset, e.g. 2026-12-01T09:00:00Z ({e})"))
}

/// A validation error phrased with the flag the user typed.
fn cli_field_error(e: ValidationError) -> anyhow::Error {
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

fn status_table(rows: &[Message]) -> String {
    let header = [
        "ID",
        "CHANNEL",
        "RECIPIENT",
        "STATUS",
        "TRIES",
        "SENT_AT",
        "CREATED_AT",
        "ERROR",
    ];
    let fmt_time = |t: Option<DateTime<Utc>>| t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default();
    let table: Vec<[String; 8]> = rows
        .iter()
        .map(|m| {
            let error = m
                .error
                .as_ref()
                .map(|e| match (e.get("code"), e.get("message")) {
                    (Some(c), Some(msg)) => format!("{}: {}", json_str(c), json_str(msg)),
                    _ => e.to_string(),
                })
                .unwrap_or_default();
            [
                m.id.to_string(),
                m.channel.clone(),
                m.recipient.clone(),
                m.status.clone(),
                m.attempts.to_string(),
                fmt_time(m.sent_at),
                fmt_time(m.created_at),
                truncate(&error, 60),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned();
        s.push('\n');
        s
    };
    let mut out = line(&header.map(str::to_owned));
    for row in &table {
        out.push_str(&line(row));
    }
    out
}

fn json_str(v: &serde_json::Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}
