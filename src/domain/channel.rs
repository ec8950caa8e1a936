//! The three delivery channels. The lowercase names are persisted in the
//! `channel` column and are part of the public contract.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Whatsapp,
    Email,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Sms, Channel::Whatsapp, Channel::Email];

    /// The name stored in the database and used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
            Channel::Email => "email",
        }
    }

    /// Parse a channel name; surrounding whitespace and case are ignored.
    pub fn parse(input: &str) -> Result<Channel, ChannelError> {
        match input.trim().to_ascii_lowercase().as_str() {
            "sms" => Ok(Channel::Sms),
            "whatsapp" => Ok(Channel::Whatsapp),
            "email" => Ok(Channel::Email),
            _ => Err(ChannelError(input.to_owned())),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = ChannelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::parse(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel {0:?}: expected one of sms, whatsapp, email")]
pub struct ChannelError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Ok(c));
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{}\"", c.as_str()));
        }
        assert_eq!(Channel::Sms.as_str(), "sms");
        assert_eq!(Channel::Whatsapp.as_str(), "whatsapp");
        assert_eq!(Channel::Email.as_str(), "email");
    }

    #[test]
    fn parse_is_lenient_on_case_and_space_only() {
        assert_eq!(Channel::parse(" SMS "), Ok(Channel::Sms));
        assert!(Channel::parse("mms").is_err());
        assert!(Channel::parse("").is_err());
        let err = Channel::parse("fax").unwrap_err().to_string();
        assert!(err.contains("fax") && err.contains("sms, whatsapp, email"), "{err}");
    }
}
