//! Crash safety, proven by killing real processes: `herald process --watch`
//! is SIGKILLed mid-run (twice), restarted, and every message ends sent:
//! exactly once where the provider can be asked (a look-up), otherwise
//! once except those in flight at a kill, each of which shows both calls
//! in its attempt history. A PostgreSQL that drops Herald's connections
//! mid-drain costs nothing either.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

fn outbox_counts(path: &std::path::Path) -> HashMap<i64, usize> {
    let mut counts = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return counts;
    };
    for line in text.lines() {
        // A line cut by the kill is not a send; skip it.
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            *counts.entry(v["id"].as_i64().unwrap()).or_default() += 1;
        }
    }
    counts
}

fn lines_in(path: &std::path::Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

/// The ids leased to some worker right now.
async fn in_flight_now(db: &TestDb) -> Vec<i64> {
    db.store
        .list(&herald::store::ListFilter {
            status: Some(herald::domain::MessageStatus::Processing),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect()
}

async fn open_count(db: &TestDb) -> i64 {
    db.count_status("pending").await + db.count_status("processing").await
}

every_backend! {
    async fn sigkill_mid_run_loses_nothing_and_duplicates_only_in_flight(db: TestDb) {
        const N: usize = 6000;
        db.insert_many(N).await;
        let dir = db.dir.path();
        let outbox = dir.join("outbox.jsonl");
        let watch = |lease: &str| {
            let mut c = herald(&db, dir);
            c.env("LOG_OUTBOX", &outbox).env("LEASE_SECONDS", lease).env("BATCH_SIZE", "50").env("POLL_INTERVAL_MS", "20")
                .args(["process", "--watch"]).stdout(Stdio::null()).stderr(Stdio::null());
            c
        };
        // Two workers in turn are killed well into the queue.
        let mut in_flight: HashSet<i64> = HashSet::new();
        for (i, until) in [N / 4, N / 2].into_iter().enumerate() {
            let mut worker = watch("2").spawn().unwrap();
            wait_until_blocking("the worker to get well into the queue", Duration::from_secs(60), || {
                assert!(worker.try_wait().unwrap().is_none(), "worker {i} exited early");
                lines_in(&outbox) >= until
            });
            worker.kill().unwrap(); // SIGKILL
            worker.wait().unwrap();
            let caught: Vec<i64> = in_flight_now(&db).await;
            assert!(!caught.is_empty(), "kill {i} caught messages in flight");
            in_flight.extend(caught);
        }
        let sent_before = db.count_status("sent").await;
        assert!(sent_before > 0 && (sent_before as usize) < N, "killed mid-run (sent {sent_before} of {N})");

        // Restart; the dead workers' leases expire and their messages are sent.
        let mut last = watch("30").spawn().unwrap();
        wait_until_within("the queue to drain after the restart", Duration::from_secs(120), || async { open_count(&db).await == 0 }).await;
        sigterm(&last);
        let status = wait_exit(&mut last, Duration::from_secs(30));
        assert!(status.success(), "SIGTERM is a clean stop: {status:?}");

        assert_eq!(db.count_status("sent").await, N as i64, "every message ends sent");
        let counts = outbox_counts(&outbox);
        assert_eq!(counts.len(), N, "every message was sent at least once");
        let twice: Vec<i64> = counts.iter().filter(|(_, n)| **n > 1).map(|(id, _)| *id).collect();
        for id in &twice {
            assert!(in_flight.contains(id), "message {id} sent twice but was not in flight at a kill");
            // The history shows both calls: the killed claim's, as unknown.
            let outcomes: Vec<String> = db.store.attempts(*id).await.unwrap().into_iter().map(|a| a.outcome).collect();
            assert!(outcomes.len() >= counts[id], "message {id} was sent {} times; its history: {outcomes:?}", counts[id]);
            assert_eq!(outcomes.last().map(String::as_str), Some("sent"), "{outcomes:?}");
            assert!(outcomes.iter().any(|o| o == "unknown"), "{outcomes:?}");
        }
        eprintln!("{} in flight at the kills, {} sent twice (each visible in its history)", in_flight.len(), twice.len());
    }

    async fn sigkill_with_a_provider_look_up_sends_nothing_twice(db: TestDb) {
        const N: usize = 3000;
        db.insert_many(N).await;
        let fake = FakeCustom::start().await;
        let dir = db.dir.path();
        let watch = || {
            let mut c = herald(&db, dir);
            c.env("SMS_PROVIDER", "custom")
                .env("CUSTOM_SMS_URL", &fake.url)
                .env("CUSTOM_LOOKUP_URL", &fake.lookup_url)
                .env("CUSTOM_PROVIDER_SECRET", CUSTOM_SECRET)
                .env("LEASE_SECONDS", "2")
                .env("POLL_INTERVAL_MS", "20")
                .args(["process", "--watch"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            tokio::process::Command::from(c)
        };
        let accepted = || fake.state.accepted.lock().unwrap().len();
        for (i, until) in [N / 4, N / 2].into_iter().enumerate() {
            let mut worker = watch().spawn().unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while accepted() < until {
                assert!(worker.try_wait().unwrap().is_none(), "worker {i} exited early");
                assert!(std::time::Instant::now() < deadline, "worker {i} is not getting into the queue");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            worker.kill().await.unwrap(); // SIGKILL
        }
        let caught = in_flight_now(&db).await.len();
        let mut last = watch().spawn().unwrap();
        wait_until_within("the queue to drain after the restart", Duration::from_secs(120), || async { open_count(&db).await == 0 }).await;
        last.kill().await.unwrap();
        assert_eq!(db.count_status("sent").await, N as i64, "every message ends sent");
        let mut per_id: HashMap<String, usize> = HashMap::new();
        for r in fake.state.requests() {
            *per_id.entry(r["id"].to_string()).or_default() += 1;
        }
        assert_eq!(per_id.len(), N, "every message reached the provider");
        let twice: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "sent twice despite the look-up: {twice:?}");
        assert!(fake.state.violations().is_empty(), "{:?}", fake.state.violations());
        eprintln!(
            "{caught} in flight at the last kill, {} look-ups, 0 sent twice",
            fake.state.lookups.load(std::sync::atomic::Ordering::Relaxed)
        );
    }

    async fn watch_picks_up_direct_inserts_and_stops_cleanly(db: TestDb) {
        let dir = db.dir.path();
        let outbox = dir.join("outbox.jsonl");
        // A long poll interval: on PostgreSQL only the insert trigger's NOTIFY
        // can wake the worker in time.
        let poll = if db.backend == Backend::Postgres { "60000" } else { "50" };
        let mut child = herald(&db, dir)
            .env("LOG_OUTBOX", &outbox)
            .env("POLL_INTERVAL_MS", poll)
            .args(["process", "--watch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Give it a moment to start listening.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let id = db.insert_sql("sms", "+14153234567", "Your order is ready").await;
        wait_until("the direct insert to be sent", || async { db.get(id).await.status == "sent" }).await;
        // A manual retry wakes it too.
        db.store.execute_raw(&format!("UPDATE notification_messages SET status = 'failed' WHERE id = {id}")).await.unwrap();
        db.store.execute_raw(&format!("UPDATE notification_messages SET status = 'pending' WHERE id = {id}")).await.unwrap();
        wait_until("the manual retry to be sent", || async { db.get(id).await.status == "sent" }).await;
        assert_eq!(outbox_counts(&outbox)[&id], 2);
        sigterm(&child);
        assert!(wait_exit(&mut child, Duration::from_secs(20)).success());
    }
}

server_backends! {
    async fn dropping_heralds_connections_mid_drain_loses_nothing(db: TestDb) {
    const N: usize = 4000;
    db.insert_many(N).await;
    let dir = db.dir.path();
    let outbox = dir.join("outbox.jsonl");
    let mut worker = herald(&db, dir)
        .env("LOG_OUTBOX", &outbox)
        .env("LEASE_SECONDS", "3")
        .env("POLL_INTERVAL_MS", "20")
        .args(["process", "--watch"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Each time another tenth of the queue is out, the server ends every
    // connection Herald has.
    let mut terminated = 0;
    for tenth in 1..=5 {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while lines_in(&outbox) < N * tenth / 10 {
            assert!(worker.try_wait().unwrap().is_none(), "the worker exited");
            assert!(
                std::time::Instant::now() < deadline,
                "the worker is not getting further into the queue"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        terminated += db.terminate_other_connections().await;
    }
    assert!(terminated > 0, "Herald's connections were terminated");
    wait_until_within("the queue to drain by itself", Duration::from_secs(120), || async {
        open_count(&db).await == 0
    })
    .await;
    assert!(worker.try_wait().unwrap().is_none(), "the worker kept running");
    sigterm(&worker);
    assert!(wait_exit(&mut worker, Duration::from_secs(30)).success());
    assert_eq!(db.count_status("sent").await, N as i64, "every message ends sent");
    let counts = outbox_counts(&outbox);
    assert_eq!(counts.len(), N, "every message was sent");
    let twice = counts.values().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "no message was sent twice");
    eprintln!("{terminated} connections terminated mid-drain; all {N} sent once");
    }
}

every_backend! {
    async fn a_message_whose_send_kills_its_worker_each_time_ends_abandoned(db: TestDb) {
        // Its provider call never returns, and its worker is SIGKILLed
        // during that call, claim after claim. With MAX_RETRIES=1 it may be
        // claimed twice; the third claim fails it without calling again.
        let fake = FakeCustom::start().await;
        const POISON: &str = "+14153239999";
        for _ in 0..5 {
            fake.state.script(POISON, Reply::Hang(Duration::from_secs(3600)));
        }
        let poison = db.insert_sql("sms", POISON, "never answered").await;
        let dir = db.dir.path();
        let watch = || {
            let mut c = herald(&db, dir);
            c.env("SMS_PROVIDER", "custom")
                .env("CUSTOM_SMS_URL", &fake.url)
                .env("CUSTOM_PROVIDER_SECRET", CUSTOM_SECRET)
                .env("MAX_RETRIES", "1")
                .env("LEASE_SECONDS", "120")
                .env("PROVIDER_TIMEOUT_SECONDS", "60")
                .env("POLL_INTERVAL_MS", "20")
                .args(["process", "--watch"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            tokio::process::Command::from(c)
        };
        let calls = || fake.state.requests().iter().filter(|r| r["id"] == poison).count();
        for kill in 1..=2 {
            let mut worker = watch().spawn().unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while calls() < kill {
                assert!(worker.try_wait().unwrap().is_none(), "worker {kill} exited early");
                assert!(std::time::Instant::now() < deadline, "worker {kill} never called the provider");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            worker.kill().await.unwrap(); // SIGKILL, mid-call
            // Its lease runs out (time passing, without waiting for it).
            db.store
                .execute_raw(&format!(
                    "UPDATE notification_messages SET lease_expires_at = {} WHERE status = 'processing'",
                    db.ts("2000-01-01T00:00:00.000Z")
                ))
                .await
                .unwrap();
        }
        let mut last = watch().spawn().unwrap();
        let fine = db.insert_sql("sms", "+14153234567", "others still go out").await;
        wait_until("the poison message to be given up", || async { db.get(poison).await.status == "failed" }).await;
        wait_until("the next message to be sent", || async { db.get(fine).await.status == "sent" }).await;
        last.kill().await.unwrap();
        let m = db.get(poison).await;
        let e = m.error.unwrap();
        assert_eq!(e["code"], "abandoned", "{e}");
        assert!(e["message"].as_str().unwrap().contains("claimed 3 times"), "{e}");
        assert_eq!(calls(), 2, "the third claim did not call the provider");
        let outcomes: Vec<String> = db.store.attempts(poison).await.unwrap().into_iter().map(|a| a.outcome).collect();
        assert_eq!(outcomes, ["unknown", "unknown"], "both killed calls are in the history");
    }
}
