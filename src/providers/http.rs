//! What the HTTP providers share: one client, and how transport failures
//! and `Retry-After` are read.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;

use super::SendError;

/// How long to pause a provider that said 429 without saying for how long.
pub(crate) const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(5);

/// Largest response body read from a provider.
const MAX_BODY: usize = 256 * 1024;

pub(crate) fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        // A redirect would carry the request (and the custom provider's
        // signature headers) somewhere nobody configured: a 3xx is an answer.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client")
}

/// A request that failed without an HTTP answer. A connection that was never
/// made cannot have delivered anything; a timeout or a broken connection after
/// the request was written may have.
pub(crate) fn transport_error(e: &reqwest::Error) -> SendError {
    let text = super::error_chain(e);
    if e.is_connect() {
        SendError::retryable("connection", format!("could not connect: {text}"))
    } else if e.is_timeout() {
        SendError::retryable("timeout", format!("no answer in time: {text}")).with_outcome_unknown()
    } else {
        SendError::retryable("network", text).with_outcome_unknown()
    }
}

/// Send a request, hiding the URL from any error (it may carry an account id).
pub(crate) async fn send(req: reqwest::RequestBuilder) -> Result<(u16, HeaderMap, Vec<u8>), SendError> {
    let resp = req.send().await.map_err(|e| transport_error(&e.without_url()))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = match read_body(resp).await {
        Ok(b) => b,
        // The answer's status arrived; only its body is missing.
        Err(_) if (200..300).contains(&status) => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok((status, headers, body))
}

async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, SendError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(&e.without_url()))? {
        let room = MAX_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room == 0 {
            break;
        }
    }
    Ok(body)
}

/// What an HTTP error status means, for any provider: 429 = slow down
/// (until `retry_at`, or a short default pause); 401/403 = the provider
/// refused our credentials (the provider pauses, the message waits, and
/// operators hear of it); 503 = retry, not acted on (the service was
/// unavailable: another provider may be tried at once); any other 5xx =
/// retry, and the request may have been acted on; any other status =
/// permanent.
pub(crate) fn classify_status(
    status: u16,
    code: String,
    message: String,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> SendError {
    let err = match status {
        429 => {
            let pause = chrono::Duration::from_std(DEFAULT_RATE_LIMIT_PAUSE).unwrap_or_default();
            SendError::rate_limited(retry_at.unwrap_or(now + pause), code, message)
        }
        401 | 403 => SendError::unauthorized(code, message),
        503 => SendError::retryable(code, message),
        s if s >= 500 => SendError::retryable(code, message).with_outcome_unknown(),
        _ => SendError::permanent(code, message),
    };
    err.with_status(status)
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(now + chrono::Duration::seconds(secs.min(86_400) as i64));
    }
    DateTime::parse_from_rfc2822(v).ok().map(|t| t.with_timezone(&Utc))
}

/// The start of a body for an error message: provider error text is data,
/// so keep it short and on one line.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 300 {
        one_line.chars().take(300).collect::<String>() + "…"
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn retry_after_seconds_or_date() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert("retry-after", "30".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(now + chrono::Duration::seconds(30)));
        h.insert("retry-after", "Wed, 25 Nov 2026 12:01:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(now + chrono::Duration::seconds(60)));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn snippets_are_short_single_lines() {
        assert_eq!(snippet(b"a\n  b\tc"), "a b c");
        assert!(snippet(&[b'x'; 1000]).chars().count() <= 301);
    }
}
