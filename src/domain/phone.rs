//! Phone numbers and WhatsApp addresses, checked against each country's
//! numbering plan (Google's libphonenumber data, through the `phonenumber`
//! crate) and stored in E.164 form.
//!
//! A number in international form (`+55 11 91234-5678`) is read as it is. A
//! national number (`(11) 91234-5678`) is read in the country set by
//! `DEFAULT_COUNTRY` (see [`set_default_country`]); without one it is refused.

use std::fmt;
use std::sync::OnceLock;

use serde::Serialize;

/// A phone number valid in its country, in E.164 form (`+`, the country
/// code, the national number). Only this parser builds one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone number is empty")]
    Empty,
    #[error("phone number {0:?} must be in international form, starting with + and the country code (e.g. +5511912345678); or set DEFAULT_COUNTRY to read national numbers")]
    MissingPlus(String),
    #[error("phone number {0:?} contains {1:?}; only digits, spaces, dashes, dots and brackets may follow the +")]
    BadCharacter(String, char),
    #[error("phone number {0:?} has a country code starting with 0")]
    LeadingZero(String),
    #[error("phone number {0:?} has {1} digits; E.164 allows 7 to 15")]
    BadLength(String, usize),
    #[error("phone number {0:?} is not a valid number{1}")]
    Invalid(String, String),
}

/// Separators people type inside numbers; they carry no meaning and are dropped.
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '(' | ')' | '/' | '\u{a0}')
}

static DEFAULT_COUNTRY: OnceLock<phonenumber::country::Id> = OnceLock::new();

/// Read national numbers (without `+`) as numbers of `country` (ISO 3166
/// code such as `BR` or `US`), for the rest of the process. Set once, at
/// start-up, from `DEFAULT_COUNTRY`.
pub fn set_default_country(country: &str) -> Result<(), String> {
    let id = parse_country(country)?;
    match DEFAULT_COUNTRY.set(id) {
        Ok(()) => Ok(()),
        Err(_) if DEFAULT_COUNTRY.get() == Some(&id) => Ok(()),
        Err(_) => Err("DEFAULT_COUNTRY is already set to another country".to_owned()),
    }
}

/// An ISO 3166 two-letter country code libphonenumber knows.
pub fn parse_country(country: &str) -> Result<phonenumber::country::Id, String> {
    country
        .trim()
        .to_ascii_uppercase()
        .parse::<phonenumber::country::Id>()
        .map_err(|_| format!("{country:?} is not a two-letter country code such as BR, US or PT"))
}

impl PhoneNumber {
    pub fn parse(input: &str) -> Result<PhoneNumber, PhoneError> {
        PhoneNumber::parse_in(input, DEFAULT_COUNTRY.get().copied())
    }

    /// [`PhoneNumber::parse`], reading national numbers in `country`.
    pub fn parse_in(input: &str, country: Option<phonenumber::country::Id>) -> Result<PhoneNumber, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        let (international, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
            } else if !is_separator(c) {
                return Err(PhoneError::BadCharacter(trimmed.to_owned(), c));
            }
        }
        let region = match (international, country) {
            (true, _) => {
                if digits.starts_with('0') {
                    return Err(PhoneError::LeadingZero(trimmed.to_owned()));
                }
                if !(7..=15).contains(&digits.len()) {
                    return Err(PhoneError::BadLength(trimmed.to_owned(), digits.len()));
                }
                None
            }
            (false, Some(c)) => Some(c),
            (false, None) => return Err(PhoneError::MissingPlus(trimmed.to_owned())),
        };
        let text = if international { format!("+{digits}") } else { digits };
        let invalid = || {
            let in_country = region.map(|c| format!(" in {c:?}")).unwrap_or_default();
            PhoneError::Invalid(trimmed.to_owned(), in_country)
        };
        let number = phonenumber::parse(region, &text).map_err(|_| invalid())?;
        if !phonenumber::is_valid(&number) {
            return Err(invalid());
        }
        Ok(PhoneNumber(number.format().mode(phonenumber::Mode::E164).to_string()))
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

    fn country(c: &str) -> Option<phonenumber::country::Id> {
        Some(parse_country(c).unwrap())
    }

    #[test]
    fn accepts_valid_international_numbers_and_normalises_separators() {
        assert_eq!(PhoneNumber::parse("+14155552671").unwrap().as_str(), "+14155552671");
        assert_eq!(
            PhoneNumber::parse(" +1 (415) 555-2671 ").unwrap().as_str(),
            "+14155552671"
        );
        assert_eq!(
            PhoneNumber::parse("+44.20.7183.8750").unwrap().as_str(),
            "+442071838750"
        );
        assert_eq!(
            PhoneNumber::parse("+55 11 91234-5678").unwrap().as_str(),
            "+5511912345678"
        );
        // Twilio's test numbers are valid numbers too.
        assert!(PhoneNumber::parse("+15005550006").is_ok());
    }

    #[test]
    fn national_numbers_are_read_in_the_default_country() {
        for (c, national, e164) in [
            ("BR", "(11) 91234-5678", "+5511912345678"),
            ("US", "(415) 555-2671", "+14155552671"),
            ("DE", "030 1234567", "+49301234567"),
            ("PT", "912 345 678", "+351912345678"),
            ("GB", "020 7183 8750", "+442071838750"),
        ] {
            assert_eq!(
                PhoneNumber::parse_in(national, country(c)).unwrap().as_str(),
                e164,
                "{c} {national}"
            );
            // An international number stays what it is in any country.
            assert_eq!(PhoneNumber::parse_in(e164, country("BR")).unwrap().as_str(), e164);
        }
    }

    #[test]
    fn numbers_not_valid_for_their_country_are_refused_with_a_reason() {
        assert_eq!(PhoneNumber::parse(""), Err(PhoneError::Empty));
        let e = PhoneNumber::parse_in("555-1234", country("US")).unwrap_err();
        assert!(matches!(e, PhoneError::Invalid(..)), "{e}");
        assert!(e.to_string().contains("not a valid number in US"), "{e}");
        // 555 is not an area code in use.
        assert!(matches!(
            PhoneNumber::parse("+15551234567"),
            Err(PhoneError::Invalid(..))
        ));
        assert!(matches!(
            PhoneNumber::parse_in("(11) 1234", country("BR")),
            Err(PhoneError::Invalid(..))
        ));
    }

    #[test]
    fn rejects_what_is_not_a_number_with_a_reason() {
        let msg = PhoneNumber::parse_in("4155552671", None).unwrap_err().to_string();
        assert!(msg.contains("DEFAULT_COUNTRY"), "{msg}");
        assert!(matches!(
            PhoneNumber::parse("+1415abc2671"),
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
            PhoneNumber::parse("++14155552671"),
            Err(PhoneError::BadCharacter(_, '+'))
        ));
        assert!(parse_country("XX").is_err() && parse_country("br").is_ok());
    }

    #[test]
    fn whatsapp_accepts_both_forms_and_stores_prefixed() {
        let a = WhatsAppAddress::parse("whatsapp:+14155552671").unwrap();
        let b = WhatsAppAddress::parse("+14155552671").unwrap();
        let c = WhatsAppAddress::parse("WhatsApp:+1 415 555 2671").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.to_string(), "whatsapp:+14155552671");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"whatsapp:+14155552671\"");
        assert!(WhatsAppAddress::parse("whatsapp:14155552671").is_err());
        assert!(WhatsAppAddress::parse("whatsapp:").is_err());
    }

    #[test]
    fn masking_keeps_only_the_tail() {
        let p = PhoneNumber::parse("+14155552671").unwrap();
        assert_eq!(p.masked(), "+*******2671");
        assert_eq!(
            WhatsAppAddress::parse("+14155552671").unwrap().masked(),
            "whatsapp:+*******2671"
        );
        assert_eq!(mask_tail("abc", 4), "***");
    }
}
