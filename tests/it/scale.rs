//! Operator queries that stay fast on big tables: the template and
//! metadata filters read indexes (exhaustive, not a scan of the newest
//! rows), the metadata index follows the POS's own inserts, updates and
//! deletes, an upgrade indexes the rows that were already there, and
//! `herald status` estimates `sent` on a big table.

use crate::support::*;

use herald::store::ListFilter;
use std::collections::BTreeSet;

/// Rows the POS inserts with `metadata` (SQL text) and a template.
async fn insert_meta(db: &TestDb, n: usize, metadata: impl Fn(usize) -> String, template: Option<&str>) {
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    "('sms', '+1415{}', 'msg {i}', {}, {})",
                    3_000_000 + i,
                    metadata(*i),
                    template.map_or("NULL".to_owned(), |t| format!("'{t}'"))
                )
            })
            .collect();
        db.store
            .execute_raw(&format!(
                "INSERT INTO notification_messages (channel, recipient, body, metadata, template) VALUES {}",
                values.join(", ")
            ))
            .await
            .expect("insert");
    }
}

async fn ids(db: &TestDb, f: ListFilter) -> BTreeSet<i64> {
    db.store
        .list(&ListFilter { limit: 1000, ..f })
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.id)
        .collect()
}

fn meta(k: &str, v: &str) -> ListFilter {
    ListFilter {
        metadata: Some((k.to_owned(), v.to_owned())),
        ..Default::default()
    }
}

/// Make this database look like one from the release before the metadata
/// index (migration 9) and the online indexes: what an upgrade meets.
async fn as_before_migration_9(db: &TestDb) {
    let statements: Vec<&str> = match db.backend {
        Backend::Postgres => vec![
            "DROP TRIGGER herald_metadata_insert ON notification_messages",
            "DROP TRIGGER herald_metadata_update ON notification_messages",
            "DROP TRIGGER herald_metadata_delete ON notification_messages",
            "DROP FUNCTION herald_index_metadata()",
            "DROP FUNCTION herald_metadata_pairs(text)",
            "DROP TABLE herald_message_metadata",
            "DROP TABLE herald_backfills",
            "DROP INDEX notification_messages_status",
            "DROP INDEX notification_messages_template",
            "DROP INDEX notification_messages_channel",
        ],
        Backend::Sqlite => vec![
            "DROP TRIGGER herald_metadata_insert",
            "DROP TRIGGER herald_metadata_update",
            "DROP TRIGGER herald_metadata_delete",
            "DROP TABLE herald_message_metadata",
            "DROP TABLE herald_backfills",
            "DROP INDEX notification_messages_status",
            "DROP INDEX notification_messages_template",
            "DROP INDEX notification_messages_channel",
        ],
        Backend::Mariadb => vec![
            "DROP TRIGGER herald_metadata_insert",
            "DROP TRIGGER herald_metadata_update",
            "DROP TRIGGER herald_metadata_delete",
            "DROP PROCEDURE herald_index_metadata",
            "DROP TABLE herald_message_metadata",
            "DROP TABLE herald_backfills",
            "DROP INDEX notification_messages_status ON notification_messages",
            "DROP INDEX notification_messages_template ON notification_messages",
            "DROP INDEX notification_messages_channel ON notification_messages",
        ],
    };
    for s in statements {
        db.store.execute_raw(s).await.expect(s);
    }
    db.store
        .execute_raw("DELETE FROM _sqlx_migrations WHERE version = 9")
        .await
        .expect("forget migration 9");
}

every_backend! {
    async fn template_and_metadata_filters_find_every_match_however_old(db: TestDb) {
        // The match is the oldest row, behind 6,000 newer ones (more than
        // the 5,000 rows a scan used to look at).
        insert_meta(&db, 1, |_| "'{\"order_id\": 41, \"till\": \"front\", \"vip\": true}'".into(), Some("receipt")).await;
        let oldest = db.max_id().await;
        insert_meta(&db, 6000, |i| format!("'{{\"order_id\": {}, \"till\": \"back\"}}'", 1000 + i), None).await;
        // A string id, a nested object and an array (not indexed), no
        // metadata, and a long value.
        insert_meta(&db, 1, |_| "'{\"order_id\": \"A-17\", \"customer\": {\"id\": 5}, \"tags\": [1, 2]}'".into(), Some("reminder")).await;
        let string_id = db.max_id().await;
        insert_meta(&db, 1, |_| "NULL".into(), Some("receipt")).await;
        let plain = db.max_id().await;
        let long = "x".repeat(201);
        insert_meta(&db, 1, |_| format!("'{{\"note\": \"{long}\", \"order_id\": 99999}}'"), None).await;
        let long_row = db.max_id().await;

        assert_eq!(ids(&db, meta("order_id", "41")).await, BTreeSet::from([oldest]));
        assert_eq!(ids(&db, meta("till", "front")).await, BTreeSet::from([oldest]));
        assert_eq!(ids(&db, meta("vip", "true")).await, BTreeSet::from([oldest]));
        assert_eq!(ids(&db, meta("order_id", "A-17")).await, BTreeSet::from([string_id]));
        assert_eq!(ids(&db, meta("order_id", "99999")).await, BTreeSet::from([long_row]), "other keys of a row with a long value are indexed");
        assert!(ids(&db, meta("note", &long)).await.is_empty(), "values over 200 characters are not indexed");
        assert!(ids(&db, meta("customer", "{\"id\": 5}")).await.is_empty(), "nested objects are not indexed");
        assert!(ids(&db, meta("order_id", "nope")).await.is_empty());
        assert_eq!(ids(&db, meta("till", "back")).await.len(), 1000, "a page of the 6,000");
        // Combined with other filters, and paged with the cursor.
        let page = db.store.list(&ListFilter { limit: 2, ..meta("till", "back") }).await.unwrap();
        let next = db.store.list(&ListFilter { limit: 2, before_id: Some(page[1].id), ..meta("till", "back") }).await.unwrap();
        assert!(next[0].id < page[1].id);
        assert!(ids(&db, ListFilter { status: Some(herald::domain::MessageStatus::Sent), ..meta("order_id", "41") }).await.is_empty());

        // One channel alone (its own index), paged.
        let sms = |before_id| ListFilter { channel: Some(herald::domain::Channel::Sms), limit: 3, before_id, ..Default::default() };
        let first = db.store.list(&sms(None)).await.unwrap();
        assert_eq!(first.len(), 3);
        assert!(first.windows(2).all(|w| w[0].id > w[1].id) && first.iter().all(|m| m.channel == "sms"));
        assert_eq!(first[0].id, db.max_id().await);
        let second = db.store.list(&sms(Some(first[2].id))).await.unwrap();
        assert_eq!(second[0].id, first[2].id - 1);
        assert!(db.store.list(&ListFilter { channel: Some(herald::domain::Channel::Email), limit: 10, ..Default::default() }).await.unwrap().is_empty());

        // A status or a recipient alone (their own statements), paged.
        let pending = db.store.list(&ListFilter { status: Some(herald::domain::MessageStatus::Pending), limit: 4, ..Default::default() }).await.unwrap();
        assert_eq!(pending.len(), 4);
        assert!(pending.iter().all(|m| m.status == "pending") && pending.windows(2).all(|w| w[0].id > w[1].id));
        let more = db.store.list(&ListFilter { status: Some(herald::domain::MessageStatus::Pending), limit: 4, before_id: Some(pending[3].id), ..Default::default() }).await.unwrap();
        assert_eq!(more[0].id, pending[3].id - 1);
        assert!(ids(&db, ListFilter { status: Some(herald::domain::MessageStatus::Failed), ..Default::default() }).await.is_empty());
        let to = db.store.list(&ListFilter { recipient: Some("+14153000000".into()), limit: 10, ..Default::default() }).await.unwrap();
        assert!(to.len() >= 2 && to.iter().all(|m| m.recipient == "+14153000000"), "{to:?}");
        assert!(to.iter().any(|m| m.id == oldest));

        let by_template = |t: &str| ListFilter { template: Some(t.to_owned()), ..Default::default() };
        assert_eq!(ids(&db, by_template("receipt")).await, BTreeSet::from([oldest, plain]));
        assert_eq!(ids(&db, by_template("reminder")).await, BTreeSet::from([string_id]));
        assert!(ids(&db, by_template("none")).await.is_empty());

        // The POS changes a row's metadata, then deletes it: the index follows.
        db.execute(&format!("UPDATE notification_messages SET metadata = '{{\"order_id\": 42}}' WHERE id = {oldest}")).await;
        assert!(ids(&db, meta("order_id", "41")).await.is_empty());
        assert_eq!(ids(&db, meta("order_id", "42")).await, BTreeSet::from([oldest]));
        db.execute(&format!("DELETE FROM notification_messages WHERE id = {oldest}")).await;
        assert!(ids(&db, meta("order_id", "42")).await.is_empty());
        let left: i64 = db.query(&format!("SELECT count(*) AS n FROM herald_message_metadata WHERE message_id = {oldest}")).await[0]["n"].as_i64().unwrap();
        assert_eq!(left, 0, "a deleted message leaves nothing in the metadata index");

        // Herald's own inserts (the API) are indexed too.
        let app = spawn_app(&db, &[KEY]).await;
        let r = app.post("/api/messages")
            .json(&serde_json::json!({"channel": "sms", "recipient": "+14155550100", "body": "hi", "metadata": {"order_id": 7007}}))
            .send().await.unwrap();
        let (status, body) = json_of(r).await;
        assert!(status.is_success(), "{body}");
        let r = app.get("/api/messages?metadata_key=order_id&metadata_value=7007").send().await.unwrap();
        let (status, list) = json_of(r).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["messages"].as_array().unwrap().len(), 1);
        assert_eq!(list["messages"][0]["id"], body["id"]);
        let r = app.get("/api/messages?template=reminder").send().await.unwrap();
        let (_, list) = json_of(r).await;
        assert_eq!(list["messages"][0]["id"].as_i64(), Some(string_id));
        // Bad filters are refused, naming the field.
        for (q, field) in [
            ("metadata_key=order_id", "metadata_value"),
            ("metadata_value=1", "metadata_key"),
            (&*format!("metadata_key=order_id&metadata_value={long}"), "metadata_value"),
            ("template=", "template"),
        ] {
            let r = app.get(&format!("/api/messages?{q}")).send().await.unwrap();
            let (status, err) = json_of(r).await;
            assert_eq!(status, 400, "{q}: {err}");
            assert_eq!(err["error"]["field"], field, "{q}: {err}");
        }
        // Metadata that is not JSON does not stop the POS's insert (SQLite
        // and PostgreSQL; Herald's MySQL table checks JSON itself).
        if db.backend != Backend::Mariadb {
            insert_meta(&db, 1, |_| "'not json {'".into(), None).await;
            insert_meta(&db, 1, |_| "'[1, 2]'".into(), None).await;
        }
    }

    async fn an_upgrade_indexes_the_metadata_of_rows_already_there(db: TestDb) {
        as_before_migration_9(&db).await;
        insert_meta(&db, 12_000, |i| format!("'{{\"order_id\": {i}}}'"), Some("receipt")).await;
        let check = run_herald(&db, &[], &["migrate", "--check"]).await;
        assert_eq!(check.status.code(), Some(1), "{}", stdout(&check));
        let out = stdout(&check);
        assert!(out.contains("apply Herald's migration 9 (scale)"), "{out}");
        assert!(out.contains("build index notification_messages_status without blocking writes"), "{out}");
        assert!(out.contains("build index notification_messages_template"), "{out}");

        let m = run_herald(&db, &[], &["migrate"]).await;
        assert!(m.status.success(), "{}", stderr(&m));
        let out = stdout(&m);
        assert!(out.contains("older messages indexed"), "{out}");
        // The first, middle and last of the rows that were there.
        let first = db.max_id().await - 11_999;
        for (i, id) in [(0, first), (5_000, first + 5_000), (11_999, first + 11_999)] {
            assert_eq!(ids(&db, meta("order_id", &i.to_string())).await, BTreeSet::from([id]), "order {i}");
        }
        let again = run_herald(&db, &[], &["migrate", "--check"]).await;
        assert!(again.status.success(), "{}", stdout(&again));

        // An upgrade that `herald migrate` did not finish (a worker applied
        // the migration on start): the workers finish the index.
        as_before_migration_9(&db).await;
        let mut store = db.second_store().await;
        store.migrate().await.unwrap();
        let b = store.metadata_backfill().await.unwrap().unwrap();
        assert!(!b.complete());
        assert!(ids(&db, meta("order_id", "3")).await.is_empty(), "not indexed yet");
        let check = run_herald(&db, &[], &["migrate", "--check"]).await;
        assert_eq!(check.status.code(), Some(1));
        assert!(stdout(&check).contains("index the metadata of older messages"), "{}", stdout(&check));
        let (_stop, shutdown) = herald::processor::Shutdown::new();
        herald::retention::backfill_metadata(store.clone(), shutdown).await;
        assert!(store.metadata_backfill().await.unwrap().unwrap().complete());
        assert_eq!(ids(&db, meta("order_id", "3")).await.len(), 1);
        store.close().await;
    }

    async fn counts_are_exact_on_a_small_table_and_match_a_full_count(db: TestDb) {
        db.insert_many(30).await;
        let p = run_herald(&db, &[], &["process"]).await;
        assert!(p.status.success(), "{}", stderr(&p));
        db.insert_many(5).await;
        let cancelled = db.max_id().await;
        ok(run_herald(&db, &[], &["cancel", &cancelled.to_string()]).await);
        let fast = db.store.counts().await.unwrap();
        let exact = db.store.counts_exact().await.unwrap();
        assert_eq!(fast, exact);
        assert!(fast.iter().all(|c| !c.estimated));
        let total: i64 = fast.iter().map(|c| c.count).sum();
        assert_eq!(total, 35);
        let out = ok(run_herald(&db, &[], &["status", "--limit", "1"]).await);
        assert!(out.contains("sent: 30"), "{out}");
        assert!(out.contains("cancelled: 1"), "{out}");
        assert!(!out.contains('~'), "{out}");
    }
}

/// On a big table `sent` is the database's estimate (SQLite: the id range,
/// here made big by one row with a large id), marked as such; `--exact`
/// counts.
#[tokio::test]
async fn status_estimates_sent_on_a_big_table_and_counts_with_exact() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.insert_many(10).await;
    db.execute(
        "INSERT INTO notification_messages (id, channel, recipient, body, status) VALUES (2000000, 'sms', '+14155550101', 'x', 'sent')",
    )
    .await;
    ok(run_herald(&db, &[], &["process"]).await);
    db.insert_many(2).await;
    let counts = db.store.counts().await.unwrap();
    let sent = counts.iter().find(|c| c.status == "sent").unwrap();
    assert!(sent.estimated);
    assert_eq!(sent.channel, "all");
    assert_eq!(sent.count, 2_000_002 - 2, "the id range less the unsent rows");
    let pending: i64 = counts.iter().filter(|c| c.status == "pending").map(|c| c.count).sum();
    assert_eq!(pending, 2, "every status but sent is counted exactly");
    let out = ok(run_herald(&db, &[], &["status", "--limit", "1"]).await);
    assert!(out.contains("sent: ~2000000"), "{out}");
    assert!(out.contains("herald status --exact"), "{out}");
    let out = ok(run_herald(&db, &[], &["status", "--limit", "1", "--exact"]).await);
    assert!(out.contains("sent: 11"), "{out}");
    assert!(!out.contains('~'), "{out}");
}
