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
mod statements;

pub(crate) use postgres::Postgres;
pub(crate) use sqlite::Sqlite;
pub(crate) use statements::Statements;

use crate::domain::Channel;

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
