//! Retention: `herald prune` and `RETENTION_DAYS` delete finished messages
//! (with their attempts and receipts) and never an open one; the archive
//! holds every deleted message and reads back.

use crate::support::*;
use std::collections::BTreeSet;
use std::sync::Arc;

use herald::clock::ManualClock;
use herald::retention::RetentionRunner;

const OLD: &str = "2025-01-01T10:00:00Z";

/// A row inserted as the POS would, created at `created` (ISO), with extra
/// columns (`cols`, `vals`). Its id.
async fn row(db: &TestDb, recipient: &str, created: &str, cols: &str, vals: &str) -> i64 {
    let (cols, vals) = if cols.is_empty() {
        (String::new(), String::new())
    } else {
        (format!(", {cols}"), format!(", {vals}"))
    };
    db.store
        .execute_raw(&format!(
            "INSERT INTO notification_messages (channel, recipient, body, created_at{cols})
             VALUES ('sms', '{recipient}', 'text for {recipient}', {}{vals})",
            db.ts(created)
        ))
        .await
        .expect("insert");
    db.max_id().await
}

fn archive_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new("gzip")
        .args(["-dc"])
        .arg(path)
        .output()
        .expect("gzip -dc");
    assert!(out.status.success(), "the archive is valid gzip");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

every_backend! {
    async fn prune_deletes_old_finished_messages_and_never_an_open_one(db: TestDb) {
        let dir = db.dir.path();
        // Old messages that get sent, refused and cancelled.
        let old_sent = row(&db, "+14153230001", OLD, "", "").await;
        let old_sent2 = row(&db, "+14153230002", OLD, "", "").await;
        let old_failed = row(&db, "not a number", OLD, "", "").await;
        let old_cancelled = row(&db, "+14153230003", OLD, "send_at", &db.ts("2030-01-01T00:00:00Z")).await;
        let c = run_herald(&db, &[], &["cancel", &old_cancelled.to_string()]).await;
        assert!(c.status.success(), "{}", stderr(&c));
        let p = run_herald(&db, &[], &["process"]).await;
        assert!(p.status.success(), "{}", stderr(&p));
        assert_eq!(db.get(old_sent).await.status, "sent");
        assert_eq!(db.get(old_failed).await.status, "failed");
        assert_eq!(db.get(old_cancelled).await.status, "cancelled");
        // A recent sent one, and old ones still open: pending (due, and
        // scheduled), processing (a worker holds it), and a POS status.
        let new_sent = db.insert_sql("sms", "+14153230004", "recent").await;
        let p = run_herald(&db, &[], &["process"]).await;
        assert!(p.status.success(), "{}", stderr(&p));
        let old_pending = row(&db, "+14153230005", OLD, "", "").await;
        let old_scheduled = row(&db, "+14153230006", OLD, "send_at", &db.ts("2030-01-01T00:00:00Z")).await;
        let old_processing = row(
            &db,
            "+14153230007",
            OLD,
            "status, lease_owner, lease_expires_at",
            &format!("'processing', 'w9', {}", db.ts("2030-01-01T00:00:00Z")),
        )
        .await;
        let before: i64 = db.query("SELECT count(*) AS n FROM notification_attempts").await[0]["n"].as_i64().unwrap();
        assert!(before >= 3, "the sent messages have attempts");

        // A dry run counts and deletes nothing.
        let dry = run_herald(&db, &[], &["prune", "--older-than", "30d", "--dry-run"]).await;
        assert!(dry.status.success(), "{}", stderr(&dry));
        assert!(stdout(&dry).contains("would delete 4 finished message(s)"), "{}", stdout(&dry));
        assert_eq!(db.query("SELECT id FROM notification_messages").await.len(), 8);

        // Prune with an archive.
        let archive = dir.join("archive.jsonl.gz");
        let pr = run_herald(&db, &[], &["prune", "--older-than", "30d", "--archive", archive.to_str().unwrap()]).await;
        assert!(pr.status.success(), "{}", stderr(&pr));
        assert!(stdout(&pr).contains("deleted 4 finished message(s)"), "{}", stdout(&pr));
        assert!(stdout(&pr).contains("archived 4 message(s)"), "{}", stdout(&pr));

        let left: BTreeSet<i64> = db
            .query("SELECT id FROM notification_messages")
            .await
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(
            left,
            BTreeSet::from([new_sent, old_pending, old_scheduled, old_processing]),
            "only old finished messages are gone; open ones and recent ones stay"
        );
        let orphans = db
            .query(&format!(
                "SELECT count(*) AS n FROM notification_attempts WHERE message_id IN ({old_sent}, {old_sent2}, {old_failed}, {old_cancelled})"
            ))
            .await;
        assert_eq!(orphans[0]["n"].as_i64(), Some(0), "their attempts went with them");
        assert_eq!(db.get(old_processing).await.lease_owner.as_deref(), Some("w9"), "untouched");

        // The archive reads back: every deleted message, as the API shows
        // it, with its attempts.
        let lines = archive_lines(&archive);
        let ids: BTreeSet<i64> = lines.iter().map(|l| l["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, BTreeSet::from([old_sent, old_sent2, old_failed, old_cancelled]));
        let sent = lines.iter().find(|l| l["id"] == old_sent).unwrap();
        assert_eq!(sent["status"], "sent");
        assert_eq!(sent["body"], "text for +14153230001");
        assert_eq!(sent["recipient"], "+14153230001");
        assert!(!sent["attempts"].as_array().unwrap().is_empty(), "{sent}");
        assert!(sent["events"].is_array());
        let failed = lines.iter().find(|l| l["id"] == old_failed).unwrap();
        assert_eq!(failed["error"]["field"], "recipient", "{failed}");

        // Nothing left to prune; a second run appends nothing and says so.
        let again = run_herald(&db, &[], &["prune", "--older-than", "30d", "--archive", archive.to_str().unwrap()]).await;
        assert!(stdout(&again).contains("deleted 0 finished message(s)"), "{}", stdout(&again));
        assert_eq!(archive_lines(&archive).len(), 4);

        // Bad ages are refused, naming the flag.
        let bad = run_herald(&db, &[], &["prune", "--older-than", "3w"]).await;
        assert!(!bad.status.success());
        assert!(stderr(&bad).contains("--older-than"), "{}", stderr(&bad));
    }

    async fn retention_days_prune_in_one_worker_at_a_time(db: TestDb) {
        let old = row(&db, "+14153230011", OLD, "status, sent_at", &format!("'sent', {}", db.ts(OLD))).await;
        let open = row(&db, "+14153230012", OLD, "", "").await;
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let a = RetentionRunner::new(db.store.clone(), clock.clone(), 90, "worker-a".into());
        let b = RetentionRunner::new(db.second_store().await, clock.clone(), 90, "worker-b".into());
        let first = a.tick(None).await.unwrap().expect("worker a holds the lease");
        assert_eq!(first.messages, 1);
        assert!(b.tick(None).await.unwrap().is_none(), "worker b does not prune meanwhile");
        let ids: Vec<i64> = db.query("SELECT id FROM notification_messages").await.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, vec![open]);
        assert_ne!(old, open);
        // RETENTION_DAYS is checked like every setting.
        let o = run_herald(&db, &[("RETENTION_DAYS", "forever".into())], &["prune", "--dry-run"]).await;
        assert!(!o.status.success());
        assert!(stderr(&o).contains("RETENTION_DAYS"), "{}", stderr(&o));
        // And is the default age of `herald prune`.
        let o = run_herald(&db, &[("RETENTION_DAYS", "90".into())], &["prune", "--dry-run"]).await;
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("would delete 0"), "{}", stdout(&o));
    }
}

every_backend! {
    async fn migrate_check_says_whether_the_database_is_behind(_db: TestDb) {
        let db = TestDb::empty(_db.backend).await;
        let o = run_herald(&db, &[], &["migrate", "--check"]).await;
        assert!(!o.status.success(), "an empty database is behind");
        assert!(stderr(&o).contains("behind") && stderr(&o).contains("herald migrate"), "{}", stderr(&o));
        assert!(stdout(&o).contains("apply Herald's migrations 1 to"), "{}", stdout(&o));
        // It changed nothing: still behind.
        let again = run_herald(&db, &[], &["migrate", "--check"]).await;
        assert!(!again.status.success(), "{}", stdout(&again));
        let m = run_herald(&db, &[], &["migrate"]).await;
        assert!(m.status.success(), "{}", stderr(&m));
        let o = run_herald(&db, &[], &["migrate", "--check"]).await;
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("up to date"), "{}", stdout(&o));
    }
}

every_backend! {
    async fn a_prune_gives_way_while_messages_are_due(db: TestDb) {
        use herald::retention::{pause_for, PruneOptions};
        use std::time::Duration;
        let opts = PruneOptions::new(chrono::Duration::days(90));
        assert_eq!((opts.pause, opts.busy_pause), (Duration::from_millis(20), Duration::from_millis(200)));
        // An idle queue: full speed. A scheduled message is not due yet.
        assert_eq!(pause_for(&db.store, &opts).await, opts.pause);
        let later = row(&db, "+14153230009", OLD, "send_at", &db.ts("2030-01-01T00:00:00Z")).await;
        assert_eq!(pause_for(&db.store, &opts).await, opts.pause, "scheduled {later} is not due");
        // A message waiting to be sent: the prune waits longer between batches.
        db.insert_sql("sms", "+14153230010", "due now").await;
        assert_eq!(pause_for(&db.store, &opts).await, opts.busy_pause);
        let p = run_herald(&db, &[], &["process"]).await;
        assert!(p.status.success(), "{}", stderr(&p));
        assert_eq!(pause_for(&db.store, &opts).await, opts.pause, "drained: full speed again");
        // --busy-pause-ms 0 (or below --pause-ms): never slowed.
        db.insert_sql("sms", "+14153230011", "due now").await;
        let eager = PruneOptions { busy_pause: Duration::ZERO, ..opts.clone() };
        assert_eq!(pause_for(&db.store, &eager).await, opts.pause);
        let o = run_herald(&db, &[], &["prune", "--older-than", "90d", "--busy-pause-ms", "0"]).await;
        assert!(o.status.success(), "{}", stderr(&o));
    }
}
