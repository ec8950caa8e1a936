//! Single-message API requests are written in groups: while one insert is
//! in flight, the requests that arrive meanwhile queue up and go into the
//! next multi-row insert, one commit for all of them. Under load this turns
//! thousands of tiny transactions into a few large ones; when idle, a request
//! is inserted at once.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Notify};

use crate::clock::Clock;
use crate::domain::NewMessage;
use crate::store::{Message, Store, StoreError};

type Job = (NewMessage, oneshot::Sender<Result<Message, String>>);

#[derive(Clone)]
pub struct Enqueuer {
    tx: mpsc::Sender<Job>,
}

/// Most rows per insert.
const MAX_GROUP: usize = 500;

impl Enqueuer {
    /// `wake` is notified after each insert (the in-process processor).
    pub fn start(store: Store, clock: Arc<dyn Clock>, wake: Option<Arc<Notify>>) -> Enqueuer {
        let (tx, mut rx) = mpsc::channel::<Job>(4 * MAX_GROUP);
        tokio::spawn(async move {
            let mut jobs = Vec::with_capacity(MAX_GROUP);
            while rx.recv_many(&mut jobs, MAX_GROUP).await > 0 {
                let msgs: Vec<NewMessage> = jobs.iter().map(|(m, _)| m.clone()).collect();
                match store.enqueue_many(&msgs, clock.now()).await {
                    Ok(stored) => {
                        for ((_, reply), m) in jobs.drain(..).zip(stored) {
                            let _ = reply.send(Ok(m));
                        }
                        if let Some(w) = &wake {
                            w.notify_one();
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, count = jobs.len(), "queueing messages failed");
                        for (_, reply) in jobs.drain(..) {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
            }
        });
        Enqueuer { tx }
    }

    pub async fn enqueue(&self, msg: NewMessage) -> Result<Message, StoreError> {
        let (reply, rx) = oneshot::channel();
        let closed = || StoreError::Database(sqlx::Error::PoolClosed);
        self.tx.send((msg, reply)).await.map_err(|_| closed())?;
        match rx.await.map_err(|_| closed())? {
            Ok(m) => Ok(m),
            Err(text) => Err(StoreError::Database(sqlx::Error::Protocol(text))),
        }
    }
}
