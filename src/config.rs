//! Every setting Herald reads, its environment name, default and validation,
//! in one place. Values come from the environment, and from a `.env` file in
//! the working directory (the environment wins).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::domain::{Channel, EmailAddress, PhoneNumber, WhatsAppAddress};
use crate::processor::{ChannelLimits, RetryPolicy};

/// Which provider delivers a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderChoice {
    /// Development: record, send nothing. Used when the variable is unset.
    Log,
    Twilio,
    Sendgrid,
    /// SMTP (`smtp`, or `nodemailer` as in the original guide).
    Smtp,
    /// Herald's signed JSON webhook to a URL of yours.
    Custom,
}

impl ProviderChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderChoice::Log => "log",
            ProviderChoice::Twilio => "twilio",
            ProviderChoice::Sendgrid => "sendgrid",
            ProviderChoice::Smtp => "smtp",
            ProviderChoice::Custom => "custom",
        }
    }

    /// Safe defaults: (messages per second per sender, burst, concurrent calls).
    /// Twilio: a long code sends about 1 segment/s, WhatsApp senders about
    /// 10/s. SendGrid reports its own limits (429 pauses it). SMTP servers
    /// commonly throttle bursts. 0 = unlimited.
    fn default_limits(self, channel: Channel) -> (f64, u32, usize) {
        match (self, channel) {
            (ProviderChoice::Twilio, Channel::Whatsapp) => (10.0, 10, 10),
            (ProviderChoice::Twilio, _) => (1.0, 1, 10),
            (ProviderChoice::Sendgrid, _) => (0.0, 1, 10),
            (ProviderChoice::Smtp, _) => (10.0, 10, 5),
            (ProviderChoice::Custom, _) => (0.0, 1, 10),
            (ProviderChoice::Log, _) => (0.0, 1, 100),
        }
    }
}

/// Twilio credentials and senders.
#[derive(Debug, Clone)]
pub struct TwilioSettings {
    pub api_url: String,
    pub account_sid: String,
    /// Basic-auth user: the account SID, or an API key SID (`SK…`).
    pub auth_user: String,
    pub auth_secret: SecretString,
    /// The account's auth token (signs status callbacks), when set.
    pub auth_token: Option<SecretString>,
    pub phone_number: Option<PhoneNumber>,
    pub whatsapp_number: Option<WhatsAppAddress>,
    pub messaging_service_sid: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SendgridSettings {
    pub api_url: String,
    pub api_key: SecretString,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// Implicit TLS from the first byte (port 465); otherwise STARTTLS when offered.
    pub secure: bool,
}

#[derive(Debug, Clone)]
pub struct CustomSettings {
    pub sms_url: Option<String>,
    pub whatsapp_url: Option<String>,
    pub email_url: Option<String>,
    pub secret: SecretString,
}

/// The email sender: `EMAIL_FROM_NAME <EMAIL_FROM_ADDRESS>`.
#[derive(Debug, Clone)]
pub struct EmailFrom {
    pub address: EmailAddress,
    pub name: Option<String>,
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
    /// Bearer keys accepted by the HTTP API (`API_KEYS`, comma-separated).
    pub api_keys: Vec<SecretString>,
    pub sms_provider: ProviderChoice,
    pub whatsapp_provider: ProviderChoice,
    pub email_provider: ProviderChoice,
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
    pub sendgrid_webhook_key: Option<crate::receipts::SendgridKey>,
    pub limits: HashMap<Channel, ChannelLimits>,
    pub enable_message_processor: bool,
    pub batch_size: u32,
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

    fn float(&mut self, name: &str, default: f64, max: f64, what: &str) -> f64 {
        let Some(raw) = self.get(name) else { return default };
        match raw.parse::<f64>() {
            Ok(v) if v.is_finite() && (0.0..=max).contains(&v) => v,
            _ => {
                self.errors.push(format!(
                    "{name} must be a number of {what} from 0 to {max} (got {raw:?})"
                ));
                default
            }
        }
    }

    /// A required variable, named together with the reason it is needed.
    fn required(&mut self, name: &str, because: &str) -> Option<String> {
        match self.get(name) {
            Some(v) => Some(v.to_owned()),
            None => {
                self.errors
                    .push(format!("{name} is not set (needed because {because})"));
                None
            }
        }
    }

    fn secret(&mut self, name: &str, because: &str) -> Option<SecretString> {
        self.required(name, because).map(SecretString::from)
    }

    /// An http(s) URL without a trailing slash.
    fn url(&mut self, name: &str, default: Option<&str>) -> Option<String> {
        let raw = self.get(name).or(default)?.to_owned();
        match reqwest::Url::parse(&raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                Some(raw.trim_end_matches('/').to_owned())
            }
            _ => {
                self.errors
                    .push(format!("{name} must be an http:// or https:// URL (got {raw:?})"));
                None
            }
        }
    }

    /// `XX` + 32 hex digits: Twilio's SID shape.
    fn sid(&mut self, name: &str, prefix: &str, value: &str) -> bool {
        let ok = value.len() == 34 && value.starts_with(prefix) && value[2..].chars().all(|c| c.is_ascii_hexdigit());
        if !ok {
            self.errors.push(format!(
                "{name} must be {prefix} followed by 32 hexadecimal digits (got {value:?})"
            ));
        }
        ok
    }

    fn provider(&mut self, name: &str, channel: Channel) -> ProviderChoice {
        let Some(raw) = self.get(name) else {
            return ProviderChoice::Log;
        };
        match (raw.to_ascii_lowercase().as_str(), channel) {
            ("log", _) => ProviderChoice::Log,
            ("twilio", Channel::Sms | Channel::Whatsapp) => ProviderChoice::Twilio,
            ("sendgrid", Channel::Email) => ProviderChoice::Sendgrid,
            ("smtp" | "nodemailer", Channel::Email) => ProviderChoice::Smtp,
            ("custom", _) => ProviderChoice::Custom,
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

        let sms_provider = r.provider("SMS_PROVIDER", Channel::Sms);
        let whatsapp_provider = r.provider("WHATSAPP_PROVIDER", Channel::Whatsapp);
        let email_provider = r.provider("EMAIL_PROVIDER", Channel::Email);

        let choices = [
            (Channel::Sms, sms_provider),
            (Channel::Whatsapp, whatsapp_provider),
            (Channel::Email, email_provider),
        ];
        let uses = |p: ProviderChoice| {
            choices
                .iter()
                .filter(|(_, c)| *c == p)
                .map(|(ch, _)| *ch)
                .collect::<Vec<_>>()
        };
        let var_of = |ch: Channel| format!("{}_PROVIDER", ch.as_str().to_ascii_uppercase());

        let public_url = r.url("PUBLIC_URL", None);
        let twilio_webhook_token = r.get("TWILIO_AUTH_TOKEN").map(|t| SecretString::from(t.to_owned()));
        let sendgrid_webhook_key = match r.get("SENDGRID_WEBHOOK_PUBLIC_KEY").map(str::to_owned) {
            None => None,
            Some(k) => match crate::receipts::SendgridKey::parse(&k) {
                Ok(key) => Some(key),
                Err(e) => {
                    r.errors.push(format!("SENDGRID_WEBHOOK_PUBLIC_KEY: {e}"));
                    None
                }
            },
        };

        let twilio_channels = uses(ProviderChoice::Twilio);
        let twilio = if twilio_channels.is_empty() {
            None
        } else {
            let because = format!("{}=twilio", var_of(twilio_channels[0]));
            let account_sid = r.required("TWILIO_ACCOUNT_SID", &because);
            if let Some(sid) = &account_sid {
                r.sid("TWILIO_ACCOUNT_SID", "AC", sid);
            }
            let auth_token = r.get("TWILIO_AUTH_TOKEN").map(|t| SecretString::from(t.to_owned()));
            let api_key = r.get("TWILIO_API_KEY_SID").map(str::to_owned);
            let api_secret = r.get("TWILIO_API_KEY_SECRET").map(|t| SecretString::from(t.to_owned()));
            let (auth_user, auth_secret) = match (api_key, api_secret, &auth_token) {
                (Some(key), Some(secret), _) => {
                    r.sid("TWILIO_API_KEY_SID", "SK", &key);
                    (Some(key), Some(secret))
                }
                (Some(_), None, _) => {
                    r.errors
                        .push("TWILIO_API_KEY_SECRET is not set (needed because TWILIO_API_KEY_SID is set)".into());
                    (None, None)
                }
                (None, Some(_), _) => {
                    r.errors
                        .push("TWILIO_API_KEY_SID is not set (needed because TWILIO_API_KEY_SECRET is set)".into());
                    (None, None)
                }
                (None, None, Some(token)) => (account_sid.clone(), Some(token.clone())),
                (None, None, None) => {
                    r.errors
                        .push(format!("TWILIO_AUTH_TOKEN is not set (needed because {because})"));
                    (None, None)
                }
            };
            let messaging_service_sid = r.get("TWILIO_MESSAGING_SERVICE_SID").map(str::to_owned);
            if let Some(mg) = &messaging_service_sid {
                r.sid("TWILIO_MESSAGING_SERVICE_SID", "MG", mg);
            }
            let phone_number = match r.get("TWILIO_PHONE_NUMBER") {
                Some(p) => match PhoneNumber::parse(p) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        r.errors.push(format!("TWILIO_PHONE_NUMBER: {e}"));
                        None
                    }
                },
                None => None,
            };
            let whatsapp_number = match r.get("TWILIO_WHATSAPP_NUMBER") {
                Some(p) => match WhatsAppAddress::parse(p) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        r.errors.push(format!("TWILIO_WHATSAPP_NUMBER: {e}"));
                        None
                    }
                },
                None => None,
            };
            if sms_provider == ProviderChoice::Twilio
                && r.get("TWILIO_PHONE_NUMBER").is_none()
                && messaging_service_sid.is_none()
            {
                r.errors.push(
                    "TWILIO_PHONE_NUMBER is not set (needed because SMS_PROVIDER=twilio; or set TWILIO_MESSAGING_SERVICE_SID)"
                        .into(),
                );
            }
            if whatsapp_provider == ProviderChoice::Twilio
                && r.get("TWILIO_WHATSAPP_NUMBER").is_none()
                && messaging_service_sid.is_none()
            {
                r.errors.push(
                    "TWILIO_WHATSAPP_NUMBER is not set (needed because WHATSAPP_PROVIDER=twilio; or set TWILIO_MESSAGING_SERVICE_SID)"
                        .into(),
                );
            }
            let api_url = r.url("TWILIO_API_URL", Some("https://api.twilio.com"));
            match (account_sid, auth_user, auth_secret, api_url) {
                (Some(account_sid), Some(auth_user), Some(auth_secret), Some(api_url)) => Some(TwilioSettings {
                    api_url,
                    account_sid,
                    auth_user,
                    auth_secret,
                    auth_token,
                    phone_number,
                    whatsapp_number,
                    messaging_service_sid,
                }),
                _ => None,
            }
        };

        let email_needs_from = matches!(email_provider, ProviderChoice::Sendgrid | ProviderChoice::Smtp);
        let email_from = if email_needs_from {
            let because = format!("EMAIL_PROVIDER={}", email_provider.as_str());
            let address = r
                .required("EMAIL_FROM_ADDRESS", &because)
                .and_then(|a| match EmailAddress::parse(&a) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        r.errors.push(format!("EMAIL_FROM_ADDRESS: {e}"));
                        None
                    }
                });
            let name = r.get("EMAIL_FROM_NAME").map(str::to_owned);
            if name.as_deref().is_some_and(|n| n.contains(['\r', '\n', '"'])) {
                r.errors
                    .push("EMAIL_FROM_NAME must be one line without double quotes".into());
            }
            address.map(|address| EmailFrom { address, name })
        } else {
            None
        };

        let sendgrid = if email_provider == ProviderChoice::Sendgrid {
            let key = r.required("SENDGRID_API_KEY", "EMAIL_PROVIDER=sendgrid");
            if let Some(k) = &key {
                if !k.starts_with("SG.") || k.contains(char::is_whitespace) {
                    r.errors
                        .push("SENDGRID_API_KEY must be a SendGrid API key (it starts with \"SG.\")".into());
                }
            }
            let api_url = r.url("SENDGRID_API_URL", Some("https://api.sendgrid.com"));
            match (key, api_url) {
                (Some(k), Some(api_url)) => Some(SendgridSettings {
                    api_url,
                    api_key: SecretString::from(k),
                }),
                _ => None,
            }
        } else {
            None
        };

        let smtp = if email_provider == ProviderChoice::Smtp {
            let because = format!(
                "EMAIL_PROVIDER={}",
                r.get("EMAIL_PROVIDER").unwrap_or("smtp").to_ascii_lowercase()
            );
            let host = r.required("SMTP_HOST", &because);
            let secure = r.boolean("SMTP_SECURE", false);
            let port = r.number("SMTP_PORT", if secure { 465u16 } else { 587 }, 1, 65535, "port");
            let user = r.get("SMTP_USER").map(str::to_owned);
            let password = if user.is_some() {
                r.secret("SMTP_PASSWORD", "SMTP_USER is set")
            } else {
                None
            };
            host.map(|host| SmtpSettings {
                host,
                port,
                user,
                password,
                secure,
            })
        } else {
            None
        };

        let custom_channels = uses(ProviderChoice::Custom);
        let custom = if custom_channels.is_empty() {
            None
        } else {
            let mut urls: HashMap<Channel, String> = HashMap::new();
            for ch in &custom_channels {
                let name = format!("CUSTOM_{}_URL", ch.as_str().to_ascii_uppercase());
                if r.required(&name, &format!("{}=custom", var_of(*ch))).is_some() {
                    if let Some(u) = r.url(&name, None) {
                        urls.insert(*ch, u);
                    }
                }
            }
            let secret = r.secret(
                "CUSTOM_PROVIDER_SECRET",
                &format!("{}=custom", var_of(custom_channels[0])),
            );
            if let Some(s) = &secret {
                use secrecy::ExposeSecret;
                if s.expose_secret().len() < 16 {
                    r.errors
                        .push("CUSTOM_PROVIDER_SECRET must be at least 16 characters".into());
                }
            }
            secret.map(|secret| CustomSettings {
                sms_url: urls.remove(&Channel::Sms),
                whatsapp_url: urls.remove(&Channel::Whatsapp),
                email_url: urls.remove(&Channel::Email),
                secret,
            })
        };

        let mut limits = HashMap::new();
        for (ch, choice) in choices {
            let prefix = ch.as_str().to_ascii_uppercase();
            let (rate, burst, concurrency) = choice.default_limits(ch);
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

        let enable_message_processor = r.boolean("ENABLE_MESSAGE_PROCESSOR", true);
        let batch_size = r.number("BATCH_SIZE", 100u32, 1, 10_000, "messages");
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
            api_keys,
            sms_provider,
            whatsapp_provider,
            email_provider,
            twilio,
            sendgrid,
            smtp,
            custom,
            email_from,
            public_url,
            twilio_webhook_token,
            sendgrid_webhook_key,
            limits,
            enable_message_processor,
            batch_size,
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
