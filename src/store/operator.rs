//! What operators look at and pull on: one message, a filtered list, the
//! attempt history, retry, cancel and counts.

use chrono::{DateTime, Utc};

use super::rows::{messages, Attempt, Count, Message, MessageRow};
use super::{Result, Store, StoreError};
use crate::clock::{format_ts, parse_ts};
use crate::domain::{Channel, MessageStatus};

/// Above this many rows (the database's estimate), `sent` is estimated
/// rather than counted by [`Store::counts`].
pub const EXACT_COUNT_ROWS: i64 = 300_000;

/// Filters for listing messages, newest first.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<MessageStatus>,
    pub channel: Option<Channel>,
    pub recipient: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    /// Cursor: only ids below this one.
    pub before_id: Option<i64>,
    pub limit: u32,
    /// Only messages scheduled (`send_at`) after this time: pass "now" to
    /// list what is still waiting for its time.
    pub scheduled_after: Option<DateTime<Utc>>,
    /// Only messages made from this template.
    pub template: Option<String>,
    /// Only messages whose metadata has this key with this value (a string
    /// as it is; a number or boolean as JSON writes it).
    pub metadata: Option<(String, String)>,
}

/// The longest metadata key or value the metadata index holds.
pub const METADATA_MAX_CHARS: usize = 200;

/// A metadata filter (key, value) as [`ListFilter::metadata`] takes it;
/// the error names the field (`metadata_key`, `metadata_value`).
pub fn metadata_filter(key: &str, value: &str) -> std::result::Result<(String, String), (&'static str, String)> {
    let key = key.trim();
    if key.is_empty() {
        return Err(("metadata_key", "metadata_key must not be empty".into()));
    }
    if key.chars().count() > METADATA_MAX_CHARS {
        return Err((
            "metadata_key",
            format!("metadata_key is longer than {METADATA_MAX_CHARS} characters (longer keys are not indexed)"),
        ));
    }
    if value.chars().count() > METADATA_MAX_CHARS {
        return Err((
            "metadata_value",
            format!("metadata_value is longer than {METADATA_MAX_CHARS} characters (longer values are not indexed)"),
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Which messages a retry takes.
enum RetryScope {
    /// These.
    Ids(Vec<i64>),
    /// Every failed message.
    Failed,
    /// Every parked message.
    Parked,
}

impl Store {
    pub async fn get(&self, id: i64) -> Result<Message> {
        let s = &self.sql.get;
        let found = with_pool!(self, |pool| {
            match bound!(sqlx::query(&s.sql), s, [id]).fetch_optional(pool).await? {
                Some(row) => Some(row.message()?),
                None => None,
            }
        });
        found.ok_or(StoreError::NotFound(id))
    }

    /// Messages by id, in id order (missing ids are skipped).
    pub async fn get_many(&self, ids: &[i64]) -> Result<Vec<Message>> {
        let s = &self.sql.get_many;
        let ids_json = serde_json::to_string(ids).expect("ids serialize");
        let mut rows = with_pool!(self, |pool| messages(
            bound!(sqlx::query(&s.sql), s, [ids_json]).fetch_all(pool).await?
        )?);
        rows.sort_by_key(|m| m.id);
        Ok(rows)
    }

    /// Newest first; within a creation range, newest created first (read
    /// from the `created_at` index); with a metadata filter, newest first by
    /// id (read from the metadata index, whatever the other filters).
    pub async fn list(&self, f: &ListFilter) -> Result<Vec<Message>> {
        // One filter alone: a statement of its own, which every database
        // answers from that filter's index.
        if let ListFilter {
            created_from: None,
            created_to: None,
            scheduled_after: None,
            metadata: None,
            ..
        } = f
        {
            let sql = &self.sql;
            let one = match (f.status, f.channel, f.recipient.as_deref(), f.template.as_deref()) {
                (Some(st), None, None, None) => sql
                    .list_status
                    .iter()
                    .find(|(s, _)| *s == st.as_str())
                    .map(|(_, s)| (s, String::new())),
                (None, Some(c), None, None) => Some((&sql.list_channel, c.as_str().to_owned())),
                (None, None, Some(r), None) => Some((&sql.list_recipient, r.to_owned())),
                (None, None, None, Some(t)) => Some((&sql.list_template, t.to_owned())),
                _ => None,
            };
            if let Some((s, value)) = one {
                let rows = with_pool!(self, |pool| messages(
                    bound!(
                        sqlx::query(&s.sql),
                        s,
                        [value.as_str(), f.before_id, i64::from(f.limit)]
                    )
                    .fetch_all(pool)
                    .await?
                )?);
                return Ok(rows);
            }
        }
        let dated = f.created_from.is_some() || f.created_to.is_some();
        let (s, from, to) = if f.metadata.is_some() {
            (&self.sql.list_meta, f.created_from, f.created_to)
        } else if dated {
            (
                &self.sql.list_dated,
                Some(f.created_from.unwrap_or_else(crate::domain::earliest_instant)),
                Some(f.created_to.unwrap_or_else(crate::domain::latest_instant)),
            )
        } else {
            (&self.sql.list, None, None)
        };
        let rows = with_pool!(self, |pool| messages(
            bound!(
                sqlx::query(&s.sql),
                s,
                [
                    f.status.map(|s| s.as_str()),
                    f.channel.map(|c| c.as_str()),
                    f.recipient.as_deref(),
                    from.map(format_ts),
                    to.map(format_ts),
                    f.before_id,
                    i64::from(f.limit),
                    f.scheduled_after.map(format_ts),
                    f.template.as_deref(),
                    f.metadata.as_ref().map(|(k, _)| k.as_str()),
                    f.metadata.as_ref().map(|(_, v)| v.as_str()),
                ]
            )
            .fetch_all(pool)
            .await?
        )?);
        Ok(rows)
    }

    /// Every provider call made for message `id`, oldest first.
    pub async fn attempts(&self, id: i64) -> Result<Vec<Attempt>> {
        let s = &self.sql.attempts;
        let rows = with_pool!(self, |pool| bound!(sqlx::query(&s.sql), s, [id])
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.attempt())
            .collect::<std::result::Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// Put failed messages back in the queue, with a fresh round of retries,
    /// and make parked ones (pending, waiting for a retry delay or a
    /// provider's pause) due now. Returns the ids that changed.
    pub async fn retry(&self, ids: &[i64], now: DateTime<Utc>) -> Result<Vec<i64>> {
        self.retry_where(RetryScope::Ids(ids.to_vec()), now).await
    }

    /// Run one of the retry statements, returning the ids it changed, in
    /// order. MySQL has no `UPDATE … RETURNING`: the rows are selected and
    /// locked first, then updated by id, in one transaction.
    async fn retry_where(&self, scope: RetryScope, now: DateTime<Utc>) -> Result<Vec<i64>> {
        let sql = &self.sql;
        let _turn = self.write_turn().await;
        let mut done: Vec<i64> = with_pool_retrying!(self, |pool| {
            if let Some(m) = &sql.mysql {
                let mut tx = pool.begin().await?;
                let (s, args): (_, Vec<String>) = match &scope {
                    RetryScope::Ids(ids) => (m.retry_ids_select.with_ids(ids), vec![]),
                    RetryScope::Failed => (m.retry_failed_select.clone(), vec![]),
                    RetryScope::Parked => (m.retry_parked_select.clone(), vec![format_ts(now)]),
                };
                let mut q = sqlx::query_scalar(&s.sql);
                for &i in &s.order {
                    q = q.bind(args[i].clone());
                }
                let ids: Vec<i64> = q.fetch_all(&mut *tx).await?;
                if !ids.is_empty() {
                    let u = m.retry_update.with_ids(&ids);
                    bound!(sqlx::query(&u.sql), u, [0i64, format_ts(now)])
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                ids
            } else {
                let (s, args): (_, Vec<String>) = match &scope {
                    RetryScope::Ids(ids) => (
                        &sql.retry_ids,
                        vec![serde_json::to_string(ids).expect("ids serialize"), format_ts(now)],
                    ),
                    RetryScope::Failed => (&sql.retry_failed, vec![format_ts(now)]),
                    RetryScope::Parked => (&sql.retry_parked, vec![format_ts(now)]),
                };
                let mut q = sqlx::query_scalar(&s.sql);
                for &i in &s.order {
                    q = q.bind(args[i].clone());
                }
                q.fetch_all(pool).await?
            }
        });
        done.sort_unstable();
        Ok(done)
    }

    /// Run `retry_one` or `cancel` (`s`, with `$1` id and `$2` now): the
    /// message as changed, or `None` when its status did not allow it.
    async fn change_one(&self, s: &super::sql::Statement, id: i64, now: DateTime<Utc>) -> Result<Option<Message>> {
        let changed = {
            let _turn = self.write_turn().await;
            with_pool_retrying!(self, |pool| {
                if self.sql.mysql.is_some() {
                    let n = bound!(sqlx::query(&s.sql), s, [id, format_ts(now)])
                        .execute(pool)
                        .await?
                        .rows_affected();
                    (n == 1).then_some(None)
                } else {
                    match bound!(sqlx::query(&s.sql), s, [id, format_ts(now)])
                        .fetch_optional(pool)
                        .await?
                    {
                        Some(row) => Some(Some(row.message()?)),
                        None => None,
                    }
                }
            })
        };
        match changed {
            Some(Some(m)) => Ok(Some(m)),
            // Changed on MySQL: read it back.
            Some(None) => Ok(Some(self.get(id).await?)),
            None => Ok(None),
        }
    }

    /// Put one failed message back in the queue (a fresh round of retries),
    /// or make a parked one due now; returns it as it was put back (a
    /// processor may pick it up at once), or explains why not.
    pub async fn retry_one(&self, id: i64, now: DateTime<Utc>) -> Result<Message> {
        match self.change_one(&self.sql.retry_one, id, now).await? {
            Some(m) => Ok(m),
            None => Err(self.wrong_status(id, "failed or parked", "retried").await),
        }
    }

    /// Put every failed message back in the queue.
    pub async fn retry_all_failed(&self, now: DateTime<Utc>) -> Result<Vec<i64>> {
        self.retry_where(RetryScope::Failed, now).await
    }

    /// Make every parked message (pending, waiting for a retry delay or a
    /// provider's pause) due now; their ids.
    pub async fn retry_parked(&self, now: DateTime<Utc>) -> Result<Vec<i64>> {
        self.retry_where(RetryScope::Parked, now).await
    }

    /// Cancel a pending (or scheduled) message.
    pub async fn cancel(&self, id: i64, now: DateTime<Utc>) -> Result<Message> {
        match self.change_one(&self.sql.cancel, id, now).await? {
            Some(m) => Ok(m),
            None => Err(self.wrong_status(id, "pending", "cancelled").await),
        }
    }

    /// Explain why a state change did not apply.
    async fn wrong_status(&self, id: i64, allowed: &'static str, action: &'static str) -> StoreError {
        let s = &self.sql.status_of;
        let status: std::result::Result<Option<String>, sqlx::Error> =
            with_pool!(self, |pool| bound!(sqlx::query_scalar(&s.sql), s, [id])
                .fetch_optional(pool)
                .await);
        match status {
            Ok(Some(status)) => StoreError::WrongStatus {
                id,
                status,
                allowed,
                action,
            },
            Ok(None) => StoreError::NotFound(id),
            Err(e) => StoreError::Database(e),
        }
    }

    /// Open messages (pending, processing) by status and channel.
    pub async fn open_counts(&self) -> Result<Vec<Count>> {
        let s = &self.sql.open_counts;
        let rows: Vec<(String, String, i64)> = with_pool!(self, |pool| sqlx::query_as(&s.sql).fetch_all(pool).await?);
        let mut counts: Vec<Count> = rows
            .into_iter()
            .map(|(status, channel, count)| Count {
                status,
                channel,
                count,
                estimated: false,
            })
            .collect();
        counts.sort_by(|a, b| (&a.status, &a.channel).cmp(&(&b.status, &b.channel)));
        Ok(counts)
    }

    /// The latest failed provider call of each provider: (provider, error
    /// JSON, when), from the newest 200 failures.
    pub async fn recent_failures(&self) -> Result<Vec<(String, Option<serde_json::Value>, Option<DateTime<Utc>>)>> {
        let s = &self.sql.recent_failures;
        let rows: Vec<(String, Option<String>, Option<String>)> =
            with_pool!(self, |pool| sqlx::query_as(&s.sql).fetch_all(pool).await?);
        let mut seen = std::collections::HashSet::new();
        Ok(rows
            .into_iter()
            .filter(|(p, _, _)| seen.insert(p.clone()))
            .map(|(p, e, at)| {
                (
                    p,
                    e.and_then(|e| serde_json::from_str(&e).ok()),
                    at.as_deref().and_then(crate::clock::parse_ts),
                )
            })
            .collect())
    }

    /// Message counts by status and channel, fast at any size: every
    /// status but `sent` is counted exactly (open rows from the due index,
    /// finished ones from the status index);
    /// `sent` too while the table has at most [`EXACT_COUNT_ROWS`] rows,
    /// above that it is the database's estimate of the table's rows minus
    /// the others (one [`Count`] with channel `all`, `estimated`).
    pub async fn counts(&self) -> Result<Vec<Count>> {
        let rows = self.table_rows_estimate().await?;
        if rows <= EXACT_COUNT_ROWS {
            return self.counts_exact().await;
        }
        let mut counts = self.open_counts().await?;
        counts.extend(self.count_rows(&self.sql.counts_unsent).await?);
        let unsent: i64 = counts.iter().map(|c| c.count).sum();
        counts.push(Count {
            status: "sent".to_owned(),
            channel: "all".to_owned(),
            count: (rows - unsent).max(0),
            estimated: true,
        });
        counts.sort_by(|a, b| (&a.status, &a.channel).cmp(&(&b.status, &b.channel)));
        Ok(counts)
    }

    /// Message counts by status and channel, every row counted (a scan of
    /// the table: seconds at tens of millions of rows).
    pub async fn counts_exact(&self) -> Result<Vec<Count>> {
        self.count_rows(&self.sql.counts).await
    }

    async fn count_rows(&self, s: &super::sql::Statement) -> Result<Vec<Count>> {
        let rows: Vec<(String, String, i64)> = with_pool!(self, |pool| sqlx::query_as(&s.sql).fetch_all(pool).await?);
        let mut counts: Vec<Count> = rows
            .into_iter()
            .map(|(status, channel, count)| Count {
                status,
                channel,
                count,
                estimated: false,
            })
            .collect();
        counts.sort_by(|a, b| (&a.status, &a.channel).cmp(&(&b.status, &b.channel)));
        Ok(counts)
    }

    /// The database's estimate of the table's rows (PostgreSQL and MySQL:
    /// their statistics; SQLite: the id range).
    pub async fn table_rows_estimate(&self) -> Result<i64> {
        let s = &self.sql.rows_estimate;
        let n: Option<i64> = with_pool!(self, |pool| sqlx::query_scalar(&s.sql).fetch_one(pool).await?);
        Ok(n.unwrap_or(0).max(0))
    }

    /// Creation time of the oldest message that is due and still pending.
    pub async fn oldest_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let s = &self.sql.oldest_due;
        let t: Option<String> = with_pool!(self, |pool| bound!(sqlx::query_scalar(&s.sql), s, [format_ts(now)])
            .fetch_one(pool)
            .await?);
        Ok(t.as_deref().and_then(parse_ts))
    }
}
