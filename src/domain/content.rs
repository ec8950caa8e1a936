//! What a message says: its content parsed for its channel (limits, which
//! parts each channel takes, provider templates).

use super::{check_json, check_text, Channel, TextKind, ValidationError};

/// Text limit for SMS and WhatsApp bodies (Twilio's `Body` limit).
pub const MAX_TEXT_CHARS: usize = 1600;
/// RFC 5322 line limit; a subject longer than this cannot be sent unfolded.
pub(super) const MAX_SUBJECT_CHARS: usize = 998;
/// Upper bound for an email part; providers reject far smaller messages.
pub const MAX_EMAIL_PART_BYTES: usize = 5 * 1024 * 1024;

/// A template held by the provider (Twilio Content API): its SID and the
/// values for its variables. WhatsApp messages outside the 24-hour window
/// can only be sent this way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTemplate {
    /// `HX` + 32 hex digits.
    pub content_sid: String,
    /// Variable name → value; values are always strings (Twilio's rule).
    pub variables: serde_json::Map<String, serde_json::Value>,
}

impl ProviderTemplate {
    pub fn parse(
        content_sid: &str,
        variables: Option<&serde_json::Value>,
    ) -> Result<ProviderTemplate, ValidationError> {
        let sid = content_sid.trim();
        if !(sid.len() == 34 && sid.starts_with("HX") && sid[2..].chars().all(|c| c.is_ascii_hexdigit())) {
            return Err(ValidationError::new(
                "content_sid",
                format!("{sid:?} is not a Twilio Content SID (HX followed by 32 hexadecimal digits)"),
            ));
        }
        let mut out = serde_json::Map::new();
        match variables {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(map)) => {
                if map.len() > 100 {
                    return Err(ValidationError::new(
                        "content_variables",
                        "at most 100 template variables",
                    ));
                }
                for (k, v) in map {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Number(n) => n.to_string(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        _ => {
                            return Err(ValidationError::new(
                                "content_variables",
                                format!("variable {k:?} must be a string or a number"),
                            ))
                        }
                    };
                    out.insert(k.clone(), serde_json::Value::String(text));
                }
            }
            Some(_) => {
                return Err(ValidationError::new(
                    "content_variables",
                    "content_variables must be a JSON object such as {\"1\": \"Ana\"}",
                ))
            }
        }
        Ok(ProviderTemplate {
            content_sid: sid.to_owned(),
            variables: out,
        })
    }
}

/// Validated content for a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// Email only (kept, but never sent, for SMS and WhatsApp).
    pub subject: Option<String>,
    /// Plain text; always present for SMS and WhatsApp unless a provider
    /// template is used (then it is kept for the record, not sent).
    pub body: Option<String>,
    /// Email only.
    pub html_body: Option<String>,
    /// SMS/WhatsApp: send this provider template instead of the body.
    pub template: Option<ProviderTemplate>,
}

/// Content fields as given, before parsing.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContentInput<'a> {
    pub subject: Option<&'a str>,
    pub body: Option<&'a str>,
    pub html_body: Option<&'a str>,
    pub content_sid: Option<&'a str>,
    pub content_variables: Option<&'a serde_json::Value>,
}

pub(super) fn non_blank(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.trim().is_empty())
}

impl Content {
    pub fn parse(channel: Channel, input: ContentInput<'_>) -> Result<Content, ValidationError> {
        for (field, text, kind) in [
            ("subject", input.subject, TextKind::SingleLine),
            ("body", input.body, TextKind::MultiLine),
            ("html_body", input.html_body, TextKind::MultiLine),
            ("content_sid", input.content_sid, TextKind::SingleLine),
        ] {
            if let Some(t) = text {
                check_text(field, t, kind)?;
            }
        }
        if let Some(v) = input.content_variables {
            check_json("content_variables", v)?;
        }
        let subject = non_blank(input.subject);
        let body = non_blank(input.body);
        let html_body = non_blank(input.html_body);
        let template = match (non_blank(input.content_sid), input.content_variables) {
            (Some(sid), vars) => {
                if channel == Channel::Email {
                    return Err(ValidationError::new(
                        "content_sid",
                        "provider templates are for sms and whatsapp",
                    ));
                }
                Some(ProviderTemplate::parse(sid, vars)?)
            }
            (None, None | Some(serde_json::Value::Null)) => None,
            (None, Some(_)) => {
                return Err(ValidationError::new(
                    "content_variables",
                    "content_variables needs a content_sid",
                ));
            }
        };
        match channel {
            Channel::Sms | Channel::Whatsapp => {
                let text = match (body, &template) {
                    (Some(text), _) => text,
                    (None, Some(_)) => "",
                    (None, None) => {
                        return Err(ValidationError::new(
                            "body",
                            format!("a {channel} message needs a body"),
                        ));
                    }
                };
                let chars = text.chars().count();
                if chars > MAX_TEXT_CHARS {
                    return Err(ValidationError::new(
                        "body",
                        format!("{channel} body is {chars} characters; the limit is {MAX_TEXT_CHARS}"),
                    ));
                }
                if html_body.is_some() {
                    return Err(ValidationError::new(
                        "html_body",
                        format!("{channel} messages cannot carry HTML; use body"),
                    ));
                }
            }
            Channel::Email => {
                let Some(s) = subject else {
                    return Err(ValidationError::new("subject", "an email needs a subject"));
                };
                if s.contains(['\r', '\n']) {
                    return Err(ValidationError::new("subject", "the subject must be a single line"));
                }
                let chars = s.chars().count();
                if chars > MAX_SUBJECT_CHARS {
                    return Err(ValidationError::new(
                        "subject",
                        format!("the subject is {chars} characters; the limit is {MAX_SUBJECT_CHARS}"),
                    ));
                }
                if body.is_none() && html_body.is_none() {
                    return Err(ValidationError::new("body", "an email needs a body or an html_body"));
                }
                for (field, part) in [("body", body), ("html_body", html_body)] {
                    if part.is_some_and(|p| p.len() > MAX_EMAIL_PART_BYTES) {
                        return Err(ValidationError::new(
                            field,
                            format!("{field} is larger than {} MiB", MAX_EMAIL_PART_BYTES / (1024 * 1024)),
                        ));
                    }
                }
            }
        }
        Ok(Content {
            subject: subject.map(str::to_owned),
            body: body.map(str::to_owned),
            html_body: html_body.map(str::to_owned),
            template,
        })
    }
}
