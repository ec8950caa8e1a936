//! A database of its own for each test, on either backend, and SQL run as a
//! POS would run it.

use std::sync::atomic::{AtomicUsize, Ordering};

use herald::config::DatabaseUrl;
use herald::store::{Message, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The server tests create their databases on. CI provides it; a missing
/// server fails the tests (it does not skip them).
pub(crate) fn pg_admin_url() -> String {
    std::env::var("HERALD_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A store on `url`.
pub(crate) async fn connect(url: &str, max_connections: u32) -> herald::store::Result<Store> {
    Store::connect(&DatabaseUrl::parse(url).expect("a database URL"), max_connections).await
}

fn pg_url_for(db: &str) -> String {
    let admin = pg_admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{db}")
}

/// A database of its own for one test; dropped (PostgreSQL) or deleted
/// (SQLite) afterwards.
pub(crate) struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub store: Store,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
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
        let (url, pg_name) = match backend {
            Backend::Sqlite => (format!("sqlite://{}", dir.path().join("herald.db").display()), None),
            Backend::Postgres => {
                let name = format!(
                    "herald_t_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    fastrand::u32(..)
                );
                let admin = connect(&pg_admin_url(), 2).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is required for the tests and is not reachable at {}: {e}. \
                         Start it (pg_ctlcluster <version> main start) or set HERALD_TEST_PG_URL.",
                        pg_admin_url()
                    )
                });
                admin
                    .execute_raw(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await;
                (pg_url_for(&name), Some(name))
            }
        };
        let store = connect(&url, 8).await.expect("connect test database");
        TestDb {
            backend,
            url,
            store,
            dir,
            pg_name,
        }
    }

    /// Another, independent connection pool on the same database (as a second
    /// process would have).
    pub(crate) async fn second_store(&self) -> Store {
        connect(&self.url, 4).await.expect("second store")
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
        if let Some(name) = self.pg_name.take() {
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
                });
            })
            .join();
        }
    }
}
