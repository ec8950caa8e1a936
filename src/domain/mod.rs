//! Pure domain types: no I/O. Everything that reaches the store or a
//! provider has been through one of these parsers.

mod channel;
mod email;
mod message;
mod phone;

pub use channel::{Channel, ChannelError};
pub use email::{EmailAddress, EmailError};
pub use message::{
    parse_metadata, parse_metadata_text, Content, ContentInput, MessageStatus, NewMessage, OutgoingMessage,
    ProviderTemplate, RawMessage, Recipient, TemplateRef, ValidationError, MAX_TEXT_CHARS,
};
pub use phone::{PhoneError, PhoneNumber, WhatsAppAddress, WHATSAPP_PREFIX};
