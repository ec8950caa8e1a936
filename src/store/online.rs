//! Schema work that must not stop the queue on a big table: indexes built
//! without holding writes back (PostgreSQL `CREATE INDEX CONCURRENTLY`,
//! InnoDB's online `ALGORITHM=INPLACE, LOCK=NONE`), and the metadata
//! index's backfill of rows older than its triggers, in small batches.
//!
//! Migrations run in one transaction each; these run after them, one
//! statement at a time, and are idempotent: an interrupted `herald migrate`
//! picks up where it stopped (an index PostgreSQL left invalid is dropped
//! and built again).

use super::backend::Backend;
use super::sql::Table;
use super::{Result, Store};

/// Ids of the metadata backfill per statement: a short transaction each.
pub const BACKFILL_BATCH: i64 = 5_000;

/// An index built online after the migrations.
struct OnlineIndex {
    name: &'static str,
    says: &'static str,
    /// The columns and (PostgreSQL, SQLite) the condition, after `ON
    /// notification_messages`.
    pg: &'static str,
    mysql: &'static str,
}

/// Only finished rows that are not `sent` (failed, cancelled, a POS's own
/// statuses: a few per cent of a big table) are in the status index:
/// listing or counting them reads only those, and the drain (pending →
/// processing → sent) never writes to it. Open rows have the due index. Messages with a template are listed by it; a channel's
/// messages by the channel index (one channel may be 1 % of the table).
const INDEXES: [OnlineIndex; 3] = [
    OnlineIndex {
        name: "notification_messages_status",
        says: "index finished messages by status (all but sent), for listing and counting",
        pg: "(status, id, {{channel}}) WHERE status NOT IN ('sent', 'pending', 'processing')",
        mysql: "(status, id, {{channel}})",
    },
    OnlineIndex {
        name: "notification_messages_channel",
        says: "index messages by channel, for listing",
        pg: "({{channel}}, id)",
        mysql: "({{channel}}, id)",
    },
    OnlineIndex {
        name: "notification_messages_template",
        says: "index messages by template, for listing",
        pg: "(template, id) WHERE template IS NOT NULL",
        mysql: "(template, id)",
    },
];

/// How far the metadata backfill is: every id in `(done_id, until_id]`
/// is still to index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backfill {
    pub done_id: i64,
    pub until_id: i64,
}

impl Backfill {
    pub fn complete(&self) -> bool {
        self.done_id >= self.until_id
    }
}

/// Every online index: (name, what for).
pub(super) const ONLINE_INDEXES: [(&str, &str); 3] = [
    (INDEXES[0].name, INDEXES[0].says),
    (INDEXES[1].name, INDEXES[1].says),
    (INDEXES[2].name, INDEXES[2].says),
];

impl Store {
    /// The online indexes that are missing (or, on PostgreSQL, left invalid
    /// by an interrupted build): (name, what it is for).
    pub async fn missing_online_indexes(&self) -> Result<Vec<(&'static str, &'static str)>> {
        let mut missing = Vec::new();
        for ix in &INDEXES {
            let ok: Option<bool> = match &self.backend {
                Backend::Postgres { pool } => {
                    sqlx::query_scalar("SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)")
                        .bind(ix.name)
                        .fetch_optional(pool)
                        .await?
                }
                Backend::Sqlite { pool, .. } => {
                    sqlx::query_scalar::<_, i64>("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?")
                        .bind(ix.name)
                        .fetch_optional(pool)
                        .await?
                        .map(|_| true)
                }
                Backend::Mysql { pool } => sqlx::query_scalar::<_, i64>(
                    "SELECT 1 FROM information_schema.STATISTICS
                      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'notification_messages' AND INDEX_NAME = ?
                      LIMIT 1",
                )
                .bind(ix.name)
                .fetch_optional(pool)
                .await?
                .map(|_| true),
            };
            if ok != Some(true) {
                missing.push((ix.name, ix.says));
            }
        }
        Ok(missing)
    }

    /// Build the missing online indexes, one at a time, without holding
    /// the queue's writes back for the build.
    pub(super) async fn build_online_indexes(&self, table: &Table) -> Result<()> {
        for (name, _) in self.missing_online_indexes().await? {
            let ix = INDEXES.iter().find(|i| i.name == name).expect("known index");
            match &self.backend {
                Backend::Postgres { pool } => {
                    // An interrupted concurrent build leaves an invalid index
                    // that `IF NOT EXISTS` would keep.
                    sqlx::query(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
                        .execute(pool)
                        .await?;
                    let sql = table.render_migration(&format!(
                        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON notification_messages {}",
                        ix.pg
                    ));
                    sqlx::query(&sql).execute(pool).await?;
                }
                Backend::Sqlite { pool, write } => {
                    let _turn = write.lock().await;
                    let sql = table.render_migration(&format!(
                        "CREATE INDEX IF NOT EXISTS {name} ON notification_messages {}",
                        ix.pg
                    ));
                    sqlx::query(&sql).execute(pool).await?;
                }
                Backend::Mysql { pool } => {
                    let sql = table.render_migration(&format!(
                        "CREATE INDEX {name} ON notification_messages {} ALGORITHM = INPLACE LOCK = NONE",
                        ix.mysql
                    ));
                    sqlx::query(&sql).execute(pool).await?;
                }
            }
        }
        Ok(())
    }

    /// Where the metadata backfill stands; `None` before migration 9.
    pub async fn metadata_backfill(&self) -> Result<Option<Backfill>> {
        const SQL: &str = "SELECT done_id, until_id FROM herald_backfills WHERE name = 'metadata'";
        let exists = self.inspect().await?.migrations_applied >= 9;
        if !exists {
            return Ok(None);
        }
        let row: Option<(i64, i64)> = with_pool!(self, |pool| sqlx::query_as(SQL).fetch_optional(pool).await?);
        Ok(row.map(|(done_id, until_id)| Backfill { done_id, until_id }))
    }

    /// Index the metadata of the next [`BACKFILL_BATCH`] ids; returns where
    /// the backfill stands afterwards. Several processes may run it at
    /// once: they repeat each other's work, never corrupt it.
    pub async fn backfill_metadata_step(&self, at: Backfill) -> Result<Backfill> {
        if at.complete() {
            return Ok(at);
        }
        let (from, to) = (at.done_id, (at.done_id + BACKFILL_BATCH).min(at.until_id));
        let insert = match &self.backend {
            Backend::Postgres { .. } => format!(
                "INSERT INTO herald_message_metadata (name, value, message_id)
                 SELECT p.name, p.value, m.id
                   FROM notification_messages m CROSS JOIN LATERAL herald_metadata_pairs(m.metadata::text) AS p
                  WHERE m.id > {from} AND m.id <= {to} AND m.metadata IS NOT NULL
                 ON CONFLICT DO NOTHING"
            ),
            Backend::Sqlite { .. } => format!(
                "INSERT OR IGNORE INTO herald_message_metadata (name, value, message_id)
                 SELECT j.key,
                        CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(j.value AS TEXT) END,
                        m.id
                   FROM notification_messages m,
                        json_each(CASE WHEN json_valid(m.metadata)
                                       THEN CASE WHEN json_type(m.metadata) = 'object' THEN m.metadata ELSE '{{}}' END
                                       ELSE '{{}}' END) AS j
                  WHERE m.id > {from} AND m.id <= {to} AND m.metadata IS NOT NULL
                    AND j.type IN ('text', 'integer', 'real', 'true', 'false')
                    AND length(CAST(j.value AS TEXT)) <= 200 AND length(j.key) <= 200"
            ),
            Backend::Mysql { .. } => format!(
                "INSERT IGNORE INTO herald_message_metadata (name, value, message_id)
                 SELECT k.name, JSON_UNQUOTE(JSON_EXTRACT(m.metadata, CONCAT('$.', JSON_QUOTE(k.name)))), m.id
                   FROM notification_messages m
                   CROSS JOIN JSON_TABLE(
                        JSON_KEYS(CASE WHEN JSON_VALID(m.metadata)
                                       THEN CASE WHEN JSON_TYPE(m.metadata) = 'OBJECT' THEN m.metadata ELSE '{{}}' END
                                       ELSE '{{}}' END),
                        '$[*]' COLUMNS (name VARCHAR(400) PATH '$')) AS k
                  WHERE m.id > {from} AND m.id <= {to} AND m.metadata IS NOT NULL
                    AND JSON_TYPE(JSON_EXTRACT(m.metadata, CONCAT('$.', JSON_QUOTE(k.name))))
                            IN ('STRING', 'INTEGER', 'UNSIGNED INTEGER', 'DOUBLE', 'DECIMAL', 'BOOLEAN')
                    AND CHAR_LENGTH(k.name) <= 200
                    AND CHAR_LENGTH(JSON_UNQUOTE(JSON_EXTRACT(m.metadata, CONCAT('$.', JSON_QUOTE(k.name))))) <= 200"
            ),
        };
        let advance = format!("UPDATE herald_backfills SET done_id = {to} WHERE name = 'metadata' AND done_id < {to}");
        let _turn = self.write_turn().await;
        with_pool_retrying!(self, |pool| {
            let mut tx = pool.begin_with(self.sql.begin_write).await?;
            sqlx::query(&insert).execute(&mut *tx).await?;
            sqlx::query(&advance).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(Backfill {
            done_id: to.max(at.done_id),
            until_id: at.until_id,
        })
    }

    /// Run the metadata backfill to its end, `pause` between batches,
    /// calling `progress` after each.
    pub async fn backfill_metadata(
        &self,
        pause: std::time::Duration,
        mut progress: impl FnMut(Backfill),
    ) -> Result<()> {
        let Some(mut at) = self.metadata_backfill().await? else {
            return Ok(());
        };
        while !at.complete() {
            at = self.backfill_metadata_step(at).await?;
            progress(at);
            if !pause.is_zero() && !at.complete() {
                tokio::time::sleep(pause).await;
            }
        }
        Ok(())
    }
}
