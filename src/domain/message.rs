//! Messages as the queue knows them: the recipient for a channel, and
//! `NewMessage`/`OutgoingMessage`, which can only be built by parsing and so
//! are always valid.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::content::non_blank;
use super::{
    check_json, check_text, Channel, Content, ContentInput, EmailAddress, PhoneNumber, TextKind, WhatsAppAddress,
};

/// Upper bound for the caller's metadata JSON.
pub(super) const MAX_METADATA_BYTES: usize = 16 * 1024;

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
        check_text("recipient", input, TextKind::SingleLine)?;
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

/// Metadata is a JSON object the caller gets back unchanged.
pub fn parse_metadata(value: Option<&serde_json::Value>) -> Result<Option<serde_json::Value>, ValidationError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => {
            check_json("metadata", v)?;
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
    fn sms_needs_a_body_within_the_limit() {
        assert!(NewMessage::parse(&raw("sms", "+14153234567")).is_ok());
        let mut r = raw("sms", "+14153234567");
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
        let w = NewMessage::parse(&raw("whatsapp", "+14153234567")).unwrap();
        assert_eq!(w.recipient.to_string(), "whatsapp:+14153234567");
    }

    #[test]
    fn provider_templates_replace_the_body() {
        let sid = format!("HX{}", "a1".repeat(16));
        let mut r = raw("whatsapp", "+14153234567");
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
