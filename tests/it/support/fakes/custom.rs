//! A loopback endpoint for Herald's custom HTTP provider.

#![allow(unused_imports)]
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
use serde_json::{json, Value};

use super::*;

pub(crate) const CUSTOM_SECRET: &str = "custom-provider-secret-0123";

pub(crate) struct FakeCustom {
    pub url: String,
    /// The documented look-up (`CUSTOM_LOOKUP_URL`).
    pub lookup_url: String,
    pub state: Arc<Recorded>,
}

/// Whether the headers carry a valid signature over `signed`.
fn signed_ok(rec: &Recorded, headers: &HeaderMap, signed: &[u8]) -> bool {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let ts = header(herald::providers::TIMESTAMP_HEADER);
    let sig = header(herald::providers::SIGNATURE_HEADER);
    let expected = herald::providers::custom_signature(
        &secrecy::SecretString::from(CUSTOM_SECRET.to_owned()),
        ts.parse().unwrap_or(0),
        signed,
    );
    if sig != expected {
        rec.violation(format!("bad signature {sig:?}"));
    }
    sig == expected
}

/// `GET /lookup?message_id=N`: 200 with the id if that message was
/// accepted, 404 if not.
async fn custom_lookup(
    State(rec): State<Arc<Recorded>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let id = q.get("message_id").cloned().unwrap_or_default();
    if !signed_ok(&rec, &headers, id.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    rec.lookups.fetch_add(1, Ordering::Relaxed);
    match rec.accepted.lock().unwrap().get(&id) {
        Some(pid) => (
            StatusCode::OK,
            [("content-type", "application/json")],
            json!({"id": pid}).to_string(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such message").into_response(),
    }
}

async fn custom_hook(State(rec): State<Arc<Recorded>>, headers: HeaderMap, body: Bytes) -> Response {
    if !signed_ok(&rec, &headers, &body) {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        rec.violation("not JSON".into());
        return (StatusCode::BAD_REQUEST, "not json").into_response();
    };
    rec.requests.lock().unwrap().push(v.clone());
    let recipient = v["recipient"].as_str().unwrap_or("").to_owned();
    let herald_id = v["id"].to_string();
    let accept = |rec: &Recorded| {
        let id = format!("custom-{}", rec.next_id());
        rec.accepted.lock().unwrap().insert(herald_id.clone(), id.clone());
        id
    };
    let id = match rec.next(&recipient) {
        Some(Reply::Error { status, message, .. }) => return raw_reply(status, message, vec![]),
        Some(Reply::Raw { status, body, headers }) => return raw_reply(status, body, headers),
        Some(Reply::Hang(d)) => {
            // Accepted, then slow to answer.
            let id = accept(&rec);
            tokio::time::sleep(d).await;
            id
        }
        None => accept(&rec),
    };
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({"id": id}).to_string(),
    )
        .into_response()
}

impl FakeCustom {
    pub(crate) async fn start() -> FakeCustom {
        let rec = Recorded::new();
        let router = Router::new()
            .route("/hook", post(custom_hook))
            .route("/lookup", axum::routing::get(custom_lookup))
            .with_state(rec.clone());
        let base = serve(router).await;
        FakeCustom {
            url: format!("{base}/hook"),
            lookup_url: format!("{base}/lookup"),
            state: rec,
        }
    }
}
