//! Loopback stand-ins for Twilio, SendGrid and a custom HTTP provider. They
//! check every request as the real APIs do (method, path, auth, content type,
//! field names and formats, against the providers' own OpenAPI files in
//! `tests/specs/`) and answer with the real success and error shapes. A
//! request the real API would reject is also recorded as a violation, which
//! the tests assert never happens.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde_json::Value;

/// A scripted answer for one request to one recipient.
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    /// The provider's own error shape, with this status and code.
    Error { status: u16, code: i64, message: String },
    /// Any status, body and headers.
    Raw {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// Answer only after this long (longer than the client's timeout).
    Hang(Duration),
}

pub(crate) struct Recorded {
    pub requests: Mutex<Vec<Value>>,
    /// Twilio: messages created (as the list API returns them).
    pub created: Mutex<Vec<Value>>,
    pub violations: Mutex<Vec<String>>,
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    counter: AtomicU64,
    /// Custom provider: Herald's message id → the id it was accepted under.
    pub accepted: Mutex<HashMap<String, String>>,
    /// Custom provider: look-ups answered.
    pub lookups: AtomicU64,
    /// What the account endpoints answer (`herald doctor`): Twilio
    /// `account_status`, `balance`, `numbers` (E.164 → has SMS); SendGrid
    /// `scopes`, `verified` (sender addresses). Defaults when unset.
    pub account: Mutex<serde_json::Map<String, Value>>,
}

impl Recorded {
    fn new() -> Arc<Recorded> {
        Arc::new(Recorded {
            requests: Mutex::default(),
            created: Mutex::default(),
            violations: Mutex::default(),
            script: Mutex::default(),
            counter: AtomicU64::new(0),
            accepted: Mutex::default(),
            lookups: AtomicU64::new(0),
            account: Mutex::default(),
        })
    }

    /// Set what an account endpoint answers (see [`Recorded::account`]).
    pub(crate) fn set_account(&self, key: &str, value: Value) {
        self.account.lock().unwrap().insert(key.to_owned(), value);
    }

    fn account_value(&self, key: &str, default: Value) -> Value {
        self.account.lock().unwrap().get(key).cloned().unwrap_or(default)
    }

    /// Answer the next request for `recipient` with `reply` (queued in order).
    pub(crate) fn script(&self, recipient: &str, reply: Reply) {
        self.script
            .lock()
            .unwrap()
            .entry(recipient.to_owned())
            .or_default()
            .push_back(reply);
    }

    fn next(&self, recipient: &str) -> Option<Reply> {
        self.script
            .lock()
            .unwrap()
            .get_mut(recipient)
            .and_then(VecDeque::pop_front)
    }

    fn violation(&self, v: String) {
        self.violations.lock().unwrap().push(v);
    }

    pub(crate) fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }

    pub(crate) fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }
}

pub(crate) async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("fake server");
    });
    format!("http://{addr}")
}

fn raw_reply(status: u16, body: String, headers: Vec<(String, String)>) -> Response {
    let mut resp = (StatusCode::from_u16(status).unwrap(), body).into_response();
    for (k, v) in headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}

fn load_spec(file: &str) -> Value {
    let path = format!("{}/tests/specs/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("spec file")).expect("spec JSON")
}

/// Check a string against an OpenAPI property (length, `^XX[0-9a-fA-F]{32}$`
/// patterns, `uri` format).
fn check_property(name: &str, prop: &Value, value: &str) -> Result<(), String> {
    if let Some(min) = prop.get("minLength").and_then(Value::as_u64) {
        if (value.chars().count() as u64) < min {
            return Err(format!("{name} shorter than {min}"));
        }
    }
    if let Some(max) = prop.get("maxLength").and_then(Value::as_u64) {
        if value.chars().count() as u64 > max {
            return Err(format!("{name} longer than {max}"));
        }
    }
    if let Some(p) = prop.get("pattern").and_then(Value::as_str) {
        if let Some(prefix) = p.strip_prefix('^').and_then(|p| p.strip_suffix("[0-9a-fA-F]{32}$")) {
            let ok = value.len() == prefix.len() + 32
                && value.starts_with(prefix)
                && value[prefix.len()..].chars().all(|c| c.is_ascii_hexdigit());
            if !ok {
                return Err(format!("{name}={value:?} does not match {p}"));
            }
        }
    }
    if prop.get("format").and_then(Value::as_str) == Some("uri") {
        let ok = value.starts_with("http://") || value.starts_with("https://");
        if !ok {
            return Err(format!("{name}={value:?} is not an absolute URL"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- Twilio

mod custom;
mod pos;
mod sendgrid;
mod twilio;

pub(crate) use custom::*;
pub(crate) use pos::*;
pub(crate) use sendgrid::*;
pub(crate) use twilio::*;
