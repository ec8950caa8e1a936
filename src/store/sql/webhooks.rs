//! The statements of status webhooks: endpoints, the outbox, the delivery
//! log. Timestamps are read back as Herald's text form.

use super::{Dialect, Statement};

/// The endpoint columns every read returns.
const ENDPOINT_COLS: &str = "id, url, description, events, enabled, disabled_reason";

#[derive(Debug)]
pub(crate) struct WebhookStatements {
    /// New endpoint: `$1` url, `$2` description, `$3` events, `$4` secret,
    /// `$5` enabled, `$6` now; its id.
    pub insert: Statement,
    /// Every endpoint (no secrets), by id.
    pub all: Statement,
    /// Endpoint `$1` (no secrets).
    pub get: Statement,
    /// Endpoint `$1`: url `$2`, description `$3`, events `$4`, enabled
    /// `$5`, disabled reason `$6`, failing since `$7`, at `$8`.
    pub update: Statement,
    /// Delete endpoint `$1` (its outbox and log go with it).
    pub delete: Statement,
    /// Endpoint `$1` signs with `$2` from now (`$4`); the old secret stays
    /// valid until `$3`.
    pub rotate: Statement,
    /// (id, url, secret, previous secret, previous valid until) of the
    /// endpoints in the JSON array of ids `$1`.
    pub secrets: Statement,
    /// The event filters of endpoints that get events (enabled, or
    /// disabled by Herald: their events wait for them).
    pub filters: Statement,
    /// Fan the events of the JSON array `$1` (event_id, message_id, type)
    /// out to every endpoint that wants them, at `$2`.
    pub fan_out: Statement,
    /// The bodies of events without one yet, among the deliveries whose
    /// ids are in the JSON array `$1`: (event_id, type, message_id, created at).
    pub unwritten: Statement,
    /// Write bodies (JSON array `$1` of event_id, payload) to every
    /// delivery of each event that has none yet.
    pub write_payloads: Statement,
    /// Lease up to `$4` due deliveries of endpoint `$5` to `$1` at `$2`
    /// until `$3`, in due order (a delivery waits while an earlier one of
    /// the same message and endpoint is pending).
    pub claim: Statement,
    /// The enabled endpoints' ids.
    pub enabled: Statement,
    /// Record deliveries (JSON array `$1`: id, status, next_at,
    /// delivered_at, code, error) still leased to `$2`.
    pub done: Statement,
    /// Add to the delivery log (JSON array `$1`: outbox_id, endpoint_id,
    /// event_id, attempt, at, code, latency_ms, error).
    pub log: Statement,
    /// Endpoint `$1` answered at `$2`.
    pub succeeded: Statement,
    /// Endpoint `$1` failed at `$2` (failing since then, if not already).
    pub failed: Statement,
    /// Disable endpoint `$1` because `$2` at `$3` (if it is enabled); its id.
    pub disable: Statement,
    /// The delivery log of endpoint `$1`, newest first, below id `$2`, at
    /// most `$3`.
    pub attempts: Statement,
    /// The deliveries of endpoint `$1` (status `$2` or all), newest first,
    /// below id `$3`, at most `$4`.
    pub deliveries: Statement,
    /// Deliver event `$2` to endpoint `$1` again at `$3` (one row, or none
    /// if the event was never sent).
    pub replay_one: Statement,
    /// Deliver to endpoint `$1` again every event it wants created from `$2`
    /// to `$3`, at `$4`, at most `$5`.
    pub replay_range: Statement,
    /// Pending deliveries per endpoint.
    pub pending: Statement,
}

impl WebhookStatements {
    pub(crate) fn build(d: &dyn Dialect) -> WebhookStatements {
        let st = |sql: &str| d.statement(sql);
        let endpoint_cols = format!(
            "{ENDPOINT_COLS}, {}, {}, {}, {}, {}",
            d.ts_text("failing_since"),
            d.ts_text("last_success_at"),
            d.ts_text("previous_secret_until"),
            d.ts_text("created_at"),
            d.ts_text("updated_at")
        );
        let wants =
            |types: &str, ty: &str| format!("({types} = ',*,' OR {types} LIKE {})", d.concat(&["'%,'", ty, "',%'"]));
        let receives = "(e.enabled = 1 OR e.disabled_reason IS NOT NULL)";
        WebhookStatements {
            insert: st(&format!(
                "INSERT INTO herald_webhook_endpoints (url, description, events, secret, enabled, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, {now}, {now}){}",
                d.returning("id"),
                now = d.ts("$6")
            )),
            all: st(&format!("SELECT {endpoint_cols} FROM herald_webhook_endpoints ORDER BY id")),
            get: st(&format!("SELECT {endpoint_cols} FROM herald_webhook_endpoints WHERE id = $1")),
            update: st(&format!(
                "UPDATE herald_webhook_endpoints
                    SET url = $2, description = $3, events = $4, enabled = $5, disabled_reason = $6,
                        failing_since = {}, updated_at = {}
                  WHERE id = $1",
                d.ts("$7"),
                d.ts("$8")
            )),
            delete: st("DELETE FROM herald_webhook_endpoints WHERE id = $1"),
            rotate: st(&format!(
                "UPDATE herald_webhook_endpoints
                    SET previous_secret = secret, previous_secret_until = {}, secret = $2, updated_at = {}
                  WHERE id = $1",
                d.ts("$3"),
                d.ts("$4")
            )),
            secrets: st(&format!(
                "SELECT id, url, secret, previous_secret, {} FROM herald_webhook_endpoints
                  WHERE id IN (SELECT {} FROM {})",
                d.ts_text("previous_secret_until"),
                d.int("value"),
                d.json_array("$1")
            )),
            filters: st(&format!("SELECT events FROM herald_webhook_endpoints e WHERE {receives}")),
            fan_out: st(&format!(
                "INSERT INTO herald_webhook_outbox (event_id, endpoint_id, message_id, type, created_at, next_attempt_at)
                 SELECT x.event_id, e.id, x.message_id, x.type, {now}, {now}
                   FROM {} JOIN herald_webhook_endpoints e ON {receives} AND {}
                  ORDER BY x.n, e.id",
                d.json_records("$1", "x", &[("event_id", "text"), ("message_id", "bigint"), ("type", "text")]),
                wants("e.events", "x.type"),
                now = d.ts("$2")
            )),
            claim: st(&format!(
                "UPDATE herald_webhook_outbox
                    SET lease_owner = $1, next_attempt_at = {until}, attempts = attempts + 1
                  WHERE id {}
              RETURNING id, event_id, endpoint_id, message_id, type, payload, attempts",
                d.ids_in(&format!(
                    "SELECT o.id FROM herald_webhook_outbox o
                      WHERE o.endpoint_id = $5 AND o.status = 'pending' AND o.next_attempt_at <= {now}
                        AND (o.message_id IS NULL
                             OR o.id = (SELECT min(p.id) FROM herald_webhook_outbox p
                                         WHERE p.message_id = o.message_id AND p.endpoint_id = o.endpoint_id
                                           AND p.status = 'pending'))
                      ORDER BY o.next_attempt_at, o.id LIMIT $4 {}",
                    d.skip_locked("o"),
                    now = d.ts("$2")
                )),
                until = d.ts("$3")
            )),
            enabled: st("SELECT id FROM herald_webhook_endpoints WHERE enabled = 1 ORDER BY id"),
            unwritten: st(&format!(
                "SELECT DISTINCT event_id, type, message_id, {} FROM herald_webhook_outbox
                  WHERE id {} AND payload IS NULL",
                d.ts_text("created_at"),
                d.ids_in(&format!("SELECT {} FROM {}", d.int("value"), d.json_array("$1")))
            )),
            write_payloads: st(&{
                let x = d.json_records("$1", "x", &[("event_id", "text"), ("payload", "text")]);
                if d.name() == "mysql" {
                    format!(
                        "UPDATE herald_webhook_outbox AS o JOIN {x} ON o.event_id = x.event_id
                            SET o.payload = x.payload WHERE o.payload IS NULL"
                    )
                } else {
                    format!(
                        "UPDATE herald_webhook_outbox SET payload = x.payload FROM {x}
                          WHERE herald_webhook_outbox.event_id = x.event_id AND herald_webhook_outbox.payload IS NULL
                            AND herald_webhook_outbox.event_id {}",
                        d.ids_in(&format!(
                            "SELECT y.event_id FROM {}",
                            d.json_records("$1", "y", &[("event_id", "text")])
                        ))
                    )
                }
            }),
            done: st(&{
                let x = d.json_records(
                    "$1",
                    "x",
                    &[
                        ("id", "bigint"),
                        ("status", "text"),
                        ("next_at", "timestamptz"),
                        ("delivered_at", "timestamptz"),
                        ("code", "int"),
                        ("error", "text"),
                    ],
                );
                let (next_at, delivered_at) = (d.ts("x.next_at"), d.ts("x.delivered_at"));
                if d.name() == "mysql" {
                    format!(
                        "UPDATE herald_webhook_outbox AS o JOIN {x} ON o.id = x.id
                            SET o.status = x.status, o.next_attempt_at = coalesce({next_at}, o.next_attempt_at),
                                o.lease_owner = NULL, o.delivered_at = {delivered_at}, o.last_status = x.code,
                                o.last_error = x.error
                          WHERE o.lease_owner = $2"
                    )
                } else {
                    format!(
                        "UPDATE herald_webhook_outbox
                            SET status = x.status, next_attempt_at = coalesce({next_at}, herald_webhook_outbox.next_attempt_at),
                                lease_owner = NULL, delivered_at = {delivered_at}, last_status = x.code, last_error = x.error
                           FROM {x}
                          WHERE herald_webhook_outbox.id = x.id AND herald_webhook_outbox.lease_owner = $2
                            AND herald_webhook_outbox.id {}",
                        d.ids_in(&format!("SELECT y.id FROM {}", d.json_records("$1", "y", &[("id", "bigint")])))
                    )
                }
            }),
            log: st(&format!(
                "INSERT INTO herald_webhook_attempts (outbox_id, endpoint_id, event_id, attempt, at, status, latency_ms, error)
                 SELECT x.outbox_id, x.endpoint_id, x.event_id, x.attempt, {}, x.code, x.latency_ms, x.error FROM {}",
                d.ts("x.at"),
                d.json_records(
                    "$1",
                    "x",
                    &[
                        ("outbox_id", "bigint"),
                        ("endpoint_id", "bigint"),
                        ("event_id", "text"),
                        ("attempt", "int"),
                        ("at", "timestamptz"),
                        ("code", "int"),
                        ("latency_ms", "int"),
                        ("error", "text")
                    ]
                )
            )),
            succeeded: st(&format!(
                "UPDATE herald_webhook_endpoints SET failing_since = NULL, last_success_at = {} WHERE id = $1",
                d.ts("$2")
            )),
            failed: st(&format!(
                "UPDATE herald_webhook_endpoints SET failing_since = coalesce(failing_since, {}) WHERE id = $1",
                d.ts("$2")
            )),
            disable: st(&format!(
                "UPDATE herald_webhook_endpoints SET enabled = 0, disabled_reason = $2, updated_at = {}
                  WHERE id = $1 AND enabled = 1{}",
                d.ts("$3"),
                d.returning("id")
            )),
            attempts: st(&format!(
                "SELECT a.id, a.event_id, o.type, o.message_id, a.attempt, {}, a.status, a.latency_ms, a.error
                   FROM herald_webhook_attempts a JOIN herald_webhook_outbox o ON o.id = a.outbox_id
                  WHERE a.endpoint_id = $1 AND ({} IS NULL OR a.id < $2)
                  ORDER BY a.id DESC LIMIT $3",
                d.ts_text("a.at"),
                d.int("$2")
            )),
            deliveries: st(&format!(
                "SELECT id, event_id, type, message_id, status, attempts, {}, {}, {}, last_status, last_error
                   FROM herald_webhook_outbox
                  WHERE endpoint_id = $1 AND ({} IS NULL OR status = $2) AND ({} IS NULL OR id < $3)
                  ORDER BY id DESC LIMIT $4",
                d.ts_text("created_at"),
                d.ts_text("next_attempt_at"),
                d.ts_text("delivered_at"),
                d.text("$2"),
                d.int("$3")
            )),
            replay_one: st(&format!(
                "INSERT INTO herald_webhook_outbox (event_id, endpoint_id, message_id, type, payload, created_at, next_attempt_at)
                 SELECT event_id, $1, message_id, type, payload, {now}, {now} FROM herald_webhook_outbox
                  WHERE id = (SELECT min(id) FROM herald_webhook_outbox WHERE event_id = $2)",
                now = d.ts("$3")
            )),
            replay_range: st(&format!(
                "INSERT INTO herald_webhook_outbox (event_id, endpoint_id, message_id, type, payload, created_at, next_attempt_at)
                 SELECT o.event_id, e.id, o.message_id, o.type, o.payload, {now}, {now}
                   FROM herald_webhook_outbox o JOIN herald_webhook_endpoints e ON e.id = $1 AND {}
                  WHERE o.id IN (SELECT min(id) FROM herald_webhook_outbox
                                  WHERE created_at >= {} AND created_at < {} GROUP BY event_id)
                  ORDER BY o.id LIMIT $5",
                wants("e.events", "o.type"),
                d.ts("$2"),
                d.ts("$3"),
                now = d.ts("$4")
            )),
            pending: st("SELECT endpoint_id, count(*) FROM herald_webhook_outbox WHERE status = 'pending' GROUP BY endpoint_id"),
        }
    }
}
