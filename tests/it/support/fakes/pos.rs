//! A loopback POS endpoint for status webhooks: it records every request
//! (the Standard Webhooks headers and the exact body) and answers with the
//! status it is told to.

#![allow(unused_imports)]
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

use super::*;

/// One webhook as the POS received it.
#[derive(Debug, Clone)]
pub(crate) struct Hook {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
    pub content_type: String,
    pub body: String,
    /// The status the POS answered.
    pub answered: u16,
}

impl Hook {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    pub(crate) fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }

    pub(crate) fn message_id(&self) -> i64 {
        self.json()["data"]["id"].as_i64().unwrap_or_default()
    }

    /// Whether the signature is `secret`'s, as a receiver checks it.
    pub(crate) fn signed_by(&self, secret: &str) -> bool {
        let s = herald::signing::WebhookSecret::parse(secret).expect("a whsec_ secret");
        s.verify(
            &self.id,
            self.timestamp,
            self.body.as_bytes(),
            &self.signature,
            self.timestamp,
        )
    }
}

struct PosState {
    hooks: Mutex<Vec<Hook>>,
    status: AtomicU16,
}

pub(crate) struct FakePos {
    pub url: String,
    state: Arc<PosState>,
}

async fn receive(State(s): State<Arc<PosState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let answered = s.status.load(Ordering::Relaxed);
    s.hooks.lock().unwrap().push(Hook {
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp").parse().unwrap_or(0),
        signature: h("webhook-signature"),
        content_type: h("content-type"),
        body: String::from_utf8(body.to_vec()).expect("a UTF-8 body"),
        answered,
    });
    StatusCode::from_u16(answered).unwrap()
}

impl FakePos {
    /// Listening on a free loopback port.
    pub(crate) async fn start() -> FakePos {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        FakePos::on(listener).await
    }

    /// Listening on `listener` (a port chosen before the POS was up).
    pub(crate) async fn on(listener: tokio::net::TcpListener) -> FakePos {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(PosState {
            hooks: Mutex::default(),
            status: AtomicU16::new(200),
        });
        let router = Router::new().route("/herald", post(receive)).with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.expect("fake POS");
        });
        FakePos {
            url: format!("http://{addr}/herald"),
            state,
        }
    }

    /// Answer every request with `status` from now on.
    pub(crate) fn answer(&self, status: u16) {
        self.state.status.store(status, Ordering::Relaxed);
    }

    pub(crate) fn hooks(&self) -> Vec<Hook> {
        self.state.hooks.lock().unwrap().clone()
    }

    /// The webhooks answered with a 2xx, in arrival order.
    pub(crate) fn delivered(&self) -> Vec<Hook> {
        self.hooks()
            .into_iter()
            .filter(|h| (200..300).contains(&h.answered))
            .collect()
    }
}
