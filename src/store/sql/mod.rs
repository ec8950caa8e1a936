//! Every SQL statement Herald runs, built once when the store connects.
//!
//! Statements are written once with `$1`, `$2`… placeholders (numbered in
//! the order the Rust code binds them) and translated for the backend: the
//! [`Dialect`] of each backend supplies only what differs (claiming, JSON
//! functions, time arithmetic, casts). Adding a backend means adding one
//! file with one `impl Dialect`.
//!
//! Statements about `notification_messages` go through [`Table`], which
//! names each of Herald's columns as the database has it, so a table that a
//! POS created keeps its own column names.

pub(crate) mod postgres;
pub(crate) mod sqlite;

pub(crate) use postgres::Postgres;
pub(crate) use sqlite::Sqlite;

use crate::domain::{Channel, MessageStatus};

/// Herald's columns of `notification_messages`, as every statement reads
/// them (the names the row decoders expect).
pub(crate) const COLUMNS: [&str; 29] = [
    "id",
    "channel",
    "recipient",
    "subject",
    "body",
    "html_body",
    "status",
    "attempts",
    "error",
    "provider",
    "provider_message_id",
    "send_at",
    "sent_at",
    "created_at",
    "updated_at",
    "metadata",
    "content_sid",
    "content_variables",
    "template",
    "template_version",
    "locale",
    "template_data",
    "delivery_status",
    "delivered_at",
    "delivery_error_code",
    "next_attempt_at",
    "lease_owner",
    "lease_expires_at",
    "retry_base",
];

/// The message table as this database has it.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// `(Herald's name, the column's name in the table)` for columns whose
    /// names differ; every other column has Herald's name.
    renamed: Vec<(&'static str, String)>,
}

impl Table {
    /// Herald's own layout: every column under its own name.
    pub(crate) fn herald() -> Table {
        Table { renamed: Vec::new() }
    }

    /// The table's name for Herald's column `col`, quoted where needed.
    pub(crate) fn col(&self, col: &str) -> String {
        match self.renamed.iter().find(|(h, _)| *h == col) {
            Some((_, name)) => quote_ident(name),
            None => col.to_owned(),
        }
    }

    /// The select list: every Herald column, under Herald's name.
    /// `prefix` qualifies the columns (`m.`), or is empty.
    pub(crate) fn select(&self, prefix: &str) -> String {
        COLUMNS
            .iter()
            .map(|c| {
                let name = self.col(c);
                if name == *c {
                    format!("{prefix}{c}")
                } else {
                    format!("{prefix}{name} AS {c}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The open-row predicate. It matches the partial index
    /// `notification_messages_open` word for word, so planners use it.
    pub(crate) fn open(&self) -> String {
        format!("{} IN ('pending', 'processing')", self.col("status"))
    }

    /// A column list for INSERT.
    pub(crate) fn cols(&self, cols: &[&str]) -> String {
        cols.iter().map(|c| self.col(c)).collect::<Vec<_>>().join(", ")
    }
}

/// `"name"` when the name is not a plain lower-case identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Which rows a claim may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimKind {
    /// Any due row.
    Any,
    /// Due rows of one channel (`$6`).
    Channel,
    /// Due rows whose channel is none of Herald's (they are failed, not sent).
    UnknownChannel,
}

/// What one backend's SQL does differently. Every method returns SQL with
/// `$n` placeholders; the parameters are documented on [`Statements`].
pub(crate) trait Dialect: Send + Sync {
    /// `postgres`, `sqlite`.
    fn name(&self) -> &'static str;
    /// `$n` as the type of a timestamp column (Herald binds timestamps as
    /// text in [`crate::clock::format_ts`]'s form).
    fn ts(&self, p: &str) -> String;
    /// `$n` as text, where the type cannot be inferred (`$1 IS NULL`).
    fn text(&self, p: &str) -> String;
    /// `$n` as a big integer, where the type cannot be inferred.
    fn int(&self, p: &str) -> String;
    /// A timestamp expression read back as Herald's text form.
    fn ts_text(&self, expr: &str) -> String;
    /// The placeholders of `sql` (written with `$n`) in this backend's syntax.
    fn statement(&self, sql: &str) -> Statement;

    /// The values of a JSON array parameter, one row each, as `value`.
    fn json_array(&self, p: &str) -> String;
    /// Insert the messages of a JSON array (`$1`) created at `$2`.
    fn insert_many(&self, t: &Table) -> String;
    /// Lease due rows: `$1` worker, `$2` now, `$3` lease expiry, `$4` limit,
    /// `$5` only ids above this, `$6` channel (only for [`ClaimKind::Channel`]).
    fn claim(&self, t: &Table, kind: ClaimKind) -> String;
    /// Record completions (`$1`, JSON array) at `$2`, only where `$3` holds the lease.
    fn complete(&self, t: &Table) -> String;
    /// Add attempts (`$1`, JSON array) made by worker `$2`.
    fn insert_attempts(&self) -> String;
    /// When the next open row becomes due (Herald's text form).
    fn next_due(&self, t: &Table) -> String;
    /// The oldest due pending row's `created_at` at `$1` (Herald's text form).
    fn oldest_due(&self, t: &Table) -> String;
    /// A statement that holds a transaction-scoped lock on the name `$p`,
    /// or `None` where transactions already serialize writers (SQLite).
    fn lock_name(&self, p: &str) -> Option<String>;
    /// `send_at` is after `$p` (scheduled).
    fn scheduled_after(&self, t: &Table, p: &str) -> String;
}

/// A statement in the backend's syntax, and the order in which to bind the
/// caller's parameters (the caller always binds `$1, $2, …`; a backend with
/// positional `?` placeholders may need some twice).
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    pub sql: String,
    /// Indexes into the caller's parameters, in binding order.
    pub order: Vec<usize>,
}

/// Replace `$n` outside quoted strings by `f(n)`; returns the SQL and the
/// placeholders in order of appearance.
pub(crate) fn rewrite_placeholders(sql: &str, f: impl Fn(usize) -> String) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(sql.len());
    let mut seen = Vec::new();
    let mut chars = sql.char_indices().peekable();
    let mut quote: Option<char> = None;
    while let Some((_, c)) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) => {
                let mut n = 0usize;
                while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
                    n = n * 10 + d.to_digit(10).unwrap_or(0) as usize;
                    chars.next();
                }
                out.push_str(&f(n));
                seen.push(n);
            }
            None => out.push(c),
        }
    }
    (out, seen)
}

/// Numbered placeholders (`?n` or `$n`): each parameter is bound once, in order.
pub(crate) fn numbered(sql: &str, prefix: &str) -> Statement {
    let (sql, seen) = rewrite_placeholders(sql, |n| format!("{prefix}{n}"));
    let count = seen.into_iter().max().unwrap_or(0);
    Statement {
        sql,
        order: (0..count).collect(),
    }
}

/// The channels Herald sends, as a SQL list: `'sms', 'whatsapp', 'email'`.
pub(crate) fn channel_list() -> String {
    Channel::ALL
        .iter()
        .map(|c| format!("'{}'", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

const _: () = assert!(MessageStatus::ALL.len() == 5);

/// Every statement, ready to run. Field docs list the parameters.
#[derive(Debug)]
pub(crate) struct Statements {
    pub dialect: &'static str,
    // --- queue -----------------------------------------------------------
    /// Insert one message: `$1` channel, `$2` recipient, `$3` subject, `$4` body,
    /// `$5` html_body, `$6` send_at, `$7` metadata, `$8` now, `$9` content_sid,
    /// `$10` content_variables, `$11` template, `$12` template_version, `$13` locale.
    pub insert: Statement,
    /// Insert a JSON array of messages (`$1`) at `$2`.
    pub insert_many: Statement,
    /// Messages whose ids are in the JSON array `$1`.
    pub get_many: Statement,
    /// Forget idempotency keys created before `$1`.
    pub idem_expire: Statement,
    /// Remember key `$1` for request hash `$2` at `$3` (no row if it exists).
    pub idem_insert: Statement,
    /// Key `$1` created the messages `$2` (JSON array of ids).
    pub idem_set: Statement,
    /// The request hash and message ids of key `$1`.
    pub idem_get: Statement,
    /// See [`Dialect::claim`].
    pub claim_any: Statement,
    pub claim_channel: Statement,
    pub claim_unknown: Statement,
    /// See [`Dialect::complete`].
    pub complete: Statement,
    /// See [`Dialect::insert_attempts`].
    pub insert_attempts: Statement,
    /// See [`Dialect::next_due`].
    pub next_due: Statement,
    // --- operator --------------------------------------------------------
    /// One message by id `$1`.
    pub get: Statement,
    /// Newest first: `$1` status, `$2` channel, `$3` recipient, `$4` created
    /// from, `$5` created before, `$6` ids below, `$7` limit, `$8` only those
    /// scheduled after this time.
    pub list: Statement,
    /// Provider calls of message `$1`, oldest first.
    pub attempts: Statement,
    /// Failed messages among the JSON array of ids `$1` back to pending at `$2`.
    pub retry_ids: Statement,
    /// Every failed message back to pending at `$1`.
    pub retry_failed: Statement,
    /// Cancel message `$1` at `$2` if it is pending.
    pub cancel: Statement,
    /// The status of message `$1`.
    pub status_of: Statement,
    /// Messages by status and channel.
    pub counts: Statement,
    /// See [`Dialect::oldest_due`].
    pub oldest_due: Statement,
    // --- receipts --------------------------------------------------------
    /// `$1` if such a message exists.
    pub id_exists: Statement,
    /// The message with provider id `$1` sent through provider `$2`.
    pub find_by_provider_id: Statement,
    /// Store a receipt (once per dedupe key): `$1` message, `$2` provider,
    /// `$3` event, `$4` delivery status, `$5` occurred at, `$6` received at,
    /// `$7` dedupe key, `$8` detail.
    pub insert_event: Statement,
    /// Move message `$1` to delivery status `$2` of rank `$3` (only forwards),
    /// delivered at `$4`, error code `$5`.
    pub apply_delivery: Statement,
    /// Receipts of message `$1`, oldest first.
    pub events: Statement,
    // --- suppressions ----------------------------------------------------
    /// Suppress `$2` on channel `$1` because `$3`, added by `$4` at `$5`.
    pub suppress: Statement,
    /// Remove the suppression of `$2` on channel `$1`.
    pub unsuppress: Statement,
    /// Suppressions on channel `$1` (or all), newest first, at most `$2`.
    pub suppressions: Statement,
    /// Suppressions of the recipients in the JSON array `$1`.
    pub suppressed_among: Statement,
    // --- templates -------------------------------------------------------
    /// The next version number of template `$1`.
    pub template_next_version: Statement,
    /// Hold template `$1` until the transaction ends: saves of one name are
    /// serialized, so versions and the default locale stay consistent.
    pub template_lock: Option<Statement>,
    /// Save version `$2` of template `$1` in locale `$3` for channel `$4`:
    /// parts `$5`, default `$6`, at `$7`.
    pub template_insert: Statement,
    /// Whether locale `$2` of template `$1` is its default.
    pub template_is_default: Statement,
    /// No locale of template `$1` other than `$2` is the default.
    pub template_undefault: Statement,
    /// The latest version of each locale of template `$1` (or of all).
    pub templates: Statement,
    /// Delete template `$1`.
    pub template_delete: Statement,
    // --- schema ----------------------------------------------------------
    /// How many migrations have been applied.
    pub migrations_applied: Statement,
}

impl Statements {
    pub(crate) fn build(d: &dyn Dialect, t: &Table) -> Statements {
        let cols = t.select("");
        let st = |sql: &str| d.statement(sql);
        let (status, channel, recipient, created_at) = (
            t.col("status"),
            t.col("channel"),
            t.col("recipient"),
            t.col("created_at"),
        );
        let insert_cols = t.cols(&[
            "channel",
            "recipient",
            "subject",
            "body",
            "html_body",
            "send_at",
            "metadata",
            "created_at",
            "updated_at",
            "content_sid",
            "content_variables",
            "template",
            "template_version",
            "locale",
        ]);
        Statements {
            dialect: d.name(),
            insert: st(&format!(
                "INSERT INTO notification_messages ({insert_cols})
                 VALUES ($1, $2, $3, $4, $5, {}, $7, {}, {}, $9, $10, $11, $12, $13)
                 RETURNING {cols}",
                d.ts("$6"),
                d.ts("$8"),
                d.ts("$8"),
            )),
            insert_many: st(&d.insert_many(t)),
            get_many: st(&format!(
                "SELECT {cols} FROM notification_messages WHERE id IN (SELECT {} FROM {})",
                d.int("value"),
                d.json_array("$1")
            )),
            idem_expire: st(&format!(
                "DELETE FROM herald_idempotency_keys WHERE created_at < {}",
                d.ts("$1")
            )),
            idem_insert: st(&format!(
                "INSERT INTO herald_idempotency_keys (key, request_hash, message_ids, created_at)
                 VALUES ($1, $2, '[]', {}) ON CONFLICT (key) DO NOTHING",
                d.ts("$3")
            )),
            idem_set: st("UPDATE herald_idempotency_keys SET message_ids = $2 WHERE key = $1"),
            idem_get: st("SELECT request_hash, message_ids FROM herald_idempotency_keys WHERE key = $1"),
            claim_any: st(&d.claim(t, ClaimKind::Any)),
            claim_channel: st(&d.claim(t, ClaimKind::Channel)),
            claim_unknown: st(&d.claim(t, ClaimKind::UnknownChannel)),
            complete: st(&d.complete(t)),
            insert_attempts: st(&d.insert_attempts()),
            next_due: st(&d.next_due(t)),
            get: st(&format!("SELECT {cols} FROM notification_messages WHERE id = $1")),
            list: st(&format!(
                "SELECT {cols} FROM notification_messages
                  WHERE ({} IS NULL OR {status} = $1) AND ({} IS NULL OR {channel} = $2)
                    AND ({} IS NULL OR {recipient} = $3)
                    AND ({} IS NULL OR {created_at} >= {})
                    AND ({} IS NULL OR {created_at} < {})
                    AND ({} IS NULL OR id < $6)
                    AND ({} IS NULL OR {})
                  ORDER BY id DESC LIMIT $7",
                d.text("$1"),
                d.text("$2"),
                d.text("$3"),
                d.ts("$4"),
                d.ts("$4"),
                d.ts("$5"),
                d.ts("$5"),
                d.int("$6"),
                d.ts("$8"),
                d.scheduled_after(t, "$8"),
            )),
            attempts: st("SELECT message_id, attempt, started_at, finished_at, provider, outcome, error,
                                 provider_message_id, worker
                            FROM notification_attempts WHERE message_id = $1 ORDER BY id"),
            retry_ids: st(&format!(
                "UPDATE notification_messages SET {status} = 'pending', updated_at = {}
                  WHERE id IN (SELECT {} FROM {}) AND {status} = 'failed'
              RETURNING id",
                d.ts("$2"),
                d.int("value"),
                d.json_array("$1")
            )),
            retry_failed: st(&format!(
                "UPDATE notification_messages SET {status} = 'pending', updated_at = {}
                  WHERE {status} = 'failed' RETURNING id",
                d.ts("$1")
            )),
            cancel: st(&format!(
                "UPDATE notification_messages SET {status} = 'cancelled', updated_at = {}
                  WHERE id = $1 AND {status} = 'pending' RETURNING {cols}",
                d.ts("$2")
            )),
            status_of: st(&format!("SELECT {status} FROM notification_messages WHERE id = $1")),
            counts: st(&format!(
                "SELECT {status}, {channel}, count(*) FROM notification_messages GROUP BY {status}, {channel}"
            )),
            oldest_due: st(&d.oldest_due(t)),
            id_exists: st("SELECT id FROM notification_messages WHERE id = $1"),
            find_by_provider_id: st("SELECT id FROM notification_messages
                                      WHERE provider_message_id = $1 AND provider_message_id IS NOT NULL
                                        AND provider = $2
                                      ORDER BY id DESC LIMIT 1"),
            insert_event: st(&format!(
                "INSERT INTO notification_events
                        (message_id, provider, event, delivery_status, occurred_at, received_at, dedupe_key, detail)
                 VALUES ($1, $2, $3, $4, {}, {}, $7, $8) ON CONFLICT (dedupe_key) DO NOTHING",
                d.ts("$5"),
                d.ts("$6")
            )),
            apply_delivery: st(&format!(
                "UPDATE notification_messages
                    SET delivery_status = $2, delivery_rank = $3,
                        delivered_at = CASE WHEN $3 >= 4 AND $3 < 10 THEN coalesce(delivered_at, {}) ELSE delivered_at END,
                        delivery_error_code = coalesce($5, delivery_error_code)
                  WHERE id = $1 AND (delivery_rank IS NULL OR delivery_rank < $3)",
                d.ts("$4")
            )),
            events: st("SELECT provider, event, delivery_status, occurred_at, received_at, detail
                          FROM notification_events WHERE message_id = $1 ORDER BY id"),
            suppress: st(&format!(
                "INSERT INTO notification_suppressions (channel, recipient, reason, source, created_at)
                 VALUES ($1, $2, $3, $4, {}) ON CONFLICT (channel, recipient) DO NOTHING",
                d.ts("$5")
            )),
            unsuppress: st("DELETE FROM notification_suppressions WHERE channel = $1 AND recipient = $2"),
            suppressions: st(&format!(
                "SELECT channel, recipient, reason, source, created_at FROM notification_suppressions
                  WHERE ({} IS NULL OR channel = $1) ORDER BY created_at DESC, recipient LIMIT $2",
                d.text("$1")
            )),
            suppressed_among: st(&format!(
                "SELECT channel, recipient, reason FROM notification_suppressions
                  WHERE recipient IN (SELECT value FROM {})",
                d.json_array("$1")
            )),
            template_next_version: st(
                "SELECT coalesce(max(version), 0) + 1 FROM notification_templates WHERE name = $1",
            ),
            template_lock: d.lock_name("$1").map(|sql| st(&sql)),
            template_insert: st(&format!(
                "INSERT INTO notification_templates (name, version, locale, channel, parts, is_default, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, {})",
                d.ts("$7")
            )),
            template_is_default: st(
                "SELECT count(*) FROM notification_templates WHERE name = $1 AND locale = $2 AND is_default = 1",
            ),
            template_undefault: st(
                "UPDATE notification_templates SET is_default = 0 WHERE name = $1 AND locale <> $2",
            ),
            templates: st(&format!(
                "SELECT name, version, locale, channel, parts, is_default, created_at
                   FROM notification_templates t
                  WHERE ({} IS NULL OR name = $1)
                    AND version = (SELECT max(version) FROM notification_templates
                                    WHERE name = t.name AND locale = t.locale)
                  ORDER BY name, locale",
                d.text("$1")
            )),
            template_delete: st("DELETE FROM notification_templates WHERE name = $1"),
            migrations_applied: st("SELECT count(*) FROM _sqlx_migrations WHERE success"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_outside_quotes_are_rewritten() {
        let (sql, seen) = rewrite_placeholders("SELECT $1, '$.a', $12, \"$3\" WHERE x = $2", |n| format!("?{n}"));
        assert_eq!(sql, "SELECT ?1, '$.a', ?12, \"$3\" WHERE x = ?2");
        assert_eq!(seen, [1, 12, 2]);
    }

    #[test]
    fn every_statement_builds_on_every_dialect() {
        for d in [&Sqlite as &dyn Dialect, &Postgres] {
            let s = Statements::build(d, &Table::herald());
            let all = format!("{s:?}");
            assert!(!all.contains("sql: \"\""), "{} has an empty statement", d.name());
            // Only Herald's own placeholder syntax is left.
            assert!(
                s.claim_channel.order.len() == 6 && s.claim_any.order.len() == 5,
                "{}",
                d.name()
            );
            assert_eq!(s.insert.order.len(), 13);
            assert_eq!(s.list.order.len(), 8);
        }
    }

    #[test]
    fn renamed_columns_are_read_under_heralds_names() {
        let t = Table {
            renamed: vec![("body", "message".to_owned()), ("channel", "Type".to_owned())],
        };
        let sel = t.select("m.");
        assert!(sel.contains("m.message AS body"), "{sel}");
        assert!(sel.contains("m.\"Type\" AS channel"), "{sel}");
        assert_eq!(t.col("recipient"), "recipient");
    }
}
