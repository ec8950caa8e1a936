//! Adopting the table a POS made, as POS developers really make it: each
//! variant is created with the POS's own DDL, filled with history (sent and
//! failed rows) and pending rows, adopted with `herald migrate`, and drained
//! with `herald process`. Every pending row is sent exactly once, history is
//! untouched, the guide's monitoring query and manual retry still work, a
//! POS-style insert after adoption is sent, and the columns the POS reads
//! keep their types.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::support::*;

/// One way a POS writes its table.
struct Variant {
    name: &'static str,
    /// The POS's DDL.
    ddl: &'static [&'static str],
    /// Its column names for channel, recipient, subject and the text.
    channel: &'static str,
    recipient: &'static str,
    subject: &'static str,
    text: &'static str,
    /// How it writes an error on a failed row (an SQL literal).
    error_literal: &'static str,
    /// Columns whose types Herald is allowed to change (documented widenings).
    widened: &'static [&'static str],
}

const POSTGRES: &[Variant] = &[
    Variant {
        name: "SERIAL id",
        ddl: &["CREATE TABLE notification_messages (
            id SERIAL PRIMARY KEY, channel VARCHAR(20) NOT NULL, recipient VARCHAR(255) NOT NULL,
            subject VARCHAR(255), body TEXT, status VARCHAR(20) DEFAULT 'pending', error TEXT,
            sent_at TIMESTAMPTZ, created_at TIMESTAMPTZ DEFAULT now())"],
        channel: "channel",
        recipient: "recipient",
        subject: "subject",
        text: "body",
        error_literal: "'{\"message\": \"old failure\"}'",
        widened: &[],
    },
    Variant {
        name: "TIMESTAMP without time zone",
        ddl: &["CREATE TABLE notification_messages (
            id BIGSERIAL PRIMARY KEY, channel TEXT NOT NULL, recipient TEXT NOT NULL, subject TEXT, body TEXT,
            status TEXT DEFAULT 'pending', error TEXT, sent_at TIMESTAMP,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"],
        channel: "channel",
        recipient: "recipient",
        subject: "subject",
        text: "body",
        error_literal: "'{\"message\": \"old failure\"}'",
        widened: &[],
    },
    Variant {
        name: "JSONB error",
        ddl: &["CREATE TABLE notification_messages (
            id BIGSERIAL PRIMARY KEY, channel TEXT NOT NULL, recipient TEXT NOT NULL, subject TEXT, body TEXT,
            status TEXT DEFAULT 'pending', error JSONB, sent_at TIMESTAMPTZ, created_at TIMESTAMPTZ DEFAULT now())"],
        channel: "channel",
        recipient: "recipient",
        subject: "subject",
        text: "body",
        error_literal: "'{\"message\": \"old failure\"}'::jsonb",
        widened: &[],
    },
    Variant {
        name: "content in a NOT NULL message column",
        ddl: &["CREATE TABLE notification_messages (
            id BIGSERIAL PRIMARY KEY, channel TEXT NOT NULL, recipient TEXT NOT NULL, subject TEXT,
            message TEXT NOT NULL, status TEXT DEFAULT 'pending', error TEXT, sent_at TIMESTAMPTZ,
            created_at TIMESTAMPTZ DEFAULT now())"],
        channel: "channel",
        recipient: "recipient",
        subject: "subject",
        text: "message",
        error_literal: "'{\"message\": \"old failure\"}'",
        widened: &[],
    },
    Variant {
        name: "type instead of channel",
        ddl: &["CREATE TABLE notification_messages (
            id BIGSERIAL PRIMARY KEY, type VARCHAR(20) NOT NULL, recipient TEXT NOT NULL, subject TEXT, body TEXT,
            status TEXT DEFAULT 'pending', error TEXT, sent_at TIMESTAMPTZ, created_at TIMESTAMPTZ DEFAULT now())"],
        channel: "type",
        recipient: "recipient",
        subject: "subject",
        text: "body",
        error_literal: "'{\"message\": \"old failure\"}'",
        widened: &[],
    },
    Variant {
        name: "a status CHECK with its own name",
        ddl: &["CREATE TABLE notification_messages (
            id BIGSERIAL PRIMARY KEY, channel TEXT NOT NULL, recipient TEXT NOT NULL, subject TEXT, body TEXT,
            status VARCHAR(20) DEFAULT 'pending', error TEXT, sent_at TIMESTAMPTZ, created_at TIMESTAMPTZ DEFAULT now(),
            CONSTRAINT chk_nm_status CHECK (status IN ('pending', 'sent', 'failed')))"],
        channel: "channel",
        recipient: "recipient",
        subject: "subject",
        text: "body",
        error_literal: "'{\"message\": \"old failure\"}'",
        widened: &[],
    },
    Variant {
        name: "status as an ENUM (Sequelize)",
        ddl: &[
            "CREATE TYPE enum_notification_messages_status AS ENUM ('pending', 'sent', 'failed')",
            "CREATE TABLE notification_messages (
            id SERIAL PRIMARY KEY, channel VARCHAR(255) NOT NULL, recipient VARCHAR(255) NOT NULL,
            subject VARCHAR(255), body TEXT, status enum_notification_messages_status DEFAULT 'pending',
            error TEXT, sent_at TIMESTAMPTZ, \"createdAt\" TIMESTAMPTZ NOT NULL DEFAULT now(),
            \"updatedAt\" TIMESTAMPTZ NOT NULL DEFAULT now())",
        ],
        channel: "channel",
        recipient: "recipient",
        subject: "subject",
        text: "body",
        error_literal: "'{\"message\": \"old failure\"}'",
        widened: &[],
    },
    Variant {
        name: "NOT NULL body and subject",
        ddl: &["CREATE TABLE notification_messages (
            id BIGSERIAL PRIMARY KEY, channel TEXT NOT NULL, recipient TEXT NOT NULL, subject TEXT NOT NULL,
            body TEXT NOT NULL, status TEXT DEFAULT 'pending', error TEXT, sent_at TIMESTAMPTZ,
            created_at TIMESTAMPTZ DEFAULT now())"],
        channel: "channel",
        recipient: "recipient",
        subject: "subject",
        text: "body",
        error_literal: "'{\"message\": \"old failure\"}'",
        widened: &[],
    },
    Variant {
        name: "the likely Node table: SERIAL, TIMESTAMP, JSONB, message, type, named CHECK, own columns",
        ddl: &["CREATE TABLE notification_messages (
            id SERIAL PRIMARY KEY, customer_id INTEGER, type VARCHAR(20) NOT NULL, recipient VARCHAR(255) NOT NULL,
            subject VARCHAR(255), message TEXT NOT NULL, status VARCHAR(7) DEFAULT 'pending', error JSONB,
            retry_count INTEGER DEFAULT 0, sent_at TIMESTAMP, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            CONSTRAINT chk_nm_status CHECK (status IN ('pending', 'sent', 'failed')))"],
        channel: "type",
        recipient: "recipient",
        subject: "subject",
        text: "message",
        error_literal: "'{\"message\": \"old failure\"}'::jsonb",
        // 'processing' does not fit in 7 letters.
        widened: &["status"],
    },
];

const SQLITE: &[Variant] = &[
    Variant {
        name: "better-sqlite3 table with CHECKs, DATETIME and message",
        ddl: &["CREATE TABLE notification_messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id INTEGER,
            channel TEXT NOT NULL CHECK(channel IN ('sms', 'whatsapp', 'email')), recipient TEXT NOT NULL,
            subject TEXT, message TEXT NOT NULL,
            status TEXT DEFAULT 'pending' CHECK(status IN ('pending', 'sent', 'failed')),
            error TEXT, sent_at DATETIME, created_at DATETIME DEFAULT CURRENT_TIMESTAMP)"],
        channel: "channel",
        recipient: "recipient",
        subject: "subject",
        text: "message",
        error_literal: "'{\"message\": \"old failure\"}'",
        widened: &[],
    },
    Variant {
        name: "sqlite3 table with type, NOT NULL body and a table CHECK",
        ddl: &["CREATE TABLE notification_messages (
            id INTEGER PRIMARY KEY, type TEXT NOT NULL, recipient TEXT NOT NULL, subject TEXT,
            body TEXT NOT NULL, status VARCHAR(20) NOT NULL DEFAULT 'pending', error TEXT,
            sent_at TEXT, created_at TEXT DEFAULT CURRENT_TIMESTAMP,
            CONSTRAINT chk_status CHECK (status IN ('pending','sent','failed')))"],
        channel: "type",
        recipient: "recipient",
        subject: "subject",
        text: "body",
        error_literal: "'{\"message\": \"old failure\"}'",
        widened: &[],
    },
];

const MYSQL: &[Variant] = &[
    Variant {
        name: "the guide's table on MySQL: INT id, ENUM channel and status, message, DATETIME, TIMESTAMP",
        ddl: &["CREATE TABLE notification_messages (
            id INT AUTO_INCREMENT PRIMARY KEY, customer_id INT,
            channel ENUM('sms', 'whatsapp', 'email') NOT NULL, recipient VARCHAR(255) NOT NULL,
            subject VARCHAR(255), message TEXT NOT NULL,
            status ENUM('pending', 'sent', 'failed') DEFAULT 'pending', error TEXT,
            sent_at DATETIME NULL, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
        ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"],
        channel: "channel",
        recipient: "recipient",
        subject: "subject",
        text: "message",
        error_literal: "'{\"message\": \"old failure\"}'",
        // The ENUM gains Herald's statuses (said in the migration's output).
        widened: &["status"],
    },
    Variant {
        name: "unsigned id, type, VARCHAR status with a named CHECK, NOT NULL body, ON UPDATE",
        ddl: &["CREATE TABLE notification_messages (
            id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, type VARCHAR(20) NOT NULL,
            recipient VARCHAR(255) NOT NULL, subject VARCHAR(255), body TEXT NOT NULL,
            status VARCHAR(20) NOT NULL DEFAULT 'pending', error TEXT, sent_at DATETIME,
            created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
            updated_at DATETIME DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
            CONSTRAINT chk_nm_status CHECK (status IN ('pending', 'sent', 'failed'))
        ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"],
        channel: "type",
        recipient: "recipient",
        subject: "subject",
        text: "body",
        error_literal: "'{\"message\": \"old failure\"}'",
        widened: &[],
    },
    Variant {
        name: "JSON error, TEXT channel and recipient, VARCHAR(7) status",
        ddl: &["CREATE TABLE notification_messages (
            id BIGINT AUTO_INCREMENT PRIMARY KEY, channel TEXT NOT NULL, recipient TEXT NOT NULL,
            subject TEXT, body TEXT, status VARCHAR(7) DEFAULT 'pending', error JSON,
            sent_at DATETIME(3), created_at DATETIME(3) DEFAULT CURRENT_TIMESTAMP(3)
        ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"],
        channel: "channel",
        recipient: "recipient",
        subject: "subject",
        text: "body",
        error_literal: "'{\"message\": \"old failure\"}'",
        // 'processing' does not fit in 7 letters; MySQL indexes only
        // bounded text (the claim's index leads with the channel).
        widened: &["status", "channel"],
    },
];

/// Whether a variant is a MySQL table (its identifiers are quoted with
/// backticks).
fn is_mysql(v: &Variant) -> bool {
    v.ddl.iter().any(|d| d.contains("AUTO_INCREMENT"))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The POS's own insert.
fn pos_insert(v: &Variant, channel: &str, recipient: &str, subject: Option<&str>, text: &str, extra: &str) -> String {
    let (mut cols, mut vals) = (
        vec![v.channel, v.recipient, v.text],
        vec![quote(channel), quote(recipient), quote(text)],
    );
    // A POS whose subject is NOT NULL writes one on every row.
    let subject = subject.or(v.ddl.iter().any(|d| d.contains("subject TEXT NOT NULL")).then_some(""));
    if let Some(s) = subject {
        cols.push(v.subject);
        vals.push(quote(s));
    }
    let (extra_cols, extra_vals) = extra.split_once('|').unwrap_or(("", ""));
    for (c, val) in extra_cols.split(',').zip(extra_vals.split(',')) {
        if !c.is_empty() {
            cols.push(c);
            vals.push(val.to_owned());
        }
    }
    let q = |c: &str| {
        if is_mysql(v) {
            format!("`{c}`")
        } else if c.chars().any(|ch| ch.is_ascii_uppercase()) || c == "type" {
            format!("\"{c}\"")
        } else {
            c.to_owned()
        }
    };
    format!(
        "INSERT INTO notification_messages ({}) VALUES ({})",
        cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", "),
        vals.join(", ")
    )
}

/// Column name → declared type, as the POS sees them.
async fn column_types(db: &TestDb) -> BTreeMap<String, String> {
    let sql = match db.backend {
        Backend::Postgres => {
            "SELECT column_name AS name, CASE WHEN data_type = 'USER-DEFINED' THEN udt_name ELSE data_type END
                    || coalesce('(' || character_maximum_length || ')', '') AS ty
               FROM information_schema.columns WHERE table_name = 'notification_messages'"
        }
        Backend::Sqlite => "SELECT name, type AS ty FROM pragma_table_info('notification_messages')",
        Backend::Mariadb => {
            "SELECT CAST(column_name AS CHAR) AS name, CAST(column_type AS CHAR) AS ty
               FROM information_schema.columns
              WHERE table_schema = DATABASE() AND table_name = 'notification_messages'"
        }
    };
    db.query(sql)
        .await
        .into_iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["ty"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn outbox_counts(path: &std::path::Path) -> HashMap<i64, usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        *counts.entry(v["id"].as_i64().unwrap()).or_default() += 1;
    }
    counts
}

async fn adopt_and_drain(backend: Backend, v: &Variant) {
    let db = TestDb::empty(backend).await;
    let dir = db.dir.path();
    for sql in v.ddl {
        db.store
            .execute_raw(sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
    }
    let status_col = "status";
    // History: a sent row and a failed row, then two pending rows.
    let sent_at = match backend {
        Backend::Postgres => "now() - interval '1 day'",
        Backend::Sqlite | Backend::Mariadb => "'2026-11-24 10:00:00'",
    };
    let history = [
        pos_insert(
            v,
            "sms",
            "+14153234567",
            None,
            "old, sent",
            &format!("{status_col},sent_at|'sent',{sent_at}"),
        ),
        pos_insert(
            v,
            "sms",
            "+14153234567",
            None,
            "old, failed",
            &format!("{status_col},error|'failed',{}", v.error_literal),
        ),
    ];
    for sql in &history {
        db.store
            .execute_raw(sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {sql}: {e}", v.name));
    }
    let pending = [
        pos_insert(v, "sms", "+14153234568", None, "Your order is ready", ""),
        pos_insert(v, "email", "ana@example.com", Some("Your receipt"), "Thanks!", ""),
    ];
    for sql in &pending {
        db.store
            .execute_raw(sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {sql}: {e}", v.name));
    }
    let types_before = column_types(&db).await;
    let before = db.query("SELECT * FROM notification_messages ORDER BY id").await;

    // Anything but migrate refuses the unadopted table and changes nothing.
    let o = run(herald(&db, dir).arg("process"));
    assert!(!o.status.success(), "{}: process ran on an unadopted table", v.name);
    assert!(stderr(&o).contains("herald migrate"), "{}: {}", v.name, stderr(&o));
    assert_eq!(
        column_types(&db).await,
        types_before,
        "{}: process changed the table",
        v.name
    );
    // A dry run prints the plan and changes nothing.
    let plan = ok(run(herald(&db, dir).args(["migrate", "--dry-run"])));
    assert!(
        plan.contains("adopting it") && plan.contains("dry run"),
        "{}: {plan}",
        v.name
    );
    assert_eq!(
        column_types(&db).await,
        types_before,
        "{}: the dry run changed the table",
        v.name
    );
    let migrated = ok(run(herald(&db, dir).arg("migrate")));
    // Every change of a column's type is said in the migration's output.
    for col in v.widened {
        assert!(
            migrated
                .lines()
                .any(|l| (l.contains("widen ") || l.contains("change ")) && l.contains(col)),
            "{}: the widening of {col} is not said: {migrated}",
            v.name
        );
    }

    // The columns the POS has keep their types (but documented widenings).
    let types_after = column_types(&db).await;
    for (col, ty) in &types_before {
        if !v.widened.contains(&col.as_str()) {
            assert_eq!(types_after.get(col), Some(ty), "{}: {col} changed type", v.name);
        }
    }

    // Drain.
    let outbox = dir.join("outbox.jsonl");
    let out = ok(run(herald(&db, dir).env("LOG_OUTBOX", &outbox).arg("process")));
    assert!(out.contains("sent 2, failed 0"), "{}: {out}", v.name);
    let rows = db.query("SELECT * FROM notification_messages ORDER BY id").await;
    let id_of = |r: &serde_json::Map<String, Value>| r["id"].as_i64().unwrap();
    let ids: Vec<i64> = rows.iter().map(id_of).collect();
    let counts = outbox_counts(&outbox);
    assert_eq!(counts.len(), 2, "{}: {counts:?}", v.name);
    assert!(counts.values().all(|n| *n == 1), "{}: sent twice: {counts:?}", v.name);
    // History untouched, column by column.
    for (old, new) in before.iter().zip(&rows).take(2) {
        for (col, value) in old {
            assert_eq!(
                new.get(col),
                Some(value),
                "{}: history row {} column {col} changed",
                v.name,
                id_of(old)
            );
        }
    }
    for r in &rows[2..] {
        assert_eq!(r[status_col], "sent", "{}: {r:?}", v.name);
        assert!(!r["sent_at"].is_null(), "{}: {r:?}", v.name);
    }

    // The guide's monitoring query (with the POS's own names).
    let created = if types_before.contains_key("createdAt") {
        "\"createdAt\""
    } else {
        "created_at"
    };
    let monitoring = db
        .query(&format!(
            "SELECT id, {ch}, recipient, status, error, sent_at, {created} FROM notification_messages ORDER BY {created} DESC LIMIT 50",
            ch = if v.channel == "type" && !is_mysql(v) { "\"type\"" } else { v.channel }
        ))
        .await;
    assert_eq!(monitoring.len(), 4, "{}", v.name);

    // The guide's manual retry, and a POS insert after adoption.
    let failed = ids[1];
    db.store
        .execute_raw(&format!(
            "UPDATE notification_messages SET status = 'pending' WHERE id = {failed}"
        ))
        .await
        .unwrap();
    db.store
        .execute_raw(&pos_insert(v, "whatsapp", "+14153234569", None, "Olá de novo", ""))
        .await
        .unwrap();
    let out = ok(run(herald(&db, dir).env("LOG_OUTBOX", &outbox).arg("process")));
    assert!(out.contains("sent 2, failed 0"), "{}: {out}", v.name);
    let counts = outbox_counts(&outbox);
    assert_eq!(counts.len(), 4, "{}: {counts:?}", v.name);
    assert!(counts.values().all(|n| *n == 1), "{}: {counts:?}", v.name);
    // An error the POS's code reads is still its type: an object for JSONB.
    if types_before.get("error").is_some_and(|t| t == "jsonb") {
        db.store
            .execute_raw(
                "INSERT INTO notification_messages (\"type\", recipient, message) VALUES ('sms', 'not a number', 'x')",
            )
            .await
            .ok();
        db.store
            .execute_raw(
                "INSERT INTO notification_messages (channel, recipient, body) VALUES ('sms', 'not a number', 'x')",
            )
            .await
            .ok();
        ok(run(herald(&db, dir).arg("process")));
        let kinds = db
            .query("SELECT jsonb_typeof(error) AS kind FROM notification_messages WHERE status = 'failed'")
            .await;
        assert!(
            !kinds.is_empty() && kinds.iter().all(|k| k["kind"] == "object"),
            "{}: {kinds:?}",
            v.name
        );
    }
    // `herald status` reads the adopted table.
    let status = ok(run(herald(&db, dir).arg("status")));
    assert!(status.contains("sent:"), "{}: {status}", v.name);
    // Migrating again changes nothing.
    let again = ok(run(herald(&db, dir).arg("migrate")));
    assert!(again.contains("up to date"), "{}: {again}", v.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pos_tables_are_adopted_and_drained() {
    for v in POSTGRES {
        adopt_and_drain(Backend::Postgres, v).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_pos_tables_are_adopted_and_drained() {
    for v in MYSQL {
        adopt_and_drain(Backend::Mariadb, v).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_pos_tables_are_adopted_and_drained() {
    for v in SQLITE {
        adopt_and_drain(Backend::Sqlite, v).await;
    }
}

every_backend! {
    async fn what_cannot_be_adopted_is_refused_before_anything_changes(_db: TestDb) {
        let db = TestDb::empty(_db.backend).await;
        let dir = db.dir.path();
        let id = match db.backend {
            Backend::Postgres => "id UUID PRIMARY KEY DEFAULT gen_random_uuid()",
            Backend::Sqlite => "id TEXT PRIMARY KEY",
            Backend::Mariadb => "id CHAR(36) PRIMARY KEY",
        };
        db.store
            .execute_raw(&format!("CREATE TABLE notification_messages ({id}, channel TEXT, recipient TEXT, body TEXT, status INTEGER)"))
            .await
            .unwrap();
        let before = column_types(&db).await;
        let o = run(herald(&db, dir).arg("migrate"));
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains("id is") && err.contains("integer id"), "{err}");
        assert!(err.contains("nothing was changed"), "{err}");
        assert_eq!(column_types(&db).await, before);
        // COLUMN_MAP naming a column that does not exist is refused too.
        let o = run(herald(&db, dir).env("COLUMN_MAP", "body:texto").arg("migrate"));
        assert!(stderr(&o).contains("no column \"texto\""), "{}", stderr(&o));
    }
}
