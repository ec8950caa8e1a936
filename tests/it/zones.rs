//! Time zones and characters: what a POS writes comes back as it wrote it,
//! and every timestamp Herald keeps is UTC whatever zone the database
//! server (or the POS's session) is set to.

use crate::support::*;
use chrono::Utc;
use std::time::Duration;

/// The lines of a log provider's outbox, as JSON.
fn outbox(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an outbox line"))
        .collect()
}

/// Accents, a dash, emoji (four bytes in UTF-8: MySQL's `utf8` would
/// refuse them, `utf8mb4` keeps them), CJK and a right-to-left script.
const TEXT: &str = "Olá José — recibo nº 42 🎉🧾 ✓ 領収書 إيصال";

every_backend! {
    async fn emoji_and_accents_survive_the_table_and_the_provider(db: TestDb) {
        // The POS inserts by plain SQL, and someone queues through the CLI.
        let by_sql = db.insert_sql_with("email", "jose@example.com", Some(TEXT), TEXT).await;
        let outbox_path = db.dir.path().join("outbox.jsonl");
        let env = [("LOG_OUTBOX", outbox_path.display().to_string())];
        let sent = run_herald(&db, &env, &["send", "--channel", "sms", "--to", "+14153234567", "--body", TEXT]).await;
        assert!(sent.status.success(), "{}", stderr(&sent));
        let by_cli: i64 = stdout(&sent).trim().parse().expect("the new id");

        let run = run_herald(&db, &env, &["process"]).await;
        assert!(run.status.success(), "{}", stderr(&run));
        let lines = outbox(&outbox_path);
        assert_eq!(lines.len(), 2, "{lines:?}");
        for line in &lines {
            assert_eq!(line["body"], TEXT, "the provider got the text as written");
        }
        let email = lines.iter().find(|l| l["id"] == by_sql).expect("the email");
        assert_eq!(email["subject"], TEXT);
        assert_eq!(email["recipient"], "jose@example.com");
        for id in [by_sql, by_cli] {
            let m = db.get(id).await;
            assert_eq!(m.status, "sent");
            assert_eq!(m.body.as_deref(), Some(TEXT), "the table keeps the text as written");
        }
        // The POS's own code reads it back unchanged.
        let rows = db.query(&format!("SELECT body, subject FROM notification_messages WHERE id = {by_sql}")).await;
        assert_eq!(rows[0]["body"], TEXT);
        assert_eq!(rows[0]["subject"], TEXT);
    }
}

/// Sets the MariaDB server's default time zone for as long as it lives, and
/// puts the previous one back when dropped (also when the test fails).
struct ServerZone {
    url: String,
    previous: String,
}

impl ServerZone {
    async fn set(url: &str, zone: &str) -> ServerZone {
        let pool = mysql_pool(url).await;
        let previous: String = sqlx::query_scalar("SELECT CAST(@@global.time_zone AS CHAR)")
            .fetch_one(&pool)
            .await
            .expect("the server's zone");
        sqlx::query(&format!("SET GLOBAL time_zone = '{zone}'"))
            .execute(&pool)
            .await
            .expect("set the server's zone");
        pool.close().await;
        ServerZone {
            url: url.to_owned(),
            previous,
        }
    }
}

impl Drop for ServerZone {
    fn drop(&mut self) {
        let (url, previous) = (self.url.clone(), self.previous.clone());
        // A runtime of its own: drop may run while the test's is unwinding.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let pool = mysql_pool(&url).await;
                let _ = sqlx::query(&format!("SET GLOBAL time_zone = '{previous}'"))
                    .execute(&pool)
                    .await;
                pool.close().await;
            });
        })
        .join();
    }
}

fn near(what: &str, t: Option<chrono::DateTime<Utc>>, expected: chrono::DateTime<Utc>) {
    let t = t.unwrap_or_else(|| panic!("{what} is not set"));
    let off = (t - expected).num_seconds().abs();
    assert!(off < 120, "{what} is {t}, {off} s from {expected}: not UTC");
}

/// The server's default zone is UTC+5 (its NOW() five hours ahead of UTC):
/// the POS's session and Herald's connections start in it. What the POS
/// inserts gets UTC timestamps, Herald records UTC, a message the POS
/// schedules for an hour from now (in UTC, as the README says) is not sent
/// early, and a manual retry from the POS's session is stamped in UTC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_server_in_another_time_zone_still_gets_utc() {
    let db = TestDb::new(Backend::Mariadb).await;
    let _zone = ServerZone::set(&db.url, "+05:00").await;
    let pos = mysql_pool_in_server_zone(&db.url).await;
    let (zone, local_ahead): (String, i64) =
        sqlx::query_as("SELECT CAST(@@session.time_zone AS CHAR), TIMESTAMPDIFF(MINUTE, UTC_TIMESTAMP(), NOW())")
            .fetch_one(&pos)
            .await
            .unwrap();
    assert_eq!(
        (zone.as_str(), local_ahead),
        ("+05:00", 300),
        "the POS's session is in the server's zone"
    );

    let now_id = sqlx::query(
        "INSERT INTO notification_messages (channel, recipient, body) VALUES ('sms', '+14153234567', 'now')",
    )
    .execute(&pos)
    .await
    .unwrap()
    .last_insert_id() as i64;
    let later_id = sqlx::query(
        "INSERT INTO notification_messages (channel, recipient, body, send_at)
         VALUES ('sms', '+14153234568', 'in an hour', UTC_TIMESTAMP() + INTERVAL 1 HOUR)",
    )
    .execute(&pos)
    .await
    .unwrap()
    .last_insert_id() as i64;
    let inserted = Utc::now();

    // Herald, a new process: its connections start in the server's zone.
    let outbox_path = db.dir.path().join("outbox.jsonl");
    let env = [("LOG_OUTBOX", outbox_path.display().to_string())];
    let run = run_herald(&db, &env, &["process"]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    let processed = Utc::now();

    let store = db.second_store().await;
    let sent = store.get(now_id).await.expect("the message");
    assert_eq!(sent.status, "sent");
    near("created_at (the table's default)", sent.created_at, inserted);
    near("sent_at", sent.sent_at, processed);
    near("updated_at", sent.updated_at, processed);
    let later = store.get(later_id).await.expect("the scheduled message");
    assert_eq!(
        later.status, "pending",
        "scheduled for an hour from now: not sent five hours early"
    );
    near("send_at", later.send_at, inserted + chrono::Duration::hours(1));
    assert_eq!(outbox(&outbox_path).len(), 1);

    // The POS's monitoring, in its own session, sees minutes in UTC.
    let (age,): (i64,) = sqlx::query_as(&format!(
        "SELECT TIMESTAMPDIFF(MINUTE, sent_at, UTC_TIMESTAMP()) FROM notification_messages WHERE id = {now_id}"
    ))
    .fetch_one(&pos)
    .await
    .unwrap();
    assert!((0..2).contains(&age), "sent {age} minutes ago by UTC_TIMESTAMP()");

    // A manual retry from the POS's session: the trigger stamps it in UTC
    // and Herald sends it again.
    tokio::time::sleep(Duration::from_millis(10)).await;
    for status in ["failed", "pending"] {
        sqlx::query(&format!(
            "UPDATE notification_messages SET status = '{status}' WHERE id = {now_id}"
        ))
        .execute(&pos)
        .await
        .unwrap();
    }
    let retried = store.get(now_id).await.unwrap();
    assert_eq!(retried.status, "pending");
    near("updated_at (the retry trigger)", retried.updated_at, Utc::now());
    let run = run_herald(&db, &env, &["process"]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(store.get(now_id).await.unwrap().status, "sent");
    assert_eq!(outbox(&outbox_path).len(), 2);
    pos.close().await;
}
