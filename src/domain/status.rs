//! The `status` column's words.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ValidationError;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
