//! The `herald` binary as a user runs it.

use std::process::Command;

use crate::support::*;

async fn total(db: &TestDb) -> i64 {
    db.store.counts().await.unwrap().iter().map(|c| c.count).sum()
}

every_backend! {
    async fn send_process_status_retry_cancel(db: TestDb) {
        let dir = db.dir.path();
        let outbox = dir.join("outbox.jsonl");
        let id: i64 = ok(run(herald(&db, dir).args(["send", "--channel", "sms", "--to", "+1 (415) 323-4567", "--body", "Your order is ready"])))
            .trim().parse().expect("send prints the id");
        let m = db.get(id).await;
        assert_eq!((m.channel.as_str(), m.recipient.as_str(), m.status.as_str()), ("sms", "+14153234567", "pending"));

        let email: i64 = ok(run(herald(&db, dir).args([
            "send", "--channel", "email", "--to", "ana@example.com", "--subject", "Recibo nº 42",
            "--body", "Obrigado!", "--html", "<p>Obrigado!</p>", "--metadata", r#"{"order_id": 42}"#,
        ]))).trim().parse().unwrap();
        let m = db.get(email).await;
        assert_eq!(m.html_body.as_deref(), Some("<p>Obrigado!</p>"));
        assert_eq!(m.metadata, Some(serde_json::json!({"order_id": 42})));

        let wa: i64 = ok(run(herald(&db, dir).args(["send", "--channel", "whatsapp", "--to", "+14157654321", "--body", "Olá"])))
            .trim().parse().unwrap();
        assert_eq!(db.get(wa).await.recipient, "whatsapp:+14157654321");

        let later: i64 = ok(run(herald(&db, dir).args([
            "send", "--channel", "sms", "--to", "+14153234567", "--body", "later", "--send-at", "2099-01-01T09:00:00+01:00",
        ]))).trim().parse().unwrap();
        assert_eq!(db.get(later).await.send_at, Some(chrono::DateTime::parse_from_rfc3339("2099-01-01T08:00:00Z").unwrap().into()));

        let o = run(herald(&db, dir).env("LOG_OUTBOX", &outbox).arg("process"));
        // Not a terminal: no status line on stderr, only the summary on stdout.
        assert!(!stderr(&o).contains("\x1b[2K"), "{}", stderr(&o));
        let out = ok(o);
        assert!(out.starts_with("sent 3, failed 0, retrying later 0 (3 in "), "{out}");
        assert!(out.trim_end().ends_with("msg/s)"), "{out}");
        for i in [id, email, wa] {
            assert_eq!(db.get(i).await.status, "sent");
        }
        assert_eq!(db.get(later).await.status, "pending", "scheduled for later");
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&outbox).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        let e = lines.iter().find(|l| l["id"] == email).unwrap();
        assert_eq!(e["subject"], "Recibo nº 42");
        assert_eq!(e["html"], "<p>Obrigado!</p>");
        assert_eq!(e["metadata"]["order_id"], 42);

        let table = ok(run(herald(&db, dir).arg("status")));
        let header = table.lines().next().unwrap();
        for col in ["ID", "CHANNEL", "RECIPIENT", "STATUS", "SENT_AT", "CREATED_AT", "ERROR"] {
            assert!(header.contains(col), "{header}");
        }
        assert!(table.contains("+14153234567") && table.contains("ana@example.com"));
        assert!(table.contains("sent: 3") && table.contains("pending: 1"), "{table}");
        let sms_only = ok(run(herald(&db, dir).args(["status", "--status", "sent", "--channel", "sms", "--limit", "5"])));
        assert_eq!(sms_only.lines().filter(|l| l.contains(" sms ")).count(), 1, "{sms_only}");
        assert!(!sms_only.contains("ana@example.com"));

        // Cancel: only pending messages.
        let o = run(herald(&db, dir).args(["cancel", &id.to_string()]));
        assert!(!o.status.success());
        assert!(stderr(&o).contains("only pending"), "{}", stderr(&o));
        ok(run(herald(&db, dir).args(["cancel", &later.to_string()])));
        assert_eq!(db.get(later).await.status, "cancelled");

        // Retry: only failed messages; --failed takes them all.
        let o = run(herald(&db, dir).args(["retry", &id.to_string()]));
        assert!(!o.status.success());
        assert!(stderr(&o).contains("only failed"), "{}", stderr(&o));
        db.store.execute_raw(&format!("UPDATE notification_messages SET status = 'failed' WHERE id IN ({id}, {wa})")).await.unwrap();
        let out = ok(run(herald(&db, dir).args(["retry", "--failed"])));
        assert!(out.contains("2 failed message(s) queued again"), "{out}");
        assert_eq!(db.get(wa).await.status, "pending");
        ok(run(herald(&db, dir).arg("process")));
        assert_eq!(db.get(wa).await.status, "sent");
        // --parked: messages waiting for a retry delay are due now.
        db.store.execute_raw(&format!("INSERT INTO notification_messages (channel, recipient, body, next_attempt_at) VALUES ('sms', '+14153234567', 'p', {})", db.ts("9999-12-31T00:00:00.000Z"))).await.unwrap();
        let parked = db.max_id().await;
        let out = ok(run(herald(&db, dir).args(["retry", "--parked"])));
        assert!(out.contains("1 waiting message(s) due now"), "{out}");
        ok(run(herald(&db, dir).arg("process")));
        assert_eq!(db.get(parked).await.status, "sent");
    }

    async fn national_numbers_are_read_in_the_default_country(db: TestDb) {
        let dir = db.dir.path();
        // Through the CLI: stored in E.164.
        for (country, national, e164) in [
            ("BR", "(11) 91234-5678", "+5511912345678"),
            ("US", "(415) 555-2671", "+14155552671"),
            ("PT", "912 345 678", "+351912345678"),
            ("DE", "030 1234567", "+49301234567"),
        ] {
            let out = ok(run(herald(&db, dir).env("DEFAULT_COUNTRY", country).args(["send", "--channel", "sms", "--to", national, "--body", "x"])));
            let id: i64 = out.trim().parse().unwrap();
            assert_eq!(db.get(id).await.recipient, e164, "{country} {national}");
        }
        // Not valid in the country (a US number without its area code): refused, naming why.
        let o = run(herald(&db, dir).env("DEFAULT_COUNTRY", "US").args(["send", "--channel", "sms", "--to", "555-1234", "--body", "x"]));
        assert!(!o.status.success());
        assert!(stderr(&o).contains("not a valid number in US"), "{}", stderr(&o));
        // Without DEFAULT_COUNTRY a national number is refused, and the error says how to fix it.
        let o = run(herald(&db, dir).args(["send", "--channel", "sms", "--to", "(11) 91234-5678", "--body", "x"]));
        assert!(stderr(&o).contains("DEFAULT_COUNTRY"), "{}", stderr(&o));
        // A POS that stores local numbers: its rows are sent to the E.164 number.
        let row = db.insert_sql("whatsapp", "(21) 98765-4321", "Olá").await;
        let outbox = dir.join("outbox.jsonl");
        ok(run(herald(&db, dir).env("DEFAULT_COUNTRY", "BR").env("LOG_OUTBOX", &outbox).arg("process")));
        assert_eq!(db.get(row).await.status, "sent");
        let line = std::fs::read_to_string(&outbox).unwrap();
        assert!(line.contains("whatsapp:+5521987654321"), "{line}");
        // A bad DEFAULT_COUNTRY is a configuration error.
        let o = run(herald(&db, dir).env("DEFAULT_COUNTRY", "Brazil").arg("status"));
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains("DEFAULT_COUNTRY"), "{}", stderr(&o));
    }

    async fn status_into_a_closed_pipe_ends_quietly(db: TestDb) {
        db.insert_many(2000).await;
        let mut child = herald(&db, db.dir.path())
            .args(["status", "--limit", "2000"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // `herald status | head -1`: the reader goes away after a line.
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 16];
        std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.status.success(), "{err}");
    }

    async fn bad_input_is_refused_and_nothing_is_stored(db: TestDb) {
        let dir = db.dir.path();
        let cases: &[(&[&str], &str)] = &[
            (&["--channel", "sms", "--to", "5551234567", "--body", "x"], "--to"),
            (&["--channel", "sms", "--to", "+1555abc", "--body", "x"], "--to"),
            (&["--channel", "pigeon", "--to", "+14153234567", "--body", "x"], "--channel"),
            (&["--channel", "email", "--to", "ana@example", "--subject", "s", "--body", "x"], "--to"),
            (&["--channel", "email", "--to", "ana@example.com", "--body", "x"], "--subject"),
            (&["--channel", "email", "--to", "ana@example.com", "--subject", "s"], "--body"),
            (&["--channel", "sms", "--to", "+14153234567"], "--body"),
            (&["--channel", "sms", "--to", "+14153234567", "--body", "x", "--html", "<b>x</b>"], "--html"),
            (&["--channel", "sms", "--to", "+14153234567", "--body", "x", "--send-at", "tomorrow"], "--send-at"),
            (&["--channel", "sms", "--to", "+14153234567", "--body", "x", "--metadata", "{oops"], "--metadata"),
            (&["--channel", "sms", "--to", "+14153234567", "--body", "x", "--metadata", "[1,2]"], "--metadata"),
        ];
        let long = "x".repeat(1601);
        let long_case: [&str; 6] = ["--channel", "sms", "--to", "+14153234567", "--body", &long];
        for (args, flag) in cases.iter().copied().chain(std::iter::once((&long_case[..], "--body"))) {
            let o = run(herald(&db, dir).arg("send").args(args));
            assert!(!o.status.success(), "{args:?} was accepted");
            let err = stderr(&o);
            let lines: Vec<_> = err.lines().collect();
            assert_eq!(lines.len(), 1, "one line expected for {args:?}: {err}");
            assert!(lines[0].starts_with("error: ") && lines[0].contains(flag), "{args:?}: {err}");
            assert!(stdout(&o).is_empty());
        }
        assert_eq!(total(&db).await, 0, "nothing was stored");

        let o = run(herald(&db, dir).arg("status").args(["--status", "lost"]));
        assert!(!o.status.success());
        assert!(stderr(&o).contains("--status"), "{}", stderr(&o));
    }
}

#[test]
fn bad_configuration_names_each_variable() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(herald_bin())
        .env_clear()
        .env("BATCH_SIZE", "lots")
        .env("MAX_RETRIES", "-2")
        .env("SMS_PROVIDER", "carrier-pigeon")
        .current_dir(dir.path())
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    for name in ["BATCH_SIZE", "MAX_RETRIES", "SMS_PROVIDER"] {
        assert!(err.contains(name), "{name} not named: {err}");
    }
    assert!(
        !dir.path().join("herald.db").exists(),
        "nothing created on bad configuration"
    );
}

/// The integration guide's `backend/.env`, verbatim.
const GUIDE_ENV: &str = r#"# SMS Provider: 'twilio' | 'custom'
SMS_PROVIDER=twilio

# WhatsApp Provider: 'twilio' | 'custom'
WHATSAPP_PROVIDER=twilio

# Email Provider: 'sendgrid' | 'nodemailer' | 'custom'
EMAIL_PROVIDER=sendgrid

# Twilio Configuration (for SMS and WhatsApp)
TWILIO_ACCOUNT_SID=your_twilio_account_sid
TWILIO_AUTH_TOKEN=your_twilio_auth_token
TWILIO_PHONE_NUMBER=+1234567890
TWILIO_WHATSAPP_NUMBER=whatsapp:+1234567890

# Email Configuration
EMAIL_FROM_ADDRESS=noreply@yourcompany.com
EMAIL_FROM_NAME=Your Company Name

# SendGrid Configuration (for email)
SENDGRID_API_KEY=your_sendgrid_api_key

# OR SMTP Configuration (alternative to SendGrid)
SMTP_HOST=smtp.gmail.com
SMTP_PORT=587
SMTP_USER=your_email@gmail.com
SMTP_PASSWORD=your_app_password
SMTP_SECURE=false
"#;

#[test]
fn the_guides_env_file_is_read_as_node_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), GUIDE_ENV).unwrap();
    let o = Command::new(herald_bin())
        .env_clear()
        .current_dir(dir.path())
        .arg("status")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    // The file parses (no "error parsing line"); what is wrong is the
    // placeholder values, each named.
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!err.contains("parsing"), "{err}");
    assert!(
        err.contains("TWILIO_ACCOUNT_SID must be AC followed by 32 hexadecimal digits"),
        "{err}"
    );
    assert!(err.contains("SENDGRID_API_KEY"), "{err}");
    // With real values in the same file (as a shop would have them), it runs;
    // `EMAIL_FROM_NAME=Your Company Name` is one value, spaces and all.
    let real = GUIDE_ENV
        .replace("your_twilio_account_sid", "AC0123456789abcdef0123456789abcdef")
        .replace("your_twilio_auth_token", "0123456789abcdef0123456789abcdef")
        .replace("+1234567890", "+14155238886")
        .replace("your_sendgrid_api_key", "SG.key.0123456789");
    std::fs::write(
        dir.path().join(".env"),
        format!("export {real}\nDEFAULT_COUNTRY=BR # comment\n"),
    )
    .unwrap();
    let o = Command::new(herald_bin())
        .env_clear()
        .current_dir(dir.path())
        .args(["send", "--channel", "sms", "--to", "(11) 91234-5678", "--body", "hi"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_shared_env_file_keeps_the_pos_port_for_the_pos() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The POS's Express server owns PORT; Herald takes HERALD_PORT.
    std::fs::write(dir.path().join(".env"), format!("PORT=1\nHERALD_PORT={port}\n")).unwrap();
    let mut child = Command::new(herald_bin())
        .env_clear()
        .env("LOG_LEVEL", "warn")
        .current_dir(dir.path())
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until_blocking(
        "serve to listen on HERALD_PORT",
        std::time::Duration::from_secs(20),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    sigterm(&child);
    assert!(wait_exit(&mut child, std::time::Duration::from_secs(20)).success());
}

#[test]
fn zero_configuration_uses_herald_db_and_a_dotenv_file() {
    let dir = tempfile::tempdir().unwrap();
    let run_in = |args: &[&str]| {
        Command::new(herald_bin())
            .env_clear()
            .env("LOG_LEVEL", "warn")
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let o = run_in(&["send", "--channel", "sms", "--to", "+14153234567", "--body", "hi"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.path().join("herald.db").exists(), "default database is ./herald.db");
    let o = run_in(&["process"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("sent 1"));

    // .env in the working directory is read.
    std::fs::write(
        dir.path().join(".env"),
        "DATABASE_URL=sqlite://other.db\nBATCH_SIZE=7\n",
    )
    .unwrap();
    let o = run_in(&["migrate"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.path().join("other.db").exists());
    std::fs::write(dir.path().join(".env"), "BATCH_SIZE=0\n").unwrap();
    let o = run_in(&["migrate"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("BATCH_SIZE"));
}

#[test]
fn serve_refuses_a_public_host_without_api_keys() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(herald_bin())
        .env_clear()
        .env("HOST", "0.0.0.0")
        .env("PORT", "0")
        .current_dir(dir.path())
        .arg("serve")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("API_KEYS") && err.contains("openssl rand"), "{err}");
}

every_backend! {
    async fn serve_answers_and_stops_cleanly_on_sigterm(db: TestDb) {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut child = herald(&db, db.dir.path())
            .env("PORT", port.to_string())
            .env("API_KEYS", "serve-test-key-0123456789")
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        wait_until("serve to start", || async { client.get(format!("{base}/healthz")).send().await.is_ok() }).await;
        let r = client
            .post(format!("{base}/api/messages"))
            .bearer_auth("serve-test-key-0123456789")
            .json(&serde_json::json!({"channel": "sms", "recipient": "+14153234567", "body": "hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
        let id = r.json::<serde_json::Value>().await.unwrap()["id"].as_i64().unwrap();
        // The built-in processor (log provider) sends it.
        wait_until("serve to send the message", || async { db.get(id).await.status == "sent" }).await;
        sigterm(&child);
        let status = wait_exit(&mut child, std::time::Duration::from_secs(20));
        assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
    }
}
