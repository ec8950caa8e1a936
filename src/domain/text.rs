//! Rules every text field shares, whatever it holds: no NUL anywhere (no
//! database stores it the same way: PostgreSQL refuses it in text and
//! JSON, SQLite keeps it and C programs stop reading at it), no other C0
//! control characters except tab, CR and LF in multi-line text, and times
//! within years 1970 to 9999 UTC (what every backend stores and sorts
//! alike).

use chrono::{DateTime, TimeZone, Utc};

use super::ValidationError;

/// Which control characters a field may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// A body: tab, CR and LF are allowed.
    MultiLine,
    /// A name, a subject, an address: tab only.
    SingleLine,
}

/// Refuse `value` for `field` if it holds a control character `kind`
/// does not allow; the error names the character and its position.
pub fn check_text(field: &'static str, value: &str, kind: TextKind) -> Result<(), ValidationError> {
    let allowed = |c: char| match kind {
        TextKind::MultiLine => matches!(c, '\t' | '\r' | '\n'),
        TextKind::SingleLine => c == '\t',
    };
    match value
        .chars()
        .enumerate()
        .find(|(_, c)| (*c < ' ' || *c == '\u{7f}') && !allowed(*c))
    {
        None => Ok(()),
        Some((at, c)) => Err(ValidationError::new(
            field,
            format!(
                "{field} contains the control character U+{:04X} at character {}; {}",
                c as u32,
                at + 1,
                match kind {
                    TextKind::MultiLine => "only tab, CR and LF are allowed",
                    TextKind::SingleLine => "it must be a single line of printable text",
                }
            ),
        )),
    }
}

/// Refuse a JSON value holding NUL in any string or key (PostgreSQL's
/// `jsonb` cannot store it); other characters are the caller's business.
pub fn check_json(field: &'static str, value: &serde_json::Value) -> Result<(), ValidationError> {
    fn find(v: &serde_json::Value, path: &mut String) -> bool {
        match v {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = find(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            serde_json::Value::Object(map) => map.iter().any(|(k, item)| {
                let len = path.len();
                path.push('.');
                path.push_str(&k.replace('\0', "\\u0000"));
                let found = k.contains('\0') || find(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = field.to_owned();
    if find(value, &mut path) {
        return Err(ValidationError::new(
            field,
            format!("{path} contains a NUL character (U+0000), which cannot be stored"),
        ));
    }
    Ok(())
}

/// `s` with every NUL replaced by U+FFFD, for text Herald must store
/// whatever it holds (a provider's error message, a receipt).
pub fn scrub_nul(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// [`scrub_nul`] for every string and key in a JSON value.
pub fn scrub_json_nul(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.contains('\0') => *s = scrub_nul(s).into_owned(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(scrub_json_nul),
        serde_json::Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                for (k, item) in old {
                    map.insert(scrub_nul(&k).into_owned(), item);
                }
            }
            map.values_mut().for_each(scrub_json_nul);
        }
        _ => {}
    }
}

/// The earliest time Herald accepts.
pub fn earliest_instant() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH
}

/// The latest time Herald accepts.
pub fn latest_instant() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
        .single()
        .expect("a valid date")
}

/// An RFC 3339 time with an offset, within years 1970 to 9999 once in UTC.
pub fn parse_instant(field: &'static str, value: &str) -> Result<DateTime<Utc>, ValidationError> {
    let s = value.trim();
    let t = DateTime::parse_from_rfc3339(s).map_err(|_| {
        ValidationError::new(
            field,
            format!(
                "{:?} is not an RFC 3339 time with an offset, e.g. 2026-12-01T09:00:00Z",
                s.chars().take(64).collect::<String>()
            ),
        )
    })?;
    let utc = t.with_timezone(&Utc);
    if utc < earliest_instant() || utc > latest_instant() {
        return Err(ValidationError::new(
            field,
            format!("{s} is {utc} in UTC; times must be from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z"),
        ));
    }
    Ok(utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_by_kind() {
        assert!(check_text("body", "tab\there\r\nnext line", TextKind::MultiLine).is_ok());
        for bad in ["bad\0", "bell\u{7}", "esc\u{1b}[31m", "del\u{7f}"] {
            let e = check_text("body", bad, TextKind::MultiLine).unwrap_err();
            assert_eq!(e.field, "body");
            assert!(e.message.contains("U+00"), "{e}");
        }
        assert!(check_text("subject", "a\tb", TextKind::SingleLine).is_ok());
        for bad in ["a\nb", "a\rb", "a\0"] {
            assert!(check_text("subject", bad, TextKind::SingleLine).is_err(), "{bad:?}");
        }
        let e = check_text("body", "abc\u{1}", TextKind::MultiLine).unwrap_err();
        assert!(e.message.contains("U+0001 at character 4"), "{e}");
    }

    #[test]
    fn nul_anywhere_in_json_is_named_by_its_path() {
        let ok = serde_json::json!({"a": ["x", {"b": "tab\tok"}], "n": 1});
        assert!(check_json("metadata", &ok).is_ok());
        let e = check_json("metadata", &serde_json::json!({"a": ["x", {"b": "bad\u{0}"}]})).unwrap_err();
        assert_eq!(e.field, "metadata");
        assert!(e.message.starts_with("metadata.a[1].b contains a NUL"), "{e}");
        let e = check_json("data", &serde_json::json!({"k\u{0}": 1})).unwrap_err();
        assert!(e.message.starts_with("data.k\\u0000 contains"), "{e}");
    }

    #[test]
    fn scrubbing_replaces_nul_only() {
        assert_eq!(scrub_nul("a\0b\tc"), "a\u{fffd}b\tc");
        let mut v = serde_json::json!({"k\u{0}": ["x\u{0}", 1], "ok": "fine"});
        scrub_json_nul(&mut v);
        assert_eq!(v, serde_json::json!({"k\u{fffd}": ["x\u{fffd}", 1], "ok": "fine"}));
    }

    #[test]
    fn instants_within_1970_to_9999_utc() {
        assert_eq!(
            parse_instant("send_at", " 2026-12-01T09:00:00-03:00 ").unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
        );
        assert!(parse_instant("send_at", "1970-01-01T00:00:00Z").is_ok());
        assert!(parse_instant("send_at", "9999-12-31T23:59:59Z").is_ok());
        for bad in [
            "9999-12-31T23:59:59-23:59",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00+00:01",
            "0001-01-01T00:00:00Z",
        ] {
            let e = parse_instant("send_at", bad).unwrap_err();
            assert_eq!(e.field, "send_at");
            assert!(e.message.contains("1970"), "{bad}: {e}");
        }
        assert!(parse_instant("send_at", "tomorrow")
            .unwrap_err()
            .message
            .contains("RFC 3339"));
    }
}
