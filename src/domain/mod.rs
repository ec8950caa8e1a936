//! Pure domain types: no I/O. Everything that reaches the store or a
//! provider has been through one of these parsers.

mod channel;
mod content;
mod email;
mod event;
mod failure;
mod fallback;
mod message;
mod outcome;
mod phone;
pub mod provider_name;
mod segments;
mod status;
mod template;
mod text;

pub use channel::{Channel, ChannelError};
pub use content::{Content, ContentInput, ProviderTemplate, MAX_EMAIL_PART_BYTES, MAX_TEXT_CHARS};
pub use email::{EmailAddress, EmailError};
pub use event::{EndpointUrl, EventFilter, EventType};
pub use failure::FailureClass;
pub use fallback::{FallbackPolicy, SmsFallback};
pub use message::{
    parse_channel_and_recipient, parse_metadata, parse_metadata_text, NewMessage, OutgoingMessage, RawMessage,
    Recipient, TemplateRef, ValidationError,
};
pub use outcome::{AttemptOutcome, ErrorColumn};
pub use phone::{parse_country, set_default_country, PhoneError, PhoneNumber, WhatsAppAddress, WHATSAPP_PREFIX};
pub use segments::sms_segments;
pub use status::MessageStatus;
pub use template::{Locale, TemplateDraft, TemplateName, TemplateParts};
pub use text::{
    check_json, check_text, earliest_instant, latest_instant, parse_instant, scrub_json_nul, scrub_nul, TextKind,
};
