//! The statements of retention (`herald prune`, `RETENTION_DAYS`): finished
//! messages with their attempts and receipts, finished webhook deliveries
//! with their log, old template versions no open message uses.

use super::{Dialect, Statement, Table, IDS};

/// The statuses a message never leaves by itself. Only these are pruned.
pub(crate) const FINISHED: &str = "('sent', 'failed', 'cancelled')";

#[derive(Debug)]
pub(crate) struct RetentionStatements {
    /// Up to `$2` finished messages created before `$1`, oldest first: (id).
    pub candidates: Statement,
    /// How many finished messages were created before `$1`.
    pub count: Statement,
    /// Those of the messages in the JSON array `$1` (MySQL: the ids given
    /// to `with_ids`) that are still finished, locked for deletion (skipping
    /// rows another transaction holds): (id). The deletes take their ids
    /// the same way.
    pub lock: Statement,
    /// Delete the attempts of the messages in the JSON array `$1`.
    pub delete_attempts: Statement,
    /// Delete the receipts of the messages in the JSON array `$1`.
    pub delete_events: Statement,
    /// Delete the messages in the JSON array `$1`.
    pub delete_messages: Statement,
    /// Delete up to `$2` finished webhook deliveries created before `$1`
    /// (their attempts go with them).
    pub delete_deliveries: Statement,
    /// How many finished webhook deliveries were created before `$1`.
    pub count_deliveries: Statement,
    /// Delete template versions created before `$1` that are not the
    /// newest of their name and locale, and no open message was made with.
    pub delete_templates: Statement,
    /// How many template versions [`Self::delete_templates`] would delete.
    pub count_templates: Statement,
    /// How many idempotency keys were created before `$1`.
    pub count_idempotency: Statement,
}

impl RetentionStatements {
    pub(crate) fn build(d: &dyn Dialect, t: &Table) -> RetentionStatements {
        let st = |sql: &str| d.statement(sql);
        let (status, created) = (t.col("status"), t.col("created_at"));
        // SQLite keeps times as text, in Herald's form or the POS's
        // `CURRENT_TIMESTAMP` form: the caller passes the cutoff's day
        // (`YYYY-MM-DD`), which orders the same against both.
        let cutoff = if d.name() == "sqlite" {
            "$1".to_owned()
        } else {
            d.ts("$1")
        };
        let finished_before = format!("{created} < {cutoff} AND {status} IN {FINISHED}");
        // The ids of a batch: a JSON array parameter, or on MySQL the ids
        // written in (`Statement::with_ids`), which it reads by primary key
        // (a JSON_TABLE semi-join scans the table).
        let ids = |p: &str| {
            if d.name() == "mysql" {
                IDS.to_owned()
            } else {
                format!("SELECT {} FROM {}", d.int("value"), d.json_array(p))
            }
        };
        let old_templates = format!(
            "SELECT t.id FROM notification_templates t
              WHERE t.created_at < {}
                AND t.version < (SELECT max(l.version) FROM notification_templates l
                                  WHERE l.name = t.name AND l.locale = t.locale)
                AND NOT EXISTS (SELECT 1 FROM notification_messages m
                                 WHERE m.{template} = t.name AND m.{version} = t.version AND m.{open})",
            d.ts("$1"),
            template = t.col("template"),
            version = t.col("template_version"),
            open = t.open(),
        );
        RetentionStatements {
            candidates: st(&format!(
                "SELECT {} FROM notification_messages WHERE {finished_before} ORDER BY {created} LIMIT $2",
                t.id("")
            )),
            count: st(&format!(
                "SELECT count(*) FROM notification_messages WHERE {finished_before}"
            )),
            lock: st(&format!(
                "SELECT {} FROM notification_messages m
                  WHERE m.id IN ({}) AND m.{status} IN {FINISHED} {}",
                t.id("m."),
                ids("$1"),
                d.skip_locked("m")
            )),
            delete_attempts: st(&format!(
                "DELETE FROM notification_attempts WHERE message_id IN ({})",
                ids("$1")
            )),
            delete_events: st(&format!(
                "DELETE FROM notification_events WHERE message_id IN ({})",
                ids("$1")
            )),
            delete_messages: st(&format!(
                "DELETE FROM notification_messages WHERE id IN ({}) AND {status} IN {FINISHED}",
                ids("$1")
            )),
            // The derived table: MySQL takes neither a LIMIT in an IN
            // subquery nor the table being deleted from in one.
            delete_deliveries: st(&format!(
                "DELETE FROM herald_webhook_outbox WHERE id IN (
                    SELECT id FROM (SELECT id FROM herald_webhook_outbox
                                     WHERE status <> 'pending' AND created_at < {}
                                     ORDER BY id LIMIT $2) AS old)",
                d.ts("$1")
            )),
            count_deliveries: st(&format!(
                "SELECT count(*) FROM herald_webhook_outbox WHERE status <> 'pending' AND created_at < {}",
                d.ts("$1")
            )),
            delete_templates: st(&format!(
                "DELETE FROM notification_templates WHERE id IN (SELECT id FROM ({old_templates}) AS old)"
            )),
            count_templates: st(&format!("SELECT count(*) FROM ({old_templates}) AS old")),
            count_idempotency: st(&format!(
                "SELECT count(*) FROM herald_idempotency_keys WHERE created_at < {}",
                d.ts("$1")
            )),
        }
    }
}
