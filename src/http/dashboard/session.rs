//! Signing in to the dashboard: with an API key or `DASHBOARD_PASSWORD`
//! (argon2), giving a session cookie (HttpOnly, SameSite=Strict, Secure
//! when `PUBLIC_URL` is https) whose token is stored only as a hash; every
//! form carries the session's CSRF token.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::PasswordHash;
use argon2::{Argon2, PasswordVerifier};
use axum::extract::{Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{render, secure_headers, see_other, Frame};
use crate::http::auth::key_matches;
use crate::http::AppState;

const SESSION_COOKIE: &str = "herald_session";
const LOGIN_COOKIE: &str = "herald_login";
/// Wrong secrets wait this long before the answer (and sign-ins are
/// checked one or two at a time), so guessing is slow.
const FAILED_SIGN_IN_DELAY: Duration = Duration::from_millis(400);

/// Who may sign in, and how the cookie is set.
#[derive(Clone)]
pub(in crate::http) struct DashboardAuth {
    pub password_hash: Option<SecretString>,
    pub session_ttl: Duration,
    /// `Secure` cookies (the dashboard is served over https).
    pub secure: bool,
    /// Sign-ins checked at once (argon2 takes memory and time).
    pub checks: Arc<tokio::sync::Semaphore>,
}

impl Default for DashboardAuth {
    fn default() -> Self {
        DashboardAuth {
            password_hash: None,
            session_ttl: Duration::from_secs(12 * 3600),
            secure: false,
            checks: Arc::new(tokio::sync::Semaphore::new(2)),
        }
    }
}

/// A signed-in operator (the extractor sends everyone else to sign-in).
#[derive(Debug, Clone)]
pub(in crate::http) struct Signed {
    pub csrf: String,
    token_hash: String,
}

impl Signed {
    /// Whether a form's CSRF token is this session's (constant time).
    pub(in crate::http) fn check_csrf(&self, presented: &str) -> Result<(), CsrfRefused> {
        if bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes())) && !presented.is_empty() {
            Ok(())
        } else {
            Err(CsrfRefused)
        }
    }
}

/// A form without this session's CSRF token: 403, nothing done.
#[derive(Debug)]
pub(in crate::http) struct CsrfRefused;

impl IntoResponse for CsrfRefused {
    fn into_response(self) -> Response {
        forbidden("the form has expired or did not come from this dashboard; reload the page and try again")
    }
}

fn forbidden(text: &str) -> Response {
    let mut r = (StatusCode::FORBIDDEN, text.to_owned()).into_response();
    secure_headers(&mut r);
    r
}

/// 32 random bytes, base64url.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("cookie text is ASCII")
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let to_sign_in = || {
            let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/dashboard");
            let next: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
            see_other(&format!("/dashboard/login?next={next}"))
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_sign_in());
        };
        let token_hash = hash_token(&token);
        match state.store.session(&token_hash, state.clock.now()).await {
            Ok(Some(s)) => {
                // A cross-site request never carries this cookie
                // (SameSite=Strict); refuse one whose Origin says so anyway.
                if let Some(origin) = parts.headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
                    let host = parts
                        .headers
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("");
                    let same = origin
                        .split_once("://")
                        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host));
                    if !same && origin != "null" {
                        return Err(forbidden("requests from other sites are refused"));
                    }
                }
                Ok(Signed {
                    csrf: s.csrf,
                    token_hash,
                })
            }
            Ok(None) => Err(to_sign_in()),
            Err(e) => {
                tracing::error!(error = %e, "could not read the dashboard session");
                Err((StatusCode::SERVICE_UNAVAILABLE, "the database is not answering").into_response())
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginQuery {
    next: Option<String>,
    failed: Option<String>,
}

/// Only a path inside the dashboard (never another site).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/dashboard") && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/dashboard".to_owned(),
    }
}

fn open(state: &AppState) -> bool {
    state.api_keys.is_empty() && state.dashboard.password_hash.is_none()
}

pub(super) async fn login_page(State(state): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    let csrf = random_token();
    let flash = q.failed.as_deref().map(|f| match f {
        "busy" => "Too many sign-in attempts at once; try again in a moment.",
        "expired" => "The sign-in form expired; try again.",
        _ => "That key or password is not right.",
    });
    let mut resp = render(
        "login.html",
        Frame {
            title: "Sign in",
            page: "login",
            csrf: &csrf,
            signed_in: false,
            flash: flash.map(str::to_owned),
            flash_error: flash.is_some(),
        },
        minijinja::context! { next => safe_next(q.next.as_deref()), open => open(&state) },
    );
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &csrf, 600, state.dashboard.secure),
    );
    resp
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    csrf: String,
    secret: Option<String>,
    next: Option<String>,
}

pub(super) async fn login(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    let next = safe_next(f.next.as_deref());
    let retry = |why: &str| {
        let n: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        see_other(&format!("/dashboard/login?failed={why}&next={n}"))
    };
    // The form must come from our sign-in page (its cookie and field match).
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(f.csrf.as_bytes())) {
        return retry("expired");
    }
    let Ok(_slot) = state.dashboard.checks.clone().try_acquire_owned() else {
        return retry("busy");
    };
    let secret = f.secret.unwrap_or_default();
    let ok = open(&state) || key_matches(&state.api_keys, secret.trim()) || {
        let hash = state.dashboard.password_hash.clone();
        let given = secret.clone();
        tokio::task::spawn_blocking(move || {
            hash.is_some_and(|h| {
                PasswordHash::new(h.expose_secret())
                    .is_ok_and(|parsed| Argon2::default().verify_password(given.as_bytes(), &parsed).is_ok())
            })
        })
        .await
        .unwrap_or(false)
    };
    if !ok {
        tracing::warn!("dashboard sign-in with a wrong key or password");
        tokio::time::sleep(FAILED_SIGN_IN_DELAY).await;
        return retry("wrong");
    }
    let token = random_token();
    let now = state.clock.now();
    let ttl = state.dashboard.session_ttl;
    let expires = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12));
    if let Err(e) = state
        .store
        .create_session(&hash_token(&token), &random_token(), now, expires)
        .await
    {
        tracing::error!(error = %e, "could not start a dashboard session");
        return (StatusCode::SERVICE_UNAVAILABLE, "the database is not answering").into_response();
    }
    tracing::info!("dashboard sign-in");
    let mut resp = see_other(&next);
    let secure = state.dashboard.secure;
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &token, ttl.as_secs(), secure),
    );
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0, secure));
    resp
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

pub(super) async fn logout(State(state): State<AppState>, signed: Signed, Form(f): Form<CsrfForm>) -> Response {
    if let Err(r) = signed.check_csrf(&f.csrf) {
        return r.into_response();
    }
    if let Err(e) = state.store.delete_session(&signed.token_hash).await {
        tracing::error!(error = %e, "could not end the dashboard session");
    }
    let mut resp = see_other("/dashboard/login");
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, state.dashboard.secure),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dashboard_paths_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/dashboard/messages?status=failed")),
            "/dashboard/messages?status=failed"
        );
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/api/messages",
            "/dashboard\\..",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/dashboard", "{bad}");
        }
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; herald_session=tok; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("tok"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), None);
        let c = set_cookie(SESSION_COOKIE, "x", 60, true);
        let c = c.to_str().unwrap();
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure") && c.contains("Max-Age=60")
        );
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), a);
    }
}
