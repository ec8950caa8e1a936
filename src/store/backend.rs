//! The connection to the database: pools, migrations, and how statements
//! get their parameters.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::sql::{Statements, Table};
use super::{Result, Store};
use crate::config::DatabaseUrl;

#[derive(Clone)]
pub(super) enum Backend {
    Sqlite {
        pool: SqlitePool,
        /// SQLite has one writer at a time; taking turns in-process avoids
        /// busy-waiting inside SQLite. Other processes are handled by the
        /// busy timeout.
        write: Arc<tokio::sync::Mutex<()>>,
    },
    Postgres {
        pool: PgPool,
    },
    /// MySQL 8.0+ or MariaDB 10.6+.
    Mysql {
        pool: MySqlPool,
    },
}

/// Run `$body` with `$pool` bound to the backend's pool; the body is compiled
/// once per backend, so it can use the concrete pool and row types.
macro_rules! with_pool {
    ($self:expr, |$pool:ident| $body:expr) => {
        match &$self.backend {
            $crate::store::backend::Backend::Sqlite { pool: $pool, .. } => $body,
            $crate::store::backend::Backend::Postgres { pool: $pool } => $body,
            $crate::store::backend::Backend::Mysql { pool: $pool } => $body,
        }
    };
}

/// [`with_pool!`] for a write whose `$body` is one statement or one
/// transaction: on MySQL it runs again (up to [`LOCK_CONFLICT_RETRIES`]
/// times) when InnoDB rolled it back to break a deadlock or a lock wait,
/// since nothing of it was written. `?` in `$body` leaves the attempt.
macro_rules! with_pool_retrying {
    ($self:expr, |$pool:ident| $body:expr) => {
        match &$self.backend {
            $crate::store::backend::Backend::Sqlite { pool: $pool, .. } => $body,
            $crate::store::backend::Backend::Postgres { pool: $pool } => $body,
            $crate::store::backend::Backend::Mysql { pool: $pool } => {
                let mut tries = 0;
                loop {
                    let attempt: $crate::store::Result<_> = async { Ok($body) }.await;
                    match attempt {
                        Err(e)
                            if $crate::store::backend::is_lock_conflict(&e)
                                && tries < $crate::store::backend::LOCK_CONFLICT_RETRIES =>
                        {
                            tries += 1
                        }
                        other => break other?,
                    }
                }
            }
        }
    };
}

/// `$query` (from `sqlx::query*(&stmt.sql)`) with the parameters bound in
/// the statement's order. Parameters are listed as the statement documents
/// them (`$1`, `$2`, …), as anything convertible into [`Arg`].
macro_rules! bound {
    ($query:expr, $stmt:expr, [$($arg:expr),* $(,)?]) => {{
        let args: Vec<$crate::store::backend::Arg> = vec![$($crate::store::backend::Arg::from($arg)),*];
        let mut q = $query;
        for &i in &$stmt.order {
            q = match &args[i] {
                $crate::store::backend::Arg::Text(v) => q.bind(v.clone()),
                $crate::store::backend::Arg::Int(v) => q.bind(*v),
                $crate::store::backend::Arg::Int4(v) => q.bind(*v),
                $crate::store::backend::Arg::Bool(v) => q.bind(*v),
            };
        }
        q
    }};
}

/// Queue an [`crate::domain::SmsFallback`] in transaction `$tx` (statements
/// `$sql`) at `$now`: the SMS row, and the link on the original. Evaluates
/// to the new message's id (`None`: the original fell back already).
macro_rules! queue_fallback {
    ($sql:expr, $tx:expr, $f:expr, $now:expr) => {{
        let s = &$sql.fallback_insert;
        macro_rules! q {
            ($kind:path) => {
                bound!(
                    $kind(&s.sql),
                    s,
                    [
                        $f.original,
                        $f.recipient.as_str(),
                        $f.body.as_str(),
                        $crate::clock::format_ts($now)
                    ]
                )
            };
        }
        let id: Option<i64> = if $sql.mysql.is_some() {
            use $crate::store::backend::InsertId;
            let done = q!(sqlx::query).execute(&mut *$tx).await?;
            if done.rows_affected() == 1 {
                Some($crate::store::backend::inserted_id(done.insert_id())?)
            } else {
                None
            }
        } else {
            q!(sqlx::query_scalar).fetch_optional(&mut *$tx).await?
        };
        if let Some(new_id) = id {
            let l = &$sql.fallback_link;
            bound!(sqlx::query(&l.sql), l, [$f.original, new_id])
                .execute(&mut *$tx)
                .await?;
        }
        id
    }};
}

/// Write `$events` (a `Vec<OutboxEvent>`) to the outbox in transaction
/// `$tx` at `$now`, one row per endpoint that wants each.
macro_rules! fan_out {
    ($sql:expr, $tx:expr, $events:expr, $now:expr) => {{
        if !$events.is_empty() {
            let s = &$sql.webhooks.fan_out;
            let json = serde_json::to_string(&$events).expect("events serialize");
            bound!(sqlx::query(&s.sql), s, [json, $crate::clock::format_ts($now)])
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

/// A statement parameter.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
    Int4(Option<i32>),
    Bool(Option<bool>),
}

impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::Bool(Some(v))
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(Some(v.clone()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(Some(v))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::Text(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::Text(v.map(str::to_owned))
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::Int(v)
    }
}
impl From<i32> for Arg {
    fn from(v: i32) -> Arg {
        Arg::Int4(Some(v))
    }
}
impl From<Option<i32>> for Arg {
    fn from(v: Option<i32>) -> Arg {
        Arg::Int4(v)
    }
}

/// Herald's migrations for a backend: (version, name, SQL template).
pub(super) fn migration_files(backend: &Backend) -> &'static [(i64, &'static str, &'static str)] {
    #[rustfmt::skip]
    const POSTGRES: &[(i64, &str, &str)] = &[
        (1, "queue", include_str!("../../migrations/postgres/0001_queue.sql")),
        (2, "providers", include_str!("../../migrations/postgres/0002_providers.sql")),
        (3, "api", include_str!("../../migrations/postgres/0003_api.sql")),
        (4, "receipts", include_str!("../../migrations/postgres/0004_receipts.sql")),
        (5, "templates", include_str!("../../migrations/postgres/0005_templates.sql")),
        (6, "dashboard", include_str!("../../migrations/postgres/0006_dashboard.sql")),
        (7, "due", include_str!("../../migrations/postgres/0007_due.sql")),
        (8, "failover", include_str!("../../migrations/postgres/0008_failover.sql")),
        (9, "scale", include_str!("../../migrations/postgres/0009_scale.sql")),
    ];
    #[rustfmt::skip]
    const SQLITE: &[(i64, &str, &str)] = &[
        (1, "queue", include_str!("../../migrations/sqlite/0001_queue.sql")),
        (2, "providers", include_str!("../../migrations/sqlite/0002_providers.sql")),
        (3, "api", include_str!("../../migrations/sqlite/0003_api.sql")),
        (4, "receipts", include_str!("../../migrations/sqlite/0004_receipts.sql")),
        (5, "templates", include_str!("../../migrations/sqlite/0005_templates.sql")),
        (6, "dashboard", include_str!("../../migrations/sqlite/0006_dashboard.sql")),
        (7, "due", include_str!("../../migrations/sqlite/0007_due.sql")),
        (8, "failover", include_str!("../../migrations/sqlite/0008_failover.sql")),
        (9, "scale", include_str!("../../migrations/sqlite/0009_scale.sql")),
    ];
    #[rustfmt::skip]
    const MYSQL: &[(i64, &str, &str)] = &[
        (1, "queue", include_str!("../../migrations/mysql/0001_queue.sql")),
        (2, "providers", include_str!("../../migrations/mysql/0002_providers.sql")),
        (3, "api", include_str!("../../migrations/mysql/0003_api.sql")),
        (4, "receipts", include_str!("../../migrations/mysql/0004_receipts.sql")),
        (5, "templates", include_str!("../../migrations/mysql/0005_templates.sql")),
        (6, "dashboard", include_str!("../../migrations/mysql/0006_dashboard.sql")),
        (7, "due", include_str!("../../migrations/mysql/0007_due.sql")),
        (8, "failover", include_str!("../../migrations/mysql/0008_failover.sql")),
        (9, "scale", include_str!("../../migrations/mysql/0009_scale.sql")),
    ];
    match backend {
        Backend::Postgres { .. } => POSTGRES,
        Backend::Sqlite { .. } => SQLITE,
        Backend::Mysql { .. } => MYSQL,
    }
}

/// The migrations, rendered for the table's layout (Herald's own layout
/// renders them exactly as they always were, so checksums hold).
pub(super) fn migrator(backend: &Backend, table: &Table) -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType};
    use std::borrow::Cow;
    let migrations = migration_files(backend)
        .iter()
        .map(|(v, d, sql)| {
            Migration::new(
                *v,
                Cow::Borrowed(d),
                MigrationType::Simple,
                Cow::Owned(
                    table
                        .render_migration(sql)
                        .replace("{{due_key}}", &super::schema::dialect_of(backend).due_key(table)),
                ),
                false,
            )
        })
        .collect::<Vec<_>>();
    // The fields are what `sqlx::migrate!` fills in; building the migrator
    // here embeds the SQL without compiling sqlx's proc-macros.
    sqlx::migrate::Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

impl Store {
    /// Open the database: SQLite (the file is created if missing) or PostgreSQL.
    pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> Result<Store> {
        Store::connect_with(url, max_connections, None).await
    }

    /// [`Store::connect`]; on PostgreSQL, `timezone` is the zone in which
    /// `timestamp` columns without a time zone (a POS's) are read and
    /// written (default UTC).
    pub async fn connect_with(url: &DatabaseUrl, max_connections: u32, timezone: Option<&str>) -> Result<Store> {
        let backend = match url {
            DatabaseUrl::Postgres(url) => {
                let opts = PgConnectOptions::from_str(url)?
                    .application_name("herald")
                    .options([("TimeZone", timezone.unwrap_or("UTC"))]);
                // One connection first: a refused or misconfigured server is
                // reported as such, not as a pool timeout.
                {
                    use sqlx::Connection;
                    sqlx::PgConnection::connect_with(&opts).await?.close().await?;
                }
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await?;
                Backend::Postgres { pool }
            }
            DatabaseUrl::Mysql(url) => {
                // Every connection works in UTC (`time_zone = '+00:00'`,
                // sqlx's default) and utf8mb4, whatever the server's own
                // settings: times are stored in UTC and emoji survive.
                let opts = MySqlConnectOptions::from_str(url)?
                    .timezone(Some("+00:00".to_owned()))
                    .charset("utf8mb4");
                {
                    use sqlx::Connection;
                    sqlx::MySqlConnection::connect_with(&opts).await?.close().await?;
                }
                // READ COMMITTED: row locks only. Under InnoDB's default
                // (REPEATABLE READ) a claim's `FOR UPDATE` also locks the gaps
                // between index entries, which blocks the POS's own inserts
                // and makes workers deadlock on each other.
                let pool = MySqlPoolOptions::new()
                    .max_connections(max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            use sqlx::Executor;
                            conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                                .await?;
                            // A row another transaction holds is waited for
                            // 10 s at most (InnoDB's default is 50 s).
                            conn.execute("SET SESSION innodb_lock_wait_timeout = 10").await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await?;
                Backend::Mysql { pool }
            }
            DatabaseUrl::Sqlite(url) => {
                let opts = SqliteConnectOptions::from_str(url)?;
                // A new database file holds customers' numbers and messages:
                // readable by its owner only (SQLite gives its -wal and -shm
                // files the same permissions).
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                let file = opts.get_filename();
                if !in_memory && !file.as_os_str().is_empty() && !file.exists() {
                    use std::os::unix::fs::OpenOptionsExt;
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(file)
                        .map_err(sqlx::Error::Io)?;
                }
                let opts = opts
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true);
                let pool = SqlitePoolOptions::new()
                    .max_connections(if in_memory { 1 } else { max_connections.clamp(1, 8) })
                    .connect_with(opts)
                    .await?;
                Backend::Sqlite {
                    pool,
                    write: Arc::new(tokio::sync::Mutex::new(())),
                }
            }
        };
        let dialect = super::schema::dialect_of(&backend);
        let sql = Arc::new(Statements::build(
            dialect,
            &Table::new(dialect.quote(), &Default::default(), Default::default()),
        ));
        let mut store = Store {
            backend,
            sql,
            layout: Default::default(),
            subscriptions: Default::default(),
            outbound_wake: Default::default(),
        };
        store.reload().await?;
        Ok(store)
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        self.sql.dialect
    }

    /// SQLite: take the in-process writer turn. Others: nothing.
    pub(super) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.backend {
            Backend::Sqlite { write, .. } => Some(write.lock().await),
            Backend::Postgres { .. } | Backend::Mysql { .. } => None,
        }
    }

    /// Whether every migration Herald knows is applied (for readiness checks).
    pub async fn migrations_applied(&self) -> Result<bool> {
        let ins = self.inspect().await?;
        Ok(ins.migrations_applied >= ins.migrations_known)
    }

    /// The database server's clock now (SQLite: this machine's, read by
    /// the database library).
    pub async fn database_clock(&self) -> Result<chrono::DateTime<chrono::Utc>> {
        let s = &self.sql.clock;
        let text: String = with_pool!(self, |pool| sqlx::query_scalar(&s.sql).fetch_one(pool).await?);
        crate::clock::parse_ts(&text)
            .ok_or_else(|| sqlx::Error::Protocol(format!("the database's clock said {text:?}")).into())
    }

    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, |pool| sqlx::query("SELECT 1").execute(pool).await.map(|_| ())?);
        Ok(())
    }

    /// Run one statement of tooling SQL, returning the rows it changed. For
    /// benchmarks and tests that play the POS (inserting rows by hand);
    /// Herald's own code never builds SQL from input.
    pub async fn execute_raw(&self, sql: &str) -> Result<u64> {
        let _turn = self.write_turn().await;
        let n = with_pool!(self, |pool| sqlx::query(sql).execute(pool).await?.rows_affected());
        Ok(n)
    }

    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await);
    }
}

/// The id an `INSERT` gave its row, where the driver reports it (MySQL's
/// `LAST_INSERT_ID`, SQLite's rowid; PostgreSQL statements say `RETURNING`).
pub(super) trait InsertId {
    fn insert_id(&self) -> Option<i64>;
}

impl InsertId for sqlx::mysql::MySqlQueryResult {
    fn insert_id(&self) -> Option<i64> {
        i64::try_from(self.last_insert_id()).ok().filter(|&id| id > 0)
    }
}

impl InsertId for sqlx::sqlite::SqliteQueryResult {
    fn insert_id(&self) -> Option<i64> {
        Some(self.last_insert_rowid())
    }
}

impl InsertId for sqlx::postgres::PgQueryResult {
    fn insert_id(&self) -> Option<i64> {
        None
    }
}

/// Whether `e` is InnoDB giving up a transaction to break a deadlock (or a
/// lock wait that timed out): it rolled back, and may simply be run again.
pub(super) fn is_lock_conflict(e: &super::StoreError) -> bool {
    match e {
        super::StoreError::Database(sqlx::Error::Database(d)) => d
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .is_some_and(|m| matches!(m.number(), 1213 | 1205)),
        _ => false,
    }
}

/// How many times a transaction InnoDB broke is run again.
pub(super) const LOCK_CONFLICT_RETRIES: u32 = 5;

/// The id of a row just inserted, as the driver reported it.
pub(super) fn inserted_id(id: Option<i64>) -> Result<i64> {
    id.ok_or_else(|| sqlx::Error::Protocol("the database reported no id for an inserted row".into()).into())
}
