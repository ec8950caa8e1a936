//! Provider settings: which provider serves each channel, and each
//! provider's credentials, read and checked together.

use std::collections::HashMap;

use secrecy::SecretString;

use super::reader::Reader;
use crate::domain::{provider_name, Channel, EmailAddress, PhoneNumber, WhatsAppAddress};
use crate::ratelimit::ChannelLimits;

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
            ProviderChoice::Log => provider_name::LOG,
            ProviderChoice::Twilio => provider_name::TWILIO,
            ProviderChoice::Sendgrid => provider_name::SENDGRID,
            ProviderChoice::Smtp => provider_name::SMTP,
            ProviderChoice::Custom => provider_name::CUSTOM,
        }
    }

    /// The word a user writes in `SMS_PROVIDER` etc., if it fits the channel.
    pub fn parse(word: &str, channel: Channel) -> Option<ProviderChoice> {
        match (word.trim().to_ascii_lowercase().as_str(), channel) {
            ("log", _) => Some(ProviderChoice::Log),
            ("twilio", Channel::Sms | Channel::Whatsapp) => Some(ProviderChoice::Twilio),
            ("sendgrid", Channel::Email) => Some(ProviderChoice::Sendgrid),
            ("smtp" | "nodemailer", Channel::Email) => Some(ProviderChoice::Smtp),
            ("custom", _) => Some(ProviderChoice::Custom),
            _ => None,
        }
    }

    /// Safe defaults: (messages per second per sender, burst, concurrent calls).
    /// Twilio: a long code sends about 1 segment/s, WhatsApp senders about
    /// 10/s. SendGrid reports its own limits (429 pauses it). SMTP servers
    /// commonly throttle bursts. 0 = unlimited.
    pub(super) fn default_limits(self, channel: Channel) -> (f64, u32, usize) {
        match (self, channel) {
            (ProviderChoice::Twilio, Channel::Whatsapp) => (10.0, 10, ChannelLimits::DEFAULT_CONCURRENCY),
            (ProviderChoice::Twilio, _) => (1.0, 1, ChannelLimits::DEFAULT_CONCURRENCY),
            // An SMTP server counts connections: a few, each reused.
            (ProviderChoice::Smtp, _) => (10.0, 10, 5),
            (ProviderChoice::Sendgrid | ProviderChoice::Custom | ProviderChoice::Log, _) => {
                (0.0, 1, ChannelLimits::DEFAULT_CONCURRENCY)
            }
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
    /// `CUSTOM_LOOKUP_URL`: where Herald asks whether a message was received
    /// (see the custom provider's look-up).
    pub lookup_url: Option<String>,
    pub secret: SecretString,
}

/// The email sender: `EMAIL_FROM_NAME <EMAIL_FROM_ADDRESS>`.
#[derive(Debug, Clone)]
pub struct EmailFrom {
    pub address: EmailAddress,
    pub name: Option<String>,
}

/// The providers of each channel, in the order they are tried: the first
/// is the primary; the others take over while it is unavailable
/// (`EMAIL_PROVIDER=sendgrid,smtp`). Never empty, no provider twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choices {
    pub sms: Vec<ProviderChoice>,
    pub whatsapp: Vec<ProviderChoice>,
    pub email: Vec<ProviderChoice>,
}

impl Choices {
    pub(super) fn read(r: &mut Reader<'_>) -> Choices {
        Choices {
            sms: r.provider_chain("SMS_PROVIDER", Channel::Sms),
            whatsapp: r.provider_chain("WHATSAPP_PROVIDER", Channel::Whatsapp),
            email: r.provider_chain("EMAIL_PROVIDER", Channel::Email),
        }
    }

    /// The channel's primary provider.
    pub fn for_channel(&self, channel: Channel) -> ProviderChoice {
        self.chain(channel).first().copied().unwrap_or(ProviderChoice::Log)
    }

    /// The channel's providers, primary first.
    pub fn chain(&self, channel: Channel) -> &[ProviderChoice] {
        match channel {
            Channel::Sms => &self.sms,
            Channel::Whatsapp => &self.whatsapp,
            Channel::Email => &self.email,
        }
    }

    /// Whether `p` serves `channel` (first or as a fallback).
    pub fn uses(&self, channel: Channel, p: ProviderChoice) -> bool {
        self.chain(channel).contains(&p)
    }

    /// The channels that use `p`, first or as a fallback.
    fn channels_using(&self, p: ProviderChoice) -> Vec<Channel> {
        Channel::ALL.into_iter().filter(|c| self.uses(*c, p)).collect()
    }
}

/// `SMS_PROVIDER` for sms, etc.
fn var_of(ch: Channel) -> String {
    format!("{}_PROVIDER", ch.as_str().to_ascii_uppercase())
}

/// `TWILIO_*`, when a channel uses Twilio.
pub(super) fn twilio(r: &mut Reader<'_>, choices: &Choices) -> Option<TwilioSettings> {
    let channels = choices.channels_using(ProviderChoice::Twilio);
    let first = *channels.first()?;
    let because = if choices.chain(first).len() == 1 {
        format!("{}=twilio", var_of(first))
    } else {
        format!("{} uses twilio", var_of(first))
    };
    let account_sid = r.required("TWILIO_ACCOUNT_SID", &because);
    if let Some(sid) = &account_sid {
        r.sid("TWILIO_ACCOUNT_SID", "AC", sid);
    }
    let auth_token = r.optional_secret("TWILIO_AUTH_TOKEN");
    let api_key = r.get("TWILIO_API_KEY_SID").map(str::to_owned);
    let api_secret = r.optional_secret("TWILIO_API_KEY_SECRET");
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
    let phone_number = r.parsed("TWILIO_PHONE_NUMBER", PhoneNumber::parse);
    let whatsapp_number = r.parsed("TWILIO_WHATSAPP_NUMBER", WhatsAppAddress::parse);
    for (channel, var) in [
        (Channel::Sms, "TWILIO_PHONE_NUMBER"),
        (Channel::Whatsapp, "TWILIO_WHATSAPP_NUMBER"),
    ] {
        if choices.uses(channel, ProviderChoice::Twilio) && r.get(var).is_none() && messaging_service_sid.is_none() {
            r.errors.push(format!(
                "{var} is not set (needed because {} uses twilio; or set TWILIO_MESSAGING_SERVICE_SID)",
                var_of(channel)
            ));
        }
    }
    let api_url = r.url("TWILIO_API_URL", Some("https://api.twilio.com"));
    Some(TwilioSettings {
        api_url: api_url?,
        account_sid: account_sid?,
        auth_user: auth_user?,
        auth_secret: auth_secret?,
        auth_token,
        phone_number,
        whatsapp_number,
        messaging_service_sid,
    })
}

/// `EMAIL_FROM_*`, when the email provider needs a sender.
pub(super) fn email_from(r: &mut Reader<'_>, choices: &Choices) -> Option<EmailFrom> {
    let needs = choices
        .email
        .iter()
        .find(|p| matches!(p, ProviderChoice::Sendgrid | ProviderChoice::Smtp))?;
    let because = format!("EMAIL_PROVIDER uses {}", needs.as_str());
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
}

/// `SENDGRID_*`, when email uses SendGrid.
pub(super) fn sendgrid(r: &mut Reader<'_>, choices: &Choices) -> Option<SendgridSettings> {
    if !choices.uses(Channel::Email, ProviderChoice::Sendgrid) {
        return None;
    }
    let key = r.required("SENDGRID_API_KEY", "EMAIL_PROVIDER uses sendgrid");
    if let Some(k) = &key {
        if !k.starts_with("SG.") || k.contains(char::is_whitespace) {
            r.errors
                .push("SENDGRID_API_KEY must be a SendGrid API key (it starts with \"SG.\")".into());
        }
    }
    let api_url = r.url("SENDGRID_API_URL", Some("https://api.sendgrid.com"));
    Some(SendgridSettings {
        api_url: api_url?,
        api_key: SecretString::from(key?),
    })
}

/// `SMTP_*`, when email uses SMTP.
pub(super) fn smtp(r: &mut Reader<'_>, choices: &Choices) -> Option<SmtpSettings> {
    if !choices.uses(Channel::Email, ProviderChoice::Smtp) {
        return None;
    }
    let word = r
        .get("EMAIL_PROVIDER")
        .unwrap_or("smtp")
        .to_ascii_lowercase()
        .split(',')
        .map(str::trim)
        .find(|w| matches!(*w, "smtp" | "nodemailer"))
        .unwrap_or("smtp")
        .to_owned();
    let because = if choices.email.len() == 1 {
        format!("EMAIL_PROVIDER={word}")
    } else {
        format!("EMAIL_PROVIDER uses {word}")
    };
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
}

/// `CUSTOM_*`, when a channel uses the custom HTTP provider.
pub(super) fn custom(r: &mut Reader<'_>, choices: &Choices) -> Option<CustomSettings> {
    let channels = choices.channels_using(ProviderChoice::Custom);
    let first = *channels.first()?;
    let mut urls: HashMap<Channel, String> = HashMap::new();
    for ch in &channels {
        let name = format!("CUSTOM_{}_URL", ch.as_str().to_ascii_uppercase());
        if r.required(&name, &format!("{} uses custom", var_of(*ch))).is_some() {
            if let Some(u) = r.url(&name, None) {
                urls.insert(*ch, u);
            }
        }
    }
    let lookup_url = r.url("CUSTOM_LOOKUP_URL", None);
    let secret = r.secret("CUSTOM_PROVIDER_SECRET", &format!("{} uses custom", var_of(first)));
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
        lookup_url,
        secret,
    })
}
