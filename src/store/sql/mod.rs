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

mod circuits;
pub(crate) mod mysql;
pub(crate) mod postgres;
mod retention;
pub(crate) mod sqlite;
mod statements;
mod table;
mod webhooks;

pub(crate) use circuits::CircuitStatements;
pub(crate) use mysql::{Mysql, MysqlStatements};
pub(crate) use postgres::Postgres;
pub(crate) use retention::RetentionStatements;
pub(crate) use sqlite::Sqlite;
pub(crate) use statements::Statements;
pub(crate) use table::{ColumnKind, Table, COLUMNS};
pub use table::{Layout, MAPPABLE};
pub(crate) use webhooks::WebhookStatements;

use crate::domain::Channel;

/// Which rows a claim may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimKind {
    /// Any due row.
    Any,
    /// Due rows of one channel (`$5`).
    Channel,
    /// Due rows whose channel is none of Herald's (they are failed, not sent).
    UnknownChannel,
}

/// What one backend's SQL does differently. Every method returns SQL with
/// `$n` placeholders; the parameters are documented on [`Statements`].
pub(crate) trait Dialect: Send + Sync {
    /// `postgres`, `sqlite`.
    fn name(&self) -> &'static str;
    /// The character that quotes identifiers.
    fn quote(&self) -> char {
        '"'
    }
    /// Begins a transaction that will write. (SQLite: `BEGIN IMMEDIATE`, so
    /// a transaction that reads before it writes waits for the write lock
    /// instead of failing with "database is locked" when it upgrades.)
    fn begin_write(&self) -> &'static str {
        "BEGIN"
    }
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
    /// `herald_stats`-shaped rows of `table` from `$1` to `$2`, summed per
    /// bucket truncated to `unit` (`minute`, `hour` or `day`) and per
    /// channel, provider, event and code: (bucket text, channel, provider,
    /// event, code, count, segments, latency_ms, histogram text).
    fn stats_range(&self, table: &str, unit: &str) -> String;
    /// [`Dialect::stats_range`] of a table already one row per bucket and
    /// key in `unit` (`herald_stats` by minute, `herald_stats_hourly` by
    /// hour): read as stored.
    fn stats_as_stored(&self, table: &str) -> String {
        format!(
            "SELECT {}, channel, provider, event, code, count, segments, latency_ms, {}
               FROM {table} WHERE bucket >= {} AND bucket < {}",
            self.ts_text("bucket"),
            self.text("lat"),
            self.ts("$1"),
            self.ts("$2")
        )
    }
    /// Add the JSON array of [`crate::store::StatDelta`] `$1` to `table`
    /// (`herald_stats` or `herald_stats_hourly`).
    fn stats_add(&self, table: &str) -> String;
    /// Insert the messages of a JSON array (`$1`) created at `$2`.
    fn insert_many(&self, t: &Table) -> String;
    /// Lease due rows: `$1` worker, `$2` now, `$3` lease expiry, `$4` limit,
    /// `$5` channel (only for [`ClaimKind::Channel`]). Due rows are read in
    /// [`Dialect::due_key`] order from the `notification_messages_due` index.
    fn claim(&self, t: &Table, kind: ClaimKind) -> String;
    /// When an open row is due, as the `notification_messages_due` index
    /// (migration 7) orders rows: the lease's end for a processing row, the
    /// later of `send_at` and `next_attempt_at` for a pending one, and the
    /// beginning of time for a pending row with neither (due at once, in id
    /// order). The claim and the idle wake-up read this index, so rows
    /// scheduled for next week are never walked over before next week.
    fn due_key(&self, t: &Table) -> String;
    /// Record completions (`$1`, JSON array) at `$2`, only where `$3` holds the lease.
    fn complete(&self, t: &Table) -> String;
    /// Add attempts (`$1`, JSON array) made by worker `$2`.
    fn insert_attempts(&self) -> String;
    /// When the next open row becomes due (Herald's text form; a time in
    /// the past when one is due now).
    fn next_due(&self, t: &Table) -> String;
    /// The oldest due pending row's `created_at` at `$1` (Herald's text form).
    fn oldest_due(&self, t: &Table) -> String;
    /// The table's rows as the database estimates them (a bigint, maybe
    /// NULL), read without counting.
    fn rows_estimate(&self) -> String;
    // --- inspecting and adopting an existing table (`herald migrate`) ---
    /// How many tables named `$1` the connection can see.
    fn table_exists(&self) -> String;
    /// The columns of `notification_messages`: rows of (name, declared
    /// type, 1 if an ENUM type, 1 if NOT NULL, default expression).
    fn columns(&self) -> String;
    /// Its CHECK constraints: rows of (name, definition). SQLite, which has
    /// no catalog of them, answers one row: ('', the CREATE TABLE statement).
    fn checks(&self) -> String;
    /// Its triggers: rows of (name).
    fn triggers(&self) -> String;
    /// The labels of ENUM type `$1`, in order (rows of (label)).
    fn enum_labels(&self) -> Option<String>;
    /// Add `value` to ENUM type `ty`.
    fn add_enum_value(&self, ty: &str, value: &str) -> Option<String>;
    /// Drop CHECK constraint `name`.
    fn drop_check(&self, name: &str) -> Option<String>;
    /// Let column `col` (quoted) hold NULL.
    fn drop_not_null(&self, col: &str) -> Option<String>;
    /// Change column `col` (quoted) to type `to`.
    fn change_type(&self, col: &str, to: &str) -> Option<String>;
    /// Replace the table's CREATE statement with `sql` (SQLite: constraint
    /// changes that leave the stored rows as they are).
    fn rewrite_create(&self, sql: &str) -> Option<Vec<String>>;

    /// Each status word in the table and how many rows have it.
    fn statuses_in_use(&self) -> String {
        "SELECT CAST(status AS TEXT), count(*) FROM notification_messages GROUP BY 1".to_owned()
    }
    /// Herald's record of how it adopted the table (`herald_layout`).
    fn layout_create(&self) -> String {
        "CREATE TABLE IF NOT EXISTS herald_layout (id INTEGER PRIMARY KEY, layout TEXT NOT NULL)".to_owned()
    }
    fn layout_read(&self) -> String {
        "SELECT layout FROM herald_layout WHERE id = 1".to_owned()
    }
    fn layout_write(&self) -> String {
        "INSERT INTO herald_layout (id, layout) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET layout = excluded.layout"
            .to_owned()
    }
    /// How many of Herald's migrations have been applied.
    fn migrations_applied(&self) -> String {
        "SELECT count(*) FROM _sqlx_migrations WHERE success".to_owned()
    }

    /// Rows of the JSON array of objects `$p` as a FROM item named `alias`:
    /// one column per `(field, type)` (types: `text`, `bigint`, `int`,
    /// `timestamptz`), and `n`, the element's position.
    fn json_records(&self, p: &str, alias: &str, fields: &[(&str, &str)]) -> String;
    /// Text concatenation.
    fn concat(&self, parts: &[&str]) -> String {
        parts.join(" || ")
    }
    /// How an INSERT that skips existing keys begins (with
    /// [`Dialect::on_conflict_nothing`] at its end).
    fn insert_or_skip(&self) -> &'static str {
        "INSERT"
    }
    /// The clause that makes an INSERT skip a row whose key `keys` exists.
    fn on_conflict_nothing(&self, keys: &str) -> String {
        format!("ON CONFLICT ({keys}) DO NOTHING")
    }
    /// The value an upsert would have inserted into `col`.
    fn excluded(&self, col: &str) -> String {
        format!("excluded.{col}")
    }
    /// The clause that makes an INSERT update the row whose key `keys`
    /// exists with `sets` (`col = expr, …`; see [`Dialect::excluded`]).
    fn upsert(&self, keys: &str, sets: &str) -> String {
        format!("ON CONFLICT ({keys}) DO UPDATE SET {sets}")
    }
    /// ` RETURNING cols`, or nothing where the backend has no RETURNING
    /// (MySQL: the store reads the rows in a step of its own).
    fn returning(&self, cols: &str) -> String {
        format!(" RETURNING {cols}")
    }
    /// The locking clause that lets concurrent workers skip each other's
    /// rows of `alias` (PostgreSQL), or nothing (SQLite serializes writers).
    fn skip_locked(&self, alias: &str) -> String;
    /// `<column> <ids_in(subquery)>`: the subquery's ids, found by primary key.
    fn ids_in(&self, subquery: &str) -> String {
        format!("IN ({subquery})")
    }

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

/// Where a MySQL statement takes a literal list of ids (see
/// [`Statement::with_ids`]).
pub(crate) const IDS: &str = "/*ids*/";

impl Statement {
    /// The statement with `ids` written in place of [`IDS`]. MySQL then
    /// reads exactly those rows by primary key; ids from a JSON array may be
    /// joined by scanning the table, locking rows that other workers hold.
    /// (The ids are Herald's own integers, never input.)
    pub(crate) fn with_ids(&self, ids: &[i64]) -> Statement {
        let list = if ids.is_empty() {
            "NULL".to_owned()
        } else {
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        };
        Statement {
            sql: self.sql.replace(IDS, &list),
            order: self.order.clone(),
        }
    }
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

/// `col` is none of Herald's channels, as ranges an index on `col` can
/// answer (`NOT IN` reads the whole index): below the first name, between
/// two names, or above the last.
pub(crate) fn unknown_channel(col: &str) -> String {
    let mut names: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
    names.sort_unstable();
    let mut ranges = vec![format!("{col} < '{}'", names[0])];
    for pair in names.windows(2) {
        ranges.push(format!("({col} > '{}' AND {col} < '{}')", pair[0], pair[1]));
    }
    ranges.push(format!("{col} > '{}'", names[names.len() - 1]));
    format!("({})", ranges.join(" OR "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_channels_are_the_ranges_between_the_names() {
        assert_eq!(
            unknown_channel("c"),
            "(c < 'email' OR (c > 'email' AND c < 'sms') OR (c > 'sms' AND c < 'whatsapp') OR c > 'whatsapp')"
        );
    }

    #[test]
    fn placeholders_outside_quotes_are_rewritten() {
        let (sql, seen) = rewrite_placeholders("SELECT $1, '$.a', $12, \"$3\" WHERE x = $2", |n| format!("?{n}"));
        assert_eq!(sql, "SELECT ?1, '$.a', ?12, \"$3\" WHERE x = ?2");
        assert_eq!(seen, [1, 12, 2]);
    }
}
