//! Dashboard sessions: the cookie holds a random token; only its SHA-256
//! is stored, with the session's CSRF token and expiry.

use chrono::{DateTime, Utc};

use super::{Result, Store};
use crate::clock::{format_ts, parse_ts};

/// A signed-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Start a session (and drop expired ones).
    pub async fn create_session(
        &self,
        token_hash: &str,
        csrf: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let (purge, insert) = (&self.sql.session_purge, &self.sql.session_insert);
        let _turn = self.write_turn().await;
        with_pool_retrying!(self, |pool| {
            bound!(sqlx::query(&purge.sql), purge, [format_ts(now)])
                .execute(pool)
                .await?;
            bound!(
                sqlx::query(&insert.sql),
                insert,
                [token_hash, csrf, format_ts(now), format_ts(expires_at)]
            )
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The session with this token hash, unless it expired.
    pub async fn session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<Option<Session>> {
        let s = &self.sql.session_get;
        let row: Option<(String, String)> = with_pool!(self, |pool| bound!(
            sqlx::query_as(&s.sql),
            s,
            [token_hash, format_ts(now)]
        )
        .fetch_optional(pool)
        .await?);
        Ok(row.and_then(|(csrf, exp)| parse_ts(&exp).map(|expires_at| Session { csrf, expires_at })))
    }

    /// End a session (sign-out).
    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        let s = &self.sql.session_delete;
        let _turn = self.write_turn().await;
        with_pool_retrying!(self, |pool| {
            bound!(sqlx::query(&s.sql), s, [token_hash]).execute(pool).await?;
        });
        Ok(())
    }
}
