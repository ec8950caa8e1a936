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
    pub state: Arc<Recorded>,
}

async fn custom_hook(State(rec): State<Arc<Recorded>>, headers: HeaderMap, body: Bytes) -> Response {
    let ts = headers
        .get(herald::providers::TIMESTAMP_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let sig = headers
        .get(herald::providers::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let expected = herald::providers::custom_signature(
        &secrecy::SecretString::from(CUSTOM_SECRET.to_owned()),
        ts.parse().unwrap_or(0),
        &body,
    );
    if sig != expected {
        rec.violation(format!("bad signature {sig:?}"));
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        rec.violation("not JSON".into());
        return (StatusCode::BAD_REQUEST, "not json").into_response();
    };
    rec.requests.lock().unwrap().push(v.clone());
    let recipient = v["recipient"].as_str().unwrap_or("").to_owned();
    match rec.next(&recipient) {
        Some(Reply::Error { status, message, .. }) => return raw_reply(status, message, vec![]),
        Some(Reply::Raw { status, body, headers }) => return raw_reply(status, body, headers),
        Some(Reply::Hang(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let id = format!("custom-{}", rec.next_id());
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
        let router = Router::new().route("/hook", post(custom_hook)).with_state(rec.clone());
        FakeCustom {
            url: format!("{}/hook", serve(router).await),
            state: rec,
        }
    }
}
