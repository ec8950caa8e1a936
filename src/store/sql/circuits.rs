//! The statements of `herald_circuits`: circuit breakers shared by workers.

use super::{Dialect, Statement};

#[derive(Debug)]
pub(crate) struct CircuitStatements {
    /// Every circuit: (provider, state, open until, opens, reason, probe
    /// owner, probe until, generation, changed at).
    pub all: Statement,
    /// Open `$1` until `$2` (`$3` openings, reason `$4`) at `$5`; the new
    /// generation.
    pub open: Statement,
    /// Close `$1` at `$2`; the new generation.
    pub close: Statement,
    /// Worker `$2` takes the probe of `$1` until `$4` if the opening is
    /// over at `$3` (or the last prober's time ran out, or the circuit was
    /// never written); the new generation when it did.
    pub probe: Statement,
}

impl CircuitStatements {
    pub(crate) fn build(d: &dyn Dialect) -> CircuitStatements {
        let st = |sql: &str| d.statement(sql);
        CircuitStatements {
            all: st(&format!(
                "SELECT provider, state, {}, opens, reason, probe_owner, {}, generation, {} FROM herald_circuits
                  ORDER BY provider",
                d.ts_text("open_until"),
                d.ts_text("probe_until"),
                d.ts_text("changed_at")
            )),
            open: st(&format!(
                "INSERT INTO herald_circuits (provider, state, open_until, opens, reason, generation, changed_at)
                 VALUES ($1, 'open', {until}, $3, $4, 1, {now})
                 {}{}",
                d.upsert(
                    "provider",
                    &format!(
                        "state = 'open', open_until = {}, opens = {}, reason = {}, probe_owner = NULL,
                         probe_until = NULL, generation = herald_circuits.generation + 1, changed_at = {}",
                        d.excluded("open_until"),
                        d.excluded("opens"),
                        d.excluded("reason"),
                        d.excluded("changed_at")
                    )
                ),
                d.returning("generation"),
                until = d.ts("$2"),
                now = d.ts("$5")
            )),
            close: st(&format!(
                "INSERT INTO herald_circuits (provider, state, opens, generation, changed_at)
                 VALUES ($1, 'closed', 0, 1, {now})
                 {}{}",
                d.upsert(
                    "provider",
                    &format!(
                        "state = 'closed', open_until = NULL, opens = 0, reason = NULL, probe_owner = NULL,
                         probe_until = NULL, generation = herald_circuits.generation + 1, changed_at = {}",
                        d.excluded("changed_at")
                    )
                ),
                d.returning("generation"),
                now = d.ts("$2")
            )),
            probe: st(&if d.name() == "mysql" {
                // MySQL: a conditional UPDATE (its WHERE is read before any
                // assignment); a circuit never written is inserted by a
                // second step (`MysqlStatements::circuit_probe_insert`).
                format!(
                    "UPDATE herald_circuits
                        SET state = 'half_open', probe_owner = $2, probe_until = {until},
                            generation = generation + 1, changed_at = {now}
                      WHERE provider = $1
                        AND ((state = 'open' AND open_until <= {now})
                          OR (state = 'half_open' AND (probe_owner = $2 OR probe_until <= {now})))",
                    until = d.ts("$4"),
                    now = d.ts("$3")
                )
            } else {
                format!(
                "INSERT INTO herald_circuits (provider, state, opens, probe_owner, probe_until, generation, changed_at)
                 VALUES ($1, 'half_open', 1, $2, {until}, 1, {now})
                 ON CONFLICT (provider) DO UPDATE
                    SET state = 'half_open', probe_owner = excluded.probe_owner, probe_until = excluded.probe_until,
                        generation = herald_circuits.generation + 1, changed_at = excluded.changed_at
                  WHERE (herald_circuits.state = 'open' AND herald_circuits.open_until <= excluded.changed_at)
                     OR (herald_circuits.state = 'half_open'
                         AND (herald_circuits.probe_owner = excluded.probe_owner
                              OR herald_circuits.probe_until <= excluded.changed_at))
              RETURNING generation",
                until = d.ts("$4"),
                now = d.ts("$3")
            )
            }),
        }
    }
}
