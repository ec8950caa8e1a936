//! The statements for each backend. Both take and return timestamps as
//! Herald's text form (see `clock::format_ts`), so the Rust code around
//! them is the same for SQLite and PostgreSQL.

use std::sync::LazyLock;

pub(crate) struct Sql {
    pub id_exists: String,
    pub find_by_provider_id: String,
    pub insert_event: String,
    pub apply_delivery: String,
    pub events: String,
    pub suppress: String,
    pub unsuppress: String,
    pub suppressions: String,
    pub suppressed_among: String,
    pub insert: String,
    pub insert_many: String,
    pub get_many: String,
    pub idem_insert: String,
    pub idem_set: String,
    pub idem_get: String,
    pub claim: String,
    pub claim_channel: String,
    pub claim_other: String,
    pub complete: String,
    pub insert_attempts: String,
    pub next_due: String,
    pub get: String,
    pub list: String,
    pub attempts: String,
    pub retry_ids: String,
    pub retry_failed: String,
    pub cancel: String,
    pub status_of: String,
    pub counts: String,
    pub oldest_due: String,
}

const COLUMNS: [&str; 29] = [
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

fn pg_ts(expr: &str) -> String {
    format!("to_char(({expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
}

/// The message columns. (PostgreSQL timestamps are decoded natively: far
/// cheaper than formatting them as text in every claimed row.)
fn columns(prefix: &str) -> String {
    COLUMNS
        .iter()
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The open-row predicate matches the partial index `notification_messages_open`
/// word for word, so SQLite's planner can use it.
const OPEN: &str = "status IN ('pending', 'processing')";

/// SQLite claim: ?1 worker, ?2 now, ?3 lease expiry, ?4 limit, ?5 only ids
/// above this, ?6 channel (used only by the channel filter).
fn sqlite_claim(cols: &str, filter: &str) -> String {
    format!(
        "UPDATE notification_messages
            SET status = 'processing', lease_owner = ?1, lease_expires_at = ?3,
                attempts = attempts + 1, updated_at = ?2
          WHERE id IN (
                SELECT id FROM notification_messages
                 WHERE {OPEN} AND id > ?5 {filter}
                   AND ((status = 'pending'
                         AND (send_at IS NULL OR julianday(send_at) IS NULL OR julianday(send_at) <= julianday(?2))
                         AND (next_attempt_at IS NULL OR next_attempt_at <= ?2))
                     OR (status = 'processing' AND (lease_expires_at IS NULL OR lease_expires_at < ?2)))
                 ORDER BY id LIMIT ?4)
      RETURNING {cols}"
    )
}

/// PostgreSQL claim, same parameters. SKIP LOCKED: concurrent claimers each
/// take different rows and never wait for each other.
fn pg_claim(mcols: &str, filter: &str) -> String {
    format!(
        "WITH due AS (
            SELECT id FROM notification_messages
             WHERE {OPEN} AND id > $5 {filter}
               AND ((status = 'pending'
                     AND (send_at IS NULL OR send_at <= $2::timestamptz)
                     AND (next_attempt_at IS NULL OR next_attempt_at <= $2::timestamptz))
                 OR (status = 'processing' AND (lease_expires_at IS NULL OR lease_expires_at < $2::timestamptz)))
             ORDER BY id LIMIT $4
             FOR UPDATE SKIP LOCKED)
         UPDATE notification_messages AS m
            SET status = 'processing', lease_owner = $1, lease_expires_at = $3::timestamptz,
                attempts = m.attempts + 1, updated_at = $2::timestamptz
           FROM due WHERE m.id = due.id
      RETURNING {mcols}"
    )
}

pub(crate) static SQLITE: LazyLock<Sql> = LazyLock::new(|| {
    let cols = columns("");
    Sql {
        insert: format!(
                        "INSERT INTO notification_messages (channel, recipient, subject, body, html_body, send_at, metadata,
                                                created_at, updated_at, content_sid, content_variables,
                                                template, template_version, locale)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING {cols}"
        ),
        id_exists: "SELECT id FROM notification_messages WHERE id = ?1".to_owned(),
        find_by_provider_id: "SELECT id FROM notification_messages
                               WHERE provider_message_id = ?1 AND provider_message_id IS NOT NULL AND provider = ?2
                               ORDER BY id DESC LIMIT 1"
            .to_owned(),
        insert_event: "INSERT INTO notification_events
                    (message_id, provider, event, delivery_status, occurred_at, received_at, dedupe_key, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (dedupe_key) DO NOTHING"
            .to_owned(),
        apply_delivery: "UPDATE notification_messages
                SET delivery_status = ?2, delivery_rank = ?3,
                    delivered_at = CASE WHEN ?3 >= 4 AND ?3 < 10 THEN coalesce(delivered_at, ?4) ELSE delivered_at END,
                    delivery_error_code = coalesce(?5, delivery_error_code)
              WHERE id = ?1 AND (delivery_rank IS NULL OR delivery_rank < ?3)"
            .to_owned(),
        events: "SELECT provider, event, delivery_status, occurred_at, received_at, detail
                   FROM notification_events WHERE message_id = ?1 ORDER BY id"
            .to_owned(),
        suppress: "INSERT INTO notification_suppressions (channel, recipient, reason, source, created_at)
                   VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (channel, recipient) DO NOTHING"
            .to_owned(),
        unsuppress: "DELETE FROM notification_suppressions WHERE channel = ?1 AND recipient = ?2".to_owned(),
        suppressions: "SELECT channel, recipient, reason, source, created_at FROM notification_suppressions
                        WHERE (?1 IS NULL OR channel = ?1) ORDER BY created_at DESC, recipient LIMIT ?2"
            .to_owned(),
        suppressed_among: "SELECT channel, recipient, reason FROM notification_suppressions
                            WHERE recipient IN (SELECT value FROM json_each(?1))"
            .to_owned(),
        // ?1 rows (JSON array), ?2 now
        insert_many: format!(
                        "INSERT INTO notification_messages (channel, recipient, subject, body, html_body, send_at, metadata,
                                                created_at, updated_at, content_sid, content_variables,
                                                template, template_version, locale)
             SELECT value ->> '$.channel', value ->> '$.recipient', value ->> '$.subject', value ->> '$.body',
                    value ->> '$.html_body', value ->> '$.send_at', value ->> '$.metadata', ?2, ?2,
                    value ->> '$.content_sid', value ->> '$.content_variables',
                    value ->> '$.template', value ->> '$.template_version', value ->> '$.locale'
               FROM json_each(?1) ORDER BY key
          RETURNING {cols}"
        ),
        get_many: format!("SELECT {cols} FROM notification_messages WHERE id IN (SELECT value FROM json_each(?1))"),
        idem_insert: "INSERT INTO herald_idempotency_keys (key, request_hash, message_ids, created_at)
                      VALUES (?1, ?2, '[]', ?3) ON CONFLICT (key) DO NOTHING"
            .to_owned(),
        idem_set: "UPDATE herald_idempotency_keys SET message_ids = ?2 WHERE key = ?1".to_owned(),
        idem_get: "SELECT request_hash, message_ids FROM herald_idempotency_keys WHERE key = ?1".to_owned(),
        // ?1 worker, ?2 now, ?3 lease expiry, ?4 limit, ?5 only ids above this, ?6 channel
        claim: sqlite_claim(&cols, ""),
        claim_channel: sqlite_claim(&cols, "AND channel = ?6"),
        claim_other: sqlite_claim(&cols, "AND channel NOT IN ('sms', 'whatsapp', 'email')"),
        // ?1 completions (JSON array), ?2 now, ?3 worker
        complete: "UPDATE notification_messages AS m
                SET status = u.status,
                    error = CASE WHEN u.status = 'sent' THEN NULL ELSE coalesce(u.error, m.error) END,
                    provider = coalesce(u.provider, m.provider),
                    provider_message_id = coalesce(u.pmid, m.provider_message_id),
                    sent_at = coalesce(u.sent_at, m.sent_at),
                    next_attempt_at = u.next_at,
                    attempts = m.attempts + u.ad,
                    retry_base = m.retry_base + u.bd,
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = ?2,
                    subject = coalesce(u.r_subject, m.subject), body = coalesce(u.r_body, m.body),
                    html_body = coalesce(u.r_html, m.html_body), content_sid = coalesce(u.r_sid, m.content_sid),
                    content_variables = coalesce(u.r_vars, m.content_variables),
                    template_version = coalesce(u.r_version, m.template_version), locale = coalesce(u.r_locale, m.locale)
               FROM (SELECT value ->> '$.r_subject' AS r_subject, value ->> '$.r_body' AS r_body,
                            value ->> '$.r_html' AS r_html, value ->> '$.r_sid' AS r_sid, value ->> '$.r_vars' AS r_vars,
                            value ->> '$.r_version' AS r_version, value ->> '$.r_locale' AS r_locale,
                            value ->> '$.id' AS id, value ->> '$.status' AS status, value ->> '$.error' AS error,
                            value ->> '$.provider' AS provider, value ->> '$.pmid' AS pmid,
                            value ->> '$.sent_at' AS sent_at, value ->> '$.next_at' AS next_at,
                            value ->> '$.ad' AS ad, value ->> '$.bd' AS bd
                       FROM json_each(?1)) AS u
              WHERE m.id = u.id AND m.lease_owner = ?3 AND m.status = 'processing'
          RETURNING id"
            .to_owned(),
        insert_attempts: "INSERT INTO notification_attempts
                    (message_id, attempt, started_at, finished_at, provider, outcome, error, provider_message_id, worker)
             SELECT value ->> '$.message_id', value ->> '$.attempt', value ->> '$.started_at', value ->> '$.finished_at',
                    value ->> '$.provider', value ->> '$.outcome', value ->> '$.error', value ->> '$.pmid', ?2
               FROM json_each(?1)"
            .to_owned(),
        next_due: format!(
            "SELECT min(CASE WHEN status = 'pending'
                             THEN max(coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', send_at), created_at),
                                      coalesce(next_attempt_at, created_at))
                             ELSE coalesce(lease_expires_at, created_at) END)
               FROM notification_messages WHERE {OPEN}"
        ),
        get: format!("SELECT {cols} FROM notification_messages WHERE id = ?1"),
        // ?1 status, ?2 channel, ?3 recipient, ?4 created_from, ?5 created_to, ?6 before id, ?7 limit, ?8 scheduled only
        list: format!(
            "SELECT {cols} FROM notification_messages
              WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR channel = ?2) AND (?3 IS NULL OR recipient = ?3)
                AND (?4 IS NULL OR created_at >= ?4) AND (?5 IS NULL OR created_at < ?5)
                AND (?6 IS NULL OR id < ?6)
                AND (?8 = 0 OR (send_at IS NOT NULL AND julianday(send_at) > julianday(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))))
              ORDER BY id DESC LIMIT ?7"
        ),
        attempts: "SELECT message_id, attempt, started_at, finished_at, provider, outcome, error, provider_message_id, worker
                     FROM notification_attempts WHERE message_id = ?1 ORDER BY id"
            .to_owned(),
        retry_ids: "UPDATE notification_messages SET status = 'pending', updated_at = ?2
                     WHERE id IN (SELECT value FROM json_each(?1)) AND status = 'failed' RETURNING id"
            .to_owned(),
        retry_failed: "UPDATE notification_messages SET status = 'pending', updated_at = ?1
                        WHERE status = 'failed' RETURNING id"
            .to_owned(),
        cancel: format!(
            "UPDATE notification_messages SET status = 'cancelled', updated_at = ?2
              WHERE id = ?1 AND status = 'pending' RETURNING {cols}"
        ),
        status_of: "SELECT status FROM notification_messages WHERE id = ?1".to_owned(),
        counts: "SELECT status, channel, count(*) FROM notification_messages GROUP BY status, channel".to_owned(),
        oldest_due: format!(
            "SELECT min(created_at) FROM notification_messages
              WHERE {OPEN} AND status = 'pending'
                AND (send_at IS NULL OR julianday(send_at) <= julianday(?1))
                AND (next_attempt_at IS NULL OR next_attempt_at <= ?1)"
        ),
    }
});

pub(crate) static POSTGRES: LazyLock<Sql> = LazyLock::new(|| {
    let cols = columns("");
    let mcols = columns("m.");
    Sql {
        insert: format!(
                        "INSERT INTO notification_messages (channel, recipient, subject, body, html_body, send_at, metadata,
                                                created_at, updated_at, content_sid, content_variables,
                                                template, template_version, locale)
             VALUES ($1, $2, $3, $4, $5, $6::timestamptz, $7, $8::timestamptz, $8::timestamptz, $9, $10, $11, $12, $13)
          RETURNING {cols}"
        ),
        id_exists: "SELECT id FROM notification_messages WHERE id = $1".to_owned(),
        find_by_provider_id: "SELECT id FROM notification_messages
                               WHERE provider_message_id = $1 AND provider_message_id IS NOT NULL AND provider = $2
                               ORDER BY id DESC LIMIT 1"
            .to_owned(),
        insert_event: "INSERT INTO notification_events
                    (message_id, provider, event, delivery_status, occurred_at, received_at, dedupe_key, detail)
             VALUES ($1, $2, $3, $4, $5::timestamptz, $6::timestamptz, $7, $8) ON CONFLICT (dedupe_key) DO NOTHING"
            .to_owned(),
        apply_delivery: "UPDATE notification_messages
                SET delivery_status = $2, delivery_rank = $3,
                    delivered_at = CASE WHEN $3 >= 4 AND $3 < 10 THEN coalesce(delivered_at, $4::timestamptz) ELSE delivered_at END,
                    delivery_error_code = coalesce($5, delivery_error_code)
              WHERE id = $1 AND (delivery_rank IS NULL OR delivery_rank < $3)"
            .to_owned(),
        events: "SELECT provider, event, delivery_status, occurred_at, received_at, detail
                   FROM notification_events WHERE message_id = $1 ORDER BY id"
            .to_owned(),
        suppress: "INSERT INTO notification_suppressions (channel, recipient, reason, source, created_at)
                   VALUES ($1, $2, $3, $4, $5::timestamptz) ON CONFLICT (channel, recipient) DO NOTHING"
            .to_owned(),
        unsuppress: "DELETE FROM notification_suppressions WHERE channel = $1 AND recipient = $2".to_owned(),
        suppressions: "SELECT channel, recipient, reason, source, created_at FROM notification_suppressions
                        WHERE ($1::text IS NULL OR channel = $1) ORDER BY created_at DESC, recipient LIMIT $2"
            .to_owned(),
        suppressed_among: "SELECT channel, recipient, reason FROM notification_suppressions
                            WHERE recipient IN (SELECT jsonb_array_elements_text($1::jsonb))"
            .to_owned(),
        insert_many: format!(
            "INSERT INTO notification_messages (channel, recipient, subject, body, html_body, send_at, metadata,
                                                created_at, updated_at, content_sid, content_variables,
                                                template, template_version, locale)
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
          RETURNING {cols}"
        ),
        get_many: format!(
            "SELECT {cols} FROM notification_messages
              WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)::bigint)"
        ),
        idem_insert: "INSERT INTO herald_idempotency_keys (key, request_hash, message_ids, created_at)
                      VALUES ($1, $2, '[]', $3::timestamptz) ON CONFLICT (key) DO NOTHING"
            .to_owned(),
        idem_set: "UPDATE herald_idempotency_keys SET message_ids = $2 WHERE key = $1".to_owned(),
        idem_get: "SELECT request_hash, message_ids FROM herald_idempotency_keys WHERE key = $1".to_owned(),
        claim: pg_claim(&mcols, ""),
        claim_channel: pg_claim(&mcols, "AND channel = $6"),
        claim_other: pg_claim(&mcols, "AND channel NOT IN ('sms', 'whatsapp', 'email')"),
        // The lease check runs per completion, as a pkey lookup that locks
        // the row (FOR UPDATE rechecks it against concurrent reclaims). It
        // is kept out of the outer WHERE on purpose: there, `lease_owner = $3`
        // makes PostgreSQL's generic plan expect one row and loop over the
        // JSON once per open message (100x slower on a big backlog).
        complete: "WITH u AS (
                SELECT * FROM jsonb_to_recordset($1::jsonb)
                    AS x(id bigint, status text, error text, provider text, pmid text,
                         sent_at timestamptz, next_at timestamptz, ad int, bd int,
                         r_subject text, r_body text, r_html text, r_sid text, r_vars text, r_version int, r_locale text)),
             owned AS (
                SELECT u.* FROM u CROSS JOIN LATERAL (
                    SELECT 1 FROM notification_messages AS o
                     WHERE o.id = u.id AND o.lease_owner = $3 AND o.status = 'processing'
                    OFFSET 0 FOR UPDATE) AS held)
             UPDATE notification_messages AS m
                SET status = u.status,
                    error = CASE WHEN u.status = 'sent' THEN NULL ELSE coalesce(u.error, m.error) END,
                    provider = coalesce(u.provider, m.provider),
                    provider_message_id = coalesce(u.pmid, m.provider_message_id),
                    sent_at = coalesce(u.sent_at, m.sent_at),
                    next_attempt_at = u.next_at,
                    attempts = m.attempts + u.ad,
                    retry_base = m.retry_base + u.bd,
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = $2::timestamptz,
                    subject = coalesce(u.r_subject, m.subject), body = coalesce(u.r_body, m.body),
                    html_body = coalesce(u.r_html, m.html_body), content_sid = coalesce(u.r_sid, m.content_sid),
                    content_variables = coalesce(u.r_vars, m.content_variables),
                    template_version = coalesce(u.r_version, m.template_version), locale = coalesce(u.r_locale, m.locale)
               FROM owned AS u
              WHERE m.id = u.id
          RETURNING m.id"
            .to_owned(),
        insert_attempts: "INSERT INTO notification_attempts
                    (message_id, attempt, started_at, finished_at, provider, outcome, error, provider_message_id, worker)
             SELECT message_id, attempt, started_at, finished_at, provider, outcome, error, pmid, $2
               FROM jsonb_to_recordset($1::jsonb)
                 AS a(message_id bigint, attempt int, started_at timestamptz, finished_at timestamptz,
                      provider text, outcome text, error text, pmid text)"
            .to_owned(),
        next_due: format!(
            "SELECT {} FROM notification_messages WHERE {OPEN}",
            pg_ts(
                "min(CASE WHEN status = 'pending'
                          THEN coalesce(greatest(send_at, next_attempt_at), created_at)
                          ELSE coalesce(lease_expires_at, created_at) END)"
            )
        ),
        get: format!("SELECT {cols} FROM notification_messages WHERE id = $1"),
        list: format!(
            "SELECT {cols} FROM notification_messages
              WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR channel = $2)
                AND ($3::text IS NULL OR recipient = $3)
                AND ($4::timestamptz IS NULL OR created_at >= $4::timestamptz)
                AND ($5::timestamptz IS NULL OR created_at < $5::timestamptz)
                AND ($6::bigint IS NULL OR id < $6)
                AND ($8::int = 0 OR (send_at IS NOT NULL AND send_at > now()))
              ORDER BY id DESC LIMIT $7"
        ),
        attempts: "SELECT message_id, attempt, started_at, finished_at, provider, outcome, error,
                    provider_message_id, worker
               FROM notification_attempts WHERE message_id = $1 ORDER BY id"
            .to_owned(),
        retry_ids: "UPDATE notification_messages SET status = 'pending', updated_at = $2::timestamptz
                     WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)::bigint) AND status = 'failed'
                 RETURNING id"
            .to_owned(),
        retry_failed: "UPDATE notification_messages SET status = 'pending', updated_at = $1::timestamptz
                        WHERE status = 'failed' RETURNING id"
            .to_owned(),
        cancel: format!(
            "UPDATE notification_messages AS m SET status = 'cancelled', updated_at = $2::timestamptz
              WHERE id = $1 AND status = 'pending' RETURNING {mcols}"
        ),
        status_of: "SELECT status FROM notification_messages WHERE id = $1".to_owned(),
        counts: "SELECT status, channel, count(*) FROM notification_messages GROUP BY status, channel".to_owned(),
        oldest_due: format!(
            "SELECT {} FROM notification_messages
              WHERE {OPEN} AND status = 'pending'
                AND (send_at IS NULL OR send_at <= $1::timestamptz)
                AND (next_attempt_at IS NULL OR next_attempt_at <= $1::timestamptz)",
            pg_ts("min(created_at)")
        ),
    }
});
