//! The router in-process (`Router::oneshot`, no socket): authentication and
//! how errors are mapped, as every client sees them.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use herald::clock::{Clock, SystemClock};
use herald::http::{router, AppState, Webhooks};
use secrecy::SecretString;
use serde_json::Value;
use tower::ServiceExt;

use crate::support::*;

const KEY: &str = "oneshot-key-0123456789abcdef";

async fn app() -> Router {
    let mut store = connect("sqlite::memory:", 1).await.unwrap();
    store.migrate().await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keys = vec![SecretString::from(KEY.to_owned())];
    router(AppState::new(store, clock, keys, Webhooks::default(), None))
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn get(path: &str, auth: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path);
    if let Some(a) = auth {
        r = r.header(header::AUTHORIZATION, a);
    }
    r.body(Body::empty()).unwrap()
}

fn post_json(path: &str, content_type: Option<&str>, body: &str) -> Request<Body> {
    let mut r = Request::post(path).header(header::AUTHORIZATION, format!("Bearer {KEY}"));
    if let Some(ct) = content_type {
        r = r.header(header::CONTENT_TYPE, ct);
    }
    r.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn every_api_route_needs_the_key_in_a_bearer_credential() {
    let app = app().await;
    for auth in [
        None,
        Some("Bearer wrong-key-0123456789abcdef"),
        Some(KEY),
        Some("Basic abc"),
    ] {
        let (s, body) = send(&app, get("/api/messages", auth)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }
    // The scheme name is case-insensitive (RFC 7235).
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let (s, _) = send(&app, get("/api/messages", Some(&format!("{scheme} {KEY}")))).await;
        assert_eq!(s, StatusCode::OK, "{scheme}");
    }
    // Operations endpoints stay open.
    let (s, body) = send(&app, get("/healthz", None)).await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("ok")));
}

#[tokio::test]
async fn errors_are_json_with_the_right_status_and_field() {
    let app = app().await;
    let (s, body) = send(&app, get("/nowhere", None)).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let cases = [
        (
            Some("application/json"),
            "{oops",
            StatusCode::BAD_REQUEST,
            "invalid_json",
            None,
        ),
        (
            None,
            "{}",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        (
            Some("application/json"),
            r#"{"channel": "sms", "recipient": "+14153234567", "body": "hi", "colour": "red"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            None,
        ),
        (
            Some("application/json"),
            r#"{"channel": "sms", "recipient": "555", "body": "hi"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("recipient"),
        ),
    ];
    for (ct, body, status, code, field) in cases {
        let (s, e) = send(&app, post_json("/api/messages", ct, body)).await;
        assert_eq!(s, status, "{body}: {e}");
        assert_eq!(e["error"]["code"], code, "{body}: {e}");
        if let Some(f) = field {
            assert_eq!(e["error"]["field"], f, "{e}");
        }
    }
}
