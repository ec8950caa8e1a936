//! The queue: enqueue, claim with a lease, record outcomes guarded by the
//! lease owner, and when the next message falls due.

use super::backend::{inserted_id, is_lock_conflict, Backend, InsertId, LOCK_CONFLICT_RETRIES};
use super::rows::{messages, Message, MessageRow};
use super::webhooks::OutboxEvent;
use super::{Result, Store};
use crate::clock::{format_ts, parse_ts};
use crate::domain::{Channel, EventType, NewMessage};
use chrono::{DateTime, Utc};

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_KEY_HOURS: i64 = 24;

/// The result of an idempotent enqueue.
#[derive(Debug)]
pub enum Idempotent {
    /// First use of the key: these messages were created.
    Created(Vec<Message>),
    /// The key was used before with the same request: its messages.
    Replayed(Vec<Message>),
    /// The key was used before with a different request.
    Conflict,
}

/// Which rows a claim may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimFilter {
    Any,
    Channel(Channel),
    /// Rows whose `channel` is none of Herald's (they are failed, not sent).
    UnknownChannel,
}

/// New messages as the JSON rows the bulk insert reads.
fn rows_json(msgs: &[NewMessage]) -> String {
    let rows: Vec<serde_json::Value> = msgs
        .iter()
        .map(|m| {
            serde_json::json!({
                "channel": m.channel().as_str(),
                "recipient": m.recipient.to_string(),
                "subject": m.content.subject,
                "body": m.content.body,
                "html_body": m.content.html_body,
                "send_at": m.send_at.map(format_ts),
                "metadata": m.metadata.as_ref().map(|v| v.to_string()),
                "content_sid": m.content.template.as_ref().map(|t| t.content_sid.clone()),
                "content_variables": content_variables(m),
                "template": m.template.as_ref().map(|t| t.name.clone()),
                "template_version": m.template.as_ref().map(|t| t.version),
                "locale": m.template.as_ref().map(|t| t.locale.clone()),
            })
        })
        .collect();
    serde_json::to_string(&rows).expect("rows serialize")
}

fn content_variables(m: &NewMessage) -> Option<String> {
    m.content
        .template
        .as_ref()
        .map(|t| serde_json::Value::Object(t.variables.clone()).to_string())
}

/// The `insert` statement `$s` for message `$msg` at `$now`.
macro_rules! insert_query {
    ($s:expr, $msg:expr, $now:expr) => {
        bound!(
            sqlx::query(&$s.sql),
            $s,
            [
                $msg.channel().as_str(),
                $msg.recipient.to_string(),
                $msg.content.subject.as_deref(),
                $msg.content.body.as_deref(),
                $msg.content.html_body.as_deref(),
                $msg.send_at.map(format_ts),
                $msg.metadata.as_ref().map(|m| m.to_string()),
                format_ts($now),
                $msg.content.template.as_ref().map(|t| t.content_sid.clone()),
                content_variables($msg),
                $msg.template.as_ref().map(|t| t.name.clone()),
                $msg.template.as_ref().map(|t| t.version),
                $msg.template.as_ref().map(|t| t.locale.clone()),
            ]
        )
    };
}

/// MySQL: insert `$msgs` one at a time in transaction `$tx` (MySQL cannot
/// hand back the rows of a multi-row insert, and ids of an
/// `INSERT … SELECT` need not be consecutive) and read them back.
macro_rules! insert_each {
    ($sql:expr, $tx:expr, $msgs:expr, $now:expr) => {{
        let mut ids = Vec::with_capacity($msgs.len());
        for msg in $msgs {
            let s = &$sql.insert;
            ids.push(inserted_id(
                insert_query!(s, msg, $now).execute(&mut *$tx).await?.insert_id(),
            )?);
        }
        let g = &$sql.get_many;
        let ids = serde_json::to_string(&ids).expect("ids serialize");
        messages(bound!(sqlx::query(&g.sql), g, [ids]).fetch_all(&mut *$tx).await?)?
    }};
}

impl Store {
    /// Queue one message.
    pub async fn enqueue(&self, msg: &NewMessage, now: DateTime<Utc>) -> Result<Message> {
        let s = &self.sql.insert;
        let queued_event = self.wanted_events().await?.wants(EventType::Queued);
        let _turn = self.write_turn().await;
        let row = with_pool_retrying!(self, |pool| {
            let mut tx = pool.begin_with(self.sql.begin_write).await?;
            let q = insert_query!(s, msg, now);
            let row = if self.sql.mysql.is_some() {
                let id = inserted_id(q.execute(&mut *tx).await?.insert_id())?;
                let g = &self.sql.get;
                bound!(sqlx::query(&g.sql), g, [id])
                    .fetch_one(&mut *tx)
                    .await?
                    .message()?
            } else {
                q.fetch_one(&mut *tx).await?.message()?
            };
            if queued_event {
                let events = vec![OutboxEvent::about(EventType::Queued, row.id)];
                fan_out!(self.sql, tx, events, now);
            }
            tx.commit().await?;
            row
        });
        if queued_event {
            self.outbound_wake.notify_one();
        }
        Ok(row)
    }

    /// Queue many messages in one statement (all or none), in order.
    pub async fn enqueue_many(&self, msgs: &[NewMessage], now: DateTime<Utc>) -> Result<Vec<Message>> {
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        let s = &self.sql.insert_many;
        let rows = rows_json(msgs);
        let queued_event = self.wanted_events().await?.wants(EventType::Queued);
        let _turn = self.write_turn().await;
        let out = with_pool_retrying!(self, |pool| {
            let mut tx = pool.begin_with(self.sql.begin_write).await?;
            let mut out = if self.sql.mysql.is_some() {
                insert_each!(self.sql, tx, msgs, now)
            } else {
                messages(
                    bound!(sqlx::query(&s.sql), s, [&rows, format_ts(now)])
                        .fetch_all(&mut *tx)
                        .await?,
                )?
            };
            out.sort_by_key(|m| m.id);
            if queued_event {
                let events: Vec<OutboxEvent> = out
                    .iter()
                    .map(|m| OutboxEvent::about(EventType::Queued, m.id))
                    .collect();
                fan_out!(self.sql, tx, events, now);
            }
            tx.commit().await?;
            out
        });
        if queued_event {
            self.outbound_wake.notify_one();
        }
        Ok(out)
    }

    /// Queue messages under an idempotency key, atomically: the first request
    /// with a key creates the messages; a repeat with the same request hash
    /// gets the same messages back; a different request with the key is refused.
    pub async fn enqueue_idempotent(
        &self,
        key: &str,
        request_hash: &str,
        msgs: &[NewMessage],
        now: DateTime<Utc>,
    ) -> Result<Idempotent> {
        enum Step {
            Created(Vec<Message>),
            Replay(Vec<i64>),
            Conflict,
        }
        let rows = rows_json(msgs);
        let sql = &self.sql;
        let queued_event = self.wanted_events().await?.wants(EventType::Queued);
        let step = {
            let _turn = self.write_turn().await;
            with_pool_retrying!(self, |pool| {
                let mut tx = pool.begin_with(self.sql.begin_write).await?;
                // Keys are kept for a day (as Stripe does): enough for any retry.
                let expired = format_ts(now - chrono::Duration::hours(IDEMPOTENCY_KEY_HOURS));
                bound!(sqlx::query(&sql.idem_expire.sql), sql.idem_expire, [expired])
                    .execute(&mut *tx)
                    .await?;
                // Concurrent requests with the same key wait here for the first
                // to commit (PostgreSQL's unique index; SQLite's write lock).
                let inserted = bound!(
                    sqlx::query(&sql.idem_insert.sql),
                    sql.idem_insert,
                    [key, request_hash, format_ts(now)]
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let step = if inserted == 1 {
                    let mut created = if sql.mysql.is_some() {
                        insert_each!(sql, tx, msgs, now)
                    } else {
                        messages(
                            bound!(
                                sqlx::query(&sql.insert_many.sql),
                                sql.insert_many,
                                [&rows, format_ts(now)]
                            )
                            .fetch_all(&mut *tx)
                            .await?,
                        )?
                    };
                    created.sort_by_key(|m| m.id);
                    if queued_event {
                        let events: Vec<OutboxEvent> = created
                            .iter()
                            .map(|m| OutboxEvent::about(EventType::Queued, m.id))
                            .collect();
                        fan_out!(sql, tx, events, now);
                    }
                    let ids: Vec<i64> = created.iter().map(|m| m.id).collect();
                    let ids = serde_json::to_string(&ids).expect("ids serialize");
                    bound!(sqlx::query(&sql.idem_set.sql), sql.idem_set, [key, ids])
                        .execute(&mut *tx)
                        .await?;
                    Step::Created(created)
                } else {
                    let (hash, ids): (String, String) = bound!(sqlx::query_as(&sql.idem_get.sql), sql.idem_get, [key])
                        .fetch_one(&mut *tx)
                        .await?;
                    if hash == request_hash {
                        Step::Replay(serde_json::from_str(&ids).unwrap_or_default())
                    } else {
                        Step::Conflict
                    }
                };
                tx.commit().await?;
                step
            })
        };
        Ok(match step {
            Step::Created(m) => Idempotent::Created(m),
            Step::Replay(ids) => Idempotent::Replayed(self.get_many(&ids).await?),
            Step::Conflict => Idempotent::Conflict,
        })
    }

    /// Lease up to `limit` due messages to `worker` until `lease_until`:
    /// pending messages whose time has come, and messages whose previous
    /// holder's lease ran out (its worker died). `attempts` is incremented
    /// here, so a message that kills its worker every time still runs out of
    /// retries.
    ///
    /// Only ids above `after_id` are looked at: a processor sweeping a long
    /// backlog passes the last id it claimed, so each claim starts where the
    /// previous one stopped instead of walking again over index entries of
    /// rows it has just finished (on PostgreSQL those stay in the index until
    /// vacuum). `filter` restricts the claim to one channel, or to rows whose
    /// channel is not one Herald knows (so that they can be failed).
    pub async fn claim(
        &self,
        filter: ClaimFilter,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        if filter == ClaimFilter::Any && self.sql.mysql.is_some() {
            // MySQL: the due index leads with the channel, so a claim of
            // every channel sorts what it reads, and InnoDB keeps every row
            // it read locked (others would skip them all). One channel at a
            // time reads the index in order and locks only what it takes.
            let mut out = Vec::new();
            for f in Channel::ALL
                .into_iter()
                .map(ClaimFilter::Channel)
                .chain([ClaimFilter::UnknownChannel])
            {
                let left = limit.saturating_sub(out.len() as u32);
                if left == 0 {
                    break;
                }
                out.extend(Box::pin(self.claim(f, worker, now, lease_until, left)).await?);
            }
            return Ok(out);
        }
        let mut tries = 0;
        loop {
            match self.claim_once(filter, worker, now, lease_until, limit).await {
                // MySQL: InnoDB broke a deadlock by rolling this claim back.
                Err(e) if is_lock_conflict(&e) && tries < LOCK_CONFLICT_RETRIES => tries += 1,
                r => return r,
            }
        }
    }

    async fn claim_once(
        &self,
        filter: ClaimFilter,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let s = match filter {
            ClaimFilter::Any => &self.sql.claim_any,
            ClaimFilter::Channel(_) => &self.sql.claim_channel,
            ClaimFilter::UnknownChannel => &self.sql.claim_unknown,
        };
        let channel = match filter {
            ClaimFilter::Channel(c) => Some(c.as_str()),
            _ => None,
        };
        let _turn = self.write_turn().await;
        // Only the channel claim has a fifth parameter (the statement's
        // order says so).
        macro_rules! query {
            () => {
                bound!(
                    sqlx::query(&s.sql),
                    s,
                    [
                        worker,
                        format_ts(now),
                        format_ts(lease_until),
                        i64::from(limit),
                        channel
                    ]
                )
            };
        }
        let mut claimed = match &self.backend {
            Backend::Sqlite { pool, .. } => messages(query!().fetch_all(pool).await?)?,
            Backend::Postgres { pool } => {
                // On a table just filled (a POS's bulk insert) PostgreSQL has
                // no statistics yet, guesses one due row, and sorts every
                // open row instead of reading the first few in due order
                // from `notification_messages_due` (45 ms instead of 10 ms
                // per claim of 1,000 at 100,000 open rows, spilling to disk).
                // Sorting is never the better plan for this statement. (The
                // cost that setting adds to the rare plan that must sort, the
                // claim of unknown channels, would otherwise start the JIT
                // compiler: 200 ms for an empty claim.)
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT set_config('enable_sort', 'off', true), set_config('jit', 'off', true)")
                    .execute(&mut *tx)
                    .await?;
                let rows = query!().fetch_all(&mut *tx).await?;
                tx.commit().await?;
                messages(rows)?
            }
            Backend::Mysql { pool } => {
                // In steps (no UPDATE … RETURNING, and no LIMIT in the
                // subquery of an UPDATE of the same table): lock the due
                // rows (SKIP LOCKED: other workers take others), lease
                // them, read them back; one short transaction.
                let m = self.sql.mysql.as_ref().expect("MySQL statements");
                let mut tx = pool.begin().await?;
                let ids: Vec<i64> = bound!(
                    sqlx::query_scalar(&s.sql),
                    s,
                    [
                        worker,
                        format_ts(now),
                        format_ts(lease_until),
                        i64::from(limit),
                        channel
                    ]
                )
                .fetch_all(&mut *tx)
                .await?;
                let rows = if ids.is_empty() {
                    Vec::new()
                } else {
                    let json = serde_json::to_string(&ids).expect("ids serialize");
                    let u = m.claim_update.with_ids(&ids);
                    bound!(
                        sqlx::query(&u.sql),
                        u,
                        [
                            worker,
                            format_ts(now),
                            format_ts(lease_until),
                            i64::from(limit),
                            channel
                        ]
                    )
                    .execute(&mut *tx)
                    .await?;
                    let g = &self.sql.get_many;
                    messages(bound!(sqlx::query(&g.sql), g, [json]).fetch_all(&mut *tx).await?)?
                };
                tx.commit().await?;
                rows
            }
        };
        claimed.sort_by_key(|m| m.id);
        Ok(claimed)
    }

    /// When the next open message becomes due (it may already be due).
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let s = &self.sql.next_due;
        let t: Option<Option<String>> =
            with_pool!(self, |pool| sqlx::query_scalar(&s.sql).fetch_optional(pool).await?);
        Ok(t.flatten().as_deref().and_then(parse_ts))
    }
}
