//! WhatsApp → SMS fallback (`WHATSAPP_FALLBACK=sms`), for a WhatsApp message
//! that failed because its recipient cannot get it: the same text is
//! queued as an SMS with the message's outcome (in the same transaction),
//! once, and never to a recipient on the suppression list. The message's
//! `error` says what the fallback did.

use super::outcome::Outcome;
use super::Processor;
use crate::domain::{Channel, ErrorColumn, MessageStatus, OutgoingMessage, PhoneNumber, Recipient, SmsFallback};
use crate::store::Message;

impl Processor {
    pub(super) async fn fall_back(&self, mut outcome: Outcome, msg: &Message, parsed: &OutgoingMessage) -> Outcome {
        let eligible = outcome.completion.status == MessageStatus::Failed
            && parsed.channel() == Channel::Whatsapp
            && msg.fallback_message_id.is_none()
            && msg.fallback_of.is_none();
        if !eligible {
            return outcome;
        }
        let body = outcome
            .completion
            .rendered
            .as_ref()
            .and_then(|r| r.body.as_deref())
            .or(parsed.content.body.as_deref());
        let note = match SmsFallback::of(msg.id, &msg.recipient, body, msg.template.as_deref()) {
            Err(why) => format!("not sent as SMS: {why}"),
            Ok(f) => match self.opted_out(&f.recipient).await {
                Ok(Some(reason)) => format!("not sent as SMS: the recipient is on the suppression list ({reason})"),
                Ok(None) => {
                    outcome.fallback = Some(f);
                    "queued as an SMS (its id is in fallback_message_id)".to_owned()
                }
                // Unsure whether they opted out: do not message them.
                Err(e) => format!("not sent as SMS: the suppression list could not be read ({e})"),
            },
        };
        tracing::info!(message_id = msg.id, fallback = %note, "WhatsApp could not reach the recipient");
        if let Some(text) = outcome.completion.error.as_mut() {
            if let Some(mut col) = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .as_ref()
                .and_then(ErrorColumn::from_value)
            {
                col.fallback = Some(note);
                *text = col.to_json();
            }
        }
        outcome
    }

    /// Whether this number is suppressed for SMS or WhatsApp, and why.
    async fn opted_out(&self, phone: &PhoneNumber) -> crate::store::Result<Option<String>> {
        let sms = Recipient::Sms(phone.clone());
        let whatsapp = Recipient::Whatsapp(
            crate::domain::WhatsAppAddress::parse(phone.as_str()).expect("an E.164 number is a WhatsApp address"),
        );
        let found = self.store.suppressed_among(&[&sms, &whatsapp]).await?;
        Ok(found.into_values().next())
    }
}
