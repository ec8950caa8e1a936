//! Single-message API requests are written in groups: while one insert is
//! in flight, the requests that arrive meanwhile queue up and go into the
//! next multi-row insert, one commit for all of them. Under load this turns
//! thousands of tiny transactions into a few large ones; when idle, a request
//! is inserted at once. If a group's insert fails, each request in it is
//! inserted on its own, so one bad request never fails another.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Notify};

use crate::clock::Clock;
use crate::domain::NewMessage;
use crate::store::{Message, Store, StoreError};

type Job = (NewMessage, oneshot::Sender<Result<Message, StoreError>>);

/// Why a message could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Closed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub(super) struct Enqueuer {
    tx: mpsc::Sender<Job>,
}

/// Most rows per insert.
const MAX_GROUP: usize = 500;

impl Enqueuer {
    /// `wake` is notified after each insert (the in-process processor).
    pub(super) fn start(store: Store, clock: Arc<dyn Clock>, wake: Option<Arc<Notify>>) -> Enqueuer {
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
                    }
                    Err(e) if jobs.len() > 1 => {
                        tracing::warn!(error = %e, count = jobs.len(), "a grouped insert failed; inserting one by one");
                        for (msg, reply) in jobs.drain(..) {
                            let _ = reply.send(store.enqueue(&msg, clock.now()).await);
                        }
                    }
                    Err(e) => {
                        if let Some((_, reply)) = jobs.pop() {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
                if let Some(w) = &wake {
                    w.notify_one();
                }
            }
        });
        Enqueuer { tx }
    }

    pub(super) async fn enqueue(&self, msg: NewMessage) -> Result<Message, EnqueueError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send((msg, reply)).await.map_err(|_| EnqueueError::Closed)?;
        Ok(rx.await.map_err(|_| EnqueueError::Closed)??)
    }
}
