//! Statistics kept as outcomes and receipts are recorded, and
//! `GET /api/stats`.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

fn total(rows: &Value, pred: impl Fn(&Value) -> bool) -> i64 {
    rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| pred(r))
        .map(|r| r["count"].as_i64().unwrap())
        .sum()
}

every_backend! {
    async fn outcomes_are_counted_as_they_are_recorded(db: TestDb) {
        use herald::providers::{Receipt, SendError};
        // Two SMS sent (one of two segments), one failed for good, one email sent.
        db.insert_sql("sms", "+14153234567", "short").await;
        db.insert_sql("sms", "+14153234568", &"long ".repeat(40)).await;
        let bad = db.insert_sql("sms", "+14153234569", "refused").await;
        db.insert_sql_with("email", "ana@example.com", Some("Hi"), "Hello").await;
        let provider = ScriptedProvider::new(move |m, _| {
            if m.id == bad { Err(SendError::permanent("21610", "unsubscribed")) } else { Ok(Receipt::new(format!("P-{}", m.id))) }
        });
        let clock = herald::clock::ManualClock::new(chrono::Utc::now());
        run_once(&processor(&db.store, &provider, &clock, "w1")).await;
        let now = chrono::Utc::now();
        let rows = db.store.stats(now - chrono::Duration::hours(1), now + chrono::Duration::hours(1), None, herald::store::StatGroups { channel: true, event: true, code: true, provider: false }).await.unwrap();
        let find = |channel: &str, event: &str| rows.iter().filter(|r| r.channel.as_deref() == Some(channel) && r.event.as_deref() == Some(event)).map(|r| (r.count, r.segments, r.code.clone().unwrap())).collect::<Vec<_>>();
        assert_eq!(find("sms", "sent"), vec![(2, 3, String::new())], "{rows:?}");
        assert_eq!(find("sms", "permanent"), vec![(1, 0, "21610".to_owned())]);
        assert_eq!(find("sms", "failed"), vec![(1, 0, "21610".to_owned())]);
        assert_eq!(find("email", "sent"), vec![(1, 0, String::new())]);
        let sent = rows.iter().find(|r| r.event.as_deref() == Some("sent") && r.channel.as_deref() == Some("sms")).unwrap();
        assert_eq!(sent.latency_histogram.iter().sum::<i64>(), 2, "each call's latency is in the histogram");
    }

    async fn the_stats_api_groups_by_time_and_columns(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        for i in 0..3 {
            let (s, m) = json_of(app.post("/api/messages").json(&json!({"channel": "sms", "recipient": format!("+1415323456{i}"), "body": "hi"})).send().await.unwrap()).await;
            assert_eq!(s, StatusCode::ACCEPTED);
            app.wait_status(m["id"].as_i64().unwrap(), "sent").await;
        }
        // Statistics are written just after outcomes: wait for them.
        let stats = |q: &'static str| {
            let req = app.get(&format!("/api/stats?{q}"));
            async move { json_of(req.send().await.unwrap()).await }
        };
        wait_until("the statistics to count three sends", || async {
            let (_, body) = stats("group_by=channel,event").await;
            total(&body, |r| r["event"] == "sent" && r["channel"] == "sms") == 3
        }).await;
        let (s, body) = stats("bucket=hour&group_by=provider").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let row = &body["rows"][0];
        assert!(row["bucket"].as_str().unwrap().ends_with(":00:00Z"), "{row}");
        assert_eq!(row["provider"], "test");
        assert!(row["channel"].is_null(), "not grouped by channel");
        assert_eq!(body["latency_bounds_ms"].as_array().unwrap().len() + 1, row["latency_histogram"].as_array().unwrap().len());
        for (q, field) in [
            ("bucket=week", "bucket"),
            ("group_by=recipient", "group_by"),
            ("from=2026-01-01T00:00:00Z&to=2025-01-01T00:00:00Z", "from"),
            ("from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
            ("bucket=minute&from=2026-01-01T00:00:00Z&to=2026-01-10T00:00:00Z", "bucket"),
        ] {
            let (s, e) = stats(q).await;
            assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{q}: {e}");
        }
    }
}

every_backend! {
    async fn ranges_read_whole_hours_from_the_hourly_rollup_and_the_edges_by_minute(db: TestDb) {
        use chrono::TimeZone;
        use herald::store::{Bucket, StatEvent, StatGroups};
        // One send every 7 minutes over 10 hours, each 1 segment.
        let start = chrono::Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap();
        let events: Vec<StatEvent> = (0..86)
            .map(|i| StatEvent {
                at: start + chrono::Duration::minutes(7 * i) + chrono::Duration::seconds(13),
                channel: "sms".into(),
                provider: "twilio".into(),
                event: "sent".into(),
                code: String::new(),
                latency_ms: Some(120),
                segments: 1,
            })
            .collect();
        // Written in two calls, as two processor batches would.
        db.store.add_stats(&events[..40]).await.unwrap();
        db.store.add_stats(&events[40..]).await.unwrap();
        let all = StatGroups::default();
        let at = |h: u32, m: u32| chrono::Utc.with_ymd_and_hms(2026, 11, 20, h, m, 0).unwrap();
        for (from, to) in [
            (at(8, 0), at(18, 0)),   // whole hours only
            (at(8, 17), at(13, 42)), // ragged at both ends
            (at(9, 0), at(9, 50)),   // inside one hour
            (at(10, 59), at(11, 1)), // across one hour boundary
            (at(7, 30), at(19, 30)), // beyond the data
        ] {
            let expected = events.iter().filter(|e| e.at >= from && e.at < to).count() as i64;
            let rows = db.store.stats(from, to, None, all).await.unwrap();
            let got: i64 = rows.iter().map(|r| r.count).sum();
            assert_eq!(got, expected, "{from} to {to}");
            let segments: i64 = rows.iter().map(|r| r.segments).sum();
            assert_eq!(segments, expected);
            let hist: i64 = rows.iter().flat_map(|r| r.latency_histogram.iter()).sum();
            assert_eq!(hist, expected, "every latency is in the histogram");
            // Per hour and per minute, the same total.
            for bucket in [Bucket::Hour, Bucket::Minute, Bucket::Day] {
                let rows = db.store.stats(from, to, Some(bucket), all).await.unwrap();
                assert_eq!(rows.iter().map(|r| r.count).sum::<i64>(), expected, "{bucket:?} {from} to {to}");
            }
        }
        let hours = db.store.stats(at(8, 0), at(18, 0), Some(Bucket::Hour), all).await.unwrap();
        assert_eq!(hours.len(), 10);
        assert_eq!(hours[0].bucket, Some(at(8, 0)));
        assert_eq!(hours[0].count, 9, "08:00, 08:07 … 08:56");
        let minutes = db.store.stats(at(8, 0), at(18, 0), Some(Bucket::Minute), all).await.unwrap();
        assert_eq!(minutes.len(), 86, "one row per minute with a send");
        assert_eq!(minutes[1].bucket, Some(at(8, 7)));
    }
}
