//! `herald migrate [--dry-run]`: create or upgrade Herald's tables, and
//! adopt a `notification_messages` table that a POS created, printing every
//! change first. Nothing is changed when the plan has a problem.

use anyhow::anyhow;

use herald::config::Config;
use herald::store::Plan;

#[derive(clap::Args)]
pub(crate) struct MigrateArgs {
    /// Print what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Exit 0 if the database is up to date, 1 (saying what is missing) if
    /// this Herald has migrations to apply or a table to adopt. Changes nothing.
    #[arg(long, conflicts_with = "dry_run")]
    check: bool,
}

/// The plan, one line per change.
fn describe(plan: &Plan, backend: &str) -> Vec<String> {
    let mut out = Vec::new();
    if plan.adopting {
        out.push("notification_messages exists and was created by another program (your POS): adopting it.".to_owned());
        for step in &plan.steps {
            out.push(format!("  change: {}", step.says));
        }
        for note in &plan.notes {
            out.push(format!("  {note}"));
        }
    }
    match plan.migrations.as_slice() {
        [] => {}
        [one] => out.push(format!("  apply Herald's migration {} ({})", one.0, one.1)),
        many => out.push(format!(
            "  apply Herald's migrations {} to {} ({}) on {backend}",
            many[0].0,
            many[many.len() - 1].0,
            many.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
    for (name, says) in &plan.online {
        out.push(format!("  build index {name} without blocking writes: {says}"));
    }
    if let Some(b) = plan.backfill {
        out.push(format!(
            "  index the metadata of older messages (ids {} to {}), in batches of {}",
            b.done_id + 1,
            b.until_id,
            herald::store::BACKFILL_BATCH
        ));
    }
    out
}

/// Index the metadata of messages older than the metadata triggers,
/// printing progress now and then.
async fn backfill(store: &herald::store::Store) -> anyhow::Result<()> {
    let Some(start) = store.metadata_backfill().await?.filter(|b| !b.complete()) else {
        return Ok(());
    };
    let total = (start.until_id - start.done_id).max(1);
    let began = std::time::Instant::now();
    let mut said = std::time::Instant::now();
    store
        .backfill_metadata(std::time::Duration::ZERO, |b| {
            if said.elapsed() >= std::time::Duration::from_secs(5) {
                said = std::time::Instant::now();
                say!(
                    "  metadata index: {}% ({} of {} ids)",
                    100 * (b.done_id - start.done_id) / total,
                    b.done_id - start.done_id,
                    total
                );
            }
        })
        .await?;
    say!(
        "  metadata index: older messages indexed in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

pub(crate) async fn run(config: Config, args: MigrateArgs) -> anyhow::Result<()> {
    let mut store = herald::app::connect(&config).await?;
    let plan = store.plan_migration(&config.column_map).await?;
    let backend = store.backend_name();
    let where_ = config.database_url.redacted();
    if !plan.problems.is_empty() {
        for line in describe(&plan, backend) {
            say!("{line}");
        }
        for p in &plan.problems {
            eprintln!("error: {p}");
        }
        return Err(anyhow!(
            "notification_messages cannot be adopted as it is ({} problem(s) above); nothing was changed",
            plan.problems.len()
        ));
    }
    if plan.is_empty() && !plan.adopting && plan.backfill.is_none() {
        say!("database schema is up to date ({backend}, {where_})");
        return Ok(());
    }
    if args.check {
        for line in describe(&plan, backend) {
            say!("{line}");
        }
        return Err(anyhow!(
            "the database is behind this Herald ({} migration(s) to apply{}{}{}): run `herald migrate`",
            plan.migrations.len(),
            if plan.online.is_empty() {
                ""
            } else {
                ", indexes to build"
            },
            if plan.backfill.is_some() {
                ", older messages' metadata to index"
            } else {
                ""
            },
            if plan.adopting { ", and the table to adopt" } else { "" }
        ));
    }
    let fresh = plan.migrations.first().is_some_and(|(v, _)| *v == 1) && !plan.adopting;
    if fresh {
        say!("creating Herald's tables in {where_} ({backend}):");
    } else if !plan.adopting {
        say!("upgrading Herald's tables in {where_} ({backend}):");
    }
    for line in describe(&plan, backend) {
        say!("{line}");
    }
    if args.dry_run {
        say!("dry run: nothing was changed (run `herald migrate` to apply)");
        return Ok(());
    }
    store.apply_migration(&plan).await?;
    backfill(&store).await?;
    say!(
        "done: {} change(s) and {} migration(s) applied; database schema is up to date ({backend})",
        plan.steps.len(),
        plan.migrations.len()
    );
    Ok(())
}
