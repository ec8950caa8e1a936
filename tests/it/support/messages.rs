//! Messages and provider settings as the provider tests need them.

use herald::config::TwilioSettings;
use herald::domain::{Channel, Content, ContentInput, OutgoingMessage, PhoneNumber, Recipient, WhatsAppAddress};
use secrecy::SecretString;

use super::fakes::FakeTwilio;

/// A text message on `channel`, as the processor hands it to a provider.
pub(crate) fn out(id: i64, channel: Channel, to: &str, body: &str) -> OutgoingMessage {
    let input = ContentInput {
        body: Some(body),
        ..Default::default()
    };
    OutgoingMessage {
        id,
        attempt: 1,
        recipient: Recipient::parse(channel, to).unwrap(),
        content: Content::parse(channel, input).unwrap(),
        metadata: None,
    }
}

/// An email, as the processor hands it to a provider.
pub(crate) fn email(id: i64, to: &str, subject: &str, text: Option<&str>, html: Option<&str>) -> OutgoingMessage {
    let input = ContentInput {
        subject: Some(subject),
        body: text,
        html_body: html,
        ..Default::default()
    };
    OutgoingMessage {
        id,
        attempt: 1,
        recipient: Recipient::parse(Channel::Email, to).unwrap(),
        content: Content::parse(Channel::Email, input).unwrap(),
        metadata: None,
    }
}

/// Settings pointing at a loopback Twilio.
pub(crate) fn twilio_settings(fake: &FakeTwilio) -> TwilioSettings {
    TwilioSettings {
        api_url: fake.url.clone(),
        account_sid: fake.account_sid.clone(),
        auth_user: fake.account_sid.clone(),
        auth_secret: SecretString::from(fake.auth_token.clone()),
        auth_token: Some(SecretString::from(fake.auth_token.clone())),
        phone_number: Some(PhoneNumber::parse("+15005550006").unwrap()),
        // Configured without the prefix: Herald adds it.
        whatsapp_number: Some(WhatsAppAddress::parse("+14155238886").unwrap()),
        messaging_service_sid: None,
    }
}
