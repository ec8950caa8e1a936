//! Every setting Herald reads, its environment name, default and validation,
//! in one place. Values come from the environment, and from a `.env` file in
//! the working directory (the environment wins).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::domain::Channel;
use crate::processor::RetryPolicy;

/// Which provider delivers a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderChoice {
    /// Development: record, send nothing. Used when the variable is unset.
    Log,
}

impl ProviderChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderChoice::Log => "log",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub database_max_connections: u32,
    pub host: String,
    pub port: u16,
    pub sms_provider: ProviderChoice,
    pub whatsapp_provider: ProviderChoice,
    pub email_provider: ProviderChoice,
    pub enable_message_processor: bool,
    pub batch_size: u32,
    pub send_concurrency: usize,
    pub lease: Duration,
    pub provider_timeout: Duration,
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
    pub log_outbox: Option<PathBuf>,
    pub log_format: LogFormat,
    pub log_level: String,
}

impl Config {
    pub fn provider_for(&self, channel: Channel) -> ProviderChoice {
        match channel {
            Channel::Sms => self.sms_provider,
            Channel::Whatsapp => self.whatsapp_provider,
            Channel::Email => self.email_provider,
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres://") || self.database_url.starts_with("postgresql://")
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

/// Reads variables and collects every error instead of stopping at the first.
struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    errors: Vec<String>,
}

impl Reader<'_> {
    /// A set, non-blank value.
    fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    fn number<T>(&mut self, name: &str, default: T, min: T, max: T, unit: &str) -> T
    where
        T: std::str::FromStr + PartialOrd + Copy + fmt::Display,
    {
        let Some(raw) = self.get(name) else { return default };
        match raw.parse::<T>() {
            Ok(v) if v >= min && v <= max => v,
            _ => {
                self.errors.push(format!(
                    "{name} must be a whole number of {unit} from {min} to {max} (got {raw:?})"
                ));
                default
            }
        }
    }

    fn boolean(&mut self, name: &str, default: bool) -> bool {
        let Some(raw) = self.get(name) else { return default };
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                self.errors.push(format!("{name} must be true or false (got {raw:?})"));
                default
            }
        }
    }

    fn provider(&mut self, name: &str, channel: Channel) -> ProviderChoice {
        let Some(raw) = self.get(name) else {
            return ProviderChoice::Log;
        };
        match raw.to_ascii_lowercase().as_str() {
            "log" => ProviderChoice::Log,
            _ => {
                let choices = match channel {
                    Channel::Sms | Channel::Whatsapp => "twilio, custom or log",
                    Channel::Email => "sendgrid, smtp (or nodemailer), custom or log",
                };
                self.errors
                    .push(format!("{name} must be one of {choices} (got {raw:?})"));
                ProviderChoice::Log
            }
        }
    }
}

impl Config {
    /// Read `.env` (if present) into the environment, then read the environment.
    pub fn load() -> Result<Config, ConfigError> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(ConfigError(vec![format!(".env could not be read: {e}")])),
        }
        Config::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let mut r = Reader {
            vars,
            errors: Vec::new(),
        };

        let database_url = r.string("DATABASE_URL", "sqlite://herald.db");
        let is_pg = database_url.starts_with("postgres://") || database_url.starts_with("postgresql://");
        if !is_pg && !database_url.starts_with("sqlite:") {
            r.errors.push(format!(
                "DATABASE_URL must start with sqlite: (e.g. sqlite://herald.db) or postgres:// (got {:?})",
                redact_url(&database_url)
            ));
        }
        let database_max_connections = r.number("DATABASE_MAX_CONNECTIONS", 10u32, 1, 1000, "connections");
        let host = r.string("HOST", "127.0.0.1");
        let port = r.number("PORT", 8080u16, 0, 65535, "port");

        let sms_provider = r.provider("SMS_PROVIDER", Channel::Sms);
        let whatsapp_provider = r.provider("WHATSAPP_PROVIDER", Channel::Whatsapp);
        let email_provider = r.provider("EMAIL_PROVIDER", Channel::Email);

        let enable_message_processor = r.boolean("ENABLE_MESSAGE_PROCESSOR", true);
        let batch_size = r.number("BATCH_SIZE", 100u32, 1, 10_000, "messages");
        let send_concurrency = r.number("SEND_CONCURRENCY", 100usize, 1, 10_000, "sends");
        let lease = Duration::from_secs(r.number("LEASE_SECONDS", 120u64, 2, 86_400, "seconds"));
        let provider_timeout = Duration::from_secs(r.number("PROVIDER_TIMEOUT_SECONDS", 30u64, 1, 600, "seconds"));
        if provider_timeout >= lease && r.get("LEASE_SECONDS").is_some() && r.get("PROVIDER_TIMEOUT_SECONDS").is_some()
        {
            r.errors.push(format!(
                "LEASE_SECONDS ({}) must be longer than PROVIDER_TIMEOUT_SECONDS ({}): a message is only sent while its lease outlasts the send",
                lease.as_secs(),
                provider_timeout.as_secs()
            ));
        }
        // A short lease (e.g. in tests) shortens the timeout to fit inside it.
        let provider_timeout = provider_timeout.min(lease / 2);
        let poll_default = if is_pg { 1000 } else { 50 };
        let poll_interval =
            Duration::from_millis(r.number("POLL_INTERVAL_MS", poll_default, 5, 60_000, "milliseconds"));
        let retry = RetryPolicy {
            max_retries: r.number("MAX_RETRIES", 3u32, 0, 100, "retries"),
            base_delay: Duration::from_secs(r.number("RETRY_BASE_SECONDS", 10u64, 1, 86_400, "seconds")),
            max_delay: Duration::from_secs(r.number("RETRY_MAX_SECONDS", 3600u64, 1, 7 * 86_400, "seconds")),
            ..RetryPolicy::default()
        };
        let log_outbox = r.get("LOG_OUTBOX").map(PathBuf::from);
        let log_format = match r.get("LOG_FORMAT").map(str::to_ascii_lowercase).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                r.errors
                    .push(format!("LOG_FORMAT must be text or json (got {other:?})"));
                LogFormat::Text
            }
        };
        let log_level = r.string("LOG_LEVEL", "info");

        if !r.errors.is_empty() {
            return Err(ConfigError(r.errors));
        }
        Ok(Config {
            database_url,
            database_max_connections,
            host,
            port,
            sms_provider,
            whatsapp_provider,
            email_provider,
            enable_message_processor,
            batch_size,
            send_concurrency,
            lease,
            provider_timeout,
            poll_interval,
            retry,
            log_outbox,
            log_format,
            log_level,
        })
    }
}

/// A database URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_owned()
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
        assert_eq!(c.database_url, "sqlite://herald.db");
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 8080));
        assert_eq!(c.sms_provider, ProviderChoice::Log);
        assert_eq!(c.retry.max_retries, 3);
        assert!(c.enable_message_processor);
        assert_eq!(c.poll_interval, Duration::from_millis(50));
    }

    #[test]
    fn every_bad_value_is_named() {
        let err = Config::from_vars(&vars(&[
            ("BATCH_SIZE", "lots"),
            ("MAX_RETRIES", "-1"),
            ("ENABLE_MESSAGE_PROCESSOR", "maybe"),
            ("SMS_PROVIDER", "pigeon"),
            ("DATABASE_URL", "mysql://u:secret@db/x"),
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
        assert!(c.is_postgres());
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

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://herald:hunter2@db:5432/x"),
            "postgres://herald:***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite://herald.db"), "sqlite://herald.db");
    }
}
