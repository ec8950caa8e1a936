//! Provider names: persisted in the `provider` columns of messages,
//! attempts and receipts, and used as metric labels. A public contract.

pub const TWILIO: &str = "twilio";
pub const SENDGRID: &str = "sendgrid";
pub const SMTP: &str = "smtp";
pub const CUSTOM: &str = "custom";
/// Development: records messages, sends nothing.
pub const LOG: &str = "log";
