//! Templates and scheduling, on both backends.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

async fn put(app: &TestApp, name: &str, body: Value) -> (StatusCode, Value) {
    let r = app
        .http
        .put(format!("{}/api/templates/{name}", app.url))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn queue(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let r = app.post("/api/messages").json(&body).send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn total(db: &TestDb) -> i64 {
    db.store.counts().await.unwrap().iter().map(|c| c.count).sum()
}

every_backend! {
    async fn receipts_in_two_languages_render_escape_and_keep_their_version(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        let (s, t) = put(&app, "receipt", json!({
            "channel": "email", "locale": "en",
            "subject": "Receipt #{{ order }}",
            "body": "Hi {{ customer }}, you paid {{ total }}.",
            "html_body": "<p>Hi {{ customer }}, you paid <b>{{ total }}</b>.</p>"
        })).await;
        assert_eq!(s, StatusCode::OK, "{t}");
        assert_eq!((t["version"].as_i64(), t["is_default"].as_bool()), (Some(1), Some(true)));
        let (s, _) = put(&app, "receipt", json!({
            "channel": "email", "locale": "pt",
            "subject": "Recibo nº {{ order }}",
            "body": "Olá {{ customer }}, você pagou {{ total }}.",
            "html_body": "<p>Olá {{ customer }}, você pagou <b>{{ total }}</b>.</p>"
        })).await;
        assert_eq!(s, StatusCode::OK);

        let data = json!({"order": 42, "customer": "Ana <Lima> & Filhos", "total": "R$ 10,00"});
        let (s, m) = queue(&app, json!({"channel": "email", "recipient": "ana@example.com", "template": "receipt", "locale": "pt-BR", "data": data})).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{m}");
        assert_eq!(m["subject"], "Recibo nº 42");
        assert_eq!(m["body"], "Olá Ana <Lima> & Filhos, você pagou R$ 10,00.", "text is not escaped");
        assert_eq!(m["html_body"], "<p>Olá Ana &lt;Lima&gt; &amp; Filhos, você pagou <b>R$ 10,00</b>.</p>", "HTML is");
        assert_eq!((m["template"].as_str(), m["template_version"].as_i64(), m["locale"].as_str()), (Some("receipt"), Some(2), Some("pt")));
        let queued = m["id"].as_i64().unwrap();

        // An unknown locale falls back to the default (the first saved: en).
        let (_, m) = queue(&app, json!({"channel": "email", "recipient": "ana@example.com", "template": "receipt", "locale": "fr-CA", "data": data})).await;
        assert_eq!((m["subject"].as_str(), m["locale"].as_str()), (Some("Receipt #42"), Some("en")));

        // Editing the template never changes messages already queued.
        let (_, t) = put(&app, "receipt", json!({"channel": "email", "locale": "pt", "subject": "NOVO {{ order }}", "body": "novo"})).await;
        assert_eq!(t["version"], 3);
        let m: Value = app.get(&format!("/api/messages/{queued}")).send().await.unwrap().json().await.unwrap();
        assert_eq!((m["subject"].as_str(), m["template_version"].as_i64()), (Some("Recibo nº 42"), Some(2)));
        let (_, m) = queue(&app, json!({"channel": "email", "recipient": "ana@example.com", "template": "receipt", "locale": "pt", "data": data})).await;
        assert_eq!((m["subject"].as_str(), m["template_version"].as_i64()), (Some("NOVO 42"), Some(3)));

        // Preview renders without queueing.
        let before = total(&db).await;
        let r = app.post("/api/templates/receipt/preview").json(&json!({"locale": "en", "data": data})).send().await.unwrap();
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["subject"], "Receipt #42");
        assert_eq!(total(&db).await, before);
        let list: Value = app.get("/api/templates").send().await.unwrap().json().await.unwrap();
        assert_eq!(list["templates"].as_array().unwrap().len(), 2, "latest version of each locale");
    }

    async fn template_errors_are_4xx_and_store_nothing(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        let (s, e) = put(&app, "broken", json!({"body": "Hello\n{{ name "})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e["error"]["field"], "body");
        assert!(e["error"]["message"].as_str().unwrap().starts_with("line 2:"), "{e}");
        let (s, e) = put(&app, "bad name!", json!({"body": "x"})).await;
        assert!(s.is_client_error(), "{e}");
        let (s, _) = put(&app, "ready", json!({"channel": "sms", "body": "{{ customer.name }}, order {{ order }} is ready"})).await;
        assert_eq!(s, StatusCode::OK);
        let (s, e) = queue(&app, json!({"channel": "sms", "recipient": "+14153234567", "template": "ready", "data": {"customer": {"name": "Ana"}}})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e["error"]["field"], "data");
        assert!(e["error"]["message"].as_str().unwrap().contains("order"), "names the variable: {e}");
        let (s, e) = queue(&app, json!({"channel": "sms", "recipient": "+14153234567", "template": "nope", "data": {}})).await;
        assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("template")));
        let (s, e) = queue(&app, json!({"channel": "email", "recipient": "a@example.com", "template": "ready", "data": {}})).await;
        assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("template")), "{e}");
        let (s, e) = queue(&app, json!({"channel": "sms", "recipient": "+14153234567", "template": "ready", "body": "x"})).await;
        assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("template")));
        assert_eq!(total(&db).await, 0, "nothing stored");
    }

    async fn direct_inserts_with_a_template_are_rendered_when_claimed(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        put(&app, "ready", json!({"channel": "sms", "locale": "en", "body": "Order {{ order }} is ready, {{ name }}"})).await;
        put(&app, "ready", json!({"channel": "sms", "locale": "pt", "body": "Pedido {{ order }} pronto, {{ name }}"})).await;
        db.store.execute_raw(
            "INSERT INTO notification_messages (channel, recipient, template, locale, template_data)
             VALUES ('sms', '+14153234567', 'ready', 'pt-BR', '{\"order\": 7, \"name\": \"Ana\"}')"
        ).await.unwrap();
        let id = db.max_id().await;
        db.store.execute_raw(
            "INSERT INTO notification_messages (channel, recipient, template, template_data)
             VALUES ('sms', '+14153234567', 'ready', '{\"order\": 8}')"
        ).await.unwrap();
        let bad = db.max_id().await;
        let m = app.wait_status(id, "sent").await;
        assert_eq!(m["body"], "Pedido 7 pronto, Ana", "the row shows what was sent");
        assert_eq!((m["template_version"].as_i64(), m["locale"].as_str()), (Some(2), Some("pt")));
        let m = app.wait_status(bad, "failed").await;
        assert!(m["error"]["message"].as_str().unwrap().contains("name"), "{m}");
        assert_eq!(m["attempts"], 0);
    }

    async fn a_whatsapp_template_goes_out_as_content_sid_and_variables(db: TestDb) {
        let twilio = FakeTwilio::start().await;
        let sid = format!("HX{}", "c3".repeat(16));
        let mut vars = serde_json::Map::new();
        vars.insert("1".into(), json!("{{ customer }}"));
        vars.insert("2".into(), json!("{{ when }}"));
        let parts = herald::domain::TemplateParts { content_sid: Some(sid.clone()), content_variables: Some(vars), ..Default::default() };
        let draft = herald::domain::TemplateDraft::parse("appointment", Some("en"), Some("whatsapp"), parts, false).unwrap();
        db.store.put_template(&draft, t0()).await.unwrap();
        let raw = herald::domain::RawMessage { channel: Some("whatsapp".into()), recipient: Some("+14153234567".into()), ..Default::default() };
        let msg = herald::templates::prepare(&db.store, raw, "appointment", None, Some(&json!({"customer": "Ana", "when": "Tue 10:00"}))).await.unwrap();
        let stored = db.store.enqueue(&msg, t0()).await.unwrap();
        let clock = herald::clock::ManualClock::new(t0());
        let provider = herald::providers::Twilio::new(twilio_settings(&twilio), None, Duration::from_secs(5), Arc::new(clock.clone()));
        let p = Arc::new(herald::processor::Processor::new(
            db.store.clone(), herald::providers::Providers::all(Arc::new(provider)), Arc::new(clock), zero_random(), test_config("w")));
        run_once(&p).await;
        assert_eq!(db.get(stored.id).await.status, "sent");
        let req = &twilio.state.requests()[0];
        assert_eq!(req["ContentSid"], sid);
        let sent: Value = serde_json::from_str(req["ContentVariables"].as_str().unwrap()).unwrap();
        assert_eq!(sent, json!({"1": "Ana", "2": "Tue 10:00"}));
        assert!(req.get("Body").is_none(), "no Body with ContentSid");
        assert!(twilio.state.violations().is_empty(), "{:?}", twilio.state.violations());
    }

    async fn a_scheduled_message_waits_for_its_time_then_goes_promptly(db: TestDb) {
        let dir = db.dir.path();
        let outbox = dir.join("outbox.jsonl");
        let at = chrono::Utc::now() + chrono::Duration::seconds(2);
        let o = herald(&db, dir).args(["send", "--channel", "sms", "--to", "+14153234567", "--body", "later", "--send-at", &at.to_rfc3339()]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let id: i64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
        // `process` now: not due, not sent.
        let o = herald(&db, dir).env("LOG_OUTBOX", &outbox).arg("process").output().unwrap();
        assert!(String::from_utf8_lossy(&o.stdout).contains("sent 0"));
        assert_eq!(db.get(id).await.status, "pending");
        // Scheduled messages are listed as such.
        let waiting = db.store.list(&herald::store::ListFilter { scheduled_after: Some(chrono::Utc::now()), limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(waiting.len(), 1);
        // `process --watch` (PostgreSQL's poll interval is 1 s; the worker sleeps until the message is due).
        let mut child = herald(&db, dir).env("LOG_OUTBOX", &outbox).args(["process", "--watch"])
            .stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        wait_until("the scheduled message to be sent", || async { db.get(id).await.status == "sent" }).await;
        let sent_at = db.get(id).await.sent_at.unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(sent_at >= at - chrono::Duration::milliseconds(5), "not before its time: {sent_at} vs {at}");
        assert!(sent_at <= at + chrono::Duration::seconds(1), "within 1 s of its time: {sent_at} vs {at}");
    }

    async fn cli_templates_and_send_with_a_template(db: TestDb) {
        let dir = db.dir.path();
        let ok = |o: std::process::Output| { assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr)); String::from_utf8_lossy(&o.stdout).into_owned() };
        ok(herald(&db, dir).args(["templates", "put", "ready", "--channel", "sms", "--body", "Order {{ order }} is ready"]).output().unwrap());
        let out = ok(herald(&db, dir).args(["templates", "preview", "ready", "--data", "{\"order\": 5}"]).output().unwrap());
        assert!(out.contains("Order 5 is ready"), "{out}");
        let id: i64 = ok(herald(&db, dir).args(["send", "--channel", "sms", "--to", "+14153234567", "--template", "ready", "--data", "{\"order\": 9}"]).output().unwrap()).trim().parse().unwrap();
        assert_eq!(db.get(id).await.body.as_deref(), Some("Order 9 is ready"));
        let o = herald(&db, dir).args(["send", "--channel", "sms", "--to", "+14153234567", "--template", "ready", "--data", "{}"]).output().unwrap();
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("--data"), "{}", String::from_utf8_lossy(&o.stderr));
        let o = herald(&db, dir).args(["templates", "put", "bad", "--body", "{% if %}"]).output().unwrap();
        assert!(!o.status.success());
        // The CLI refuses exactly what PUT /api/templates/{name} refuses.
        for (args, says) in [
            (vec!["templates", "put", "has space", "--body", "x"], "name"),
            (vec!["templates", "put", "t", "--locale", "pt BR", "--body", "x"], "--locale"),
            (vec!["templates", "put", "t", "--content-sid", "HX123"], "--content-sid"),
            (vec!["templates", "put", "t", "--channel", "email", "--content-sid", "HX0123456789abcdef0123456789abcdef"], "--content-sid"),
            (vec!["templates", "put", "t", "--channel", "fax", "--body", "x"], "--channel"),
        ] {
            let o = herald(&db, dir).args(&args).output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success() && err.contains(says), "{args:?}: {err}");
        }
        let listed = ok(herald(&db, dir).args(["templates", "list"]).output().unwrap());
        assert!(listed.contains("ready v1") && !listed.contains("has space") && !listed.contains("t v"), "{listed}");
        ok(herald(&db, dir).args(["templates", "delete", "ready"]).output().unwrap());
        assert_eq!(db.get(id).await.body.as_deref(), Some("Order 9 is ready"), "queued messages keep their text");
    }
}
