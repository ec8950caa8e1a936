//! Schemas the OpenAPI document cannot derive from Rust types: fields
//! that are plain strings in Rust (so that a bad value gets Herald's own
//! error naming the field) but take a fixed set of values.

use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Object;

use crate::domain::{Channel, MessageStatus};

fn one_of(values: impl IntoIterator<Item = &'static str>, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .description(Some(description))
        .build()
}

/// `sms`, `whatsapp` or `email`.
pub(super) fn channel() -> Object {
    one_of(Channel::ALL.map(Channel::as_str), "sms, whatsapp or email")
}

/// A message status.
pub(super) fn status() -> Object {
    one_of(MessageStatus::ALL.map(MessageStatus::as_str), "A message status")
}
