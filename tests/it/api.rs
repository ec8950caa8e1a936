//! The HTTP API: the real router on port 0, against SQLite and PostgreSQL.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

async fn total(db: &TestDb) -> i64 {
    db.store.counts().await.unwrap().iter().map(|c| c.count).sum()
}

every_backend! {
    async fn queued_message_is_processed_and_visible_as_sent(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        let (status, m) = json_of(app.post("/api/messages").json(&json!({
            "channel": "sms", "recipient": "+1 415 323 4567", "body": "Your order is ready",
            "metadata": {"order_id": 42}
        })).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        // Fields named as the columns.
        for col in ["id", "channel", "recipient", "subject", "body", "html_body", "status", "attempts", "error", "provider",
                    "provider_message_id", "send_at", "sent_at", "created_at", "updated_at", "metadata"] {
            assert!(m.get(col).is_some(), "{col} missing from {m}");
        }
        assert_eq!(m["recipient"], "+14153234567");
        assert_eq!(m["metadata"]["order_id"], 42);
        let id = m["id"].as_i64().unwrap();
        let sent = app.wait_status(id, "sent").await;
        assert_eq!(sent["provider_message_id"], format!("T-{id}"));
        assert_eq!(sent["attempt_history"][0]["outcome"], "sent");
        assert_eq!(sent["attempts"], 1);
    }

    async fn every_validation_error_names_its_field_and_stores_nothing(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        let cases = [
            (json!({"recipient": "+14153234567", "body": "x"}), "channel"),
            (json!({"channel": "fax", "recipient": "+14153234567", "body": "x"}), "channel"),
            (json!({"channel": "sms", "body": "x"}), "recipient"),
            (json!({"channel": "sms", "recipient": "5551234567", "body": "x"}), "recipient"),
            (json!({"channel": "whatsapp", "recipient": "whatsapp:123", "body": "x"}), "recipient"),
            (json!({"channel": "email", "recipient": "ana@", "subject": "s", "body": "x"}), "recipient"),
            (json!({"channel": "sms", "recipient": "+14153234567"}), "body"),
            (json!({"channel": "sms", "recipient": "+14153234567", "body": "x".repeat(1601)}), "body"),
            (json!({"channel": "sms", "recipient": "+14153234567", "body": "x", "html_body": "<b>"}), "html_body"),
            (json!({"channel": "email", "recipient": "ana@example.com", "body": "x"}), "subject"),
            (json!({"channel": "sms", "recipient": "+14153234567", "body": "x", "send_at": "tomorrow"}), "send_at"),
            (json!({"channel": "sms", "recipient": "+14153234567", "body": "x", "metadata": [1]}), "metadata"),
            (json!({"channel": "sms", "recipient": "+14153234567", "body": "x", "surprise": 1}), "surprise"),
            (json!({"channel": 5, "recipient": "+14153234567", "body": "x"}), "channel"),
            (json!({"channel": "whatsapp", "recipient": "+14153234567", "content_sid": "HX1"}), "content_sid"),
        ];
        for (body, field) in cases {
            let (status, e) = json_of(app.post("/api/messages").json(&body).send().await.unwrap()).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
            assert_eq!(e["error"]["field"], field, "{body}: {e}");
            assert_eq!(e["error"]["code"], "invalid_field");
            assert!(e["error"]["message"].as_str().unwrap().len() > 5);
        }
        // Not JSON, wrong type, too big.
        let r = app.post("/api/messages").body(r#"{"channel":"sms"}"#).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let r = app.post("/api/messages").header("content-type", "application/json").body("{oops").send().await.unwrap();
        let (status, e) = json_of(r).await;
        assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_json")));
        // Too big: refused on its declared length, before a byte of it is read.
        let answer = raw_request(&app.url, &format!(
            "POST /api/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            13 * 1024 * 1024
        )).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("too_large"), "{answer}");
        assert_eq!(total(&db).await, 0, "nothing was stored");
    }

    async fn idempotency_keys_make_retries_safe(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        let body = json!({"channel": "sms", "recipient": "+14153234567", "body": "receipt #1"});
        let (s1, m1) = json_of(app.post("/api/messages").header("Idempotency-Key", "order-1").json(&body).send().await.unwrap()).await;
        let (s2, m2) = json_of(app.post("/api/messages").header("Idempotency-Key", "order-1").json(&body).send().await.unwrap()).await;
        assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::OK));
        assert_eq!(m1["id"], m2["id"]);
        let other = json!({"channel": "sms", "recipient": "+14153234567", "body": "receipt #2"});
        let (s3, e) = json_of(app.post("/api/messages").header("Idempotency-Key", "order-1").json(&other).send().await.unwrap()).await;
        assert_eq!((s3, e["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("idempotency_key_reused")));
        assert_eq!(total(&db).await, 1);

        // Concurrent duplicates, from two "API processes" (two apps, two pools): one message.
        let app2 = spawn_app(&db, &[KEY]).await;
        let body = json!({"channel": "email", "recipient": "ana@example.com", "subject": "s", "body": "b"});
        for round in 0..5 {
            let key = format!("race-{round}");
            let a = app.post("/api/messages").header("Idempotency-Key", &key).json(&body).send();
            let b = app2.post("/api/messages").header("Idempotency-Key", &key).json(&body).send();
            let (ra, rb) = tokio::join!(a, b);
            let (sa, ma) = json_of(ra.unwrap()).await;
            let (sb, mb) = json_of(rb.unwrap()).await;
            assert_eq!(ma["id"], mb["id"], "round {round}");
            let mut statuses = [sa.as_u16(), sb.as_u16()];
            statuses.sort();
            assert_eq!(statuses, [200, 202], "round {round}");
        }
        assert_eq!(total(&db).await, 6);

        // Keys hold for batches too.
        let batch = json!({"messages": [body.clone(), body.clone()]});
        let (s1, b1) = json_of(app.post("/api/messages/batch").header("Idempotency-Key", "batch-1").json(&batch).send().await.unwrap()).await;
        let (s2, b2) = json_of(app.post("/api/messages/batch").header("Idempotency-Key", "batch-1").json(&batch).send().await.unwrap()).await;
        assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::OK));
        let ids = |b: &Value| b["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect::<Vec<_>>();
        assert_eq!(ids(&b1), ids(&b2), "the same messages (in their current state)");
        assert_eq!(total(&db).await, 8);
    }

    async fn api_keys_are_required_when_set(db: TestDb) {
        let app = spawn_app(&db, &[KEY, "second-key-abcdefghijkl"]).await;
        let body = json!({"channel": "sms", "recipient": "+14153234567", "body": "x"});
        let url = format!("{}/api/messages", app.url);
        let none = app.http.post(&url).json(&body).send().await.unwrap();
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(none.headers()["www-authenticate"], "Bearer");
        assert_eq!(json_of(none).await.1["error"]["code"], "unauthorized");
        let wrong = app.http.post(&url).bearer_auth("test-key-0123456789abcdeX").json(&body).send().await.unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let right = app.http.post(&url).bearer_auth("second-key-abcdefghijkl").json(&body).send().await.unwrap();
        assert_eq!(right.status(), StatusCode::ACCEPTED);
        for open in ["/healthz", "/readyz", "/metrics"] {
            let r = app.http.get(format!("{}{open}", app.url)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{open} is open");
        }
        for closed in ["/api/messages", "/api/messages/1", "/api/openapi.json"] {
            let r = app.http.get(format!("{}{closed}", app.url)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{closed} needs a key");
        }
        assert_eq!(total(&db).await, 1);
    }

    async fn pagination_is_stable_while_messages_arrive(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        let batch: Vec<Value> = (0..25).map(|i| json!({"channel": "sms", "recipient": "+14153234567", "body": format!("m{i}")})).collect();
        let (s, created) = json_of(app.post("/api/messages/batch").json(&json!({"messages": batch})).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        let created_ids: Vec<i64> = created["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
        assert!(created_ids.windows(2).all(|w| w[0] < w[1]), "batch comes back in order");
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let q = match &cursor { Some(c) => format!("/api/messages?limit=10&cursor={c}"), None => "/api/messages?limit=10".into() };
            let (s, page) = json_of(app.get(&q).send().await.unwrap()).await;
            assert_eq!(s, StatusCode::OK);
            pages += 1;
            seen.extend(page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()));
            // New messages arriving mid-listing do not shift later pages.
            app.post("/api/messages").json(&json!({"channel": "sms", "recipient": "+14153234567", "body": "late"})).send().await.unwrap();
            match page["next_cursor"].as_str() { Some(c) => cursor = Some(c.to_owned()), None => break }
        }
        assert_eq!(pages, 3);
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "no message on two pages");
        let mut expected = created_ids.clone();
        expected.reverse();
        assert_eq!(seen, expected, "newest first, every message once");
        // Filters return exactly the matching rows.
        let (_, page) = json_of(app.get("/api/messages?channel=email").send().await.unwrap()).await;
        assert!(page["messages"].as_array().unwrap().is_empty());
        let (_, mail) = json_of(app.post("/api/messages").json(&json!({"channel": "email", "recipient": "ana@example.com", "subject": "s", "body": "b"})).send().await.unwrap()).await;
        let (_, other) = json_of(app.post("/api/messages").json(&json!({"channel": "sms", "recipient": "+14157654321", "body": "x"})).send().await.unwrap()).await;
        let ids = |page: &Value| page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect::<Vec<_>>();
        let (_, page) = json_of(app.get("/api/messages?channel=email").send().await.unwrap()).await;
        assert_eq!(ids(&page), [mail["id"].as_i64().unwrap()]);
        let (_, page) = json_of(app.get("/api/messages?recipient=%2B14157654321").send().await.unwrap()).await;
        assert_eq!(ids(&page), [other["id"].as_i64().unwrap()]);
        let (_, page) = json_of(app.get("/api/messages?created_from=2000-01-01T00:00:00Z&recipient=%2B14153234567&limit=1000").send().await.unwrap()).await;
        assert_eq!(ids(&page).len(), seen.len() + pages, "the 25 and the late ones, only to this recipient");
        assert!(page["messages"].as_array().unwrap().iter().all(|m| m["recipient"] == "+14153234567"));
        let (_, page) = json_of(app.get("/api/messages?created_from=2099-01-01T00:00:00Z").send().await.unwrap()).await;
        assert!(ids(&page).is_empty(), "nothing was created in 2099");
        let (s, e) = json_of(app.get("/api/messages?status=lost").send().await.unwrap()).await;
        assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("status")));
        let (s, e) = json_of(app.get("/api/messages?limit=0").send().await.unwrap()).await;
        assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("limit")));
    }

    async fn retry_and_cancel_follow_the_state_rules(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        let later = json!({"channel": "sms", "recipient": "+14153234567", "body": "later", "send_at": "2099-01-01T00:00:00Z"});
        let (_, m) = json_of(app.post("/api/messages").json(&later).send().await.unwrap()).await;
        let id = m["id"].as_i64().unwrap();
        let (_, page) = json_of(app.get("/api/messages?status=pending&scheduled=true").send().await.unwrap()).await;
        assert_eq!(page["messages"][0]["id"], id);
        let (s, c) = json_of(app.post(&format!("/api/messages/{id}/cancel")).send().await.unwrap()).await;
        assert_eq!((s, c["status"].as_str()), (StatusCode::OK, Some("cancelled")));
        let (s, e) = json_of(app.post(&format!("/api/messages/{id}/cancel")).send().await.unwrap()).await;
        assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("invalid_status")));
        let (s, e) = json_of(app.post(&format!("/api/messages/{id}/retry")).send().await.unwrap()).await;
        assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("invalid_status")));
        let (s, e) = json_of(app.post("/api/messages/999999/retry").send().await.unwrap()).await;
        assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        let (s, _) = json_of(app.get("/api/messages/999999").send().await.unwrap()).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        // A failed message: retry → pending → sent.
                db.store
            .execute_raw("INSERT INTO notification_messages (channel, recipient, body, status) VALUES ('sms', '+14153234567', 'x', 'failed')")
            .await
            .unwrap();
        let failed = db.max_id().await;
        let (s, r) = json_of(app.post(&format!("/api/messages/{failed}/retry")).send().await.unwrap()).await;
        assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("pending")));
        app.wait_status(failed, "sent").await;
    }

    async fn batches_are_all_or_none(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        let ok = json!({"channel": "sms", "recipient": "+14153234567", "body": "x"});
        let bad = json!({"channel": "sms", "recipient": "nope", "body": "x"});
        let (s, e) = json_of(app.post("/api/messages/batch").json(&json!({"messages": [ok, bad, ok, bad]})).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let items = e["errors"].as_array().unwrap();
        assert_eq!(items.iter().map(|i| i["index"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(items[0]["field"], "messages[1].recipient");
        let too_many: Vec<Value> = (0..1001).map(|_| ok.clone()).collect();
        let (s, e) = json_of(app.post("/api/messages/batch").json(&json!({"messages": too_many})).send().await.unwrap()).await;
        assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("messages")));
        assert_eq!(total(&db).await, 0);
        let thousand: Vec<Value> = (0..1000).map(|_| ok.clone()).collect();
        let (s, b) = json_of(app.post("/api/messages/batch").json(&json!({"messages": thousand})).send().await.unwrap()).await;
        assert_eq!((s, b["messages"].as_array().unwrap().len()), (StatusCode::ACCEPTED, 1000));
        assert_eq!(total(&db).await, 1000);
    }

    async fn metrics_move_as_messages_flow(db: TestDb) {
        let app = spawn_app_with(&db, &[KEY], &[("METRICS_CACHE_SECONDS", "1")]).await;
        let metrics = || async { app.http.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap() };
        let before = metrics().await;
        assert!(!before.contains("herald_sends_total{provider=\"test\",outcome=\"sent\"}"));
        let (_, m) = json_of(app.post("/api/messages").json(&json!({"channel": "sms", "recipient": "+14153234567", "body": "x"})).send().await.unwrap()).await;
        app.wait_status(m["id"].as_i64().unwrap(), "sent").await;
        // The queue gauges come from a snapshot at most a second old.
        wait_until("the gauges to show the message sent", || async {
            metrics().await.contains("herald_messages{status=\"sent\",channel=\"sms\"} 1")
        })
        .await;
        let after = metrics().await;
        assert!(after.contains("herald_sends_total{provider=\"test\",outcome=\"sent\"} 1"), "{after}");
        assert!(after.contains("herald_send_duration_seconds_count{provider=\"test\"} 1"));
        assert!(after.contains("herald_oldest_due_pending_age_seconds 0"));
        assert!(after.contains("herald_processor_messages_total{result=\"sent\"} 1"));
    }
}

#[tokio::test]
async fn openapi_lists_every_route_the_router_serves() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db, &[KEY]).await;
    let (s, doc) = json_of(app.get("/api/openapi.json").send().await.unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["info"]["title"].is_string());
    let expected = [
        ("post", "/api/messages"),
        ("get", "/api/messages"),
        ("post", "/api/messages/batch"),
        ("get", "/api/messages/{id}"),
        ("post", "/api/messages/{id}/retry"),
        ("post", "/api/messages/{id}/cancel"),
        ("get", "/api/openapi.json"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/api/suppressions"),
        ("post", "/api/suppressions"),
        ("delete", "/api/suppressions/{channel}/{recipient}"),
        ("post", "/webhooks/twilio/status"),
        ("post", "/webhooks/sendgrid/events"),
        ("get", "/api/templates"),
        ("put", "/api/templates/{name}"),
        ("get", "/api/templates/{name}"),
        ("delete", "/api/templates/{name}"),
        ("post", "/api/templates/{name}/preview"),
        ("get", "/api/stats"),
        ("get", "/api/alerts"),
        ("post", "/api/alerts/rules"),
        ("delete", "/api/alerts/rules/{id}"),
        ("post", "/api/webhook-endpoints"),
        ("get", "/api/webhook-endpoints"),
        ("get", "/api/webhook-endpoints/{id}"),
        ("patch", "/api/webhook-endpoints/{id}"),
        ("delete", "/api/webhook-endpoints/{id}"),
        ("post", "/api/webhook-endpoints/{id}/rotate-secret"),
        ("post", "/api/webhook-endpoints/{id}/replay"),
        ("get", "/api/webhook-endpoints/{id}/deliveries"),
        ("get", "/api/webhook-endpoints/{id}/attempts"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
            // Every documented operation is served (not the 404 fallback); where
            // this bare request fails, the status is documented and the body is
            // the JSON error envelope.
            let url = format!(
                "{}{}",
                app.url,
                path.replace("{id}", "1")
                    .replace("{channel}", "sms")
                    .replace("{recipient}", "%2B14153234567")
            );
            let r = app
                .http
                .request(method.to_uppercase().parse().unwrap(), &url)
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_ne!(
                body["error"]["message"], "no such route",
                "{method} {path} is documented but not served"
            );
            if status.is_client_error() {
                assert!(
                    body["error"]["code"].is_string() && body["error"]["message"].is_string(),
                    "{method} {path}: {status} {body}"
                );
                assert!(
                    ops[method]["responses"].get(status.as_str()).is_some(),
                    "{method} {path} answers {status}, which its document does not list"
                );
            }
        }
    }
    for (m, p) in expected {
        assert!(
            documented.contains(&(m.to_owned(), p.to_owned())),
            "{m} {p} is served but not documented"
        );
    }
    assert_eq!(documented.len(), expected.len(), "{documented:?}");
    for schema in [
        "Message",
        "ErrorBody",
        "MessageRequest",
        "BatchRequest",
        "MessageList",
        "MessageDetail",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema} schema missing"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // An undocumented path is a 404 with the JSON error shape.
    let (s, body) = json_of(app.get("/api/nothing-here").send().await.unwrap()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found", "{body}");
}

every_backend! {
    async fn a_creation_range_pages_newest_created_first_without_gaps(db: TestDb) {
        // Rows whose ids and creation times disagree (a POS importing old
        // orders late): the range lists by creation time, and paging with
        // the cursor visits each row once.
        let app = spawn_app(&db, &[KEY]).await;
        for (i, day) in [(0, 5), (1, 3), (2, 7), (3, 3), (4, 1), (5, 6), (6, 3), (7, 2)] {
            db.execute(&format!(
                "INSERT INTO notification_messages (channel, recipient, body, status, created_at, updated_at)
                 VALUES ('sms', '+1415323450{i}', 'old order {i}', 'sent', {t}, {t})",
                t = db.ts(&format!("2026-03-0{day}T12:00:00.000Z"))
            ))
            .await;
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = "/api/messages?created_from=2026-03-02T00:00:00Z&created_to=2026-03-07T00:00:00Z&limit=2".to_owned();
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let (s, page) = json_of(app.get(&q).send().await.unwrap()).await;
            assert_eq!(s, StatusCode::OK, "{page}");
            for m in page["messages"].as_array().unwrap() {
                seen.push((m["created_at"].as_str().unwrap()[..10].to_owned(), m["body"].as_str().unwrap().to_owned()));
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let days: Vec<&str> = seen.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(days, ["2026-03-06", "2026-03-05", "2026-03-03", "2026-03-03", "2026-03-03", "2026-03-02"], "{seen:?}");
        let mut bodies: Vec<&str> = seen.iter().map(|(_, b)| b.as_str()).collect();
        bodies.sort();
        bodies.dedup();
        assert_eq!(bodies.len(), 6, "each row once: {seen:?}");
    }
}
