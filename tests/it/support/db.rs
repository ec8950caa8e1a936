//! A database of its own for each test, on either backend, and SQL run as a
//! POS would run it.

use std::sync::atomic::{AtomicUsize, Ordering};

use herald::config::DatabaseUrl;
use herald::store::{Message, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
    /// MariaDB (or MySQL), through Herald's `mysql://` backend.
    Mariadb,
}

/// The server tests create their databases on. CI provides it; a missing
/// server fails the tests (it does not skip them).
pub(crate) fn pg_admin_url() -> String {
    std::env::var("HERALD_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The MariaDB (or MySQL) server tests create their databases on; required
/// like PostgreSQL.
pub(crate) fn mysql_admin_url() -> String {
    std::env::var("HERALD_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// A pool on a MariaDB test database for the tests' own statements:
/// utf8mb4, in UTC (whatever zone the server is set to meanwhile).
pub(crate) async fn mysql_pool(url: &str) -> sqlx::MySqlPool {
    mysql_pool_in(url, Some("+00:00")).await
}

/// A pool as a POS's own code would open it: utf8mb4, in the server's
/// time zone (`@@global.time_zone`).
pub(crate) async fn mysql_pool_in_server_zone(url: &str) -> sqlx::MySqlPool {
    mysql_pool_in(url, None).await
}

async fn mysql_pool_in(url: &str, zone: Option<&str>) -> sqlx::MySqlPool {
    use std::str::FromStr;
    let opts = sqlx::mysql::MySqlConnectOptions::from_str(url)
        .expect("MySQL URL")
        .charset("utf8mb4")
        .timezone(zone.map(str::to_owned));
    sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(2)
        .connect_with(opts)
        .await
        .expect("connect")
}

/// A store on `url`.
pub(crate) async fn connect(url: &str, max_connections: u32) -> herald::store::Result<Store> {
    Store::connect(&DatabaseUrl::parse(url).expect("a database URL"), max_connections).await
}

fn url_for(admin: &str, db: &str) -> String {
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    format!("{base}/{db}")
}

/// A database of its own for one test; dropped (PostgreSQL) or deleted
/// (SQLite) afterwards.
pub(crate) struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub store: Store,
    pub dir: tempfile::TempDir,
    server_db: Option<String>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    pub(crate) async fn new(backend: Backend) -> TestDb {
        let mut db = TestDb::empty(backend).await;
        db.store.migrate().await.expect("migrate");
        db
    }

    /// A database with nothing in it: Herald has not created its tables (a
    /// POS's database, before `herald migrate`).
    pub(crate) async fn empty(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, server_db) = match backend {
            Backend::Sqlite => (format!("sqlite://{}", dir.path().join("herald.db").display()), None),
            Backend::Postgres | Backend::Mariadb => {
                let name = format!(
                    "herald_t_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    fastrand::u32(..)
                );
                let (admin_url, what, hint) = if backend == Backend::Postgres {
                    (
                        pg_admin_url(),
                        "PostgreSQL",
                        "Start it (pg_ctlcluster <version> main start) or set HERALD_TEST_PG_URL.",
                    )
                } else {
                    (
                        mysql_admin_url(),
                        "MariaDB",
                        "Start it (service mariadb start) or set HERALD_TEST_MYSQL_URL.",
                    )
                };
                let admin = connect(&admin_url, 2).await.unwrap_or_else(|e| {
                    panic!("{what} is required for the tests and is not reachable at {admin_url}: {e}. {hint}")
                });
                admin
                    .execute_raw(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await;
                (url_for(&admin_url, &name), Some(name))
            }
        };
        let store = connect(&url, 8).await.expect("connect test database");
        TestDb {
            backend,
            url,
            store,
            dir,
            server_db,
        }
    }

    /// Another, independent connection pool on the same database (as a second
    /// process would have).
    pub(crate) async fn second_store(&self) -> Store {
        connect(&self.url, 4).await.expect("second store")
    }

    /// End every other connection to this test's database, as a server
    /// restart or a network failure would; how many were ended.
    pub(crate) async fn terminate_other_connections(&self) -> i64 {
        match self.backend {
            Backend::Postgres => self
                .query("SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
                .await[0]["n"]
                .as_i64()
                .expect("a count"),
            Backend::Mariadb => {
                let pool = mysql_pool(&self.url).await;
                let ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT CAST(id AS SIGNED) FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()",
                )
                .fetch_all(&pool)
                .await
                .expect("processlist");
                let mut ended = 0;
                for id in ids {
                    // A connection may have closed meanwhile.
                    if sqlx::query(&format!("KILL CONNECTION {id}")).execute(&pool).await.is_ok() {
                        ended += 1;
                    }
                }
                pool.close().await;
                ended
            }
            Backend::Sqlite => panic!("SQLite has no connections to end"),
        }
    }

    /// Run one statement as the POS (or an operator with psql) would.
    pub(crate) async fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.expect("connect");
                sqlx::query(sql).execute(&pool).await.expect("statement");
                pool.close().await;
            }
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.expect("connect");
                sqlx::query(sql).execute(&pool).await.expect("statement");
                pool.close().await;
            }
            Backend::Mariadb => {
                let pool = mysql_pool(&self.url).await;
                sqlx::query(sql).execute(&pool).await.expect("statement");
                pool.close().await;
            }
        }
    }

    /// A timestamp literal for this backend's SQL, from Herald's text
    /// (`2026-03-05T12:00:00.000Z`): MySQL takes `'2026-03-05 12:00:00.000'`.
    pub(crate) fn ts(&self, iso: &str) -> String {
        match self.backend {
            Backend::Mariadb => format!("'{}'", iso.trim_end_matches('Z').replace('T', " ")),
            Backend::Sqlite | Backend::Postgres => format!("'{iso}'"),
        }
    }

    /// Insert a row with plain SQL, as a POS would.
    pub(crate) async fn insert_sql(&self, channel: &str, recipient: &str, body: &str) -> i64 {
        self.insert_sql_with(channel, recipient, None, body).await
    }

    pub(crate) async fn insert_sql_with(
        &self,
        channel: &str,
        recipient: &str,
        subject: Option<&str>,
        body: &str,
    ) -> i64 {
        let q = |s: &str| s.replace('\'', "''");
        let subject = subject
            .map(|s| format!("'{}'", q(s)))
            .unwrap_or_else(|| "NULL".to_owned());
        self.store
            .execute_raw(&format!(
                "INSERT INTO notification_messages (channel, recipient, subject, body) VALUES ('{}', '{}', {subject}, '{}')",
                q(channel),
                q(recipient),
                q(body)
            ))
            .await
            .expect("insert");
        self.max_id().await
    }

    pub(crate) async fn max_id(&self) -> i64 {
        let rows = self
            .store
            .list(&herald::store::ListFilter {
                limit: 1,
                ..Default::default()
            })
            .await
            .expect("list");
        rows.first().map(|m| m.id).unwrap_or(0)
    }

    pub(crate) async fn get(&self, id: i64) -> Message {
        self.store.get(id).await.expect("get message")
    }

    /// Insert `n` SMS rows in one statement.
    pub(crate) async fn insert_many(&self, n: usize) {
        for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
            let values: Vec<String> = chunk
                .iter()
                .map(|i| format!("('sms', '+1415{}', 'msg {i}')", 2_000_000 + i))
                .collect();
            self.store
                .execute_raw(&format!(
                    "INSERT INTO notification_messages (channel, recipient, body) VALUES {}",
                    values.join(", ")
                ))
                .await
                .expect("bulk insert");
        }
    }

    /// Run a query as the POS would (its own SQL) and return each row as a
    /// JSON object of column → value (timestamps as text).
    pub(crate) async fn query(&self, sql: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        use sqlx::{Column, Row};
        match self.backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.expect("connect");
                let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT row_to_json(q)::text FROM ({sql}) AS q"))
                    .fetch_all(&pool)
                    .await
                    .expect("query");
                pool.close().await;
                rows.iter()
                    .map(|r| serde_json::from_str(r).expect("row JSON"))
                    .collect()
            }
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.expect("connect");
                let rows = sqlx::query(sql).fetch_all(&pool).await.expect("query");
                pool.close().await;
                rows.iter()
                    .map(|row| {
                        row.columns()
                            .iter()
                            .map(|c| {
                                let i = c.ordinal();
                                let v = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                                    serde_json::json!(v)
                                } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                                    serde_json::json!(v)
                                } else {
                                    serde_json::json!(row.try_get::<Option<String>, _>(i).expect("text column"))
                                };
                                (c.name().to_owned(), v)
                            })
                            .collect()
                    })
                    .collect()
            }
            Backend::Mariadb => {
                let pool = mysql_pool(&self.url).await;
                let rows = sqlx::query(sql).fetch_all(&pool).await.expect("query");
                pool.close().await;
                rows.iter()
                    .map(|row| {
                        row.columns()
                            .iter()
                            .map(|c| {
                                let i = c.ordinal();
                                let v = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                                    serde_json::json!(v)
                                } else if let Ok(v) = row.try_get::<Option<u64>, _>(i) {
                                    serde_json::json!(v)
                                } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                                    serde_json::json!(v)
                                } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                                    serde_json::json!(v)
                                } else if let Ok(v) = row.try_get::<Option<chrono::NaiveDateTime>, _>(i) {
                                    serde_json::json!(v.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string()))
                                } else if let Ok(v) = row.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(i) {
                                    serde_json::json!(v.map(|t| t.to_rfc3339()))
                                } else {
                                    let v: Option<Vec<u8>> = row.try_get(i).expect("a column of text, number or time");
                                    serde_json::json!(v.map(|b| String::from_utf8_lossy(&b).into_owned()))
                                };
                                (c.name().to_owned(), v)
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }

    pub(crate) async fn count_status(&self, status: &str) -> i64 {
        self.store
            .counts()
            .await
            .expect("counts")
            .iter()
            .filter(|c| c.status == status)
            .map(|c| c.count)
            .sum()
    }
}

impl Drop for TestDb {
    /// SQLite files go with their temporary folder. PostgreSQL databases
    /// are left for `scripts/test` to drop when the run ends: dropping one
    /// forces a server checkpoint, and with many tests at once those
    /// checkpoints made the suite several times slower. Set
    /// `HERALD_TEST_DROP_DATABASES=1` to drop each one as its test ends.
    fn drop(&mut self) {
        if std::env::var_os("HERALD_TEST_DROP_DATABASES").is_none() {
            return;
        }
        if let Some(name) = self.server_db.take() {
            // Drop runs outside async; use a small runtime on a plain thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(admin) = connect(&pg_admin_url(), 1).await {
                        let _ = admin
                            .execute_raw(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                        admin.close().await;
                    }
                    if let Ok(admin) = connect(&mysql_admin_url(), 1).await {
                        let _ = admin.execute_raw(&format!("DROP DATABASE IF EXISTS {name}")).await;
                        admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}
