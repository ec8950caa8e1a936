//! The suppression list: recipients who must not be messaged on a channel.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::rows::{MessageRow, Suppression};
use super::{Result, Store};
use crate::clock::format_ts;
use crate::domain::{Channel, Recipient};

impl Store {
    /// Add a recipient to a channel's suppression list (kept if already
    /// there). True if it was added.
    pub async fn suppress(
        &self,
        recipient: &Recipient,
        reason: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let s = &self.sql.suppress;
        let _turn = self.write_turn().await;
        let n = with_pool_retrying!(self, |pool| bound!(
            sqlx::query(&s.sql),
            s,
            [
                recipient.channel().as_str(),
                recipient.to_string(),
                reason,
                source,
                format_ts(now)
            ]
        )
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Remove a suppression (the customer opted back in). False if there was none.
    pub async fn unsuppress(&self, recipient: &Recipient) -> Result<bool> {
        let s = &self.sql.unsuppress;
        let _turn = self.write_turn().await;
        let n = with_pool_retrying!(self, |pool| bound!(
            sqlx::query(&s.sql),
            s,
            [recipient.channel().as_str(), recipient.to_string()]
        )
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Suppressed recipients (on one channel or all), newest first.
    pub async fn suppressions(&self, channel: Option<Channel>, limit: u32) -> Result<Vec<Suppression>> {
        let s = &self.sql.suppressions;
        let rows = with_pool!(self, |pool| bound!(
            sqlx::query(&s.sql),
            s,
            [channel.map(|c| c.as_str()), i64::from(limit)]
        )
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.suppression())
        .collect::<std::result::Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// Which of these recipients are suppressed on their channel, with the
    /// reason. Keys are `(channel, normalised recipient)`.
    pub async fn suppressed_among(&self, recipients: &[&Recipient]) -> Result<HashMap<(Channel, String), String>> {
        if recipients.is_empty() {
            return Ok(HashMap::new());
        }
        let s = &self.sql.suppressed_among;
        let wanted: Vec<(Channel, String)> = recipients.iter().map(|r| (r.channel(), r.to_string())).collect();
        let texts: Vec<&str> = wanted.iter().map(|(_, r)| r.as_str()).collect();
        let json = serde_json::to_string(&texts).expect("recipients serialize");
        let rows: Vec<(String, String, String)> = with_pool!(self, |pool| bound!(sqlx::query_as(&s.sql), s, [json])
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .filter_map(|(c, r, reason)| {
                let c = Channel::parse(&c).ok()?;
                wanted.contains(&(c, r.clone())).then_some(((c, r), reason))
            })
            .collect())
    }
}
