//! Token buckets shared by every worker on one PostgreSQL database
//! (`herald_rate_buckets`, migration 7): N workers together send no faster
//! than `SMS_RATE_LIMIT`. A worker takes a few tokens at a time, each with
//! the moment it may be used, so the bucket's row is touched once per claim,
//! not once per message. SQLite has one worker: its buckets stay in memory.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::backend::Backend;
use super::{Result, Store};
use crate::clock::format_ts;
use crate::ratelimit::ChannelLimits;

/// What a reservation got from the shared bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grant {
    /// Tokens in the bucket at `now`, after the refill and before this
    /// grant (negative: already promised ahead).
    pub tokens: f64,
    /// Tokens granted: the i-th (from 1) may be used `(i - tokens) / rate`
    /// seconds after `now` (at once when that is not positive).
    pub granted: u32,
}

const CREATE: &str = "INSERT INTO herald_rate_buckets (bucket, tokens, refilled_at)
     VALUES ($1, $2, $3::timestamptz) ON CONFLICT (bucket) DO NOTHING";

// The row lock (FOR UPDATE) serialises workers on one bucket; the refill
// runs on the reserving worker's clock, and never backwards.
const RESERVE: &str = "UPDATE herald_rate_buckets AS b
        SET tokens = r.t - r.g, refilled_at = greatest(b.refilled_at, $5::timestamptz)
       FROM (SELECT t, least($4::bigint, greatest(0, floor(t + $2::float8 * $6::float8)))::bigint AS g
               FROM (SELECT least($3::float8,
                                  tokens + $2::float8 * greatest(0, extract(epoch FROM ($5::timestamptz - refilled_at))))
                               AS t
                       FROM herald_rate_buckets WHERE bucket = $1 FOR UPDATE) AS x) AS r
      WHERE b.bucket = $1
  RETURNING r.t, r.g";

impl Store {
    /// Whether rate limits are kept in the database (PostgreSQL).
    pub fn shares_rate_limits(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    /// Reserve up to `want` tokens of bucket `bucket` (`limits.rate` per
    /// second, at most `limits.burst` saved up) usable within `horizon` of
    /// `now`. The bucket is created full. `None` on SQLite.
    pub async fn reserve_tokens(
        &self,
        bucket: &str,
        limits: ChannelLimits,
        want: u32,
        now: DateTime<Utc>,
        horizon: Duration,
    ) -> Result<Option<Grant>> {
        let (rate, burst, horizon_secs) = (limits.rate, limits.burst, horizon.as_secs_f64());
        let Backend::Postgres { pool } = &self.backend else {
            return Ok(None);
        };
        let reserve = || {
            sqlx::query_as::<_, (f64, i64)>(RESERVE)
                .bind(bucket)
                .bind(rate)
                .bind(f64::from(burst))
                .bind(i64::from(want))
                .bind(format_ts(now))
                .bind(horizon_secs)
        };
        let row = match reserve().fetch_optional(pool).await? {
            Some(row) => row,
            None => {
                sqlx::query(CREATE)
                    .bind(bucket)
                    .bind(f64::from(burst))
                    .bind(format_ts(now))
                    .execute(pool)
                    .await?;
                reserve().fetch_one(pool).await?
            }
        };
        Ok(Some(Grant {
            tokens: row.0,
            granted: u32::try_from(row.1.max(0)).unwrap_or(u32::MAX),
        }))
    }
}
