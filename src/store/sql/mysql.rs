//! MySQL 8.0+ and MariaDB 10.6+: timestamps are `DATETIME(6)` in UTC (every
//! connection sets `time_zone = '+00:00'`), bound as Herald's text form and
//! read with `STR_TO_DATE`; JSON parameters are read with `JSON_TABLE`.
//! Neither has `UPDATE … RETURNING`, nor lets an `UPDATE` read its own
//! table in a subquery with `LIMIT`: the statements that need either are
//! done in steps, in one transaction (the statements of
//! [`MysqlStatements`]), by `store/mysql.rs`.

use crate::domain::Channel;

use super::{unknown_channel, ClaimKind, Dialect, Statement, Table, IDS};

pub(crate) struct Mysql;

// Text read from JSON (`JSON_TABLE` columns) is in a binary collation: a
// `_bin` collation mixes with any other of the column's character set
// (MySQL picks the `_bin` one) where two `_ci` collations would be "an
// illegal mix", and a POS's table may use any collation. Comparisons with
// it are exact, as they should be for ids and addresses.
const TEXT_OF_JSON: &str = "LONGTEXT COLLATE utf8mb4_bin";
const TEXT_OF_JSON_SHORT: &str = "VARCHAR(40) COLLATE utf8mb4_bin";

/// How Herald's timestamp text is read (`2026-11-25T12:00:00.000Z`).
const TS_FORMAT: &str = "'%Y-%m-%dT%H:%i:%s.%fZ'";

/// The earliest time, for rows due at once (a literal: MariaDB refuses a
/// conversion, which depends on the session, in a generated column).
const BEGINNING: &str = "TIMESTAMP '1000-01-01 00:00:00'";

impl Mysql {
    /// `$n` as a `JSON_TABLE` of the ids in a JSON array.
    fn ids(p: &str) -> String {
        format!("SELECT j.id FROM JSON_TABLE({p}, '$[*]' COLUMNS (id BIGINT PATH '$')) AS j")
    }

    /// The later of two nullable times (MySQL's `GREATEST` is NULL if
    /// either is).
    fn later(a: &str, b: &str) -> String {
        format!("(CASE WHEN {a} IS NULL THEN {b} WHEN {b} IS NULL THEN {a} ELSE GREATEST({a}, {b}) END)")
    }

    /// The claim's rows, locked, in due order (the first step of a claim).
    fn claim_select(&self, t: &Table, kind: ClaimKind) -> String {
        let (status, channel) = (t.col("status"), t.col("channel"));
        let filter = match kind {
            ClaimKind::Any => String::new(),
            ClaimKind::Channel => format!("AND {channel} = $5"),
            ClaimKind::UnknownChannel => format!("AND {}", unknown_channel(&channel)),
        };
        let now = self.ts("$2");
        format!(
            "SELECT {id} FROM notification_messages FORCE INDEX (notification_messages_due)
              WHERE herald_due <= {now} {filter}
                AND (({status} = 'pending'
                      AND (send_at IS NULL OR send_at <= {now})
                      AND (next_attempt_at IS NULL OR next_attempt_at <= {now}))
                  OR ({status} = 'processing' AND (lease_expires_at IS NULL OR lease_expires_at < {now})))
              ORDER BY herald_due, id LIMIT $4
              FOR UPDATE SKIP LOCKED",
            id = t.id("")
        )
    }
}

impl Dialect for Mysql {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn quote(&self) -> char {
        '`'
    }

    fn ts(&self, p: &str) -> String {
        format!("STR_TO_DATE({p}, {TS_FORMAT})")
    }

    fn text(&self, p: &str) -> String {
        format!("CAST({p} AS CHAR)")
    }

    fn int(&self, p: &str) -> String {
        format!("CAST({p} AS SIGNED)")
    }

    fn ts_text(&self, expr: &str) -> String {
        format!("CONCAT(LEFT(DATE_FORMAT({expr}, '%Y-%m-%dT%H:%i:%s.%f'), 23), 'Z')")
    }

    /// `?` placeholders, each bound in order of appearance (a parameter used
    /// twice is bound twice).
    fn statement(&self, sql: &str) -> Statement {
        let (sql, seen) = super::rewrite_placeholders(sql, |_| "?".to_owned());
        Statement {
            sql,
            order: seen.into_iter().map(|n| n - 1).collect(),
        }
    }

    fn json_array(&self, p: &str) -> String {
        format!("JSON_TABLE({p}, '$[*]' COLUMNS (value VARCHAR(1024) COLLATE utf8mb4_bin PATH '$')) AS ja")
    }

    fn stats_as_stored(&self, table: &str) -> String {
        format!(
            "SELECT {}, channel, provider, event, code, count, segments, latency_ms, {}
               FROM {table} WHERE bucket >= {} AND bucket < {}",
            self.ts_text("bucket"),
            lat_text(false),
            self.ts("$1"),
            self.ts("$2")
        )
    }

    fn stats_range(&self, table: &str, unit: &str) -> String {
        if (table, unit) == ("herald_stats", "minute") || (table, unit) == ("herald_stats_hourly", "hour") {
            return self.stats_as_stored(table);
        }
        let bucket = match unit {
            "day" => "DATE_FORMAT(bucket, '%Y-%m-%dT00:00:00.000Z')",
            "hour" => "DATE_FORMAT(bucket, '%Y-%m-%dT%H:00:00.000Z')",
            _ => "DATE_FORMAT(bucket, '%Y-%m-%dT%H:%i:00.000Z')",
        };
        format!(
            "SELECT {bucket}, channel, provider, event, code, CAST(sum(count) AS SIGNED), CAST(sum(segments) AS SIGNED),
                    CAST(sum(latency_ms) AS SIGNED), {}
               FROM {table} WHERE bucket >= {} AND bucket < {}
              GROUP BY 1, 2, 3, 4, 5",
            lat_text(true),
            self.ts("$1"),
            self.ts("$2")
        )
    }

    fn stats_add(&self, table: &str) -> String {
        let lat_cols: Vec<String> = (0..13).map(|i| format!("lat{i}")).collect();
        let lat_json: Vec<String> = (0..13).map(|i| format!("lat{i} BIGINT PATH '$.lat[{i}]'")).collect();
        // Qualified: in `INSERT … SELECT` a bare name could be the SELECT's.
        let lat_add: Vec<String> = (0..13)
            .map(|i| format!("{table}.lat{i} = {table}.lat{i} + VALUES(lat{i})"))
            .collect();
        format!(
            "INSERT INTO {table} (bucket, channel, provider, event, code, count, segments, latency_ms, {})
         SELECT {}, x.channel, x.provider, x.event, x.code, x.count, x.segments, x.latency_ms, {}
           FROM JSON_TABLE($1, '$[*]' COLUMNS (
                  bucket VARCHAR(40) COLLATE utf8mb4_bin PATH '$.bucket', channel VARCHAR(64) COLLATE utf8mb4_bin PATH '$.channel',
                  provider VARCHAR(64) COLLATE utf8mb4_bin PATH '$.provider', event VARCHAR(128) COLLATE utf8mb4_bin PATH '$.event',
                  code VARCHAR(128) COLLATE utf8mb4_bin PATH '$.code', count BIGINT PATH '$.count', segments BIGINT PATH '$.segments',
                  latency_ms BIGINT PATH '$.latency_ms', {})) AS x
          ORDER BY 1, 2, 3, 4, 5
         ON DUPLICATE KEY UPDATE {table}.count = {table}.count + VALUES(count),
                {table}.segments = {table}.segments + VALUES(segments),
                {table}.latency_ms = {table}.latency_ms + VALUES(latency_ms), {}",
            lat_cols.join(", "),
            self.ts("x.bucket"),
            lat_cols.iter().map(|c| format!("x.{c}")).collect::<Vec<_>>().join(", "),
            lat_json.join(", "),
            lat_add.join(", ")
        )
    }

    fn insert_many(&self, t: &Table) -> String {
        // MySQL cannot hand back the rows of a multi-row insert: messages are
        // inserted one at a time with the `insert` statement (in one
        // transaction), and this statement is not used.
        let _ = t;
        "SELECT 1".to_owned()
    }

    fn claim(&self, t: &Table, kind: ClaimKind) -> String {
        self.claim_select(t, kind)
    }

    fn due_key(&self, t: &Table) -> String {
        format!(
            "CASE WHEN {status} = 'processing' THEN coalesce(lease_expires_at, {BEGINNING})
                  ELSE coalesce({}, {BEGINNING}) END",
            Self::later("send_at", "next_attempt_at"),
            status = t.col("status")
        )
    }

    fn complete(&self, t: &Table) -> String {
        let c = |n: &str| t.col(n);
        format!(
            "UPDATE notification_messages AS m
               JOIN JSON_TABLE($1, '$[*]' COLUMNS (
                      id BIGINT PATH '$.id', status VARCHAR(20) COLLATE utf8mb4_bin PATH '$.status', error LONGTEXT COLLATE utf8mb4_bin PATH '$.error',
                      provider VARCHAR(64) COLLATE utf8mb4_bin PATH '$.provider', pmid VARCHAR(1024) COLLATE utf8mb4_bin PATH '$.pmid',
                      sent_at VARCHAR(40) COLLATE utf8mb4_bin PATH '$.sent_at', next_at VARCHAR(40) COLLATE utf8mb4_bin PATH '$.next_at',
                      ad INT PATH '$.ad', bd INT PATH '$.bd',
                      r_subject LONGTEXT COLLATE utf8mb4_bin PATH '$.r_subject', r_body LONGTEXT COLLATE utf8mb4_bin PATH '$.r_body',
                      r_html LONGTEXT COLLATE utf8mb4_bin PATH '$.r_html', r_sid VARCHAR(64) COLLATE utf8mb4_bin PATH '$.r_sid',
                      r_vars LONGTEXT COLLATE utf8mb4_bin PATH '$.r_vars', r_version INT PATH '$.r_version',
                      r_locale VARCHAR(64) COLLATE utf8mb4_bin PATH '$.r_locale')) AS u ON m.id = u.id
                SET m.{error} = CASE WHEN u.status = 'sent' THEN NULL ELSE coalesce({new_error}, m.{error}) END,
                    m.provider = coalesce(u.provider, m.provider),
                    m.provider_message_id = coalesce(u.pmid, m.provider_message_id),
                    m.{sent_at} = coalesce({}, m.{sent_at}),
                    m.next_attempt_at = {},
                    m.attempts = m.attempts + u.ad,
                    m.retry_base = m.retry_base + u.bd,
                    m.lease_owner = NULL, m.lease_expires_at = NULL, m.{updated_at} = {},
                    m.{subject} = coalesce(u.r_subject, m.{subject}), m.{body} = coalesce(u.r_body, m.{body}),
                    m.{html_body} = coalesce(u.r_html, m.{html_body}), m.content_sid = coalesce(u.r_sid, m.content_sid),
                    m.content_variables = coalesce(u.r_vars, m.content_variables),
                    m.template_version = coalesce(u.r_version, m.template_version),
                    m.locale = coalesce(u.r_locale, m.locale),
                    m.{status} = {new_status}
              WHERE m.id IN ({IDS}) AND m.lease_owner = $3 AND m.{status} = 'processing'",
            self.ts("u.sent_at"),
            self.ts("u.next_at"),
            self.ts("$2"),
            new_status = t.write("status", "u.status"),
            new_error = t.write("error", "u.error"),
            updated_at = c("updated_at"),
            status = c("status"),
            error = c("error"),
            sent_at = c("sent_at"),
            subject = c("subject"),
            body = c("body"),
            html_body = c("html_body"),
        )
    }

    fn insert_attempts(&self) -> String {
        format!(
            "INSERT INTO notification_attempts
                (message_id, attempt, started_at, finished_at, provider, outcome, error, provider_message_id, worker)
         SELECT a.message_id, a.attempt, {}, {}, a.provider, a.outcome, a.error, a.pmid, $2
           FROM JSON_TABLE($1, '$[*]' COLUMNS (
                  message_id BIGINT PATH '$.message_id', attempt INT PATH '$.attempt',
                  started_at VARCHAR(40) COLLATE utf8mb4_bin PATH '$.started_at', finished_at VARCHAR(40) COLLATE utf8mb4_bin PATH '$.finished_at',
                  provider VARCHAR(64) COLLATE utf8mb4_bin PATH '$.provider', outcome VARCHAR(32) COLLATE utf8mb4_bin PATH '$.outcome',
                  error LONGTEXT COLLATE utf8mb4_bin PATH '$.error', pmid VARCHAR(1024) COLLATE utf8mb4_bin PATH '$.pmid')) AS a",
            self.ts("a.started_at"),
            self.ts("a.finished_at")
        )
    }

    fn next_due(&self, t: &Table) -> String {
        // One look per channel (the index leads with the channel).
        let channel = t.col("channel");
        let per_channel: Vec<String> = Channel::ALL
            .iter()
            .map(|c| {
                format!(
                    "(SELECT herald_due AS due FROM notification_messages FORCE INDEX (notification_messages_due)
                       WHERE {channel} = '{c}' AND herald_due IS NOT NULL ORDER BY herald_due LIMIT 1)"
                )
            })
            .collect();
        format!(
            "SELECT {} FROM ({}) AS d",
            self.ts_text("GREATEST(min(due), TIMESTAMP('2000-01-01 00:00:00'))"),
            per_channel.join(" UNION ALL ")
        )
    }

    fn rows_estimate(&self) -> String {
        "SELECT CAST(TABLE_ROWS AS SIGNED) FROM information_schema.TABLES
          WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'notification_messages'"
            .to_owned()
    }
    fn oldest_due(&self, t: &Table) -> String {
        let (status, created_at) = (t.col("status"), t.read("created_at", ""));
        format!(
            "SELECT {} FROM notification_messages
              WHERE {status} = 'pending' AND herald_due IS NOT NULL
                AND (send_at IS NULL OR send_at <= {now})
                AND (next_attempt_at IS NULL OR next_attempt_at <= {now})",
            self.ts_text(&format!("min({created_at})")),
            now = self.ts("$1")
        )
    }

    fn table_exists(&self) -> String {
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = $1".to_owned()
    }

    fn columns(&self) -> String {
        "SELECT CAST(column_name AS CHAR), CAST(column_type AS CHAR),
                CAST(CASE WHEN data_type = 'enum' THEN 1 ELSE 0 END AS SIGNED),
                CAST(CASE WHEN is_nullable = 'NO' THEN 1 ELSE 0 END AS SIGNED),
                CAST(CASE WHEN column_default IS NULL OR column_default = 'NULL' THEN NULL
                          ELSE column_default END AS CHAR),
                CAST(CASE WHEN collation_name LIKE '%\\_bin' THEN 1 ELSE 0 END AS SIGNED)
           FROM information_schema.columns
          WHERE table_schema = DATABASE() AND table_name = 'notification_messages'
          ORDER BY ordinal_position"
            .to_owned()
    }

    fn checks(&self) -> String {
        "SELECT CAST(tc.constraint_name AS CHAR), CAST(cc.check_clause AS CHAR)
           FROM information_schema.table_constraints tc
           JOIN information_schema.check_constraints cc
             ON cc.constraint_schema = tc.constraint_schema AND cc.constraint_name = tc.constraint_name
          WHERE tc.table_schema = DATABASE() AND tc.table_name = 'notification_messages'
            AND tc.constraint_type = 'CHECK'
          ORDER BY tc.constraint_name"
            .to_owned()
    }

    fn triggers(&self) -> String {
        "SELECT CAST(trigger_name AS CHAR) FROM information_schema.triggers
          WHERE trigger_schema = DATABASE() AND event_object_table = 'notification_messages'
          ORDER BY trigger_name"
            .to_owned()
    }

    fn enum_labels(&self) -> Option<String> {
        // An ENUM's labels are in its column type (`enum('a','b')`).
        None
    }

    fn add_enum_value(&self, _ty: &str, _value: &str) -> Option<String> {
        None
    }

    fn drop_check(&self, name: &str) -> Option<String> {
        Some(format!(
            "ALTER TABLE notification_messages DROP CONSTRAINT `{}`",
            name.replace('`', "``")
        ))
    }

    fn drop_not_null(&self, _col: &str) -> Option<String> {
        // MySQL changes nullability by restating the column (MODIFY): see
        // the adoption plan, which knows the column's type.
        None
    }

    fn change_type(&self, col: &str, to: &str) -> Option<String> {
        Some(format!("ALTER TABLE notification_messages MODIFY {col} {to}"))
    }

    fn rewrite_create(&self, _sql: &str) -> Option<Vec<String>> {
        None
    }

    fn statuses_in_use(&self) -> String {
        "SELECT CAST(status AS CHAR), count(*) FROM notification_messages GROUP BY 1".to_owned()
    }

    fn layout_create(&self) -> String {
        "CREATE TABLE IF NOT EXISTS herald_layout (id INTEGER PRIMARY KEY, layout LONGTEXT NOT NULL)
          ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci"
            .to_owned()
    }

    fn layout_write(&self) -> String {
        "INSERT INTO herald_layout (id, layout) VALUES (1, $1) ON DUPLICATE KEY UPDATE layout = VALUES(layout)"
            .to_owned()
    }

    fn migrations_applied(&self) -> String {
        "SELECT count(*) FROM _sqlx_migrations WHERE success = 1".to_owned()
    }

    fn lock_name(&self, p: &str) -> Option<String> {
        // The name's row (made by `template_lock_row` first): a row lock
        // serializes saves whatever the isolation level.
        Some(format!(
            "SELECT name FROM herald_template_locks WHERE name = {p} FOR UPDATE"
        ))
    }

    fn scheduled_after(&self, _t: &Table, p: &str) -> String {
        format!("(send_at IS NOT NULL AND send_at > {})", self.ts(p))
    }

    fn json_records(&self, p: &str, alias: &str, fields: &[(&str, &str)]) -> String {
        let cols: Vec<String> = fields
            .iter()
            .map(|(f, ty)| {
                let ty = match *ty {
                    "bigint" => "BIGINT",
                    "int" => "INT",
                    "timestamptz" => TEXT_OF_JSON_SHORT,
                    _ => TEXT_OF_JSON,
                };
                format!("{f} {ty} PATH '$.{f}'")
            })
            .collect();
        format!(
            "JSON_TABLE({p}, '$[*]' COLUMNS (n FOR ORDINALITY, {})) AS {alias}",
            cols.join(", ")
        )
    }

    fn concat(&self, parts: &[&str]) -> String {
        format!("CONCAT({})", parts.join(", "))
    }

    fn skip_locked(&self, _alias: &str) -> String {
        "FOR UPDATE SKIP LOCKED".to_owned()
    }

    /// `INSERT IGNORE`: a no-op `ON DUPLICATE KEY UPDATE` would report
    /// the row as affected (sqlx asks for found rows), hiding whether it
    /// was inserted. Herald's values always fit, so nothing else is ignored.
    fn insert_or_skip(&self) -> &'static str {
        "INSERT IGNORE"
    }

    fn on_conflict_nothing(&self, _keys: &str) -> String {
        String::new()
    }

    fn excluded(&self, col: &str) -> String {
        format!("VALUES({col})")
    }

    fn upsert(&self, _keys: &str, sets: &str) -> String {
        format!("ON DUPLICATE KEY UPDATE {sets}")
    }

    fn returning(&self, _cols: &str) -> String {
        String::new()
    }
}

/// The 13 latency columns as Herald's JSON array text (summed when `sum`).
fn lat_text(sum: bool) -> String {
    let parts: Vec<String> = (0..13)
        .map(|i| {
            if sum {
                format!("CAST(sum(lat{i}) AS SIGNED)")
            } else {
                format!("lat{i}")
            }
        })
        .collect();
    format!("CONCAT('[', CONCAT_WS(',', {}), ']')", parts.join(", "))
}

/// The steps MySQL takes where the other backends use one statement with
/// `RETURNING`, or an `UPDATE` that reads its own table. Parameters as the
/// statement each replaces, with the ids (a JSON array) last where noted.
#[derive(Debug)]
pub(crate) struct MysqlStatements {
    /// Lease the rows [`IDS`] to `$1` until `$3` at `$2` (the claim's
    /// second step).
    pub claim_update: Statement,
    /// Of the ids [`IDS`], those still leased to `$2` and processing,
    /// locked (the completion's first step).
    pub owned: Statement,
    /// Which of the ids [`IDS`] `retry_ids` would change, locked.
    pub retry_ids_select: Statement,
    /// `retry_ids` for the ids [`IDS`] at `$2`.
    pub retry_update: Statement,
    /// Make sure template name `$1` has a row to lock (outside the save's
    /// transaction; the save then locks it).
    pub template_lock_row: Statement,
    /// The ids `retry_failed` would change, locked.
    pub retry_failed_select: Statement,
    /// The ids `retry_parked` would change (`$1` now), locked.
    pub retry_parked_select: Statement,
    /// Who holds lease `$1`.
    pub lease_owner: Statement,
    /// Circuit `$1`'s generation.
    pub circuit_generation: Statement,
    /// A bid to probe circuit `$1` that was never written: worker `$2`
    /// probes until `$4` (at `$3`); no row if one exists.
    pub circuit_probe_insert: Statement,
    /// Lease up to `$4` due deliveries of endpoint `$5` at `$2` (the first
    /// step of a delivery claim), locked.
    pub deliveries_select: Statement,
    /// Lease the deliveries [`IDS`] to `$1` until `$3`.
    pub deliveries_update: Statement,
    /// Deliveries by id (the JSON array `$1`): as the claim returns them.
    pub deliveries_fetch: Statement,
}

impl MysqlStatements {
    pub(crate) fn build(d: &Mysql, t: &Table) -> MysqlStatements {
        let st = |sql: &str| d.statement(sql);
        let (status, updated_at) = (t.col("status"), t.col("updated_at"));
        let retryable = format!("({status} = 'failed' OR ({status} = 'pending' AND next_attempt_at IS NOT NULL))");
        let id = t.id("");
        MysqlStatements {
            claim_update: st(&format!(
                "UPDATE notification_messages
                    SET {status} = 'processing', lease_owner = $1, lease_expires_at = {}, attempts = attempts + 1,
                        {updated_at} = {}
                  WHERE id IN ({IDS})",
                d.ts("$3"),
                d.ts("$2"),
            )),
            owned: st(&format!(
                "SELECT {id} FROM notification_messages
                  WHERE id IN ({IDS}) AND lease_owner = $2 AND {status} = 'processing'
                  FOR UPDATE"
            )),
            retry_ids_select: st(&format!(
                "SELECT {id} FROM notification_messages WHERE id IN ({IDS}) AND {retryable} FOR UPDATE"
            )),
            retry_update: st(&format!(
                "UPDATE notification_messages
                    SET next_attempt_at = CASE WHEN {status} = 'pending' THEN NULL ELSE next_attempt_at END,
                        {status} = 'pending', {updated_at} = {}
                  WHERE id IN ({IDS}) AND {retryable}",
                d.ts("$2")
            )),
            template_lock_row: st("INSERT IGNORE INTO herald_template_locks (name) VALUES ($1)"),
            retry_failed_select: st(&format!(
                "SELECT {id} FROM notification_messages WHERE {status} = 'failed' FOR UPDATE"
            )),
            retry_parked_select: st(&format!(
                "SELECT {id} FROM notification_messages WHERE {status} = 'pending' AND next_attempt_at > {} FOR UPDATE",
                d.ts("$1")
            )),
            lease_owner: st("SELECT owner FROM herald_leases WHERE name = $1"),
            circuit_generation: st("SELECT generation FROM herald_circuits WHERE provider = $1"),
            circuit_probe_insert: st(&format!(
                "INSERT IGNORE INTO herald_circuits (provider, state, opens, probe_owner, probe_until, generation, changed_at)
                 VALUES ($1, 'half_open', 1, $2, {}, 1, {})",
                d.ts("$4"),
                d.ts("$3")
            )),
            deliveries_select: st(&format!(
                "SELECT o.id FROM herald_webhook_outbox o FORCE INDEX (herald_webhook_outbox_due)
                  WHERE o.endpoint_id = $5 AND o.status = 'pending' AND o.next_attempt_at <= {}
                    AND (o.message_id IS NULL
                         OR o.id = (SELECT min(p.id) FROM herald_webhook_outbox p
                                     WHERE p.message_id = o.message_id AND p.endpoint_id = o.endpoint_id
                                       AND p.status = 'pending'))
                  ORDER BY o.next_attempt_at, o.id LIMIT $4
                  FOR UPDATE SKIP LOCKED",
                d.ts("$2")
            )),
            deliveries_update: st(&format!(
                "UPDATE herald_webhook_outbox SET lease_owner = $1, next_attempt_at = {}, attempts = attempts + 1
                  WHERE id IN ({IDS})",
                d.ts("$3"),
            )),
            deliveries_fetch: st(&format!(
                "SELECT id, event_id, endpoint_id, message_id, type, payload, attempts FROM herald_webhook_outbox
                  WHERE id IN ({})",
                Mysql::ids("$1")
            )),
        }
    }
}
