//! The operator dashboard: every route behind sign-in (checked against the
//! router's own list), the security headers, CSRF, and an operator's
//! journey in a real headless Chromium: sign in, read the overview, filter
//! the messages, retry failed ones (one by one and in bulk), cancel a
//! scheduled one, send a test message from a template, edit a template
//! with its live preview, and sign out.

use std::time::Duration;

use herald::providers::{Receipt, SendError};
use reqwest::{redirect, StatusCode};
use serde_json::json;

use crate::support::*;

/// Recipients whose first send fails for good (error 21211); later sends
/// succeed, so a retry from the dashboard goes through.
const FAILS_ONCE: [&str; 2] = ["+14153230666", "+14153230667"];

fn failing_once() -> ScriptedProvider {
    ScriptedProvider::new(|m, call| {
        if call == 1 && FAILS_ONCE.contains(&m.recipient.to_string().as_str()) {
            Err(SendError::permanent(
                "21211",
                "The 'To' number is not a valid phone number.",
            ))
        } else {
            Ok(Receipt::new(format!("T-{}", m.id)))
        }
    })
}

/// Every path the dashboard router declares, from its source, so a route
/// added later is covered without editing this test.
fn dashboard_routes() -> Vec<String> {
    let source = include_str!("../../src/http/dashboard/mod.rs");
    let mut routes: Vec<String> = source
        .split(".route(")
        .skip(1)
        .filter_map(|r| r.trim_start().strip_prefix('"')?.split('"').next())
        .map(|p| p.replace("{id}", "1").replace("{name}", "receipt"))
        .collect();
    routes.sort();
    routes.dedup();
    routes
}

every_backend! {
    async fn every_dashboard_route_requires_sign_in(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        let http = reqwest::Client::builder().redirect(redirect::Policy::none()).build().unwrap();
        let routes = dashboard_routes();
        assert!(routes.len() >= 15, "the router's routes were read: {routes:?}");
        let public = ["/", "/dashboard/login", "/dashboard/static/app.css", "/dashboard/static/app.js"];
        for path in &routes {
            if public.contains(&path.as_str()) {
                continue;
            }
            let mut guarded = 0;
            for (method, cookie) in [
                (reqwest::Method::GET, None),
                (reqwest::Method::POST, None),
                (reqwest::Method::GET, Some("herald_session=forged-or-expired")),
                (reqwest::Method::POST, Some("herald_session=forged-or-expired")),
            ] {
                let mut req = http.request(method.clone(), format!("{}{path}", app.url))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body("csrf=x&channel=sms&recipient=%2B14153234567&body=hi&name=x&secret=x");
                // An API key is not a session: the dashboard wants its cookie.
                req = req.bearer_auth(KEY);
                if let Some(c) = cookie {
                    req = req.header("cookie", c);
                }
                let r = req.send().await.unwrap();
                match r.status() {
                    StatusCode::SEE_OTHER => {
                        let to = r.headers()["location"].to_str().unwrap();
                        assert!(to.starts_with("/dashboard/login?next="), "{method} {path} → {to}");
                        guarded += 1;
                    }
                    StatusCode::METHOD_NOT_ALLOWED => {}
                    s => panic!("{method} {path} without a session answered {s}"),
                }
            }
            assert!(guarded >= 2, "{path} is behind sign-in for its methods");
        }
        // Nothing was done by any of those requests.
        assert_eq!(app.provider.calls().len(), 0);
        assert_eq!(db.max_id().await, 0, "no test message was queued");

        // The public pages carry the same strict headers.
        let r = http.get(format!("{}/dashboard/login", app.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        let r = http.get(format!("{}/", app.url)).send().await.unwrap();
        assert_eq!((r.status(), r.headers()["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/dashboard"));
    }

    async fn sign_in_is_refused_without_the_right_secret_and_its_own_form(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        let http = reqwest::Client::builder().redirect(redirect::Policy::none()).build().unwrap();
        // A sign-in post without the login page's own cookie and token (a
        // login CSRF) is sent back to the form, even with the right key.
        let r = http.post(format!("{}/dashboard/login", app.url))
            .form(&[("secret", KEY), ("csrf", "made-up")])
            .send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(r.headers()["location"].to_str().unwrap().starts_with("/dashboard/login?failed=expired"), "{:?}", r.headers());
        let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_owned()).collect();
        assert!(!cookies.iter().any(|c| c.starts_with("herald_session=")), "{cookies:?}");
    }
}

every_backend! {
    async fn a_session_ends_when_it_expires(db: TestDb) {
        let app = spawn_app_with(&db, &[KEY], &[("DASHBOARD_SESSION_HOURS", "1")]).await;
        let http = reqwest::Client::builder().redirect(redirect::Policy::none()).build().unwrap();
        let session = sign_in_http(&app, KEY).await.expect("signed in");
        let get = || http.get(format!("{}/dashboard/messages", app.url)).header("cookie", &session).send();
        assert_eq!(get().await.unwrap().status(), StatusCode::OK);
        let rows = db.query("SELECT created_at, expires_at FROM herald_sessions").await;
        assert_eq!(rows.len(), 1, "one session; only its token's hash is stored: {rows:?}");
        let hours = |v: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(&v.as_str().unwrap().replace(' ', "T")).unwrap();
        assert_eq!((hours(&rows[0]["expires_at"]) - hours(&rows[0]["created_at"])).num_minutes(), 60, "DASHBOARD_SESSION_HOURS");
        // An hour later (moved back rather than waited for):
        db.execute("UPDATE herald_sessions SET expires_at = created_at").await;
        let r = get().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(r.headers()["location"].to_str().unwrap().starts_with("/dashboard/login?next="));
    }
}

every_backend! {
    async fn an_operator_uses_the_dashboard_in_a_browser(db: TestDb) {
        let app = spawn_app_scripted(&db, &[KEY], &[("SMS_PRICE_PER_SEGMENT", "0.0079")], failing_once()).await;
        // A day of traffic: sent receipts, two failures and one scheduled reminder.
        let queue = |to: &str, body: &str, send_at: Option<String>| {
            let req = app.post("/api/messages").json(&json!({"channel": "sms", "recipient": to, "body": body, "send_at": send_at, "metadata": {"order_id": format!("A-{}", &to[9..])}}));
            async move {
                let (s, m) = json_of(req.send().await.unwrap()).await;
                assert_eq!(s, StatusCode::ACCEPTED, "{m}");
                m["id"].as_i64().unwrap()
            }
        };
        let mut sent = vec![];
        for i in 0..3 {
            sent.push(queue(&format!("+1415323456{i}"), &format!("Your receipt #{i}"), None).await);
        }
        let failed_a = queue(FAILS_ONCE[0], "Order A is ready", None).await;
        let failed_b = queue(FAILS_ONCE[1], "Order B is ready", None).await;
        let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
        let scheduled = queue("+14153234599", "Reminder: your appointment is tomorrow", Some(tomorrow)).await;
        for id in &sent {
            app.wait_status(*id, "sent").await;
        }
        app.wait_status(failed_a, "failed").await;
        app.wait_status(failed_b, "failed").await;

        let b = Browser::start(1280).await;
        // Signed out, any page leads to sign-in, and back after it.
        b.goto(&format!("{}/dashboard/messages", app.url)).await;
        assert!(b.url().await.contains("/dashboard/login?next=%2Fdashboard%2Fmessages"), "{}", b.url().await);
        b.screenshot("sign-in").await;
        b.fill("#secret", "not-the-key-at-all").await;
        b.click("#sign-in").await;
        b.wait_for_text("main", "is not right", false).await;
        assert!(b.cookie("herald_session").await.is_none());
        b.fill("#secret", KEY).await;
        b.click("#sign-in").await;
        b.find("#message-list").await;
        assert!(b.url().await.ends_with("/dashboard/messages"), "{}", b.url().await);
        let session = b.cookie("herald_session").await.expect("a session cookie");
        assert_eq!((session["httpOnly"].as_bool(), session["sameSite"].as_str()), (Some(true), Some("Strict")), "{session}");

        // The overview: what was sent, what failed and why, the queue, the cost.
        b.goto(&format!("{}/dashboard", app.url)).await;
        b.wait_for_text("#totals", "sms", true).await;
        b.wait_for_text("#errors", "21211", true).await;
        let totals = b.text("#totals").await;
        assert!(totals.contains("USD"), "an estimated cost from SMS_PRICE_PER_SEGMENT: {totals}");
        assert!(b.text("#providers").await.contains("test"));
        assert!(b.text("#queue").await.contains("pending"), "the scheduled message waits: {}", b.text("#queue").await);
        assert!(b.has("#throughput svg").await, "the chart is drawn");
        b.screenshot("overview").await;

        // Filter the list down to the failed messages.
        b.goto(&format!("{}/dashboard/messages", app.url)).await;
        b.select("select[name=status]", "failed").await;
        b.click("#filter").await;
        b.wait_for_text("#message-list", FAILS_ONCE[0], false).await;
        let list = b.text("#message-list").await;
        assert!(list.contains(FAILS_ONCE[1]) && !list.contains("+14153234560"), "only failed messages: {list}");
        b.screenshot("messages").await;

        // Open one failed message: its error and attempt; retry it.
        b.goto(&format!("{}/dashboard/messages/{failed_a}", app.url)).await;
        assert!(b.text("#content").await.contains("21211"));
        assert!(b.text("#attempts").await.contains("permanent") || b.text("#attempts").await.contains("failed"));
        b.screenshot("message-failed").await;
        b.click("#retry").await;
        b.wait_for_text("#status", "sent", true).await;
        assert_eq!(app.provider.calls_for(failed_a), 2);

        // Bulk retry of the (remaining) failed messages, with a confirmation.
        b.goto(&format!("{}/dashboard/messages?status=failed", app.url)).await;
        b.click("#bulk-retry").await;
        b.find("#confirm").await;
        b.screenshot("bulk-retry").await;
        b.click("#confirm").await;
        app.wait_status(failed_b, "sent").await;

        // A forged form (the session cookie, no CSRF token) changes nothing.
        let forged = reqwest::Client::new()
            .post(format!("{}/dashboard/messages/{scheduled}/cancel", app.url))
            .header("cookie", format!("herald_session={}", session["value"].as_str().unwrap()))
            .form(&[("csrf", "guessed")])
            .send().await.unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);
        let from_elsewhere = reqwest::Client::new()
            .post(format!("{}/dashboard/messages/{scheduled}/cancel", app.url))
            .header("cookie", format!("herald_session={}", session["value"].as_str().unwrap()))
            .header("origin", "https://evil.example")
            .form(&[("csrf", "guessed")])
            .send().await.unwrap();
        assert_eq!(from_elsewhere.status(), StatusCode::FORBIDDEN);
        assert_eq!(app.message(scheduled).await["status"], "pending");

        // Cancel the scheduled reminder.
        b.goto(&format!("{}/dashboard/messages/{scheduled}", app.url)).await;
        b.click("#cancel").await;
        b.wait_for_text("#status", "cancelled", false).await;
        assert_eq!(app.message(scheduled).await["status"], "cancelled");

        // A template, written with its live preview.
        b.goto(&format!("{}/dashboard/templates", app.url)).await;
        b.fill("#new-name", "order_ready").await;
        b.click("#new-template").await;
        b.find("#template-form").await;
        b.fill("#data", r#"{"name": "Ana", "order": "A-17"}"#).await;
        b.fill("#body", "Hi {{ name }}, order {{ order }} is ready").await;
        b.wait_for_text("#preview", "Hi Ana, order A-17 is ready", false).await;
        b.fill("#body", "Hi {{ name ").await;
        b.wait_for_text("#preview", "body: line 1: unexpected end of input", false).await;
        b.fill("#body", "Hi {{ name }}, order {{ order }} is ready").await;
        b.wait_for_text("#preview", "Hi Ana, order A-17 is ready", false).await;
        b.screenshot("template").await;
        b.click("#save").await;
        b.wait_for_text(".flash", "Saved as a new version", false).await;
        let saved = app.get("/api/templates/order_ready").send().await.unwrap();
        assert_eq!(saved.status(), StatusCode::OK);

        // Send a test message from that template and watch it go out.
        b.goto(&format!("{}/dashboard/send", app.url)).await;
        b.select("#channel", "sms").await;
        b.fill("#recipient", "+14153234571").await;
        b.select("#template", "order_ready").await;
        b.fill("#data", r#"{"name": "Luis", "order": "B-2"}"#).await;
        b.click("#send").await;
        b.wait_for_text("#status", "sent", false).await;
        assert!(b.text("#content").await.contains("Hi Luis, order B-2 is ready"));
        b.screenshot("test-send").await;
        let id: i64 = b.url().await.split("/dashboard/messages/").nth(1).unwrap().split('?').next().unwrap().parse().unwrap();
        assert_eq!(app.provider.recipient_of(id).as_deref(), Some("+14153234571"));

        // The alert rules from the environment, and adding one's own.
        b.goto(&format!("{}/dashboard/alerts", app.url)).await;
        b.wait_for_text("#alert-rules", "failure-ratio", false).await;
        b.screenshot("alerts").await;

        // Sign out: the session ends on the server, not only in the browser.
        b.click("#sign-out").await;
        b.find("#secret").await;
        b.goto(&format!("{}/dashboard", app.url)).await;
        assert!(b.url().await.contains("/dashboard/login"));
        let replay = reqwest::Client::builder().redirect(redirect::Policy::none()).build().unwrap()
            .get(format!("{}/dashboard", app.url))
            .header("cookie", format!("herald_session={}", session["value"].as_str().unwrap()))
            .send().await.unwrap();
        assert_eq!(replay.status(), StatusCode::SEE_OTHER, "the old cookie no longer works");
        b.quit().await;
    }
}

/// On a phone's width every page fits: nothing runs off the right edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_fits_a_phone() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db, &[KEY]).await;
    let (_, m) = json_of(
        app.post("/api/messages")
            .json(&json!({"channel": "email", "recipient": "ana@example.com", "subject": "Your receipt", "body": "Thanks for shopping with us"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = m["id"].as_i64().unwrap();
    app.wait_status(id, "sent").await;
    let b = Browser::start(390).await;
    b.goto(&format!("{}/dashboard/login", app.url)).await;
    b.fill("#secret", KEY).await;
    b.click("#sign-in").await;
    b.find("#totals").await;
    for path in [
        "/dashboard".to_owned(),
        "/dashboard/messages".to_owned(),
        format!("/dashboard/messages/{id}"),
        "/dashboard/send".to_owned(),
        "/dashboard/templates".to_owned(),
        "/dashboard/suppressions".to_owned(),
        "/dashboard/alerts".to_owned(),
        "/dashboard/webhooks".to_owned(),
    ] {
        b.goto(&format!("{}{path}", app.url)).await;
        b.find("main").await;
        let (page, view) = b.widths().await;
        assert!(page <= view, "{path} is {page}px wide on a {view}px screen");
    }
    b.goto(&format!("{}/dashboard", app.url)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.screenshot("overview-phone").await;
    b.quit().await;
}

/// Sign in as a browser would, over plain HTTP: read the sign-in page
/// (its cookie and form token), post the secret. The session cookie, or
/// where the form sent us back to.
async fn sign_in_http(app: &TestApp, secret: &str) -> Result<String, String> {
    let http = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap();
    let page = http.get(format!("{}/dashboard/login", app.url)).send().await.unwrap();
    let login_cookie = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let r = http
        .post(format!("{}/dashboard/login", app.url))
        .header("cookie", login_cookie)
        .form(&[("csrf", csrf.as_str()), ("secret", secret), ("next", "/dashboard")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("herald_session="));
    match session {
        Some(c) => Ok(c.split(';').next().unwrap().to_owned()),
        None => Err(r.headers()["location"].to_str().unwrap().to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_hashed_by_the_cli_signs_in() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let hash_of = |password: &str| {
        let mut child = Command::new(herald_bin())
            .arg("hash-password")
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let short = hash_of("too-short");
    assert!(!short.status.success());
    assert!(stderr(&short).contains("at least 12 characters"), "{}", stderr(&short));

    let out = hash_of("correct horse battery staple");
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert!(!line.contains("correct horse"), "the password itself is never printed");
    let hash = line
        .trim()
        .strip_prefix("DASHBOARD_PASSWORD='")
        .and_then(|l| l.strip_suffix('\''))
        .unwrap_or_else(|| panic!("a line for .env: {line}"));
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app_with(&db, &[KEY], &[("DASHBOARD_PASSWORD", hash)]).await;
    let session = sign_in_http(&app, "correct horse battery staple")
        .await
        .expect("the password signs in");
    let http = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(format!("{}/dashboard", app.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(!html.contains(hash) && !html.contains(KEY), "no secret is shown");
    sign_in_http(&app, KEY).await.expect("an API key signs in too");
    let refused = sign_in_http(&app, "correct horse battery stapl").await.unwrap_err();
    assert!(refused.starts_with("/dashboard/login?failed="), "{refused}");
}

every_backend! {
    async fn the_overview_shows_delivery_rates_from_receipts(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        for i in 0..4 {
            let (_, m) = json_of(app.post("/api/messages").json(&json!({"channel": "sms", "recipient": format!("+1415323458{i}"), "body": "hi"})).send().await.unwrap()).await;
            app.wait_status(m["id"].as_i64().unwrap(), "sent").await;
        }
        // Three receipts say delivered, one undelivered (as the receipt
        // handlers count them).
        let receipt = |status: &str| herald::store::StatEvent {
            at: chrono::Utc::now(),
            channel: "sms".into(),
            provider: "test".into(),
            event: format!("delivery:{status}"),
            code: String::new(),
            latency_ms: None,
            segments: 0,
        };
        db.store.add_stats(&[receipt("delivered"), receipt("delivered"), receipt("delivered"), receipt("undelivered")]).await.unwrap();
        let session = sign_in_http(&app, KEY).await.unwrap();
        let http = reqwest::Client::new();
        wait_until("the overview to count four sends and three deliveries", || async {
            let html = http.get(format!("{}/dashboard", app.url)).header("cookie", &session).send().await.unwrap().text().await.unwrap();
            let providers = html.split("id=\"providers\"").nth(1).unwrap_or("");
            let totals = html.split("id=\"totals\"").nth(1).unwrap_or("");
            providers.contains("75.0 %") && totals.contains("75.0 %")
        })
        .await;
    }
}

every_backend! {
    async fn suppressions_and_rules_are_managed_from_the_dashboard(db: TestDb) {
        let app = spawn_app(&db, &[KEY]).await;
        let session = sign_in_http(&app, KEY).await.unwrap();
        let http = reqwest::Client::builder().redirect(redirect::Policy::none()).build().unwrap();
        let page = |path: &'static str| {
            let req = http.get(format!("{}{path}", app.url)).header("cookie", &session);
            async move { req.send().await.unwrap().text().await.unwrap() }
        };
        let html = page("/dashboard/suppressions").await;
        let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        let post = |path: &'static str, form: Vec<(&'static str, String)>| {
            let req = http.post(format!("{}{path}", app.url)).header("cookie", &session).form(&form);
            async move { req.send().await.unwrap() }
        };
        // A bad number is refused with a message; nothing is stored.
        let r = post("/dashboard/suppressions", vec![("csrf", csrf.clone()), ("channel", "sms".into()), ("recipient", "555-1234".into()), ("reason", String::new())]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(r.headers()["location"].to_str().unwrap().contains("error"), "{:?}", r.headers());
        let r = post("/dashboard/suppressions", vec![("csrf", csrf.clone()), ("channel", "sms".into()), ("recipient", "+14153234567".into()), ("reason", "asked in the shop".into())]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let html = page("/dashboard/suppressions").await;
        let list = html.split("id=\"suppression-list\"").nth(1).unwrap();
        assert!(list.contains("+14153234567") && list.contains("asked in the shop") && !list.contains("555-1234"), "{list}");
        // A message to them is not sent.
        let (s, m) = json_of(app.post("/api/messages").json(&json!({"channel": "sms", "recipient": "+14153234567", "body": "hi"})).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{m}");
        let done = app.wait_status(m["id"].as_i64().unwrap(), "failed").await;
        assert_eq!(done["error"]["code"], "suppressed", "{done}");
        assert_eq!(app.provider.calls().len(), 0);
        // Removed again.
        let r = post("/dashboard/suppressions/remove", vec![("csrf", csrf.clone()), ("channel", "sms".into()), ("recipient", "+14153234567".into())]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let html = page("/dashboard/suppressions").await;
        assert!(html.contains("Nobody is suppressed."));
        // Without the form's token, nothing changes.
        let r = post("/dashboard/suppressions", vec![("csrf", "wrong".into()), ("channel", "sms".into()), ("recipient", "+14153234568".into()), ("reason", String::new())]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(page("/dashboard/suppressions").await.contains("Nobody is suppressed."));

        // An alert rule added and removed on the Alerts page.
        let r = post("/dashboard/alerts", vec![("csrf", csrf.clone()), ("id", "sms-failing".into()), ("kind", "failure_ratio".into()), ("value", "0.2".into()), ("min_volume", "5".into()), ("window_minutes", "30".into()), ("channel", "sms".into()), ("provider", String::new())]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.headers());
        let (_, all) = json_of(app.get("/api/alerts").send().await.unwrap()).await;
        let added = all["rules"].as_array().unwrap().iter().find(|r| r["id"] == "sms-failing").cloned();
        assert_eq!(added.as_ref().map(|r| (r["channel"].clone(), r["window_minutes"].clone(), r["threshold"].clone())), Some((json!("sms"), json!(30), json!(0.2))), "{all}");
        let r = post("/dashboard/alerts/remove", vec![("csrf", csrf.clone()), ("id", "sms-failing".into())]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let (_, all) = json_of(app.get("/api/alerts").send().await.unwrap()).await;
        assert!(all["rules"].as_array().unwrap().iter().all(|r| r["id"] != "sms-failing"));
    }
}

every_backend! {
    async fn webhook_endpoints_are_managed_from_the_dashboard(db: TestDb) {
        let pos = FakePos::start().await;
        let app = spawn_app(&db, &[KEY]).await;
        let session = sign_in_http(&app, KEY).await.unwrap();
        let http = reqwest::Client::builder().redirect(redirect::Policy::none()).build().unwrap();
        let page = |path: String| {
            let req = http.get(format!("{}{path}", app.url)).header("cookie", &session);
            async move { req.send().await.unwrap().text().await.unwrap() }
        };
        let html = page("/dashboard/webhooks".into()).await;
        assert!(html.contains("No endpoints yet.") && html.contains("Every provider's circuit is closed."));
        let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        let post = |path: String, form: Vec<(&'static str, String)>| {
            let req = http.post(format!("{}{path}", app.url)).header("cookie", &session).form(&form);
            async move { req.send().await.unwrap() }
        };
        // Plain http to another machine is refused, with the reason.
        let r = post("/dashboard/webhooks".into(), vec![("csrf", csrf.clone()), ("url", "http://pos.example.com/hook".into()), ("events", "*".into()), ("description", String::new())]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let back = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(page(back).await.contains("https"));
        // Added: the secret is on this answer, once.
        let r = post("/dashboard/webhooks".into(), vec![("csrf", csrf.clone()), ("url", pos.url.clone()), ("events", "message.queued, message.sent".into()), ("description", "front desk".into())]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let html = r.text().await.unwrap();
        // As the page shows it (HTML-escaped), then as the user copies it.
        let shown = html.split("<pre>").nth(1).unwrap().split("</pre>").next().unwrap().to_owned();
        let secret = shown.replace("&#x2f;", "/").replace("&amp;", "&");
        assert!(secret.starts_with("whsec_"), "{secret}");
        let list = page("/dashboard/webhooks".into()).await;
        assert!(list.contains(&pos.url.replace('/', "&#x2f;")) && list.contains("front desk") && !list.contains(&shown));
        let id = db.store.endpoints().await.unwrap()[0].id;
        // Messages are told of, signed with that secret, and logged.
        let (_, m) = json_of(app.post("/api/messages").json(&json!({"channel": "sms", "recipient": "+14153234567", "body": "hi"})).send().await.unwrap()).await;
        wait_until("two webhooks", || async { pos.delivered().len() == 2 }).await;
        assert!(pos.delivered().iter().all(|h| h.signed_by(&secret) && h.message_id() == m["id"].as_i64().unwrap()));
        let detail = page(format!("/dashboard/webhooks/{id}")).await;
        let log = detail.split("id=\"attempts\"").nth(1).unwrap();
        assert!(log.contains("message.sent") && log.contains("200"), "{log}");
        // Disabled, then enabled again; a replay of an unknown event is refused.
        let r = post(format!("/dashboard/webhooks/{id}"), vec![("csrf", csrf.clone()), ("action", "disable".into())]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(!db.store.endpoint(id).await.unwrap().unwrap().enabled);
        let r = post(format!("/dashboard/webhooks/{id}"), vec![("csrf", csrf.clone()), ("action", "enable".into())]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(db.store.endpoint(id).await.unwrap().unwrap().enabled);
        let r = post(format!("/dashboard/webhooks/{id}"), vec![("csrf", csrf.clone()), ("action", "replay".into()), ("event_id", "evt_none".into())]).await;
        let back = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(page(back).await.contains("was ever sent"));
        let ev = pos.delivered()[0].id.clone();
        let r = post(format!("/dashboard/webhooks/{id}"), vec![("csrf", csrf.clone()), ("action", "replay".into()), ("event_id", ev.clone())]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        wait_until("the replay", || async { pos.delivered().len() == 3 }).await;
        // Rotated: the new secret is shown once; both sign for a day.
        let r = post(format!("/dashboard/webhooks/{id}"), vec![("csrf", csrf.clone()), ("action", "rotate".into())]).await;
        let html = r.text().await.unwrap();
        assert!(html.contains("New secret") && html.contains("whsec_"));
        // Without the form's token, nothing changes.
        let r = post(format!("/dashboard/webhooks/{id}"), vec![("csrf", "wrong".into()), ("action", "delete".into())]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = post(format!("/dashboard/webhooks/{id}"), vec![("csrf", csrf.clone()), ("action", "delete".into())]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(db.store.endpoints().await.unwrap().is_empty());
    }
}
