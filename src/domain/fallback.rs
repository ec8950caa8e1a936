//! WhatsApp → SMS fallback (`WHATSAPP_FALLBACK=sms`): what is sent as an SMS
//! when a WhatsApp message cannot reach its recipient. Pure; the processor
//! and the receipts decide when, the store queues it.

use std::time::Duration;

use super::{Channel, Content, ContentInput, PhoneNumber, WhatsAppAddress};

/// The fallback's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallbackPolicy {
    /// A receipt saying `undelivered` or `failed` this soon after the
    /// WhatsApp message was sent makes it fall back
    /// (`WHATSAPP_FALLBACK_MINUTES`; 0: only failed sends do).
    pub receipt_window: Duration,
}

/// An SMS to queue in place of WhatsApp message `original`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsFallback {
    pub original: i64,
    pub recipient: PhoneNumber,
    pub body: String,
}

impl SmsFallback {
    /// The SMS for a WhatsApp message to `recipient` whose text is `body`
    /// (its own, or what its Herald template rendered). A message sent as
    /// a Twilio Content template alone has no text an SMS could carry:
    /// then the reason it cannot fall back.
    pub fn of(
        original: i64,
        recipient: &str,
        body: Option<&str>,
        template: Option<&str>,
    ) -> Result<SmsFallback, String> {
        let recipient = WhatsAppAddress::parse(recipient)
            .map_err(|e| format!("its recipient is not a phone number ({e})"))?
            .number()
            .clone();
        let Some(body) = body.filter(|b| !b.trim().is_empty()) else {
            return Err(match template {
                Some(t) => format!(
                    "template {t:?} has no body for this locale, and its WhatsApp Content template cannot be sent as SMS: add a body to the template"
                ),
                None => "it has no text (only a WhatsApp Content template), so there is nothing to send as SMS".into(),
            });
        };
        Content::parse(
            Channel::Sms,
            ContentInput {
                body: Some(body),
                ..ContentInput::default()
            },
        )
        .map_err(|e| format!("its text cannot be sent as SMS: {}", e.message))?;
        Ok(SmsFallback {
            original,
            recipient,
            body: body.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sms_goes_to_the_whatsapp_number_with_the_same_text() {
        let f = SmsFallback::of(7, "whatsapp:+14153234567", Some("Your order is ready"), None).unwrap();
        assert_eq!(f.recipient.as_str(), "+14153234567");
        assert_eq!((f.original, f.body.as_str()), (7, "Your order is ready"));
    }

    #[test]
    fn a_content_template_without_text_cannot_fall_back_and_says_why() {
        let e = SmsFallback::of(7, "whatsapp:+14153234567", None, Some("order_ready")).unwrap_err();
        assert!(e.contains("order_ready") && e.contains("no body"), "{e}");
        let e = SmsFallback::of(7, "+14153234567", Some("  "), None).unwrap_err();
        assert!(e.contains("nothing to send as SMS"), "{e}");
        let e = SmsFallback::of(7, "+14153234567", Some(&"x".repeat(1601)), None).unwrap_err();
        assert!(e.contains("cannot be sent as SMS"), "{e}");
    }
}
