//! The queue's contract, on both backends: direct inserts are sent, bad rows
//! fail without a provider call, retries back off, leases protect against
//! double sends, and a manual `status='pending'` sends again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use herald::clock::ManualClock;
use herald::domain::{Channel, NewMessage, RawMessage};
use herald::providers::{Receipt, SendError};
use herald::store::{ClaimFilter, Completion, Message};
use tokio::sync::Barrier;

use crate::support::*;

fn error_of(m: &Message) -> serde_json::Map<String, serde_json::Value> {
    m.error
        .as_ref()
        .and_then(|e| e.as_object())
        .cloned()
        .unwrap_or_else(|| panic!("no JSON error on {m:?}"))
}

every_backend! {
    async fn direct_insert_is_sent(db: TestDb) {
        let sms = db.insert_sql("sms", "+14153234567", "Your order is ready").await;
        let email = db.insert_sql_with("email", "ana@example.com", Some("Receipt #42"), "Thanks!").await;
        let wa = db.insert_sql("whatsapp", "+1 (415) 765-4321", "Olá").await;
        let provider = ScriptedProvider::ok();
        let clock = ManualClock::new(t0());
        let summary = run_once(&processor(&db.store, &provider, &clock, "w1")).await;
        assert_eq!(summary.sent, 3);
        for id in [sms, email, wa] {
            let m = db.get(id).await;
            assert_eq!(m.status, "sent", "{m:?}");
            assert_eq!(m.attempts, 1);
            assert_eq!(m.error, None);
            assert_eq!(m.provider.as_deref(), Some("test"));
            assert_eq!(m.provider_message_id, Some(format!("T-{id}")));
            assert_eq!(m.sent_at, Some(t0()));
            assert_eq!(m.lease_owner, None);
            let attempts = db.store.attempts(id).await.unwrap();
            assert_eq!(attempts.len(), 1);
            assert_eq!(attempts[0].outcome, "sent");
            assert_eq!(attempts[0].provider_message_id, Some(format!("T-{id}")));
            assert_eq!(attempts[0].worker.as_deref(), Some("w1"));
        }
        // The WhatsApp recipient reached the provider normalised.
        assert_eq!(provider.calls().len(), 3);
        assert_eq!(provider.recipient_of(wa).as_deref(), Some("whatsapp:+14157654321"));
        assert_eq!(provider.recipient_of(sms).as_deref(), Some("+14153234567"));
        // The guide's monitoring query runs unchanged and shows the outcome.
        let rows = db
            .query("SELECT id, channel, recipient, status, error, sent_at, created_at FROM notification_messages ORDER BY created_at DESC LIMIT 50")
            .await;
        assert_eq!(rows.len(), 3);
        for row in &rows {
            assert_eq!(row["status"], "sent", "{row:?}");
            assert!(row["error"].is_null(), "{row:?}");
            assert!(!row["sent_at"].is_null() && !row["created_at"].is_null(), "{row:?}");
        }
        let ids: HashSet<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, HashSet::from([sms, email, wa]));
    }

    async fn invalid_rows_fail_without_a_provider_call(db: TestDb) {
        let bad_phone = db.insert_sql("sms", "555-1234", "hi").await;
        let bad_email = db.insert_sql_with("email", "ana@", Some("s"), "hi").await;
        let no_subject = db.insert_sql("email", "ana@example.com", "hi").await;
        let bad_channel = db.insert_sql("fax", "+14153234567", "hi").await;
        let too_long = db.insert_sql("sms", "+14153234567", &"x".repeat(1601)).await;
        let provider = ScriptedProvider::ok();
        let clock = ManualClock::new(t0());
        let summary = run_once(&processor(&db.store, &provider, &clock, "w1")).await;
        assert_eq!(summary.failed, 5);
        assert!(provider.calls().is_empty(), "a provider was called: {:?}", provider.calls());
        for (id, field) in [(bad_phone, "recipient"), (bad_email, "recipient"), (no_subject, "subject"), (bad_channel, "channel"), (too_long, "body")] {
            let m = db.get(id).await;
            assert_eq!(m.status, "failed");
            assert_eq!(m.attempts, 0, "no provider call was made");
            let e = error_of(&m);
            assert_eq!(e["code"], "invalid_message");
            assert_eq!(e["field"], field, "{e:?}");
            assert_eq!(e["retryable"], false);
            assert!(e["message"].as_str().unwrap().len() > 10);
            assert!(e.contains_key("at") && e.contains_key("attempt") && e.contains_key("provider"));
            assert!(db.store.attempts(id).await.unwrap().is_empty());
        }
    }

    async fn retryable_failure_backs_off_then_sends(db: TestDb) {
        let id = db.insert_sql("sms", "+14153234567", "hi").await;
        let provider = ScriptedProvider::new(|m, n| {
            if n <= 2 { Err(SendError::retryable("503", "try later").with_status(503)) } else { Ok(Receipt::new(format!("T-{}", m.id))) }
        });
        let clock = ManualClock::new(t0());
        let p = processor(&db.store, &provider, &clock, "w1");

        run_once(&p).await;
        let m = db.get(id).await;
        assert_eq!(m.status, "pending");
        assert_eq!(m.attempts, 1);
        // base 10 s, random 0 → half: 5 s.
        assert_eq!(m.next_attempt_at, Some(t0() + chrono::Duration::seconds(5)));
        let e = error_of(&m);
        assert_eq!((e["code"].as_str(), e["retryable"].as_bool(), e["attempt"].as_i64()), (Some("503"), Some(true), Some(1)));

        // Not due yet: a run now sends nothing.
        clock.advance(Duration::from_secs(4));
        assert_eq!(run_once(&p).await.claimed, 0);
        assert_eq!(provider.calls_for(id), 1);

        clock.advance(Duration::from_secs(1));
        run_once(&p).await;
        let m = db.get(id).await;
        assert_eq!((m.status.as_str(), m.attempts), ("pending", 2));
        // Second retry: 20 s nominal → 10 s.
        assert_eq!(m.next_attempt_at, Some(t0() + chrono::Duration::seconds(15)));

        clock.advance(Duration::from_secs(10));
        run_once(&p).await;
        let m = db.get(id).await;
        assert_eq!((m.status.as_str(), m.attempts), ("sent", 3));
        assert_eq!(m.error, None);
        let outcomes: Vec<_> = db.store.attempts(id).await.unwrap().into_iter().map(|a| a.outcome).collect();
        assert_eq!(outcomes, ["retryable", "retryable", "sent"]);
    }

    async fn permanent_failure_fails_at_once(db: TestDb) {
        let id = db.insert_sql("sms", "+14153234567", "hi").await;
        let provider = ScriptedProvider::new(|_, _| Err(SendError::permanent("21211", "The 'To' number is not valid").with_status(400)));
        let clock = ManualClock::new(t0());
        run_once(&processor(&db.store, &provider, &clock, "w1")).await;
        let m = db.get(id).await;
        assert_eq!((m.status.as_str(), m.attempts), ("failed", 1));
        let e = error_of(&m);
        assert_eq!(e["code"], "21211");
        assert_eq!(e["message"], "The 'To' number is not valid");
        assert_eq!(e["provider"], "test");
        assert_eq!(e["retryable"], false);
        assert_eq!(e["attempt"], 1);
        assert_eq!(e["status"], 400);
        assert_eq!(herald::clock::parse_ts(e["at"].as_str().unwrap()), Some(t0()));
        assert_eq!(provider.calls_for(id), 1);
    }

    async fn max_retries_then_failed_with_json_error(db: TestDb) {
        let id = db.insert_sql("sms", "+14153234567", "hi").await;
        let provider = ScriptedProvider::new(|_, _| Err(SendError::retryable("connection", "connection refused")));
        let clock = ManualClock::new(t0());
        let p = processor(&db.store, &provider, &clock, "w1");
        for _ in 0..10 {
            run_once(&p).await;
            clock.advance(Duration::from_secs(3600));
        }
        let m = db.get(id).await;
        assert_eq!(m.status, "failed");
        assert_eq!(m.attempts, 4, "first attempt plus MAX_RETRIES=3 retries");
        assert_eq!(provider.calls_for(id), 4);
        let e = error_of(&m);
        assert_eq!((e["code"].as_str(), e["retryable"].as_bool(), e["attempt"].as_i64()), (Some("connection"), Some(true), Some(4)));
        assert!(!e.contains_key("next_attempt_at"));
        assert_eq!(db.store.attempts(id).await.unwrap().len(), 4);
    }

    async fn manual_pending_sends_again_with_a_fresh_round(db: TestDb) {
        let id = db.insert_sql("sms", "+14153234567", "hi").await;
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = fail.clone();
        let provider = ScriptedProvider::new(move |m, _| {
            if f.load(std::sync::atomic::Ordering::SeqCst) { Err(SendError::retryable("busy", "busy")) } else { Ok(Receipt::new(format!("T-{}", m.id))) }
        });
        let clock = ManualClock::new(t0());
        let p = processor(&db.store, &provider, &clock, "w1");
        for _ in 0..6 {
            run_once(&p).await;
            clock.advance(Duration::from_secs(3600));
        }
        assert_eq!(db.get(id).await.status, "failed");

        // The guide's manual retry, in SQL: a whole new round of retries.
        db.store.execute_raw(&format!("UPDATE notification_messages SET status = 'pending' WHERE id = {id}")).await.unwrap();
        let m = db.get(id).await;
        assert_eq!((m.status.as_str(), m.next_attempt_at, m.lease_owner.clone()), ("pending", None, None));
        for _ in 0..3 {
            run_once(&p).await;
            clock.advance(Duration::from_secs(3600));
        }
        let m = db.get(id).await;
        assert_eq!((m.status.as_str(), m.attempts), ("pending", 7), "three calls in the new round, still retrying");

        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        run_once(&p).await;
        let m = db.get(id).await;
        assert_eq!((m.status.as_str(), m.attempts), ("sent", 8));

        // And `herald retry` (the store call) does the same for a failed row.
        let id2 = db.insert_sql("sms", "+14153234567", "again").await;
        fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let permanent = ScriptedProvider::new(|_, _| Err(SendError::permanent("x", "no")));
        run_once(&processor(&db.store, &permanent, &clock, "w2")).await;
        assert_eq!(db.get(id2).await.status, "failed");
        assert_eq!(db.store.retry(&[id2, id], t0()).await.unwrap(), vec![id2], "only failed messages are retried");
        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        run_once(&p).await;
        assert_eq!(db.get(id2).await.status, "sent");
    }

    async fn rate_limited_waits_without_using_retries(db: TestDb) {
        let id = db.insert_sql("sms", "+14153234567", "hi").await;
        let until = t0() + chrono::Duration::seconds(30);
        let provider = ScriptedProvider::new(move |m, n| {
            if n <= 5 { Err(SendError::rate_limited(until + chrono::Duration::seconds(30 * (n as i64 - 1)), "429", "Too Many Requests")) } else { Ok(Receipt::new(format!("T-{}", m.id))) }
        });
        let clock = ManualClock::new(t0());
        let p = processor(&db.store, &provider, &clock, "w1");
        run_once(&p).await;
        let m = db.get(id).await;
        assert_eq!(m.status, "pending");
        assert_eq!(m.next_attempt_at, Some(until));
        assert_eq!(error_of(&m)["code"], "429");
        for _ in 0..5 {
            clock.advance(Duration::from_secs(30));
            run_once(&p).await;
        }
        let m = db.get(id).await;
        assert_eq!((m.status.as_str(), m.attempts), ("sent", 6), "five 429s did not use up MAX_RETRIES=3");
        let outcomes: Vec<_> = db.store.attempts(id).await.unwrap().into_iter().map(|a| a.outcome).collect();
        assert_eq!(outcomes.iter().filter(|o| *o == "rate_limited").count(), 5);
    }

    async fn concurrent_claimers_never_share_a_message(db: TestDb) {
        const N: usize = 3000;
        const CLAIMERS: usize = 6;
        db.insert_many(N).await;
        let barrier = Arc::new(Barrier::new(CLAIMERS));
        // Nobody claims a second time before everyone has claimed once (the
        // first claims take at most 222 of the 3,000), so every claimer
        // races, however the machine schedules them.
        let first_done = Arc::new(Barrier::new(CLAIMERS));
        let mut tasks = Vec::new();
        for w in 0..CLAIMERS {
            // Each claimer has its own pool, as a separate process would.
            let store = db.second_store().await;
            let (barrier, first_done) = (barrier.clone(), first_done.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let mut mine = Vec::new();
                let mut first = true;
                loop {
                    let got = store.claim(herald::store::ClaimFilter::Any, &format!("w{w}"), t0(), t0() + chrono::Duration::seconds(60), 37).await.unwrap();
                    if std::mem::take(&mut first) {
                        first_done.wait().await;
                    }
                    if got.is_empty() {
                        break;
                    }
                    mine.extend(got.into_iter().map(|m| (m.id, m.lease_owner.unwrap())));
                    tokio::task::yield_now().await;
                }
                (w, mine)
            }));
        }
        let mut seen = HashSet::new();
        let mut busy = 0;
        for t in tasks {
            let (w, mine) = t.await.unwrap();
            if !mine.is_empty() {
                busy += 1;
            }
            for (id, owner) in mine {
                assert_eq!(owner, format!("w{w}"));
                assert!(seen.insert(id), "message {id} claimed twice");
            }
        }
        assert_eq!(seen.len(), N, "every message claimed exactly once");
        assert!(busy >= 2, "the race had more than one participant");
        assert_eq!(db.count_status("processing").await, N as i64);
    }

    async fn concurrent_processors_send_each_message_once(db: TestDb) {
        const N: usize = 1500;
        db.insert_many(N).await;
        let provider = ScriptedProvider::ok().with_delay(Duration::from_millis(1));
        let clock = ManualClock::new(t0());
        let mut runs = Vec::new();
        let barrier = Arc::new(Barrier::new(3));
        for w in 0..3 {
            let store = db.second_store().await;
            let p = processor(&store, &provider, &clock, &format!("p{w}"));
            let barrier = barrier.clone();
            runs.push(tokio::spawn(async move {
                barrier.wait().await;
                run_once(&p).await
            }));
        }
        let mut total = 0;
        for r in runs {
            total += r.await.unwrap().sent;
        }
        assert_eq!(total, N as u64);
        let per = provider.per_message();
        assert_eq!(per.len(), N);
        assert!(per.values().all(|n| *n == 1), "a message was sent twice");
        assert_eq!(db.count_status("sent").await, N as i64);
    }

    async fn expired_lease_is_reclaimed_and_the_old_owner_cannot_record(db: TestDb) {
        let id = db.insert_sql("sms", "+14153234567", "hi").await;
        let lease = chrono::Duration::seconds(60);
        let a = db.store.claim(herald::store::ClaimFilter::Any, "dead-worker", t0(), t0() + lease, 10).await.unwrap();
        assert_eq!(a.len(), 1);
        // Held: nobody else gets it.
        assert!(db.store.claim(herald::store::ClaimFilter::Any, "w2", t0() + chrono::Duration::seconds(59), t0() + lease * 2, 10).await.unwrap().is_empty());
        // Expired: the next worker takes it, and sending it counts a new attempt.
        let later = t0() + chrono::Duration::seconds(61);
        let b = db.store.claim(herald::store::ClaimFilter::Any, "w2", later, later + lease, 10).await.unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].id, id);
        assert_eq!(b[0].attempts, 2);
        // The old owner's late outcome is refused: the lease guards the row.
        let done = Completion::sent(id, "test", Some("late".into()), later);
        assert!(db.store.record_outcomes("dead-worker", later, std::slice::from_ref(&done), None, &[]).await.1.unwrap().is_empty());
        assert_eq!(db.store.record_outcomes("w2", later, &[done], None, &[]).await.1.unwrap(), vec![id]);
        assert_eq!(db.get(id).await.status, "sent");

        // Through the processor: a stale lease is picked up by the next run.
        let id2 = db.insert_sql("sms", "+14153234567", "hi again").await;
        db.store.claim(herald::store::ClaimFilter::Any, "dead-worker", t0(), t0() + lease, 10).await.unwrap();
        let provider = ScriptedProvider::ok();
        let clock = ManualClock::new(t0() + chrono::Duration::seconds(30));
        let p = processor(&db.store, &provider, &clock, "w3");
        assert_eq!(run_once(&p).await.claimed, 0, "lease still held");
        clock.advance(Duration::from_secs(31));
        assert_eq!(run_once(&p).await.sent, 1);
        assert_eq!(db.get(id2).await.status, "sent");
    }

    async fn a_lease_too_short_for_the_send_is_handed_back(db: TestDb) {
        let first = db.insert_sql("sms", "+14153234567", "slow").await;
        let second = db.insert_sql("sms", "+14153234567", "waits").await;
        let clock = ManualClock::new(t0());
        let c = clock.clone();
        // Each send takes 55 s of the 60 s lease; whichever message waits
        // for the only send slot no longer has a lease long enough for a
        // 10 s send.
        let provider = ScriptedProvider::new(move |m, _| {
            c.advance(Duration::from_secs(55));
            Ok(Receipt::new(format!("T-{}", m.id)))
        });
        let mut cfg = test_config("w1");
        cfg.limits.insert(
            herald::domain::Channel::Sms,
            herald::ratelimit::ChannelLimits { rate: 0.0, burst: 1, concurrency: 1 },
        );
        let p = Arc::new(herald::processor::Processor::new(
            db.store.clone(),
            herald::providers::Providers::all(Arc::new(provider.clone())),
            Arc::new(clock.clone()),
            zero_random(),
            cfg,
        ));
        let s = run_once(&p).await;
        // Handed back uncounted, then claimed again with a fresh lease and sent.
        assert_eq!((s.claimed, s.released, s.sent), (3, 1, 2));
        assert_eq!(provider.calls_for(first), 1);
        assert_eq!(provider.calls_for(second), 1);
        for id in [first, second] {
            let m = db.get(id).await;
            assert_eq!((m.status.as_str(), m.attempts), ("sent", 1), "the hand-back was not counted as an attempt");
        }
    }

    async fn scheduled_messages_wait_for_send_at(db: TestDb) {
        let raw = RawMessage {
            channel: Some("sms".into()),
            recipient: Some("+14153234567".into()),
            body: Some("later".into()),
            send_at: Some(t0() + chrono::Duration::minutes(10)),
            ..RawMessage::default()
        };
        let msg = db.store.enqueue(&NewMessage::parse(&raw).unwrap(), t0()).await.unwrap();
        let provider = ScriptedProvider::ok();
        let clock = ManualClock::new(t0());
        let p = processor(&db.store, &provider, &clock, "w1");
        assert_eq!(run_once(&p).await.claimed, 0);
        assert_eq!(db.store.next_due().await.unwrap(), Some(t0() + chrono::Duration::minutes(10)));
        clock.advance(Duration::from_secs(600));
        assert_eq!(run_once(&p).await.sent, 1);
        assert_eq!(db.get(msg.id).await.status, "sent");
    }

    async fn claims_read_what_is_due_first_and_skip_what_is_scheduled(db: TestDb) {
        // Scheduled for next week and inserted first (lower ids), then a
        // retry due a minute ago, then messages due now.
        let schedule = |minutes: i64, body: &str| RawMessage {
            channel: Some("sms".into()),
            recipient: Some("+14153234567".into()),
            body: Some(body.into()),
            send_at: Some(t0() + chrono::Duration::minutes(minutes)),
            ..RawMessage::default()
        };
        let mut later = Vec::new();
        for i in 0..20 {
            let m = db.store.enqueue(&NewMessage::parse(&schedule(7 * 24 * 60 + i, "next week")).unwrap(), t0()).await.unwrap();
            later.push(m.id);
        }
        // The next wake-up is the first scheduled message (read from the index).
        assert_eq!(db.store.next_due().await.unwrap(), Some(t0() + chrono::Duration::minutes(7 * 24 * 60)));
        let retry = db.insert_sql("sms", "+14153234567", "retry").await;
        let past = herald::clock::format_ts(t0() - chrono::Duration::minutes(1));
        db.execute(&format!("UPDATE notification_messages SET next_attempt_at = {} WHERE id = {retry}", db.ts(&past))).await;
        let mut now_due = Vec::new();
        for i in 0..3 {
            now_due.push(db.insert_sql("sms", "+14153234567", &format!("now {i}")).await);
        }
        // Due now first (in id order), then the retry; nothing scheduled.
        let lease = t0() + chrono::Duration::seconds(60);
        let got: Vec<i64> = db.store.claim(ClaimFilter::Channel(Channel::Sms), "w1", t0(), lease, 10).await.unwrap().iter().map(|m| m.id).collect();
        let mut want = now_due.clone();
        want.push(retry);
        want.sort();
        assert_eq!(got, want);
        // Now the claimed messages' leases end first.
        assert_eq!(db.store.next_due().await.unwrap(), Some(lease));
        // Next week: the four expired leases (due since t0 + 60 s) first,
        // then the scheduled ones in their order.
        let week = t0() + chrono::Duration::days(8);
        let got: Vec<i64> = db.store.claim(ClaimFilter::Channel(Channel::Sms), "w1", week, week + chrono::Duration::seconds(60), 6).await.unwrap().iter().map(|m| m.id).collect();
        let mut expected = want.clone();
        expected.extend(&later[..2]);
        expected.sort();
        assert_eq!(got, expected);
    }

    async fn idempotency_keys_are_remembered_for_a_day(db: TestDb) {
        use herald::store::Idempotent;
        let raw = RawMessage { channel: Some("sms".into()), recipient: Some("+14153234567".into()), body: Some("x".into()), ..RawMessage::default() };
        let msg = NewMessage::parse(&raw).unwrap();
        let first = db.store.enqueue_idempotent("k1", "hash-a", std::slice::from_ref(&msg), t0()).await.unwrap();
        assert!(matches!(first, Idempotent::Created(_)));
        let later = t0() + chrono::Duration::hours(23);
        assert!(matches!(db.store.enqueue_idempotent("k1", "hash-a", std::slice::from_ref(&msg), later).await.unwrap(), Idempotent::Replayed(_)));
        assert!(matches!(db.store.enqueue_idempotent("k1", "hash-b", std::slice::from_ref(&msg), later).await.unwrap(), Idempotent::Conflict));
        let next_day = t0() + chrono::Duration::hours(25);
        assert!(matches!(db.store.enqueue_idempotent("k1", "hash-b", std::slice::from_ref(&msg), next_day).await.unwrap(), Idempotent::Created(_)));
    }

    async fn cancel_only_pending(db: TestDb) {
        let id = db.insert_sql("sms", "+14153234567", "hi").await;
        let c = db.store.cancel(id, t0()).await.unwrap();
        assert_eq!(c.status, "cancelled");
        let err = db.store.cancel(id, t0()).await.unwrap_err().to_string();
        assert!(err.contains("cancelled") && err.contains("only pending"), "{err}");
        assert!(matches!(db.store.cancel(999_999, t0()).await, Err(herald::store::StoreError::NotFound(999_999))));
        let provider = ScriptedProvider::ok();
        run_once(&processor(&db.store, &provider, &ManualClock::new(t0()), "w1")).await;
        assert!(provider.calls().is_empty(), "a cancelled message is never sent");
    }
}
