//! API keys: `Authorization: Bearer <key>` on every `/api` route.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;

/// `Authorization: Bearer <key>`, compared in constant time with every
/// configured key. No keys configured: open (loopback-only, see `serve`).
/// The handler learns which key it was (as a [`Caller`]), never the key.
pub(super) async fn require_api_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if state.api_keys.is_empty() {
        req.extensions_mut().insert(Caller("open".into()));
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    if key_matches(&state.api_keys, presented) {
        let caller = Caller::of(presented);
        req.extensions_mut().insert(caller);
        next.run(req).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// Who called: a fingerprint of the API key used (the first 16 hex digits
/// of its SHA-256), so that what one key does (its idempotency keys) is
/// kept apart from another's without storing the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Caller(pub String);

impl Caller {
    fn of(key: &str) -> Caller {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key.as_bytes());
        Caller(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
    }
}

/// The token of a `Bearer` credential; the scheme name is case-insensitive
/// (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compare against every key without stopping early, each in constant time.
pub(super) fn key_matches(keys: &[SecretString], presented: &str) -> bool {
    let mut ok = subtle::Choice::from(0u8);
    for k in keys {
        let k = k.expose_secret().as_bytes();
        // Lengths are not secret (keys are long random strings); contents are.
        if k.len() == presented.len() {
            ok |= k.ct_eq(presented.as_bytes());
        }
    }
    bool::from(ok) && !presented.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_are_told_apart_without_the_key() {
        let a = Caller::of("k1-0123456789abcdef");
        assert_eq!(a, Caller::of("k1-0123456789abcdef"));
        assert_ne!(a, Caller::of("k2-0123456789abcdef"));
        assert_eq!(a.0.len(), 16);
        assert!(!a.0.contains("k1"));
    }

    #[test]
    fn keys_compare_whole_and_exact() {
        let keys = vec![
            SecretString::from("k1-0123456789abcdef".to_owned()),
            SecretString::from("k2-0123456789abcdef".to_owned()),
        ];
        assert!(key_matches(&keys, "k1-0123456789abcdef"));
        assert!(key_matches(&keys, "k2-0123456789abcdef"));
        assert!(!key_matches(&keys, "k1-0123456789abcdeg"));
        assert!(!key_matches(&keys, "k1-0123456789abcde"));
        assert!(!key_matches(&keys, ""));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
