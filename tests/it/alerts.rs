//! Alerting against loopback receivers: a failing provider fires one
//! alert and later one resolved notice; a stuck processor fires the queue
//! age alert; two workers on one PostgreSQL send one alert, not two;
//! alerts work with only `herald process --watch` running.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use herald::alerts::{AlertRunner, AlertSettings, Rule, RuleKind, Targets};
use herald::clock::{Clock, ManualClock};
use herald::domain::{Channel, EmailAddress, PhoneNumber};
use serde_json::Value;

use crate::support::*;

/// A loopback endpoint that keeps every JSON body posted to it.
#[derive(Clone, Default)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Value>>> = Arc::default();
        let keep = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |body: axum::body::Bytes| {
                let keep = keep.clone();
                async move {
                    keep.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, got }
    }

    fn bodies(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }
}

fn rule(id: &str, kind: RuleKind) -> Rule {
    Rule {
        id: id.into(),
        kind,
        window_minutes: 15,
        channel: None,
        provider: None,
        source: "environment".into(),
    }
}

fn settings(rules: Vec<Rule>, slack: &Receiver, webhook: &Receiver) -> AlertSettings {
    AlertSettings {
        rules,
        targets: Targets {
            slack_url: Some(slack.url.clone()),
            webhook_url: Some(webhook.url.clone()),
            webhook_secret: None,
            email_to: vec![EmailAddress::parse("ops@example.com").unwrap()],
            sms_to: vec![PhoneNumber::parse("+14153239000").unwrap()],
            channel_providers: vec![(Channel::Sms, "test".into()), (Channel::Email, "smtp".into())],
        },
        cooldown: Duration::from_secs(1800),
        interval: Duration::from_secs(30),
        public_url: Some("https://herald.example.com".into()),
        max_messages_per_hour: 20,
    }
}

every_backend! {
    async fn a_failing_provider_fires_one_alert_and_later_one_resolved_notice(db: TestDb) {
        use herald::providers::{Receipt, SendError};
        let (slack, webhook) = (Receiver::start().await, Receiver::start().await);
        let clock = ManualClock::new(chrono::Utc::now());
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = failing.clone();
        let provider = ScriptedProvider::new(move |m, _| {
            if f.load(std::sync::atomic::Ordering::SeqCst) { Err(SendError::permanent("30003", "unreachable")) } else { Ok(Receipt::new(format!("P-{}", m.id))) }
        });
        for i in 0..6 {
            db.insert_sql("sms", &format!("+1415323456{i}"), "your order").await;
        }
        run_once(&processor(&db.store, &provider, &clock, "w1")).await;
        let runner = AlertRunner::new(
            db.store.clone(),
            Arc::new(clock.clone()),
            settings(vec![rule("failures", RuleKind::FailureRatio { threshold: 0.5, min_volume: 5 })], &slack, &webhook),
            "worker-a".into(),
        );
        let r = runner.tick().await.unwrap();
        assert!(r.leader);
        assert_eq!(r.fired, vec!["failures/channel=sms,provider=test"], "one failing provider on one channel is one alert: {r:?}");
        let texts: Vec<String> = slack.bodies().iter().map(|b| b["text"].as_str().unwrap().to_owned()).collect();
        assert_eq!(texts.len(), 1, "{texts:?}");
        assert!(texts[0].contains("6 of 6 sends of sms through test failed") && texts[0].contains("https://herald.example.com/dashboard/messages?status=failed&channel=sms"), "{texts:?}");
        let hook = webhook.bodies();
        assert_eq!((hook[0]["state"].as_str(), hook[0]["key"].as_str()), (Some("firing"), Some("failures/channel=sms,provider=test")));
        // Operators' email gets it through Herald; the SMS target is skipped
        // (the alert is about SMS).
        let queued = db.query("SELECT channel, recipient, metadata FROM notification_messages WHERE metadata LIKE '%herald_alert%'").await;
        assert_eq!(queued.len(), 1, "{queued:?}");
        assert!(queued.iter().all(|q| q["channel"] == "email" && q["recipient"] == "ops@example.com"));
        // Still failing: nothing more is sent.
        clock.advance(Duration::from_secs(60));
        assert_eq!(runner.tick().await.unwrap().fired.len(), 0);
        assert_eq!(slack.bodies().len(), 1);
        // Fixed: new sends succeed and the bad minutes leave the window.
        failing.store(false, std::sync::atomic::Ordering::SeqCst);
        clock.advance(Duration::from_secs(16 * 60));
        for i in 0..6 {
            db.insert_sql("sms", &format!("+1415323457{i}"), "your order").await;
        }
        run_once(&processor(&db.store, &provider, &clock, "w1")).await;
        let r = runner.tick().await.unwrap();
        assert_eq!(r.resolved, vec!["failures/channel=sms,provider=test"], "{r:?}");
        let texts: Vec<String> = slack.bodies().iter().map(|b| b["text"].as_str().unwrap().to_owned()).collect();
        assert_eq!(texts.len(), 2);
        assert!(texts[1].starts_with("[Herald] RESOLVED after 17 min"), "{texts:?}");
        assert_eq!(runner.tick().await.unwrap(), herald::alerts::TickReport { leader: true, ..Default::default() });
        // The history has both, with where they went.
        let events = db.store.alert_events(10).await.unwrap();
        assert_eq!(events.iter().filter(|e| e.kind == "fired").count(), 1);
        assert_eq!(events.iter().filter(|e| e.kind == "resolved").count(), 1);
        assert!(events.iter().any(|e| e.deliveries.contains("slack") && e.deliveries.contains("email:ops@example.com")));
        // The alert e-mails themselves are not counted in the statistics.
        let now = clock.now();
        let rows = db.store.stats(now - chrono::Duration::hours(2), now + chrono::Duration::hours(1), None, herald::store::StatGroups { channel: true, ..Default::default() }).await.unwrap();
        assert!(rows.iter().all(|r| r.channel.as_deref() != Some("email")), "{rows:?}");
    }

    async fn a_stuck_processor_fires_the_queue_age_alert(db: TestDb) {
        let (slack, webhook) = (Receiver::start().await, Receiver::start().await);
        db.insert_sql("sms", "+14153234567", "waiting").await;
        // Nobody processes it; twelve minutes pass.
        let clock = ManualClock::new(chrono::Utc::now() + chrono::Duration::minutes(12));
        let runner = AlertRunner::new(
            db.store.clone(),
            Arc::new(clock.clone()),
            settings(vec![rule("queue-age", RuleKind::QueueAge { minutes: 10 })], &slack, &webhook),
            "worker-a".into(),
        );
        let r = runner.tick().await.unwrap();
        assert_eq!(r.fired, vec!["queue-age"]);
        let text = slack.bodies()[0]["text"].as_str().unwrap().to_owned();
        assert!(text.contains("the oldest due message has waited 12 min") && text.contains("is the processor running?"), "{text}");
        // SMS operators get it too (the alert is about no channel).
        let queued = db.query("SELECT channel FROM notification_messages WHERE metadata LIKE '%herald_alert%' ORDER BY id").await;
        assert_eq!(queued.iter().map(|q| q["channel"].as_str().unwrap()).collect::<Vec<_>>(), ["sms", "email"]);
    }
}

server_backends! {
    async fn two_workers_on_one_database_send_one_alert(db: TestDb) {
    let (slack, webhook) = (Receiver::start().await, Receiver::start().await);
    db.insert_sql("sms", "+14153234567", "waiting").await;
    let clock = ManualClock::new(chrono::Utc::now() + chrono::Duration::minutes(30));
    // Two workers, each with its own connection pool, evaluating at once.
    let runners: Vec<Arc<AlertRunner>> = vec![
        Arc::new(AlertRunner::new(
            db.store.clone(),
            Arc::new(clock.clone()),
            settings(
                vec![rule("queue-age", RuleKind::QueueAge { minutes: 10 })],
                &slack,
                &webhook,
            ),
            "worker-a".into(),
        )),
        Arc::new(AlertRunner::new(
            db.second_store().await,
            Arc::new(clock.clone()),
            settings(
                vec![rule("queue-age", RuleKind::QueueAge { minutes: 10 })],
                &slack,
                &webhook,
            ),
            "worker-b".into(),
        )),
    ];
    for _ in 0..3 {
        let ticks: Vec<_> = runners
            .iter()
            .map(|r| {
                let r = r.clone();
                tokio::spawn(async move { r.tick().await.unwrap() })
            })
            .collect();
        let mut leaders = 0;
        for t in ticks {
            leaders += usize::from(t.await.unwrap().leader);
        }
        assert_eq!(leaders, 1, "one worker holds the lease");
        clock.advance(Duration::from_secs(30));
    }
    assert_eq!(slack.bodies().len(), 1, "one alert, not two: {:?}", slack.bodies());
    assert_eq!(webhook.bodies().len(), 1);
    }
}

#[tokio::test]
async fn alerts_work_with_only_the_worker_running() {
    // `herald process --watch` alone, a custom provider refusing Herald's
    // credentials: the credentials alert reaches the webhook.
    let db = TestDb::new(Backend::Sqlite).await;
    let fake = FakeCustom::start().await;
    let hook = Receiver::start().await;
    fake.state.script(
        "+14153234567",
        Reply::Raw {
            status: 401,
            body: "bad key".into(),
            headers: vec![],
        },
    );
    db.insert_sql("sms", "+14153234567", "receipt").await;
    let mut child = herald(&db, db.dir.path())
        .env("SMS_PROVIDER", "custom")
        .env("CUSTOM_SMS_URL", &fake.url)
        .env("CUSTOM_PROVIDER_SECRET", CUSTOM_SECRET)
        .env("ALERT_WEBHOOK_URL", &hook.url)
        .env("ALERT_INTERVAL_SECONDS", "1")
        .args(["process", "--watch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the credentials alert to arrive", || async {
        !hook.bodies().is_empty()
    })
    .await;
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut child, PATIENCE))
        .await
        .unwrap();
    assert!(status.success());
    let body = &hook.bodies()[0];
    assert_eq!(body["state"], "firing");
    assert_eq!(body["key"], "credentials/provider=custom", "{body}");
    assert!(
        body["summary"]
            .as_str()
            .unwrap()
            .contains("refused Herald's credentials"),
        "{body}"
    );
}

every_backend! {
    async fn alert_rules_are_added_checked_and_removed_by_api(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        let add = |body: Value| {
            let req = app.post("/api/alerts/rules").json(&body);
            async move { json_of(req.send().await.unwrap()).await }
        };
        let good = serde_json::json!({"id": "whatsapp-failing", "kind": "failure_ratio", "threshold": 0.1, "min_volume": 5, "window_minutes": 30, "channel": "whatsapp"});
        let (s, rule) = add(good.clone()).await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{rule}");
        assert_eq!(rule["source"], "stored");
        let (s, e) = add(good.clone()).await;
        assert_eq!((s, e["error"]["field"].as_str()), (reqwest::StatusCode::CONFLICT, Some("id")));
        // Each wrong value is refused naming its field; nothing is stored.
        for (patch, field) in [
            (serde_json::json!({"threshold": 1.5}), "threshold"),
            (serde_json::json!({"min_volume": 0}), "min_volume"),
            (serde_json::json!({"window_minutes": 0}), "window_minutes"),
            (serde_json::json!({"window_minutes": 20000}), "window_minutes"),
            (serde_json::json!({"id": "no spaces please"}), "id"),
            (serde_json::json!({"channel": "fax"}), "channel"),
        ] {
            let mut body = good.clone();
            body["id"] = "another".into();
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            let (s, e) = add(body).await;
            assert_eq!((s, e["error"]["field"].as_str()), (reqwest::StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{patch}: {e}");
        }
        let (s, e) = add(serde_json::json!({"id": "x", "kind": "queue_age", "minutes": 0, "window_minutes": 15})).await;
        assert_eq!((s, e["error"]["field"].as_str()), (reqwest::StatusCode::UNPROCESSABLE_ENTITY, Some("minutes")));
        let (s, _) = add(serde_json::json!({"id": "x", "kind": "sms_storm"})).await;
        assert!(s.is_client_error(), "an unknown kind is refused: {s}");
        let (_, all) = json_of(app.get("/api/alerts").send().await.unwrap()).await;
        let ids: Vec<&str> = all["rules"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert!(ids.contains(&"whatsapp-failing") && ids.contains(&"failure-ratio"), "{ids:?}");
        assert!(!ids.contains(&"another") && !ids.contains(&"x"));
        // Stored rules can be removed; the environment's cannot.
        let del = |id: &str| app.http.delete(format!("{}/api/alerts/rules/{id}", app.url)).bearer_auth(KEY).send();
        assert_eq!(del("failure-ratio").await.unwrap().status(), reqwest::StatusCode::NOT_FOUND);
        assert_eq!(del("whatsapp-failing").await.unwrap().status(), reqwest::StatusCode::NO_CONTENT);
        assert_eq!(del("whatsapp-failing").await.unwrap().status(), reqwest::StatusCode::NOT_FOUND);
    }
}

every_backend! {
    async fn an_open_circuit_and_a_disabled_webhook_endpoint_raise_alerts(db: TestDb) {
        let (slack, webhook) = (Receiver::start().await, Receiver::start().await);
        let clock = ManualClock::new(chrono::Utc::now());
        db.store
            .open_circuit("sendgrid", clock.now() + chrono::Duration::seconds(30), 1, "5 failures in a row; the last: 503", clock.now())
            .await
            .unwrap();
        let e = db
            .store
            .create_endpoint(
                &herald::domain::EndpointUrl::parse("https://pos.example.com/herald").unwrap(),
                None,
                &herald::domain::EventFilter::All,
                herald::signing::WebhookSecret::generate().expose(),
                true,
                clock.now(),
            )
            .await
            .unwrap();
        db.store.disable_endpoint(e.id, "it answered 410 Gone", clock.now()).await.unwrap();
        let runner = AlertRunner::new(
            db.store.clone(),
            Arc::new(clock.clone()),
            settings(
                vec![rule("circuit", RuleKind::CircuitOpen), rule("endpoint", RuleKind::WebhookEndpointDisabled)],
                &slack,
                &webhook,
            ),
            "worker-a".into(),
        );
        let r = runner.tick().await.unwrap();
        assert_eq!(r.fired, vec!["circuit/provider=sendgrid".to_owned(), format!("endpoint/endpoint={}", e.id)]);
        let texts: Vec<String> = slack.bodies().iter().map(|b| b["text"].as_str().unwrap().to_owned()).collect();
        assert!(texts.iter().any(|t| t.contains("sendgrid's circuit is open")), "{texts:?}");
        assert!(texts.iter().any(|t| t.contains("410 Gone")), "{texts:?}");
        // Closed and enabled again: both resolve.
        db.store.close_circuit("sendgrid", clock.now()).await.unwrap();
        let mut e = db.store.endpoint(e.id).await.unwrap().unwrap();
        e.enabled = true;
        e.disabled_reason = None;
        db.store.update_endpoint(&e, clock.now()).await.unwrap();
        clock.advance(std::time::Duration::from_secs(60));
        let r = runner.tick().await.unwrap();
        assert_eq!(r.resolved.len(), 2, "{r:?}");
    }
}
