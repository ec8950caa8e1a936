//! Retention: deleting what is finished and old, in small batches that
//! never touch an open message and never wait for a row another
//! transaction holds (so the drain is never blocked).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::rows::{Attempt, Event, Message};
use super::{Result, Store};
use crate::clock::format_ts;

/// What a prune found (dry run) or deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneCounts {
    /// Finished messages (sent, failed, cancelled), with their attempts
    /// and receipts.
    pub messages: u64,
    /// Finished status-webhook deliveries, with their delivery log.
    pub webhook_deliveries: u64,
    /// Template versions that are not the newest and no open message uses.
    pub template_versions: u64,
    /// Idempotency keys past their day.
    pub idempotency_keys: u64,
}

/// A deleted message as the archive keeps it: the row as the API shows
/// it, every provider call, every receipt.
#[derive(Debug, Clone, Serialize)]
pub struct ArchivedMessage {
    #[serde(flatten)]
    pub message: Message,
    pub attempts: Vec<Attempt>,
    pub events: Vec<Event>,
}

impl Store {
    /// The cutoff as the retention statements take it (SQLite: its day).
    fn cutoff_param(&self, before: DateTime<Utc>) -> String {
        if self.sql.dialect == "sqlite" {
            before.format("%Y-%m-%d").to_string()
        } else {
            format_ts(before)
        }
    }

    /// What a prune would delete now (each kind counted).
    pub async fn prunable(&self, before: DateTime<Utc>, idempotency_before: DateTime<Utc>) -> Result<PruneCounts> {
        let r = &self.sql.retention;
        let cut = self.cutoff_param(before);
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let (before, keys_before) = (format_ts(before), format_ts(idempotency_before));
        let mut n = [0i64; 4];
        for (slot, (s, at)) in n.iter_mut().zip([
            (&r.count, &cut),
            (&r.count_deliveries, &before),
            (&r.count_templates, &before),
            (&r.count_idempotency, &keys_before),
        ]) {
            *slot = with_pool!(self, |pool| bound!(sqlx::query_scalar(&s.sql), s, [at])
                .fetch_one(pool)
                .await?);
        }
        let [m, d, t, i] = n;
        Ok(PruneCounts {
            messages: count(m),
            webhook_deliveries: count(d),
            template_versions: count(t),
            idempotency_keys: count(i),
        })
    }

    /// Up to `limit` finished messages created before `before`, oldest
    /// first (not locked: [`Store::delete_finished`] checks them again).
    pub async fn prune_candidates(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<i64>> {
        let r = &self.sql.retention;
        let cut = self.cutoff_param(before);
        let ids: Vec<i64> = with_pool!(self, |pool| bound!(
            sqlx::query_scalar(&r.candidates.sql),
            r.candidates,
            [cut, i64::from(limit)]
        )
        .fetch_all(pool)
        .await?);
        Ok(ids)
    }

    /// The messages `ids` with their attempts and receipts, for the archive.
    pub async fn archive_rows(&self, ids: &[i64]) -> Result<Vec<ArchivedMessage>> {
        let mut out = Vec::with_capacity(ids.len());
        for message in self.get_many(ids).await? {
            let attempts = self.attempts(message.id).await?;
            let events = self.events(message.id).await?;
            out.push(ArchivedMessage {
                message,
                attempts,
                events,
            });
        }
        Ok(out)
    }

    /// Delete those of `ids` that are still finished, with their attempts
    /// and receipts, in one transaction; rows another transaction holds
    /// (a receipt being applied, an operator's retry) are skipped. The ids
    /// deleted.
    pub async fn delete_finished(&self, ids: &[i64]) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let r = &self.sql.retention;
        let json = serde_json::to_string(ids).expect("ids serialize");
        let _turn = self.write_turn().await;
        let deleted: Vec<i64> = with_pool_retrying!(self, |pool| {
            let mut tx = pool.begin_with(self.sql.begin_write).await?;
            let lock = r.lock.with_ids(ids);
            let locked: Vec<i64> = bound!(sqlx::query_scalar(&lock.sql), lock, [&json])
                .fetch_all(&mut *tx)
                .await?;
            if !locked.is_empty() {
                let locked_json = serde_json::to_string(&locked).expect("ids serialize");
                for s in [&r.delete_attempts, &r.delete_events, &r.delete_messages] {
                    let s = s.with_ids(&locked);
                    bound!(sqlx::query(&s.sql), s, [&locked_json]).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            locked
        });
        Ok(deleted)
    }

    /// Delete up to `limit` finished webhook deliveries created before
    /// `before`, with their log; how many.
    pub async fn prune_deliveries(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        let s = &self.sql.retention.delete_deliveries;
        let _turn = self.write_turn().await;
        let n = with_pool_retrying!(self, |pool| bound!(
            sqlx::query(&s.sql),
            s,
            [format_ts(before), i64::from(limit)]
        )
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n)
    }

    /// Delete template versions created before `before` that are not the
    /// newest of their name and locale and no open message was made with.
    pub async fn prune_template_versions(&self, before: DateTime<Utc>) -> Result<u64> {
        let s = &self.sql.retention.delete_templates;
        let _turn = self.write_turn().await;
        let n = with_pool_retrying!(self, |pool| bound!(sqlx::query(&s.sql), s, [format_ts(before)])
            .execute(pool)
            .await?
            .rows_affected());
        Ok(n)
    }

    /// Delete idempotency keys created before `before`; how many.
    pub async fn prune_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64> {
        let s = &self.sql.idem_expire;
        let _turn = self.write_turn().await;
        let n = with_pool_retrying!(self, |pool| bound!(sqlx::query(&s.sql), s, [format_ts(before)])
            .execute(pool)
            .await?
            .rows_affected());
        Ok(n)
    }
}
