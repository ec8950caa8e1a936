//! Messages as the queue knows them: the status words, the recipient for a
//! channel, and `NewMessage`/`OutgoingMessage`, which can only be built by
//! parsing and so are always valid.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Channel, EmailAddress, PhoneNumber, WhatsAppAddress};

/// Text limit for SMS and WhatsApp bodies (Twilio's `Body` limit).
pub const MAX_TEXT_CHARS: usize = 1600;
/// RFC 5322 line limit; a subject longer than this cannot be sent unfolded.
pub const MAX_SUBJECT_CHARS: usize = 998;
/// Upper bound for an email part; providers reject far smaller messages.
pub const MAX_EMAIL_PART_BYTES: usize = 5 * 1024 * 1024;
/// Upper bound for the caller's metadata JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The `status` column. The words are a public contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Pending,
    Processing,
    Sent,
    Failed,
    Cancelled,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 5] = [
        MessageStatus::Pending,
        MessageStatus::Processing,
        MessageStatus::Sent,
        MessageStatus::Failed,
        MessageStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Processing => "processing",
            MessageStatus::Sent => "sent",
            MessageStatus::Failed => "failed",
            MessageStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(input: &str) -> Result<MessageStatus, ValidationError> {
        MessageStatus::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(input.trim()))
            .ok_or_else(|| {
                ValidationError::new(
                    "status",
                    format!("unknown status {input:?}: expected one of pending, processing, sent, failed, cancelled"),
                )
            })
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected input, naming the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        ValidationError {
            field,
            message: message.into(),
        }
    }
}

/// Where a message goes; the variant always matches the channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Recipient {
    Sms(PhoneNumber),
    Whatsapp(WhatsAppAddress),
    Email(EmailAddress),
}

impl Recipient {
    pub fn parse(channel: Channel, input: &str) -> Result<Recipient, ValidationError> {
        let err = |e: &dyn fmt::Display| ValidationError::new("recipient", e.to_string());
        match channel {
            Channel::Sms => PhoneNumber::parse(input).map(Recipient::Sms).map_err(|e| err(&e)),
            Channel::Whatsapp => WhatsAppAddress::parse(input)
                .map(Recipient::Whatsapp)
                .map_err(|e| err(&e)),
            Channel::Email => EmailAddress::parse(input).map(Recipient::Email).map_err(|e| err(&e)),
        }
    }

    pub fn channel(&self) -> Channel {
        match self {
            Recipient::Sms(_) => Channel::Sms,
            Recipient::Whatsapp(_) => Channel::Whatsapp,
            Recipient::Email(_) => Channel::Email,
        }
    }

    /// The recipient with most characters hidden: the only form logs may show.
    pub fn masked(&self) -> String {
        match self {
            Recipient::Sms(p) => p.masked(),
            Recipient::Whatsapp(w) => w.masked(),
            Recipient::Email(e) => e.masked(),
        }
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipient::Sms(p) => p.fmt(f),
            Recipient::Whatsapp(w) => w.fmt(f),
            Recipient::Email(e) => e.fmt(f),
        }
    }
}

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

fn non_blank(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.trim().is_empty())
}

impl Content {
    pub fn parse(channel: Channel, input: ContentInput<'_>) -> Result<Content, ValidationError> {
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

/// Metadata is a JSON object the caller gets back unchanged.
pub fn parse_metadata(value: Option<&serde_json::Value>) -> Result<Option<serde_json::Value>, ValidationError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => {
            if v.to_string().len() > MAX_METADATA_BYTES {
                return Err(ValidationError::new(
                    "metadata",
                    format!("metadata is larger than {} KiB", MAX_METADATA_BYTES / 1024),
                ));
            }
            Ok(Some(v.clone()))
        }
        Some(_) => Err(ValidationError::new("metadata", "metadata must be a JSON object")),
    }
}

/// Metadata as stored (JSON text written by another program).
pub fn parse_metadata_text(text: Option<&str>) -> Result<Option<serde_json::Value>, ValidationError> {
    match non_blank(text) {
        None => Ok(None),
        Some(t) => {
            let v: serde_json::Value = serde_json::from_str(t)
                .map_err(|e| ValidationError::new("metadata", format!("metadata is not valid JSON: {e}")))?;
            parse_metadata(Some(&v))
        }
    }
}

/// Fields as a caller supplies them (API body, CLI flags, or a stored row).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawMessage {
    pub channel: Option<String>,
    pub recipient: Option<String>,
    pub subject: Option<String>,
    pub body: Option<String>,
    pub html_body: Option<String>,
    pub send_at: Option<DateTime<Utc>>,
    pub metadata: Option<serde_json::Value>,
    pub content_sid: Option<String>,
    pub content_variables: Option<serde_json::Value>,
}

/// The template (and version, and locale) a message was rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRef {
    pub name: String,
    pub version: i32,
    pub locale: String,
}

/// A message that may be queued: every field has been parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub recipient: Recipient,
    pub content: Content,
    pub send_at: Option<DateTime<Utc>>,
    pub metadata: Option<serde_json::Value>,
    pub template: Option<TemplateRef>,
}

impl NewMessage {
    pub fn parse(raw: &RawMessage) -> Result<NewMessage, ValidationError> {
        let channel = match raw.channel.as_deref() {
            None => {
                return Err(ValidationError::new(
                    "channel",
                    "channel is required (sms, whatsapp or email)",
                ))
            }
            Some(c) => Channel::parse(c).map_err(|e| ValidationError::new("channel", e.to_string()))?,
        };
        let recipient = match raw.recipient.as_deref() {
            None => return Err(ValidationError::new("recipient", "recipient is required")),
            Some(r) => Recipient::parse(channel, r)?,
        };
        let content = Content::parse(
            channel,
            ContentInput {
                subject: raw.subject.as_deref(),
                body: raw.body.as_deref(),
                html_body: raw.html_body.as_deref(),
                content_sid: raw.content_sid.as_deref(),
                content_variables: raw.content_variables.as_ref(),
            },
        )?;
        let metadata = parse_metadata(raw.metadata.as_ref())?;
        Ok(NewMessage {
            recipient,
            content,
            send_at: raw.send_at,
            metadata,
            template: None,
        })
    }

    pub fn channel(&self) -> Channel {
        self.recipient.channel()
    }
}

/// A claimed message, parsed again before it reaches a provider (rows may
/// have been written by another program).
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    pub id: i64,
    /// 1 for the first provider call.
    pub attempt: u32,
    pub recipient: Recipient,
    pub content: Content,
    pub metadata: Option<serde_json::Value>,
}

impl OutgoingMessage {
    pub fn channel(&self) -> Channel {
        self.recipient.channel()
    }
}

/// A (channel, recipient) pair as the API and CLI take it: both required,
/// the recipient parsed for the channel (and so normalised).
pub fn parse_channel_and_recipient(
    channel: Option<&str>,
    recipient: Option<&str>,
) -> Result<Recipient, ValidationError> {
    let channel = Channel::parse(channel.ok_or_else(|| ValidationError::new("channel", "channel is required"))?)
        .map_err(|e| ValidationError::new("channel", e.to_string()))?;
    Recipient::parse(
        channel,
        recipient.ok_or_else(|| ValidationError::new("recipient", "recipient is required"))?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(channel: &str, recipient: &str) -> RawMessage {
        RawMessage {
            channel: Some(channel.into()),
            recipient: Some(recipient.into()),
            body: Some("hi".into()),
            ..RawMessage::default()
        }
    }

    #[test]
    fn status_words_round_trip() {
        for s in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(s.as_str()), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        let words: Vec<_> = MessageStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(words, ["pending", "processing", "sent", "failed", "cancelled"]);
        assert_eq!(MessageStatus::parse("nope").unwrap_err().field, "status");
    }

    #[test]
    fn sms_needs_a_body_within_the_limit() {
        assert!(NewMessage::parse(&raw("sms", "+15551234567")).is_ok());
        let mut r = raw("sms", "+15551234567");
        r.body = Some("  ".into());
        assert_eq!(NewMessage::parse(&r).unwrap_err().field, "body");
        r.body = Some("é".repeat(1600));
        assert!(NewMessage::parse(&r).is_ok());
        r.body = Some("é".repeat(1601));
        let e = NewMessage::parse(&r).unwrap_err();
        assert_eq!(e.field, "body");
        assert!(e.message.contains("1601"), "{}", e.message);
        r.body = Some("x".into());
        r.html_body = Some("<b>x</b>".into());
        assert_eq!(NewMessage::parse(&r).unwrap_err().field, "html_body");
    }

    #[test]
    fn email_needs_subject_and_some_content() {
        let mut r = raw("email", "ana@example.com");
        assert_eq!(NewMessage::parse(&r).unwrap_err().field, "subject");
        r.subject = Some("Receipt".into());
        assert!(NewMessage::parse(&r).is_ok());
        r.body = None;
        assert_eq!(NewMessage::parse(&r).unwrap_err().field, "body");
        r.html_body = Some("<p>hi</p>".into());
        assert!(NewMessage::parse(&r).is_ok());
        r.subject = Some("a\r\nBcc: evil@example.com".into());
        assert_eq!(NewMessage::parse(&r).unwrap_err().field, "subject");
    }

    #[test]
    fn recipient_errors_name_the_field() {
        let e = NewMessage::parse(&raw("sms", "5551234567")).unwrap_err();
        assert_eq!(e.field, "recipient");
        let e = NewMessage::parse(&raw("email", "nobody")).unwrap_err();
        assert_eq!(e.field, "recipient");
        let e = NewMessage::parse(&raw("pigeon", "x")).unwrap_err();
        assert_eq!(e.field, "channel");
        let w = NewMessage::parse(&raw("whatsapp", "+15551234567")).unwrap();
        assert_eq!(w.recipient.to_string(), "whatsapp:+15551234567");
    }

    #[test]
    fn provider_templates_replace_the_body() {
        let sid = format!("HX{}", "a1".repeat(16));
        let mut r = raw("whatsapp", "+15551234567");
        r.body = None;
        r.content_sid = Some(sid.clone());
        r.content_variables = Some(serde_json::json!({"1": "Ana", "2": 42}));
        let m = NewMessage::parse(&r).unwrap();
        let t = m.content.template.unwrap();
        assert_eq!(t.content_sid, sid);
        assert_eq!(
            serde_json::Value::Object(t.variables),
            serde_json::json!({"1": "Ana", "2": "42"})
        );
        r.content_sid = Some("HX123".into());
        assert_eq!(NewMessage::parse(&r).unwrap_err().field, "content_sid");
        r.content_sid = Some(sid.clone());
        r.content_variables = Some(serde_json::json!(["Ana"]));
        assert_eq!(NewMessage::parse(&r).unwrap_err().field, "content_variables");
        r.content_sid = None;
        r.content_variables = Some(serde_json::json!({"1": "x"}));
        assert_eq!(NewMessage::parse(&r).unwrap_err().field, "content_variables");
        let mut e = raw("email", "ana@example.com");
        e.subject = Some("s".into());
        e.content_sid = Some(sid);
        assert_eq!(NewMessage::parse(&e).unwrap_err().field, "content_sid");
    }

    #[test]
    fn metadata_must_be_an_object() {
        assert_eq!(
            parse_metadata_text(Some("{\"order\": 7}")).unwrap(),
            Some(serde_json::json!({"order": 7}))
        );
        assert_eq!(parse_metadata_text(Some("")).unwrap(), None);
        assert_eq!(parse_metadata_text(Some("[1]")).unwrap_err().field, "metadata");
        assert_eq!(parse_metadata_text(Some("{oops")).unwrap_err().field, "metadata");
    }
}
