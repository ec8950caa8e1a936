//! How a failed send must be treated: the one word a provider gives the
//! processor about its failures.

use chrono::{DateTime, Utc};

/// How the processor must treat a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Sending the same message again cannot succeed: fail it now.
    Permanent,
    /// May succeed later: retry with backoff while retries remain.
    Retryable,
    /// The provider asked us to slow down: try again at (or after) `until`.
    /// Does not use up a retry.
    RateLimited { until: DateTime<Utc> },
    /// The provider refused Herald's credentials or account (bad key,
    /// suspended account, SMTP login refused): nothing can go through it
    /// until an operator fixes that. The message keeps its retries and
    /// waits; the provider is paused and tried again a minute later.
    Unauthorized,
}

impl FailureClass {
    pub fn is_retryable(self) -> bool {
        !matches!(self, FailureClass::Permanent)
    }
}
