//! SQLite: timestamps are TEXT in Herald's fixed-width UTC form, so they sort
//! and compare as text; `send_at` may hold other programs' forms and is
//! compared through `julianday()`. JSON parameters are read with `json_each`.

use crate::domain::Channel;

use super::{numbered, unknown_channel, ClaimKind, Dialect, Statement, Table};

pub(crate) struct Sqlite;

impl Dialect for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn begin_write(&self) -> &'static str {
        "BEGIN IMMEDIATE"
    }

    fn ts(&self, p: &str) -> String {
        p.to_owned()
    }

    fn text(&self, p: &str) -> String {
        p.to_owned()
    }

    fn int(&self, p: &str) -> String {
        p.to_owned()
    }

    fn ts_text(&self, expr: &str) -> String {
        expr.to_owned()
    }

    fn statement(&self, sql: &str) -> Statement {
        numbered(sql, "?")
    }

    fn json_array(&self, p: &str) -> String {
        format!("json_each({p})")
    }

    fn stats_range(&self, table: &str, unit: &str) -> String {
        if (table, unit) == ("herald_stats", "minute") || (table, unit) == ("herald_stats_hourly", "hour") {
            return self.stats_as_stored(table);
        }
        // Buckets are stored as `2026-11-25T12:34:00.000Z`.
        let bucket = match unit {
            "day" => "substr(bucket, 1, 10) || 'T00:00:00.000Z'",
            "hour" => "substr(bucket, 1, 13) || ':00:00.000Z'",
            _ => "bucket",
        };
        let lat: Vec<String> = (0..13).map(|i| format!("sum(lat ->> '$[{i}]')")).collect();
        format!(
            "SELECT {bucket}, channel, provider, event, code, sum(count), sum(segments), sum(latency_ms),
                    '[' || {} || ']'
               FROM {table} WHERE bucket >= $1 AND bucket < $2
              GROUP BY 1, 2, 3, 4, 5",
            lat.join(" || ',' || ")
        )
    }

    fn stats_add(&self, table: &str) -> String {
        format!(
            "INSERT INTO {table} (bucket, channel, provider, event, code, count, segments, latency_ms, lat)
         SELECT value ->> '$.bucket', value ->> '$.channel', value ->> '$.provider', value ->> '$.event',
                value ->> '$.code', value ->> '$.count', value ->> '$.segments', value ->> '$.latency_ms',
                value ->> '$.lat'
           FROM json_each($1) WHERE true
         ON CONFLICT (bucket, channel, provider, event, code) DO UPDATE
            SET count = count + excluded.count,
                segments = segments + excluded.segments,
                latency_ms = latency_ms + excluded.latency_ms,
                lat = (SELECT json_group_array(v) FROM
                         (SELECT a.value + b.value AS v FROM json_each({table}.lat) AS a
                            JOIN json_each(excluded.lat) AS b ON a.key = b.key ORDER BY a.key))"
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
             SELECT value ->> '$.channel', value ->> '$.recipient', value ->> '$.subject', value ->> '$.body',
                    value ->> '$.html_body', value ->> '$.send_at', value ->> '$.metadata', $2, $2,
                    value ->> '$.content_sid', value ->> '$.content_variables',
                    value ->> '$.template', value ->> '$.template_version', value ->> '$.locale'
               FROM json_each($1) ORDER BY key
          RETURNING {}",
            t.select("")
        )
    }

    fn claim(&self, t: &Table, kind: ClaimKind) -> String {
        let (open, status, channel) = (t.open(), t.col("status"), t.col("channel"));
        let updated_at = t.col("updated_at");
        let filter = match kind {
            ClaimKind::Any => String::new(),
            ClaimKind::Channel => format!("AND {channel} = $5"),
            ClaimKind::UnknownChannel => format!("AND {}", unknown_channel(&channel)),
        };
        let due = self.due_key(t);
        format!(
            "UPDATE notification_messages
                SET {status} = 'processing', lease_owner = $1, lease_expires_at = $3,
                    attempts = attempts + 1, {updated_at} = $2
              WHERE id IN (
                    SELECT id FROM notification_messages
                     WHERE {open} AND ({due}) <= julianday($2) {filter}
                       AND (({status} = 'pending'
                             AND (send_at IS NULL OR julianday(send_at) IS NULL OR julianday(send_at) <= julianday($2))
                             AND (next_attempt_at IS NULL OR next_attempt_at <= $2))
                         OR ({status} = 'processing' AND (lease_expires_at IS NULL OR lease_expires_at < $2)))
                     ORDER BY ({due}), id LIMIT $4)
          RETURNING {}",
            t.select("")
        )
    }

    // A Julian day: `send_at` in whatever form the POS wrote it (one
    // julianday() cannot read counts as due now, as the claim treats it).
    fn due_key(&self, t: &Table) -> String {
        format!(
            "CASE WHEN {status} = 'processing' THEN coalesce(julianday(lease_expires_at), 0)
                  ELSE max(coalesce(julianday(send_at), 0), coalesce(julianday(next_attempt_at), 0)) END",
            status = t.col("status")
        )
    }

    fn complete(&self, t: &Table) -> String {
        let c = |n: &str| t.col(n);
        format!(
            "UPDATE notification_messages AS m
                SET {status} = u.status,
                    {error} = CASE WHEN u.status = 'sent' THEN NULL ELSE coalesce(u.error, m.{error}) END,
                    provider = coalesce(u.provider, m.provider),
                    provider_message_id = coalesce(u.pmid, m.provider_message_id),
                    {sent_at} = coalesce(u.sent_at, m.{sent_at}),
                    next_attempt_at = u.next_at,
                    attempts = m.attempts + u.ad,
                    retry_base = m.retry_base + u.bd,
                    lease_owner = NULL, lease_expires_at = NULL, {updated_at} = $2,
                    {subject} = coalesce(u.r_subject, m.{subject}), {body} = coalesce(u.r_body, m.{body}),
                    {html_body} = coalesce(u.r_html, m.{html_body}), content_sid = coalesce(u.r_sid, m.content_sid),
                    content_variables = coalesce(u.r_vars, m.content_variables),
                    template_version = coalesce(u.r_version, m.template_version),
                    locale = coalesce(u.r_locale, m.locale)
               FROM (SELECT value ->> '$.r_subject' AS r_subject, value ->> '$.r_body' AS r_body,
                            value ->> '$.r_html' AS r_html, value ->> '$.r_sid' AS r_sid, value ->> '$.r_vars' AS r_vars,
                            value ->> '$.r_version' AS r_version, value ->> '$.r_locale' AS r_locale,
                            value ->> '$.id' AS id, value ->> '$.status' AS status, value ->> '$.error' AS error,
                            value ->> '$.provider' AS provider, value ->> '$.pmid' AS pmid,
                            value ->> '$.sent_at' AS sent_at, value ->> '$.next_at' AS next_at,
                            value ->> '$.ad' AS ad, value ->> '$.bd' AS bd
                       FROM json_each($1)) AS u
              WHERE m.id = u.id AND m.lease_owner = $3 AND m.{status} = 'processing'
          RETURNING id",
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
        "INSERT INTO notification_attempts
                (message_id, attempt, started_at, finished_at, provider, outcome, error, provider_message_id, worker)
         SELECT value ->> '$.message_id', value ->> '$.attempt', value ->> '$.started_at', value ->> '$.finished_at',
                value ->> '$.provider', value ->> '$.outcome', value ->> '$.error', value ->> '$.pmid', $2
           FROM json_each($1)"
            .to_owned()
    }

    fn next_due(&self, t: &Table) -> String {
        // One look per channel (the index leads with the channel).
        let (due, channel) = (self.due_key(t), t.col("channel"));
        let per_channel: Vec<String> = Channel::ALL
            .iter()
            .map(|c| {
                format!(
                    "SELECT * FROM (SELECT ({due}) AS due FROM notification_messages
                       WHERE {} AND {channel} = '{c}' ORDER BY ({due}) LIMIT 1)",
                    t.open()
                )
            })
            .collect();
        format!(
            "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', max(min(due), 2451544.5)) FROM ({})",
            per_channel.join(" UNION ALL ")
        )
    }

    fn rows_estimate(&self) -> String {
        // The id range: read from the two ends of the primary key.
        "SELECT max(id) - min(id) + 1 FROM notification_messages".to_owned()
    }
    fn oldest_due(&self, t: &Table) -> String {
        let (status, created_at) = (t.col("status"), t.col("created_at"));
        format!(
            "SELECT min({created_at}) FROM notification_messages
              WHERE {} AND {status} = 'pending'
                AND (send_at IS NULL OR julianday(send_at) <= julianday($1))
                AND (next_attempt_at IS NULL OR next_attempt_at <= $1)",
            t.open()
        )
    }

    fn table_exists(&self) -> String {
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1".to_owned()
    }

    fn columns(&self) -> String {
        "SELECT name, type, 0, \"notnull\", dflt_value, 0 FROM pragma_table_xinfo('notification_messages')
          ORDER BY cid"
            .to_owned()
    }

    fn checks(&self) -> String {
        "SELECT '', sql FROM sqlite_master WHERE type = 'table' AND name = 'notification_messages'".to_owned()
    }

    fn triggers(&self) -> String {
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'notification_messages'
          ORDER BY name"
            .to_owned()
    }

    fn enum_labels(&self) -> Option<String> {
        None
    }

    fn add_enum_value(&self, _ty: &str, _value: &str) -> Option<String> {
        None
    }

    fn drop_check(&self, _name: &str) -> Option<String> {
        None
    }

    fn drop_not_null(&self, _col: &str) -> Option<String> {
        None
    }

    fn change_type(&self, _col: &str, _to: &str) -> Option<String> {
        None
    }

    // SQLite's documented procedure for constraint changes that do not
    // touch the stored rows (https://www.sqlite.org/lang_altertable.html,
    // "Making Other Kinds Of Table Schema Changes"); `{version}` is the
    // schema version read just before, plus one.
    fn rewrite_create(&self, sql: &str) -> Option<Vec<String>> {
        Some(vec![
            "PRAGMA writable_schema = ON".to_owned(),
            format!(
                "UPDATE sqlite_master SET sql = '{}' WHERE type = 'table' AND name = 'notification_messages'",
                sql.replace('\'', "''")
            ),
            "PRAGMA schema_version = {version}".to_owned(),
            "PRAGMA writable_schema = OFF".to_owned(),
        ])
    }

    fn lock_name(&self, _p: &str) -> Option<String> {
        None
    }

    fn json_records(&self, p: &str, alias: &str, fields: &[(&str, &str)]) -> String {
        let cols: Vec<String> = fields
            .iter()
            .map(|(f, _)| format!("value ->> '$.{f}' AS {f}"))
            .collect();
        format!("(SELECT {}, key AS n FROM json_each({p})) AS {alias}", cols.join(", "))
    }

    fn skip_locked(&self, _alias: &str) -> String {
        String::new()
    }

    fn scheduled_after(&self, _t: &Table, p: &str) -> String {
        format!("(send_at IS NOT NULL AND julianday(send_at) > julianday({p}))")
    }
}
