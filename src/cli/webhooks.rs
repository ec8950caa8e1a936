//! `herald webhooks …`: status webhook endpoints (where Herald tells the
//! POS what happened to its messages), their deliveries, and replays.

use anyhow::{anyhow, bail};

use herald::app;
use herald::clock::{Clock, SystemClock};
use herald::config::Config;
use herald::domain::{EndpointUrl, EventFilter};
use herald::signing::WebhookSecret;
use herald::store::{Endpoint, Store};

use super::cli_field_error;

#[derive(clap::Subcommand)]
pub(crate) enum WebhooksCommand {
    /// List endpoints (never their secrets).
    List,
    /// Add an endpoint and print its signing secret (shown only now).
    Add {
        /// https://… (http:// only to 127.0.0.1, [::1] or localhost)
        #[arg(long)]
        url: String,
        /// Event types, comma-separated (message.sent,message.failed), or * for all
        #[arg(long, default_value = "*")]
        events: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete an endpoint with its deliveries.
    Remove { id: i64 },
    /// Send to the endpoint again (also after Herald disabled it); its waiting deliveries resume.
    Enable { id: i64 },
    /// Stop sending to the endpoint.
    Disable { id: i64 },
    /// A new signing secret; the old one keeps signing too for --overlap-hours.
    Rotate {
        id: i64,
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(i64).range(0..=168))]
        overlap_hours: i64,
    },
    /// The endpoint's delivery log: each request, its status and latency.
    Log {
        id: i64,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
    },
    /// Deliver again one event (--event evt_…) or every event of a time range (--from, --to: RFC 3339).
    Replay {
        id: i64,
        #[arg(long)]
        event: Option<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
    },
}

fn time(flag: &str, v: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(v.trim())
        .map(|t| t.to_utc())
        .map_err(|_| anyhow!("{flag} must be RFC 3339, e.g. 2026-12-01T00:00:00Z"))
}

async fn endpoint(store: &Store, id: i64) -> anyhow::Result<Endpoint> {
    store
        .endpoint(id)
        .await?
        .ok_or_else(|| anyhow!("no webhook endpoint {id} (herald webhooks list shows them)"))
}

fn show(e: &Endpoint) {
    let state = match (&e.enabled, &e.disabled_reason) {
        (true, _) => "enabled".to_owned(),
        (false, Some(r)) => format!("disabled by Herald: {r}"),
        (false, None) => "disabled".to_owned(),
    };
    say!("{:<5} {:<48} {:<40} {state}", e.id, e.url, e.events.join(","));
}

pub(super) async fn run(config: Config, cmd: WebhooksCommand) -> anyhow::Result<()> {
    let now = SystemClock.now();
    match cmd {
        WebhooksCommand::List => {
            let store = app::open_store(&config).await?;
            let all = store.endpoints().await?;
            if all.is_empty() {
                say!("no webhook endpoints (add one: herald webhooks add --url https://pos.example.com/herald)");
            }
            for e in &all {
                show(e);
            }
        }
        WebhooksCommand::Add {
            url,
            events,
            description,
        } => {
            let url = EndpointUrl::parse(&url).map_err(cli_field_error)?;
            let words: Vec<String> = events.split(',').map(|w| w.trim().to_owned()).collect();
            let events = EventFilter::parse(&words).map_err(cli_field_error)?;
            let store = app::open_store(&config).await?;
            let secret = WebhookSecret::generate();
            let e = store
                .create_endpoint(&url, description.as_deref(), &events, secret.expose(), true, now)
                .await?;
            show(&e);
            say!(
                "secret (shown only now; verify webhook-signature with it): {}",
                secret.expose()
            );
        }
        WebhooksCommand::Remove { id } => {
            let store = app::open_store(&config).await?;
            if !store.delete_endpoint(id).await? {
                bail!("no webhook endpoint {id}");
            }
            say!("webhook endpoint {id} deleted");
        }
        WebhooksCommand::Enable { id } | WebhooksCommand::Disable { id } => {
            let enable = matches!(cmd, WebhooksCommand::Enable { .. });
            let store = app::open_store(&config).await?;
            let mut e = endpoint(&store, id).await?;
            if enable && !e.enabled {
                e.failing_since = None;
            }
            e.enabled = enable;
            e.disabled_reason = None;
            store.update_endpoint(&e, now).await?;
            show(&endpoint(&store, id).await?);
        }
        WebhooksCommand::Rotate { id, overlap_hours } => {
            let store = app::open_store(&config).await?;
            endpoint(&store, id).await?;
            let secret = WebhookSecret::generate();
            let until = now + chrono::Duration::hours(overlap_hours);
            store.rotate_endpoint_secret(id, secret.expose(), until, now).await?;
            say!("new secret (shown only now): {}", secret.expose());
            if overlap_hours > 0 {
                say!("the old secret also signs until {}", herald::clock::format_ts(until));
            }
        }
        WebhooksCommand::Log { id, limit } => {
            let store = app::open_store(&config).await?;
            endpoint(&store, id).await?;
            for a in store.delivery_attempts(id, None, limit).await? {
                let at =
                    a.at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default();
                let status = a.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
                say!(
                    "{at} {:<32} {:<20} #{:<3} {status:>4} {:>6} ms {}",
                    a.event_id,
                    a.event_type,
                    a.attempt,
                    a.latency_ms,
                    a.error.unwrap_or_default()
                );
            }
        }
        WebhooksCommand::Replay { id, event, from, to } => {
            let store = app::open_store(&config).await?;
            endpoint(&store, id).await?;
            let n = match (event, from) {
                (Some(ev), None) => {
                    if !store.replay_event(id, &ev, now).await? {
                        bail!("no event {ev:?} was ever sent");
                    }
                    1
                }
                (None, Some(from)) => {
                    let from = time("--from", &from)?;
                    let to = to.as_deref().map(|t| time("--to", t)).transpose()?.unwrap_or(now);
                    if to <= from {
                        bail!("--to must be after --from");
                    }
                    store.replay_range(id, from, to, now).await?
                }
                _ => bail!("give --event evt_…, or --from (and --to) for a time range"),
            };
            say!("{n} delivery(ies) queued for endpoint {id}");
        }
    }
    Ok(())
}
