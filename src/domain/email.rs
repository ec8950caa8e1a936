//! Email addresses, parsed by the RFC 5321 mailbox grammar (dot-atom or
//! quoted local part, `@`, a host name) rather than matched by a regex.
//! Internationalised addresses (RFC 6531) are accepted: non-ASCII letters may
//! appear in the local part and in domain labels.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("email address is empty")]
    Empty,
    #[error("email address {0:?} has no @")]
    MissingAt(String),
    #[error("email address {0:?} has nothing before the @")]
    EmptyLocal(String),
    #[error("email address {0:?} has nothing after the @")]
    EmptyDomain(String),
    #[error("email address {0:?}: the part before the @ is longer than 64 characters")]
    LocalTooLong(String),
    #[error("email address {0:?} is longer than 254 characters")]
    TooLong(String),
    #[error("email address {0:?}: {1:?} is not allowed in the part before the @ (quote it or remove it)")]
    BadLocalChar(String, char),
    #[error("email address {0:?}: the part before the @ has an empty segment between dots")]
    BadDots(String),
    #[error("email address {0:?}: the quoted part before the @ is not closed")]
    UnclosedQuote(String),
    #[error("email address {0:?}: domain label {1:?} is not valid (letters, digits and inner hyphens, at most 63)")]
    BadLabel(String, String),
    #[error("email address {0:?}: the domain needs a dot (e.g. example.com)")]
    NoDot(String),
    #[error("email address {0:?}: IP address literals are not accepted; use a domain name")]
    AddressLiteral(String),
}

/// RFC 5322 `atext`, extended with any non-ASCII character (RFC 6531).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
}

fn parse_local(addr: &str, local: &str) -> Result<(), EmailError> {
    if local.is_empty() {
        return Err(EmailError::EmptyLocal(addr.to_owned()));
    }
    if local.len() > 64 {
        return Err(EmailError::LocalTooLong(addr.to_owned()));
    }
    if let Some(inner) = local.strip_prefix('"') {
        // quoted-string (RFC 5321 4.1.2, RFC 6531): printable characters,
        // with \ escaping a printable character; no control characters,
        // escaped or not (CR LF here would end a header line).
        let mut chars = inner.chars();
        loop {
            match chars.next() {
                None => return Err(EmailError::UnclosedQuote(addr.to_owned())),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    None => return Err(EmailError::UnclosedQuote(addr.to_owned())),
                    Some(c) if c.is_control() => return Err(EmailError::BadLocalChar(addr.to_owned(), c)),
                    Some(_) => {}
                },
                Some(c) if c.is_control() => return Err(EmailError::BadLocalChar(addr.to_owned(), c)),
                Some(_) => {}
            }
        }
        if let Some(c) = chars.next() {
            return Err(EmailError::BadLocalChar(addr.to_owned(), c));
        }
        return Ok(());
    }
    for segment in local.split('.') {
        if segment.is_empty() {
            return Err(EmailError::BadDots(addr.to_owned()));
        }
        if let Some(c) = segment.chars().find(|c| !is_atext(*c)) {
            return Err(EmailError::BadLocalChar(addr.to_owned(), c));
        }
    }
    Ok(())
}

fn parse_domain(addr: &str, domain: &str) -> Result<String, EmailError> {
    if domain.is_empty() {
        return Err(EmailError::EmptyDomain(addr.to_owned()));
    }
    if domain.starts_with('[') {
        return Err(EmailError::AddressLiteral(addr.to_owned()));
    }
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    for label in domain.split('.') {
        let ok = !label.is_empty()
            && label.chars().count() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-');
        if !ok {
            return Err(EmailError::BadLabel(addr.to_owned(), label.to_owned()));
        }
    }
    if !domain.contains('.') {
        return Err(EmailError::NoDot(addr.to_owned()));
    }
    Ok(domain.to_lowercase())
}

impl EmailAddress {
    pub fn parse(input: &str) -> Result<EmailAddress, EmailError> {
        let addr = input.trim();
        if addr.is_empty() {
            return Err(EmailError::Empty);
        }
        if addr.len() > 254 {
            return Err(EmailError::TooLong(addr.to_owned()));
        }
        // The domain never contains '@'; a quoted local part may.
        let Some(at) = addr.rfind('@') else {
            return Err(EmailError::MissingAt(addr.to_owned()));
        };
        let (local, domain) = (&addr[..at], &addr[at + 1..]);
        parse_local(addr, local)?;
        let domain = parse_domain(addr, domain)?;
        Ok(EmailAddress(format!("{local}@{domain}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `a***@example.com`: first character of the local part and the domain.
    pub fn masked(&self) -> String {
        match self.0.rfind('@') {
            Some(at) => {
                let first = self.0.chars().next().unwrap_or('*');
                format!("{first}***{}", &self.0[at..])
            }
            None => "***".to_owned(),
        }
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        EmailAddress::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .to_string()
    }

    #[test]
    fn accepts_real_addresses() {
        assert_eq!(ok("ana@example.com"), "ana@example.com");
        assert_eq!(
            ok("  Ana.Silva+receipts@Shop.Example.COM "),
            "Ana.Silva+receipts@shop.example.com"
        );
        assert_eq!(ok("o'neil@example.ie"), "o'neil@example.ie");
        assert_eq!(ok("\"john doe\"@example.com"), "\"john doe\"@example.com");
        assert_eq!(ok("\"a@b\"@example.com"), "\"a@b\"@example.com");
        assert_eq!(ok("josé@exämple.pt"), "josé@exämple.pt");
        assert_eq!(ok("x@sub-domain.example.co.uk."), "x@sub-domain.example.co.uk");
    }

    #[test]
    fn rejects_with_a_reason() {
        use EmailError::*;
        let e = |s: &str| EmailAddress::parse(s).unwrap_err();
        assert_eq!(e(""), Empty);
        assert!(matches!(e("ana.example.com"), MissingAt(_)));
        assert!(matches!(e("@example.com"), EmptyLocal(_)));
        assert!(matches!(e("ana@"), EmptyDomain(_)));
        assert!(matches!(e("ana..silva@example.com"), BadDots(_)));
        assert!(matches!(e(".ana@example.com"), BadDots(_)));
        assert!(matches!(e("ana silva@example.com"), BadLocalChar(_, ' ')));
        assert!(matches!(e("ana@b@example.com"), BadLocalChar(_, '@')));
        assert!(matches!(e("ana@-example.com"), BadLabel(_, _)));
        assert!(matches!(e("ana@exa_mple.com"), BadLabel(_, _)));
        assert!(matches!(e("ana@example..com"), BadLabel(_, _)));
        assert!(matches!(e("ana@localhost"), NoDot(_)));
        assert!(matches!(e("ana@[127.0.0.1]"), AddressLiteral(_)));
        assert!(matches!(e("\"ana@example.com"), UnclosedQuote(_)));
        assert!(matches!(
            e("ana\r\nBcc: x@example.com"),
            BadLocalChar(_, _) | BadLabel(_, _)
        ));
        // Quoted local parts hold printable characters only, escaped or not.
        for bad in [
            "\"a\\\r\\\nBcc: x@evil.example\"@example.com",
            "\"a\\\u{0}\"@example.com",
            "\"a\u{1b}b\"@example.com",
            "\"a\\\u{1b}b\"@example.com",
        ] {
            assert!(matches!(e(bad), BadLocalChar(_, _)), "{bad:?}");
        }
        assert!(EmailAddress::parse("\"ana \\\"silva\\\\\"@example.com").is_ok());
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(matches!(e(&long_local), LocalTooLong(_)));
        let long = format!("a@{}.com", "b".repeat(260));
        assert!(matches!(e(&long), TooLong(_)));
    }

    #[test]
    fn masks_local_part() {
        assert_eq!(
            EmailAddress::parse("ana@example.com").unwrap().masked(),
            "a***@example.com"
        );
    }
}
