//! Never lost, never silently sent twice: before a message whose earlier
//! attempt may have reached the provider is sent again, the provider is
//! asked; a provider id belongs to one message only; a resend the
//! provider could not rule out is marked as a possible duplicate.

use std::sync::Arc;
use std::time::Duration;

use herald::clock::{Clock, ManualClock};
use herald::config::CustomSettings;
use herald::domain::Channel;
use herald::processor::Processor;
use herald::providers::{Custom, Provider, Providers, Twilio};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::support::*;

const TO: &str = "+14153234567";
const TEXT: &str = "Your order is ready";

fn processor_on(db: &TestDb, provider: Arc<dyn Provider>, clock: &ManualClock) -> Arc<Processor> {
    Arc::new(Processor::new(
        db.store.clone(),
        Providers::all(provider),
        Arc::new(clock.clone()),
        zero_random(),
        test_config("w1"),
    ))
}

fn twilio_on(fake: &FakeTwilio, clock: &ManualClock) -> Arc<dyn Provider> {
    Arc::new(Twilio::new(
        twilio_settings(fake),
        None,
        Duration::from_secs(5),
        Arc::new(clock.clone()),
    ))
}

fn custom_on(fake: &FakeCustom, clock: &ManualClock, lookup: bool) -> Arc<dyn Provider> {
    Arc::new(Custom::new(
        CustomSettings {
            sms_url: Some(fake.url.clone()),
            whatsapp_url: None,
            email_url: None,
            lookup_url: lookup.then(|| fake.lookup_url.clone()),
            secret: SecretString::from(CUSTOM_SECRET.to_owned()),
        },
        Duration::from_secs(5),
        Arc::new(clock.clone()),
    ))
}

async fn outcomes(db: &TestDb, id: i64) -> Vec<String> {
    db.store
        .attempts(id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.outcome)
        .collect()
}

/// A message Twilio lists, as if someone else had sent it at `at`.
fn listed_at(fake: &FakeTwilio, sid: &str, at: chrono::DateTime<chrono::Utc>) {
    fake.state.created.lock().unwrap().push(json!({
        "sid": sid, "to": TO, "from": "+15005550006", "body": TEXT,
        "date_created": at.to_rfc2822(), "status": "delivered",
    }));
}

/// Claimed by a worker that is then killed: the claims are taken and the
/// provider got the `delivered` ones, but nothing was recorded.
async fn claimed_by_a_dead_worker(
    db: &TestDb,
    clock: &ManualClock,
    ids: &[i64],
    delivered: &[i64],
    provider: &Arc<dyn Provider>,
) {
    let now = clock.now();
    let got = db
        .store
        .claim(
            herald::store::ClaimFilter::Any,
            "killed",
            now,
            now + chrono::Duration::seconds(60),
            10,
        )
        .await
        .unwrap();
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
    for id in delivered {
        provider.send(&out(*id, Channel::Sms, TO, TEXT)).await.unwrap();
    }
    clock.advance(Duration::from_secs(61));
}

every_backend! {
    async fn a_twilio_sid_is_matched_to_one_message_only(db: TestDb) {
        // Two orders, the same text to the same customer. The first POST
        // fails with a 5xx before Twilio creates anything (outcome unknown);
        // the second is sent.
        let fake = FakeTwilio::start().await;
        let clock = ManualClock::new(chrono::Utc::now());
        let p = processor_on(&db, twilio_on(&fake, &clock), &clock);
        fake.state.script(TO, Reply::Error { status: 500, code: 20500, message: "Internal Server Error".into() });
        let first = db.insert_sql("sms", TO, TEXT).await;
        run_once(&p).await;
        assert_eq!(db.get(first).await.error.unwrap()["outcome_unknown"], true);
        let second = db.insert_sql("sms", TO, TEXT).await;
        run_once(&p).await;
        let second_sid = db.get(second).await.provider_message_id.unwrap();
        // The first one's look-up finds the second's message: not its own.
        clock.advance(Duration::from_secs(3600));
        run_once(&p).await;
        let first_row = db.get(first).await;
        assert_eq!(first_row.status, "sent");
        assert_ne!(first_row.provider_message_id.as_deref(), Some(second_sid.as_str()), "one SID, one message");
        assert_eq!(fake.state.created.lock().unwrap().len(), 2, "both customers' messages went out");
        assert_eq!(outcomes(&db, first).await, ["unknown", "sent"]);
        assert!(fake.state.violations().is_empty(), "{:?}", fake.state.violations());
    }

    async fn a_candidate_outside_the_attempts_window_is_not_it(db: TestDb) {
        let fake = FakeTwilio::start().await;
        let clock = ManualClock::new(chrono::Utc::now());
        let p = processor_on(&db, twilio_on(&fake, &clock), &clock);
        fake.state.script(TO, Reply::Error { status: 500, code: 20500, message: "Internal Server Error".into() });
        let id = db.insert_sql("sms", TO, TEXT).await;
        run_once(&p).await;
        // Same text to the same number, created half an hour after the
        // attempt (another system's message): not the attempt's.
        listed_at(&fake, "SMffffffffffffffffffffffffffffffff", clock.now() + chrono::Duration::minutes(30));
        listed_at(&fake, "SMeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", clock.now() - chrono::Duration::minutes(30));
        clock.advance(Duration::from_secs(3600));
        run_once(&p).await;
        let m = db.get(id).await;
        assert_eq!(m.status, "sent");
        assert!(m.provider_message_id.unwrap().starts_with("SM0000"), "sent again, under a new SID");
        assert_eq!(outcomes(&db, id).await, ["unknown", "sent"]);
    }

    async fn several_candidates_mean_a_marked_resend(db: TestDb) {
        let fake = FakeTwilio::start().await;
        let clock = ManualClock::new(chrono::Utc::now());
        let p = processor_on(&db, twilio_on(&fake, &clock), &clock);
        fake.state.script(TO, Reply::Error { status: 500, code: 20500, message: "Internal Server Error".into() });
        let id = db.insert_sql("sms", TO, TEXT).await;
        run_once(&p).await;
        // Two unowned messages inside the attempt's window: either could be it.
        listed_at(&fake, "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", clock.now());
        listed_at(&fake, "SMbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", clock.now());
        clock.advance(Duration::from_secs(3600));
        run_once(&p).await;
        assert_eq!(db.get(id).await.status, "sent");
        let attempts = db.store.attempts(id).await.unwrap();
        assert_eq!(attempts.iter().map(|a| a.outcome.as_str()).collect::<Vec<_>>(), ["unknown", "sent"]);
        let mark = attempts[1].error.clone().expect("the resend is marked");
        assert_eq!(mark["code"], "possible_duplicate", "{mark}");
        assert!(mark["message"].as_str().unwrap().contains("2 messages"), "{mark}");
        let mut text = herald::prometheus::Exposition::default();
        p.metrics().render(&mut text);
        let text = text.finish();
        assert!(text.contains("herald_possible_duplicates_total{provider=\"twilio\",reason=\"ambiguous\"} 1"), "{text}");
    }

    async fn a_claim_killed_after_twilio_took_the_message_is_not_sent_again(db: TestDb) {
        let fake = FakeTwilio::start().await;
        let clock = ManualClock::new(chrono::Utc::now());
        let twilio = twilio_on(&fake, &clock);
        let id = db.insert_sql("sms", TO, TEXT).await;
        claimed_by_a_dead_worker(&db, &clock, &[id], &[id], &twilio).await;
        run_once(&processor_on(&db, twilio, &clock)).await;
        let m = db.get(id).await;
        assert_eq!(m.status, "sent");
        assert_eq!(fake.state.requests().len(), 1, "no second POST");
        assert_eq!(m.provider_message_id.as_deref(), fake.state.created.lock().unwrap()[0]["sid"].as_str());
        // The history shows the killed claim's call, then the look-up's answer.
        let attempts = db.store.attempts(id).await.unwrap();
        assert_eq!(attempts.iter().map(|a| a.outcome.as_str()).collect::<Vec<_>>(), ["unknown", "reconciled"]);
        assert_eq!(attempts[0].error.as_ref().unwrap()["code"], "worker_stopped");
    }

    async fn the_custom_providers_look_up_settles_killed_claims_exactly(db: TestDb) {
        let fake = FakeCustom::start().await;
        let clock = ManualClock::new(chrono::Utc::now());
        let custom = custom_on(&fake, &clock, true);
        // Both claimed; the provider got the first, then the worker was killed.
        let delivered = db.insert_sql("sms", TO, TEXT).await;
        let undelivered = db.insert_sql("sms", TO, TEXT).await;
        claimed_by_a_dead_worker(&db, &clock, &[delivered, undelivered], &[delivered], &custom).await;
        run_once(&processor_on(&db, custom.clone(), &clock)).await;
        assert_eq!(db.get(delivered).await.status, "sent");
        assert_eq!(db.get(delivered).await.provider_message_id.as_deref(), Some("custom-1"));
        assert_eq!(outcomes(&db, delivered).await, ["unknown", "reconciled"]);
        assert_eq!(db.get(undelivered).await.status, "sent");
        assert_eq!(outcomes(&db, undelivered).await, ["unknown", "sent"]);
        assert!(db.store.attempts(undelivered).await.unwrap()[1].error.is_none(), "not found: not a duplicate");
        let per_message: Vec<Value> = fake.state.requests();
        assert_eq!(per_message.iter().filter(|r| r["id"] == delivered).count(), 1, "sent once");
        assert_eq!(per_message.iter().filter(|r| r["id"] == undelivered).count(), 1, "sent once");
        assert_eq!(fake.state.lookups.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert!(fake.state.violations().is_empty(), "{:?}", fake.state.violations());
    }

    async fn without_a_look_up_a_killed_claims_resend_is_marked(db: TestDb) {
        let fake = FakeCustom::start().await;
        let clock = ManualClock::new(chrono::Utc::now());
        let custom = custom_on(&fake, &clock, false);
        let id = db.insert_sql("sms", TO, TEXT).await;
        claimed_by_a_dead_worker(&db, &clock, &[id], &[id], &custom).await;
        let p = processor_on(&db, custom, &clock);
        run_once(&p).await;
        assert_eq!(db.get(id).await.status, "sent");
        let attempts = db.store.attempts(id).await.unwrap();
        assert_eq!(attempts.iter().map(|a| a.outcome.as_str()).collect::<Vec<_>>(), ["unknown", "sent"]);
        assert_eq!(attempts[1].error.as_ref().unwrap()["code"], "possible_duplicate");
        assert_eq!(fake.state.requests().len(), 2, "sent twice, and the history says so");
        let mut text = herald::prometheus::Exposition::default();
        p.metrics().render(&mut text);
        assert!(text.finish().contains("herald_possible_duplicates_total{provider=\"custom\",reason=\"no_lookup\"} 1"));
    }
}
