//! WhatsApp → SMS fallback (`WHATSAPP_FALLBACK=sms`): a WhatsApp message its
//! recipient cannot get is sent once as an SMS, linked both ways, never to
//! a suppressed recipient.

use std::sync::Arc;
use std::time::Duration;

use herald::clock::ManualClock;
use herald::processor::Processor;
use herald::providers::SendError;
use herald::providers::{Providers, Twilio};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

const PHONE: &str = "+14153234567";

fn worker(db: &TestDb, fake: &FakeTwilio, clock: &ManualClock) -> Arc<Processor> {
    let twilio = Twilio::new(
        twilio_settings(fake),
        None,
        Duration::from_secs(5),
        Arc::new(clock.clone()),
    );
    let mut cfg = test_config("w1");
    cfg.whatsapp_fallback = true;
    Arc::new(Processor::new(
        db.store.clone(),
        Providers::all(Arc::new(twilio)),
        Arc::new(clock.clone()),
        zero_random(),
        cfg,
    ))
}

fn not_on_whatsapp(fake: &FakeTwilio, to: &str) {
    fake.state.script(
        &format!("whatsapp:{to}"),
        Reply::Error {
            status: 400,
            code: 63003,
            message: "Channel could not find To address".into(),
        },
    );
}

async fn fallbacks_of(db: &TestDb, id: i64) -> Vec<serde_json::Map<String, Value>> {
    db.query(&format!(
        "SELECT id, channel, recipient, body, metadata, status FROM notification_messages WHERE fallback_of = {id}"
    ))
    .await
}

every_backend! {
    async fn a_whatsapp_message_the_recipient_cannot_get_is_sent_once_as_sms(db: TestDb) {
        let fake = FakeTwilio::start().await;
        let clock = ManualClock::new(chrono::Utc::now());
        let p = worker(&db, &fake, &clock);
        not_on_whatsapp(&fake, PHONE);
        db.execute(&format!(
            "INSERT INTO notification_messages (channel, recipient, body, metadata)
             VALUES ('whatsapp', '{PHONE}', 'Your order #12 is ready', '{{\"order_id\":12}}')"
        ))
        .await;
        let wa = db.max_id().await;
        run_once(&p).await;

        let m = db.get(wa).await;
        assert_eq!(m.status, "failed");
        let e = m.error.as_ref().unwrap();
        assert_eq!(e["code"], "63003");
        assert!(e["fallback"].as_str().unwrap().contains("queued as an SMS"), "{e}");
        let sms = fallbacks_of(&db, wa).await;
        assert_eq!(sms.len(), 1);
        let sms_id = sms[0]["id"].as_i64().unwrap();
        assert_eq!(m.fallback_message_id, Some(sms_id), "both rows show the link");
        assert_eq!(
            (sms[0]["channel"].as_str(), sms[0]["recipient"].as_str(), sms[0]["body"].as_str()),
            (Some("sms"), Some(PHONE), Some("Your order #12 is ready"))
        );
        let meta: Value = serde_json::from_str(sms[0]["metadata"].as_str().unwrap()).unwrap();
        assert_eq!(meta["order_id"], 12, "the POS's metadata comes along");

        // The SMS goes out like any message, to the plain number.
        run_once(&p).await;
        let sent = db.get(sms_id).await;
        assert_eq!((sent.status.as_str(), sent.fallback_of), ("sent", Some(wa)));
        let to: Vec<String> = fake.state.requests().iter().map(|r| r["To"].as_str().unwrap().to_owned()).collect();
        assert_eq!(to, [format!("whatsapp:{PHONE}"), PHONE.to_owned()]);

        // Retried by hand and refused again: it never falls back twice.
        not_on_whatsapp(&fake, PHONE);
        db.execute(&format!("UPDATE notification_messages SET status = 'pending' WHERE id = {wa}")).await;
        run_once(&p).await;
        run_once(&p).await;
        assert_eq!(db.get(wa).await.status, "failed");
        assert_eq!(fallbacks_of(&db, wa).await.len(), 1);
        assert_eq!(fake.state.requests().len(), 3);
        assert!(fake.state.violations().is_empty(), "{:?}", fake.state.violations());
    }

    async fn no_fallback_to_a_suppressed_recipient_or_without_text(db: TestDb) {
        let fake = FakeTwilio::start().await;
        let clock = ManualClock::new(chrono::Utc::now());
        let p = worker(&db, &fake, &clock);
        // Opted out of SMS: WhatsApp failing is no reason to text them.
        let other = "+14157654321";
        db.store
            .suppress(
                &herald::domain::Recipient::parse(herald::domain::Channel::Sms, other).unwrap(),
                "replied STOP",
                "twilio",
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        not_on_whatsapp(&fake, other);
        let suppressed = db.insert_sql("whatsapp", other, "Hello").await;
        // A Content template alone has no text for an SMS.
        not_on_whatsapp(&fake, PHONE);
        db.execute(&format!(
            "INSERT INTO notification_messages (channel, recipient, content_sid, content_variables)
             VALUES ('whatsapp', '{PHONE}', 'HX{}', '{{\"1\":\"Ana\"}}')",
            "ab".repeat(16)
        ))
        .await;
        let template_only = db.max_id().await;
        run_once(&p).await;
        for (id, why) in [(suppressed, "suppression list"), (template_only, "nothing to send as SMS")] {
            let m = db.get(id).await;
            assert_eq!(m.status, "failed");
            let note = m.error.as_ref().unwrap()["fallback"].as_str().unwrap().to_owned();
            assert!(note.starts_with("not sent as SMS") && note.contains(why), "{note}");
            assert!(fallbacks_of(&db, id).await.is_empty());
            assert_eq!(m.fallback_message_id, None);
        }
    }

    async fn an_undelivered_receipt_soon_after_sending_falls_back(db: TestDb) {
        let app = spawn_app_with(
            &db,
            &[KEY],
            &[
                ("PUBLIC_URL", "https://herald.example.com"),
                ("TWILIO_AUTH_TOKEN", TWILIO_TOKEN),
                ("WHATSAPP_FALLBACK", "sms"),
                ("SMS_PROVIDER", "log"),
            ],
        )
        .await;
        let now = herald::clock::format_ts(chrono::Utc::now());
        let sent = |recipient: &str, sid: &str, sent_at: &str| {
            format!(
                "INSERT INTO notification_messages (channel, recipient, body, status, provider, provider_message_id, sent_at)
                 VALUES ('whatsapp', '{recipient}', 'Table for two at 8pm', 'sent', 'twilio', '{sid}', {})",
                db.ts(sent_at)
            )
        };
        let recent_sid = format!("SM{}", "1".repeat(32));
        db.execute(&sent(&format!("whatsapp:{PHONE}"), &recent_sid, &now)).await;
        let recent = db.max_id().await;
        let old_sid = format!("SM{}", "2".repeat(32));
        db.execute(&sent("whatsapp:+14157654321", &old_sid, "2020-01-01T00:00:00.000Z")).await;
        let old = db.max_id().await;

        for sid in [&recent_sid, &old_sid] {
            let params = [
                ("MessageSid", sid.as_str()),
                ("MessageStatus", "undelivered"),
                ("ErrorCode", "63016"),
                ("AccountSid", TWILIO_SID),
            ];
            assert_eq!(twilio_callback(&app, &params).await, StatusCode::OK);
            // Twilio repeats itself: still one fallback.
            assert_eq!(twilio_callback(&app, &params).await, StatusCode::OK);
        }
        let sms = fallbacks_of(&db, recent).await;
        assert_eq!(sms.len(), 1);
        assert_eq!(sms[0]["recipient"], PHONE);
        let detail = app.message(recent).await;
        assert_eq!(detail["fallback_message_id"], sms[0]["id"]);
        assert_eq!(app.message(sms[0]["id"].as_i64().unwrap()).await["fallback_of"], recent);
        // Undelivered a day after it was sent: too late to fall back.
        assert!(fallbacks_of(&db, old).await.is_empty());
        // The SMS is sent by the app's processor.
        app.wait_status(sms[0]["id"].as_i64().unwrap(), "sent").await;
    }
}

/// POST a Twilio status callback, signed as Twilio signs it.
async fn twilio_callback(app: &TestApp, params: &[(&str, &str)]) -> StatusCode {
    let url = "https://herald.example.com/webhooks/twilio/status";
    let pairs: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let sig = herald::receipts::twilio_signature(TWILIO_TOKEN, url, &pairs);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    app.http
        .post(format!("{}/webhooks/twilio/status", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", sig)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

every_backend! {
    async fn a_template_falls_back_to_its_own_body_for_the_locale_or_says_it_has_none(db: TestDb) {
        // WhatsApp refuses everything as outside the 24-hour window.
        let provider = ScriptedProvider::new(|m, _| {
            if m.channel() == herald::domain::Channel::Whatsapp {
                Err(SendError::permanent("63016", "outside the allowed window").with_unreachable())
            } else {
                Ok(herald::providers::Receipt::new(format!("T-{}", m.id)))
            }
        });
        let app = spawn_app_scripted(&db, &[KEY], &[("WHATSAPP_FALLBACK", "sms"), ("SMS_PROVIDER", "log")], provider).await;
        let put = |name: &'static str, body: Value| {
            app.http.put(format!("{}/api/templates/{name}", app.url)).bearer_auth(KEY).json(&body).send()
        };
        let sid = format!("HX{}", "cd".repeat(16));
        for (locale, text) in [("en", "Hi {{ name }}, your table is ready"), ("pt-BR", "Olá {{ name }}, sua mesa está pronta")] {
            let r = put("table_ready", json!({"channel": "whatsapp", "locale": locale, "content_sid": sid, "content_variables": {"1": "{{ name }}"}, "body": text})).await.unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
        let r = put("sid_only", json!({"channel": "whatsapp", "content_sid": sid, "content_variables": {"1": "{{ name }}"}})).await.unwrap();
        assert!(r.status().is_success());

        let queue = |template: &str, locale: &str| {
            app.post("/api/messages")
                .json(&json!({"channel": "whatsapp", "recipient": PHONE, "template": template, "locale": locale, "data": {"name": "Ana"}}))
                .send()
        };
        let pt: Value = queue("table_ready", "pt-BR").await.unwrap().json().await.unwrap();
        let none: Value = queue("sid_only", "en").await.unwrap().json().await.unwrap();
        let pt = app.wait_status(pt["id"].as_i64().unwrap(), "failed").await;
        let sms_id = pt["fallback_message_id"].as_i64().expect("fell back");
        let sms = app.wait_status(sms_id, "sent").await;
        assert_eq!(sms["body"], "Olá Ana, sua mesa está pronta", "the template's body, in the message's locale");
        assert_eq!((sms["channel"].as_str(), sms["recipient"].as_str(), sms["fallback_of"].as_i64()), (Some("sms"), Some(PHONE), pt["id"].as_i64()));
        let none = app.wait_status(none["id"].as_i64().unwrap(), "failed").await;
        let note = none["error"]["fallback"].as_str().unwrap();
        assert!(note.starts_with("not sent as SMS") && note.contains("no body"), "{note}");
        assert!(none["fallback_message_id"].is_null());
    }
}
