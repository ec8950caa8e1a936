//! What `herald migrate` will do to a database, decided from an
//! [`Inspection`] alone (no I/O, so every case is unit-tested): create
//! Herald's tables, apply newer migrations, or adopt a table a POS created.

use std::collections::BTreeMap;

use super::create_sql;
use super::{Column, Inspection, Plan, Step};
use crate::domain::MessageStatus;
use crate::store::sql::{ColumnKind, Dialect, Layout, COLUMNS, MAPPABLE};

/// Herald's columns of the first migration (what `CREATE TABLE` would have
/// made), with SQLite declarations for adding them to an adopted table.
const SQLITE_BASE_COLUMNS: [(&str, &str); 18] = [
    ("subject", "TEXT"),
    ("body", "TEXT"),
    ("html_body", "TEXT"),
    ("status", "TEXT NOT NULL DEFAULT 'pending'"),
    ("attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("error", "TEXT"),
    ("provider", "TEXT"),
    ("provider_message_id", "TEXT"),
    ("send_at", "TEXT"),
    ("sent_at", "TEXT"),
    ("created_at", "TEXT"),
    ("updated_at", "TEXT"),
    ("metadata", "TEXT"),
    ("next_attempt_at", "TEXT"),
    ("lease_owner", "TEXT"),
    ("lease_expires_at", "TEXT"),
    ("retry_base", "INTEGER NOT NULL DEFAULT 0"),
    ("channel", "TEXT"),
];

/// The same columns with MySQL declarations (the first MySQL migration's
/// types; times are DATETIME(6) in UTC).
const MYSQL_BASE_COLUMNS: [(&str, &str); 18] = [
    ("subject", "TEXT"),
    ("body", "LONGTEXT"),
    ("html_body", "LONGTEXT"),
    ("status", "VARCHAR(32) NOT NULL DEFAULT 'pending'"),
    ("attempts", "INT NOT NULL DEFAULT 0"),
    ("error", "LONGTEXT"),
    ("provider", "VARCHAR(64)"),
    ("provider_message_id", "VARCHAR(255)"),
    ("send_at", "DATETIME(6)"),
    ("sent_at", "DATETIME(6)"),
    ("created_at", "DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6))"),
    ("updated_at", "DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6))"),
    ("metadata", "LONGTEXT"),
    ("next_attempt_at", "DATETIME(6)"),
    ("lease_owner", "VARCHAR(255)"),
    ("lease_expires_at", "DATETIME(6)"),
    ("retry_base", "INT NOT NULL DEFAULT 0"),
    ("channel", "VARCHAR(32)"),
];

/// Columns later SQLite migrations add with plain `ADD COLUMN` (which fails
/// if the column exists).
const SQLITE_LATER_COLUMNS: [&str; 12] = [
    "content_sid",
    "content_variables",
    "delivery_status",
    "delivery_rank",
    "delivered_at",
    "delivery_error_code",
    "template",
    "template_version",
    "locale",
    "template_data",
    "fallback_of",
    "fallback_message_id",
];

/// Columns later MySQL migrations add with plain `ADD COLUMN`.
const MYSQL_LATER_COLUMNS: [&str; 13] = [
    "content_sid",
    "content_variables",
    "delivery_status",
    "delivery_rank",
    "delivered_at",
    "delivery_error_code",
    "template",
    "template_version",
    "locale",
    "template_data",
    "fallback_of",
    "fallback_message_id",
    "herald_due",
];

/// A MySQL column's type and its NOT NULL and DEFAULT, restated for a
/// `MODIFY` (which replaces the whole definition) with type `ty`.
fn mysql_restated(c: &Column, ty: &str, not_null: bool) -> String {
    let mut out = ty.to_owned();
    if not_null {
        out.push_str(" NOT NULL");
    }
    if let Some(d) = &c.default {
        // MariaDB quotes text defaults ('pending'); MySQL does not.
        let literal = d.starts_with('\'')
            || d.parse::<f64>().is_ok()
            || d.contains('(')
            || d.eq_ignore_ascii_case("current_timestamp");
        if literal {
            out.push_str(&format!(" DEFAULT {d}"));
        } else {
            out.push_str(&format!(" DEFAULT '{}'", d.replace('\'', "''")));
        }
    }
    out
}

/// The labels of a MySQL ENUM column type (`enum('a','b')`).
pub(super) fn mysql_enum_labels(ty: &str) -> Vec<String> {
    let inner = ty
        .split_once('(')
        .and_then(|(_, r)| r.rsplit_once(')'))
        .map_or("", |(l, _)| l);
    let mut labels = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut label = String::new();
        while let Some(c) = chars.next() {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    label.push('\'');
                } else {
                    break;
                }
            } else {
                label.push(c);
            }
        }
        labels.push(label);
    }
    labels
}

fn herald_statuses() -> Vec<String> {
    MessageStatus::ALL.iter().map(|s| s.as_str().to_owned()).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Integer,
    SmallInt,
    Text,
    /// `varchar(n)` / `char(n)`: text with a length limit.
    Limited(u32),
    Timestamp,
    TimestampTz,
    Json,
    Enum,
    Other,
}

fn family(c: &Column, backend: &str) -> Family {
    if c.is_enum {
        return Family::Enum;
    }
    let t = c.ty.to_ascii_lowercase();
    if backend == "sqlite" {
        // Declared types are only affinities; INTEGER matters for ids.
        return if t.contains("int") {
            Family::Integer
        } else {
            Family::Text
        };
    }
    let limit = || {
        t.split_once('(')
            .and_then(|(_, r)| r.trim_end_matches(')').parse::<u32>().ok())
    };
    if backend == "mysql" {
        // information_schema's column_type: `int(11) unsigned`, `varchar(255)`,
        // `datetime(6)`, `enum('a','b')`.
        let base = t.split(['(', ' ']).next().unwrap_or("");
        let unsigned = t.contains("unsigned");
        return match base {
            "bigint" if !unsigned => Family::Integer,
            "bigint" | "int" | "integer" | "mediumint" | "smallint" | "tinyint" => Family::SmallInt,
            "varchar" | "char" => t
                .split_once('(')
                .and_then(|(_, r)| r.split(')').next())
                .and_then(|n| n.parse::<u32>().ok())
                .map_or(Family::Text, Family::Limited),
            "tinytext" => Family::Limited(255),
            "text" | "mediumtext" | "longtext" => Family::Text,
            "json" => Family::Json,
            "datetime" => Family::Timestamp,
            "timestamp" => Family::TimestampTz,
            _ => Family::Other,
        };
    }
    match t.as_str() {
        "integer" | "smallint" => Family::SmallInt,
        "bigint" => Family::Integer,
        "text" | "character varying" => Family::Text,
        "json" | "jsonb" => Family::Json,
        "timestamp without time zone" => Family::Timestamp,
        "timestamp with time zone" => Family::TimestampTz,
        _ if t.starts_with("character varying(") || t.starts_with("character(") => {
            limit().map_or(Family::Text, Family::Limited)
        }
        _ => Family::Other,
    }
}

/// The mapping: explicit (`COLUMN_MAP`), else stored, else recognised names.
fn choose_layout(ins: &Inspection, requested: &BTreeMap<String, String>, problems: &mut Vec<String>) -> Layout {
    let has = |name: &str| ins.columns.iter().any(|c| c.name == name);
    let mut layout = ins.stored_layout.clone().unwrap_or_default();
    for (herald, candidates) in MAPPABLE {
        if let Some(theirs) = requested.get(herald) {
            if theirs == herald {
                layout.columns.remove(herald);
            } else if has(theirs) {
                layout.columns.insert(herald.to_owned(), theirs.clone());
            } else {
                problems.push(format!(
                    "COLUMN_MAP maps {herald} to {theirs}, but notification_messages has no column {theirs:?}"
                ));
            }
            continue;
        }
        if layout.columns.contains_key(herald) || has(herald) {
            continue;
        }
        if let Some(found) = candidates.iter().find(|c| has(c)) {
            layout.columns.insert(herald.to_owned(), (*found).to_owned());
        }
    }
    for name in requested.keys() {
        if !MAPPABLE.iter().any(|(h, _)| h == name) {
            let names: Vec<&str> = MAPPABLE.iter().map(|(h, _)| *h).collect();
            problems.push(format!(
                "COLUMN_MAP names {name:?}, which Herald cannot map (it can map {})",
                names.join(", ")
            ));
        }
    }
    layout
}

/// What Herald adopts a POS's table with, or why it cannot.
pub(super) fn adopt(ins: &Inspection, dialect: &dyn Dialect, requested: &BTreeMap<String, String>) -> Plan {
    let backend = dialect.name();
    let mut plan = Plan {
        adopting: true,
        ..Plan::default()
    };
    let layout = choose_layout(ins, requested, &mut plan.problems);
    let col = |herald: &str| -> Option<&Column> {
        let name = layout.column(herald);
        ins.columns.iter().find(|c| c.name == name)
    };
    let col_named = |name: &str| ins.columns.iter().find(|c| c.name == name);
    let qc = dialect.quote();
    let q = |name: &str| format!("{qc}{}{qc}", name.replace(qc, &format!("{qc}{qc}")));
    let mysql = backend == "mysql";

    for (herald, theirs) in &layout.columns {
        plan.notes.push(format!(
            "{herald} ← {theirs}: Herald reads and writes the table's own {theirs:?} column (COLUMN_MAP={herald}:{theirs} to say so explicitly, or {herald}:{herald} to refuse)"
        ));
    }

    // The id: an integer key Herald can order and look up by.
    match col("id") {
        None => plan
            .problems
            .push("notification_messages has no id column: Herald needs an integer primary key named id".into()),
        Some(c) if !matches!(family(c, backend), Family::Integer | Family::SmallInt) => plan.problems.push(format!(
            "id is {}: Herald needs an integer id (SERIAL, BIGSERIAL or INTEGER PRIMARY KEY)",
            c.ty
        )),
        Some(_) => {}
    }
    for needed in ["channel", "recipient"] {
        match col(needed) {
            None => plan.problems.push(format!(
                "notification_messages has no {needed} column (or a known alternative): name yours with COLUMN_MAP={needed}:<column>"
            )),
            Some(c) if matches!(family(c, backend), Family::Text | Family::Limited(_) | Family::Enum) => {}
            Some(c) => plan.problems.push(format!("{} is {}: Herald needs text for {needed}", c.name, c.ty)),
        }
    }

    // Status: Herald's words must fit, whatever constrains the column.
    let mut extra: Vec<String> = Vec::new();
    let add_extra = |w: &str, extra: &mut Vec<String>| {
        if !herald_statuses().iter().any(|h| h == w) && !extra.iter().any(|e| e == w) {
            extra.push(w.to_owned());
        }
    };
    for (w, _) in &ins.statuses_in_use {
        add_extra(w, &mut extra);
    }
    match col("status") {
        None => {}
        Some(c) => match family(c, backend) {
            Family::Enum if mysql => {
                let labels = mysql_enum_labels(&c.ty);
                for l in &labels {
                    add_extra(l, &mut extra);
                }
                let missing: Vec<String> = herald_statuses().into_iter().filter(|s| !labels.contains(s)).collect();
                if !missing.is_empty() {
                    // Appended after the POS's labels: their order (and the
                    // rows' stored values) stay as they are.
                    let all: Vec<String> = labels
                        .iter()
                        .chain(&missing)
                        .map(|l| format!("'{}'", l.replace('\'', "''")))
                        .collect();
                    let ty = format!("ENUM({})", all.join(","));
                    if let Some(sql) = dialect.change_type(&q(&c.name), &mysql_restated(c, &ty, c.not_null)) {
                        plan.steps.push(Step::new(
                            format!(
                                "widen the status ENUM to include {} (your labels {} stay, in their order)",
                                missing.join(", "),
                                labels.join(", ")
                            ),
                            vec![sql],
                        ));
                    }
                }
            }
            Family::Enum => {
                let labels = ins.enum_labels.get(&c.ty).cloned().unwrap_or_default();
                for l in &labels {
                    add_extra(l, &mut extra);
                }
                for s in herald_statuses() {
                    if !labels.contains(&s) {
                        if let Some(sql) = dialect.add_enum_value(&c.ty, &s) {
                            plan.steps
                                .push(Step::new(format!("add '{s}' to the status type {}", c.ty), vec![sql]));
                        }
                    }
                }
            }
            Family::Text => {}
            Family::Limited(n) if n >= 10 => {}
            Family::Limited(n) => {
                let to = if mysql {
                    mysql_restated(c, "VARCHAR(20)", c.not_null)
                } else {
                    "varchar(20)".to_owned()
                };
                if let Some(sql) = dialect.change_type(&q(&c.name), &to) {
                    plan.steps.push(Step::new(
                        format!(
                            "widen status from {} to varchar(20): 'processing' has 10 letters (was {n})",
                            c.ty
                        ),
                        vec![sql],
                    ));
                }
            }
            _ => plan.problems.push(format!(
                "status is {}: Herald stores words (pending, processing, sent, failed, cancelled) in it",
                c.ty
            )),
        },
    }

    // CHECK constraints on status (any name): PostgreSQL drops them (the first
    // migration adds Herald's, allowing the POS's words too); SQLite rewrites
    // its CREATE statement.
    let mut create_rewrite: Option<String> = None;
    let mut rewrite_says: Vec<String> = Vec::new();
    let nullable: Vec<String> = ["subject", "body", "html_body"]
        .iter()
        .filter_map(|h| col(h))
        .filter(|c| c.not_null && c.default.is_none())
        .map(|c| c.name.clone())
        .collect();
    if backend == "sqlite" {
        let create = ins.checks.first().map(|(_, sql)| sql.clone()).unwrap_or_default();
        match create_sql::status_check_words(&create, "status") {
            Err(e) => plan.problems.push(format!(
                "{e}: make it allow pending, processing, sent, failed, cancelled"
            )),
            Ok(words) => {
                for w in words.iter().flatten() {
                    add_extra(w, &mut extra);
                }
                let mut all = herald_statuses();
                all.extend(extra.iter().cloned());
                let allows_all = words.as_ref().is_none_or(|w| all.iter().all(|s| w.contains(s)));
                if !allows_all || !nullable.is_empty() {
                    create_rewrite = create_sql::rewrite(&create, "status", &all, &nullable);
                }
                if !allows_all {
                    rewrite_says.push(format!("the status CHECK allows {}", all.join(", ")));
                }
            }
        }
    } else {
        for (name, def) in &ins.checks {
            if def.to_ascii_lowercase().contains("status") {
                if let Some(sql) = dialect.drop_check(name) {
                    for w in quoted_words(def) {
                        add_extra(&w, &mut extra);
                    }
                    plan.steps.push(Step::new(
                        format!("replace CHECK {name} ({def}) with Herald's status check (your words stay allowed)"),
                        vec![sql],
                    ));
                }
            }
        }
    }
    for c in nullable.iter() {
        let mysql_modify = || {
            let column = col_named(c)?;
            dialect.change_type(&q(c), &mysql_restated(column, &column.ty, false))
        };
        if let Some(sql) = dialect
            .drop_not_null(&q(c))
            .or_else(|| mysql.then(mysql_modify).flatten())
        {
            plan.steps.push(Step::new(
                format!("let {c} be empty (NOT NULL dropped): template and Content-SID messages have no text in it"),
                vec![sql],
            ));
        } else if create_rewrite.is_some() {
            rewrite_says.push(format!(
                "{c} may be empty (template and Content-SID messages have no text in it)"
            ));
        }
    }
    if let Some(sqls) = create_rewrite.as_deref().and_then(|s| dialect.rewrite_create(s)) {
        plan.steps.push(Step::new(
            format!(
                "rewrite the table's constraints, rows untouched: {}",
                rewrite_says.join("; ")
            ),
            sqls,
        ));
    }

    // Columns Herald reads with a fixed meaning must have a usable type.
    for h in COLUMNS {
        let Some(c) = col(h) else { continue };
        let f = family(c, backend);
        let ok = match h {
            "id" | "channel" | "recipient" | "status" => true, // checked above
            "attempts"
            | "retry_base"
            | "template_version"
            | "delivery_rank"
            | "fallback_of"
            | "fallback_message_id" => {
                matches!(f, Family::Integer | Family::SmallInt)
            }
            "send_at" | "sent_at" | "created_at" | "updated_at" | "next_attempt_at" | "lease_expires_at"
            | "delivered_at" => backend == "sqlite" || matches!(f, Family::Timestamp | Family::TimestampTz),
            "error" | "metadata" | "content_variables" | "template_data" => {
                matches!(f, Family::Text | Family::Json | Family::Limited(_))
            }
            _ => matches!(f, Family::Text | Family::Limited(_)),
        };
        if !ok {
            plan.problems.push(format!(
                "{} is {}: Herald uses {h} as {}",
                c.name,
                c.ty,
                match h {
                    "attempts"
                    | "retry_base"
                    | "template_version"
                    | "delivery_rank"
                    | "fallback_of"
                    | "fallback_message_id" => "an integer",
                    "send_at" | "sent_at" | "created_at" | "updated_at" | "next_attempt_at" | "lease_expires_at"
                    | "delivered_at" => "a timestamp",
                    _ => "text",
                }
            ));
        } else if let (Family::Limited(n), "error" | "metadata" | "content_variables" | "template_data") = (f, h) {
            let to = if mysql {
                mysql_restated(c, "LONGTEXT", c.not_null)
            } else {
                "text".to_owned()
            };
            if let Some(sql) = dialect.change_type(&q(&c.name), &to) {
                plan.steps.push(Step::new(
                    format!(
                        "widen {} from {} to text: Herald's JSON in it can be longer than {n}",
                        c.name, c.ty
                    ),
                    vec![sql],
                ));
            }
        }
    }
    if mysql {
        // MySQL indexes only bounded text: the claim's index leads with the
        // channel.
        if let Some(c) = col("channel").filter(|c| family(c, backend) == Family::Text) {
            if let Some(sql) = dialect.change_type(&q(&c.name), &mysql_restated(c, "VARCHAR(64)", c.not_null)) {
                plan.steps.push(Step::new(
                    format!(
                        "change {} from {} to VARCHAR(64): MySQL can index only bounded text, and Herald's claims read an index that starts with the channel",
                        c.name, c.ty
                    ),
                    vec![sql],
                ));
            }
        }
    }
    let later: &[&str] = match backend {
        "sqlite" => &SQLITE_LATER_COLUMNS,
        "mysql" => &MYSQL_LATER_COLUMNS,
        _ => &[],
    };
    {
        for h in later {
            if ins.columns.iter().any(|c| c.name == *h) {
                plan.problems.push(format!(
                    "notification_messages already has a column {h}, which Herald adds for its own use: rename yours"
                ));
            }
        }
    }

    // Columns Herald adds.
    // SQLite and MySQL have no ADD COLUMN IF NOT EXISTS: the columns the
    // first migration's CREATE TABLE would have made are added here.
    let base: &[(&str, &str)] = if mysql {
        &MYSQL_BASE_COLUMNS
    } else {
        &SQLITE_BASE_COLUMNS
    };
    let all_added = base
        .iter()
        .copied()
        .chain(SQLITE_LATER_COLUMNS.iter().map(|c| (*c, "TEXT")));
    for (h, decl) in all_added {
        if col(h).is_some() {
            continue;
        }
        let label = format!("add column {h}");
        if matches!(backend, "sqlite" | "mysql") && base.iter().any(|(c, _)| *c == h) {
            plan.steps.push(Step::new(
                label,
                vec![format!("ALTER TABLE notification_messages ADD COLUMN {h} {decl}")],
            ));
        } else {
            plan.notes.push(label);
        }
    }

    // Columns of the POS that Herald does not fill on its own inserts.
    let herald_names: Vec<&str> = COLUMNS.iter().map(|h| layout.column(h)).collect();
    for c in &ins.columns {
        if !herald_names.contains(&c.name.as_str()) && c.not_null && c.default.is_none() {
            plan.notes.push(format!(
                "warning: {} is NOT NULL without a default: messages queued through Herald's API or CLI cannot be stored until it has a default or allows NULL (your own inserts are unaffected)",
                c.name
            ));
        }
    }
    for t in &ins.triggers {
        if !t.starts_with("herald_") {
            plan.notes.push(format!(
                "your trigger {t} is left as it is; it also fires on Herald's updates"
            ));
        }
    }

    extra.sort();
    plan.layout = Layout {
        columns: layout.columns,
        extra_statuses: extra,
    };
    plan
}

/// The words in single quotes in a constraint definition.
fn quoted_words(def: &str) -> Vec<String> {
    def.split('\'').skip(1).step_by(2).map(str::to_owned).collect()
}

/// The kinds of Herald's columns whose type differs from Herald's own.
pub(crate) fn kinds(ins: &Inspection, layout: &Layout) -> BTreeMap<String, ColumnKind> {
    let mut out = BTreeMap::new();
    if ins.backend == "sqlite" {
        return out;
    }
    let mysql = ins.backend == "mysql";
    for h in COLUMNS {
        let name = layout.column(h);
        let Some(c) = ins.columns.iter().find(|c| c.name == name) else {
            continue;
        };
        let kind = match family(c, ins.backend) {
            // MySQL: `int`, and any unsigned id, read as a signed bigint.
            Family::SmallInt if h == "id" => Some(ColumnKind::Int4),
            // DATETIME is read and written as UTC, as Herald's own columns.
            Family::Timestamp if mysql => None,
            Family::Timestamp => Some(ColumnKind::Naive),
            Family::Json => Some(ColumnKind::Json(c.ty.clone())),
            Family::Enum => Some(ColumnKind::Enum(c.ty.clone())),
            Family::Text | Family::Limited(_) if c.binary_collation => Some(ColumnKind::BinaryText),
            _ => None,
        };
        if let Some(k) = kind {
            out.insert(h.to_owned(), k);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::{Postgres, Sqlite};

    fn column(name: &str, ty: &str, not_null: bool) -> Column {
        Column {
            name: name.into(),
            ty: ty.into(),
            is_enum: false,
            not_null,
            default: None,
            binary_collation: false,
        }
    }

    fn node_pos_table() -> Inspection {
        Inspection {
            backend: "postgres",
            table_exists: true,
            columns: vec![
                column("id", "integer", true),
                column("type", "character varying(20)", true),
                column("recipient", "character varying(255)", true),
                column("message", "text", true),
                column("status", "character varying(20)", false),
                column("error", "jsonb", false),
                column("customer_id", "integer", false),
                column("retry_count", "integer", false),
                column("sent_at", "timestamp without time zone", false),
                column("created_at", "timestamp without time zone", false),
            ],
            checks: vec![(
                "chk_nm_status".into(),
                "CHECK (((status)::text = ANY ((ARRAY['pending'::character varying, 'sent'::character varying, 'failed'::character varying])::text[])))".into(),
            )],
            statuses_in_use: vec![("sent".into(), 3), ("queued".into(), 1)],
            ..Inspection::default()
        }
    }

    #[test]
    fn a_node_pos_table_is_adopted_with_its_own_names_and_types() {
        let ins = node_pos_table();
        let plan = adopt(&ins, &Postgres, &BTreeMap::new());
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
        assert_eq!(plan.layout.column("body"), "message");
        assert_eq!(plan.layout.column("channel"), "type");
        assert_eq!(plan.layout.extra_statuses, ["queued"]);
        let says: Vec<&str> = plan.steps.iter().map(|s| s.says.as_str()).collect();
        assert!(
            says.iter().any(|s| s.starts_with("replace CHECK chk_nm_status")),
            "{says:?}"
        );
        assert!(says.iter().any(|s| s.starts_with("let message be empty")), "{says:?}");
        assert!(
            plan.notes.iter().any(|n| n == "add column attempts"),
            "{:?}",
            plan.notes
        );
        let k = kinds(&ins, &plan.layout);
        assert_eq!(k.get("id"), Some(&ColumnKind::Int4));
        assert_eq!(k.get("created_at"), Some(&ColumnKind::Naive));
        assert_eq!(k.get("error"), Some(&ColumnKind::Json("jsonb".into())));
    }

    #[test]
    fn what_cannot_be_adopted_is_refused_with_a_fix() {
        let mut ins = node_pos_table();
        ins.columns[0] = column("id", "uuid", true);
        ins.columns[4] = column("status", "integer", false);
        let plan = adopt(&ins, &Postgres, &BTreeMap::from([("colour".into(), "x".into())]));
        assert_eq!(plan.problems.len(), 3, "{:?}", plan.problems);
        assert!(
            plan.problems.iter().any(|p| p.contains("id is uuid")),
            "{:?}",
            plan.problems
        );
    }

    #[test]
    fn an_explicit_column_map_wins() {
        let ins = node_pos_table();
        let plan = adopt(&ins, &Postgres, &BTreeMap::from([("body".into(), "body".into())]));
        assert_eq!(plan.layout.column("body"), "body");
        assert!(plan.notes.iter().any(|n| n == "add column body"));
    }

    #[test]
    fn a_better_sqlite3_table_gets_columns_and_a_wider_check() {
        let create = "CREATE TABLE notification_messages (id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, recipient TEXT NOT NULL, body TEXT NOT NULL, status TEXT DEFAULT 'pending' CHECK(status IN ('pending','sent','failed')), error TEXT, sent_at DATETIME, created_at DATETIME DEFAULT CURRENT_TIMESTAMP)";
        let ins = Inspection {
            backend: "sqlite",
            table_exists: true,
            columns: vec![
                column("id", "INTEGER", false),
                column("channel", "TEXT", true),
                column("recipient", "TEXT", true),
                column("body", "TEXT", true),
                column("status", "TEXT", false),
                column("error", "TEXT", false),
                column("sent_at", "DATETIME", false),
                column("created_at", "DATETIME", false),
            ],
            checks: vec![(String::new(), create.into())],
            ..Inspection::default()
        };
        let plan = adopt(&ins, &Sqlite, &BTreeMap::new());
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
        let rewrite = plan
            .steps
            .iter()
            .find(|s| s.says.starts_with("rewrite"))
            .expect("a rewrite");
        assert!(rewrite
            .sql
            .iter()
            .any(|s| s.contains("'processing'") && !s.contains("body TEXT NOT NULL")));
        assert!(plan
            .steps
            .iter()
            .any(|s| s.sql == ["ALTER TABLE notification_messages ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0"]));
    }
}
