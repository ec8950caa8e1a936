//! Shared test fixtures: a fresh database per test on either backend, a
//! provider scripted by a closure, and helpers to run the processor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use herald::clock::{Clock, ManualClock, Random};
use herald::domain::OutgoingMessage;
use herald::processor::{Mode, Processor, ProcessorConfig, RetryPolicy, RunSummary, Shutdown};
use herald::providers::{BoxFuture, Provider, Providers, Receipt, SendError};
use herald::store::{Message, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The server tests create their databases on. CI provides it; a missing
/// server fails the tests (it does not skip them).
pub fn pg_admin_url() -> String {
    std::env::var("HERALD_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn pg_url_for(db: &str) -> String {
    let admin = pg_admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{db}")
}

/// A database of its own for one test; dropped (PostgreSQL) or deleted
/// (SQLite) afterwards.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub store: Store,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
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
                let admin = Store::connect(&pg_admin_url(), 2).await.unwrap_or_else(|e| {
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
        let store = Store::connect(&url, 8).await.expect("connect test database");
        store.migrate().await.expect("migrate");
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
    pub async fn second_store(&self) -> Store {
        Store::connect(&self.url, 4).await.expect("second store")
    }

    /// Insert a row with plain SQL, as a POS would.
    pub async fn insert_sql(&self, channel: &str, recipient: &str, body: &str) -> i64 {
        self.insert_sql_with(channel, recipient, None, body).await
    }

    pub async fn insert_sql_with(&self, channel: &str, recipient: &str, subject: Option<&str>, body: &str) -> i64 {
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

    pub async fn max_id(&self) -> i64 {
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

    pub async fn get(&self, id: i64) -> Message {
        self.store.get(id).await.expect("get message")
    }

    /// Insert `n` SMS rows in one statement.
    pub async fn insert_many(&self, n: usize) {
        for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
            let values: Vec<String> = chunk
                .iter()
                .map(|i| format!("('sms', '+1555{:07}', 'msg {i}')", i))
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

    pub async fn count_status(&self, status: &str) -> i64 {
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
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop runs outside async; use a small runtime on a plain thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(admin) = Store::connect(&pg_admin_url(), 1).await {
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

type Script = dyn Fn(&OutgoingMessage, usize) -> Result<Receipt, SendError> + Send + Sync;

/// A provider whose answer is decided by a closure of (message, call number
/// for that message, from 1); it records every call.
#[derive(Clone)]
pub struct ScriptedProvider {
    name: String,
    script: Arc<Script>,
    calls: Arc<Mutex<Vec<(i64, u32)>>>,
    delay: Duration,
}

impl ScriptedProvider {
    pub fn new(script: impl Fn(&OutgoingMessage, usize) -> Result<Receipt, SendError> + Send + Sync + 'static) -> Self {
        ScriptedProvider {
            name: "test".into(),
            script: Arc::new(script),
            calls: Arc::default(),
            delay: Duration::ZERO,
        }
    }

    pub fn ok() -> Self {
        ScriptedProvider::new(|m, _| Ok(Receipt::new(format!("T-{}", m.id))))
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn calls(&self) -> Vec<(i64, u32)> {
        self.calls.lock().unwrap().clone()
    }

    pub fn calls_for(&self, id: i64) -> usize {
        self.calls.lock().unwrap().iter().filter(|(m, _)| *m == id).count()
    }

    /// How many times each message was sent.
    pub fn per_message(&self) -> HashMap<i64, usize> {
        let mut m = HashMap::new();
        for (id, _) in self.calls() {
            *m.entry(id).or_default() += 1;
        }
        m
    }
}

impl Provider for ScriptedProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, msg: &'a OutgoingMessage) -> BoxFuture<'a, Result<Receipt, SendError>> {
        Box::pin(async move {
            let n = {
                let mut calls = self.calls.lock().unwrap();
                calls.push((msg.id, msg.attempt));
                calls.iter().filter(|(m, _)| *m == msg.id).count()
            };
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            (self.script)(msg, n)
        })
    }
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

pub fn test_config(worker: &str) -> ProcessorConfig {
    ProcessorConfig {
        worker_id: worker.to_owned(),
        batch_size: 50,
        limits: std::collections::HashMap::new(),
        lease: Duration::from_secs(60),
        send_timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(20),
        retry: RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(600),
            max_rate_limit_wait: Duration::from_secs(3600),
        },
    }
}

/// Randomness fixed at 0: backoff is exactly half the nominal delay.
pub fn zero_random() -> Random {
    Arc::new(|| 0.0)
}

pub fn processor(store: &Store, provider: &ScriptedProvider, clock: &ManualClock, worker: &str) -> Arc<Processor> {
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    Arc::new(Processor::new(
        store.clone(),
        Providers::all(Arc::new(provider.clone())),
        clock,
        zero_random(),
        test_config(worker),
    ))
}

/// `herald process` once, in-process.
pub async fn run_once(p: &Arc<Processor>) -> RunSummary {
    p.run(Mode::Once, Shutdown::never()).await.expect("processor run")
}

/// Define one async test body and run it on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($(async fn $name:ident($db:ident: TestDb) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                async fn body($db: $crate::common::TestDb) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    body($crate::common::TestDb::new($crate::common::Backend::Sqlite).await).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    body($crate::common::TestDb::new($crate::common::Backend::Postgres).await).await
                }
            }
        )*
    };
}
