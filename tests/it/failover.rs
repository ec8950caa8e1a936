//! Provider chains and circuit breakers: a provider that is down or
//! refuses Herald's credentials is skipped for the next one of the chain,
//! never at the price of a duplicate, and a fleet of workers shares what
//! each one learns.

use std::sync::Arc;
use std::time::Duration;

use herald::breaker::{BreakerPolicy, CircuitState};
use herald::clock::{Clock, ManualClock};
use herald::config::{CustomSettings, EmailFrom, SendgridSettings};
use herald::domain::{Channel, EmailAddress};
use herald::processor::Processor;
use herald::providers::{Custom, LogProvider, Provider, Providers, Sendgrid, Smtp, Twilio};
use herald::store::{ProbeBid, Store};
use secrecy::SecretString;

use crate::support::*;

fn from() -> EmailFrom {
    EmailFrom {
        address: EmailAddress::parse("shop@example.com").unwrap(),
        name: Some("Shop".into()),
    }
}

fn sendgrid(fake: &FakeSendgrid, key: &str, clock: &ManualClock) -> Arc<dyn Provider> {
    Arc::new(Sendgrid::new(
        SendgridSettings {
            api_url: fake.url.clone(),
            api_key: SecretString::from(key.to_owned()),
        },
        from(),
        Duration::from_secs(5),
        Arc::new(clock.clone()),
    ))
}

fn smtp(server: &SmtpServer) -> Arc<dyn Provider> {
    Arc::new(Smtp::new(&server.settings(None), &from(), Duration::from_secs(5), 5).unwrap())
}

/// Email through `chain`, every other channel logged; circuits open after
/// three troubles in a row, for 30 s.
fn email_worker(store: &Store, chain: Vec<Arc<dyn Provider>>, clock: &ManualClock, worker: &str) -> Arc<Processor> {
    let mut providers = Providers::all(Arc::new(LogProvider::new()));
    providers.set_chain(Channel::Email, chain);
    let mut cfg = test_config(worker);
    cfg.breaker = BreakerPolicy {
        failures_to_open: 3,
        open_for: Duration::from_secs(30),
        ..BreakerPolicy::default()
    };
    Arc::new(Processor::new(
        store.clone(),
        providers,
        Arc::new(clock.clone()),
        zero_random(),
        cfg,
    ))
}

async fn insert_email(db: &TestDb, to: &str) -> i64 {
    db.insert_sql_with("email", to, Some("Your receipt"), "Thanks!").await
}

fn answer_503(fake: &FakeSendgrid, to: &str) {
    fake.state.script(
        to,
        Reply::Raw {
            status: 503,
            body: "upstream connect error or disconnect/reset before headers".into(),
            headers: vec![],
        },
    );
}

async fn calls_of(db: &TestDb, id: i64) -> Vec<(String, String)> {
    db.store
        .attempts(id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.provider, a.outcome))
        .collect()
}

async fn circuit(store: &Store, provider: &str) -> Option<herald::store::CircuitRow> {
    store
        .circuits()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.provider == provider)
}

every_backend! {
    async fn sendgrid_answering_503_fails_over_to_smtp_then_its_circuit_opens_and_later_closes(db: TestDb) {
        let fake = FakeSendgrid::start().await;
        let server = SmtpServer::start();
        let clock = ManualClock::new(chrono::Utc::now());
        let p = email_worker(&db.store, vec![sendgrid(&fake, SENDGRID_KEY, &clock), smtp(&server)], &clock, "w1");

        // SendGrid is down: each message it did not take goes out by SMTP
        // at once, in the same claim, using up no retry.
        let mut first = Vec::new();
        for i in 0..3 {
            let to = format!("ana{i}@example.com");
            answer_503(&fake, &to);
            first.push(insert_email(&db, &to).await);
        }
        run_once(&p).await;
        for id in &first {
            let m = db.get(*id).await;
            assert_eq!((m.status.as_str(), m.provider.as_deref()), ("sent", Some("smtp")), "{m:?}");
            assert_eq!(
                calls_of(&db, *id).await,
                [("sendgrid".to_owned(), "retryable".to_owned()), ("smtp".to_owned(), "sent".to_owned())]
            );
            assert_eq!((m.attempts, m.error), (2, None));
        }
        assert_eq!(server.wait_for(3).await.len(), 3);
        let open = circuit(&db.store, "sendgrid").await.expect("the circuit is shared");
        assert_eq!(open.state, CircuitState::Open);
        assert!(open.reason.as_deref().unwrap().contains("503"), "{open:?}");

        // Open: SendGrid is not called at all; SMTP takes everything.
        let calls_before = fake.state.requests().len();
        let second = insert_email(&db, "bea@example.com").await;
        run_once(&p).await;
        assert_eq!(db.get(second).await.provider.as_deref(), Some("smtp"));
        assert_eq!(calls_of(&db, second).await, [("smtp".to_owned(), "sent".to_owned())]);
        assert_eq!(fake.state.requests().len(), calls_before, "no call to an open circuit");

        // The opening is over: a probe goes to SendGrid, which answers again.
        clock.advance(Duration::from_secs(31));
        let third = insert_email(&db, "cid@example.com").await;
        run_once(&p).await;
        let m = db.get(third).await;
        assert_eq!((m.status.as_str(), m.provider.as_deref()), ("sent", Some("sendgrid")));
        assert_eq!(circuit(&db.store, "sendgrid").await.unwrap().state, CircuitState::Closed);
        assert!(fake.state.violations().is_empty(), "{:?}", fake.state.violations());

        let mut text = herald::prometheus::Exposition::default();
        p.metrics().render(&mut text);
        let text = text.finish();
        assert!(
            text.contains("herald_failovers_total{channel=\"email\",from=\"sendgrid\",to=\"smtp\"} 3"),
            "{text}"
        );
    }

    async fn refused_credentials_open_the_circuit_at_once(db: TestDb) {
        let fake = FakeSendgrid::start().await;
        let server = SmtpServer::start();
        let clock = ManualClock::new(chrono::Utc::now());
        // A revoked key: SendGrid answers 401.
        let p = email_worker(&db.store, vec![sendgrid(&fake, "SG.revoked.key", &clock), smtp(&server)], &clock, "w1");
        let id = insert_email(&db, "ana@example.com").await;
        run_once(&p).await;
        assert_eq!(
            calls_of(&db, id).await,
            [("sendgrid".to_owned(), "unauthorized".to_owned()), ("smtp".to_owned(), "sent".to_owned())]
        );
        let c = circuit(&db.store, "sendgrid").await.expect("opened by one refusal");
        assert_eq!(c.state, CircuitState::Open);
        assert!(c.reason.unwrap().contains("credentials"));
        // Later messages do not try the refused key again.
        let later = insert_email(&db, "bea@example.com").await;
        run_once(&p).await;
        assert_eq!(calls_of(&db, later).await, [("smtp".to_owned(), "sent".to_owned())]);
        assert_eq!(fake.state.requests().len(), 0, "the fake rejects the key before recording");
        assert_eq!(server.wait_for(2).await.len(), 2);
    }

    async fn a_provider_alone_with_an_open_circuit_holds_its_messages_without_using_retries(db: TestDb) {
        let fake = FakeSendgrid::start().await;
        let clock = ManualClock::new(chrono::Utc::now());
        let p = email_worker(&db.store, vec![sendgrid(&fake, SENDGRID_KEY, &clock)], &clock, "w1");
        let mut ids = Vec::new();
        for i in 0..3 {
            let to = format!("ana{i}@example.com");
            answer_503(&fake, &to);
            ids.push(insert_email(&db, &to).await);
        }
        run_once(&p).await;
        assert_eq!(circuit(&db.store, "sendgrid").await.unwrap().state, CircuitState::Open);
        // A new message waits for the circuit, unsent and with no attempt used.
        let waiting = insert_email(&db, "bea@example.com").await;
        let before = fake.state.requests().len();
        run_once(&p).await;
        assert_eq!(fake.state.requests().len(), before);
        let m = db.get(waiting).await;
        assert_eq!((m.status.as_str(), m.attempts), ("pending", 0));
        // The circuit's time is up: SendGrid answers, everything goes.
        clock.advance(Duration::from_secs(3600));
        run_once(&p).await;
        run_once(&p).await;
        for id in ids.iter().chain([&waiting]) {
            let m = db.get(*id).await;
            assert_eq!(m.status, "sent", "message {id}: {m:?} {:?} now={:?}", calls_of(&db, *id).await, clock.now());
        }
        assert_eq!(circuit(&db.store, "sendgrid").await.unwrap().state, CircuitState::Closed);
    }

    async fn a_twilio_timeout_is_reconciled_before_any_other_provider_is_tried(db: TestDb) {
        let twilio = FakeTwilio::start().await;
        let custom = FakeCustom::start().await;
        let clock = ManualClock::new(chrono::Utc::now());
        let twilio_provider: Arc<dyn Provider> = Arc::new(Twilio::new(
            twilio_settings(&twilio),
            None,
            Duration::from_millis(500),
            Arc::new(clock.clone()),
        ));
        let custom_provider: Arc<dyn Provider> = Arc::new(Custom::new(
            CustomSettings {
                sms_url: Some(custom.url.clone()),
                whatsapp_url: None,
                email_url: None,
                lookup_url: None,
                secret: SecretString::from(CUSTOM_SECRET.to_owned()),
            },
            Duration::from_secs(5),
            Arc::new(clock.clone()),
        ));
        let mut providers = Providers::all(Arc::new(LogProvider::new()));
        providers.set_chain(Channel::Sms, vec![twilio_provider, custom_provider]);
        let mut cfg = test_config("w1");
        cfg.send_timeout = Duration::from_millis(500);
        cfg.breaker = BreakerPolicy { failures_to_open: 1, ..BreakerPolicy::default() };
        let p = Arc::new(Processor::new(db.store.clone(), providers, Arc::new(clock.clone()), zero_random(), cfg));

        // Twilio creates the message but answers too late: the outcome is
        // unknown, and the timeout opens Twilio's circuit.
        twilio.state.script("+14153234567", Reply::Hang(Duration::from_secs(3)));
        let lost = db.insert_sql("sms", "+14153234567", "Your order is ready").await;
        run_once(&p).await;
        let m = db.get(lost).await;
        assert_eq!((m.status.as_str(), m.error.as_ref().unwrap()["outcome_unknown"].as_bool()), ("pending", Some(true)));
        assert_eq!(custom.state.requests().len(), 0, "an unknown outcome never fails over");
        assert_eq!(circuit(&db.store, "twilio").await.unwrap().state, CircuitState::Open);

        // Another message, while Twilio's circuit is open: the custom gateway.
        let other = db.insert_sql("sms", "+14157654321", "Your table is ready").await;
        run_once(&p).await;
        assert_eq!(db.get(other).await.provider.as_deref(), Some("custom"));

        // The first one's retry asks Twilio first, which has it: recorded,
        // not sent again, and never sent to the custom gateway.
        clock.advance(Duration::from_secs(3600));
        run_once(&p).await;
        let m = db.get(lost).await;
        assert_eq!((m.status.as_str(), m.provider.as_deref()), ("sent", Some("twilio")));
        assert_eq!(calls_of(&db, lost).await, [("twilio".to_owned(), "unknown".to_owned()), ("twilio".to_owned(), "reconciled".to_owned())]);
        let to_custom: Vec<String> = custom.state.requests().iter().map(|r| r["recipient"].as_str().unwrap().to_owned()).collect();
        assert_eq!(to_custom, ["+14157654321"]);
        assert_eq!(twilio.state.created.lock().unwrap().len(), 1, "Twilio sent it once");
    }

    async fn two_workers_share_one_breaker(db: TestDb) {
        let fake = FakeSendgrid::start().await;
        let server = SmtpServer::start();
        let clock = ManualClock::new(chrono::Utc::now());
        let w1 = email_worker(&db.store, vec![sendgrid(&fake, SENDGRID_KEY, &clock), smtp(&server)], &clock, "w1");
        let second = db.second_store().await;
        let w2 = email_worker(&second, vec![sendgrid(&fake, SENDGRID_KEY, &clock), smtp(&server)], &clock, "w2");

        // Worker 1 finds SendGrid down.
        for i in 0..3 {
            let to = format!("ana{i}@example.com");
            answer_503(&fake, &to);
            insert_email(&db, &to).await;
        }
        run_once(&w1).await;
        let calls = fake.state.requests().len();
        assert_eq!(calls, 3);

        // Worker 2 never calls it: it reads the open circuit.
        let id = insert_email(&db, "bea@example.com").await;
        run_once(&w2).await;
        assert_eq!(calls_of(&db, id).await, [("smtp".to_owned(), "sent".to_owned())]);
        assert_eq!(fake.state.requests().len(), calls);

        // The opening is over: one worker at a time may probe.
        clock.advance(Duration::from_secs(31));
        let now = clock.now();
        let until = now + chrono::Duration::seconds(30);
        assert!(matches!(second.bid_to_probe("sendgrid", "w2", now, until).await.unwrap(), ProbeBid::Won(_)));
        assert_eq!(db.store.bid_to_probe("sendgrid", "w1", now, until).await.unwrap(), ProbeBid::Lost);
        // Worker 2's probe succeeds and closes the circuit for worker 1 too.
        let probe = insert_email(&db, "cid@example.com").await;
        run_once(&w2).await;
        assert_eq!(db.get(probe).await.provider.as_deref(), Some("sendgrid"));
        let last = insert_email(&db, "dan@example.com").await;
        run_once(&w1).await;
        assert_eq!(calls_of(&db, last).await, [("sendgrid".to_owned(), "sent".to_owned())]);
        assert_eq!(circuit(&db.store, "sendgrid").await.unwrap().state, CircuitState::Closed);
        second.close().await;
    }
}

#[tokio::test]
async fn chains_are_configured_with_commas_and_checked() {
    use herald::config::{Config, ProviderChoice};
    use std::collections::HashMap;
    let vars = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let c = Config::from_vars(&vars(&[
        ("EMAIL_PROVIDER", "sendgrid, smtp"),
        ("SENDGRID_API_KEY", "SG.key"),
        ("SMTP_HOST", "mail.example.com"),
        ("EMAIL_FROM_ADDRESS", "shop@example.com"),
    ]))
    .unwrap();
    assert_eq!(
        c.providers.chain(Channel::Email),
        [ProviderChoice::Sendgrid, ProviderChoice::Smtp]
    );
    assert_eq!(c.provider_for(Channel::Email), ProviderChoice::Sendgrid);

    // Every provider of a chain needs its settings, named.
    let e = Config::from_vars(&vars(&[
        ("EMAIL_PROVIDER", "sendgrid,smtp"),
        ("SENDGRID_API_KEY", "SG.key"),
        ("EMAIL_FROM_ADDRESS", "shop@example.com"),
    ]))
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("SMTP_HOST is not set (needed because EMAIL_PROVIDER uses smtp)"),
        "{e}"
    );
    let e = Config::from_vars(&vars(&[("SMS_PROVIDER", "twilio,twilio")])).unwrap_err();
    assert!(e.to_string().contains("SMS_PROVIDER names twilio twice"), "{e}");
    let e = Config::from_vars(&vars(&[("SMS_PROVIDER", "twilio,pigeon")])).unwrap_err();
    assert!(
        e.to_string()
            .contains("each provider must be one of twilio, custom or log (got \"pigeon\""),
        "{e}"
    );
    let e = Config::from_vars(&vars(&[("CIRCUIT_FAILURE_THRESHOLD", "0")])).unwrap_err();
    assert!(e.to_string().contains("CIRCUIT_FAILURE_THRESHOLD"), "{e}");
}
