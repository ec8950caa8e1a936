//! Alerting's tables: stored rules, each condition's state, the history,
//! and the lease that makes one worker the evaluator.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Result, Store};
use crate::clock::{format_ts, parse_ts};

/// A condition's last known state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertState {
    pub key: String,
    pub firing: bool,
    pub since: Option<DateTime<Utc>>,
    pub last_change: Option<DateTime<Utc>>,
    /// JSON: the summary, and when operators were last told.
    pub detail: Option<String>,
}

/// Something that happened to an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AlertEvent {
    pub id: i64,
    /// The condition's key (`rule/channel=sms`).
    pub rule_id: String,
    /// `fired` or `resolved`.
    pub kind: String,
    pub at: Option<DateTime<Utc>>,
    pub summary: String,
    /// The condition and its numbers, JSON.
    pub detail: String,
    /// Where it was sent and how that went, JSON.
    pub deliveries: String,
}

impl Store {
    /// Take or keep the lease `name` until `until`; true if `owner` holds it.
    pub async fn take_lease(&self, name: &str, owner: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool> {
        let s = &self.sql.lease_take;
        let _turn = self.write_turn().await;
        let holder: Option<String> = with_pool_retrying!(self, |pool| {
            let q = bound!(
                sqlx::query_scalar(&s.sql),
                s,
                [name, owner, format_ts(until), format_ts(now)]
            );
            if let Some(m) = &self.sql.mysql {
                // No RETURNING: read the holder back in the same transaction.
                let mut tx = pool.begin().await?;
                let _: Option<String> = q.fetch_optional(&mut *tx).await?;
                let o = &m.lease_owner;
                let holder = bound!(sqlx::query_scalar(&o.sql), o, [name])
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                holder
            } else {
                q.fetch_optional(pool).await?
            }
        });
        Ok(holder.as_deref() == Some(owner))
    }

    /// Rules added in the dashboard or API: (id, rule JSON).
    pub async fn alert_rules(&self) -> Result<Vec<(String, String)>> {
        let s = &self.sql.alert_rules;
        let rows: Vec<(String, String)> = with_pool!(self, |pool| sqlx::query_as(&s.sql).fetch_all(pool).await?);
        Ok(rows)
    }

    /// Add a rule; false if one with this id exists.
    pub async fn add_alert_rule(&self, id: &str, rule_json: &str, now: DateTime<Utc>) -> Result<bool> {
        let s = &self.sql.alert_rule_insert;
        let _turn = self.write_turn().await;
        let n = with_pool_retrying!(self, |pool| bound!(
            sqlx::query(&s.sql),
            s,
            [id, rule_json, format_ts(now)]
        )
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Remove a stored rule (and its conditions' states); false if none.
    pub async fn delete_alert_rule(&self, id: &str) -> Result<bool> {
        let (s, st) = (&self.sql.alert_rule_delete, &self.sql.alert_state_delete_rule);
        let _turn = self.write_turn().await;
        let n = with_pool_retrying!(self, |pool| {
            let n = bound!(sqlx::query(&s.sql), s, [id])
                .execute(pool)
                .await?
                .rows_affected();
            bound!(sqlx::query(&st.sql), st, [id]).execute(pool).await?;
            n
        });
        Ok(n == 1)
    }

    pub async fn alert_states(&self) -> Result<Vec<AlertState>> {
        let s = &self.sql.alert_states;
        type Row = (String, bool, Option<String>, Option<String>, Option<String>);
        let rows: Vec<Row> = with_pool!(self, |pool| sqlx::query_as(&s.sql).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(|(key, firing, since, last, detail)| AlertState {
                key,
                firing,
                since: since.as_deref().and_then(parse_ts),
                last_change: last.as_deref().and_then(parse_ts),
                detail,
            })
            .collect())
    }

    pub async fn set_alert_state(&self, state: &AlertState, now: DateTime<Utc>) -> Result<()> {
        let s = &self.sql.alert_state_upsert;
        let _turn = self.write_turn().await;
        with_pool_retrying!(self, |pool| {
            bound!(
                sqlx::query(&s.sql),
                s,
                [
                    state.key.as_str(),
                    state.firing,
                    state.since.map(format_ts),
                    format_ts(state.last_change.unwrap_or(now)),
                    state.detail.as_deref(),
                ]
            )
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn add_alert_event(
        &self,
        key: &str,
        kind: &str,
        at: DateTime<Utc>,
        summary: &str,
        detail: &str,
        deliveries: &str,
    ) -> Result<()> {
        let s = &self.sql.alert_event_insert;
        let _turn = self.write_turn().await;
        with_pool_retrying!(self, |pool| {
            bound!(
                sqlx::query(&s.sql),
                s,
                [key, kind, format_ts(at), summary, detail, deliveries]
            )
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The newest alert events.
    pub async fn alert_events(&self, limit: i64) -> Result<Vec<AlertEvent>> {
        let s = &self.sql.alert_events;
        type Row = (i64, String, String, Option<String>, String, String, String);
        let rows: Vec<Row> = with_pool!(self, |pool| bound!(sqlx::query_as(&s.sql), s, [limit])
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .map(|(id, rule_id, kind, at, summary, detail, deliveries)| AlertEvent {
                id,
                rule_id,
                kind,
                at: at.as_deref().and_then(parse_ts),
                summary,
                detail,
                deliveries,
            })
            .collect())
    }
}
