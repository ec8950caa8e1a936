//! Every setting Herald reads, its environment name, default and validation,
//! in one place. Values come from the environment, and from a `.env` file in
//! the working directory (the environment wins).
//!
//! - `reader.rs`: reading variables, collecting every error
//! - `providers.rs`: which provider serves each channel, and its credentials
//! - `database.rs`: `DATABASE_URL`

mod alerts;
mod dashboard;
mod database;
pub mod dotenv;
mod providers;
mod reader;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::domain::Channel;
use crate::ratelimit::ChannelLimits;
use crate::receipts::SendgridKey;
use crate::retry::RetryPolicy;

pub use dashboard::{hash_password, DashboardSettings, Prices};
pub use database::{redact_url, DatabaseUrl};
pub use providers::{
    Choices, CustomSettings, EmailFrom, ProviderChoice, SendgridSettings, SmtpSettings, TwilioSettings,
};
use reader::Reader;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: DatabaseUrl,
    pub database_max_connections: u32,
    /// `DATABASE_TIMEZONE`: the zone of a POS table's `timestamp` columns
    /// without a time zone (PostgreSQL; default UTC).
    pub database_timezone: Option<String>,
    /// `DEFAULT_COUNTRY`: the country of phone numbers written without `+`
    /// (ISO 3166 code, e.g. `BR`).
    pub default_country: Option<String>,
    /// `COLUMN_MAP`: Herald's column → the name a POS's table gives it
    /// (`body:message,channel:type`), for `herald migrate`.
    pub column_map: std::collections::BTreeMap<String, String>,
    /// `RETENTION_DAYS`: finished messages older than this are pruned by
    /// the processor (`None`: never; the default).
    pub retention_days: Option<u32>,
    pub host: String,
    pub port: u16,
    /// Timeouts and the connection cap of `herald serve`.
    pub server_limits: crate::http::ServerLimits,
    /// `METRICS_CACHE_SECONDS`: how old `/metrics`' queue gauges may be.
    pub metrics_cache: Duration,
    /// Who may sign in to the dashboard, and prices for its estimates.
    pub dashboard: DashboardSettings,
    /// Alert rules, targets and timing (`ALERT_*`).
    pub alerts: crate::alerts::AlertSettings,
    /// Bearer keys accepted by the HTTP API (`API_KEYS`, comma-separated).
    pub api_keys: Vec<SecretString>,
    /// The provider of each channel (`SMS_PROVIDER`, `WHATSAPP_PROVIDER`, `EMAIL_PROVIDER`).
    pub providers: Choices,
    pub twilio: Option<TwilioSettings>,
    pub sendgrid: Option<SendgridSettings>,
    pub smtp: Option<SmtpSettings>,
    pub custom: Option<CustomSettings>,
    pub email_from: Option<EmailFrom>,
    /// Herald's public base URL (for provider callbacks), without a trailing slash.
    pub public_url: Option<String>,
    /// `TWILIO_AUTH_TOKEN`: verifies Twilio status callbacks.
    pub twilio_webhook_token: Option<SecretString>,
    /// `SENDGRID_WEBHOOK_PUBLIC_KEY`: verifies the SendGrid Event Webhook.
    pub sendgrid_webhook_key: Option<SendgridKey>,
    pub limits: HashMap<Channel, ChannelLimits>,
    pub enable_message_processor: bool,
    pub batch_size: u32,
    pub lease: Duration,
    pub provider_timeout: Duration,
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
    /// When a provider's circuit opens, for how long (`CIRCUIT_*`).
    pub breaker: crate::breaker::BreakerPolicy,
    /// `WHATSAPP_FALLBACK=sms`: WhatsApp messages their recipient cannot
    /// get are sent again as SMS.
    pub whatsapp_fallback: Option<crate::domain::FallbackPolicy>,
    /// How status webhooks to the POS are delivered (`WEBHOOK_*`).
    pub outbound: OutboundSettings,
    pub log_outbox: Option<PathBuf>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Whether `DATABASE_URL` was given (else the quick start's `./herald.db`).
    pub database_url_given: bool,
    /// Things worth a warning at start-up (e.g. `.env` lines that were skipped).
    pub warnings: Vec<String>,
}

impl Config {
    pub fn provider_for(&self, channel: Channel) -> ProviderChoice {
        self.providers.for_channel(channel)
    }
}

/// Every problem found, one per line, each naming its variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

impl std::error::Error for ConfigError {}

/// `COLUMN_MAP=body:message,channel:type` (or `=` instead of `:`).
fn column_map(r: &mut Reader<'_>) -> std::collections::BTreeMap<String, String> {
    let mut map = std::collections::BTreeMap::new();
    let Some(raw) = r.get("COLUMN_MAP").map(str::to_owned) else {
        return map;
    };
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let pair = entry.split_once(':').or_else(|| entry.split_once('='));
        match pair {
            Some((herald, theirs)) if !herald.trim().is_empty() && !theirs.trim().is_empty() => {
                map.insert(herald.trim().to_owned(), theirs.trim().to_owned());
            }
            _ => r.errors.push(format!(
                "COLUMN_MAP: {entry:?} is not herald_column:your_column (e.g. COLUMN_MAP=body:message,channel:type)"
            )),
        }
    }
    map
}

/// Where the server listens and who may call it.
struct Server {
    limits: crate::http::ServerLimits,
    metrics_cache: Duration,
    host: String,
    port: u16,
    api_keys: Vec<SecretString>,
    public_url: Option<String>,
    twilio_webhook_token: Option<SecretString>,
    sendgrid_webhook_key: Option<SendgridKey>,
}

fn server(r: &mut Reader<'_>) -> Server {
    let host = r.string("HOST", "127.0.0.1");
    let port = r.number("PORT", 8080u16, 0, 65535, "port");
    let mut api_keys = Vec::new();
    if let Some(raw) = r.get("API_KEYS").map(str::to_owned) {
        for (i, key) in raw.split(',').map(str::trim).filter(|k| !k.is_empty()).enumerate() {
            if key.len() < 16 || key.contains(char::is_whitespace) {
                r.errors.push(format!(
                    "API_KEYS: key #{} is too short (at least 16 characters; generate one with `openssl rand -hex 32`)",
                    i + 1
                ));
            } else {
                api_keys.push(SecretString::from(key.to_owned()));
            }
        }
    }
    let public_url = r.url("PUBLIC_URL", None);
    let twilio_webhook_token = r.optional_secret("TWILIO_AUTH_TOKEN");
    let sendgrid_webhook_key = r.parsed("SENDGRID_WEBHOOK_PUBLIC_KEY", SendgridKey::parse);
    let defaults = crate::http::ServerLimits::default();
    let limits = crate::http::ServerLimits {
        header_read_timeout: Duration::from_secs(r.number(
            "HTTP_HEADER_TIMEOUT_SECONDS",
            defaults.header_read_timeout.as_secs(),
            1,
            600,
            "seconds",
        )),
        max_connections: r.number(
            "HTTP_MAX_CONNECTIONS",
            defaults.max_connections,
            1,
            100_000,
            "connections",
        ),
        shutdown_grace: Duration::from_secs(r.number(
            "HTTP_SHUTDOWN_GRACE_SECONDS",
            defaults.shutdown_grace.as_secs(),
            0,
            600,
            "seconds",
        )),
    };
    let metrics_cache = Duration::from_secs(r.number(
        "METRICS_CACHE_SECONDS",
        crate::http::DEFAULT_METRICS_CACHE.as_secs(),
        1,
        3600,
        "seconds",
    ));
    Server {
        limits,
        metrics_cache,
        host,
        port,
        api_keys,
        public_url,
        twilio_webhook_token,
        sendgrid_webhook_key,
    }
}

/// `SMS_RATE_LIMIT`, `SMS_RATE_BURST`, `SMS_CONCURRENCY`… per channel,
/// defaulting to what the channel's provider tolerates.
fn limits(r: &mut Reader<'_>, choices: &Choices) -> HashMap<Channel, ChannelLimits> {
    let mut limits = HashMap::new();
    for ch in Channel::ALL {
        let prefix = ch.as_str().to_ascii_uppercase();
        let (rate, burst, concurrency) = choices.for_channel(ch).default_limits(ch);
        let rate = r.float(&format!("{prefix}_RATE_LIMIT"), rate, 100_000.0, "messages per second");
        let burst_default = burst.max(rate.ceil() as u32).max(1);
        let burst = r.number(&format!("{prefix}_RATE_BURST"), burst_default, 1, 100_000, "messages");
        let concurrency = r.number(
            &format!("{prefix}_CONCURRENCY"),
            concurrency,
            1,
            10_000,
            "concurrent sends",
        );
        limits.insert(
            ch,
            ChannelLimits {
                rate,
                burst,
                concurrency,
            },
        );
    }
    limits
}

/// How the processor claims, leases, waits and retries.
struct Processing {
    enable_message_processor: bool,
    batch_size: u32,
    lease: Duration,
    provider_timeout: Duration,
    poll_interval: Duration,
    retry: RetryPolicy,
    breaker: crate::breaker::BreakerPolicy,
}

fn processing(r: &mut Reader<'_>, database: Option<&DatabaseUrl>) -> Processing {
    let enable_message_processor = r.boolean("ENABLE_MESSAGE_PROCESSOR", true);
    let batch_size = r.number(
        "BATCH_SIZE",
        crate::processor::DEFAULT_BATCH_SIZE,
        1,
        10_000,
        "messages",
    );
    let lease = Duration::from_secs(r.number("LEASE_SECONDS", 120u64, 2, 86_400, "seconds"));
    let provider_timeout = Duration::from_secs(r.number("PROVIDER_TIMEOUT_SECONDS", 30u64, 1, 600, "seconds"));
    if provider_timeout >= lease && r.get("LEASE_SECONDS").is_some() && r.get("PROVIDER_TIMEOUT_SECONDS").is_some() {
        r.errors.push(format!(
            "LEASE_SECONDS ({}) must be longer than PROVIDER_TIMEOUT_SECONDS ({}): a message is only sent while its lease outlasts the send",
            lease.as_secs(),
            provider_timeout.as_secs()
        ));
    }
    // A short lease (e.g. in tests) shortens the timeout to fit inside it.
    let provider_timeout = provider_timeout.min(lease / 2);
    // PostgreSQL wakes processors with NOTIFY: polling is only the fallback.
    // SQLite and MySQL/MariaDB (no LISTEN/NOTIFY) are polled: 20 ms keeps a
    // POS's insert under 50 ms from the provider at the 99th percentile, for
    // one index look-up per poll.
    let poll_default = if matches!(database, Some(DatabaseUrl::Postgres(_))) {
        1000
    } else {
        20
    };
    let poll_interval = Duration::from_millis(r.number("POLL_INTERVAL_MS", poll_default, 5, 60_000, "milliseconds"));
    let retry = RetryPolicy {
        max_retries: r.number("MAX_RETRIES", 3u32, 0, 100, "retries"),
        base_delay: Duration::from_secs(r.number("RETRY_BASE_SECONDS", 10u64, 1, 86_400, "seconds")),
        max_delay: Duration::from_secs(r.number("RETRY_MAX_SECONDS", 3600u64, 1, 7 * 86_400, "seconds")),
        max_rate_limit_wait: Duration::from_secs(r.number(
            "RATE_LIMIT_MAX_WAIT_SECONDS",
            RetryPolicy::default().max_rate_limit_wait.as_secs(),
            1,
            86_400,
            "seconds",
        )),
    };
    let defaults = crate::breaker::BreakerPolicy::default();
    let breaker = crate::breaker::BreakerPolicy {
        failures_to_open: r.number(
            "CIRCUIT_FAILURE_THRESHOLD",
            defaults.failures_to_open,
            1,
            10_000,
            "failures",
        ),
        open_for: Duration::from_secs(r.number(
            "CIRCUIT_OPEN_SECONDS",
            defaults.open_for.as_secs(),
            1,
            3600,
            "seconds",
        )),
        ..defaults
    };
    let breaker = crate::breaker::BreakerPolicy {
        max_open_for: breaker.max_open_for.max(breaker.open_for),
        ..breaker
    };
    Processing {
        enable_message_processor,
        batch_size,
        lease,
        provider_timeout,
        poll_interval,
        retry,
        breaker,
    }
}

/// How status webhooks are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundSettings {
    /// Each request's limit (`WEBHOOK_TIMEOUT_SECONDS`).
    pub timeout: Duration,
    /// Requests in flight at once (`WEBHOOK_CONCURRENCY`).
    pub concurrency: usize,
    /// An endpoint failing this long without a success is disabled
    /// (`WEBHOOK_DISABLE_AFTER_HOURS`).
    pub disable_after: Duration,
    /// How often the outbox is looked at when nothing wakes the dispatcher.
    pub poll: Duration,
    /// Whether this process delivers status webhooks (`WEBHOOK_DELIVERY`):
    /// off, a worker only drains messages and leaves delivery to others.
    pub deliver: bool,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        OutboundSettings {
            timeout: Duration::from_secs(10),
            concurrency: 64,
            disable_after: Duration::from_secs(24 * 3600),
            poll: Duration::from_secs(1),
            deliver: true,
        }
    }
}

/// `WEBHOOK_*`: status webhooks to the POS.
fn outbound(r: &mut Reader<'_>) -> OutboundSettings {
    let d = OutboundSettings::default();
    OutboundSettings {
        timeout: Duration::from_secs(r.number("WEBHOOK_TIMEOUT_SECONDS", d.timeout.as_secs(), 1, 60, "seconds")),
        concurrency: r.number("WEBHOOK_CONCURRENCY", d.concurrency, 1, 1000, "requests"),
        disable_after: Duration::from_secs(
            3600 * r.number(
                "WEBHOOK_DISABLE_AFTER_HOURS",
                d.disable_after.as_secs() / 3600,
                1,
                30 * 24,
                "hours",
            ),
        ),
        poll: d.poll,
        deliver: r.boolean("WEBHOOK_DELIVERY", d.deliver),
    }
}

/// `WHATSAPP_FALLBACK=sms` (off by default) and its receipt window.
fn whatsapp_fallback(r: &mut Reader<'_>, choices: &Choices) -> Option<crate::domain::FallbackPolicy> {
    let word = r.get("WHATSAPP_FALLBACK").map(|w| w.trim().to_ascii_lowercase());
    let on = match word.as_deref() {
        None | Some("" | "off" | "none" | "false") => false,
        Some("sms") => true,
        Some(other) => {
            r.errors.push(format!(
                "WHATSAPP_FALLBACK must be sms (send as SMS what a WhatsApp recipient cannot get) or off (got {other:?})"
            ));
            false
        }
    };
    let minutes = r.number("WHATSAPP_FALLBACK_MINUTES", 60u64, 0, 7 * 24 * 60, "minutes");
    if !on {
        return None;
    }
    if choices.chain(Channel::Sms) == [ProviderChoice::Log] && choices.chain(Channel::Whatsapp) != [ProviderChoice::Log]
    {
        r.errors.push(
            "WHATSAPP_FALLBACK=sms needs an SMS provider: set SMS_PROVIDER (e.g. twilio), or WHATSAPP_FALLBACK=off"
                .into(),
        );
    }
    Some(crate::domain::FallbackPolicy {
        receipt_window: Duration::from_secs(minutes * 60),
    })
}

fn log_format(r: &mut Reader<'_>) -> LogFormat {
    match r.get("LOG_FORMAT").map(str::to_ascii_lowercase).as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            r.errors
                .push(format!("LOG_FORMAT must be text or json (got {other:?})"));
            LogFormat::Text
        }
    }
}

impl Config {
    /// Read `.env` in the working directory (if present, the way Node's
    /// dotenv reads it) and the environment; the environment wins.
    pub fn load() -> Result<Config, ConfigError> {
        let mut vars: HashMap<String, String> = HashMap::new();
        let mut warnings = Vec::new();
        let path = std::path::Path::new(".env");
        match dotenv::load(path) {
            Ok(Some(file)) => {
                vars.extend(file.vars);
                for (line, why) in file.skipped {
                    warnings.push(format!(".env line {line} was skipped: {why}"));
                }
            }
            Ok(None) => {}
            Err(e) => return Err(ConfigError(vec![e.to_string()])),
        }
        vars.extend(std::env::vars());
        let mut config = Config::from_vars(&vars)?;
        config.warnings.extend(warnings);
        Ok(config)
    }

    /// Read and check every setting; the error lists every problem found.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let mut r = Reader::new(vars);
        let database_url_given = r.is_set("DATABASE_URL");
        let database_url = match DatabaseUrl::parse(&r.string("DATABASE_URL", "sqlite://herald.db")) {
            Ok(u) => Some(u),
            Err(e) => {
                r.errors.push(e);
                None
            }
        };
        let database_max_connections = r.number("DATABASE_MAX_CONNECTIONS", 10u32, 1, 1000, "connections");
        let column_map = column_map(&mut r);
        let database_timezone = r.get("DATABASE_TIMEZONE").map(str::to_owned);
        // 0 (or unset): keep everything.
        let retention_days = Some(r.number("RETENTION_DAYS", 0u32, 0, 36_500, "days")).filter(|d| *d > 0);
        if database_timezone.is_some() && matches!(database_url, Some(DatabaseUrl::Mysql(_))) {
            r.errors.push(
                "DATABASE_TIMEZONE is for PostgreSQL's timestamp columns: on MySQL/MariaDB Herald reads and writes DATETIME columns as UTC and the server converts TIMESTAMP columns (unset it, and have the POS write UTC_TIMESTAMP())"
                    .to_owned(),
            );
        }
        let default_country = r
            .parsed("DEFAULT_COUNTRY", crate::domain::parse_country)
            .map(|_| r.get("DEFAULT_COUNTRY").unwrap_or_default().to_ascii_uppercase());
        let server = server(&mut r);
        let dashboard = dashboard::dashboard(&mut r);
        let providers = Choices::read(&mut r);
        let alerts = alerts::alerts(&mut r, &providers, server.public_url.clone());
        let twilio = providers::twilio(&mut r, &providers);
        let email_from = providers::email_from(&mut r, &providers);
        let sendgrid = providers::sendgrid(&mut r, &providers);
        let smtp = providers::smtp(&mut r, &providers);
        let custom = providers::custom(&mut r, &providers);
        let limits = limits(&mut r, &providers);
        let processing = processing(&mut r, database_url.as_ref());
        let whatsapp_fallback = whatsapp_fallback(&mut r, &providers);
        let outbound = outbound(&mut r);
        let log_outbox = r.get("LOG_OUTBOX").map(PathBuf::from);
        let log_format = log_format(&mut r);
        let log_level = r.string("LOG_LEVEL", "info");

        match database_url {
            Some(database_url) if r.errors.is_empty() => Ok(Config {
                database_url,
                database_max_connections,
                column_map,
                retention_days,
                database_timezone,
                default_country,
                server_limits: server.limits,
                metrics_cache: server.metrics_cache,
                dashboard,
                alerts,
                host: server.host,
                port: server.port,
                api_keys: server.api_keys,
                providers,
                twilio,
                sendgrid,
                smtp,
                custom,
                email_from,
                public_url: server.public_url,
                twilio_webhook_token: server.twilio_webhook_token,
                sendgrid_webhook_key: server.sendgrid_webhook_key,
                limits,
                enable_message_processor: processing.enable_message_processor,
                batch_size: processing.batch_size,
                lease: processing.lease,
                provider_timeout: processing.provider_timeout,
                poll_interval: processing.poll_interval,
                retry: processing.retry,
                breaker: processing.breaker,
                whatsapp_fallback,
                outbound,
                log_outbox,
                log_format,
                log_level,
                database_url_given,
                warnings: Vec::new(),
            }),
            _ => Err(ConfigError(r.errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn zero_configuration_is_valid() {
        let c = Config::from_vars(&HashMap::new()).unwrap();
        assert_eq!(c.database_url.as_str(), "sqlite://herald.db");
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 8080));
        assert_eq!(c.provider_for(Channel::Sms), ProviderChoice::Log);
        assert_eq!(c.retry.max_retries, 3);
        assert!(c.enable_message_processor);
        assert_eq!(c.poll_interval, Duration::from_millis(20));
    }

    #[test]
    fn mysql_reads_utc_and_polls() {
        let c = Config::from_vars(&vars(&[("DATABASE_URL", "mysql://root@127.0.0.1:3306/pos")])).unwrap();
        assert_eq!(c.poll_interval, Duration::from_millis(20));
        let err = Config::from_vars(&vars(&[
            ("DATABASE_URL", "mariadb://root@127.0.0.1:3306/pos"),
            ("DATABASE_TIMEZONE", "America/Sao_Paulo"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("DATABASE_TIMEZONE is for PostgreSQL"), "{err}");
    }

    #[test]
    fn every_bad_value_is_named() {
        let err = Config::from_vars(&vars(&[
            ("BATCH_SIZE", "lots"),
            ("MAX_RETRIES", "-1"),
            ("ENABLE_MESSAGE_PROCESSOR", "maybe"),
            ("SMS_PROVIDER", "pigeon"),
            ("DATABASE_URL", "oracle://u:secret@db/x"),
        ]))
        .unwrap_err();
        let all = err.to_string();
        for name in [
            "BATCH_SIZE",
            "MAX_RETRIES",
            "ENABLE_MESSAGE_PROCESSOR",
            "SMS_PROVIDER",
            "DATABASE_URL",
        ] {
            assert!(all.contains(name), "{name} missing from: {all}");
        }
        assert!(!all.contains("secret"), "password leaked: {all}");
        assert_eq!(err.0.len(), 5);
    }

    #[test]
    fn postgres_polls_less_often_because_it_listens() {
        let c = Config::from_vars(&vars(&[("DATABASE_URL", "postgres://127.0.0.1/test")])).unwrap();
        assert_eq!(c.database_url.backend_name(), "postgres");
        assert_eq!(c.poll_interval, Duration::from_millis(1000));
    }

    #[test]
    fn lease_must_outlast_the_provider_timeout() {
        let err = Config::from_vars(&vars(&[("LEASE_SECONDS", "10"), ("PROVIDER_TIMEOUT_SECONDS", "30")])).unwrap_err();
        assert!(err.to_string().contains("LEASE_SECONDS"));
        // Only a short lease given: the timeout shrinks to fit inside it.
        let c = Config::from_vars(&vars(&[("LEASE_SECONDS", "4")])).unwrap();
        assert_eq!(c.provider_timeout, Duration::from_secs(2));
    }
}
