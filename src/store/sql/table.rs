//! `notification_messages` as this database has it: which of Herald's
//! columns have another name (a POS's `message` for Herald's `body`), and
//! which have another type (`int4` ids, `timestamp` without time zone,
//! `jsonb` errors, an ENUM status). Statements read every column as
//! Herald's name and type, and write each in the column's own type, so the
//! POS's code keeps reading what it always read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Herald's columns of `notification_messages`, as every statement reads
/// them (the names the row decoders expect).
pub(crate) const COLUMNS: [&str; 31] = [
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
    "fallback_of",
    "fallback_message_id",
];

/// Herald's columns a POS table may hold under another name, with the names
/// `herald migrate` recognises for each (first match wins).
pub const MAPPABLE: [(&str, &[&str]); 9] = [
    ("channel", &["type", "message_type", "channel_type", "medium"]),
    (
        "recipient",
        &["to", "destination", "recipient_address", "address", "phone"],
    ),
    ("subject", &["title"]),
    ("body", &["message", "content", "text", "message_body", "body_text"]),
    ("html_body", &["html", "htmlBody", "body_html", "html_content"]),
    ("error", &["error_message", "last_error", "errorMessage"]),
    ("sent_at", &["sentAt"]),
    ("created_at", &["createdAt", "created"]),
    ("updated_at", &["updatedAt", "updated", "modified_at"]),
];

/// What `herald migrate` decided about a table a POS created, kept in the
/// database (`herald_layout`) so every later run reads the table the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Herald's column → the table's column, where the names differ.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Status words the POS uses besides Herald's; the status constraint
    /// keeps allowing them (Herald never claims such rows).
    #[serde(default)]
    pub extra_statuses: Vec<String>,
}

impl Layout {
    /// The table's name for Herald's column `col` (unquoted).
    pub fn column<'a>(&'a self, col: &'a str) -> &'a str {
        self.columns.get(col).map(String::as_str).unwrap_or(col)
    }
}

/// A column's type where it differs from what Herald creates (PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ColumnKind {
    /// `integer` (e.g. `SERIAL`): read as `bigint`.
    Int4,
    /// `timestamp` without time zone: read and written in the session's
    /// time zone (UTC unless `DATABASE_TIMEZONE` says otherwise).
    Naive,
    /// `json` or `jsonb`: read as text, written as JSON.
    Json(String),
    /// An ENUM type (its name, quoted): read as text, written as the type.
    Enum(String),
    /// MySQL: text in a binary collation (MariaDB's `JSON`): read as text
    /// in the connection's collation.
    BinaryText,
}

/// The message table as this database has it.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// The character that quotes an identifier (`"`; MySQL: `` ` ``).
    quote: char,
    renamed: BTreeMap<String, String>,
    kinds: BTreeMap<String, ColumnKind>,
    pub(crate) extra_statuses: Vec<String>,
}

impl Table {
    /// Herald's own layout: every column under its own name and type.
    #[cfg(test)]
    pub(crate) fn herald() -> Table {
        Table::new('"', &Layout::default(), BTreeMap::new())
    }

    pub(crate) fn new(quote: char, layout: &Layout, kinds: BTreeMap<String, ColumnKind>) -> Table {
        Table {
            quote,
            renamed: layout.columns.clone(),
            kinds,
            extra_statuses: layout.extra_statuses.clone(),
        }
    }

    /// `name`, quoted.
    pub(crate) fn quoted(&self, name: &str) -> String {
        let q = self.quote;
        format!("{q}{}{q}", name.replace(q, &format!("{q}{q}")))
    }

    /// The table's name for Herald's column `col`: Herald's own names as
    /// they are, a POS's names quoted.
    pub(crate) fn col(&self, col: &str) -> String {
        match self.renamed.get(col) {
            Some(name) => self.quoted(name),
            None => col.to_owned(),
        }
    }

    /// MySQL quotes with backticks, and casts its own way.
    fn mysql(&self) -> bool {
        self.quote == '`'
    }

    /// `prefix` + column, as Herald's type.
    pub(crate) fn read(&self, col: &str, prefix: &str) -> String {
        let c = format!("{prefix}{}", self.col(col));
        if self.mysql() {
            return match self.kinds.get(col) {
                Some(ColumnKind::Int4) => format!("CAST({c} AS SIGNED)"),
                Some(ColumnKind::Json(_) | ColumnKind::Enum(_) | ColumnKind::BinaryText) => {
                    format!("CAST({c} AS CHAR)")
                }
                _ => c,
            };
        }
        match self.kinds.get(col) {
            None => c,
            Some(ColumnKind::Int4) => format!("{c}::bigint"),
            Some(ColumnKind::Naive) => format!("{c}::timestamptz"),
            Some(ColumnKind::Json(_) | ColumnKind::Enum(_)) => format!("{c}::text"),
            Some(ColumnKind::BinaryText) => c,
        }
    }

    /// Whether Herald's column `col` is a `timestamp` without time zone here.
    pub(crate) fn is_naive(&self, col: &str) -> bool {
        self.kinds.get(col) == Some(&ColumnKind::Naive)
    }

    /// `prefix` + column, comparable with a text parameter.
    pub(crate) fn text_of(&self, col: &str, prefix: &str) -> String {
        let c = format!("{prefix}{}", self.col(col));
        match self.kinds.get(col) {
            Some(ColumnKind::Enum(_)) if !self.mysql() => format!("{c}::text"),
            _ => c,
        }
    }

    /// `expr` (text, or Herald's type) as the column's own type.
    pub(crate) fn write(&self, col: &str, expr: &str) -> String {
        match self.kinds.get(col) {
            // MySQL: an ENUM takes its labels as text; a JSON column, JSON.
            Some(ColumnKind::Enum(_)) if self.mysql() => expr.to_owned(),
            Some(ColumnKind::Json(_)) if self.mysql() => format!("CAST({expr} AS JSON)"),
            Some(ColumnKind::Json(t) | ColumnKind::Enum(t)) => format!("CAST({expr} AS {t})"),
            _ => expr.to_owned(),
        }
    }

    /// The id column as a big integer.
    pub(crate) fn id(&self, prefix: &str) -> String {
        self.read("id", prefix)
    }

    /// The select list: every Herald column, as Herald's name and type.
    /// `prefix` qualifies the columns (`m.`), or is empty.
    pub(crate) fn select(&self, prefix: &str) -> String {
        COLUMNS
            .iter()
            .map(|c| {
                let expr = self.read(c, prefix);
                if expr == format!("{prefix}{c}") {
                    expr
                } else {
                    format!("{expr} AS {c}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The open-row predicate. It matches the partial index
    /// `notification_messages_due` word for word, so planners use it.
    pub(crate) fn open(&self) -> String {
        format!("{} IN ('pending', 'processing')", self.col("status"))
    }

    /// A column list for INSERT.
    pub(crate) fn cols(&self, cols: &[&str]) -> String {
        cols.iter().map(|c| self.col(c)).collect::<Vec<_>>().join(", ")
    }

    /// A migration's SQL with `{{column}}` markers replaced by the table's
    /// names and `{{extra_statuses}}` by the POS's own status words. With
    /// Herald's own layout the result is the SQL Herald always ran (so the
    /// migration's checksum is unchanged).
    pub(crate) fn render_migration(&self, sql: &str) -> String {
        let mut out = sql.to_owned();
        for (herald, _) in MAPPABLE {
            out = out.replace(&format!("{{{{{herald}}}}}"), &self.col(herald));
        }
        let extra: String = self
            .extra_statuses
            .iter()
            .map(|s| format!(", '{}'", s.replace('\'', "''")))
            .collect();
        out.replace("{{extra_statuses}}", &extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_and_retyped_columns_are_read_as_heralds() {
        let layout = Layout {
            columns: BTreeMap::from([
                ("body".to_owned(), "message".to_owned()),
                ("channel".to_owned(), "type".to_owned()),
            ]),
            extra_statuses: vec!["queued".into()],
        };
        let kinds = BTreeMap::from([
            ("id".to_owned(), ColumnKind::Int4),
            ("error".to_owned(), ColumnKind::Json("jsonb".into())),
            ("status".to_owned(), ColumnKind::Enum("\"enum_status\"".into())),
        ]);
        let t = Table::new('"', &layout, kinds);
        let sel = t.select("m.");
        assert!(sel.contains("m.\"message\" AS body"), "{sel}");
        assert!(sel.contains("m.\"type\" AS channel"), "{sel}");
        assert!(sel.contains("m.id::bigint AS id"), "{sel}");
        assert!(sel.contains("m.error::text AS error"), "{sel}");
        assert_eq!(t.col("recipient"), "recipient");
        assert_eq!(t.write("error", "u.error"), "CAST(u.error AS jsonb)");
        assert_eq!(t.text_of("status", ""), "status::text");
        assert_eq!(
            t.render_migration("ADD COLUMN IF NOT EXISTS {{body}} TEXT; CHECK (status IN ('sent'{{extra_statuses}}))"),
            "ADD COLUMN IF NOT EXISTS \"message\" TEXT; CHECK (status IN ('sent', 'queued'))"
        );
    }

    #[test]
    fn heralds_own_layout_renders_migrations_unchanged() {
        let t = Table::herald();
        assert_eq!(
            t.render_migration("{{created_at}} x {{channel}}{{extra_statuses}}"),
            "created_at x channel"
        );
    }
}
