//! Every statement Herald runs, built from a dialect and the table's layout.

use super::{CircuitStatements, ClaimKind, Dialect, RetentionStatements, Statement, Table, WebhookStatements};

/// Every statement, ready to run. Field docs list the parameters.
#[derive(Debug)]
pub(crate) struct Statements {
    pub dialect: &'static str,
    /// Begins a transaction that writes (see [`Dialect::begin_write`]).
    pub begin_write: &'static str,
    // --- queue -----------------------------------------------------------
    /// Insert one message: `$1` channel, `$2` recipient, `$3` subject, `$4` body,
    /// `$5` html_body, `$6` send_at, `$7` metadata, `$8` now, `$9` content_sid,
    /// `$10` content_variables, `$11` template, `$12` template_version, `$13` locale.
    pub insert: Statement,
    /// Insert a JSON array of messages (`$1`) at `$2`.
    pub insert_many: Statement,
    /// Messages whose ids are in the JSON array `$1`.
    pub get_many: Statement,
    /// Forget idempotency keys created before `$1`.
    pub idem_expire: Statement,
    /// Remember key `$1` for request hash `$2` at `$3` (no row if it exists).
    pub idem_insert: Statement,
    /// Key `$1` created the messages `$2` (JSON array of ids).
    pub idem_set: Statement,
    /// The request hash and message ids of key `$1`.
    pub idem_get: Statement,
    /// See [`Dialect::claim`].
    pub claim_any: Statement,
    pub claim_channel: Statement,
    pub claim_unknown: Statement,
    /// See [`Dialect::complete`].
    pub complete: Statement,
    /// See [`Dialect::insert_attempts`].
    pub insert_attempts: Statement,
    /// Provider calls of the messages in the JSON array of ids `$1`, oldest
    /// first: (message id, attempt, provider, outcome, provider id, finished at).
    pub attempt_history: Statement,
    /// Which of the provider ids in the JSON array `$1` (through provider
    /// `$2`) belong to a message other than `$3`.
    pub owned_provider_ids: Statement,
    /// Lease message `$3` to worker `$1` until `$2` (the start-up self-check).
    pub probe_lease: Statement,
    /// The highest message id.
    pub max_id: Statement,
    /// See [`Dialect::next_due`].
    pub next_due: Statement,
    // --- operator --------------------------------------------------------
    /// One message by id `$1`.
    pub get: Statement,
    /// Newest first: `$1` status, `$2` channel, `$3` recipient, `$4` created
    /// from, `$5` created before, `$6` ids below, `$7` limit, `$8` only those
    /// scheduled after this time, `$9` template.
    pub list: Statement,
    /// [`Statements::list`] within a creation range (`$4` to `$5`, both
    /// given): newest created first, read from the `created_at` index (the
    /// id order would walk back over every newer row to reach an old day).
    /// `$6`, the cursor, is an id: the page goes on below its
    /// (created_at, id).
    pub list_dated: Statement,
    /// [`Statements::list`] with a metadata filter (`$10` = `$11`, both
    /// given), read from the metadata index backwards: newest first by id.
    pub list_meta: Statement,
    /// [`Statements::list`] of one channel (`$1`) alone, below id `$2`,
    /// `$3` at most: read from the channel index backwards. (Written as
    /// a range ordered by the channel too, so that PostgreSQL does not walk
    /// the primary key hoping to meet the channel soon: after a burst of
    /// another channel's messages that walk reads millions of rows.)
    pub list_channel: Statement,
    /// [`Statements::list`] of one recipient (`$1`) alone, below id `$2`,
    /// `$3` at most (SQLite and MySQL cannot use an index for an optional
    /// filter, `$1 IS NULL OR …`, so the common single filters have their
    /// own statements).
    pub list_recipient: Statement,
    /// [`Statements::list_recipient`] for a template name.
    pub list_template: Statement,
    /// [`Statements::list_recipient`] for each status, the status written
    /// into the statement (SQLite uses a partial index only for a literal).
    pub list_status: Vec<(&'static str, Statement)>,
    /// Provider calls of message `$1`, oldest first.
    pub attempts: Statement,
    /// Failed messages among the JSON array of ids `$1` back to pending at
    /// `$2`, and parked ones among them due now.
    pub retry_ids: Statement,
    /// Failed message `$1` back to pending at `$2` (or, parked, due now),
    /// as it is then.
    pub retry_one: Statement,
    /// Every failed message back to pending at `$1`.
    pub retry_failed: Statement,
    /// Make every pending message parked by a retry delay or a provider's
    /// pause (`next_attempt_at` after `$1`) due now; their ids.
    pub retry_parked: Statement,
    /// Cancel message `$1` at `$2` if it is pending.
    pub cancel: Statement,
    /// The status of message `$1`.
    pub status_of: Statement,
    /// Messages by status and channel.
    pub counts: Statement,
    /// [`Statements::counts`] of finished statuses but `sent` (failed,
    /// cancelled, a POS's own; read from their index).
    pub counts_unsent: Statement,
    /// The database's estimate of the table's rows.
    pub rows_estimate: Statement,
    /// See [`Dialect::oldest_due`].
    pub oldest_due: Statement,
    /// Open messages (pending, processing) by status and channel: only the
    /// open rows' index is read, however big the table.
    pub open_counts: Statement,
    /// The latest failed provider calls: (provider, error, finished at).
    pub recent_failures: Statement,
    // --- receipts --------------------------------------------------------
    /// Message `$1` if it is an email sent through provider `$2` to `$3`
    /// (compared case-insensitively).
    pub find_email_by_id: Statement,
    /// The email sent through provider `$2` with provider id `$1` to `$3`.
    pub find_email_by_provider_id: Statement,
    /// The message with provider id `$1` sent through provider `$2`.
    pub find_by_provider_id: Statement,
    /// Store a receipt (once per dedupe key): `$1` message, `$2` provider,
    /// `$3` event, `$4` delivery status, `$5` occurred at, `$6` received at,
    /// `$7` dedupe key, `$8` detail.
    pub insert_event: Statement,
    /// Move message `$1` to delivery status `$2` of rank `$3` (only forwards),
    /// delivered at `$4`, error code `$5`.
    pub apply_delivery: Statement,
    /// Receipts of message `$1`, oldest first.
    pub events: Statement,
    // --- suppressions ----------------------------------------------------
    /// Suppress `$2` on channel `$1` because `$3`, added by `$4` at `$5`.
    pub suppress: Statement,
    /// Remove the suppression of `$2` on channel `$1`.
    pub unsuppress: Statement,
    /// Suppressions on channel `$1` (or all), newest first, at most `$2`.
    pub suppressions: Statement,
    /// Suppressions of the recipients in the JSON array `$1`.
    pub suppressed_among: Statement,
    // --- templates -------------------------------------------------------
    /// The next version number of template `$1`.
    pub template_next_version: Statement,
    /// Hold template `$1` until the transaction ends: saves of one name are
    /// serialized, so versions and the default locale stay consistent.
    pub template_lock: Option<Statement>,
    /// Save version `$2` of template `$1` in locale `$3` for channel `$4`:
    /// parts `$5`, default `$6`, at `$7`.
    pub template_insert: Statement,
    /// Whether locale `$2` of template `$1` is its default.
    pub template_is_default: Statement,
    /// No locale of template `$1` other than `$2` is the default.
    pub template_undefault: Statement,
    /// The latest version of each locale of template `$1` (or of all).
    pub templates: Statement,
    /// Delete template `$1`.
    pub template_delete: Statement,
    /// Take lease `$1` for `$2` until `$3` if free, expired (before `$4`)
    /// or already `$2`'s; returns the holder when it is `$2`.
    pub lease_take: Statement,
    /// Stored alert rules: (id, rule JSON).
    pub alert_rules: Statement,
    /// Store rule `$1` (JSON `$2`) at `$3`, unless the id exists.
    pub alert_rule_insert: Statement,
    /// Remove stored rule `$1`.
    pub alert_rule_delete: Statement,
    /// Forget the states of rule `$1`'s conditions.
    pub alert_state_delete_rule: Statement,
    /// Every condition's state.
    pub alert_states: Statement,
    /// Set condition `$1`: firing `$2`, since `$3`, changed `$4`, detail `$5`.
    pub alert_state_upsert: Statement,
    /// Record an alert event: key, kind, at, summary, detail, deliveries.
    pub alert_event_insert: Statement,
    /// The newest `$1` alert events.
    pub alert_events: Statement,
    /// Drop sessions that expired before `$1`.
    pub session_purge: Statement,
    /// A session: `$1` token hash, `$2` CSRF token, `$3` created, `$4` expires.
    pub session_insert: Statement,
    /// (CSRF token, expiry) of session `$1` if it expires after `$2`.
    pub session_get: Statement,
    /// End session `$1`.
    pub session_delete: Statement,
    /// See [`Dialect::stats_add`].
    pub stats_add: Statement,
    /// The same for `herald_stats_hourly`.
    pub stats_add_hourly: Statement,
    /// Count a receipt for message `$1` in minute `$2`: event `$3`, code `$4`.
    pub stats_receipt: Statement,
    /// The same for `herald_stats_hourly` (`$2` the hour).
    pub stats_receipt_hourly: Statement,
    /// Statistics rows from `$1` (inclusive) to `$2`, per minute (see
    /// [`Dialect::stats_range`]).
    pub stats_range: Statement,
    /// From `herald_stats_hourly` (`$1`, `$2` on whole hours), per hour.
    pub stats_range_hourly: Statement,
    /// From `herald_stats_hourly`, summed per day.
    pub stats_range_daily: Statement,
    /// `herald_circuits`.
    pub circuits: CircuitStatements,
    /// Retention: pruning finished messages and old rows around them.
    pub retention: RetentionStatements,
    /// The database server's clock, in Herald's text form (`herald doctor`).
    pub clock: Statement,
    // --- WhatsApp → SMS fallback -----------------------------------------
    /// Queue an SMS to `$2` saying `$3` at `$4` in place of message `$1`
    /// (its metadata copied), unless `$1` fell back already; the new id.
    pub fallback_insert: Statement,
    /// Message `$1` fell back to message `$2`.
    pub fallback_link: Statement,
    /// Status webhooks: endpoints, outbox, delivery log.
    pub webhooks: WebhookStatements,
    /// MySQL's steps where the others use one statement.
    pub mysql: Option<super::MysqlStatements>,
}

impl Statements {
    pub(crate) fn build(d: &dyn Dialect, t: &Table) -> Statements {
        let cols = t.select("");
        // The filters every list statement takes: `$1` status, `$2` channel,
        // `$3` recipient, `$8` scheduled after, `$9` template (NULL: any);
        // and the optional creation range `$4` to `$5`.
        let list_filters = format!(
            "({} IS NULL OR {} = $1) AND ({} IS NULL OR {} = $2) AND ({} IS NULL OR {recipient} = $3)
             AND ({} IS NULL OR {}) AND ({} IS NULL OR template = $9)",
            d.text("$1"),
            t.text_of("status", ""),
            d.text("$2"),
            t.text_of("channel", ""),
            d.text("$3"),
            d.ts("$8"),
            d.scheduled_after(t, "$8"),
            d.text("$9"),
            recipient = t.col("recipient"),
        );
        let created_range = format!(
            "({} IS NULL OR {created_at} >= {}) AND ({} IS NULL OR {created_at} < {})",
            d.ts("$4"),
            d.ts("$4"),
            d.ts("$5"),
            d.ts("$5"),
            created_at = t.col("created_at"),
        );
        let st = |sql: &str| d.statement(sql);
        let (status, recipient, created_at) = (t.col("status"), t.col("recipient"), t.col("created_at"));
        let updated_at = t.col("updated_at");
        let stats_receipt = |table: &str| {
            format!(
                "INSERT INTO {table} (bucket, channel, provider, event, code, count)
                 SELECT {}, {}, coalesce(provider, ''), $3, coalesce($4, ''), 1
                   FROM notification_messages WHERE id = $1
                 {}",
                d.ts("$2"),
                t.text_of("channel", ""),
                d.upsert(
                    "bucket, channel, provider, event, code",
                    &format!("count = {table}.count + 1")
                )
            )
        };
        let id = t.id("");
        // `key` is a reserved word in MySQL.
        let key = t.quoted("key");
        // What "retry" takes: a failed message (a fresh round of retries),
        // or a pending one waiting for a retry delay or a provider's pause
        // (due now, same round).
        let retryable = format!("({status} = 'failed' OR ({status} = 'pending' AND next_attempt_at IS NOT NULL))");
        let inserted = [
            ("channel", "$1".to_owned()),
            ("recipient", "$2".to_owned()),
            ("subject", "$3".to_owned()),
            ("body", "$4".to_owned()),
            ("html_body", "$5".to_owned()),
            ("send_at", d.ts("$6")),
            ("metadata", "$7".to_owned()),
            ("created_at", d.ts("$8")),
            ("updated_at", d.ts("$8")),
            ("content_sid", "$9".to_owned()),
            ("content_variables", "$10".to_owned()),
            ("template", "$11".to_owned()),
            ("template_version", "$12".to_owned()),
            ("locale", "$13".to_owned()),
        ];
        let insert_cols = t.cols(&inserted.iter().map(|(c, _)| *c).collect::<Vec<_>>());
        let insert_values = inserted
            .iter()
            .map(|(c, v)| t.write(c, v))
            .collect::<Vec<_>>()
            .join(", ");
        Statements {
            dialect: d.name(),
            begin_write: d.begin_write(),
            insert: st(&format!(
                "INSERT INTO notification_messages ({insert_cols}) VALUES ({insert_values}){}",
                d.returning(&cols)
            )),
            insert_many: st(&d.insert_many(t)),
            get_many: st(&format!(
                "SELECT {cols} FROM notification_messages WHERE id IN (SELECT {} FROM {})",
                d.int("value"),
                d.json_array("$1")
            )),
            idem_expire: st(&format!(
                "DELETE FROM herald_idempotency_keys WHERE created_at < {}",
                d.ts("$1")
            )),
            idem_insert: st(&format!(
                "{ins} INTO herald_idempotency_keys ({key}, request_hash, message_ids, created_at)
                 VALUES ($1, $2, '[]', {}) {}",
                d.ts("$3"),
                d.on_conflict_nothing(&key),
                ins = d.insert_or_skip()
            )),
            idem_set: st(&format!(
                "UPDATE herald_idempotency_keys SET message_ids = $2 WHERE {key} = $1"
            )),
            idem_get: st(&format!(
                "SELECT request_hash, message_ids FROM herald_idempotency_keys WHERE {key} = $1"
            )),
            claim_any: st(&d.claim(t, ClaimKind::Any)),
            claim_channel: st(&d.claim(t, ClaimKind::Channel)),
            claim_unknown: st(&d.claim(t, ClaimKind::UnknownChannel)),
            complete: st(&d.complete(t)),
            insert_attempts: st(&d.insert_attempts()),
            attempt_history: st(&format!(
                "SELECT message_id, attempt, provider, outcome, provider_message_id, {}
                   FROM notification_attempts
                  WHERE message_id IN (SELECT {} FROM {})
                  ORDER BY id",
                d.ts_text("finished_at"),
                d.int("value"),
                d.json_array("$1")
            )),
            lease_take: st(&if d.name() == "mysql" {
                // MySQL assigns in order: the owner first, so the expiry
                // moves exactly when the owner did.
                format!(
                    "INSERT INTO herald_leases (name, owner, expires_at) VALUES ($1, $2, {until})
                     ON DUPLICATE KEY UPDATE
                        owner = IF(owner = VALUES(owner) OR expires_at < {now}, VALUES(owner), owner),
                        expires_at = IF(owner = VALUES(owner), VALUES(expires_at), expires_at)",
                    until = d.ts("$3"),
                    now = d.ts("$4")
                )
            } else {
                format!(
                    "INSERT INTO herald_leases (name, owner, expires_at) VALUES ($1, $2, {until})
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
                      WHERE herald_leases.owner = excluded.owner OR herald_leases.expires_at < {now}
                     RETURNING owner",
                    until = d.ts("$3"),
                    now = d.ts("$4")
                )
            }),
            alert_rules: st("SELECT id, rule FROM herald_alert_rules ORDER BY created_at, id"),
            alert_rule_insert: st(&format!(
                "{ins} INTO herald_alert_rules (id, rule, created_at) VALUES ($1, $2, {}) {}",
                d.ts("$3"),
                d.on_conflict_nothing("id"),
                ins = d.insert_or_skip()
            )),
            alert_rule_delete: st("DELETE FROM herald_alert_rules WHERE id = $1"),
            alert_state_delete_rule: st(&format!(
                "DELETE FROM herald_alert_state WHERE rule_id = $1 OR substr(rule_id, 1, length({p}) + 1) = {}",
                d.concat(&[&d.text("$1"), "'/'"]),
                p = d.text("$1")
            )),
            alert_states: st(&format!(
                "SELECT rule_id, firing, {}, {}, detail FROM herald_alert_state ORDER BY rule_id",
                d.ts_text("since"),
                d.ts_text("last_change")
            )),
            alert_state_upsert: st(&format!(
                "INSERT INTO herald_alert_state (rule_id, firing, since, last_change, detail) VALUES ($1, $2, {}, {}, $5)
                 {}",
                d.ts("$3"),
                d.ts("$4"),
                d.upsert(
                    "rule_id",
                    &["firing", "since", "last_change", "detail"]
                        .map(|c| format!("{c} = {}", d.excluded(c)))
                        .join(", ")
                )
            )),
            alert_event_insert: st(&format!(
                "INSERT INTO herald_alert_events (rule_id, kind, at, summary, detail, deliveries) VALUES ($1, $2, {}, $4, $5, $6)",
                d.ts("$3")
            )),
            alert_events: st(&format!(
                "SELECT id, rule_id, kind, {}, summary, detail, deliveries FROM herald_alert_events ORDER BY id DESC LIMIT $1",
                d.ts_text("at")
            )),
            session_purge: st(&format!("DELETE FROM herald_sessions WHERE expires_at < {}", d.ts("$1"))),
            session_insert: st(&format!(
                "INSERT INTO herald_sessions (token_hash, csrf, created_at, expires_at) VALUES ($1, $2, {}, {})",
                d.ts("$3"),
                d.ts("$4")
            )),
            session_get: st(&format!(
                "SELECT csrf, {} FROM herald_sessions WHERE token_hash = $1 AND expires_at > {}",
                d.ts_text("expires_at"),
                d.ts("$2")
            )),
            session_delete: st("DELETE FROM herald_sessions WHERE token_hash = $1"),
            stats_add: st(&d.stats_add("herald_stats")),
            stats_add_hourly: st(&d.stats_add("herald_stats_hourly")),
            stats_receipt: st(&stats_receipt("herald_stats")),
            stats_receipt_hourly: st(&stats_receipt("herald_stats_hourly")),
            stats_range: st(&d.stats_range("herald_stats", "minute")),
            stats_range_hourly: st(&d.stats_range("herald_stats_hourly", "hour")),
            stats_range_daily: st(&d.stats_range("herald_stats_hourly", "day")),
            circuits: CircuitStatements::build(d),
            retention: RetentionStatements::build(d, t),
            clock: st(&format!(
                "SELECT {}",
                d.ts_text(match d.name() {
                    "postgres" => "clock_timestamp()",
                    "mysql" => "UTC_TIMESTAMP(6)",
                    _ => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                })
            )),
            fallback_insert: st(&format!(
                "INSERT INTO notification_messages ({}, fallback_of)
                 SELECT {}, {}, {}, metadata, {now}, {now}, {id}
                   FROM notification_messages
                  WHERE id = $1 AND fallback_message_id IS NULL
                    AND NOT EXISTS (SELECT 1 FROM notification_messages f WHERE f.fallback_of = $1){}",
                t.cols(&["channel", "recipient", "body", "metadata", "created_at", "updated_at"]),
                t.write("channel", "'sms'"),
                t.write("recipient", &d.text("$2")),
                t.write("body", &d.text("$3")),
                d.returning(&id),
                now = d.ts("$4"),
            )),
            fallback_link: st("UPDATE notification_messages SET fallback_message_id = $2 WHERE id = $1"),
            webhooks: WebhookStatements::build(d),
            mysql: (d.name() == "mysql").then(|| super::MysqlStatements::build(&super::Mysql, t)),
            owned_provider_ids: st(&format!(
                "SELECT provider_message_id FROM notification_messages
                  WHERE provider_message_id IN (SELECT {} FROM {}) AND provider = $2 AND id <> $3",
                d.text("value"),
                d.json_array("$1")
            )),
            probe_lease: st(&format!(
                "UPDATE notification_messages SET {status} = 'processing', lease_owner = $1, lease_expires_at = {}
                  WHERE id = $3",
                d.ts("$2")
            )),
            max_id: st(&format!("SELECT max({id}) FROM notification_messages")),
            next_due: st(&d.next_due(t)),
            get: st(&format!("SELECT {cols} FROM notification_messages WHERE id = $1")),
            list: st(&format!(
                "SELECT {cols} FROM notification_messages
                  WHERE {list_filters} AND {created_range}
                    AND ({} IS NULL OR id < $6)
                  ORDER BY id DESC LIMIT $7",
                d.int("$6"),
            )),
            list_dated: st(&format!(
                "SELECT {cols} FROM notification_messages
                  WHERE {created_at} >= {} AND {created_at} < {} AND {list_filters}
                    AND ({} IS NULL OR ({created_at}, id) < ((SELECT {created_at} FROM notification_messages WHERE id = $6), $6))
                  ORDER BY {created_at} DESC, id DESC LIMIT $7",
                d.ts("$4"),
                d.ts("$5"),
                d.int("$6"),
            )),
            list_channel: st(&format!(
                "SELECT {cols} FROM notification_messages
                  WHERE {ch} >= $1 AND {ch} <= $1 AND ({} IS NULL OR id < $2)
                  ORDER BY {ch} DESC, id DESC LIMIT $3",
                d.int("$2"),
                ch = t.text_of("channel", ""),
            )),
            list_recipient: st(&format!(
                "SELECT {cols} FROM notification_messages
                  WHERE {recipient} = $1 AND ({} IS NULL OR id < $2)
                  ORDER BY id DESC LIMIT $3",
                d.int("$2"),
            )),
            list_template: st(&format!(
                "SELECT {cols} FROM notification_messages
                  WHERE template = $1 AND ({} IS NULL OR id < $2)
                  ORDER BY id DESC LIMIT $3",
                d.int("$2"),
            )),
            list_status: crate::domain::MessageStatus::ALL
                .iter()
                .map(|s| {
                    (
                        s.as_str(),
                        st(&format!(
                            "SELECT {cols} FROM notification_messages
                              WHERE {finished}{status} = '{}' AND ({} IS NULL OR id < $2)
                              ORDER BY id DESC LIMIT $3",
                            s.as_str(),
                            d.int("$2"),
                            // The status index's own condition, word for word:
                            // SQLite uses a partial index only then.
                            finished = if matches!(
                                s,
                                crate::domain::MessageStatus::Failed | crate::domain::MessageStatus::Cancelled
                            ) {
                                "status NOT IN ('sent', 'pending', 'processing') AND "
                            } else {
                                ""
                            },
                        )),
                    )
                })
                .collect(),
            list_meta: st(&format!(
                "SELECT {cols} FROM herald_message_metadata k
                   JOIN notification_messages ON notification_messages.id = k.message_id
                  WHERE k.name = $10 AND k.value = $11 AND {list_filters} AND {created_range}
                    AND ({} IS NULL OR k.message_id < $6)
                  ORDER BY k.message_id DESC LIMIT $7",
                d.int("$6"),
            )),
            attempts: st("SELECT message_id, attempt, started_at, finished_at, provider, outcome, error,
                                 provider_message_id, worker
                            FROM notification_attempts WHERE message_id = $1 ORDER BY id"),
            retry_ids: st(&format!(
                "UPDATE notification_messages
                    SET next_attempt_at = CASE WHEN {status} = 'pending' THEN NULL ELSE next_attempt_at END,
                        {status} = 'pending', {updated_at} = {ts}
                  WHERE id IN (SELECT {} FROM {}) AND {retryable}{}",
                d.int("value"),
                d.json_array("$1"),
                d.returning(&id),
                ts = d.ts("$2"),
                retryable = retryable,
            )),
            retry_one: st(&format!(
                "UPDATE notification_messages
                    SET next_attempt_at = CASE WHEN {status} = 'pending' THEN NULL ELSE next_attempt_at END,
                        {status} = 'pending', {updated_at} = {ts}
                  WHERE id = $1 AND {retryable}{}",
                d.returning(&cols),
                ts = d.ts("$2"),
                retryable = retryable,
            )),
            retry_parked: st(&format!(
                "UPDATE notification_messages SET next_attempt_at = NULL, {updated_at} = {ts}
                  WHERE {status} = 'pending' AND next_attempt_at > {ts}{}",
                d.returning(&id),
                ts = d.ts("$1")
            )),
            retry_failed: st(&format!(
                "UPDATE notification_messages SET {status} = 'pending', {updated_at} = {}
                  WHERE {status} = 'failed'{}",
                d.ts("$1"),
                d.returning(&id)
            )),
            cancel: st(&format!(
                "UPDATE notification_messages SET {status} = 'cancelled', {updated_at} = {}
                  WHERE id = $1 AND {status} = 'pending'{}",
                d.ts("$2"),
                d.returning(&cols)
            )),
            status_of: st(&format!(
                "SELECT {} FROM notification_messages WHERE id = $1",
                t.read("status", "")
            )),
            counts: st(&format!(
                "SELECT {}, {}, count(*) FROM notification_messages GROUP BY {status}, {}",
                t.read("status", ""),
                t.read("channel", ""),
                t.col("channel")
            )),
            counts_unsent: st(&format!(
                "SELECT {}, {}, count(*) FROM notification_messages
                  WHERE status NOT IN ('sent', 'pending', 'processing') GROUP BY {status}, {}",
                t.read("status", ""),
                t.read("channel", ""),
                t.col("channel")
            )),
            rows_estimate: st(&d.rows_estimate()),
            oldest_due: st(&d.oldest_due(t)),
            open_counts: st(&format!(
                "SELECT {}, {}, count(*) FROM notification_messages WHERE {} GROUP BY {status}, {}",
                t.read("status", ""),
                t.read("channel", ""),
                t.open(),
                t.col("channel")
            )),
            recent_failures: st(&format!(
                "SELECT provider, error, {} FROM notification_attempts
                  WHERE outcome NOT IN ('sent', 'reconciled') ORDER BY id DESC LIMIT 200",
                d.ts_text("finished_at")
            )),
            find_email_by_id: st(&format!(
                "SELECT {id} FROM notification_messages
                  WHERE id = $1 AND provider = $2 AND {} = 'email' AND lower({recipient}) = lower($3)",
                t.text_of("channel", "")
            )),
            find_email_by_provider_id: st(&format!(
                "SELECT {id} FROM notification_messages
                  WHERE provider_message_id = $1 AND provider_message_id IS NOT NULL AND provider = $2
                    AND {} = 'email' AND lower({recipient}) = lower($3)
                  ORDER BY id DESC LIMIT 1",
                t.text_of("channel", "")
            )),
            find_by_provider_id: st(&format!(
                "SELECT {id} FROM notification_messages
                  WHERE provider_message_id = $1 AND provider_message_id IS NOT NULL AND provider = $2
                  ORDER BY id DESC LIMIT 1"
            )),
            insert_event: st(&format!(
                "{ins} INTO notification_events
                        (message_id, provider, event, delivery_status, occurred_at, received_at, dedupe_key, detail)
                 VALUES ($1, $2, $3, $4, {}, {}, $7, $8) {}",
                d.ts("$5"),
                d.ts("$6"),
                d.on_conflict_nothing("dedupe_key"),
                ins = d.insert_or_skip()
            )),
            apply_delivery: st(&format!(
                "UPDATE notification_messages
                    SET delivery_status = $2, delivery_rank = $3,
                        delivered_at = CASE WHEN $3 >= 4 AND $3 < 10 THEN coalesce(delivered_at, {}) ELSE delivered_at END,
                        delivery_error_code = coalesce($5, delivery_error_code)
                  WHERE id = $1 AND (delivery_rank IS NULL OR delivery_rank < $3)",
                d.ts("$4")
            )),
            events: st("SELECT provider, event, delivery_status, occurred_at, received_at, detail
                          FROM notification_events WHERE message_id = $1 ORDER BY id"),
            suppress: st(&format!(
                "{ins} INTO notification_suppressions (channel, recipient, reason, source, created_at)
                 VALUES ($1, $2, $3, $4, {}) {}",
                d.ts("$5"),
                d.on_conflict_nothing("channel, recipient"),
                ins = d.insert_or_skip()
            )),
            unsuppress: st("DELETE FROM notification_suppressions WHERE channel = $1 AND recipient = $2"),
            suppressions: st(&format!(
                "SELECT channel, recipient, reason, source, created_at FROM notification_suppressions
                  WHERE ({} IS NULL OR channel = $1) ORDER BY created_at DESC, recipient LIMIT $2",
                d.text("$1")
            )),
            suppressed_among: st(&format!(
                "SELECT channel, recipient, reason FROM notification_suppressions
                  WHERE recipient IN (SELECT value FROM {})",
                d.json_array("$1")
            )),
            template_next_version: st(&format!(
                "SELECT {} FROM notification_templates WHERE name = $1",
                d.int("coalesce(max(version), 0) + 1")
            )),
            template_lock: d.lock_name("$1").map(|sql| st(&sql)),
            template_insert: st(&format!(
                "INSERT INTO notification_templates (name, version, locale, channel, parts, is_default, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, {})",
                d.ts("$7")
            )),
            template_is_default: st(
                "SELECT count(*) FROM notification_templates WHERE name = $1 AND locale = $2 AND is_default = 1",
            ),
            template_undefault: st(
                "UPDATE notification_templates SET is_default = 0 WHERE name = $1 AND locale <> $2",
            ),
            templates: st(&format!(
                "SELECT name, version, locale, channel, parts, is_default, created_at
                   FROM notification_templates t
                  WHERE ({} IS NULL OR name = $1)
                    AND version = (SELECT max(version) FROM notification_templates
                                    WHERE name = t.name AND locale = t.locale)
                  ORDER BY name, locale",
                d.text("$1")
            )),
            template_delete: st("DELETE FROM notification_templates WHERE name = $1"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Postgres, Sqlite};
    use super::*;

    #[test]
    fn every_statement_builds_on_every_dialect() {
        for d in [&Sqlite as &dyn Dialect, &Postgres, &super::super::Mysql] {
            let s = Statements::build(d, &Table::new(d.quote(), &Default::default(), Default::default()));
            let all = format!("{s:?}");
            assert!(!all.contains("sql: \"\""), "{} has an empty statement", d.name());
            // Every caller parameter is bound, whatever the placeholder
            // syntax (`?` binds once per use, so count distinct indexes).
            let params = |st: &Statement| st.order.iter().collect::<std::collections::BTreeSet<_>>().len();
            assert_eq!(
                (params(&s.claim_channel), params(&s.claim_any)),
                (if d.name() == "mysql" { (3, 2) } else { (5, 4) }),
                "{}",
                d.name()
            );
            assert_eq!(params(&s.insert), 13, "{}: {}", d.name(), s.insert.sql);
            assert_eq!((params(&s.list), params(&s.list_meta)), (9, 11), "{}", d.name());
        }
    }
}
