//! Templates as the domain knows them: a name, a locale, and the parts as
//! written. Rendering lives in the `templates` module; storage in the store.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{check_json, check_text, Channel, ProviderTemplate, TextKind, ValidationError};

/// The parts of a template, as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateParts {
    pub subject: Option<String>,
    pub body: Option<String>,
    pub html_body: Option<String>,
    /// WhatsApp/SMS: a Twilio Content template to send instead of the body.
    pub content_sid: Option<String>,
    /// The Content template's variables, each itself a MiniJinja expression
    /// over the message data, e.g. `{"1": "{{ customer }}"}`.
    #[schema(value_type = Option<Object>)]
    pub content_variables: Option<serde_json::Map<String, Value>>,
}

/// A template's name: letters, digits, `-`, `_`, `.`; at most 100.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TemplateName(String);

impl TemplateName {
    pub const MAX_LEN: usize = 100;

    pub fn parse(input: &str) -> Result<TemplateName, ValidationError> {
        let ok = !input.is_empty()
            && input.len() <= Self::MAX_LEN
            && input.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if ok {
            Ok(TemplateName(input.to_owned()))
        } else {
            Err(ValidationError::new(
                "name",
                "template names use letters, digits, - _ . (at most 100)",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A locale tag such as `en`, `pt` or `pt-BR`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Locale(String);

impl Locale {
    /// The locale a template is saved under when none is given.
    pub const DEFAULT: &'static str = "en";

    pub fn parse(input: &str) -> Result<Locale, ValidationError> {
        let l = input.trim();
        let ok = !l.is_empty() && l.len() <= 35 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Locale(l.to_owned()))
        } else {
            Err(ValidationError::new(
                "locale",
                format!("{input:?} is not a locale such as en, pt or pt-BR"),
            ))
        }
    }

    pub fn default_locale() -> Locale {
        Locale(Self::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Locales to try, most specific first: `pt-BR` → `pt` → `default`.
    pub fn chain(requested: Option<&str>, default: &str) -> Vec<String> {
        let mut chain = Vec::new();
        if let Some(l) = requested.map(str::trim).filter(|l| !l.is_empty()) {
            chain.push(l.to_owned());
            if let Some((lang, _)) = l.split_once(['-', '_']) {
                chain.push(lang.to_owned());
            }
        }
        chain.push(default.to_owned());
        chain.dedup();
        chain
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A template version to save, checked the same way from the API and the CLI
/// (compiling the parts is the renderer's job: `templates::check`).
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateDraft {
    pub name: TemplateName,
    pub locale: Locale,
    /// The channel it is for; `None` = every channel.
    pub channel: Option<Channel>,
    pub parts: TemplateParts,
    pub make_default: bool,
}

impl TemplateDraft {
    pub fn parse(
        name: &str,
        locale: Option<&str>,
        channel: Option<&str>,
        parts: TemplateParts,
        make_default: bool,
    ) -> Result<TemplateDraft, ValidationError> {
        let name = TemplateName::parse(name)?;
        for (field, text) in [
            ("subject", parts.subject.as_deref()),
            ("body", parts.body.as_deref()),
            ("html_body", parts.html_body.as_deref()),
            ("content_sid", parts.content_sid.as_deref()),
        ] {
            if let Some(t) = text {
                check_text(field, t, TextKind::MultiLine)?;
            }
        }
        if let Some(v) = &parts.content_variables {
            check_json("content_variables", &Value::Object(v.clone()))?;
        }
        let locale = match locale {
            Some(l) => Locale::parse(l)?,
            None => Locale::default_locale(),
        };
        let channel = channel
            .map(Channel::parse)
            .transpose()
            .map_err(|e| ValidationError::new("channel", e.to_string()))?;
        if let Some(sid) = &parts.content_sid {
            ProviderTemplate::parse(sid, None)?;
            if channel == Some(Channel::Email) {
                return Err(ValidationError::new(
                    "content_sid",
                    "provider templates are for sms and whatsapp",
                ));
            }
        }
        if parts.subject.is_none() && parts.body.is_none() && parts.html_body.is_none() && parts.content_sid.is_none() {
            return Err(ValidationError::new(
                "body",
                "a template needs at least one of subject, body, html_body, content_sid",
            ));
        }
        Ok(TemplateDraft {
            name,
            locale,
            channel,
            parts,
            make_default,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_locales_are_parsed() {
        assert!(TemplateName::parse("order-ready_v2.sms").is_ok());
        for bad in ["", "has space", "slash/es", &"x".repeat(101)] {
            assert_eq!(TemplateName::parse(bad).unwrap_err().field, "name", "{bad:?}");
        }
        assert_eq!(Locale::parse(" pt-BR ").unwrap().as_str(), "pt-BR");
        assert_eq!(Locale::parse("pt BR").unwrap_err().field, "locale");
    }

    #[test]
    fn locale_fallback() {
        assert_eq!(Locale::chain(Some("pt-BR"), "en"), ["pt-BR", "pt", "en"]);
        assert_eq!(Locale::chain(Some("pt"), "en"), ["pt", "en"]);
        assert_eq!(Locale::chain(None, "en"), ["en"]);
        assert_eq!(Locale::chain(Some("en"), "en"), ["en"]);
    }

    #[test]
    fn a_draft_is_checked_like_the_api_checks_it() {
        let parts = |sid: Option<&str>| TemplateParts {
            content_sid: sid.map(Into::into),
            ..Default::default()
        };
        let e = TemplateDraft::parse(
            "t",
            None,
            Some("email"),
            parts(Some("HX0123456789abcdef0123456789abcdef")),
            false,
        )
        .unwrap_err();
        assert_eq!(e.field, "content_sid");
        assert_eq!(
            TemplateDraft::parse("t", None, Some("sms"), parts(Some("nope")), false)
                .unwrap_err()
                .field,
            "content_sid"
        );
        assert_eq!(
            TemplateDraft::parse("t", None, None, parts(None), false)
                .unwrap_err()
                .field,
            "body"
        );
        let d = TemplateDraft::parse(
            "t",
            None,
            Some("sms"),
            parts(Some("HX0123456789abcdef0123456789abcdef")),
            true,
        )
        .unwrap();
        assert_eq!(d.locale.as_str(), "en");
    }
}
