//! Reading variables: every problem is collected (each naming its
//! variable), so one run shows the user everything to fix.

use std::collections::HashMap;
use std::fmt;

use secrecy::SecretString;

use super::providers::ProviderChoice;
use crate::domain::Channel;

/// Reads variables and collects every error instead of stopping at the first.
pub(super) struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    pub errors: Vec<String>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(vars: &'a HashMap<String, String>) -> Reader<'a> {
        Reader {
            vars,
            errors: Vec::new(),
        }
    }

    /// A set, non-blank value. `HERALD_<NAME>` wins over `<NAME>`, so Herald
    /// can share a `.env` whose `PORT` or `HOST` belongs to another program.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        let value = |n: &str| self.vars.get(n).map(|v| v.trim()).filter(|v| !v.is_empty());
        value(&format!("HERALD_{name}")).or_else(|| value(name))
    }

    /// Whether the variable was given at all (either spelling).
    pub(super) fn is_set(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub(super) fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    pub(super) fn number<T>(&mut self, name: &str, default: T, min: T, max: T, unit: &str) -> T
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

    pub(super) fn boolean(&mut self, name: &str, default: bool) -> bool {
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

    pub(super) fn float(&mut self, name: &str, default: f64, max: f64, what: &str) -> f64 {
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
    pub(super) fn required(&mut self, name: &str, because: &str) -> Option<String> {
        match self.get(name) {
            Some(v) => Some(v.to_owned()),
            None => {
                self.errors
                    .push(format!("{name} is not set (needed because {because})"));
                None
            }
        }
    }

    pub(super) fn secret(&mut self, name: &str, because: &str) -> Option<SecretString> {
        self.required(name, because).map(SecretString::from)
    }

    /// An optional secret.
    pub(super) fn optional_secret(&self, name: &str) -> Option<SecretString> {
        self.get(name).map(|t| SecretString::from(t.to_owned()))
    }

    /// An optional value parsed by `parse`; a bad value is reported.
    pub(super) fn parsed<T, E: fmt::Display>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let raw = self.get(name)?.to_owned();
        match parse(&raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(format!("{name}: {e}"));
                None
            }
        }
    }

    /// An http(s) URL without a trailing slash.
    pub(super) fn url(&mut self, name: &str, default: Option<&str>) -> Option<String> {
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
    pub(super) fn sid(&mut self, name: &str, prefix: &str, value: &str) -> bool {
        let ok = value.len() == 34 && value.starts_with(prefix) && value[2..].chars().all(|c| c.is_ascii_hexdigit());
        if !ok {
            self.errors.push(format!(
                "{name} must be {prefix} followed by 32 hexadecimal digits (got {value:?})"
            ));
        }
        ok
    }

    /// A channel's providers: one name, or several separated by commas,
    /// tried in that order (`EMAIL_PROVIDER=sendgrid,smtp`).
    pub(super) fn provider_chain(&mut self, name: &str, channel: Channel) -> Vec<ProviderChoice> {
        let Some(raw) = self.get(name).map(str::to_owned) else {
            return vec![ProviderChoice::Log];
        };
        let choices = match channel {
            Channel::Sms | Channel::Whatsapp => "twilio, custom or log",
            Channel::Email => "sendgrid, smtp (or nodemailer), custom or log",
        };
        let mut chain = Vec::new();
        for word in raw.split(',').map(str::trim) {
            match ProviderChoice::parse(word, channel) {
                Some(p) if chain.contains(&p) => self.errors.push(format!(
                    "{name} names {} twice (got {raw:?}); list each provider once, the first is tried first",
                    p.as_str()
                )),
                Some(p) => chain.push(p),
                None if word.is_empty() => self.errors.push(format!(
                    "{name} has an empty name (got {raw:?}): write one provider, or several separated by commas, e.g. sendgrid,smtp"
                )),
                None if !raw.contains(',') => self
                    .errors
                    .push(format!("{name} must be one of {choices} (got {raw:?})")),
                None => self.errors.push(format!(
                    "{name}: each provider must be one of {choices} (got {word:?} in {raw:?})"
                )),
            }
        }
        if chain.is_empty() {
            chain.push(ProviderChoice::Log);
        }
        chain
    }
}
