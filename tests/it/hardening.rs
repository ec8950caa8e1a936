//! Abuse and faults: what a careless integrator or an attacker can do must
//! not stall, exhaust or corrupt Herald.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

const SPIN: &str = "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}";

every_backend! {
    async fn a_spinning_template_stops_at_its_limit_and_stalls_nothing(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        let (s, _) = json_of(app.put("/api/templates/spin").json(&json!({"body": SPIN})).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = json_of(app.put("/api/templates/huge").json(&json!({"body": "{{ 'x' * 100000000 }}"})).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        // Several heavy previews at once, and health checks meanwhile.
        let previews: Vec<_> = (0..4)
            .map(|i| {
                let req = app.post(&format!("/api/templates/{}/preview", if i % 2 == 0 { "spin" } else { "huge" })).json(&json!({}));
                tokio::spawn(async move { json_of(req.send().await.unwrap()).await })
            })
            .collect();
        for _ in 0..5 {
            let r = app.http.get(format!("{}/healthz", app.url)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        for p in previews {
            let (s, body) = p.await.unwrap();
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(body["error"]["code"], "template_limit", "{body}");
        }
        // Queued through the API: refused with the limit named, nothing stored.
        let (s, body) = json_of(app.post("/api/messages").json(&json!({"channel": "sms", "recipient": "+14153234567", "template": "huge"})).send().await.unwrap()).await;
        assert_eq!((s, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("template_limit")), "{body}");
        // Inserted by SQL with the template: failed for good with code
        // template_limit; the message beside it is sent.
        db.store
            .execute_raw("INSERT INTO notification_messages (channel, recipient, template) VALUES ('sms', '+14153234567', 'spin')")
            .await
            .unwrap();
        let spun = db.max_id().await;
        let fine = db.insert_sql("sms", "+14153234568", "fine").await;
        let m: Value = app.wait_status(spun, "failed").await;
        assert_eq!(m["error"]["code"], "template_limit", "{m}");
        app.wait_status(fine, "sent").await;
    }
}

every_backend! {
    async fn a_message_whose_claims_keep_dying_is_given_up(db: TestDb) {
        let id = db.insert_sql("sms", "+14153234567", "poison").await;
        let clock = herald::clock::ManualClock::new(t0());
        // Four workers claim it and die before recording anything (the
        // test config allows the first attempt and three retries).
        for _ in 0..4 {
            let now = herald::clock::Clock::now(&clock);
            let got = db
                .store
                .claim(herald::store::ClaimFilter::Any, "doomed", now, now + chrono::Duration::seconds(60), 10)
                .await
                .unwrap();
            assert_eq!(got.len(), 1);
            clock.advance(std::time::Duration::from_secs(61));
        }
        // The fifth claim ends it, without calling the provider.
        let provider = ScriptedProvider::ok();
        let summary = run_once(&processor(&db.store, &provider, &clock, "w1")).await;
        assert_eq!(summary.failed, 1);
        assert!(provider.calls().is_empty());
        let m = db.get(id).await;
        assert_eq!(m.status, "failed");
        let e = m.error.unwrap();
        assert_eq!(e["code"], "abandoned", "{e}");
        assert!(e["message"].as_str().unwrap().contains("claimed 5 times"), "{e}");
        assert_eq!(m.attempts, 4);
    }
}

/// A request's headers announcing a body of `len` bytes (none of it sent).
fn headers_only(path: &str, extra: &str, len: usize) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}Content-Length: {len}\r\n\r\n")
}

every_backend! {
    async fn webhooks_check_before_reading_and_read_within_bounds(db: TestDb) {
        use tokio::io::AsyncWriteExt;
        // Disabled (the default): refused on the headers, the body never read.
        let app = spawn_app(&db, &[KEY]).await;
        for path in ["/webhooks/twilio/status", "/webhooks/sendgrid/events"] {
            let answer = raw_answer(&app.url, headers_only(path, "", 32 * 1024 * 1024).as_bytes()).await;
            assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        }
        // Enabled: no signature header, refused before the body; a signed
        // body over the provider's size, refused on its declared length or
        // as it is read.
        let app = spawn_app_with(&db, &[KEY], &[("PUBLIC_URL", "https://h.example"), ("TWILIO_AUTH_TOKEN", "0123456789abcdef0123456789abcdef")]).await;
        let twilio = "/webhooks/twilio/status";
        let answer = raw_answer(&app.url, headers_only(twilio, "", 32 * 1024 * 1024).as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        let signed = "X-Twilio-Signature: c2lnbmF0dXJl\r\n";
        let answer = raw_answer(&app.url, headers_only(twilio, signed, herald::http::TWILIO_MAX_BODY + 1).as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        let chunk = "a".repeat(herald::http::TWILIO_MAX_BODY + 1);
        let chunked = format!(
            "POST {twilio} HTTP/1.1\r\nHost: x\r\n{signed}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        );
        let answer = raw_answer(&app.url, chunked.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        // Signed requests are read a few at a time: with every slot taken
        // by a client that never finishes its body, the next one is told
        // to come back (503), and health checks are not affected.
        let mut stalled = Vec::new();
        for _ in 0..herald::http::WEBHOOK_CONCURRENCY {
            let mut s = raw_connect(&app.url).await;
            s.write_all(headers_only(twilio, signed, 1000).as_bytes()).await.unwrap();
            s.write_all(b"MessageSid=SM1").await.unwrap();
            stalled.push(s);
        }
        let form = "MessageSid=SM1&MessageStatus=sent";
        let probe = format!("{}{form}", headers_only(twilio, signed, form.len()).replace("application/json", "application/x-www-form-urlencoded"));
        let busy = std::sync::Mutex::new(String::new());
        wait_until("the webhook slots to be taken", || async {
            let answer = raw_answer(&app.url, probe.as_bytes()).await;
            let taken = answer.starts_with("HTTP/1.1 503");
            *busy.lock().unwrap() = answer;
            taken
        }).await;
        let busy = busy.into_inner().unwrap();
        assert!(busy.contains("\"busy\""), "{busy}");
        let r = app.http.get(format!("{}/healthz", app.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        drop(stalled);
        // Slots come back: a wrongly signed request is read and refused.
        wait_until("the webhook slots to come back", || async {
            raw_answer(&app.url, probe.as_bytes()).await.starts_with("HTTP/1.1 403")
        }).await;
    }
}

/// The app with these server limits (environment variables).
async fn app_with_limits(db: &TestDb, vars: &[(&str, &str)]) -> TestApp {
    spawn_app_with(db, &[KEY], vars).await
}

#[tokio::test]
async fn silent_half_sent_and_idle_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let db = TestDb::new(Backend::Sqlite).await;
    let app = app_with_limits(&db, &[("HTTP_HEADER_TIMEOUT_SECONDS", "1")]).await;
    let mut silent = raw_connect(&app.url).await;
    let mut half = raw_connect(&app.url).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut idle = raw_connect(&app.url).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_answer(&mut idle).await.starts_with("HTTP/1.1 200"));
    // Each is closed by the server (a header timeout of 1 s; the test only
    // bounds how long it waits, generously).
    read_until_closed(&mut silent, PATIENCE).await;
    let answer = read_until_closed(&mut half, PATIENCE).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    read_until_closed(&mut idle, PATIENCE).await;
    // And the server still answers.
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn at_the_connection_cap_new_clients_wait_for_a_free_slot() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = app_with_limits(
        &db,
        &[("HTTP_MAX_CONNECTIONS", "3"), ("HTTP_HEADER_TIMEOUT_SECONDS", "2")],
    )
    .await;
    let started = std::time::Instant::now();
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(raw_connect(&app.url).await);
    }
    // The fourth client is served only once a silent one has been closed,
    // i.e. no sooner than the header timeout after they were accepted.
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(1900),
        "served after {waited:?}, before a slot was free"
    );
    for s in &mut silent {
        read_until_closed(s, PATIENCE).await;
    }
}

every_backend! {
    async fn sigterm_with_stalled_clients_exits_cleanly_within_the_grace(db: TestDb) {
        use tokio::io::AsyncWriteExt;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut child = herald(&db, db.dir.path())
            .env("PORT", port.to_string())
            .env("API_KEYS", KEY)
            .env("HTTP_SHUTDOWN_GRACE_SECONDS", "1")
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        wait_until("serve to start", || async { client.get(format!("{url}/healthz")).send().await.is_ok() }).await;
        // One client stops halfway through its headers, another halfway
        // through its body; messages are being sent meanwhile.
        let mut half_headers = raw_connect(&url).await;
        half_headers.write_all(b"POST /api/messages HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let mut half_body = raw_connect(&url).await;
        half_body
            .write_all(format!("POST /api/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"channel\":").as_bytes())
            .await
            .unwrap();
        db.insert_many(300).await;
        let r = client.get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        sigterm(&child);
        let status = tokio::task::spawn_blocking(move || wait_exit(&mut child, PATIENCE)).await.unwrap();
        assert!(status.success(), "{status:?}");
        // Nothing was left claimed: unsent messages are pending again.
        assert_eq!(db.count_status("processing").await, 0);
        assert_eq!(db.count_status("sent").await + db.count_status("pending").await, 300);
        drop((half_headers, half_body));
    }
}

every_backend! {
    async fn control_characters_and_out_of_range_times_are_refused_naming_the_field(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        let sms = |extra: Value| {
            let mut m = json!({"channel": "sms", "recipient": "+14153234567", "body": "hello"});
            m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            m
        };
        let email = |extra: Value| {
            let mut m = json!({"channel": "email", "recipient": "ana@example.com", "subject": "Hi", "body": "hello"});
            m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            m
        };
        let cases = [
            (sms(json!({"body": "bad\u{0}"})), "body"),
            (sms(json!({"body": "bell\u{7}"})), "body"),
            (sms(json!({"body": "escape \u{1b}[31m"})), "body"),
            (sms(json!({"recipient": "+1415323\u{0}4567"})), "recipient"),
            (sms(json!({"channel": "sms\u{0}"})), "channel"),
            (sms(json!({"metadata": {"order": "a\u{0}"}})), "metadata"),
            (sms(json!({"metadata": {"k\u{0}": 1}})), "metadata"),
            (sms(json!({"body": null, "content_sid": "HX0123456789abcdef0123456789abcdef", "content_variables": {"1": "x\u{0}"}})), "content_variables"),
            (email(json!({"subject": "Hi\u{0}"})), "subject"),
            (email(json!({"html_body": "<p>\u{0}</p>"})), "html_body"),
            (email(json!({"recipient": "\"a\\\r\\\nBcc: x@evil.example\"@example.com"})), "recipient"),
            (sms(json!({"body": null, "template": "t\u{0}"})), "template"),
            (sms(json!({"body": null, "template": "hello", "data": {"n": "\u{0}"}})), "data"),
            // 9999-12-31T23:59:59-23:59 is in year 10000 in UTC.
            (sms(json!({"send_at": "9999-12-31T23:59:59-23:59"})), "send_at"),
            (sms(json!({"send_at": "1969-12-31T23:59:59Z"})), "send_at"),
            (sms(json!({"send_at": "0001-01-01T00:00:00Z"})), "send_at"),
        ];
        let (s, _) = json_of(app.put("/api/templates/hello").json(&json!({"body": "Hi {{ n }}"})).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        for (body, field) in &cases {
            let (s, e) = json_of(app.post("/api/messages").json(body).send().await.unwrap()).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
            assert_eq!(e["error"]["field"], *field, "{body}: {e}");
        }
        // In a batch, the bad one is named and nothing is stored.
        let batch = json!({"messages": [sms(json!({})), sms(json!({"body": "x\u{0}"}))]});
        let (s, e) = json_of(app.post("/api/messages/batch").json(&batch).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert!(e.to_string().contains("body"), "{e}");
        // Tab, CR and LF are text; the latest and earliest times are fine.
        for ok in [
            sms(json!({"body": "line 1\r\nline 2\tend"})),
            sms(json!({"send_at": "9999-12-31T23:59:59Z"})),
            sms(json!({"send_at": "1970-01-01T00:00:00Z"})),
        ] {
            let (s, e) = json_of(app.post("/api/messages").json(&ok).send().await.unwrap()).await;
            assert_eq!(s, StatusCode::ACCEPTED, "{ok}: {e}");
        }
        let far = db.max_id().await - 1;
        assert_eq!(app.message(far).await["status"], "pending", "scheduled for 9999, not sent now");
        // Templates, suppressions, and query and path parameters.
        for (req, field) in [
            (app.put("/api/templates/bad").json(&json!({"body": "x\u{0}"})), "body"),
            (app.put("/api/templates/bad").json(&json!({"subject": "\u{7}", "body": "x"})), "subject"),
            (app.post("/api/templates/hello/preview").json(&json!({"data": {"n": "\u{0}"}})), "data"),
            (app.post("/api/suppressions").json(&json!({"channel": "sms", "recipient": "+14153234567", "reason": "no\u{0}"})), "reason"),
        ] {
            let (s, e) = json_of(req.send().await.unwrap()).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
            assert_eq!(e["error"]["field"], field, "{e}");
        }
        for (path, field) in [
            ("/api/messages?recipient=%2B1415%00", "recipient"),
            ("/api/messages?status=%00", "status"),
            ("/api/messages?created_from=10000-01-01T00:00:00Z", "created_from"),
            ("/api/messages?created_to=9999-12-31T23:59:59-23:59", "created_to"),
            ("/api/templates/x%00", "name"),
            ("/api/suppressions/sms/%2B1415%0032", "recipient"),
        ] {
            let (s, e) = json_of(app.get(path).send().await.unwrap()).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {e}");
            assert_eq!(e["error"]["field"], field, "{path}: {e}");
        }
        let (s, e) = json_of(app.post("/api/templates/x%00/preview").json(&json!({})).send().await.unwrap()).await;
        assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("name")), "{e}");
        let (s, e) = json_of(app.http.delete(format!("{}/api/suppressions/sms/%2B1415%0032", app.url)).bearer_auth(KEY).send().await.unwrap()).await;
        assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("recipient")), "{e}");
        // Only the three good messages were stored.
        let total: i64 = db.store.counts().await.unwrap().iter().map(|c| c.count).sum();
        assert_eq!(total, 3);
    }
}

every_backend! {
    async fn a_request_the_database_refuses_fails_alone(db: TestDb) {
        // The database refuses one body (a POS's trigger, say); requests
        // grouped into one insert with it must still be stored.
        let trigger = match db.backend {
            Backend::Sqlite => vec![
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON notification_messages WHEN NEW.body = 'poison'
                 BEGIN SELECT RAISE(ABORT, 'poison refused'); END",
            ],
            Backend::Postgres => vec![
                "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN IF NEW.body = 'poison' THEN RAISE EXCEPTION 'poison refused'; END IF; RETURN NEW; END $$",
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON notification_messages
                 FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
            ],
            Backend::Mariadb => vec![
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON notification_messages FOR EACH ROW
                 BEGIN IF NEW.body = 'poison' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poison refused'; END IF; END",
            ],
        };
        for sql in trigger {
            db.store.execute_raw(sql).await.unwrap();
        }
        let app = spawn_app(&db, &[KEY]).await;
        let clients: Vec<_> = (0..18)
            .map(|c| {
                let app_url = app.url.clone();
                let http = app.http.clone();
                tokio::spawn(async move {
                    let mut statuses = Vec::new();
                    for i in 0..25 {
                        let body = if c < 2 { "poison".to_owned() } else { format!("good {c}/{i}") };
                        let r = http
                            .post(format!("{app_url}/api/messages"))
                            .bearer_auth(KEY)
                            .json(&json!({"channel": "sms", "recipient": "+14153234567", "body": body}))
                            .send()
                            .await
                            .unwrap();
                        statuses.push(r.status());
                    }
                    (c, statuses)
                })
            })
            .collect();
        for client in clients {
            let (c, statuses) = client.await.unwrap();
            for s in statuses {
                if c < 2 {
                    assert!(s.is_server_error(), "the refused request fails: {s}");
                } else {
                    assert_eq!(s, StatusCode::ACCEPTED, "a good request beside a refused one is stored");
                }
            }
        }
        let total: i64 = db.store.counts().await.unwrap().iter().map(|c| c.count).sum();
        assert_eq!(total, 16 * 25);
    }
}

every_backend! {
    async fn what_a_provider_says_is_recorded_whatever_it_holds(db: TestDb) {
        // A provider's error text and message id with NUL in them: stored
        // (NUL as U+FFFD), not a recording failure that stalls the queue.
        let failing = db.insert_sql("sms", "+14153234567", "will fail").await;
        let sent = db.insert_sql("sms", "+14153234568", "will send").await;
        let provider = herald_provider_saying_nul(failing);
        let clock = herald::clock::ManualClock::new(t0());
        let summary = run_once(&processor(&db.store, &provider, &clock, "w1")).await;
        assert_eq!((summary.sent, summary.failed), (1, 1), "{summary:?}");
        let f = db.get(failing).await;
        assert_eq!(f.status, "failed");
        let e = f.error.unwrap();
        assert_eq!(e["message"], "bad\u{fffd}number", "{e}");
        assert_eq!(e["code"], "21\u{fffd}211", "{e}");
        let s = db.get(sent).await;
        assert_eq!(s.status, "sent");
        assert_eq!(s.provider_message_id.as_deref(), Some("SM\u{fffd}1"));
    }
}

fn herald_provider_saying_nul(failing: i64) -> ScriptedProvider {
    use herald::providers::{Receipt, SendError};
    ScriptedProvider::new(move |m, _| {
        if m.id == failing {
            Err(SendError::permanent("21\u{0}211", "bad\u{0}number").with_status(400))
        } else {
            Ok(Receipt::new("SM\u{0}1".to_owned()))
        }
    })
}

#[tokio::test]
async fn rows_with_control_characters_fail_as_invalid_and_are_not_sent() {
    // SQLite stores NUL and escape characters in text (PostgreSQL refuses
    // NUL itself): such a row is failed naming the field, never sent.
    let db = TestDb::new(Backend::Sqlite).await;
    db.store
        .execute_raw("INSERT INTO notification_messages (channel, recipient, body) VALUES ('sms', '+14153234567', 'a' || char(0) || 'b'), ('sms', '+14153234567', 'c' || char(27) || '[2J')")
        .await
        .unwrap();
    let provider = ScriptedProvider::ok();
    let clock = herald::clock::ManualClock::new(t0());
    let summary = run_once(&processor(&db.store, &provider, &clock, "w1")).await;
    assert_eq!(summary.failed, 2, "{summary:?}");
    assert!(provider.calls().is_empty());
    for id in [1, 2] {
        let e = db.get(id).await.error.unwrap();
        assert_eq!(
            (e["code"].as_str(), e["field"].as_str()),
            (Some("invalid_message"), Some("body")),
            "{e}"
        );
    }
}

/// A processor whose every channel goes to `provider`, on `clock`.
fn processor_with(
    db: &TestDb,
    provider: std::sync::Arc<dyn herald::providers::Provider>,
    clock: &herald::clock::ManualClock,
) -> std::sync::Arc<herald::processor::Processor> {
    std::sync::Arc::new(herald::processor::Processor::new(
        db.store.clone(),
        herald::providers::Providers::all(provider),
        std::sync::Arc::new(clock.clone()),
        zero_random(),
        test_config("w1"),
    ))
}

every_backend! {
    async fn provider_pauses_are_clamped_and_parked_messages_can_be_retried_now(db: TestDb) {
        use herald::config::{CustomSettings, EmailFrom, SendgridSettings};
        use herald::providers::{Custom, Sendgrid, Twilio};
        use secrecy::SecretString;
        let clock = herald::clock::ManualClock::new(t0());
        let dyn_clock: std::sync::Arc<dyn herald::clock::Clock> = std::sync::Arc::new(clock.clone());
        let max_wait = test_config("w1").retry.max_rate_limit_wait;
        let latest = t0() + chrono::Duration::from_std(max_wait).unwrap();
        let timeout = std::time::Duration::from_secs(10);
        let (twilio, sendgrid, custom) = (FakeTwilio::start().await, FakeSendgrid::start().await, FakeCustom::start().await);
        let limited = |headers: Vec<(&str, &str)>, body: Value| Reply::Raw {
            status: 429,
            body: body.to_string(),
            headers: headers.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        };
        // Each provider asks for far more than the longest wait, in each of
        // the forms it uses.
        let twilio_429 = json!({"code": 20429, "message": "Too Many Requests", "status": 429});
        let sendgrid_429 = json!({"errors": [{"field": null, "message": "too many requests"}]});
        let cases: Vec<(std::sync::Arc<dyn herald::providers::Provider>, &str, &str, Reply)> = vec![
            (std::sync::Arc::new(Twilio::new(twilio_settings(&twilio), None, timeout, dyn_clock.clone())), "sms", "+14153230001",
             limited(vec![("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")], twilio_429.clone())),
            (std::sync::Arc::new(Twilio::new(twilio_settings(&twilio), None, timeout, dyn_clock.clone())), "sms", "+14153230002",
             limited(vec![("retry-after", "99999999999")], twilio_429)),
            (std::sync::Arc::new(Sendgrid::new(
                SendgridSettings { api_url: sendgrid.url.clone(), api_key: SecretString::from(SENDGRID_KEY.to_owned()) },
                EmailFrom { address: herald::domain::EmailAddress::parse("shop@example.com").unwrap(), name: None },
                timeout, dyn_clock.clone())), "email", "limited@example.com",
             limited(vec![("x-ratelimit-reset", "253402300799"), ("x-ratelimit-remaining", "0")], sendgrid_429)),
            (std::sync::Arc::new(Custom::new(
                CustomSettings { sms_url: Some(custom.url.clone()), whatsapp_url: None, email_url: None, lookup_url: None, secret: SecretString::from(CUSTOM_SECRET.to_owned()) },
                timeout, dyn_clock.clone())), "sms", "+14153230003",
             limited(vec![("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")], json!({"error": "slow down"}))),
        ];
        for (provider, channel, recipient, reply) in cases {
            let state = match provider.name() {
                "twilio" => &twilio.state,
                "sendgrid" => &sendgrid.state,
                _ => &custom.state,
            };
            state.script(recipient, reply);
            let id = db.insert_sql_with(channel, recipient, Some("s"), "b").await;
            let p = processor_with(&db, provider.clone(), &clock);
            run_once(&p).await;
            let m = db.get(id).await;
            assert_eq!(m.status, "pending", "{recipient}");
            assert!(m.next_attempt_at.is_some_and(|t| t <= latest), "{recipient}: parked until {:?}", m.next_attempt_at);
            let e = m.error.unwrap();
            let until = herald::clock::parse_ts(e["rate_limited_until"].as_str().unwrap()).unwrap();
            assert!(until <= latest, "{recipient}: {e}");
            // The operator sends it now: due at once, same retry round.
            let again = db.store.retry_one(id, t0()).await.unwrap();
            assert_eq!((again.status.as_str(), again.next_attempt_at), ("pending", None));
            // The processor that was told to slow down keeps its (bounded)
            // pause; a fresh one sends it.
            run_once(&processor_with(&db, provider, &clock)).await;
            assert_eq!(db.get(id).await.status, "sent", "{recipient}");
        }
        // Retry refuses what is neither failed nor parked, and --parked
        // takes every parked message.
        let sent = db.max_id().await;
        assert!(db.store.retry_one(sent, t0()).await.unwrap_err().to_string().contains("only failed or parked"));
        db.store.execute_raw(&format!("INSERT INTO notification_messages (channel, recipient, body, next_attempt_at) VALUES ('sms', '+14153234567', 'p', {})", db.ts("9999-12-31T00:00:00.000Z"))).await.unwrap();
        let parked = db.max_id().await;
        assert_eq!(db.store.retry_parked(t0()).await.unwrap(), vec![parked]);
        assert_eq!(db.get(parked).await.next_attempt_at, None);
    }
}

every_backend! {
    async fn many_scrapers_cost_one_round_of_queue_queries(db: TestDb) {
        db.insert_many(2000).await;
        let app = spawn_app_with(&db, &[KEY], &[("METRICS_CACHE_SECONDS", "600"), ("ENABLE_MESSAGE_PROCESSOR", "false")]).await;
        let scrapes: Vec<_> = (0..40)
            .map(|_| {
                let (http, url) = (app.http.clone(), app.url.clone());
                tokio::spawn(async move { http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap() })
            })
            .collect();
        for s in scrapes {
            let text = s.await.unwrap();
            assert!(text.contains("herald_messages{status=\"pending\",channel=\"sms\"} 2000"), "{text}");
        }
        let text = app.http.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap();
        assert!(text.contains("herald_metrics_snapshots_total 1\n"), "40 scrapes, one snapshot: {text}");
    }
}

every_backend! {
    async fn concurrent_template_saves_are_serialized(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        // Twenty saves at once: first saves in three locales, and new versions.
        let saves: Vec<_> = (0..20)
            .map(|i| {
                let locale = ["en", "pt-BR", "es"][i % 3];
                let req = app.put("/api/templates/receipt").json(&json!({"locale": locale, "body": format!("Receipt v{i}")}));
                tokio::spawn(async move { json_of(req.send().await.unwrap()).await })
            })
            .collect();
        for s in saves {
            let (status, body) = s.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        // Every version of the name is unique and consecutive; one default.
        let rows = db.query("SELECT version, locale, is_default FROM notification_templates WHERE name = 'receipt' ORDER BY version").await;
        let versions: Vec<i64> = rows.iter().map(|r| r["version"].as_i64().unwrap()).collect();
        assert_eq!(versions, (1..=20).collect::<Vec<i64>>(), "{rows:?}");
        let (_, list) = json_of(app.get("/api/templates/receipt").send().await.unwrap()).await;
        let defaults: Vec<&Value> = list["templates"].as_array().unwrap().iter().filter(|t| t["is_default"] == true).collect();
        assert_eq!(defaults.len(), 1, "one default locale: {list}");
        assert_eq!(list["templates"].as_array().unwrap().len(), 3, "{list}");
    }
}

every_backend! {
    async fn idempotency_keys_are_scoped_to_the_api_key(db: TestDb) {
        const OTHER: &str = "another-key-0123456789abcdef";
        let app = spawn_app(&db, &[KEY, OTHER]).await;
        let body = json!({"channel": "sms", "recipient": "+14153234567", "body": "receipt #1"});
        let send = |key: &'static str| app.http.post(format!("{}/api/messages", app.url)).bearer_auth(key).header("Idempotency-Key", "order-1").json(&body).send();
        let (s1, m1) = json_of(send(KEY).await.unwrap()).await;
        let (s2, m2) = json_of(send(OTHER).await.unwrap()).await;
        assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED), "two callers, two messages");
        assert_ne!(m1["id"], m2["id"]);
        let (s3, m3) = json_of(send(OTHER).await.unwrap()).await;
        assert_eq!((s3, &m3["id"]), (StatusCode::OK, &m2["id"]), "the same caller's retry is a replay");
        // No key material is stored with it.
        let key = if db.backend == Backend::Mariadb { "`key`" } else { "key" };
        let stored = db.query(&format!("SELECT {key} AS \"key\" FROM herald_idempotency_keys")).await;
        assert_eq!(stored.len(), 2);
        for row in stored {
            let k = row["key"].as_str().unwrap();
            assert!(k.ends_with(":order-1") && !k.contains("another") && !k.contains("test-key"), "{k}");
        }
    }
}

#[tokio::test]
async fn files_holding_customers_data_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("shop.db");
    let outbox = dir.path().join("outbox.jsonl");
    let o = std::process::Command::new(herald_bin())
        .env_clear()
        .env("DATABASE_URL", format!("sqlite://{}", db_path.display()))
        .env("LOG_OUTBOX", &outbox)
        .current_dir(dir.path())
        .args(["send", "--channel", "sms", "--to", "+14153234567", "--body", "hi"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = std::process::Command::new(herald_bin())
        .env_clear()
        .env("DATABASE_URL", format!("sqlite://{}", db_path.display()))
        .env("LOG_OUTBOX", &outbox)
        .current_dir(dir.path())
        .arg("process")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [db_path.clone(), outbox] {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    for suffix in ["-wal", "-shm"] {
        let f = dir.path().join(format!("shop.db{suffix}"));
        if f.exists() {
            assert_eq!(
                std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
                0o600,
                "{}",
                f.display()
            );
        }
    }
}

#[tokio::test]
async fn the_custom_provider_does_not_follow_redirects() {
    use herald::providers::{Custom, Provider};
    let (hook, elsewhere) = (FakeCustom::start().await, FakeCustom::start().await);
    hook.state.script(
        "+14153234567",
        Reply::Raw {
            status: 307,
            body: String::new(),
            headers: vec![("location".into(), elsewhere.url.clone())],
        },
    );
    let custom = Custom::new(
        herald::config::CustomSettings {
            sms_url: Some(hook.url.clone()),
            whatsapp_url: None,
            email_url: None,
            lookup_url: None,
            secret: secrecy::SecretString::from(CUSTOM_SECRET.to_owned()),
        },
        std::time::Duration::from_secs(5),
        std::sync::Arc::new(herald::clock::ManualClock::new(t0())),
    );
    let e = custom
        .send(&out(1, herald::domain::Channel::Sms, "+14153234567", "hi"))
        .await
        .unwrap_err();
    assert_eq!(e.class, herald::providers::FailureClass::Permanent, "{e}");
    assert_eq!(e.status, Some(307));
    assert!(
        elsewhere.state.requests().is_empty(),
        "the signed request went nowhere else"
    );
}
