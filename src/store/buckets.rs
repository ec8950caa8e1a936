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
    /// Whether rate limits are kept in the database (PostgreSQL, MySQL).
    pub fn shares_rate_limits(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. } | Backend::Mysql { .. })
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
        let pool = match &self.backend {
            Backend::Postgres { pool } => pool,
            Backend::Mysql { pool } => {
                return self
                    .reserve_tokens_mysql(pool, bucket, limits, want, now, horizon)
                    .await
                    .map(Some)
            }
            Backend::Sqlite { .. } => return Ok(None),
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

    /// [`Store::reserve_tokens`] on MySQL: the same arithmetic, done here
    /// between reading the locked row and writing it back.
    async fn reserve_tokens_mysql(
        &self,
        pool: &sqlx::MySqlPool,
        bucket: &str,
        limits: ChannelLimits,
        want: u32,
        now: DateTime<Utc>,
        horizon: Duration,
    ) -> Result<Grant> {
        let (rate, burst) = (limits.rate, f64::from(limits.burst));
        let mut tx = pool.begin().await?;
        let read = || {
            sqlx::query_as::<_, (f64, DateTime<Utc>)>(
                "SELECT tokens, refilled_at FROM herald_rate_buckets WHERE bucket = ? FOR UPDATE",
            )
            .bind(bucket)
        };
        let (tokens, refilled_at) = match read().fetch_optional(&mut *tx).await? {
            Some(row) => row,
            None => {
                // Created full; a worker that raced to create it first wins.
                sqlx::query("INSERT IGNORE INTO herald_rate_buckets (bucket, tokens, refilled_at) VALUES (?, ?, ?)")
                    .bind(bucket)
                    .bind(burst)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                read().fetch_one(&mut *tx).await?
            }
        };
        let grant = refill_and_take(tokens, refilled_at, rate, burst, want, now, horizon);
        sqlx::query("UPDATE herald_rate_buckets SET tokens = ?, refilled_at = ? WHERE bucket = ?")
            .bind(grant.tokens - f64::from(grant.granted))
            .bind(refilled_at.max(now))
            .bind(bucket)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(grant)
    }
}

/// The reservation arithmetic (as PostgreSQL's statement does it): refill
/// `tokens` at `rate` per second since `refilled_at` (never backwards), up
/// to `burst`; grant up to `want` tokens usable within `horizon` of `now`.
fn refill_and_take(
    tokens: f64,
    refilled_at: DateTime<Utc>,
    rate: f64,
    burst: f64,
    want: u32,
    now: DateTime<Utc>,
    horizon: Duration,
) -> Grant {
    let elapsed = ((now - refilled_at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6).max(0.0);
    let t = burst.min(tokens + rate * elapsed);
    let g = (t + rate * horizon.as_secs_f64()).floor().max(0.0).min(f64::from(want));
    Grant {
        tokens: t,
        // `g` is a whole number in 0..=want.
        granted: g as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refill_is_capped_and_grants_what_the_horizon_allows() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        // Empty bucket, 10/s, one second later: 10 tokens, and a 0.5 s
        // horizon lets 15 be promised; 12 wanted.
        let g = refill_and_take(
            0.0,
            t0,
            10.0,
            20.0,
            12,
            t0 + chrono::Duration::seconds(1),
            Duration::from_millis(500),
        );
        assert_eq!(
            g,
            Grant {
                tokens: 10.0,
                granted: 12
            }
        );
        // Refill never passes the burst.
        let g = refill_and_take(5.0, t0, 10.0, 20.0, 1, t0 + chrono::Duration::hours(1), Duration::ZERO);
        assert_eq!(
            g,
            Grant {
                tokens: 20.0,
                granted: 1
            }
        );
        // Promised ahead (negative tokens) and a clock behind the row:
        // no refill, nothing granted until the debt is paid.
        let g = refill_and_take(
            -3.0,
            t0,
            1.0,
            5.0,
            4,
            t0 - chrono::Duration::seconds(10),
            Duration::from_secs(2),
        );
        assert_eq!(
            g,
            Grant {
                tokens: -3.0,
                granted: 0
            }
        );
    }
}
