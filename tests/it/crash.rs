//! Crash safety, proven by killing real processes: `herald process --watch`
//! is SIGKILLed mid-run, restarted, and every message ends sent exactly
//! once, except those whose send was in flight at the kill.

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

async fn open_count(db: &TestDb) -> i64 {
    db.count_status("pending").await + db.count_status("processing").await
}

both_backends! {
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
        let mut first = watch("2").spawn().unwrap();
        // Kill it once it is well into the queue.
        wait_until_blocking("the first worker to get well into the queue", Duration::from_secs(60), || {
            assert!(first.try_wait().unwrap().is_none(), "the first worker exited early");
            lines_in(&outbox) >= N / 4
        });
        first.kill().unwrap(); // SIGKILL
        first.wait().unwrap();

        let in_flight: HashSet<i64> = db
            .store
            .list(&herald::store::ListFilter { status: Some(herald::domain::MessageStatus::Processing), limit: 10_000, ..Default::default() })
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        let sent_before = db.count_status("sent").await;
        assert!(sent_before > 0 && (sent_before as usize) < N, "killed mid-run (sent {sent_before} of {N})");
        assert!(!in_flight.is_empty(), "the kill caught messages in flight");

        // Restart; the dead worker's leases expire and its messages are sent.
        let mut second = watch("30").spawn().unwrap();
        wait_until_within("the queue to drain after the restart", Duration::from_secs(120), || async { open_count(&db).await == 0 }).await;
        sigterm(&second);
        let status = wait_exit(&mut second, Duration::from_secs(30));
        assert!(status.success(), "SIGTERM is a clean stop: {status:?}");

        assert_eq!(db.count_status("sent").await, N as i64, "every message ends sent");
        let counts = outbox_counts(&outbox);
        assert_eq!(counts.len(), N, "every message was sent at least once");
        let twice: Vec<i64> = counts.iter().filter(|(_, n)| **n > 1).map(|(id, _)| *id).collect();
        for id in &twice {
            assert!(in_flight.contains(id), "message {id} sent twice but was not in flight at the kill");
            assert_eq!(counts[id], 2);
        }
        eprintln!("{} in flight at the kill, {} sent twice", in_flight.len(), twice.len());
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
