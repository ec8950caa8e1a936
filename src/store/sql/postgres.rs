//! PostgreSQL: timestamps are `timestamptz` (bound as text and cast), JSON
//! parameters are read with `jsonb_to_recordset`, claims use
//! `FOR UPDATE SKIP LOCKED` so concurrent workers never wait for each other.

use crate::domain::Channel;

use super::{numbered, unknown_channel, ClaimKind, Dialect, Statement, Table};

pub(crate) struct Postgres;

/// The NOTIFY channel that the insert and manual-retry triggers signal
/// (`migrations/postgres/0001_queue.sql`); processors LISTEN on it.
pub(crate) const NOTIFY_CHANNEL: &str = "herald_messages";

impl Dialect for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn ts(&self, p: &str) -> String {
        format!("{p}::timestamptz")
    }

    fn text(&self, p: &str) -> String {
        format!("{p}::text")
    }

    fn int(&self, p: &str) -> String {
        format!("{p}::bigint")
    }

    fn ts_text(&self, expr: &str) -> String {
        format!("to_char(({expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
    }

    fn statement(&self, sql: &str) -> Statement {
        numbered(sql, "$")
    }

    fn json_array(&self, p: &str) -> String {
        format!("jsonb_array_elements_text({p}::jsonb)")
    }

    fn stats_range(&self, table: &str, unit: &str) -> String {
        if (table, unit) == ("herald_stats", "minute") || (table, unit) == ("herald_stats_hourly", "hour") {
            return self.stats_as_stored(table);
        }
        let lat: Vec<String> = (1..=13).map(|i| format!("sum(lat[{i}])")).collect();
        format!(
            "SELECT {}, channel, provider, event, code, sum(count)::bigint, sum(segments)::bigint,
                    sum(latency_ms)::bigint, ARRAY[{}]::text
               FROM {table} WHERE bucket >= $1::timestamptz AND bucket < $2::timestamptz
              GROUP BY 1, 2, 3, 4, 5",
            self.ts_text(&format!("date_trunc('{unit}', bucket, 'UTC')")),
            lat.join(", ")
        )
    }

    fn stats_add(&self, table: &str) -> String {
        format!(
            "INSERT INTO {table} AS s (bucket, channel, provider, event, code, count, segments, latency_ms, lat)
         SELECT bucket, channel, provider, event, code, count, segments, latency_ms,
                ARRAY(SELECT jsonb_array_elements_text(lat)::bigint)
           FROM jsonb_to_recordset($1::jsonb)
             AS x(bucket timestamptz, channel text, provider text, event text, code text,
                  count bigint, segments bigint, latency_ms bigint, lat jsonb)
          ORDER BY bucket, channel, provider, event, code
         ON CONFLICT (bucket, channel, provider, event, code) DO UPDATE
            SET count = s.count + excluded.count,
                segments = s.segments + excluded.segments,
                latency_ms = s.latency_ms + excluded.latency_ms,
                lat = ARRAY(SELECT a + b FROM unnest(s.lat, excluded.lat) WITH ORDINALITY AS t(a, b, i) ORDER BY i)"
        )
    }

    fn insert_many(&self, t: &Table) -> String {
        let cols = t.cols(&[
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
        format!(
            "INSERT INTO notification_messages ({cols})
             SELECT {}, {}, {}, {}, {}, r.send_at, {},
                    $2::timestamptz, $2::timestamptz, r.content_sid, r.content_variables,
                    r.template, r.template_version, r.locale
               FROM ROWS FROM (jsonb_to_recordset($1::jsonb)
                      AS (channel text, recipient text, subject text, body text, html_body text, send_at timestamptz,
                          metadata text, content_sid text, content_variables text,
                          template text, template_version int, locale text)) WITH ORDINALITY
                 AS r(channel, recipient, subject, body, html_body, send_at, metadata, content_sid, content_variables,
                      template, template_version, locale, n)
              ORDER BY r.n
          RETURNING {}",
            t.write("channel", "r.channel"),
            t.write("recipient", "r.recipient"),
            t.write("subject", "r.subject"),
            t.write("body", "r.body"),
            t.write("html_body", "r.html_body"),
            t.write("metadata", "r.metadata"),
            t.select("")
        )
    }

    // The claimed ids are handed to the UPDATE as an array, so it finds
    // them by primary key. Joined as `FROM due WHERE m.id = due.id`, the
    // generic plan PostgreSQL settles on for this prepared statement is a
    // hash join over a sequential scan of the whole table: every claim
    // cost O(table), 60 ms of a 75 ms claim at 100,000 rows.
    fn claim(&self, t: &Table, kind: ClaimKind) -> String {
        let (open, status, channel) = (t.open(), t.col("status"), t.text_of("channel", ""));
        let updated_at = t.col("updated_at");
        let filter = match kind {
            ClaimKind::Any => String::new(),
            ClaimKind::Channel => format!("AND {channel} = $5"),
            ClaimKind::UnknownChannel => format!("AND {}", unknown_channel(&channel)),
        };
        let due = self.due_key(t);
        // A `timestamp` send_at is keyed as if in UTC; in another zone its
        // row may be due up to 14 hours either side of its key.
        let slack = if t.is_naive("send_at") {
            " + interval '14 hours'"
        } else {
            ""
        };
        format!(
            "WITH due AS (
                SELECT id FROM notification_messages
                 WHERE {open} AND ({due}) <= $2::timestamptz{slack} {filter}
                   AND (({status} = 'pending'
                         AND (send_at IS NULL OR send_at <= $2::timestamptz)
                         AND (next_attempt_at IS NULL OR next_attempt_at <= $2::timestamptz))
                     OR ({status} = 'processing' AND (lease_expires_at IS NULL OR lease_expires_at < $2::timestamptz)))
                 ORDER BY ({due}), id LIMIT $4
                 FOR NO KEY UPDATE SKIP LOCKED)
             UPDATE notification_messages AS m
                SET {status} = 'processing', lease_owner = $1, lease_expires_at = $3::timestamptz,
                    attempts = m.attempts + 1, {updated_at} = $2::timestamptz
              WHERE m.id = ANY (ARRAY(SELECT id FROM due))
          RETURNING {}",
            t.select("m.")
        )
    }

    fn due_key(&self, t: &Table) -> String {
        let send_at = if t.is_naive("send_at") {
            "timezone('UTC', send_at)"
        } else {
            "send_at"
        };
        format!(
            "CASE WHEN {status} = 'processing' THEN coalesce(lease_expires_at, '-infinity'::timestamptz)
                  ELSE coalesce(greatest({send_at}, next_attempt_at), '-infinity'::timestamptz) END",
            status = t.col("status")
        )
    }

    // The lease check runs per completion, as a pkey lookup that locks the
    // row (FOR NO KEY UPDATE rechecks it against concurrent reclaims, and
    // does not block receipts' and attempts' foreign keys). It is kept
    // out of the outer WHERE on purpose: there, `lease_owner = $3` makes
    // PostgreSQL's generic plan expect one row and loop over the JSON once
    // per open message (100x slower on a big backlog).
    fn complete(&self, t: &Table) -> String {
        let c = |n: &str| t.col(n);
        format!(
            "WITH u AS (
                SELECT * FROM jsonb_to_recordset($1::jsonb)
                    AS x(id bigint, status text, error text, provider text, pmid text,
                         sent_at timestamptz, next_at timestamptz, ad int, bd int,
                         r_subject text, r_body text, r_html text, r_sid text, r_vars text,
                         r_version int, r_locale text)),
             owned AS (
                -- The row is found by primary key alone (a condition on the
                -- status would let the planner probe the partial due index
                -- for the id, a scan of the whole index per row when its
                -- statistics are stale), locked, then checked as it is now.
                SELECT u.* FROM u CROSS JOIN LATERAL (
                    SELECT o.lease_owner, o.{status} AS held_status FROM notification_messages AS o
                     WHERE o.id = u.id
                    OFFSET 0 FOR NO KEY UPDATE) AS held
                 WHERE held.lease_owner = $3 AND held.held_status = 'processing')
             UPDATE notification_messages AS m
                SET {status} = {new_status},
                    {error} = CASE WHEN u.status = 'sent' THEN NULL ELSE coalesce({new_error}, m.{error}) END,
                    provider = coalesce(u.provider, m.provider),
                    provider_message_id = coalesce(u.pmid, m.provider_message_id),
                    {sent_at} = coalesce(u.sent_at, m.{sent_at}),
                    next_attempt_at = u.next_at,
                    attempts = m.attempts + u.ad,
                    retry_base = m.retry_base + u.bd,
                    lease_owner = NULL, lease_expires_at = NULL, {updated_at} = $2::timestamptz,
                    {subject} = coalesce(u.r_subject, m.{subject}), {body} = coalesce(u.r_body, m.{body}),
                    {html_body} = coalesce(u.r_html, m.{html_body}), content_sid = coalesce(u.r_sid, m.content_sid),
                    content_variables = coalesce(u.r_vars, m.content_variables),
                    template_version = coalesce(u.r_version, m.template_version),
                    locale = coalesce(u.r_locale, m.locale)
               FROM owned AS u
              WHERE m.id = u.id
          RETURNING {id}",
            updated_at = c("updated_at"),
            new_status = t.write("status", "u.status"),
            new_error = t.write("error", "u.error"),
            id = t.id("m."),
            status = c("status"),
            error = c("error"),
            sent_at = c("sent_at"),
            subject = c("subject"),
            body = c("body"),
            html_body = c("html_body"),
        )
    }

    fn insert_attempts(&self) -> String {
        "INSERT INTO notification_attempts
                (message_id, attempt, started_at, finished_at, provider, outcome, error, provider_message_id, worker)
         SELECT message_id, attempt, started_at, finished_at, provider, outcome, error, pmid, $2
           FROM jsonb_to_recordset($1::jsonb)
             AS a(message_id bigint, attempt int, started_at timestamptz, finished_at timestamptz,
                  provider text, outcome text, error text, pmid text)"
            .to_owned()
    }

    fn next_due(&self, t: &Table) -> String {
        // One look per channel (the index leads with the channel).
        let (due, channel) = (self.due_key(t), t.col("channel"));
        let per_channel: Vec<String> = Channel::ALL
            .iter()
            .map(|c| {
                format!(
                    "(SELECT ({due}) AS due FROM notification_messages
                       WHERE {} AND {channel} = '{c}' ORDER BY ({due}) LIMIT 1)",
                    t.open()
                )
            })
            .collect();
        format!(
            "SELECT {} FROM ({}) AS d",
            self.ts_text("greatest(min(due), '2000-01-01'::timestamptz)"),
            per_channel.join(" UNION ALL ")
        )
    }

    fn rows_estimate(&self) -> String {
        // reltuples: the estimate ANALYZE (or autovacuum) left; -1 before the first.
        "SELECT (SELECT reltuples FROM pg_class WHERE oid = to_regclass('notification_messages'))::bigint".to_owned()
    }
    fn oldest_due(&self, t: &Table) -> String {
        let (status, created_at) = (t.col("status"), t.read("created_at", ""));
        format!(
            "SELECT {} FROM notification_messages
              WHERE {} AND {status} = 'pending'
                AND (send_at IS NULL OR send_at <= $1::timestamptz)
                AND (next_attempt_at IS NULL OR next_attempt_at <= $1::timestamptz)",
            self.ts_text(&format!("min({created_at})")),
            t.open()
        )
    }

    fn table_exists(&self) -> String {
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relname = $1 AND c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false))"
            .to_owned()
    }

    fn columns(&self) -> String {
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
                CASE WHEN t.typtype = 'e' THEN 1 ELSE 0 END, CASE WHEN a.attnotnull THEN 1 ELSE 0 END,
                pg_get_expr(d.adbin, d.adrelid), 0
           FROM pg_attribute a
           JOIN pg_type t ON t.oid = a.atttypid
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE a.attrelid = 'notification_messages'::regclass AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum"
            .to_owned()
    }

    fn checks(&self) -> String {
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
          WHERE conrelid = 'notification_messages'::regclass AND contype = 'c' ORDER BY conname"
            .to_owned()
    }

    fn triggers(&self) -> String {
        "SELECT tgname::text FROM pg_trigger
          WHERE tgrelid = 'notification_messages'::regclass AND NOT tgisinternal ORDER BY tgname"
            .to_owned()
    }

    fn enum_labels(&self) -> Option<String> {
        Some(
            "SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = $1::regtype ORDER BY e.enumsortorder"
                .to_owned(),
        )
    }

    fn add_enum_value(&self, ty: &str, value: &str) -> Option<String> {
        Some(format!(
            "ALTER TYPE {ty} ADD VALUE IF NOT EXISTS '{}'",
            value.replace('\'', "''")
        ))
    }

    fn drop_check(&self, name: &str) -> Option<String> {
        Some(format!(
            "ALTER TABLE notification_messages DROP CONSTRAINT \"{}\"",
            name.replace('"', "\"\"")
        ))
    }

    fn drop_not_null(&self, col: &str) -> Option<String> {
        Some(format!(
            "ALTER TABLE notification_messages ALTER COLUMN {col} DROP NOT NULL"
        ))
    }

    fn change_type(&self, col: &str, to: &str) -> Option<String> {
        Some(format!(
            "ALTER TABLE notification_messages ALTER COLUMN {col} TYPE {to}"
        ))
    }

    fn rewrite_create(&self, _sql: &str) -> Option<Vec<String>> {
        None
    }

    fn lock_name(&self, p: &str) -> Option<String> {
        Some(format!("SELECT pg_advisory_xact_lock(hashtext({p}::text))"))
    }

    fn json_records(&self, p: &str, alias: &str, fields: &[(&str, &str)]) -> String {
        let typed: Vec<String> = fields.iter().map(|(f, t)| format!("{f} {t}")).collect();
        let names: Vec<&str> = fields.iter().map(|(f, _)| *f).collect();
        format!(
            "ROWS FROM (jsonb_to_recordset({p}::jsonb) AS ({})) WITH ORDINALITY AS {alias}({}, n)",
            typed.join(", "),
            names.join(", ")
        )
    }

    fn skip_locked(&self, alias: &str) -> String {
        format!("FOR UPDATE OF {alias} SKIP LOCKED")
    }

    fn ids_in(&self, subquery: &str) -> String {
        format!("= ANY (ARRAY({subquery}))")
    }

    fn scheduled_after(&self, _t: &Table, p: &str) -> String {
        format!("(send_at IS NOT NULL AND send_at > {p}::timestamptz)")
    }
}
