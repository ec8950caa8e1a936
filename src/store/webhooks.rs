//! Status webhooks to the POS: endpoints, the outbox and the delivery log.
//!
//! Events are written to the outbox (`herald_webhook_outbox`, one row per
//! event and endpoint that wants it) in the same transaction as the change
//! they tell of: a message recorded as sent, a receipt, a message queued.
//! Nothing is lost if Herald stops between the change and the request; the
//! `outbound` module delivers them. When no endpoint wants an event type,
//! nothing is written (which types are wanted is read at most once a
//! second, and at once after an endpoint changes in this process).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;

use super::{Message, Result, Store};
use crate::clock::{format_ts, parse_ts};
use crate::domain::{EndpointUrl, EventFilter, EventType};

/// How long the set of wanted event types is trusted.
const WANTED_FOR: Duration = Duration::from_secs(1);

/// The most events one replay copies.
pub const MAX_REPLAY: i64 = 100_000;

/// An endpoint, as the API shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Endpoint {
    pub id: i64,
    pub url: String,
    pub description: Option<String>,
    /// Event types it gets (`*`: all).
    pub events: Vec<String>,
    pub enabled: bool,
    /// Why Herald disabled it (it kept failing), if it did.
    pub disabled_reason: Option<String>,
    /// Failing without a success since then.
    pub failing_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// After a rotation, the previous secret also signs until then.
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// An endpoint's address and signing secrets, for the dispatcher.
#[derive(Debug, Clone)]
pub struct EndpointKeys {
    pub id: i64,
    pub url: String,
    pub secret: SecretString,
    /// The previous secret, while a rotation's overlap lasts.
    pub previous: Option<SecretString>,
}

/// A delivery leased to a dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    /// The `webhook-id`: the same on every attempt and for every endpoint.
    pub event_id: String,
    pub endpoint_id: i64,
    pub message_id: Option<i64>,
    pub event_type: String,
    pub payload: String,
    /// This attempt's number (from 1).
    pub attempt: i32,
}

/// What became of a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Delivered,
    /// Failed; tried again at this time.
    RetryAt(DateTime<Utc>),
    /// Failed for good (its retries ran out, or the endpoint is gone).
    Failed,
}

/// One attempt's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryResult {
    pub delivery: Delivery,
    pub at: DateTime<Utc>,
    pub state: DeliveryState,
    /// The endpoint's HTTP status, when it answered.
    pub status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// A delivery, as the API lists them.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeliveryRow {
    pub id: i64,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub message_id: Option<i64>,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub created_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The endpoint's last HTTP status.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
}

/// One request of the delivery log.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeliveryAttempt {
    pub id: i64,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub message_id: Option<i64>,
    pub attempt: i32,
    pub at: Option<DateTime<Utc>>,
    /// The endpoint's HTTP status (none: no answer).
    pub status: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
}

/// An event to fan out to the endpoints that want it. Its body is written
/// when it is first sent (see [`Store::claim_deliveries`]).
#[derive(Debug, Clone, Serialize)]
pub struct OutboxEvent {
    pub event_id: String,
    pub message_id: Option<i64>,
    #[serde(rename = "type")]
    pub event_type: &'static str,
}

impl OutboxEvent {
    /// The event `t` about message `id`.
    pub fn about(t: EventType, id: i64) -> OutboxEvent {
        OutboxEvent {
            event_id: new_event_id(),
            message_id: Some(id),
            event_type: t.as_str(),
        }
    }
}

/// An event's request body: its type, when it happened, and the message as
/// the API shows it (`{"id": …}` alone if the message is gone).
fn payload(event_type: &str, at: &str, msg: Option<&Message>, id: Option<i64>) -> String {
    let data = match msg {
        Some(m) => serde_json::to_value(m).expect("a message serializes"),
        None => serde_json::json!({ "id": id }),
    };
    serde_json::json!({ "type": event_type, "timestamp": at, "data": data }).to_string()
}

/// `evt_` and 26 random base32 characters (130 bits).
fn new_event_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 26];
    getrandom::getrandom(&mut bytes).expect("the operating system's random numbers");
    let text: String = bytes.iter().map(|b| ALPHABET[(*b & 31) as usize] as char).collect();
    format!("evt_{text}")
}

/// Which event types some endpoint wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    all: bool,
    types: BTreeSet<EventType>,
}

impl Wanted {
    pub fn wants(&self, t: EventType) -> bool {
        self.all || self.types.contains(&t)
    }

    pub fn any(&self) -> bool {
        self.all || !self.types.is_empty()
    }
}

/// The wanted types, and when they were read.
#[derive(Debug, Default)]
pub(super) struct Subscriptions(Mutex<Option<(Instant, Wanted)>>);

impl Subscriptions {
    fn cached(&self) -> Option<Wanted> {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref()
            .filter(|(at, _)| at.elapsed() < WANTED_FOR)
            .map(|(_, w)| w.clone())
    }

    fn put(&self, w: Wanted) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), w));
    }

    pub(super) fn forget(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

type EndpointRow = (
    i64,
    String,
    Option<String>,
    String,
    i32,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn endpoint_of(r: EndpointRow) -> Endpoint {
    let (id, url, description, events, enabled, disabled_reason, failing, success, prev, created, updated) = r;
    let ts = |t: Option<String>| t.as_deref().and_then(parse_ts);
    Endpoint {
        id,
        url,
        description,
        events: EventFilter::from_stored(&events).words(),
        enabled: enabled != 0,
        disabled_reason,
        failing_since: ts(failing),
        last_success_at: ts(success),
        previous_secret_until: ts(prev),
        created_at: ts(created),
        updated_at: ts(updated),
    }
}

impl Store {
    /// Which event types endpoints want (read at most once a second).
    pub async fn wanted_events(&self) -> Result<Wanted> {
        if let Some(w) = self.subscriptions.cached() {
            return Ok(w);
        }
        let s = &self.sql.webhooks.filters;
        let rows: Vec<String> = with_pool!(self, |pool| sqlx::query_scalar(&s.sql).fetch_all(pool).await?);
        let mut w = Wanted::default();
        for r in rows {
            match EventFilter::from_stored(&r) {
                EventFilter::All => w.all = true,
                EventFilter::Only(types) => w.types.extend(types),
            }
        }
        self.subscriptions.put(w.clone());
        Ok(w)
    }

    /// A new endpoint, signing with `secret`.
    pub async fn create_endpoint(
        &self,
        url: &EndpointUrl,
        description: Option<&str>,
        events: &EventFilter,
        secret: &str,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<Endpoint> {
        let s = &self.sql.webhooks.insert;
        let id: i64 = {
            let _turn = self.write_turn().await;
            with_pool_retrying!(self, |pool| {
                macro_rules! q {
                    ($kind:path) => {
                        bound!(
                            $kind(&s.sql),
                            s,
                            [
                                url.as_str(),
                                description,
                                events.stored(),
                                secret,
                                i32::from(enabled),
                                format_ts(now)
                            ]
                        )
                    };
                }
                if self.sql.mysql.is_some() {
                    use super::backend::InsertId;
                    super::backend::inserted_id(q!(sqlx::query).execute(pool).await?.insert_id())?
                } else {
                    q!(sqlx::query_scalar).fetch_one(pool).await?
                }
            })
        };
        self.subscriptions.forget();
        self.endpoint(id).await?.ok_or(super::StoreError::NotFound(id))
    }

    pub async fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let s = &self.sql.webhooks.all;
        let rows: Vec<EndpointRow> = with_pool!(self, |pool| sqlx::query_as(&s.sql).fetch_all(pool).await?);
        Ok(rows.into_iter().map(endpoint_of).collect())
    }

    pub async fn endpoint(&self, id: i64) -> Result<Option<Endpoint>> {
        let s = &self.sql.webhooks.get;
        let row: Option<EndpointRow> = with_pool!(self, |pool| bound!(sqlx::query_as(&s.sql), s, [id])
            .fetch_optional(pool)
            .await?);
        Ok(row.map(endpoint_of))
    }

    /// Write `e` back (its url, description, events and enabled state):
    /// enabling it clears why it was disabled and its failing streak.
    pub async fn update_endpoint(&self, e: &Endpoint, now: DateTime<Utc>) -> Result<bool> {
        let s = &self.sql.webhooks.update;
        let events = EventFilter::parse(&e.events)
            .map(|f| f.stored())
            .unwrap_or_else(|_| ",*,".to_owned());
        let n = {
            let _turn = self.write_turn().await;
            with_pool_retrying!(self, |pool| bound!(
                sqlx::query(&s.sql),
                s,
                [
                    e.id,
                    e.url.as_str(),
                    e.description.as_deref(),
                    &events,
                    i32::from(e.enabled),
                    e.disabled_reason.as_deref(),
                    e.failing_since.map(format_ts),
                    format_ts(now)
                ]
            )
            .execute(pool)
            .await?
            .rows_affected())
        };
        self.subscriptions.forget();
        Ok(n == 1)
    }

    /// Delete an endpoint with its deliveries and log; false if none.
    pub async fn delete_endpoint(&self, id: i64) -> Result<bool> {
        let s = &self.sql.webhooks.delete;
        let n = {
            let _turn = self.write_turn().await;
            with_pool_retrying!(self, |pool| bound!(sqlx::query(&s.sql), s, [id])
                .execute(pool)
                .await?
                .rows_affected())
        };
        self.subscriptions.forget();
        Ok(n == 1)
    }

    /// Sign with `secret` from now on; the old secret signs too until
    /// `overlap_until`. False if there is no such endpoint.
    pub async fn rotate_endpoint_secret(
        &self,
        id: i64,
        secret: &str,
        overlap_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let s = &self.sql.webhooks.rotate;
        let _turn = self.write_turn().await;
        let n = with_pool_retrying!(self, |pool| bound!(
            sqlx::query(&s.sql),
            s,
            [id, secret, format_ts(overlap_until), format_ts(now)]
        )
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// The addresses and secrets of these endpoints (the previous secret
    /// only while its overlap lasts at `now`).
    pub async fn endpoint_keys(&self, ids: &[i64], now: DateTime<Utc>) -> Result<Vec<EndpointKeys>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let s = &self.sql.webhooks.secrets;
        let json = serde_json::to_string(ids).expect("ids serialize");
        type Row = (i64, String, String, Option<String>, Option<String>);
        let rows: Vec<Row> = with_pool!(self, |pool| bound!(sqlx::query_as(&s.sql), s, [json])
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .map(|(id, url, secret, previous, until)| {
                let valid = until.as_deref().and_then(parse_ts).is_some_and(|u| u > now);
                EndpointKeys {
                    id,
                    url,
                    secret: SecretString::from(secret),
                    previous: previous.filter(|_| valid).map(SecretString::from),
                }
            })
            .collect())
    }

    /// Fan events out now, in a transaction of their own (events that
    /// change nothing else, such as a replay).
    pub async fn add_events(&self, events: &[OutboxEvent], now: DateTime<Utc>) -> Result<()> {
        let sql = &self.sql;
        let _turn = self.write_turn().await;
        with_pool_retrying!(self, |pool| {
            let mut tx = pool.begin_with(sql.begin_write).await?;
            fan_out!(sql, tx, events, now);
            tx.commit().await?;
        });
        self.outbound_wake.notify_one();
        Ok(())
    }

    /// Lease up to `limit` due deliveries to `worker` until `until`, shared
    /// between the enabled endpoints (each claim reads one endpoint's due
    /// deliveries in order, so a backlog for one never slows another's).
    pub async fn claim_deliveries(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let (s, e) = (&self.sql.webhooks.claim, &self.sql.webhooks.enabled);
        type Row = (i64, String, i64, Option<i64>, String, Option<String>, i32);
        let endpoints: Vec<i64> = with_pool!(self, |pool| sqlx::query_scalar(&e.sql).fetch_all(pool).await?);
        if endpoints.is_empty() {
            return Ok(Vec::new());
        }
        let n = endpoints.len() as i64;
        let each = ((i64::from(limit) + n - 1) / n).max(1);
        let mut rows: Vec<Row> = Vec::new();
        let turn = self.write_turn().await;
        for endpoint in endpoints {
            let got: Vec<Row> = with_pool!(self, |pool| {
                let q = bound!(
                    sqlx::query_as(&s.sql),
                    s,
                    [worker, format_ts(now), format_ts(until), each, endpoint]
                );
                match &self.backend {
                    // A fresh outbox has no statistics: without sorting the
                    // planner reads the due index in order and stops at the
                    // limit (sorting every pending row took 250 ms a claim).
                    super::backend::Backend::Postgres { .. } => {
                        let mut tx = pool.begin().await?;
                        sqlx::query("SELECT set_config('enable_sort', 'off', true), set_config('jit', 'off', true)")
                            .execute(&mut *tx)
                            .await?;
                        let rows = q.fetch_all(&mut *tx).await?;
                        tx.commit().await?;
                        rows
                    }
                    super::backend::Backend::Mysql { .. } => {
                        // In steps, as the message claim: lock, lease, read.
                        let m = self.sql.mysql.as_ref().expect("MySQL statements");
                        let (sel, upd, get) = (&m.deliveries_select, &m.deliveries_update, &m.deliveries_fetch);
                        let mut tx = pool.begin().await?;
                        let ids: Vec<i64> = bound!(
                            sqlx::query_scalar(&sel.sql),
                            sel,
                            [worker, format_ts(now), format_ts(until), each, endpoint]
                        )
                        .fetch_all(&mut *tx)
                        .await?;
                        let rows = if ids.is_empty() {
                            Vec::new()
                        } else {
                            let json = serde_json::to_string(&ids).expect("ids serialize");
                            let upd = upd.with_ids(&ids);
                            bound!(
                                sqlx::query(&upd.sql),
                                upd,
                                [worker, format_ts(now), format_ts(until), each, endpoint]
                            )
                            .execute(&mut *tx)
                            .await?;
                            bound!(sqlx::query_as(&get.sql), get, [json])
                                .fetch_all(&mut *tx)
                                .await?
                        };
                        tx.commit().await?;
                        rows
                    }
                    super::backend::Backend::Sqlite { .. } => q.fetch_all(pool).await?,
                }
            });
            rows.extend(got);
        }
        drop(turn);
        // First attempts: write the events' bodies now (for every endpoint
        // of each event at once), from the messages as they are.
        let unwritten: Vec<i64> = rows.iter().filter(|r| r.5.is_none()).map(|r| r.0).collect();
        let written = if unwritten.is_empty() {
            std::collections::HashMap::new()
        } else {
            self.write_payloads(&unwritten).await?
        };
        let mut out: Vec<Delivery> = rows
            .into_iter()
            .map(
                |(id, event_id, endpoint_id, message_id, event_type, payload, attempt)| Delivery {
                    payload: payload
                        .or_else(|| written.get(&event_id).cloned())
                        .unwrap_or_else(|| self::payload(&event_type, "", None, message_id)),
                    id,
                    event_id,
                    endpoint_id,
                    message_id,
                    event_type,
                    attempt,
                },
            )
            .collect();
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    /// Write the bodies of the events of these deliveries that have none;
    /// event id → body (another worker may have written one first: its
    /// body is read back, so every attempt sends the same).
    async fn write_payloads(&self, ids: &[i64]) -> Result<std::collections::HashMap<String, String>> {
        let w = &self.sql.webhooks;
        let json = serde_json::to_string(ids).expect("ids serialize");
        type Row = (String, String, Option<i64>, Option<String>);
        let events: Vec<Row> = with_pool!(self, |pool| bound!(
            sqlx::query_as(&w.unwritten.sql),
            w.unwritten,
            [json]
        )
        .fetch_all(pool)
        .await?);
        let message_ids: Vec<i64> = events.iter().filter_map(|e| e.2).collect();
        let messages = self.get_many(&message_ids).await?;
        let bodies: Vec<(String, String)> = events
            .iter()
            .map(|(event_id, event_type, message_id, at)| {
                let msg = messages.iter().find(|m| Some(m.id) == *message_id);
                (
                    event_id.clone(),
                    payload(event_type, at.as_deref().unwrap_or(""), msg, *message_id),
                )
            })
            .collect();
        let records: Vec<serde_json::Value> = bodies
            .iter()
            .map(|(e, p)| serde_json::json!({ "event_id": e, "payload": p }))
            .collect();
        let records = serde_json::Value::from(records).to_string();
        {
            let _turn = self.write_turn().await;
            with_pool_retrying!(self, |pool| {
                bound!(sqlx::query(&w.write_payloads.sql), w.write_payloads, [&records])
                    .execute(pool)
                    .await?;
            });
        }
        Ok(bodies.into_iter().collect())
    }

    /// Record attempts (only deliveries still leased to `worker`), add them
    /// to the log, and keep each endpoint's failing streak.
    pub async fn record_deliveries(&self, worker: &str, results: &[DeliveryResult]) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let w = &self.sql.webhooks;
        let done: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                let (status, next_at, delivered_at) = match r.state {
                    DeliveryState::Delivered => ("delivered", None, Some(format_ts(r.at))),
                    DeliveryState::RetryAt(t) => ("pending", Some(format_ts(t)), None),
                    DeliveryState::Failed => ("failed", None, None),
                };
                serde_json::json!({
                    "id": r.delivery.id, "status": status, "next_at": next_at, "delivered_at": delivered_at,
                    "code": r.status, "error": r.error,
                })
            })
            .collect();
        let log: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "outbox_id": r.delivery.id, "endpoint_id": r.delivery.endpoint_id,
                    "event_id": r.delivery.event_id, "attempt": r.delivery.attempt, "at": format_ts(r.at),
                    "code": r.status, "latency_ms": r.latency_ms.clamp(0, i64::from(i32::MAX)), "error": r.error,
                })
            })
            .collect();
        // Each endpoint's news: any success ends its streak.
        let mut endpoints: std::collections::BTreeMap<i64, (bool, DateTime<Utc>)> = Default::default();
        for r in results {
            let e = endpoints.entry(r.delivery.endpoint_id).or_insert((false, r.at));
            e.0 |= r.state == DeliveryState::Delivered;
            e.1 = e.1.min(r.at);
        }
        let (done, log) = (
            serde_json::Value::from(done).to_string(),
            serde_json::Value::from(log).to_string(),
        );
        let _turn = self.write_turn().await;
        with_pool_retrying!(self, |pool| {
            let mut tx = pool.begin_with(self.sql.begin_write).await?;
            // The endpoints' rows first: the log's foreign keys then check
            // rows this transaction already holds, instead of taking a
            // shared lock to upgrade later (a deadlock with an operator
            // changing the endpoint meanwhile).
            for (&id, &(ok, at)) in &endpoints {
                let s = if ok { &w.succeeded } else { &w.failed };
                bound!(sqlx::query(&s.sql), s, [id, format_ts(at)])
                    .execute(&mut *tx)
                    .await?;
            }
            bound!(sqlx::query(&w.done.sql), w.done, [&done, worker])
                .execute(&mut *tx)
                .await?;
            bound!(sqlx::query(&w.log.sql), w.log, [&log]).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Disable endpoint `id` because `reason`; true if it was enabled.
    pub async fn disable_endpoint(&self, id: i64, reason: &str, now: DateTime<Utc>) -> Result<bool> {
        let s = &self.sql.webhooks.disable;
        let disabled = {
            let _turn = self.write_turn().await;
            with_pool_retrying!(self, |pool| bound!(
                sqlx::query(&s.sql),
                s,
                [id, reason, format_ts(now)]
            )
            .execute(pool)
            .await?
            .rows_affected())
        };
        Ok(disabled == 1)
    }

    /// The delivery log of an endpoint, newest first (`before`: an id, for
    /// the next page).
    pub async fn delivery_attempts(
        &self,
        endpoint: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeliveryAttempt>> {
        let s = &self.sql.webhooks.attempts;
        type Row = (
            i64,
            String,
            String,
            Option<i64>,
            i32,
            Option<String>,
            Option<i32>,
            i32,
            Option<String>,
        );
        let rows: Vec<Row> = with_pool!(self, |pool| bound!(
            sqlx::query_as(&s.sql),
            s,
            [endpoint, before, limit]
        )
        .fetch_all(pool)
        .await?);
        Ok(rows
            .into_iter()
            .map(
                |(id, event_id, event_type, message_id, attempt, at, status, latency_ms, error)| DeliveryAttempt {
                    id,
                    event_id,
                    event_type,
                    message_id,
                    attempt,
                    at: at.as_deref().and_then(parse_ts),
                    status,
                    latency_ms,
                    error,
                },
            )
            .collect())
    }

    /// An endpoint's deliveries, newest first.
    pub async fn deliveries(
        &self,
        endpoint: i64,
        status: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>> {
        let s = &self.sql.webhooks.deliveries;
        type Row = (
            i64,
            String,
            String,
            Option<i64>,
            String,
            i32,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i32>,
            Option<String>,
        );
        let rows: Vec<Row> = with_pool!(self, |pool| bound!(
            sqlx::query_as(&s.sql),
            s,
            [endpoint, status, before, limit]
        )
        .fetch_all(pool)
        .await?);
        let ts = |t: Option<String>| t.as_deref().and_then(parse_ts);
        Ok(rows
            .into_iter()
            .map(
                |(id, event_id, event_type, message_id, status, attempts, c, n, d, last_status, last_error)| {
                    DeliveryRow {
                        id,
                        event_id,
                        event_type,
                        message_id,
                        status,
                        attempts,
                        created_at: ts(c),
                        next_attempt_at: ts(n),
                        delivered_at: ts(d),
                        last_status,
                        last_error,
                    }
                },
            )
            .collect())
    }

    /// Deliver event `event_id` to endpoint `endpoint` again (with the same
    /// `webhook-id` and body); false if no such event was ever sent.
    pub async fn replay_event(&self, endpoint: i64, event_id: &str, now: DateTime<Utc>) -> Result<bool> {
        let s = &self.sql.webhooks.replay_one;
        let n = {
            let _turn = self.write_turn().await;
            with_pool_retrying!(self, |pool| bound!(
                sqlx::query(&s.sql),
                s,
                [endpoint, event_id, format_ts(now)]
            )
            .execute(pool)
            .await?
            .rows_affected())
        };
        self.outbound_wake.notify_one();
        Ok(n == 1)
    }

    /// Deliver to `endpoint` again every event it wants that was created
    /// from `from` to `to` (at most [`MAX_REPLAY`]); how many.
    pub async fn replay_range(
        &self,
        endpoint: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let s = &self.sql.webhooks.replay_range;
        let n = {
            let _turn = self.write_turn().await;
            with_pool_retrying!(self, |pool| bound!(
                sqlx::query(&s.sql),
                s,
                [endpoint, format_ts(from), format_ts(to), format_ts(now), MAX_REPLAY]
            )
            .execute(pool)
            .await?
            .rows_affected())
        };
        self.outbound_wake.notify_one();
        Ok(n)
    }

    /// Pending deliveries per endpoint.
    pub async fn pending_deliveries(&self) -> Result<Vec<(i64, i64)>> {
        let s = &self.sql.webhooks.pending;
        let rows: Vec<(i64, i64)> = with_pool!(self, |pool| sqlx::query_as(&s.sql).fetch_all(pool).await?);
        Ok(rows)
    }

    /// Notified when events were written by this process.
    pub fn outbound_wake(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.outbound_wake.clone()
    }
}

/// The events the outcomes of a batch mean for the POS: each message that
/// became sent or failed (and suppressed: not sent to a suppressed
/// recipient), and each WhatsApp message that fell back to SMS.
pub(super) fn outcome_events(
    completions: &[super::Completion],
    applied: &[i64],
    fell_back: &[i64],
    wanted: &Wanted,
) -> Vec<OutboxEvent> {
    use crate::domain::MessageStatus;
    let mut out = Vec::new();
    for c in completions.iter().filter(|c| applied.contains(&c.id)) {
        let suppressed = c
            .error
            .as_deref()
            .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok())
            .is_some_and(|e| e.get("code").and_then(|c| c.as_str()) == Some("suppressed"));
        let mut types = Vec::new();
        match c.status {
            MessageStatus::Sent => types.push(EventType::Sent),
            MessageStatus::Failed => {
                if fell_back.contains(&c.id) {
                    types.push(EventType::Fallback);
                }
                if suppressed {
                    types.push(EventType::Suppressed);
                }
                types.push(EventType::Failed);
            }
            _ => {}
        }
        out.extend(
            types
                .into_iter()
                .filter(|t| wanted.wants(*t))
                .map(|t| OutboxEvent::about(t, c.id)),
        );
    }
    out
}
