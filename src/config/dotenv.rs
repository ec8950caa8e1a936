//! `.env` files, read the way Node's `dotenv` reads them, so Herald can share
//! a POS's `backend/.env`:
//!
//! - `KEY=value`, `export KEY=value`, and `KEY: value`;
//! - unquoted values run to the end of the line or a `#`, and are trimmed
//!   (`EMAIL_FROM_NAME=Your Company Name` is `Your Company Name`);
//! - `'single'`, `"double"` and `` `backtick` `` quotes may span lines;
//!   inside double quotes `\n` and `\r` are a newline and a carriage return;
//! - `#` starts a comment; blank lines are ignored.
//!
//! An unterminated quote is an error naming the file, line and variable. A
//! line that is not an assignment is reported as a warning (dotenv skips it).

use std::fmt;
use std::path::Path;

/// A `.env` file that cannot be read as intended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotenvError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for DotenvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}: {}", self.file, self.line, self.message)
    }
}

/// What a file holds: the assignments in order, and lines that were skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dotenv {
    pub vars: Vec<(String, String)>,
    /// `(line number, why)` for lines that are not assignments.
    pub skipped: Vec<(usize, String)>,
}

/// Read `path` if it exists (`Ok(None)` if it does not).
pub fn load(path: &Path) -> Result<Option<Dotenv>, DotenvError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            parse(&text, &path.display().to_string()).map(Some)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DotenvError {
            file: path.display().to_string(),
            line: 0,
            message: format!("cannot be read: {e}"),
        }),
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Parse the text of a `.env` file named `file` (for messages).
pub fn parse(text: &str, file: &str) -> Result<Dotenv, DotenvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text).replace("\r\n", "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = Dotenv::default();
    let mut i = 0;
    while i < lines.len() {
        let number = i + 1;
        let line = lines[i].trim_start();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let key_len = line.find(|c: char| !is_key_char(c)).unwrap_or(line.len());
        let key = &line[..key_len];
        let rest = line[key_len..].trim_start();
        let value_text = if let Some(v) = rest.strip_prefix('=') {
            v
        } else if let Some(v) = rest.strip_prefix(':').filter(|v| v.starts_with([' ', '\t'])) {
            v
        } else {
            let why = if key.is_empty() {
                "not a KEY=value line".to_owned()
            } else {
                format!("{key} has no `=`")
            };
            out.skipped.push((number, why));
            continue;
        };
        if key.is_empty() {
            out.skipped.push((number, "no variable name before `=`".to_owned()));
            continue;
        }
        let v = value_text.trim_start();
        let quote = v.chars().next().filter(|c| matches!(c, '"' | '\'' | '`'));
        let value = match quote {
            None => {
                let end = v.find('#').unwrap_or(v.len());
                v[..end].trim().to_owned()
            }
            Some(q) => {
                // The value runs to the matching quote, possibly on a later line.
                let mut body = String::new();
                let mut rest = &v[1..];
                loop {
                    if let Some(end) = find_closing(rest, q) {
                        body.push_str(&rest[..end]);
                        break;
                    }
                    body.push_str(rest);
                    if i >= lines.len() {
                        return Err(DotenvError {
                            file: file.to_owned(),
                            line: number,
                            message: format!("{key}: the value's {q} quote is never closed"),
                        });
                    }
                    body.push('\n');
                    rest = lines[i];
                    i += 1;
                }
                if q == '"' {
                    unescape_double(&body)
                } else {
                    body
                }
            }
        };
        out.vars.push((key.to_owned(), value));
    }
    Ok(out)
}

/// The index of the closing quote `q` in `s` (a backslash escapes it).
fn find_closing(s: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == q {
            return Some(i);
        }
    }
    None
}

/// Inside double quotes: `\n` → newline, `\r` → carriage return, `\"` → `"`.
fn unescape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('"') => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        parse(text, ".env").unwrap().vars
    }

    #[test]
    fn the_integration_guides_env_file_reads_as_node_reads_it() {
        let guide = "# SMS Provider: 'twilio' | 'custom'\nSMS_PROVIDER=twilio\n\nEMAIL_FROM_ADDRESS=noreply@yourcompany.com\nEMAIL_FROM_NAME=Your Company Name\nTWILIO_WHATSAPP_NUMBER=whatsapp:+1234567890\nSMTP_SECURE=false\n";
        let v = vars(guide);
        assert_eq!(
            v,
            [
                ("SMS_PROVIDER", "twilio"),
                ("EMAIL_FROM_ADDRESS", "noreply@yourcompany.com"),
                ("EMAIL_FROM_NAME", "Your Company Name"),
                ("TWILIO_WHATSAPP_NUMBER", "whatsapp:+1234567890"),
                ("SMTP_SECURE", "false"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn quotes_exports_comments_and_multiple_lines() {
        let text = "export A=1\nB = 'single # not a comment'\nC=\"line1\\nline2\"\nD=plain # comment\r\nE=\"multi\nline\"\nF=`back`\nG: yaml style\nH=\nI=\"say \\\"hi\\\"\"\n";
        let v = vars(text);
        let get = |k: &str| v.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("A"), Some("1"));
        assert_eq!(get("B"), Some("single # not a comment"));
        assert_eq!(get("C"), Some("line1\nline2"));
        assert_eq!(get("D"), Some("plain"));
        assert_eq!(get("E"), Some("multi\nline"));
        assert_eq!(get("F"), Some("back"));
        assert_eq!(get("G"), Some("yaml style"));
        assert_eq!(get("H"), Some(""));
        assert_eq!(get("I"), Some("say \"hi\""));
    }

    #[test]
    fn an_unclosed_quote_names_file_line_and_variable() {
        let e = parse("A=1\nSECRET=\"abc\nB=2\n", "backend/.env").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(
            e.to_string(),
            "backend/.env line 2: SECRET: the value's \" quote is never closed"
        );
    }

    #[test]
    fn lines_that_are_not_assignments_are_reported_not_fatal() {
        let d = parse("A=1\njust words\n=x\n", ".env").unwrap();
        assert_eq!(d.vars.len(), 1);
        assert_eq!(d.skipped.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [2, 3]);
    }
}
