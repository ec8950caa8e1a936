//! `herald suppressions list | add | remove`.

use anyhow::anyhow;

use herald::app;
use herald::clock::{Clock, SystemClock};
use herald::config::Config;
use herald::domain::{parse_channel_and_recipient, Channel};

use super::cli_field_error;

#[derive(clap::Subcommand)]
pub(crate) enum SuppressionsCommand {
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

pub(super) async fn run(config: Config, cmd: SuppressionsCommand) -> anyhow::Result<()> {
    let entry = |channel: &str, to: &str| parse_channel_and_recipient(Some(channel), Some(to)).map_err(cli_field_error);
    match cmd {
        SuppressionsCommand::List { channel, limit } => {
            let channel = channel
                .map(|c| Channel::parse(&c).map_err(|e| anyhow!("--channel: {e}")))
                .transpose()?;
            let store = app::open_store(&config).await?;
            let rows = store.suppressions(channel, limit).await?;
            if rows.is_empty() {
                say!("no suppressed recipients");
            }
            for r in rows {
                let at = r
                    .created_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                say!(
                    "{:<9} {:<32} {:<20} {:<9} {}",
                    r.channel,
                    r.recipient,
                    at,
                    r.source,
                    r.reason
                );
            }
            Ok(())
        }
        SuppressionsCommand::Add { channel, to, reason } => {
            let recipient = entry(&channel, &to)?;
            let store = app::open_store(&config).await?;
            let added = store.suppress(&recipient, &reason, "cli", SystemClock.now()).await?;
            say!(
                "{recipient} {} on {}",
                if added { "suppressed" } else { "was already suppressed" },
                recipient.channel()
            );
            Ok(())
        }
        SuppressionsCommand::Remove { channel, to } => {
            let recipient = entry(&channel, &to)?;
            let store = app::open_store(&config).await?;
            if store.unsuppress(&recipient).await? {
                say!("{recipient} removed from the {} suppression list", recipient.channel());
                Ok(())
            } else {
                Err(anyhow!("{recipient} is not suppressed on {}", recipient.channel()))
            }
        }
    }
}
