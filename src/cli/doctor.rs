//! `herald doctor [--json]`: the integration guide's troubleshooting list
//! as a command. Checks the configuration, the database (reachable,
//! migrated, the table adopted, its clock), each configured provider live
//! (credentials, account, sender), the public URL, and the email sender
//! domain's SPF, DKIM and DMARC records; prints ok / warning / error with
//! the fix in one line. Exit status 1 when any check is an error.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::Value;

use herald::config::{Config, ConfigError, ProviderChoice};

#[derive(clap::Args)]
pub(crate) struct DoctorArgs {
    /// Print the checks as JSON (for scripts and monitoring).
    #[arg(long)]
    json: bool,
    /// The DNS server asked for the sender domain's SPF, DKIM and DMARC
    /// records (IP or IP:port; default: the first nameserver of
    /// /etc/resolv.conf)
    #[arg(long, value_name = "ADDR")]
    dns_server: Option<String>,
    /// A DKIM selector to look for (repeatable; default: s1, s2 (SendGrid),
    /// default, google, selector1, selector2, k1, mail, dkim)
    #[arg(long = "dkim-selector", value_name = "NAME")]
    dkim_selectors: Vec<String>,
}

/// DKIM selectors tried when none is given: SendGrid's, then the usual ones.
const DKIM_SELECTORS: [&str; 9] = [
    "s1",
    "s2",
    "default",
    "google",
    "selector1",
    "selector2",
    "k1",
    "mail",
    "dkim",
];
/// How long each DNS question may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Ok,
    Warning,
    Error,
}

#[derive(Debug, Serialize)]
struct Check {
    check: String,
    status: Level,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn ok(&mut self, check: &str, message: impl Into<String>) {
        self.push(check, Level::Ok, message.into(), None);
    }
    fn warn(&mut self, check: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Level::Warning, message.into(), Some(fix.into()));
    }
    fn error(&mut self, check: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Level::Error, message.into(), Some(fix.into()));
    }
    fn push(&mut self, check: &str, status: Level, message: String, fix: Option<String>) {
        self.checks.push(Check {
            check: check.to_owned(),
            status,
            message,
            fix,
        });
    }
    fn count(&self, level: Level) -> usize {
        self.checks.iter().filter(|c| c.status == level).count()
    }
}

/// Run every check; the exit status says whether any is an error.
pub(crate) async fn run(config: Result<Config, ConfigError>, args: DoctorArgs) -> std::process::ExitCode {
    let mut r = Report::default();
    match config {
        Err(e) => {
            for line in &e.0 {
                r.error(
                    "configuration",
                    line.clone(),
                    "set the variable as the message says (see the README's Configuration table)",
                );
            }
        }
        Ok(config) => {
            configuration(&config, &mut r);
            database(&config, &mut r).await;
            providers(&config, &mut r).await;
            public_url(&config, &mut r).await;
            email_dns(&config, &args, &mut r).await;
        }
    }
    let (errors, warnings) = (r.count(Level::Error), r.count(Level::Warning));
    if args.json {
        let out = serde_json::json!({"checks": r.checks, "errors": errors, "warnings": warnings});
        say!("{}", serde_json::to_string_pretty(&out).expect("report serializes"));
    } else {
        for c in &r.checks {
            let tag = match c.status {
                Level::Ok => "ok     ",
                Level::Warning => "warning",
                Level::Error => "error  ",
            };
            say!("{tag}  {}: {}", c.check, c.message);
            if let Some(fix) = &c.fix {
                say!("         fix: {fix}");
            }
        }
        say!("{} check(s): {errors} error(s), {warnings} warning(s)", r.checks.len());
    }
    if errors > 0 {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

fn chain(c: &[ProviderChoice]) -> String {
    c.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")
}

fn configuration(config: &Config, r: &mut Report) {
    let p = &config.providers;
    r.ok(
        "configuration",
        format!(
            "every variable is valid (DATABASE_URL {}; SMS_PROVIDER={}, WHATSAPP_PROVIDER={}, EMAIL_PROVIDER={})",
            config.database_url.redacted(),
            chain(&p.sms),
            chain(&p.whatsapp),
            chain(&p.email)
        ),
    );
    for (channel, providers) in [("sms", &p.sms), ("whatsapp", &p.whatsapp), ("email", &p.email)] {
        if providers.contains(&ProviderChoice::Log) {
            r.warn(
                &format!("providers.{channel}"),
                format!("{channel} uses the log provider: messages are recorded, not sent"),
                format!(
                    "set {}_PROVIDER (see the README's Providers section)",
                    channel.to_uppercase()
                ),
            );
        }
    }
    if config.twilio_webhook_token.is_some() && config.public_url.is_none() {
        r.warn(
            "configuration.public_url",
            "TWILIO_AUTH_TOKEN is set but PUBLIC_URL is not: Twilio status callbacks (delivery receipts) are off",
            "set PUBLIC_URL to the https address Twilio can reach Herald at",
        );
    }
}

async fn database(config: &Config, r: &mut Report) {
    let store = match herald::app::connect(config).await {
        Ok(s) => s,
        Err(e) => {
            r.error(
                "database",
                format!("cannot connect: {}", super::one_line(&e)),
                "check DATABASE_URL (host, port, user, password, database) and that the server is running",
            );
            return;
        }
    };
    r.ok(
        "database",
        format!(
            "reachable ({}, {})",
            store.backend_name(),
            config.database_url.redacted()
        ),
    );
    match store.plan_migration(&config.column_map).await {
        Err(e) => r.error(
            "database.schema",
            format!("cannot inspect the tables: {e}"),
            "check the user's rights on the database",
        ),
        Ok(plan) if !plan.problems.is_empty() => r.error(
            "database.schema",
            format!("notification_messages cannot be adopted: {}", plan.problems.join("; ")),
            "run `herald migrate --dry-run` for the whole plan and the fix for each problem",
        ),
        Ok(plan) if plan.adopting => r.error(
            "database.schema",
            "notification_messages was created by your POS and is not adopted yet: Herald will not start on it",
            "run `herald migrate --dry-run`, read the changes, then `herald migrate`",
        ),
        Ok(plan) if !plan.migrations.is_empty() => r.error(
            "database.schema",
            format!("{} of Herald's migration(s) are not applied", plan.migrations.len()),
            "run `herald migrate` (it is safe while workers run)",
        ),
        Ok(_) => r.ok("database.schema", "migrated; notification_messages is ready"),
    }
    if store.backend_name() == "sqlite" {
        r.ok("database.clock", "SQLite runs on this machine: one clock");
    } else {
        let before = chrono::Utc::now();
        match store.database_clock().await {
            Err(e) => r.warn(
                "database.clock",
                format!("could not read the database's clock: {e}"),
                "check the connection",
            ),
            Ok(theirs) => {
                let after = chrono::Utc::now();
                let mid = before + (after - before) / 2;
                let skew = (theirs - mid).num_milliseconds().abs() as f64 / 1000.0;
                let slack = (after - before).num_milliseconds() as f64 / 2000.0;
                let msg = format!("the database's clock is {skew:.1} s from this machine's");
                let fix = "keep every machine's clock synchronised (NTP: `timedatectl set-ntp true`): leases and schedules compare times across machines";
                if skew > 30.0 + slack {
                    r.error("database.clock", msg, fix);
                } else if skew > 2.0 + slack {
                    r.warn("database.clock", msg, fix);
                } else {
                    r.ok("database.clock", msg);
                }
            }
        }
    }
    store.close().await;
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// GET `url` as JSON: `Ok((status, body))`, or the transport error.
async fn get_json(req: reqwest::RequestBuilder) -> Result<(u16, Value), String> {
    let resp = req.send().await.map_err(|e| e.without_url().to_string())?;
    let status = resp.status().as_u16();
    // Bounded: an account's answer is small.
    let bytes = resp.bytes().await.map_err(|e| e.without_url().to_string())?;
    let body = if bytes.len() > 1 << 20 {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    Ok((status, body))
}

async fn providers(config: &Config, r: &mut Report) {
    let p = &config.providers;
    let all: Vec<ProviderChoice> = [&p.sms, &p.whatsapp, &p.email].into_iter().flatten().copied().collect();
    if all.contains(&ProviderChoice::Twilio) {
        if let Some(t) = &config.twilio {
            twilio(t, r).await;
        }
    }
    if all.contains(&ProviderChoice::Sendgrid) {
        if let Some(s) = &config.sendgrid {
            sendgrid(s, config, r).await;
        }
    }
    if all.contains(&ProviderChoice::Smtp) {
        if let (Some(s), Some(from)) = (&config.smtp, &config.email_from) {
            match herald::providers::Smtp::new(s, from, Duration::from_secs(10), 1) {
                Err(e) => r.error("smtp", e.to_string(), "check SMTP_HOST and EMAIL_FROM_ADDRESS"),
                Ok(smtp) => match smtp.check().await {
                    Ok(()) => r.ok(
                        "smtp",
                        format!(
                            "{}:{} accepted the connection{}{}",
                            s.host,
                            s.port,
                            if s.secure { " over TLS" } else { "" },
                            if s.user.is_some() { " and the login" } else { "" }
                        ),
                    ),
                    Err(e) => r.error(
                        "smtp",
                        format!("{}:{}: {e}", s.host, s.port),
                        "check SMTP_HOST, SMTP_PORT, SMTP_SECURE (true for 465), SMTP_USER and SMTP_PASSWORD (Gmail needs an app password)",
                    ),
                },
            }
        }
    }
    if all.contains(&ProviderChoice::Custom) {
        r.ok(
            "custom",
            "configured (your own endpoint: not called by doctor, it would be a message)",
        );
    }
}

async fn twilio(t: &herald::config::TwilioSettings, r: &mut Report) {
    let http = client();
    let base = format!(
        "{}/2010-04-01/Accounts/{}",
        t.api_url.trim_end_matches('/'),
        t.account_sid
    );
    let auth = |req: reqwest::RequestBuilder| req.basic_auth(&t.auth_user, Some(t.auth_secret.expose_secret()));
    match get_json(auth(http.get(format!("{base}.json")))).await {
        Err(e) => {
            r.error(
                "twilio.credentials",
                format!("cannot reach {}: {e}", t.api_url),
                "check the network (and TWILIO_API_URL if set)",
            );
            return;
        }
        Ok((401, _)) => {
            r.error(
                "twilio.credentials",
                "Twilio refused the credentials (HTTP 401)",
                "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or TWILIO_API_KEY/TWILIO_API_SECRET) in the Twilio console",
            );
            return;
        }
        Ok((404, _)) => {
            r.error(
                "twilio.credentials",
                format!("no account {}", t.account_sid),
                "check TWILIO_ACCOUNT_SID (it starts with AC)",
            );
            return;
        }
        Ok((200, body)) => {
            r.ok("twilio.credentials", format!("accepted for account {}", t.account_sid));
            match body["status"].as_str() {
                Some("active") => r.ok("twilio.account", "active"),
                other => r.error(
                    "twilio.account",
                    format!("the account is {}", other.unwrap_or("in an unknown state")),
                    "reactivate it in the Twilio console (Billing) before sending",
                ),
            }
            if body["type"] == "Trial" {
                r.warn(
                    "twilio.account",
                    "a trial account: it sends only to verified numbers, with a trial prefix",
                    "upgrade the account in the Twilio console",
                );
            }
        }
        Ok((status, _)) => {
            r.error(
                "twilio.credentials",
                format!("Twilio answered HTTP {status}"),
                "try again later; see status.twilio.com",
            );
            return;
        }
    }
    match get_json(auth(http.get(format!("{base}/Balance.json")))).await {
        Ok((200, b)) => {
            let balance = b["balance"].as_str().and_then(|s| s.parse::<f64>().ok());
            let currency = b["currency"].as_str().unwrap_or("");
            match balance {
                Some(v) if v < 1.0 => r.warn(
                    "twilio.balance",
                    format!("{v:.2} {currency} left"),
                    "add funds in the Twilio console (Billing) before messages fail",
                ),
                Some(v) => r.ok("twilio.balance", format!("{v:.2} {currency}")),
                None => r.warn(
                    "twilio.balance",
                    "Twilio did not say the balance",
                    "check Billing in the Twilio console",
                ),
            }
        }
        Ok((status, _)) => r.warn(
            "twilio.balance",
            format!("could not read the balance (HTTP {status})"),
            "an API key may lack access to it; check Billing in the Twilio console",
        ),
        Err(e) => r.warn(
            "twilio.balance",
            format!("could not read the balance: {e}"),
            "check the network",
        ),
    }
    let senders = [
        (
            "twilio.sender.sms",
            "TWILIO_PHONE_NUMBER",
            t.phone_number.as_ref().map(|p| p.as_str().to_owned()),
            true,
        ),
        (
            "twilio.sender.whatsapp",
            "TWILIO_WHATSAPP_NUMBER",
            t.whatsapp_number.as_ref().map(|w| w.number().as_str().to_owned()),
            false,
        ),
    ];
    for (check, var, number, sms) in senders {
        let Some(number) = number else { continue };
        let req = auth(
            http.get(format!("{base}/IncomingPhoneNumbers.json"))
                .query(&[("PhoneNumber", number.as_str())]),
        );
        match get_json(req).await {
            Ok((200, b)) => {
                let found = b["incoming_phone_numbers"].as_array().and_then(|l| l.first()).cloned();
                match (found, sms) {
                    (Some(n), true) if n["capabilities"]["sms"] == true => {
                        r.ok(check, format!("{number} belongs to the account and can send SMS"))
                    }
                    (Some(_), true) => r.error(
                        check,
                        format!("{number} belongs to the account but cannot send SMS"),
                        format!("set {var} to an SMS-capable number, or use TWILIO_MESSAGING_SERVICE_SID"),
                    ),
                    (Some(_), false) => r.ok(check, format!("{number} belongs to the account")),
                    (None, true) => r.error(
                        check,
                        format!("{number} is not a number of account {}", t.account_sid),
                        format!("set {var} to one of the account's numbers (Phone Numbers → Active numbers)"),
                    ),
                    (None, false) => r.warn(
                        check,
                        format!("{number} is not one of the account's phone numbers"),
                        "fine for the WhatsApp sandbox (+14155238886) or a registered WhatsApp sender; otherwise check Messaging → Senders",
                    ),
                }
            }
            Ok((status, _)) => r.warn(
                check,
                format!("could not look up {number} (HTTP {status})"),
                "check the number in the Twilio console",
            ),
            Err(e) => r.warn(check, format!("could not look up {number}: {e}"), "check the network"),
        }
    }
    if let Some(sid) = &t.messaging_service_sid {
        r.ok(
            "twilio.sender.service",
            format!("messages go through messaging service {sid} (its senders are Twilio's to pick)"),
        );
    }
}

async fn sendgrid(s: &herald::config::SendgridSettings, config: &Config, r: &mut Report) {
    let http = client();
    let base = s.api_url.trim_end_matches('/');
    let auth = |req: reqwest::RequestBuilder| req.bearer_auth(s.api_key.expose_secret());
    match get_json(auth(http.get(format!("{base}/v3/scopes")))).await {
        Err(e) => {
            r.error(
                "sendgrid.key",
                format!("cannot reach {base}: {e}"),
                "check the network (and SENDGRID_API_URL if set)",
            );
            return;
        }
        Ok((401 | 403, _)) => {
            r.error(
                "sendgrid.key",
                "SendGrid refused SENDGRID_API_KEY",
                "create a key in SendGrid (Settings → API Keys) with Mail Send access and set SENDGRID_API_KEY",
            );
            return;
        }
        Ok((200, b)) => {
            let scopes: Vec<&str> = b["scopes"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if scopes.contains(&"mail.send") {
                r.ok("sendgrid.key", "valid, with the mail.send scope");
            } else {
                r.error(
                    "sendgrid.key",
                    "the key is valid but lacks the mail.send scope",
                    "give the key Mail Send access (Settings → API Keys → Edit), or create one that has it",
                );
            }
        }
        Ok((status, _)) => {
            r.error(
                "sendgrid.key",
                format!("SendGrid answered HTTP {status}"),
                "try again later; see status.sendgrid.com",
            );
            return;
        }
    }
    let Some(from) = &config.email_from else { return };
    let from = from.address.as_str().to_owned();
    match get_json(auth(http.get(format!("{base}/v3/verified_senders")))).await {
        Ok((200, b)) => {
            let verified = b["results"].as_array().is_some_and(|l| {
                l.iter().any(|x| {
                    x["verified"] == true && x["from_email"].as_str().is_some_and(|e| e.eq_ignore_ascii_case(&from))
                })
            });
            if verified {
                r.ok("sendgrid.sender", format!("{from} is a verified sender"));
            } else {
                r.warn(
                    "sendgrid.sender",
                    format!("{from} is not a verified single sender"),
                    "verify it (Settings → Sender Authentication), unless its whole domain is authenticated there",
                );
            }
        }
        Ok((status, _)) => r.warn(
            "sendgrid.sender",
            format!("could not list verified senders (HTTP {status})"),
            "give the key read access to sender verification, or check Sender Authentication in SendGrid",
        ),
        Err(e) => r.warn(
            "sendgrid.sender",
            format!("could not list verified senders: {e}"),
            "check the network",
        ),
    }
}

async fn public_url(config: &Config, r: &mut Report) {
    let Some(url) = &config.public_url else { return };
    let health = format!("{}/healthz", url.trim_end_matches('/'));
    match client().get(&health).send().await {
        Ok(resp) if resp.status().is_success() => r.ok("public_url", format!("{health} answers")),
        Ok(resp) => r.warn(
            "public_url",
            format!("{health} answered HTTP {}", resp.status().as_u16()),
            "providers post delivery receipts to PUBLIC_URL: point it (and your proxy) at `herald serve`",
        ),
        Err(e) => r.warn(
            "public_url",
            format!("{health} is not reachable from here: {}", e.without_url()),
            "providers post delivery receipts to PUBLIC_URL: make it reach `herald serve` from the internet",
        ),
    }
}

/// The email sender domain's SPF, DKIM and DMARC records, as receivers
/// read them before trusting Herald's mail.
async fn email_dns(config: &Config, args: &DoctorArgs, r: &mut Report) {
    if config.providers.email.is_empty() {
        return;
    }
    let Some(from) = &config.email_from else {
        return;
    };
    let Some((_, domain)) = from.address.as_str().rsplit_once('@') else {
        return;
    };
    let domain = domain.to_ascii_lowercase();
    let server = match &args.dns_server {
        Some(s) => match s.parse::<std::net::SocketAddr>().or_else(|_| {
            s.parse::<std::net::IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, 53))
        }) {
            Ok(a) => a,
            Err(_) => {
                r.error(
                    "email.dns",
                    format!("--dns-server {s:?} is not an IP address or IP:port"),
                    "pass an address such as 1.1.1.1 or 127.0.0.1:5353",
                );
                return;
            }
        },
        None => match herald::dns::system_resolver() {
            Some(a) => a,
            None => {
                r.warn(
                    "email.dns",
                    "no DNS server in /etc/resolv.conf: SPF, DKIM and DMARC were not checked",
                    "pass --dns-server ADDR",
                );
                return;
            }
        },
    };
    let sendgrid = config.providers.email.contains(&ProviderChoice::Sendgrid);
    let lookup = |name: String| async move { herald::dns::txt(server, &name, DNS_TIMEOUT).await };
    let failed = |r: &mut Report, e: herald::dns::DnsError| {
        r.warn(
            "email.dns",
            format!("{e}: SPF, DKIM and DMARC of {domain} were not checked"),
            "run doctor where DNS answers, or pass --dns-server ADDR",
        )
    };

    // SPF (RFC 7208): one `v=spf1` TXT record at the domain.
    let spf: Vec<String> = match lookup(domain.clone()).await {
        Ok(records) => records.into_iter().filter(|t| is_tagged(t, "v=spf1")).collect(),
        Err(e) => return failed(r, e),
    };
    let spf_example = if sendgrid {
        "v=spf1 include:sendgrid.net ~all"
    } else {
        "v=spf1 include:<your SMTP provider's SPF domain> ~all"
    };
    match spf.as_slice() {
        [] => r.warn(
            "email.spf",
            format!("{domain} has no SPF record: receivers may treat its mail as spam"),
            format!("add a TXT record at {domain}: {spf_example}"),
        ),
        [one] => {
            let terms: Vec<String> = one.split_whitespace().map(str::to_ascii_lowercase).collect();
            if terms.iter().any(|t| t == "+all" || t == "all") {
                r.warn(
                    "email.spf",
                    format!("the SPF record of {domain} lets any server send as it: {one}"),
                    "end the record with ~all or -all",
                );
            } else if sendgrid && !terms.iter().any(|t| t == "include:sendgrid.net") {
                r.warn(
                    "email.spf",
                    format!("the SPF record of {domain} does not include sendgrid.net: {one}"),
                    "add include:sendgrid.net before the all term (or authenticate the domain in SendGrid, which sets its own)",
                );
            } else {
                r.ok("email.spf", format!("{domain}: {one}"));
            }
        }
        many => r.error(
            "email.spf",
            format!(
                "{domain} has {} SPF records (receivers treat that as a permanent error)",
                many.len()
            ),
            "merge them into one TXT record",
        ),
    }

    // DKIM (RFC 6376): a key at <selector>._domainkey.<domain>.
    let selectors: Vec<String> = if args.dkim_selectors.is_empty() {
        DKIM_SELECTORS.iter().map(|s| (*s).to_owned()).collect()
    } else {
        args.dkim_selectors.clone()
    };
    let mut found = Vec::new();
    let mut revoked = Vec::new();
    for sel in &selectors {
        let name = format!("{sel}._domainkey.{domain}");
        let records = match lookup(name.clone()).await {
            Ok(records) => records,
            Err(e) => return failed(r, e),
        };
        for rec in records {
            let tags = dkim_tags(&rec);
            match tags.iter().find(|(k, _)| k == "p") {
                Some((_, p)) if p.is_empty() => revoked.push(name.clone()),
                Some(_) => found.push(name.clone()),
                None => {}
            }
        }
    }
    if !found.is_empty() {
        r.ok("email.dkim", format!("a DKIM key at {}", found.join(", ")));
    } else if !revoked.is_empty() {
        r.error(
            "email.dkim",
            format!("the DKIM key at {} is revoked (empty p=)", revoked.join(", ")),
            "publish the current key your email provider gives you",
        );
    } else {
        r.warn(
            "email.dkim",
            format!("no DKIM key for {domain} at the selectors tried ({})", selectors.join(", ")),
            if sendgrid {
                "authenticate the domain in SendGrid (Settings → Sender Authentication) and add its CNAME records; another selector: --dkim-selector NAME"
            } else {
                "publish the DKIM key your SMTP provider gives you; if it uses another selector, pass --dkim-selector NAME"
            },
        );
    }

    // DMARC (RFC 7489): one `v=DMARC1` record at _dmarc.<domain>.
    let dmarc: Vec<String> = match lookup(format!("_dmarc.{domain}")).await {
        Ok(records) => records.into_iter().filter(|t| is_tagged(t, "v=DMARC1")).collect(),
        Err(e) => return failed(r, e),
    };
    match dmarc.as_slice() {
        [] => r.warn(
            "email.dmarc",
            format!("{domain} has no DMARC record: Gmail and Yahoo expect one from bulk senders"),
            format!("add a TXT record at _dmarc.{domain}: v=DMARC1; p=none; rua=mailto:dmarc@{domain}"),
        ),
        [one] => match dkim_tags(one).into_iter().find(|(k, _)| k == "p") {
            Some((_, p)) if ["none", "quarantine", "reject"].contains(&p.to_ascii_lowercase().as_str()) => {
                r.ok("email.dmarc", format!("_dmarc.{domain}: policy p={p}"))
            }
            _ => r.error(
                "email.dmarc",
                format!("the DMARC record of {domain} has no valid p= policy: {one}"),
                "make it start with v=DMARC1; p=none (or quarantine, reject)",
            ),
        },
        many => r.error(
            "email.dmarc",
            format!("{domain} has {} DMARC records (receivers ignore them all)", many.len()),
            "keep one TXT record at _dmarc",
        ),
    }
}

/// Whether a TXT record starts with `tag` (`v=spf1`, `v=DMARC1`) as a whole
/// term, case-insensitively.
fn is_tagged(record: &str, tag: &str) -> bool {
    let t = record.trim_start();
    t.get(..tag.len()).is_some_and(|head| head.eq_ignore_ascii_case(tag))
        && t[tag.len()..].chars().next().is_none_or(|c| c == ' ' || c == ';')
}

/// `k=v; k=v` tags (DKIM, DMARC), names lower-cased, values without
/// spaces.
fn dkim_tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|part| {
            let (k, v) = part.split_once('=')?;
            Some((
                k.trim().to_ascii_lowercase(),
                v.chars().filter(|c| !c.is_whitespace()).collect(),
            ))
        })
        .collect()
}
