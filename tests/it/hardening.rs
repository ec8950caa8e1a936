//! Abuse and faults: what a careless integrator or an attacker can do must
//! not stall, exhaust or corrupt Herald.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

const SPIN: &str = "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}";

both_backends! {
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

both_backends! {
    async fn a_message_whose_claims_keep_dying_is_given_up(db: TestDb) {
        let id = db.insert_sql("sms", "+14153234567", "poison").await;
        let clock = herald::clock::ManualClock::new(t0());
        // Four workers claim it and die before recording anything (the
        // test config allows the first attempt and three retries).
        for _ in 0..4 {
            let now = herald::clock::Clock::now(&clock);
            let got = db
                .store
                .claim(herald::store::ClaimFilter::Any, "doomed", now, now + chrono::Duration::seconds(60), 10, 0)
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
