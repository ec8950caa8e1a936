//! `herald send | retry | cancel`: queue one message, and steer queued ones.

use anyhow::anyhow;

use herald::app;
use herald::clock::{Clock, SystemClock};
use herald::config::Config;
use herald::domain::{NewMessage, RawMessage};
use herald::store::StoreError;

use super::{cli_field_error, parse_json, parse_time};

#[derive(clap::Args)]
pub(crate) struct SendArgs {
    /// sms, whatsapp or email
    #[arg(long)]
    channel: String,
    /// E.164 phone number (+14153234567), whatsapp:+E164, or an email address
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
}

/// `herald send`, parsed: the message fields, and the template to render them from.
struct SendRequest {
    raw: RawMessage,
    template: Option<(String, Option<String>, Option<serde_json::Value>)>,
}

impl TryFrom<SendArgs> for SendRequest {
    type Error = anyhow::Error;

    fn try_from(a: SendArgs) -> anyhow::Result<SendRequest> {
        let raw = RawMessage {
            channel: Some(a.channel),
            recipient: Some(a.to),
            subject: a.subject,
            body: a.body,
            html_body: a.html,
            send_at: a.send_at.map(|s| parse_time("--send-at", &s)).transpose()?,
            metadata: a.metadata.map(|m| parse_json("--metadata", &m)).transpose()?,
            content_sid: a.content_sid,
            content_variables: a
                .content_variables
                .map(|v| parse_json("--content-variables", &v))
                .transpose()?,
        };
        let data = a.data.map(|d| parse_json("--data", &d)).transpose()?;
        let template = match a.template {
            Some(name) => Some((name, a.locale, data)),
            None if data.is_some() || a.locale.is_some() => {
                return Err(anyhow!("--data and --locale are only used with --template"))
            }
            None => None,
        };
        Ok(SendRequest { raw, template })
    }
}

pub(super) async fn send(config: Config, args: SendArgs) -> anyhow::Result<()> {
    // Parse everything before touching the database: nothing bad is stored.
    let req = SendRequest::try_from(args)?;
    let store = app::open_store(&config).await?;
    let msg = match req.template {
        Some((name, locale, data)) => {
            herald::templates::prepare(&store, req.raw, &name, locale.as_deref(), data.as_ref())
                .await
                .map_err(|e| match e {
                    herald::templates::PrepareError::Invalid(v) => cli_field_error(v),
                    herald::templates::PrepareError::Limit(text) => anyhow!("--template: {text}"),
                    other => anyhow::Error::new(other),
                })?
        }
        None => NewMessage::parse(&req.raw).map_err(cli_field_error)?,
    };
    let stored = store.enqueue(&msg, SystemClock.now()).await?;
    say!("{}", stored.id);
    Ok(())
}

#[derive(clap::Args)]
pub(crate) struct RetryArgs {
    /// Message ids: failed ones are queued again with a fresh round of
    /// retries; pending ones waiting for a retry delay or a provider's pause
    /// are made due now
    #[arg(required_unless_present_any = ["failed", "parked"], conflicts_with_all = ["failed", "parked"])]
    ids: Vec<i64>,
    /// Retry every failed message
    #[arg(long)]
    failed: bool,
    /// Make every message waiting for a retry delay or a provider's pause due now
    #[arg(long)]
    parked: bool,
}

pub(super) async fn retry(config: Config, args: RetryArgs) -> anyhow::Result<()> {
    let store = app::open_store(&config).await?;
    let now = SystemClock.now();
    if args.failed || args.parked {
        if args.failed {
            let done = store.retry_all_failed(now).await?;
            say!("{} failed message(s) queued again", done.len());
        }
        if args.parked {
            let done = store.retry_parked(now).await?;
            say!("{} waiting message(s) due now", done.len());
        }
        return Ok(());
    }
    each(args.ids, |id| {
        let store = store.clone();
        async move {
            store.retry_one(id, now).await?;
            say!("{id}: queued again");
            Ok(())
        }
    })
    .await
}

#[derive(clap::Args)]
pub(crate) struct CancelArgs {
    #[arg(required = true)]
    ids: Vec<i64>,
}

pub(super) async fn cancel(config: Config, args: CancelArgs) -> anyhow::Result<()> {
    let store = app::open_store(&config).await?;
    each(args.ids, |id| {
        let store = store.clone();
        async move {
            store.cancel(id, SystemClock.now()).await?;
            say!("{id}: cancelled");
            Ok(())
        }
    })
    .await
}

/// Apply `f` to every id; report each message that was not in the right
/// state (or not found) and fail at the end if any was; stop on a database error.
async fn each<F, Fut>(ids: Vec<i64>, f: F) -> anyhow::Result<()>
where
    F: Fn(i64) -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let mut problems = Vec::new();
    for id in ids {
        match f(id).await {
            Ok(()) => {}
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
