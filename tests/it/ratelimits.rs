//! Rate limits and provider pauses inside the processor, with an injected
//! clock: waiting for a token moves the fake clock instead of sleeping.

use std::sync::Arc;

use herald::clock::{Clock, ManualClock};
use herald::domain::Channel;
use herald::processor::Processor;
use herald::providers::{Providers, Receipt, SendError};
use herald::ratelimit::ChannelLimits;

use crate::support::*;

fn processor_with(
    db: &TestDb,
    clock: &ManualClock,
    sms: &ScriptedProvider,
    email: &ScriptedProvider,
    sms_limits: ChannelLimits,
) -> Arc<Processor> {
    worker(db, "w1", clock, sms, email, sms_limits)
}

fn worker(
    db: &TestDb,
    name: &str,
    clock: &ManualClock,
    sms: &ScriptedProvider,
    email: &ScriptedProvider,
    sms_limits: ChannelLimits,
) -> Arc<Processor> {
    let mut providers = Providers::all(Arc::new(email.clone()));
    providers.set(Channel::Sms, Arc::new(sms.clone()));
    let mut cfg = test_config(name);
    cfg.limits.insert(Channel::Sms, sms_limits);
    Arc::new(Processor::new(
        db.store.clone(),
        providers,
        Arc::new(clock.clone()),
        zero_random(),
        cfg,
    ))
}

every_backend! {
    async fn a_rate_limited_sender_is_held_to_its_rate(db: TestDb) {
        for i in 0..10 {
            db.insert_sql("sms", "+14153234567", &format!("sms {i}")).await;
        }
        for i in 0..5 {
            db.insert_sql_with("email", "ana@example.com", Some("s"), &format!("email {i}")).await;
        }
        let clock = ManualClock::new(t0());
        let sms = ScriptedProvider::ok().named("twilio");
        let email = ScriptedProvider::ok().named("sendgrid");
        let p = processor_with(&db, &clock, &sms, &email, ChannelLimits { rate: 1.0, burst: 1, concurrency: 4 });
        let s = run_once(&p).await;
        assert_eq!(s.sent, 15);
        // Ten messages at one per second (burst 1) need at least nine seconds.
        let elapsed = clock.now() - t0();
        assert!(elapsed >= chrono::Duration::seconds(9), "rate not held: all sent within {elapsed}");
        assert!(elapsed <= chrono::Duration::seconds(12), "waited longer than needed: {elapsed}");
        assert!(sms.per_message().values().all(|n| *n == 1));
        assert_eq!(email.calls().len(), 5);
        // Waiting for a token is not an attempt.
        assert_eq!(db.count_status("sent").await, 15);
        for m in db.store.list(&herald::store::ListFilter { limit: 100, ..Default::default() }).await.unwrap() {
            assert_eq!(m.attempts, 1, "{m:?}");
        }
    }

    async fn a_429_pauses_only_the_provider_that_sent_it(db: TestDb) {
        for i in 0..3 {
            db.insert_sql("sms", "+14153234567", &format!("sms {i}")).await;
        }
        for i in 0..3 {
            db.insert_sql_with("email", "ana@example.com", Some("s"), &format!("email {i}")).await;
        }
        let clock = ManualClock::new(t0());
        let until = t0() + chrono::Duration::seconds(60);
        let first = std::sync::atomic::AtomicBool::new(true);
        let sms = ScriptedProvider::new(move |m, _| {
            if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                Err(SendError::rate_limited(until, "20429", "Too Many Requests"))
            } else {
                Ok(Receipt::new(format!("T-{}", m.id)))
            }
        })
        .named("twilio");
        let email = ScriptedProvider::ok().named("sendgrid");
        let p = processor_with(&db, &clock, &sms, &email, ChannelLimits { rate: 0.0, burst: 1, concurrency: 1 });
        let s = run_once(&p).await;
        // Email carried on; SMS stopped after the 429 and waits in the queue.
        assert_eq!(email.calls().len(), 3);
        assert_eq!(sms.calls().len(), 1, "no SMS was sent while Twilio was paused");
        assert_eq!(s.sent, 3);
        assert_eq!(db.count_status("pending").await, 3);
        let mut attempted = 0;
        for m in db.store.list(&herald::store::ListFilter { limit: 100, ..Default::default() }).await.unwrap() {
            if m.channel == "sms" {
                assert_eq!(m.next_attempt_at, Some(until), "{m:?}");
                attempted += m.attempts;
            }
        }
        assert_eq!(attempted, 1, "the held-back messages were not counted as attempts");
        // After the pause the queue drains.
        clock.set(until);
        run_once(&p).await;
        assert_eq!(db.count_status("sent").await, 6);
    }
}

// Three workers on one PostgreSQL or MariaDB database with
// `SMS_RATE_LIMIT=2`, burst 2: together they send at 2 a second, not 6 (each
// reserves its tokens from the shared bucket, each token with its moment).
server_backends! {
    async fn workers_on_one_database_share_one_rate_limit(db: TestDb) {
    const N: usize = 30;
    for i in 0..N {
        db.insert_sql("sms", "+14153234567", &format!("sms {i}")).await;
    }
    let clock = ManualClock::new(t0());
    let sms = ScriptedProvider::ok().named("twilio");
    let email = ScriptedProvider::ok().named("sendgrid");
    let limits = ChannelLimits {
        rate: 2.0,
        burst: 2,
        concurrency: 4,
    };
    let workers: Vec<_> = (0..3)
        .map(|w| worker(&db, &format!("w{w}"), &clock, &sms, &email, limits))
        .collect();
    let runs: Vec<_> = workers
        .iter()
        .map(|p| {
            tokio::spawn({
                let p = p.clone();
                async move { run_once(&p).await }
            })
        })
        .collect();
    let mut sent = 0;
    for r in runs {
        sent += r.await.unwrap().sent;
    }
    assert_eq!(sent, N as u64);
    assert!(sms.per_message().values().all(|n| *n == 1), "each message sent once");
    // 30 messages at 2/s after a burst of 2 take at least 14 s of the
    // clock (three separate limits would have taken about 5).
    let elapsed = clock.now() - t0();
    assert!(
        elapsed >= chrono::Duration::seconds(14),
        "the limit was not shared: all sent within {elapsed}"
    );
    // One bucket, in the database, for the one sender (the scripted
    // provider's sender is empty).
    let buckets = db.query("SELECT bucket FROM herald_rate_buckets").await;
    assert_eq!(buckets.len(), 1);
    assert_eq!(buckets[0]["bucket"], "sms:twilio:");
    }
}

/// A POS that writes `SMS` rather than `sms`: the row is found by the claim
/// of unknown channels, holds no shared token, and is still sent (paced by
/// the worker's own bucket), on both backends.
mod spelled_differently {
    use super::*;

    every_backend! {
        async fn a_channel_spelled_in_capitals_is_sent_under_a_rate_limit(db: TestDb) {
            let id = db.insert_sql("SMS", "+14153234567", "capitals").await;
            let clock = ManualClock::new(t0());
            let sms = ScriptedProvider::ok().named("twilio");
            let email = ScriptedProvider::ok().named("sendgrid");
            let p = processor_with(&db, &clock, &sms, &email, ChannelLimits { rate: 2.0, burst: 2, concurrency: 4 });
            assert_eq!(run_once(&p).await.sent, 1);
            assert_eq!(db.get(id).await.status, "sent");
            assert_eq!(sms.calls().len(), 1);
        }
    }
}
