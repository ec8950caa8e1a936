//! `herald status`: the guide's monitoring query, as a table, with counts.

use chrono::{DateTime, Utc};

use herald::app;
use herald::config::Config;
use herald::domain::{Channel, MessageStatus};
use herald::store::{ListFilter, Message};

use super::cli_field_error;

#[derive(clap::Args)]
pub(crate) struct StatusArgs {
    /// Only messages with this status (pending, processing, sent, failed, cancelled)
    #[arg(long)]
    status: Option<String>,
    /// Only messages on this channel
    #[arg(long)]
    channel: Option<String>,
    /// How many messages to show
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10000))]
    limit: u32,
    /// Count every sent message (a scan of the whole table; by default a
    /// table of more than 300,000 rows shows the database's estimate)
    #[arg(long)]
    exact: bool,
}

pub(super) async fn run(config: Config, args: StatusArgs) -> anyhow::Result<()> {
    let status = args
        .status
        .map(|s| MessageStatus::parse(&s).map_err(cli_field_error))
        .transpose()?;
    let channel = args
        .channel
        .map(|c| Channel::parse(&c).map_err(|e| anyhow::anyhow!("--channel: {e}")))
        .transpose()?;
    let store = app::open_store(&config).await?;
    let filter = ListFilter {
        status,
        channel,
        limit: args.limit,
        ..ListFilter::default()
    };
    let mut rows = store.list(&filter).await?;
    // The guide's monitoring order.
    rows.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    say!("{}", table(&rows).trim_end());
    let counts = if args.exact {
        store.counts_exact().await?
    } else {
        store.counts().await?
    };
    let mut totals: Vec<(String, i64, bool)> = Vec::new();
    for c in counts {
        match totals.iter_mut().find(|(s, _, _)| *s == c.status) {
            Some((_, n, e)) => {
                *n += c.count;
                *e |= c.estimated;
            }
            None => totals.push((c.status, c.count, c.estimated)),
        }
    }
    let summary: Vec<String> = totals
        .iter()
        .map(|(s, n, e)| if *e { format!("{s}: ~{n}") } else { format!("{s}: {n}") })
        .collect();
    let estimated = totals.iter().any(|t| t.2);
    say!(
        "\n{}",
        if summary.is_empty() {
            "no messages".to_owned()
        } else {
            summary.join("  ")
        }
    );
    if estimated {
        say!("(~: the database's estimate on a table this big; `herald status --exact` counts every row)");
    }
    Ok(())
}

/// The `error` column in one cell: `code: message` when it has both
/// (Herald's `ErrorColumn` does; a POS may write its own shape).
fn error_cell(e: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    match (e.get("code"), e.get("message")) {
        (Some(c), Some(m)) => format!("{}: {}", text(c), text(m)),
        _ => text(e),
    }
}

fn table(rows: &[Message]) -> String {
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
            [
                m.id.to_string(),
                m.channel.clone(),
                m.recipient.clone(),
                m.status.clone(),
                m.attempts.to_string(),
                fmt_time(m.sent_at),
                fmt_time(m.created_at),
                truncate(&m.error.as_ref().map(error_cell).unwrap_or_default(), 60),
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

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}
