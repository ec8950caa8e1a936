//! Recording what happened to claimed messages. Provider calls go into
//! Herald's own `notification_attempts` first, in a transaction of their
//! own; the message rows (the POS's table) are updated after. So if the
//! POS's table refuses the update, the attempt history still says which
//! messages were accepted, and a later claim records them instead of
//! sending them again.

use chrono::{DateTime, Utc};

use super::backend::{inserted_id, is_lock_conflict, InsertId, LOCK_CONFLICT_RETRIES};
use super::completion::{AttemptRecord, Completion};
use super::{Result, Store, StoreError};
use crate::clock::{format_ts, parse_ts};
use crate::domain::{AttemptOutcome, ErrorColumn, EventType, MessageStatus, SmsFallback};

/// A provider call, from the attempt history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastAttempt {
    pub message_id: i64,
    pub attempt: i32,
    pub provider: String,
    /// `None` for a word Herald does not write (another program's row).
    pub outcome: Option<AttemptOutcome>,
    pub provider_message_id: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl PastAttempt {
    /// The provider accepted the message on this call.
    pub fn accepted(&self) -> bool {
        matches!(self.outcome, Some(AttemptOutcome::Sent | AttemptOutcome::Reconciled))
    }
}

/// Run the `complete` statement (`$json`, the completions) in transaction
/// `$tx`: the ids it changed, those of `$ids` still leased
/// to `$worker`. MySQL cannot say which rows an `UPDATE` changed: the rows
/// still owned are selected and locked first.
macro_rules! complete {
    ($sql:expr, $tx:expr, $json:expr, $ids:expr, $now:expr, $worker:expr) => {
        async {
            let c = &$sql.complete;
            if let Some(m) = &$sql.mysql {
                let o = m.owned.with_ids($ids);
                let owned: Vec<i64> = bound!(sqlx::query_scalar(&o.sql), o, [0i64, $worker])
                    .fetch_all(&mut *$tx)
                    .await?;
                if !owned.is_empty() {
                    let c = c.with_ids(&owned);
                    bound!(sqlx::query(&c.sql), c, [$json, format_ts($now), $worker])
                        .execute(&mut *$tx)
                        .await?;
                }
                Ok::<Vec<i64>, sqlx::Error>(owned)
            } else {
                bound!(sqlx::query_scalar(&c.sql), c, [$json, format_ts($now), $worker])
                    .fetch_all(&mut *$tx)
                    .await
            }
        }
        .await
    };
}

impl Store {
    /// Record a batch: the outcomes and the provider calls (unless
    /// `attempts` is `None`: already written), in one transaction, with
    /// the SMS fallbacks of WhatsApp messages that failed (only for rows
    /// still leased to `worker`). The outcomes go first, behind a
    /// savepoint: if the message table refuses them, the attempts are
    /// still committed. (Outcomes first also takes the
    /// message rows' locks before the attempts' foreign keys do, the order
    /// receipts take them in, so the two never deadlock.) The answer says
    /// whether the history is written, and what became of the rows (the ids
    /// still leased to `worker`).
    pub async fn record_outcomes(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        completions: &[Completion],
        attempts: Option<&[AttemptRecord]>,
        fallbacks: &[SmsFallback],
    ) -> (bool, Result<Vec<i64>>) {
        let mut tries = 0;
        loop {
            match self
                .record_outcomes_once(worker, now, completions, attempts, fallbacks)
                .await
            {
                // MySQL: InnoDB rolled the whole transaction back to break a
                // deadlock; nothing of it was written.
                (false, Err(e)) if is_lock_conflict(&e) && tries < LOCK_CONFLICT_RETRIES => tries += 1,
                r => return r,
            }
        }
    }

    async fn record_outcomes_once(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        completions: &[Completion],
        attempts: Option<&[AttemptRecord]>,
        fallbacks: &[SmsFallback],
    ) -> (bool, Result<Vec<i64>>) {
        let attempts = attempts.filter(|a| !a.is_empty());
        let a = &self.sql.insert_attempts;
        let completions_json = serde_json::to_string(completions).expect("completions serialize");
        let attempts_json = attempts.map(|a| serde_json::to_string(a).expect("attempts serialize"));
        let ids: Vec<i64> = completions.iter().map(|c| c.id).collect();
        // Status webhooks: the messages that became sent or failed, read
        // back in the transaction, if an endpoint wants such events.
        let wanted = match self.wanted_events().await {
            Ok(w) => w,
            Err(e) => return (false, Err(e)),
        };
        let wants_outcomes = [
            EventType::Sent,
            EventType::Failed,
            EventType::Fallback,
            EventType::Suppressed,
        ]
        .into_iter()
        .any(|t| wanted.wants(t));
        let finished = wants_outcomes
            && completions
                .iter()
                .any(|c| matches!(c.status, MessageStatus::Sent | MessageStatus::Failed));
        let _turn = self.write_turn().await;
        let result: Result<(bool, Result<Vec<i64>>)> = with_pool!(self, |pool| async {
            use sqlx::Acquire;
            let mut tx = pool.begin_with(self.sql.begin_write).await?;
            let rows = if completions.is_empty() {
                Ok(Vec::new())
            } else {
                let mut sp = (&mut tx).begin().await?;
                let rows = complete!(self.sql, sp, completions_json.as_str(), &ids, now, worker);
                let rows = match rows {
                    Ok(ids) => {
                        let r: std::result::Result<(), StoreError> = async {
                            let mut fell_back = Vec::new();
                            for f in fallbacks.iter().filter(|f| ids.contains(&f.original)) {
                                if queue_fallback!(self.sql, sp, f, now).is_some() {
                                    fell_back.push(f.original);
                                }
                            }
                            if wants_outcomes {
                                let events = super::webhooks::outcome_events(completions, &ids, &fell_back, &wanted);
                                fan_out!(self.sql, sp, events, now);
                            }
                            Ok(())
                        }
                        .await;
                        r.map(|()| ids)
                    }
                    Err(e) => Err(StoreError::from(e)),
                };
                match rows {
                    Ok(ids) => {
                        sp.commit().await?;
                        Ok(ids)
                    }
                    Err(e) => {
                        sp.rollback().await?;
                        Err(e)
                    }
                }
            };
            if let Some(json) = &attempts_json {
                bound!(sqlx::query(&a.sql), a, [json.as_str(), worker])
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok((true, rows))
        }
        .await);
        if finished {
            self.outbound_wake.notify_one();
        }
        match result {
            Ok(r) => r,
            Err(e) => (false, Err(e)),
        }
    }

    /// The provider calls of these messages, oldest first.
    pub async fn attempt_history(&self, ids: &[i64]) -> Result<Vec<PastAttempt>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let s = &self.sql.attempt_history;
        let json = serde_json::to_string(ids).expect("ids serialize");
        type Row = (i64, i32, String, String, Option<String>, Option<String>);
        let rows: Vec<Row> = with_pool!(self, |pool| bound!(sqlx::query_as(&s.sql), s, [json])
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .map(
                |(message_id, attempt, provider, outcome, provider_message_id, at)| PastAttempt {
                    message_id,
                    attempt,
                    provider,
                    outcome: AttemptOutcome::parse(&outcome),
                    provider_message_id,
                    finished_at: at.as_deref().and_then(parse_ts),
                },
            )
            .collect())
    }

    /// Which of `ids` (provider ids from `provider`) another message than
    /// `message_id` already holds.
    pub async fn provider_ids_owned_elsewhere(
        &self,
        provider: &str,
        ids: &[String],
        message_id: i64,
    ) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let s = &self.sql.owned_provider_ids;
        let json = serde_json::to_string(ids).expect("ids serialize");
        let owned: Vec<String> = with_pool!(self, |pool| bound!(
            sqlx::query_scalar(&s.sql),
            s,
            [json, provider, message_id]
        )
        .fetch_all(pool)
        .await?);
        Ok(owned)
    }

    /// Add provider calls to the attempt history (calls whose outcome no
    /// worker recorded, found when their message is claimed again).
    pub async fn add_attempts(&self, worker: &str, attempts: &[AttemptRecord]) -> Result<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let a = &self.sql.insert_attempts;
        let json = serde_json::to_string(attempts).expect("attempts serialize");
        let _turn = self.write_turn().await;
        with_pool!(self, |pool| {
            bound!(sqlx::query(&a.sql), a, [json.as_str(), worker])
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Prove that outcomes can be written to this table before anything is
    /// sent: in a transaction that is rolled back, lease a message (the
    /// newest, or a probe row if the table is empty), record it as failed
    /// with an `error` and as sent, and add an attempt. Whatever the POS's
    /// table does (column types, constraints, triggers) is exercised.
    pub async fn self_check(&self, worker: &str, now: DateTime<Utc>) -> Result<()> {
        let mut tries = 0;
        loop {
            match self.self_check_once(worker, now).await {
                Err(e) if is_lock_conflict(&e) && tries < LOCK_CONFLICT_RETRIES => tries += 1,
                r => return r,
            }
        }
    }

    async fn self_check_once(&self, worker: &str, now: DateTime<Utc>) -> Result<()> {
        let sql = &self.sql;
        let lease_until = format_ts(now + chrono::Duration::minutes(1));
        let mut error = ErrorColumn::unsent("self_check", "Herald's start-up check (rolled back)", 0, now);
        error.provider = Some("herald".into());
        let failed = Completion::attempt_failed(0, "herald", Some("self-check".into()), error.to_json(), None, true);
        let sent = Completion::sent(0, "herald", Some("self-check".into()), now);
        let _turn = self.write_turn().await;
        with_pool!(self, |pool| {
            let mut tx = pool.begin_with(self.sql.begin_write).await?;
            let newest: Option<i64> = sqlx::query_scalar(&sql.max_id.sql).fetch_one(&mut *tx).await?;
            let id = match newest {
                Some(id) => id,
                None => {
                    let s = &sql.insert;
                    let q = bound!(
                        sqlx::query(&s.sql),
                        s,
                        [
                            "sms",
                            "+10000000000",
                            None::<String>,
                            Some("Herald's start-up check (rolled back)"),
                            None::<String>,
                            None::<String>,
                            None::<String>,
                            format_ts(now),
                            None::<String>,
                            None::<String>,
                            None::<String>,
                            None::<i32>,
                            None::<String>,
                        ]
                    );
                    if sql.mysql.is_some() {
                        inserted_id(q.execute(&mut *tx).await?.insert_id())?
                    } else {
                        use sqlx::Row;
                        q.fetch_one(&mut *tx).await?.try_get::<i64, _>("id")?
                    }
                }
            };
            for completion in [failed, sent] {
                let lease = &sql.probe_lease;
                bound!(sqlx::query(&lease.sql), lease, [worker, lease_until.as_str(), id])
                    .execute(&mut *tx)
                    .await?;
                let mut c = completion;
                c.id = id;
                let json = serde_json::to_string(&[c]).expect("completion serializes");
                let done = complete!(sql, tx, json.as_str(), &[id], now, worker)?;
                if done != [id] {
                    return Err(StoreError::CannotRecord(format!(
                        "recording an outcome for message {id} changed {} rows instead of 1",
                        done.len()
                    )));
                }
            }
            let attempt = AttemptRecord {
                message_id: id,
                attempt: 1,
                started_at: now,
                finished_at: now,
                provider: "herald".into(),
                outcome: AttemptOutcome::Sent,
                error: None,
                provider_message_id: Some("self-check".into()),
            };
            let a = &sql.insert_attempts;
            bound!(
                sqlx::query(&a.sql),
                a,
                [serde_json::to_string(&[attempt]).expect("attempt serializes"), worker]
            )
            .execute(&mut *tx)
            .await?;
            tx.rollback().await?;
        });
        Ok(())
    }
}
