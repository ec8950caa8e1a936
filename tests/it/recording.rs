//! Never send what cannot be recorded: the start-up check, and a table that
//! starts refusing outcome writes in the middle of a run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use herald::clock::ManualClock;
use herald::domain::{Channel, OutgoingMessage};
use herald::processor::{Mode, Processor, Shutdown};
use herald::providers::{BoxFuture, Provider, Providers, Receipt, SendError};
use herald::ratelimit::ChannelLimits;

use crate::support::*;

/// SQL that makes the table refuse outcomes while `block_outcomes` has a row.
fn blocking_trigger(db: &TestDb) -> Vec<&'static str> {
    match db.backend {
        Backend::Postgres => vec![
            "CREATE TABLE block_outcomes (x int)",
            "CREATE FUNCTION block_outcomes() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.status IN ('sent', 'failed') AND EXISTS (SELECT 1 FROM block_outcomes) THEN
                     RAISE EXCEPTION 'outcomes are blocked by the test';
                 END IF;
                 RETURN NEW;
             END $$",
            "CREATE TRIGGER block_outcomes BEFORE UPDATE ON notification_messages
             FOR EACH ROW EXECUTE FUNCTION block_outcomes()",
        ],
        Backend::Sqlite => vec![
            "CREATE TABLE block_outcomes (x int)",
            "CREATE TRIGGER block_outcomes BEFORE UPDATE OF status ON notification_messages
             WHEN NEW.status IN ('sent', 'failed') AND EXISTS (SELECT 1 FROM block_outcomes)
             BEGIN SELECT RAISE(ABORT, 'outcomes are blocked by the test'); END",
        ],
        Backend::Mariadb => vec![
            "CREATE TABLE block_outcomes (x int)",
            "CREATE TRIGGER block_outcomes BEFORE UPDATE ON notification_messages
             FOR EACH ROW BEGIN
                 IF NEW.status IN ('sent', 'failed') AND EXISTS (SELECT 1 FROM block_outcomes) THEN
                     SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'outcomes are blocked by the test';
                 END IF;
             END",
        ],
    }
}

/// Accepts the first `open` messages at once; the rest wait for the gate.
#[derive(Clone)]
struct GatedProvider {
    open: usize,
    calls: Arc<Mutex<Vec<i64>>>,
    started: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Provider for GatedProvider {
    fn name(&self) -> &'static str {
        "gated"
    }

    fn send<'a>(&'a self, msg: &'a OutgoingMessage) -> BoxFuture<'a, Result<Receipt, SendError>> {
        Box::pin(async move {
            if self.started.fetch_add(1, Ordering::SeqCst) >= self.open {
                let _permit = self.gate.acquire().await.expect("gate");
            }
            self.calls.lock().unwrap().push(msg.id);
            Ok(Receipt::new(format!("G-{}", msg.id)))
        })
    }
}

every_backend! {
    async fn nothing_is_sent_when_outcomes_cannot_be_recorded(db: TestDb) {
        for sql in blocking_trigger(&db) {
            db.store.execute_raw(sql).await.unwrap();
        }
        db.store.execute_raw("INSERT INTO block_outcomes VALUES (1)").await.unwrap();
        db.insert_many(5).await;
        let provider = ScriptedProvider::ok();
        let clock = ManualClock::new(t0());
        let err = processor(&db.store, &provider, &clock, "w1")
            .run(Mode::Once, Shutdown::never())
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("nothing was sent"), "{err:#}");
        assert!(format!("{err:#}").contains("blocked by the test"), "{err:#}");
        assert!(provider.calls().is_empty());
        assert_eq!(db.count_status("pending").await, 5, "nothing was claimed");
    }

    async fn an_outcome_that_cannot_be_written_is_never_sent_twice(db: TestDb) {
        const N: usize = 20;
        for sql in blocking_trigger(&db) {
            db.store.execute_raw(sql).await.unwrap();
        }
        db.insert_many(N).await;
        let provider = GatedProvider {
            open: 5,
            calls: Arc::default(),
            started: Arc::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        };
        let clock = ManualClock::new(t0());
        let mut cfg = test_config("w1");
        cfg.limits.insert(Channel::Sms, ChannelLimits { rate: 0.0, burst: 1, concurrency: 1 });
        let p = Arc::new(Processor::new(
            db.store.clone(),
            Providers::all(Arc::new(provider.clone())),
            Arc::new(clock.clone()),
            zero_random(),
            cfg,
        ));
        let (stop, shutdown) = Shutdown::new();
        let run = tokio::spawn({
            let p = p.clone();
            async move { p.run(Mode::Watch, shutdown).await }
        });
        // Five go out; then the table starts refusing outcomes, and the rest
        // are let through.
        wait_until("five sends", || async { provider.calls.lock().unwrap().len() >= 5 }).await;
        db.store.execute_raw("INSERT INTO block_outcomes VALUES (1)").await.unwrap();
        provider.gate.add_permits(N);
        wait_until("every claimed message to be sent", || async { provider.calls.lock().unwrap().len() == N }).await;
        // Claiming stopped; a stop request is honoured promptly and the
        // summary says what was not recorded.
        stop.trigger();
        let summary = tokio::time::timeout(std::time::Duration::from_secs(20), run)
            .await
            .expect("stopped within seconds")
            .unwrap()
            .unwrap();
        assert_eq!(summary.sent, N as u64);
        assert!(summary.unrecorded > 0, "{summary:?}");
        // The table accepts writes again; the leases run out; another run
        // records the outcomes from the attempt history instead of sending.
        db.store.execute_raw("DELETE FROM block_outcomes").await.unwrap();
        clock.advance(std::time::Duration::from_secs(120));
        let again = ScriptedProvider::ok();
        run_once(&processor(&db.store, &again, &clock, "w2")).await;
        assert!(again.calls().is_empty(), "sent again: {:?}", again.calls());
        assert_eq!(db.count_status("sent").await, N as i64);
        let calls = provider.calls.lock().unwrap().clone();
        let unique: std::collections::HashSet<_> = calls.iter().collect();
        assert_eq!(unique.len(), calls.len(), "a message was sent twice");
        for m in db.store.list(&herald::store::ListFilter { limit: 100, ..Default::default() }).await.unwrap() {
            assert_eq!(m.provider_message_id, Some(format!("G-{}", m.id)), "{m:?}");
            assert_eq!(m.attempts, 1, "{m:?}");
        }
    }
}
