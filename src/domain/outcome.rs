//! Words Herald persists about sends: the outcome of each provider call
//! (`notification_attempts.outcome`) and the `error` column's JSON. Both are
//! public contracts: operators' SQL and the POS read them.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What one provider call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The provider accepted the message.
    Sent,
    /// Refused for good.
    Permanent,
    /// Failed; may succeed later.
    Retryable,
    /// The provider asked us to slow down.
    RateLimited,
    /// No answer we can trust (timeout, 5xx after sending): it may have gone out.
    Unknown,
    /// An earlier attempt with an unknown outcome was found at the provider.
    Reconciled,
    /// The provider refused Herald's credentials; the message waits.
    Unauthorized,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 7] = [
        AttemptOutcome::Sent,
        AttemptOutcome::Permanent,
        AttemptOutcome::Retryable,
        AttemptOutcome::RateLimited,
        AttemptOutcome::Unknown,
        AttemptOutcome::Reconciled,
        AttemptOutcome::Unauthorized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Sent => "sent",
            AttemptOutcome::Permanent => "permanent",
            AttemptOutcome::Retryable => "retryable",
            AttemptOutcome::RateLimited => "rate_limited",
            AttemptOutcome::Unknown => "unknown",
            AttemptOutcome::Reconciled => "reconciled",
            AttemptOutcome::Unauthorized => "unauthorized",
        }
    }

    pub fn parse(s: &str) -> Option<AttemptOutcome> {
        AttemptOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` column: what went wrong, where, and what happens next.
///
/// ```json
/// {"code":"21211","message":"The 'To' number is not a valid phone number.",
///  "provider":"twilio","retryable":false,"attempt":1,"at":"2026-11-25T12:00:00.000Z","status":400}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorColumn {
    /// The provider's code (`21211`, `550`) or Herald's (`timeout`,
    /// `invalid_message`, `suppressed`…).
    pub code: String,
    pub message: String,
    /// The provider that failed; null when no provider was called.
    pub provider: Option<String>,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// The attempt number that failed (0: before any provider call).
    pub attempt: i32,
    /// When (Herald's timestamp form).
    pub at: String,
    /// HTTP status or SMTP reply code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The message may have gone out even though this attempt failed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub outcome_unknown: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// Operators should be told (bad credentials, account suspended).
    #[serde(default, skip_serializing_if = "is_false")]
    pub alert: bool,
    /// The message field at fault (invalid messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// WhatsApp messages: what the SMS fallback did (`sent as SMS message
    /// 43`, or why it could not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ErrorColumn {
    /// An error with no provider call behind it.
    pub fn unsent(code: &str, message: impl Into<String>, attempt: i32, at: DateTime<Utc>) -> ErrorColumn {
        ErrorColumn {
            code: code.to_owned(),
            message: message.into(),
            provider: None,
            retryable: false,
            attempt,
            at: crate::clock::format_ts(at),
            status: None,
            outcome_unknown: false,
            rate_limited_until: None,
            next_attempt_at: None,
            alert: false,
            field: None,
            fallback: None,
        }
    }

    /// The JSON text stored in the column (NUL, which no backend's JSON
    /// type stores, replaced by U+FFFD: a provider's text is kept whatever
    /// it holds).
    pub fn to_json(&self) -> String {
        let scrub = |s: &str| super::scrub_nul(s).into_owned();
        let clean = ErrorColumn {
            code: scrub(&self.code),
            message: scrub(&self.message),
            field: self.field.as_deref().map(scrub),
            ..self.clone()
        };
        serde_json::to_string(&clean).expect("error column serializes")
    }

    /// Read the column back; `None` for text that is not Herald's shape
    /// (another program may have written it).
    pub fn from_value(v: &serde_json::Value) -> Option<ErrorColumn> {
        serde_json::from_value(v.clone()).ok()
    }

    /// When the attempt ended, as a time.
    pub fn at_time(&self) -> Option<DateTime<Utc>> {
        crate::clock::parse_ts(&self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_outcomes_round_trip() {
        for o in AttemptOutcome::ALL {
            assert_eq!(AttemptOutcome::parse(o.as_str()), Some(o));
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        assert_eq!(AttemptOutcome::parse("exploded"), None);
    }

    #[test]
    fn the_error_column_keeps_its_public_shape() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .to_utc();
        let mut e = ErrorColumn::unsent("invalid_message", "recipient: bad", 0, at);
        e.field = Some("recipient".into());
        let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "invalid_message", "message": "recipient: bad", "provider": null,
                "retryable": false, "attempt": 0, "at": "2026-11-25T12:00:00.000Z", "field": "recipient"})
        );
        assert_eq!(ErrorColumn::from_value(&json).as_ref(), Some(&e));
        e.outcome_unknown = true;
        e.provider = Some("twilio".into());
        let back = ErrorColumn::from_value(&serde_json::from_str(&e.to_json()).unwrap()).unwrap();
        assert!(back.outcome_unknown && back.at_time() == Some(at));
        assert_eq!(ErrorColumn::from_value(&serde_json::json!("boom")), None);
    }
}
