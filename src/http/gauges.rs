//! The queue's gauges for `/metrics` (messages by status and channel, the
//! oldest due message) come from whole-table queries. They are served from
//! a snapshot at most `METRICS_CACHE_SECONDS` old: a scrape that finds it
//! stale starts one refresh in the background and answers with what it
//! has, so scrapes never wait for each other or load the database more
//! than once per period, however many scrapers there are. (Only the very
//! first scrape waits, briefly, for the first snapshot.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::store::{Count, Store};

/// How long the first scrape waits for the first snapshot.
const FIRST_WAIT: Duration = Duration::from_secs(5);

/// One reading of the queue.
#[derive(Debug, Clone)]
pub(super) struct Snapshot {
    /// `None`: the query failed.
    pub counts: Option<Vec<Count>>,
    /// `Err`: the query failed; `Ok(None)`: nothing is due.
    pub oldest_due: Result<Option<DateTime<Utc>>, ()>,
    pub taken: Instant,
}

pub(super) struct QueueGauges {
    max_age: Duration,
    snapshot: RwLock<Option<Snapshot>>,
    refreshing: AtomicBool,
    refreshes: AtomicU64,
    taken: tokio::sync::watch::Sender<u64>,
}

impl QueueGauges {
    pub(super) fn new(max_age: Duration) -> Self {
        QueueGauges {
            max_age,
            snapshot: RwLock::new(None),
            refreshing: AtomicBool::new(false),
            refreshes: AtomicU64::new(0),
            taken: tokio::sync::watch::channel(0).0,
        }
    }

    /// Snapshots taken so far (each is one round of queries).
    pub(super) fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    fn current(&self) -> Option<Snapshot> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The latest snapshot, starting a refresh if it is stale.
    pub(super) async fn get(self: &Arc<Self>, store: &Store, now: DateTime<Utc>) -> Option<Snapshot> {
        let current = self.current();
        let stale = current.as_ref().is_none_or(|s| s.taken.elapsed() >= self.max_age);
        let mut first = self.taken.subscribe();
        if stale && !self.refreshing.swap(true, Ordering::AcqRel) {
            let this = self.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let counts = store
                    .counts()
                    .await
                    .map_err(|e| tracing::warn!(error = %e, "metrics: could not count messages"))
                    .ok();
                let oldest_due = store
                    .oldest_due(now)
                    .await
                    .map_err(|e| tracing::warn!(error = %e, "metrics: could not read the oldest due message"));
                *this.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Some(Snapshot {
                    counts,
                    oldest_due,
                    taken: Instant::now(),
                });
                this.refreshes.fetch_add(1, Ordering::Relaxed);
                this.refreshing.store(false, Ordering::Release);
                this.taken.send_modify(|n| *n += 1);
            });
        }
        if current.is_some() {
            return current;
        }
        let _ = tokio::time::timeout(FIRST_WAIT, first.changed()).await;
        self.current()
    }
}
