//! `herald doctor`: every check against loopback stand-ins, passing and
//! failing, with the fix in each failure and the exit status to match.

use serde_json::{json, Value};

use crate::support::*;

fn env_for(
    twilio: &FakeTwilio,
    sendgrid: &FakeSendgrid,
    smtp_port: u16,
    smtp_password: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("SMS_PROVIDER", "twilio".into()),
        ("WHATSAPP_PROVIDER", "twilio".into()),
        ("TWILIO_ACCOUNT_SID", twilio.account_sid.clone()),
        ("TWILIO_AUTH_TOKEN", twilio.auth_token.clone()),
        ("TWILIO_PHONE_NUMBER", "+15005550006".into()),
        ("TWILIO_WHATSAPP_NUMBER", "whatsapp:+14155238886".into()),
        ("TWILIO_API_URL", twilio.url.clone()),
        ("EMAIL_PROVIDER", "sendgrid,smtp".into()),
        ("SENDGRID_API_KEY", SENDGRID_KEY.into()),
        ("SENDGRID_API_URL", sendgrid.url.clone()),
        ("SMTP_HOST", "127.0.0.1".into()),
        ("SMTP_PORT", smtp_port.to_string()),
        ("SMTP_SECURE", "false".into()),
        ("SMTP_USER", "herald".into()),
        ("SMTP_PASSWORD", smtp_password.into()),
        ("EMAIL_FROM_ADDRESS", "loja@example.com".into()),
        ("EMAIL_FROM_NAME", "Loja Exemplo".into()),
    ]
}

/// Records of a well set-up sender domain (example.com, SendGrid).
const GOOD_DNS: [(&str, &str); 4] = [
    ("example.com", "v=spf1 include:sendgrid.net ~all"),
    ("example.com", "google-site-verification=abc123"),
    (
        "s1._domainkey.example.com",
        "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC1",
    ),
    (
        "_dmarc.example.com",
        "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com",
    ),
];

/// A UDP port on loopback where nothing listens: DNS questions to it fail
/// at once (and never leave the machine).
const NO_DNS: &str = "127.0.0.1:9";

async fn doctor(db: &TestDb, env: &[(&str, String)]) -> (bool, Value) {
    doctor_with(db, env, &["--dns-server", NO_DNS]).await
}

async fn doctor_with(db: &TestDb, env: &[(&str, String)], args: &[&str]) -> (bool, Value) {
    let mut all = vec!["doctor", "--json"];
    all.extend_from_slice(args);
    let o = run_herald(db, env, &all).await;
    let report: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("doctor --json printed JSON: {e}: {}{}", stdout(&o), stderr(&o)));
    (o.status.success(), report)
}

/// The checks named `name`, as (status, message, fix).
fn checks(report: &Value, name: &str) -> Vec<(String, String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == name)
        .map(|c| {
            (
                c["status"].as_str().unwrap().to_owned(),
                c["message"].as_str().unwrap().to_owned(),
                c["fix"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn status_of(report: &Value, name: &str) -> String {
    let found = checks(report, name);
    assert!(!found.is_empty(), "no {name} check in {report:#}");
    found[0].0.clone()
}

every_backend! {
    async fn doctor_passes_a_healthy_setup_and_names_each_problem_with_its_fix(db: TestDb) {
        let (twilio, sendgrid, smtp) = (FakeTwilio::start().await, FakeSendgrid::start().await, SmtpServer::start());
        // Herald's public address, as a proxy would answer it.
        let public = serve(axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }))).await;
        let mut env = env_for(&twilio, &sendgrid, smtp.port, "secret");
        env.push(("PUBLIC_URL", public));

        // Everything in order.
        let dns = DnsServer::start(&GOOD_DNS).await;
        let dns_addr = dns.addr.to_string();
        let (ok, report) = doctor_with(&db, &env, &["--dns-server", &dns_addr]).await;
        for name in [
            "configuration", "database", "database.schema", "database.clock", "twilio.credentials",
            "twilio.account", "twilio.balance", "twilio.sender.sms", "sendgrid.key", "sendgrid.sender", "smtp",
            "email.spf", "email.dkim", "email.dmarc",
        ] {
            assert_eq!(status_of(&report, name), "ok", "{name}: {report:#}");
        }
        assert!(ok, "{report:#}");
        assert_eq!(report["errors"], 0);
        assert_eq!(report["warnings"], 0, "{report:#}");
        // The sandbox WhatsApp number is one of the fake account's numbers.
        assert_eq!(status_of(&report, "twilio.sender.whatsapp"), "ok");
        // The human form says the same, one line per check.
        let text = run_herald(&db, &env, &["doctor", "--dns-server", &dns_addr]).await;
        assert!(text.status.success());
        assert!(stdout(&text).contains("ok       twilio.credentials: accepted"), "{}", stdout(&text));
        assert!(stdout(&text).contains("0 error(s)"), "{}", stdout(&text));

        // Now break each thing.
        twilio.state.set_account("balance", json!("0.42"));
        twilio.state.set_account("numbers", json!({"+14155238886": true, "+15005550009": false}));
        twilio.state.set_account("account_type", json!("Trial"));
        sendgrid.state.set_account("scopes", json!(["user.profile.read"]));
        sendgrid.state.set_account("verified", json!(["other@example.com"]));
        let mut broken = env_for(&twilio, &sendgrid, smtp.port, "wrong");
        broken.push(("PUBLIC_URL", "http://127.0.0.1:9/".into()));
        let (ok, report) = doctor(&db, &broken).await;
        assert!(!ok, "errors mean a non-zero exit");
        let sender = &checks(&report, "twilio.sender.sms")[0];
        assert_eq!(sender.0, "error");
        assert!(sender.1.contains("+15005550006 is not a number of account"), "{sender:?}");
        assert!(sender.2.contains("TWILIO_PHONE_NUMBER"), "{sender:?}");
        let balance = &checks(&report, "twilio.balance")[0];
        assert_eq!((balance.0.as_str(), balance.1.as_str()), ("warning", "0.42 USD left"));
        assert!(checks(&report, "twilio.account").iter().any(|c| c.0 == "warning" && c.1.contains("trial")));
        let key = &checks(&report, "sendgrid.key")[0];
        assert_eq!(key.0, "error");
        assert!(key.1.contains("mail.send") && key.2.contains("Mail Send"), "{key:?}");
        let from = &checks(&report, "sendgrid.sender")[0];
        assert_eq!(from.0, "warning");
        assert!(from.1.contains("loja@example.com"), "{from:?}");
        let mail = &checks(&report, "smtp")[0];
        assert_eq!(mail.0, "error", "{mail:?}");
        assert!(mail.2.contains("SMTP_PASSWORD"), "{mail:?}");
        assert_eq!(status_of(&report, "public_url"), "warning");
        assert!(report["errors"].as_u64().unwrap() >= 3);

        // A revoked token, and a suspended account.
        let mut revoked = env.clone();
        revoked.retain(|(k, _)| *k != "TWILIO_AUTH_TOKEN");
        revoked.push(("TWILIO_AUTH_TOKEN", "0000000000000000000000000000dead".into()));
        let (_, report) = doctor(&db, &revoked).await;
        let creds = &checks(&report, "twilio.credentials")[0];
        assert_eq!(creds.0, "error");
        assert!(creds.2.contains("TWILIO_AUTH_TOKEN"), "{creds:?}");
        assert!(checks(&report, "twilio.balance").is_empty(), "nothing more is asked with refused credentials");
        twilio.state.set_account("account_status", json!("suspended"));
        let (_, report) = doctor(&db, &env).await;
        assert!(checks(&report, "twilio.account").iter().any(|c| c.0 == "error" && c.1.contains("suspended")));
        // A SMTP server that is down.
        drop(smtp);
        let (_, report) = doctor(&db, &env).await;
        assert_eq!(status_of(&report, "smtp"), "error");
        assert_eq!(twilio.state.violations().len(), 0, "{:?}", twilio.state.violations());
    }

    async fn doctor_reports_configuration_and_database_problems(db: TestDb) {
        // Bad settings: each named, nothing else attempted.
        let (ok, report) = doctor(&db, &[("SMS_PROVIDER", "pigeon".into()), ("BATCH_SIZE", "lots".into())]).await;
        assert!(!ok);
        let config = checks(&report, "configuration");
        assert_eq!(config.len(), 2, "{report:#}");
        assert!(config.iter().all(|c| c.0 == "error"));
        assert!(config.iter().any(|c| c.1.contains("SMS_PROVIDER")) && config.iter().any(|c| c.1.contains("BATCH_SIZE")));

        // The log provider is a warning, not an error.
        let (ok, report) = doctor(&db, &[]).await;
        assert!(ok, "{report:#}");
        assert_eq!(status_of(&report, "providers.sms"), "warning");

        // A POS table not adopted yet.
        let pos = TestDb::empty(db.backend).await;
        pos.store
            .execute_raw("CREATE TABLE notification_messages (id INTEGER PRIMARY KEY, channel TEXT, recipient TEXT, body TEXT, status VARCHAR(20))")
            .await
            .unwrap();
        let (ok, report) = doctor(&pos, &[]).await;
        assert!(!ok);
        let schema = &checks(&report, "database.schema")[0];
        assert_eq!(schema.0, "error");
        assert!(schema.2.contains("herald migrate"), "{schema:?}");

        // An unreachable database.
        let mut unreachable = herald(&db, db.dir.path());
        let url = match db.backend {
            Backend::Sqlite => "sqlite:///nonexistent-dir/x/herald.db".to_owned(),
            Backend::Postgres => "postgres://postgres@127.0.0.1:9/test".to_owned(),
            Backend::Mariadb => "mysql://root@127.0.0.1:9/test".to_owned(),
        };
        unreachable.env("DATABASE_URL", &url).args(["doctor", "--json"]);
        let o = tokio::process::Command::from(unreachable).output().await.unwrap();
        assert!(!o.status.success());
        let report: Value = serde_json::from_slice(&o.stdout).unwrap();
        let database = &checks(&report, "database")[0];
        assert_eq!(database.0, "error");
        assert!(database.2.contains("DATABASE_URL"), "{database:?}");
    }
}

/// The sender domain's DNS: SPF, DKIM and DMARC, each right and wrong in
/// the ways receivers care about, read from a loopback DNS server.
#[tokio::test]
async fn doctor_reads_the_sender_domains_spf_dkim_and_dmarc() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (twilio, sendgrid, smtp) = (
        FakeTwilio::start().await,
        FakeSendgrid::start().await,
        SmtpServer::start(),
    );
    let env = env_for(&twilio, &sendgrid, smtp.port, "secret");
    let dns = DnsServer::start(&GOOD_DNS).await;
    let addr = dns.addr.to_string();
    let run = |args: Vec<String>| {
        let (db, env) = (&db, &env);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            doctor_with(db, env, &args).await.1
        }
    };
    let at = || vec!["--dns-server".to_owned(), addr.clone()];
    let check = |report: &Value, name: &str| {
        let c = checks(report, name);
        assert_eq!(c.len(), 1, "{name}: {report:#}");
        c[0].clone()
    };

    let report = run(at()).await;
    assert_eq!(
        check(&report, "email.spf").1,
        "example.com: v=spf1 include:sendgrid.net ~all"
    );
    assert_eq!(
        check(&report, "email.dkim").1,
        "a DKIM key at s1._domainkey.example.com"
    );
    assert_eq!(
        check(&report, "email.dmarc").1,
        "_dmarc.example.com: policy p=quarantine"
    );

    // Nothing published: three warnings, each with the record to add.
    dns.set(&[("example.com", "google-site-verification=abc123")]);
    let report = run(at()).await;
    let spf = check(&report, "email.spf");
    assert_eq!(spf.0, "warning");
    assert!(spf.2.contains("v=spf1 include:sendgrid.net ~all"), "{spf:?}");
    let dkim = check(&report, "email.dkim");
    assert_eq!(dkim.0, "warning");
    assert!(dkim.1.contains("s1, s2, default"), "{dkim:?}");
    assert!(
        dkim.2.contains("Sender Authentication") && dkim.2.contains("--dkim-selector"),
        "{dkim:?}"
    );
    let dmarc = check(&report, "email.dmarc");
    assert_eq!(dmarc.0, "warning");
    assert!(dmarc.2.contains("_dmarc.example.com: v=DMARC1; p=none"), "{dmarc:?}");
    assert_eq!(report["errors"], 0, "missing records are warnings");

    // Wrong records.
    for (records, name, level, says) in [
        (
            vec![
                ("example.com", "v=spf1 -all"),
                ("example.com", "v=spf1 include:sendgrid.net -all"),
            ],
            "email.spf",
            "error",
            "2 SPF records",
        ),
        (
            vec![("example.com", "v=spf1 mx ~all")],
            "email.spf",
            "warning",
            "does not include sendgrid.net",
        ),
        (
            vec![("example.com", "v=spf1 include:sendgrid.net +all")],
            "email.spf",
            "warning",
            "any server",
        ),
        (
            vec![("s1._domainkey.example.com", "v=DKIM1; k=rsa; p=")],
            "email.dkim",
            "error",
            "revoked",
        ),
        (
            vec![("_dmarc.example.com", "v=DMARC1; rua=mailto:x@example.com")],
            "email.dmarc",
            "error",
            "no valid p= policy",
        ),
        (
            vec![
                ("_dmarc.example.com", "v=DMARC1; p=none"),
                ("_dmarc.example.com", "v=DMARC1; p=reject"),
            ],
            "email.dmarc",
            "error",
            "2 DMARC records",
        ),
    ] {
        dns.set(&records);
        let report = run(at()).await;
        let c = check(&report, name);
        assert_eq!(c.0, level, "{records:?}: {c:?}");
        assert!(c.1.contains(says), "{records:?}: {c:?}");
        assert!(!c.2.is_empty(), "a fix: {c:?}");
    }

    // A selector of its own, named on the command line.
    dns.set(&[("pos2026._domainkey.example.com", "v=DKIM1; p=MIGfMA0GCSqGSIb3")]);
    assert_eq!(check(&run(at()).await, "email.dkim").0, "warning");
    let mut args = at();
    args.extend(["--dkim-selector".to_owned(), "pos2026".to_owned()]);
    assert_eq!(
        check(&run(args).await, "email.dkim").1,
        "a DKIM key at pos2026._domainkey.example.com"
    );

    // An SPF record too big for one UDP answer is read over TCP.
    let long = format!("v=spf1 {}include:sendgrid.net ~all", "ip4:192.0.2.1 ".repeat(110));
    let mut big = GOOD_DNS.to_vec();
    big[0] = ("example.com", &long);
    dns.set(&big);
    dns.asked.lock().unwrap().clear();
    let report = run(at()).await;
    assert_eq!(check(&report, "email.spf").0, "ok", "{report:#}");
    assert!(dns.asked.lock().unwrap().contains(&("tcp", "example.com".to_owned())));

    // No DNS server answering: a warning, the other checks still run.
    let report = doctor(&db, &env).await.1;
    let c = check(&report, "email.dns");
    assert_eq!(c.0, "warning");
    assert!(c.2.contains("--dns-server"), "{c:?}");
    assert!(checks(&report, "email.spf").is_empty());
    assert_eq!(check(&report, "smtp").0, "ok");
    // A bad address is an error, named.
    let (ok, report) = doctor_with(&db, &env, &["--dns-server", "not-an-ip"]).await;
    assert!(!ok);
    assert!(check(&report, "email.dns").1.contains("not-an-ip"));
}
