//! Delivery receipts end to end: requests signed exactly as Twilio and
//! SendGrid sign them (the signers here are written independently of
//! Herald's verifiers), out-of-order and duplicate receipts, and the
//! suppression list.

use base64::Engine;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const PUBLIC: &str = "https://herald.example.com";
const KEY: &str = "receipts-key-0123456789";

struct App {
    url: String,
    http: reqwest::Client,
    provider: ScriptedProvider,
    signing: p256::ecdsa::SigningKey,
    _app: TestApp,
}

async fn spawn(db: &TestDb, with_sendgrid_key: bool) -> App {
    let signing = p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
    // SubjectPublicKeyInfo DER for a P-256 key: a fixed header, then the
    // uncompressed point (what SendGrid's dashboard shows, base64).
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    der.extend_from_slice(signing.verifying_key().to_encoded_point(false).as_bytes());
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let mut vars = vec![("PUBLIC_URL", PUBLIC), ("TWILIO_AUTH_TOKEN", TOKEN)];
    if with_sendgrid_key {
        vars.push(("SENDGRID_WEBHOOK_PUBLIC_KEY", key_b64.as_str()));
    }
    let app = spawn_app_with(db, &[KEY], &vars).await;
    App {
        url: app.url.clone(),
        http: app.http.clone(),
        provider: app.provider.clone(),
        signing,
        _app: app,
    }
}

/// Twilio's algorithm, written out here: HMAC-SHA1 over the URL then each
/// parameter name+value in name order, base64.
fn twilio_sign(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl App {
    async fn twilio(&self, params: &[(&str, &str)], signature: Option<String>) -> StatusCode {
        let sig = signature.unwrap_or_else(|| twilio_sign(TOKEN, &format!("{PUBLIC}/webhooks/twilio/status"), params));
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        self.http
            .post(format!("{}/webhooks/twilio/status", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", sig)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn sendgrid(&self, body: &str, ts: i64, signer: Option<&p256::ecdsa::SigningKey>) -> StatusCode {
        let ts = ts.to_string();
        let mut signed = ts.as_bytes().to_vec();
        signed.extend_from_slice(body.as_bytes());
        let sig: p256::ecdsa::Signature = signer.unwrap_or(&self.signing).sign(&signed);
        let sig = base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes());
        self.http
            .post(format!("{}/webhooks/sendgrid/events", self.url))
            .header("content-type", "application/json")
            .header("X-Twilio-Email-Event-Webhook-Signature", sig)
            .header("X-Twilio-Email-Event-Webhook-Timestamp", ts)
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn message(&self, id: i64) -> Value {
        self.http
            .get(format!("{}/api/messages/{id}", self.url))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A message that was sent through `provider` with this provider id.
async fn sent_message(db: &TestDb, channel: &str, recipient: &str, provider: &str, pid: &str) -> i64 {
    let id = db.insert_sql_with(channel, recipient, Some("s"), "b").await;
    db.store
        .execute_raw(&format!(
            "UPDATE notification_messages SET status = 'sent', provider = '{provider}', provider_message_id = '{pid}' WHERE id = {id}"
        ))
        .await
        .unwrap();
    id
}

every_backend! {
    async fn twilio_status_callbacks_move_delivery_forward_only(db: TestDb) {
        let app = spawn(&db, true).await;
        let sid = "SM0123456789abcdef0123456789abcdef";
        let id = sent_message(&db, "sms", "+14153234567", "twilio", sid).await;
        let cb = |status: &'static str| vec![("MessageSid", sid), ("MessageStatus", status), ("AccountSid", "AC0123456789abcdef0123456789abcdef"), ("ApiVersion", "2010-04-01")];
        assert_eq!(app.twilio(&cb("sent"), None).await, StatusCode::OK);
        assert_eq!(app.message(id).await["delivery_status"], "sent");
        assert_eq!(app.twilio(&cb("delivered"), None).await, StatusCode::OK);
        let m = app.message(id).await;
        assert_eq!(m["delivery_status"], "delivered");
        assert!(m["delivered_at"].is_string());
        assert_eq!(m["status"], "sent", "status keeps its meaning: the provider accepted it");
        // Late and repeated callbacks never move it backwards; the repeat is stored once.
        assert_eq!(app.twilio(&cb("sent"), None).await, StatusCode::OK);
        assert_eq!(app.twilio(&cb("delivered"), None).await, StatusCode::OK);
        let m = app.message(id).await;
        assert_eq!(m["delivery_status"], "delivered");
        let events: Vec<&str> = m["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(events, ["sent", "delivered"], "every receipt kept once (the late sent repeats the first)");
        assert_eq!(m["events"][1]["detail"]["MessageSid"], sid);

        // WhatsApp read receipts are kept.
        let wsid = "SM0123456789abcdef0123456789abcdee";
        let wid = sent_message(&db, "whatsapp", "whatsapp:+14157654321", "twilio", wsid).await;
        for s in ["delivered", "read"] {
            let p = vec![("MessageSid", wsid), ("MessageStatus", s), ("ChannelPrefix", "whatsapp"), ("EventType", "READ")];
            assert_eq!(app.twilio(&p, None).await, StatusCode::OK);
        }
        assert_eq!(app.message(wid).await["delivery_status"], "read");

        // Undelivered with 21610: the customer replied STOP; suppressed from now on.
        let ssid = "SM0123456789abcdef0123456789abcded";
        let sid_id = sent_message(&db, "sms", "+14152009999", "twilio", ssid).await;
        let p = vec![("MessageSid", ssid), ("MessageStatus", "undelivered"), ("ErrorCode", "21610")];
        assert_eq!(app.twilio(&p, None).await, StatusCode::OK);
        let m = app.message(sid_id).await;
        assert_eq!((m["delivery_status"].as_str(), m["delivery_error_code"].as_str()), (Some("undelivered"), Some("21610")));
        let list: Value = app.http.get(format!("{}/api/suppressions?channel=sms", app.url)).bearer_auth(KEY).send().await.unwrap().json().await.unwrap();
        assert_eq!(list["suppressions"][0]["recipient"], "+14152009999");

        // An unknown message is acknowledged (so Twilio stops retrying) and counted.
        let p = vec![("MessageSid", "SMffffffffffffffffffffffffffffffff"), ("MessageStatus", "delivered")];
        assert_eq!(app.twilio(&p, None).await, StatusCode::OK);
        assert!(app.metrics().await.contains("herald_receipts_total{provider=\"twilio\",result=\"unmatched\"} 1"));
        // Signed but malformed: 400.
        assert_eq!(app.twilio(&[("Foo", "bar")], None).await, StatusCode::BAD_REQUEST);
    }

    async fn twilio_callbacks_with_a_bad_signature_change_nothing(db: TestDb) {
        let app = spawn(&db, true).await;
        let sid = "SM0123456789abcdef0123456789abcdef";
        let id = sent_message(&db, "sms", "+14153234567", "twilio", sid).await;
        let params = [("MessageSid", sid), ("MessageStatus", "delivered")];
        let url = format!("{PUBLIC}/webhooks/twilio/status");
        let bad = [
            None.map(|_: ()| String::new()).unwrap_or_default(),                        // missing
            twilio_sign("ffffffffffffffffffffffffffffffff", &url, &params),             // wrong token
            twilio_sign(TOKEN, "https://evil.example.com/webhooks/twilio/status", &params), // wrong URL
            twilio_sign(TOKEN, &url, &[("MessageSid", sid), ("MessageStatus", "failed")]), // other params
            twilio_sign(TOKEN, &format!("{url}?x=1"), &params),                          // other query
        ];
        for sig in bad {
            assert_eq!(app.twilio(&params, Some(sig)).await, StatusCode::FORBIDDEN);
        }
        let m = app.message(id).await;
        assert!(m["delivery_status"].is_null() && m["events"].as_array().unwrap().is_empty(), "{m}");
        // The default port is accepted both ways.
        let with_port = twilio_sign(TOKEN, "https://herald.example.com:443/webhooks/twilio/status", &params);
        assert_eq!(app.twilio(&params, Some(with_port)).await, StatusCode::OK);
        assert!(app.metrics().await.contains("herald_receipts_total{provider=\"twilio\",result=\"rejected\"} 5"));
    }

    async fn sendgrid_events_are_verified_deduplicated_and_suppress(db: TestDb) {
        let app = spawn(&db, true).await;
        let ok = sent_message(&db, "email", "ana@example.com", "sendgrid", "LRzXl_NHStOGhQ4kofSm_A").await;
        let bounced = sent_message(&db, "email", "gone@example.com", "sendgrid", "Bq0aXOhcRrGmzABRhVcLsA").await;
        let now = chrono::Utc::now().timestamp();
        let batch = json!([
            {"email": "ana@example.com", "event": "processed", "sg_event_id": "e1", "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filter-1", "timestamp": now, "herald_id": ok.to_string()},
            {"email": "ana@example.com", "event": "delivered", "sg_event_id": "e2", "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filter-1", "timestamp": now, "response": "250 OK"},
            {"email": "ana@example.com", "event": "open", "sg_event_id": "e3", "timestamp": now, "herald_id": ok.to_string()},
            {"email": "gone@example.com", "event": "bounce", "type": "bounce", "reason": "550 5.1.1 unknown", "status": "5.1.1", "sg_event_id": "e4", "sg_message_id": "Bq0aXOhcRrGmzABRhVcLsA.filter-2", "timestamp": now},
            {"email": "who@example.com", "event": "delivered", "sg_event_id": "e5", "sg_message_id": "unknownid.filter", "timestamp": now}
        ]).to_string() + "\r\n";
        assert_eq!(app.sendgrid(&batch, now, None).await, StatusCode::OK);
        // The same batch again (SendGrid retries): one event each.
        assert_eq!(app.sendgrid(&batch, now, None).await, StatusCode::OK);
        let m = app.message(ok).await;
        assert_eq!(m["delivery_status"], "opened");
        assert_eq!(m["events"].as_array().unwrap().len(), 3);
        let b = app.message(bounced).await;
        assert_eq!(b["delivery_status"], "bounced");
        assert_eq!(b["events"].as_array().unwrap().len(), 1);
        let metrics = app.metrics().await;
        assert!(metrics.contains("herald_receipts_total{provider=\"sendgrid\",result=\"duplicate\"} 4"), "{metrics}");
        assert!(metrics.contains("herald_receipts_total{provider=\"sendgrid\",result=\"unmatched\"} 2"));

        // The hard bounce suppressed the address: the next email fails without reaching the provider.
        let next = db.insert_sql_with("email", "gone@example.com", Some("again"), "b").await;
        wait_until("the message to fail as suppressed", || async { app.message(next).await["status"] == "failed" }).await;
        let m = app.message(next).await;
        assert_eq!(m["error"]["code"], "suppressed");
        assert!(m["error"]["message"].as_str().unwrap().contains("hard bounce"));
        assert_eq!(app.provider.calls_for(next), 0, "no provider call");
        // Removing the entry lets the next one through.
        let r = app.http.delete(format!("{}/api/suppressions/email/gone%40example.com", app.url)).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let again = db.insert_sql_with("email", "gone@example.com", Some("welcome back"), "b").await;
        wait_until("the message to be sent once unsuppressed", || async { app.message(again).await["status"] == "sent" }).await;
    }

    async fn sendgrid_rejects_bad_signatures_and_stale_timestamps(db: TestDb) {
        let app = spawn(&db, true).await;
        let id = sent_message(&db, "email", "ana@example.com", "sendgrid", "abc").await;
        let now = chrono::Utc::now().timestamp();
        let body = json!([{"event": "delivered", "sg_event_id": "x1", "sg_message_id": "abc.f", "timestamp": now, "email": "ana@example.com"}]).to_string() + "\r\n";
        let other_key = p256::ecdsa::SigningKey::from_bytes(&[9u8; 32].into()).unwrap();
        assert_eq!(app.sendgrid(&body, now, Some(&other_key)).await, StatusCode::FORBIDDEN, "wrong key");
        assert_eq!(app.sendgrid(&body, now - 600, None).await, StatusCode::FORBIDDEN, "stale timestamp");
        // One byte changed after signing.
        let ts = now.to_string();
        let mut signed = ts.as_bytes().to_vec();
        signed.extend_from_slice(body.as_bytes());
        let sig: p256::ecdsa::Signature = app.signing.sign(&signed);
        let tampered = body.replace("delivered", "delivereD");
        let r = app.http.post(format!("{}/webhooks/sendgrid/events", app.url))
            .header("X-Twilio-Email-Event-Webhook-Signature", base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes()))
            .header("X-Twilio-Email-Event-Webhook-Timestamp", ts)
            .body(tampered).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = app.http.post(format!("{}/webhooks/sendgrid/events", app.url)).body(body.clone()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "unsigned");
        assert!(app.message(id).await["delivery_status"].is_null(), "nothing changed");
        // Signed but not an array of events: 400.
        assert_eq!(app.sendgrid("{\"event\":1}", now, None).await, StatusCode::BAD_REQUEST);
        assert_eq!(app.sendgrid(&body, now, None).await, StatusCode::OK);
        let m = app.message(id).await;
        assert_eq!(m["delivery_status"], "delivered", "{m}");
    }

    async fn sendgrid_events_touch_only_emails_sent_through_sendgrid_to_that_address(db: TestDb) {
        let app = spawn(&db, true).await;
        let sms = sent_message(&db, "sms", "+14153234567", "twilio", "SM0123").await;
        let smtp = sent_message(&db, "email", "ana@example.com", "smtp", "<x@h>").await;
        let mail = sent_message(&db, "email", "Ana.Silva@Example.com", "sendgrid", "sgid1").await;
        let now = chrono::Utc::now().timestamp();
        let ev = |id: i64, email: &str, event: &str, n: u32| json!({"email": email, "event": event, "sg_event_id": format!("m{n}"), "timestamp": now, "herald_id": id.to_string()});
        let batch = json!([
            // A signed spam report naming an SMS message's id.
            ev(sms, "ana@example.com", "spamreport", 1),
            // An email sent through SMTP, not SendGrid.
            ev(smtp, "ana@example.com", "spamreport", 2),
            // The right message, another address.
            ev(mail, "someone@else.example", "spamreport", 3),
            // No address at all.
            {"event": "spamreport", "sg_event_id": "m4", "timestamp": now, "herald_id": mail.to_string()},
            // The provider's id, another address.
            {"email": "someone@else.example", "event": "bounce", "type": "bounce", "sg_event_id": "m5", "sg_message_id": "sgid1.f", "timestamp": now},
            // The right one, the address in another case.
            ev(mail, "ana.silva@example.COM", "delivered", 6),
        ]).to_string();
        assert_eq!(app.sendgrid(&batch, now, None).await, StatusCode::OK);
        let metrics = app.metrics().await;
        assert!(metrics.contains("herald_receipts_total{provider=\"sendgrid\",result=\"unmatched\"} 5"), "{metrics}");
        assert!(metrics.contains("herald_receipts_total{provider=\"sendgrid\",result=\"applied\"} 1"), "{metrics}");
        assert!(app.message(sms).await["events"].as_array().unwrap().is_empty());
        assert!(app.message(smtp).await["events"].as_array().unwrap().is_empty());
        assert_eq!(app.message(mail).await["delivery_status"], "delivered");
        // Nobody was suppressed.
        let r: Value = app.http.get(format!("{}/api/suppressions", app.url)).bearer_auth(KEY).send().await.unwrap().json().await.unwrap();
        assert!(r["suppressions"].as_array().is_some_and(|a| a.is_empty()), "{r}");
    }

    async fn without_a_key_the_sendgrid_webhook_is_disabled(db: TestDb) {
        let app = spawn(&db, false).await;
        let now = chrono::Utc::now().timestamp();
        assert_eq!(app.sendgrid("[]\r\n", now, None).await, StatusCode::NOT_FOUND);
    }

    async fn suppressions_api_and_stop_replies(db: TestDb) {
        let app = spawn(&db, true).await;
        let add = |body: Value| app.http.post(format!("{}/api/suppressions", app.url)).bearer_auth(KEY).json(&body).send();
        assert_eq!(add(json!({"channel": "sms", "recipient": "+1 415 200 1111", "reason": "asked by phone"})).await.unwrap().status(), StatusCode::CREATED);
        assert_eq!(add(json!({"channel": "sms", "recipient": "+14152001111"})).await.unwrap().status(), StatusCode::OK);
        let r = add(json!({"channel": "sms", "recipient": "nope"})).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let id = db.insert_sql("sms", "+14152001111", "promo").await;
        wait_until("the message to fail", || async { app.message(id).await["status"] == "failed" }).await;
        assert_eq!(app.message(id).await["error"]["code"], "suppressed");
        let r = app.http.delete(format!("{}/api/suppressions/sms/%2B14152001111", app.url)).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let r = app.http.delete(format!("{}/api/suppressions/sms/%2B14152001111", app.url)).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn a_stop_reply_at_send_time_suppresses_the_recipient() {
    let db = TestDb::new(Backend::Sqlite).await;
    let id = db.insert_sql("sms", "+14153234567", "hi").await;
    let provider = ScriptedProvider::new(|_, _| {
        Err(
            herald::providers::SendError::permanent("21610", "Attempt to send to unsubscribed recipient")
                .with_suppression("replied STOP (Twilio 21610)"),
        )
    });
    let clock = herald::clock::ManualClock::new(t0());
    run_once(&processor(&db.store, &provider, &clock, "w")).await;
    assert_eq!(db.get(id).await.status, "failed");
    let s = db
        .store
        .suppressions(Some(herald::domain::Channel::Sms), 10)
        .await
        .unwrap();
    assert_eq!(
        (s[0].recipient.as_str(), s[0].source.as_str()),
        ("+14153234567", "test")
    );
    let again = db.insert_sql("sms", "+14153234567", "again").await;
    run_once(&processor(&db.store, &provider, &clock, "w")).await;
    assert_eq!(db.get(again).await.error.unwrap()["code"], "suppressed");
    assert_eq!(provider.calls_for(again), 0);
}
