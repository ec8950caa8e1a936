//! PostgreSQL: timestamps are `timestamptz` (bound as text and cast), JSON
//! parameters are read with `jsonb_to_recordset`, claims use
//! `FOR UPDATE SKIP LOCKED` so concurrent workers never wait for each other.

use super::{channel_list, numbered, ClaimKind, Dialect, Statement, Table};

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
             SELECT r.channel, r.recipient, r.subject, r.body, r.html_body, r.send_at, r.metadata,
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
            t.select("")
        )
    }

    fn claim(&self, t: &Table, kind: ClaimKind) -> String {
        let (open, status, channel) = (t.open(), t.col("status"), t.col("channel"));
        let filter = match kind {
            ClaimKind::Any => String::new(),
            ClaimKind::Channel => format!("AND {channel} = $6"),
            ClaimKind::UnknownChannel => format!("AND {channel} NOT IN ({})", channel_list()),
        };
        format!(
            "WITH due AS (
                SELECT id FROM notification_messages
                 WHERE {open} AND id > $5 {filter}
                   AND (({status} = 'pending'
                         AND (send_at IS NULL OR send_at <= $2::timestamptz)
                         AND (next_attempt_at IS NULL OR next_attempt_at <= $2::timestamptz))
                     OR ({status} = 'processing' AND (lease_expires_at IS NULL OR lease_expires_at < $2::timestamptz)))
                 ORDER BY id LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             UPDATE notification_messages AS m
                SET {status} = 'processing', lease_owner = $1, lease_expires_at = $3::timestamptz,
                    attempts = m.attempts + 1, updated_at = $2::timestamptz
               FROM due WHERE m.id = due.id
          RETURNING {}",
            t.select("m.")
        )
    }

    // The lease check runs per completion, as a pkey lookup that locks the
    // row (FOR UPDATE rechecks it against concurrent reclaims). It is kept
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
                SELECT u.* FROM u CROSS JOIN LATERAL (
                    SELECT 1 FROM notification_messages AS o
                     WHERE o.id = u.id AND o.lease_owner = $3 AND o.{status} = 'processing'
                    OFFSET 0 FOR UPDATE) AS held)
             UPDATE notification_messages AS m
                SET {status} = u.status,
                    {error} = CASE WHEN u.status = 'sent' THEN NULL ELSE coalesce(u.error, m.{error}) END,
                    provider = coalesce(u.provider, m.provider),
                    provider_message_id = coalesce(u.pmid, m.provider_message_id),
                    {sent_at} = coalesce(u.sent_at, m.{sent_at}),
                    next_attempt_at = u.next_at,
                    attempts = m.attempts + u.ad,
                    retry_base = m.retry_base + u.bd,
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = $2::timestamptz,
                    {subject} = coalesce(u.r_subject, m.{subject}), {body} = coalesce(u.r_body, m.{body}),
                    {html_body} = coalesce(u.r_html, m.{html_body}), content_sid = coalesce(u.r_sid, m.content_sid),
                    content_variables = coalesce(u.r_vars, m.content_variables),
                    template_version = coalesce(u.r_version, m.template_version),
                    locale = coalesce(u.r_locale, m.locale)
               FROM owned AS u
              WHERE m.id = u.id
          RETURNING m.id",
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
        let (status, created_at) = (t.col("status"), t.col("created_at"));
        format!(
            "SELECT {} FROM notification_messages WHERE {}",
            self.ts_text(&format!(
                "min(CASE WHEN {status} = 'pending'
                          THEN coalesce(greatest(send_at, next_attempt_at), {created_at})
                          ELSE coalesce(lease_expires_at, {created_at}) END)"
            )),
            t.open()
        )
    }

    fn oldest_due(&self, t: &Table) -> String {
        let (status, created_at) = (t.col("status"), t.col("created_at"));
        format!(
            "SELECT {} FROM notification_messages
              WHERE {} AND {status} = 'pending'
                AND (send_at IS NULL OR send_at <= $1::timestamptz)
                AND (next_attempt_at IS NULL OR next_attempt_at <= $1::timestamptz)",
            self.ts_text(&format!("min({created_at})")),
            t.open()
        )
    }

    fn lock_name(&self, p: &str) -> Option<String> {
        Some(format!("SELECT pg_advisory_xact_lock(hashtext({p}::text))"))
    }

    fn scheduled_after(&self, _t: &Table, p: &str) -> String {
        format!("(send_at IS NOT NULL AND send_at > {p}::timestamptz)")
    }
}
