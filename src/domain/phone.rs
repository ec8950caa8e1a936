//! E.164 phone numbers and WhatsApp addresses.

use std::fmt;

use serde::Serialize;

/// A phone number in E.164 form: `+`, a country code that does not start
/// with 0, and at most 15 digits in all. Only this parser builds one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone number is empty")]
    Empty,
    #[error("phone number {0:?} must be in E.164 form, starting with + and the country code (e.g. +15551234567)")]
    MissingPlus(String),
    #[error("phone number {0:?} contains {1:?}; only digits may follow the +")]
    BadCharacter(String, char),
    #[error("phone number {0:?} has a country code starting with 0")]
    LeadingZero(String),
    #[error("phone number {0:?} has {1} digits; E.164 allows 7 to 15")]
    BadLength(String, usize),
}

/// Separators people type inside numbers; they carry no meaning and are dropped.
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}')
}

impl PhoneNumber {
    pub fn parse(input: &str) -> Result<PhoneNumber, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        let Some(rest) = trimmed.strip_prefix('+') else {
            return Err(PhoneError::MissingPlus(trimmed.to_owned()));
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
            } else if !is_separator(c) {
                return Err(PhoneError::BadCharacter(trimmed.to_owned(), c));
            }
        }
        if digits.starts_with('0') {
            return Err(PhoneError::LeadingZero(trimmed.to_owned()));
        }
        if !(7..=15).contains(&digits.len()) {
            return Err(PhoneError::BadLength(trimmed.to_owned(), digits.len()));
        }
        Ok(PhoneNumber(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with all but the last four digits hidden, for logs.
    pub fn masked(&self) -> String {
        mask_tail(&self.0, 4)
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Keep the first character and the last `keep` characters; star the rest.
pub(crate) fn mask_tail(s: &str, keep: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= keep + 1 {
        return "*".repeat(chars.len());
    }
    let mut out = String::with_capacity(chars.len());
    out.push(chars[0]);
    for _ in 1..chars.len() - keep {
        out.push('*');
    }
    out.extend(&chars[chars.len() - keep..]);
    out
}

/// A WhatsApp address: `whatsapp:` + an E.164 number. Parsed from either
/// form; always stored and sent with the prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct WhatsAppAddress(PhoneNumber);

pub const WHATSAPP_PREFIX: &str = "whatsapp:";

impl WhatsAppAddress {
    pub fn parse(input: &str) -> Result<WhatsAppAddress, PhoneError> {
        let trimmed = input.trim();
        let number = match trimmed.get(..WHATSAPP_PREFIX.len()) {
            Some(p) if p.eq_ignore_ascii_case(WHATSAPP_PREFIX) => &trimmed[WHATSAPP_PREFIX.len()..],
            _ => trimmed,
        };
        PhoneNumber::parse(number).map(WhatsAppAddress)
    }

    pub fn number(&self) -> &PhoneNumber {
        &self.0
    }

    pub fn masked(&self) -> String {
        format!("{WHATSAPP_PREFIX}{}", self.0.masked())
    }
}

impl fmt::Display for WhatsAppAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{WHATSAPP_PREFIX}{}", self.0)
    }
}

impl From<WhatsAppAddress> for String {
    fn from(w: WhatsAppAddress) -> String {
        w.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_e164_and_normalises_separators() {
        assert_eq!(PhoneNumber::parse("+15551234567").unwrap().as_str(), "+15551234567");
        assert_eq!(
            PhoneNumber::parse(" +1 (555) 123-4567 ").unwrap().as_str(),
            "+15551234567"
        );
        assert_eq!(
            PhoneNumber::parse("+44.20.7946.0958").unwrap().as_str(),
            "+442079460958"
        );
        assert_eq!(PhoneNumber::parse("+6834002").unwrap().as_str(), "+6834002");
        assert_eq!(
            PhoneNumber::parse("+123456789012345").unwrap().as_str(),
            "+123456789012345"
        );
    }

    #[test]
    fn rejects_non_e164_with_a_reason() {
        assert_eq!(PhoneNumber::parse(""), Err(PhoneError::Empty));
        assert!(matches!(
            PhoneNumber::parse("5551234567"),
            Err(PhoneError::MissingPlus(_))
        ));
        assert!(matches!(
            PhoneNumber::parse("+1555abc4567"),
            Err(PhoneError::BadCharacter(_, 'a'))
        ));
        assert!(matches!(
            PhoneNumber::parse("+0551234567"),
            Err(PhoneError::LeadingZero(_))
        ));
        assert!(matches!(
            PhoneNumber::parse("+123456"),
            Err(PhoneError::BadLength(_, 6))
        ));
        assert!(matches!(
            PhoneNumber::parse("+1234567890123456"),
            Err(PhoneError::BadLength(_, 16))
        ));
        assert!(matches!(
            PhoneNumber::parse("++15551234567"),
            Err(PhoneError::BadCharacter(_, '+'))
        ));
        let msg = PhoneNumber::parse("555").unwrap_err().to_string();
        assert!(msg.contains("E.164"), "{msg}");
    }

    #[test]
    fn whatsapp_accepts_both_forms_and_stores_prefixed() {
        let a = WhatsAppAddress::parse("whatsapp:+15551234567").unwrap();
        let b = WhatsAppAddress::parse("+15551234567").unwrap();
        let c = WhatsAppAddress::parse("WhatsApp:+1 555 123 4567").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.to_string(), "whatsapp:+15551234567");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"whatsapp:+15551234567\"");
        assert!(WhatsAppAddress::parse("whatsapp:15551234567").is_err());
        assert!(WhatsAppAddress::parse("whatsapp:").is_err());
    }

    #[test]
    fn masking_keeps_only_the_tail() {
        let p = PhoneNumber::parse("+15551234567").unwrap();
        assert_eq!(p.masked(), "+*******4567");
        assert_eq!(
            WhatsAppAddress::parse("+15551234567").unwrap().masked(),
            "whatsapp:+*******4567"
        );
        assert_eq!(mask_tail("abc", 4), "***");
    }
}
