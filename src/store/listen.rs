//! Wake-ups from the database. On PostgreSQL, triggers NOTIFY when rows
//! arrive or are put back to pending (whoever wrote them); a listener turns
//! that into a wake-up. Other backends have no such signal: processors poll.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::backend::Backend;
use super::sql::postgres::NOTIFY_CHANNEL;
use super::Store;

impl Store {
    /// Notify `wake` whenever the database signals new or re-queued
    /// messages, until the returned task is aborted. `None` where the
    /// backend cannot signal. A lost connection is re-established (and
    /// wakes once, since a signal may have been missed meanwhile).
    pub fn listen(&self, wake: Arc<Notify>) -> Option<JoinHandle<()>> {
        let Backend::Postgres { pool } = &self.backend else {
            return None;
        };
        let pool = pool.clone();
        Some(tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; polling meanwhile");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN failed; polling meanwhile");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
                loop {
                    match listener.recv().await {
                        Ok(_) => wake.notify_one(),
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                            wake.notify_one();
                            break;
                        }
                    }
                }
            }
        }))
    }
}
