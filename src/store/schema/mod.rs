//! The database's shape: what it holds now ([`Inspection`]), what
//! `herald migrate` will change ([`Plan`]), and doing it.
//!
//! Herald creates its tables in an empty database and upgrades tables it
//! made. A `notification_messages` table that a POS created is the POS's
//! data: only `herald migrate` changes it, after printing every change
//! (`--dry-run` prints without changing), and it refuses, before changing
//! anything, what it cannot adopt safely.

mod create_sql;
mod plan;

use std::collections::BTreeMap;

use super::backend::Backend;
use super::sql::{Dialect, Layout, Mysql, Postgres, Sqlite, Statements, Table};
use super::{Result, Store, StoreError};

/// One column of the existing table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The declared type (PostgreSQL's `format_type`, SQLite's declaration).
    pub ty: String,
    pub is_enum: bool,
    pub not_null: bool,
    pub default: Option<String>,
    /// MySQL: text in a binary collation (`utf8mb4_bin`; MariaDB's JSON),
    /// which the driver hands over as bytes unless it is cast.
    pub binary_collation: bool,
}

/// What the database holds now.
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    pub backend: &'static str,
    /// `notification_messages` exists.
    pub table_exists: bool,
    /// How many of Herald's migrations are applied, and how many there are.
    pub migrations_applied: i64,
    pub migrations_known: i64,
    pub columns: Vec<Column>,
    /// CHECK constraints (SQLite: one entry, the CREATE TABLE statement).
    pub checks: Vec<(String, String)>,
    pub triggers: Vec<String>,
    /// ENUM type → its labels, for ENUM columns.
    pub enum_labels: BTreeMap<String, Vec<String>>,
    /// Each status word in the table, with its row count.
    pub statuses_in_use: Vec<(String, i64)>,
    /// How an earlier `herald migrate` adopted the table.
    pub stored_layout: Option<Layout>,
}

impl Inspection {
    /// A table exists that Herald has not adopted yet.
    pub fn needs_adoption(&self) -> bool {
        self.table_exists && self.migrations_applied == 0
    }
}

/// One change to the database, as `herald migrate` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub says: String,
    pub sql: Vec<String>,
}

impl Step {
    fn new(says: String, sql: Vec<String>) -> Step {
        Step { says, sql }
    }
}

/// What `herald migrate` will do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Adopting a table a POS created.
    pub adopting: bool,
    /// How Herald will read the table.
    pub layout: Layout,
    /// Changes to the POS's table, before Herald's migrations.
    pub steps: Vec<Step>,
    /// Herald's migrations not yet applied: (version, name).
    pub migrations: Vec<(i64, String)>,
    /// Indexes built online after the migrations: (name, what for).
    pub online: Vec<(&'static str, &'static str)>,
    /// Older messages whose metadata is not indexed yet (`herald migrate`
    /// indexes them after the migrations; workers do too).
    pub backfill: Option<super::online::Backfill>,
    /// Worth knowing; nothing to fix.
    pub notes: Vec<String>,
    /// What stops the adoption, each with its fix. Nothing is changed while
    /// there is any.
    pub problems: Vec<String>,
}

impl Plan {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.migrations.is_empty() && self.online.is_empty()
    }
}

pub(super) fn dialect_of(backend: &Backend) -> &'static dyn Dialect {
    match backend {
        Backend::Sqlite { .. } => &Sqlite,
        Backend::Postgres { .. } => &Postgres,
        Backend::Mysql { .. } => &Mysql,
    }
}

impl Store {
    /// Look at the database: Herald's migrations, and the message table.
    pub async fn inspect(&self) -> Result<Inspection> {
        self.inspect_with(false).await
    }

    /// [`Store::inspect`], and with `statuses` also the status words in use
    /// (a whole-table scan: only `herald migrate` needs them, never the
    /// readiness probe or start-up).
    pub async fn inspect_with(&self, statuses: bool) -> Result<Inspection> {
        let d = dialect_of(&self.backend);
        let exists = |name: &'static str| async move {
            let n: i64 = with_pool!(self, |pool| sqlx::query_scalar(&d.statement(&d.table_exists()).sql)
                .bind(name)
                .fetch_one(pool)
                .await?);
            Ok::<bool, StoreError>(n > 0)
        };
        let mut ins = Inspection {
            backend: d.name(),
            table_exists: exists("notification_messages").await?,
            migrations_known: super::backend::migration_files(&self.backend).len() as i64,
            ..Inspection::default()
        };
        if exists("_sqlx_migrations").await? {
            ins.migrations_applied = with_pool!(self, |pool| sqlx::query_scalar(&d.migrations_applied())
                .fetch_one(pool)
                .await?);
        }
        if exists("herald_layout").await? {
            let text: Option<String> = with_pool!(self, |pool| sqlx::query_scalar(&d.layout_read())
                .fetch_optional(pool)
                .await?);
            ins.stored_layout = text.and_then(|t| serde_json::from_str(&t).ok());
        }
        if !ins.table_exists {
            return Ok(ins);
        }
        let rows: Vec<(String, String, i32, i32, Option<String>, i32)> =
            with_pool!(self, |pool| sqlx::query_as(&d.columns()).fetch_all(pool).await?);
        ins.columns = rows
            .into_iter()
            .map(|(name, ty, is_enum, not_null, default, binary)| Column {
                name,
                ty,
                is_enum: is_enum != 0,
                not_null: not_null != 0,
                default,
                binary_collation: binary != 0,
            })
            .collect();
        ins.checks = with_pool!(self, |pool| sqlx::query_as(&d.checks()).fetch_all(pool).await?);
        ins.triggers = with_pool!(self, |pool| sqlx::query_scalar(&d.triggers()).fetch_all(pool).await?);
        if d.name() == "mysql" {
            // MySQL's ENUM labels are in the column's type.
            for c in ins.columns.iter().filter(|c| c.is_enum) {
                ins.enum_labels.insert(c.ty.clone(), plan::mysql_enum_labels(&c.ty));
            }
        }
        if let Some(q) = d.enum_labels() {
            let q = d.statement(&q).sql;
            for c in ins.columns.iter().filter(|c| c.is_enum) {
                let labels: Vec<String> =
                    with_pool!(self, |pool| sqlx::query_scalar(&q).bind(&c.ty).fetch_all(pool).await?);
                ins.enum_labels.insert(c.ty.clone(), labels);
            }
        }
        if statuses && ins.columns.iter().any(|c| c.name == "status") {
            ins.statuses_in_use = with_pool!(self, |pool| sqlx::query_as(&d.statuses_in_use())
                .fetch_all(pool)
                .await?);
        }
        Ok(ins)
    }

    /// What `herald migrate` would do. `requested` is `COLUMN_MAP`
    /// (Herald's column → the table's), used when adopting a table.
    pub async fn plan_migration(&self, requested: &BTreeMap<String, String>) -> Result<Plan> {
        let ins = self.inspect_with(true).await?;
        let d = dialect_of(&self.backend);
        let mut plan = if ins.needs_adoption() {
            plan::adopt(&ins, d, requested)
        } else {
            Plan {
                layout: ins.stored_layout.clone().unwrap_or_default(),
                ..Plan::default()
            }
        };
        plan.migrations = super::backend::migration_files(&self.backend)
            .iter()
            .filter(|(v, _, _)| *v > ins.migrations_applied)
            .map(|(v, name, _)| (*v, (*name).to_owned()))
            .collect();
        if ins.table_exists && ins.migrations_applied >= 9 {
            plan.online = self.missing_online_indexes().await?;
            plan.backfill = self.metadata_backfill().await?.filter(|b| !b.complete());
        } else {
            plan.online = super::online::ONLINE_INDEXES.to_vec();
        }
        Ok(plan)
    }

    /// Carry out `plan` (which must have no problems): the changes to the
    /// POS's table, then Herald's migrations. Afterwards statements read the
    /// table as the plan's layout says.
    pub async fn apply_migration(&mut self, plan: &Plan) -> Result<()> {
        assert!(plan.problems.is_empty(), "a plan with problems is never applied");
        let d = dialect_of(&self.backend);
        {
            let _turn = self.write_turn().await;
            for step in &plan.steps {
                self.run_step(step).await?;
            }
            if plan.adopting {
                let layout = serde_json::to_string(&plan.layout).expect("layout serializes");
                with_pool!(self, |pool| {
                    let mut tx = pool.begin_with(self.sql.begin_write).await?;
                    sqlx::query(&d.layout_create()).execute(&mut *tx).await?;
                    sqlx::query(&d.statement(&d.layout_write()).sql)
                        .bind(layout)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                });
            }
            let table = Table::new(d.quote(), &plan.layout, Default::default());
            let migrator = super::backend::migrator(&self.backend, &table);
            with_pool!(self, |pool| migrator.run(pool).await?);
        }
        self.build_online_indexes(&Table::new(d.quote(), &plan.layout, Default::default()))
            .await?;
        self.reload().await
    }

    async fn run_step(&self, step: &Step) -> Result<()> {
        with_pool!(self, |pool| {
            let mut conn = pool.acquire().await?;
            let mut version: Option<i64> = None;
            for sql in &step.sql {
                if sql.contains("{version}") {
                    // SQLite's schema rewrite: one more than the version before.
                    let v = match version {
                        Some(v) => v,
                        None => {
                            sqlx::query_scalar::<_, i64>("PRAGMA schema_version")
                                .fetch_one(&mut *conn)
                                .await?
                        }
                    };
                    version = Some(v);
                    sqlx::query(&sql.replace("{version}", &(v + 1).to_string()))
                        .execute(&mut *conn)
                        .await?;
                } else {
                    if sql.starts_with("PRAGMA writable_schema = ON") {
                        version = Some(
                            sqlx::query_scalar::<_, i64>("PRAGMA schema_version")
                                .fetch_one(&mut *conn)
                                .await?,
                        );
                    }
                    sqlx::query(sql).execute(&mut *conn).await?;
                }
            }
        });
        Ok(())
    }

    /// Re-read the table's layout and types and rebuild the statements.
    pub(super) async fn reload(&mut self) -> Result<()> {
        let ins = self.inspect().await?;
        let d = dialect_of(&self.backend);
        let layout = ins.stored_layout.clone().unwrap_or_default();
        let table = Table::new(d.quote(), &layout, plan::kinds(&ins, &layout));
        self.sql = std::sync::Arc::new(Statements::build(d, &table));
        self.layout = layout;
        Ok(())
    }

    /// Make the database ready for every command but `herald migrate`:
    /// create Herald's tables in an empty database and apply newer
    /// migrations to tables Herald made; refuse a table a POS created that
    /// `herald migrate` has not adopted (nothing is changed then).
    pub async fn prepare(&mut self) -> Result<Vec<(i64, String)>> {
        let plan = self.plan_migration(&BTreeMap::new()).await?;
        if plan.adopting {
            return Err(StoreError::NotAdopted);
        }
        if !plan.is_empty() {
            self.apply_migration(&plan).await?;
        }
        Ok(plan.migrations)
    }

    /// Create or upgrade Herald's tables (an empty database, or one Herald
    /// made). Tests and tools; commands use [`Store::prepare`].
    pub async fn migrate(&mut self) -> Result<()> {
        self.prepare().await.map(|_| ())
    }
}
