//! Status webhooks to the POS (Standard Webhooks): written to an outbox
//! with the change they tell of, delivered at least once with valid
//! signatures and the same `webhook-id` on every attempt, in order per
//! message, to endpoints that may be down for a while, or killed mid-way.

use std::sync::Arc;
use std::time::Duration;

use herald::clock::{Clock, ManualClock};
use herald::domain::{EndpointUrl, EventFilter};
use herald::outbound::{Dispatcher, OutboundSettings};
use herald::providers::SendError;
use herald::signing::WebhookSecret;
use herald::store::Store;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

async fn endpoint(store: &Store, url: &str, events: &[&str], clock: &ManualClock) -> (i64, String) {
    let secret = WebhookSecret::generate();
    let words: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    let e = store
        .create_endpoint(
            &EndpointUrl::parse(url).unwrap(),
            Some("the POS"),
            &EventFilter::parse(&words).unwrap(),
            secret.expose(),
            true,
            clock.now(),
        )
        .await
        .unwrap();
    (e.id, secret.expose().to_owned())
}

fn dispatcher(store: &Store, clock: &ManualClock, settings: OutboundSettings) -> Arc<Dispatcher> {
    Arc::new(Dispatcher::new(
        store.clone(),
        Arc::new(clock.clone()),
        zero_random(),
        settings,
        "w1",
    ))
}

fn quick() -> OutboundSettings {
    OutboundSettings {
        timeout: Duration::from_secs(5),
        ..OutboundSettings::default()
    }
}

every_backend! {
    async fn a_down_endpoint_gets_every_event_when_it_is_back_signed_and_with_the_same_ids(db: TestDb) {
        let pos = FakePos::start().await;
        let clock = ManualClock::new(chrono::Utc::now());
        let (_, secret) = endpoint(&db.store, &pos.url, &["*"], &clock).await;
        // One message queued through Herald, one by the POS's own SQL, one
        // the provider refuses.
        let queued = db
            .store
            .enqueue(&sms_message("+14153234567", "Your order is ready", json!({"order_id": 7})), clock.now())
            .await
            .unwrap()
            .id;
        let by_sql = db.insert_sql("sms", "+14157654321", "Table for two").await;
        let refused = db.insert_sql("sms", "+14150000000", "x").await;
        let provider = ScriptedProvider::new(move |m, _| {
            if m.id == refused {
                Err(SendError::permanent("21211", "The 'To' number is not a valid phone number."))
            } else {
                Ok(herald::providers::Receipt::new(format!("T-{}", m.id)))
            }
        });
        run_once(&processor(&db.store, &provider, &clock, "w1")).await;

        // The POS is down.
        pos.answer(503);
        let d = dispatcher(&db.store, &clock, quick());
        let first = d.drain().await;
        // The first message's `sent` waits behind its `queued`.
        assert_eq!((first.delivered, first.retrying), (0, 3));
        // It comes back; the retries are due five seconds later.
        pos.answer(200);
        clock.advance(Duration::from_secs(10));
        let second = d.drain().await;
        assert_eq!((second.delivered, second.retrying), (4, 0));

        let delivered = pos.delivered();
        let kinds: Vec<(i64, String)> = delivered.iter().map(|h| (h.message_id(), h.event_type())).collect();
        assert_eq!(kinds.iter().filter(|(id, _)| *id == queued).map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
            ["message.queued", "message.sent"], "in order for each message");
        assert!(kinds.contains(&(by_sql, "message.sent".to_owned())));
        assert!(kinds.contains(&(refused, "message.failed".to_owned())));
        assert_eq!(delivered.len(), 4);
        for h in pos.hooks() {
            assert!(h.signed_by(&secret), "{h:?}");
            assert!(h.id.starts_with("evt_"), "{}", h.id);
            assert_eq!(h.content_type, "application/json");
        }
        // Each event was tried under one webhook-id, with one body.
        for h in &delivered {
            let tries: Vec<_> = pos.hooks().into_iter().filter(|x| x.id == h.id).collect();
            assert!(tries.iter().all(|t| t.body == h.body));
            let answers: Vec<u16> = tries.iter().map(|t| t.answered).collect();
            let expected: &[u16] = if h.message_id() == queued && h.event_type() == "message.sent" { &[200] } else { &[503, 200] };
            assert_eq!(answers, expected, "{}", h.event_type());
        }
        // The payload: type, timestamp, and the message as the API shows it.
        let sent = delivered.iter().find(|h| h.message_id() == queued && h.event_type() == "message.sent").unwrap().json();
        assert_eq!(sent["data"]["status"], "sent");
        assert_eq!(sent["data"]["metadata"]["order_id"], 7, "the POS's own metadata");
        assert_eq!(sent["data"]["provider_message_id"], format!("T-{queued}"));
        assert!(sent["timestamp"].as_str().unwrap().ends_with('Z'));
        // The delivery log has both requests.
        let e = db.store.endpoints().await.unwrap()[0].clone();
        let log = db.store.delivery_attempts(e.id, None, 100).await.unwrap();
        assert_eq!(log.len(), 7);
        assert_eq!(log.iter().filter(|a| a.status == Some(503)).count(), 3);
        assert!(e.failing_since.is_none() && e.last_success_at.is_some());
    }

    async fn only_wanted_events_are_written_and_replays_keep_their_ids(db: TestDb) {
        let pos = FakePos::start().await;
        let clock = ManualClock::new(chrono::Utc::now());
        let (id, _) = endpoint(&db.store, &pos.url, &["message.failed"], &clock).await;
        db.insert_sql("sms", "+14157654321", "fine").await;
        let bad = db.insert_sql("sms", "+14150000000", "x").await;
        let provider = ScriptedProvider::new(move |m, _| {
            if m.id == bad {
                Err(SendError::permanent("21211", "invalid To"))
            } else {
                Ok(herald::providers::Receipt::new("T"))
            }
        });
        run_once(&processor(&db.store, &provider, &clock, "w1")).await;
        let d = dispatcher(&db.store, &clock, quick());
        d.drain().await;
        let hooks = pos.delivered();
        assert_eq!(hooks.iter().map(|h| h.event_type()).collect::<Vec<_>>(), ["message.failed"]);
        assert_eq!(db.store.deliveries(id, None, None, 100).await.unwrap().len(), 1, "nothing else was written");

        // Replayed: the same id and body again.
        assert!(db.store.replay_event(id, &hooks[0].id, clock.now()).await.unwrap());
        assert!(!db.store.replay_event(id, "evt_nothing", clock.now()).await.unwrap());
        let n = db.store.replay_range(id, clock.now() - chrono::Duration::hours(1), clock.now() + chrono::Duration::hours(1), clock.now()).await.unwrap();
        assert_eq!(n, 1);
        d.drain().await;
        let again = pos.delivered();
        assert_eq!(again.len(), 3);
        assert!(again.iter().all(|h| h.id == hooks[0].id && h.body == hooks[0].body));
    }

    async fn an_endpoint_failing_too_long_is_disabled_and_its_events_wait(db: TestDb) {
        let pos = FakePos::start().await;
        let clock = ManualClock::new(chrono::Utc::now());
        let (id, _) = endpoint(&db.store, &pos.url, &["*"], &clock).await;
        let settings = OutboundSettings { disable_after: Duration::from_secs(3600), ..quick() };
        let d = dispatcher(&db.store, &clock, settings);
        pos.answer(500);
        db.insert_sql("sms", "+14157654321", "one").await;
        run_once(&processor(&db.store, &ScriptedProvider::ok(), &clock, "w1")).await;
        d.drain().await;
        assert!(db.store.endpoint(id).await.unwrap().unwrap().failing_since.is_some());
        // Two hours of failures: disabled, with the reason.
        for _ in 0..8 {
            clock.advance(Duration::from_secs(1200));
            d.drain().await;
        }
        let e = db.store.endpoint(id).await.unwrap().unwrap();
        assert!(!e.enabled);
        assert!(e.disabled_reason.as_deref().unwrap().contains("without a success"), "{e:?}");
        // Disabled: nothing is sent to it, but its events are kept.
        let before = pos.hooks().len();
        db.insert_sql("sms", "+14157654322", "two").await;
        run_once(&processor(&db.store, &ScriptedProvider::ok(), &clock, "w1")).await;
        clock.advance(Duration::from_secs(86_400));
        d.drain().await;
        assert_eq!(pos.hooks().len(), before);
        // Enabled again (the POS is fixed): everything arrives, in order.
        pos.answer(200);
        let mut e = e;
        e.enabled = true;
        e.disabled_reason = None;
        e.failing_since = None;
        db.store.update_endpoint(&e, clock.now()).await.unwrap();
        d.drain().await;
        let got: Vec<String> = pos.delivered().iter().map(|h| format!("{}:{}", h.message_id(), h.event_type())).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|g| g.ends_with("message.sent")));
    }

    async fn an_endpoint_that_answers_410_is_disabled_at_once(db: TestDb) {
        let pos = FakePos::start().await;
        let clock = ManualClock::new(chrono::Utc::now());
        let (id, _) = endpoint(&db.store, &pos.url, &["*"], &clock).await;
        pos.answer(410);
        db.insert_sql("sms", "+14157654321", "one").await;
        run_once(&processor(&db.store, &ScriptedProvider::ok(), &clock, "w1")).await;
        dispatcher(&db.store, &clock, quick()).drain().await;
        let e = db.store.endpoint(id).await.unwrap().unwrap();
        assert!(!e.enabled && e.disabled_reason.as_deref() == Some("it answered 410 Gone"), "{e:?}");
        let rows = db.store.deliveries(id, Some("failed"), None, 10).await.unwrap();
        assert_eq!((rows.len(), rows[0].last_status), (1, Some(410)));
    }

    async fn endpoints_are_managed_by_the_api(db: TestDb) {
        let pos = FakePos::start().await;
        let app = spawn_app(&db, &[KEY]).await;
        let post = |body: Value| app.post("/api/webhook-endpoints").json(&body).send();
        // Refused, naming the field.
        for (body, field) in [
            (json!({"url": "http://pos.example.com/hook", "events": ["*"]}), "url"),
            (json!({"url": "https://pos.example.com/hook", "events": ["message.exploded"]}), "events"),
            (json!({"url": "https://pos.example.com/hook"}), "events"),
            (json!({"url": "https://pos.example.com/hook", "events": []}), "events"),
        ] {
            let (s, b) = json_of(post(body.clone()).await.unwrap()).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
            assert_eq!(b["error"]["field"], field, "{b}");
        }
        let (s, created) = json_of(post(json!({"url": pos.url, "events": ["message.queued", "message.sent"], "description": "POS"})).await.unwrap()).await;
        assert_eq!(s, StatusCode::CREATED, "{created}");
        let secret = created["secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("whsec_"));
        let id = created["id"].as_i64().unwrap();
        // Listed without its secret.
        let (_, list) = json_of(app.get("/api/webhook-endpoints").send().await.unwrap()).await;
        assert_eq!(list["endpoints"][0]["events"], json!(["message.queued", "message.sent"]));
        assert!(!list.to_string().contains(&secret), "the secret is shown once");

        // A message queued through the API reaches the POS, signed.
        let (s, m) = json_of(app.post("/api/messages").json(&json!({"channel": "sms", "recipient": "+14153234567", "body": "hi"})).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        let mid = m["id"].as_i64().unwrap();
        wait_until("the POS to hear of the message", || async {
            pos.delivered().iter().filter(|h| h.message_id() == mid).count() == 2
        }).await;
        assert!(pos.delivered().iter().all(|h| h.signed_by(&secret)));

        // Rotated: both secrets sign during the overlap.
        let (s, rotated) = json_of(app.post(&format!("/api/webhook-endpoints/{id}/rotate-secret")).json(&json!({"overlap_hours": 2})).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK, "{rotated}");
        let new_secret = rotated["secret"].as_str().unwrap().to_owned();
        assert!(rotated["previous_valid_until"].is_string());
        app.post("/api/messages").json(&json!({"channel": "sms", "recipient": "+14153234568", "body": "hi"})).send().await.unwrap();
        wait_until("the next webhooks", || async { pos.delivered().len() == 4 }).await;
        let last = pos.delivered().last().cloned().unwrap();
        assert!(last.signed_by(&secret) && last.signed_by(&new_secret));
        let (s, _) = json_of(app.post(&format!("/api/webhook-endpoints/{id}/rotate-secret")).json(&json!({"overlap_hours": 1000})).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

        // The delivery log and the deliveries: the POS has answered the
        // fourth request before Herald records it, so wait for the record.
        let attempts = || async { json_of(app.get(&format!("/api/webhook-endpoints/{id}/attempts")).send().await.unwrap()).await.1 };
        wait_until("the fourth attempt recorded", || async { attempts().await["attempts"].as_array().unwrap().len() == 4 }).await;
        let log = attempts().await;
        assert_eq!(log["attempts"][0]["status"], 200);
        assert!(log["attempts"][0]["latency_ms"].is_number());
        let (_, ds) = json_of(app.get(&format!("/api/webhook-endpoints/{id}/deliveries?status=delivered")).send().await.unwrap()).await;
        assert_eq!(ds["deliveries"].as_array().unwrap().len(), 4);
        let (s, _) = json_of(app.get(&format!("/api/webhook-endpoints/{id}/deliveries?status=lost")).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        // Replay one event.
        let ev = pos.delivered()[0].id.clone();
        let (s, r) = json_of(app.post(&format!("/api/webhook-endpoints/{id}/replay")).json(&json!({"event_id": ev})).send().await.unwrap()).await;
        assert_eq!((s, r["replayed"].as_i64()), (StatusCode::ACCEPTED, Some(1)));
        wait_until("the replay", || async { pos.delivered().len() == 5 }).await;
        assert_eq!(pos.delivered()[4].id, ev);
        let (s, _) = json_of(app.post(&format!("/api/webhook-endpoints/{id}/replay")).json(&json!({})).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

        // Disabled by PATCH: nothing more is sent; enabled again.
        let patch = |body: Value| app.http.patch(format!("{}/api/webhook-endpoints/{id}", app.url)).bearer_auth(KEY).json(&body).send();
        let (s, e) = json_of(patch(json!({"enabled": false})).await.unwrap()).await;
        assert_eq!((s, e["enabled"].as_bool()), (StatusCode::OK, Some(false)));
        let (s, e) = json_of(patch(json!({"url": "http://10.1.2.3/x"})).await.unwrap()).await;
        assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("url")));
        let (s, _) = json_of(patch(json!({"enabled": true, "events": ["*"]})).await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        // Deleted.
        let r = app.http.delete(format!("{}/api/webhook-endpoints/{id}", app.url)).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let (s, _) = json_of(app.get(&format!("/api/webhook-endpoints/{id}")).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }

    async fn a_worker_killed_before_its_webhooks_went_out_still_delivers_them(db: TestDb) {
        // The POS's port is chosen now; nothing listens on it yet.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{addr}/herald");
        let clock = ManualClock::new(chrono::Utc::now());
        let (_, secret) = endpoint(&db.store, &url, &["message.sent"], &clock).await;
        let ids = [
            db.insert_sql("sms", "+14157654321", "one").await,
            db.insert_sql("sms", "+14157654322", "two").await,
            db.insert_sql("sms", "+14157654323", "three").await,
        ];
        let mut worker = herald(&db, db.dir.path())
            .env("WEBHOOK_TIMEOUT_SECONDS", "2")
            .args(["process", "--watch"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_until("the messages to be sent", || async {
            let mut all = true;
            for id in ids {
                all &= db.get(id).await.status == "sent";
            }
            all
        })
        .await;
        // Killed with its webhooks undelivered (the POS was unreachable).
        worker.kill().unwrap();
        worker.wait().unwrap();
        let pos = FakePos::on(tokio::net::TcpListener::bind(addr).await.unwrap()).await;
        // A new worker delivers them once their retry is due.
        let mut delivered = 0;
        for _ in 0..80 {
            run_herald(&db, &[("WEBHOOK_TIMEOUT_SECONDS", "2".into())], &["process", "--quiet"]).await;
            delivered = pos.delivered().len();
            if delivered >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(delivered, 3, "{:?}", pos.hooks());
        let mut got: Vec<i64> = pos.delivered().iter().map(|h| h.message_id()).collect();
        got.sort_unstable();
        assert_eq!(got, ids);
        assert!(pos.delivered().iter().all(|h| h.signed_by(&secret) && h.event_type() == "message.sent"));
    }
}

/// An SMS to queue through the store, as the API does.
fn sms_message(to: &str, body: &str, metadata: Value) -> herald::domain::NewMessage {
    herald::domain::NewMessage::parse(&herald::domain::RawMessage {
        channel: Some("sms".into()),
        recipient: Some(to.into()),
        body: Some(body.into()),
        metadata: Some(metadata),
        ..Default::default()
    })
    .unwrap()
}

every_backend! {
    async fn receipts_become_events(db: TestDb) {
        let pos = FakePos::start().await;
        let clock = ManualClock::new(chrono::Utc::now());
        let (_, secret) = endpoint(&db.store, &pos.url, &["message.delivered", "message.bounced"], &clock).await;
        let sid = format!("SM{}", "a".repeat(32));
        db.execute(&format!(
            "INSERT INTO notification_messages (channel, recipient, body, status, provider, provider_message_id)
             VALUES ('sms', '+14153234567', 'hi', 'sent', 'twilio', '{sid}')"
        ))
        .await;
        let id = db.max_id().await;
        let receipt = |status: &str| herald::store::ReceiptUpdate {
            provider: "twilio",
            message_id: None,
            provider_message_id: Some(sid.clone()),
            email: None,
            event: status.to_owned(),
            delivery_status: Some((if status == "delivered" { "delivered" } else { "sent" }, herald::receipts::rank(status))),
            occurred_at: None,
            error_code: None,
            dedupe_key: format!("t:{status}"),
            detail: json!({}),
            fallback_within: None,
        };
        for s in ["sent", "delivered", "delivered"] {
            db.store.apply_receipt(&receipt(s), clock.now()).await.unwrap();
        }
        dispatcher(&db.store, &clock, quick()).drain().await;
        let hooks = pos.delivered();
        assert_eq!(hooks.len(), 1, "sent says nothing new; the repeat is one receipt");
        assert_eq!((hooks[0].event_type().as_str(), hooks[0].message_id()), ("message.delivered", id));
        assert_eq!(hooks[0].json()["data"]["delivery_status"], "delivered");
        assert!(hooks[0].signed_by(&secret));
    }
}

#[tokio::test]
async fn the_cli_manages_endpoints() {
    let db = TestDb::new(Backend::Sqlite).await;
    let out = ok(run_herald(
        &db,
        &[],
        &[
            "webhooks",
            "add",
            "--url",
            "https://pos.example.com/herald",
            "--events",
            "message.sent,message.failed",
        ],
    )
    .await);
    assert!(out.contains("whsec_"), "{out}");
    let list = ok(run_herald(&db, &[], &["webhooks", "list"]).await);
    assert!(
        list.contains("https://pos.example.com/herald") && list.contains("message.failed,message.sent")
            || list.contains("message.sent,message.failed"),
        "{list}"
    );
    assert!(!list.contains("whsec_"), "the secret is shown once");
    let bad = run_herald(&db, &[], &["webhooks", "add", "--url", "http://pos.example.com/herald"]).await;
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("--url") && stderr(&bad).contains("https"),
        "{}",
        stderr(&bad)
    );
    let off = ok(run_herald(&db, &[], &["webhooks", "disable", "1"]).await);
    assert!(off.contains("disabled"), "{off}");
    let rotated = ok(run_herald(&db, &[], &["webhooks", "rotate", "1", "--overlap-hours", "2"]).await);
    assert!(
        rotated.contains("whsec_") && rotated.contains("also signs until"),
        "{rotated}"
    );
    let missing = run_herald(&db, &[], &["webhooks", "replay", "1", "--event", "evt_none"]).await;
    assert!(!missing.status.success());
    ok(run_herald(&db, &[], &["webhooks", "remove", "1"]).await);
    assert!(ok(run_herald(&db, &[], &["webhooks", "list"]).await).contains("no webhook endpoints"));
}
