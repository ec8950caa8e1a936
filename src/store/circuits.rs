//! Circuit breakers shared by every worker on the database
//! (`herald_circuits`): each change a worker makes is written here; the
//! others read the table about once a second (see `processor/circuits.rs`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Result, Store};
use crate::breaker::CircuitState;
use crate::clock::{format_ts, parse_ts};

/// One provider's circuit, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CircuitRow {
    pub provider: String,
    pub state: CircuitState,
    pub open_until: Option<DateTime<Utc>>,
    /// Openings since it was last closed.
    pub opens: u32,
    pub reason: Option<String>,
    /// The worker probing it (half-open), and until when.
    pub probe_owner: Option<String>,
    pub probe_until: Option<DateTime<Utc>>,
    /// Grows with every change.
    pub generation: i64,
    pub changed_at: Option<DateTime<Utc>>,
}

impl CircuitRow {
    /// Until when nothing goes through it but probes (open, or being probed).
    pub fn blocked_until(&self) -> Option<DateTime<Utc>> {
        match self.state {
            CircuitState::Closed => None,
            CircuitState::Open => self.open_until,
            CircuitState::HalfOpen => self.probe_until.or(self.open_until),
        }
    }
}

/// What a worker's bid to probe a circuit came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeBid {
    /// This worker probes; the circuit's new generation.
    Won(i64),
    /// Another worker is probing, or the circuit changed meanwhile.
    Lost,
}

type Row = (
    String,
    String,
    Option<String>,
    i32,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
);

/// Run `$q` (an upsert of circuit `$provider` returning its generation) on
/// `$pool`; MySQL, which cannot return it, reads it back in the same
/// transaction.
macro_rules! write_then_generation {
    ($self:expr, $pool:expr, $q:expr, $provider:expr) => {
        if let Some(m) = &$self.sql.mysql {
            let mut tx = $pool.begin().await?;
            let _: Option<i64> = $q.fetch_optional(&mut *tx).await?;
            let g = &m.circuit_generation;
            let generation: i64 = bound!(sqlx::query_scalar(&g.sql), g, [$provider])
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            generation
        } else {
            $q.fetch_one($pool).await?
        }
    };
}

impl Store {
    /// Every provider's circuit.
    pub async fn circuits(&self) -> Result<Vec<CircuitRow>> {
        let s = &self.sql.circuits.all;
        let rows: Vec<Row> = with_pool!(self, |pool| sqlx::query_as(&s.sql).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .filter_map(
                |(provider, state, open_until, opens, reason, probe_owner, probe_until, generation, changed_at)| {
                    Some(CircuitRow {
                        provider,
                        state: CircuitState::parse(&state)?,
                        open_until: open_until.as_deref().and_then(parse_ts),
                        opens: u32::try_from(opens).unwrap_or(0),
                        reason,
                        probe_owner,
                        probe_until: probe_until.as_deref().and_then(parse_ts),
                        generation,
                        changed_at: changed_at.as_deref().and_then(parse_ts),
                    })
                },
            )
            .collect())
    }

    /// Record that `provider`'s circuit opened; returns its generation.
    pub async fn open_circuit(
        &self,
        provider: &str,
        until: DateTime<Utc>,
        opens: u32,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let s = &self.sql.circuits.open;
        let _turn = self.write_turn().await;
        let generation = with_pool!(self, |pool| {
            let q = bound!(
                sqlx::query_scalar(&s.sql),
                s,
                [
                    provider,
                    format_ts(until),
                    i32::try_from(opens).unwrap_or(i32::MAX),
                    reason,
                    format_ts(now)
                ]
            );
            write_then_generation!(self, pool, q, provider)
        });
        Ok(generation)
    }

    /// Record that `provider`'s circuit closed; returns its generation.
    pub async fn close_circuit(&self, provider: &str, now: DateTime<Utc>) -> Result<i64> {
        let s = &self.sql.circuits.close;
        let _turn = self.write_turn().await;
        let generation = with_pool!(self, |pool| {
            let q = bound!(sqlx::query_scalar(&s.sql), s, [provider, format_ts(now)]);
            write_then_generation!(self, pool, q, provider)
        });
        Ok(generation)
    }

    /// Bid to probe `provider`'s circuit until `until`: won only if its
    /// opening is over and nobody else is probing.
    pub async fn bid_to_probe(
        &self,
        provider: &str,
        worker: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<ProbeBid> {
        let s = &self.sql.circuits.probe;
        let _turn = self.write_turn().await;
        let generation: Option<i64> = with_pool!(self, |pool| {
            macro_rules! q {
                ($kind:path) => {
                    bound!(
                        $kind(&s.sql),
                        s,
                        [provider, worker, format_ts(now), format_ts(until)]
                    )
                };
            }
            if let Some(m) = &self.sql.mysql {
                // The conditional UPDATE; a circuit never written is
                // inserted instead; then the generation, in one transaction.
                let mut tx = pool.begin().await?;
                let mut won = q!(sqlx::query).execute(&mut *tx).await?.rows_affected() == 1;
                if !won {
                    let i = &m.circuit_probe_insert;
                    won = bound!(
                        sqlx::query(&i.sql),
                        i,
                        [provider, worker, format_ts(now), format_ts(until)]
                    )
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                }
                let generation = if won {
                    let g = &m.circuit_generation;
                    Some(
                        bound!(sqlx::query_scalar(&g.sql), g, [provider])
                            .fetch_one(&mut *tx)
                            .await?,
                    )
                } else {
                    None
                };
                tx.commit().await?;
                generation
            } else {
                q!(sqlx::query_scalar).fetch_optional(pool).await?
            }
        });
        Ok(generation.map_or(ProbeBid::Lost, ProbeBid::Won))
    }
}
