//! A loopback SendGrid Mail Send API.

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

pub(crate) const SENDGRID_KEY: &str = "SG.test-key.0123456789";

pub(crate) struct FakeSendgrid {
    pub url: String,
    pub state: Arc<Recorded>,
}

struct SendgridCtx {
    rec: Arc<Recorded>,
    spec: Value,
}

fn sendgrid_error(status: u16, field: Option<&str>, message: &str) -> Response {
    let body = json!({"errors": [{"message": message, "field": field, "help": null}]});
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn has_null(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| has_null(x).map(|p| format!("[{i}]{p}"))),
        Value::Object(o) => o.iter().find_map(|(k, x)| has_null(x).map(|p| format!(".{k}{p}"))),
        _ => None,
    }
}

async fn sendgrid_send(State(ctx): State<Arc<SendgridCtx>>, headers: HeaderMap, body: Bytes) -> Response {
    let rec = &ctx.rec;
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth != format!("Bearer {SENDGRID_KEY}") {
        rec.violation("bad or missing bearer key".into());
        return sendgrid_error(
            401,
            None,
            "The provided authorization grant is invalid, expired, or revoked",
        );
    }
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/json") {
        rec.violation(format!("content type {ct:?}"));
        return sendgrid_error(415, None, "Content-Type should be application/json.");
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        rec.violation("body is not JSON".into());
        return sendgrid_error(400, None, "Bad Request");
    };
    let idx = {
        let mut reqs = rec.requests.lock().unwrap();
        reqs.push(v.clone());
        reqs.len() - 1
    };
    let schema = &ctx.spec["components"]["requestBodies"]["PostMailSend"]["content"]["application/json"]["schema"];
    let props = schema["properties"].as_object().unwrap();
    for k in v
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if !props.contains_key(&k) {
            rec.violation(format!("unknown field {k}"));
        }
    }
    for r in schema["required"].as_array().unwrap() {
        if v.get(r.as_str().unwrap()).is_none() {
            rec.violation(format!("missing {r}"));
            return sendgrid_error(400, r.as_str(), &format!("The {r} field is required."));
        }
    }
    if let Some(path) = has_null(&v) {
        rec.violation(format!("null at {path}"));
        return sendgrid_error(
            400,
            Some(path.trim_start_matches('.')),
            "Invalid type. Expected: string, given: null.",
        );
    }
    let p_props = props["personalizations"]["items"]["properties"].as_object().unwrap();
    let personalizations = v["personalizations"].as_array().cloned().unwrap_or_default();
    if personalizations.is_empty() {
        rec.violation("no personalizations".into());
    }
    let mut recipient = String::new();
    for p in &personalizations {
        for k in p.as_object().unwrap().keys() {
            if !p_props.contains_key(k) {
                rec.violation(format!("unknown personalization field {k}"));
            }
        }
        let to = p["to"].as_array().cloned().unwrap_or_default();
        if to.is_empty() || to.iter().any(|t| !t["email"].as_str().is_some_and(|e| e.contains('@'))) {
            rec.violation("personalizations[].to needs email addresses".into());
            return sendgrid_error(400, Some("personalizations.0.to"), "The to array is required.");
        }
        recipient = to[0]["email"].as_str().unwrap().to_owned();
        if let Some(args) = p.get("custom_args") {
            if !args.as_object().is_some_and(|o| o.values().all(Value::is_string)) {
                rec.violation("custom_args values must be strings".into());
                return sendgrid_error(
                    400,
                    Some("personalizations.0.custom_args"),
                    "Invalid type. Expected: string.",
                );
            }
        }
    }
    if !v["from"]["email"].as_str().is_some_and(|e| e.contains('@')) {
        rec.violation("from.email".into());
        return sendgrid_error(
            400,
            Some("from.email"),
            "The from email does not contain a valid address.",
        );
    }
    if v.get("subject").is_none() && !personalizations.iter().all(|p| p.get("subject").is_some()) {
        rec.violation("no subject".into());
        return sendgrid_error(400, Some("subject"), "The subject is required.");
    }
    let types: Vec<&str> = v["content"]
        .as_array()
        .map(|c| c.iter().filter_map(|x| x["type"].as_str()).collect())
        .unwrap_or_default();
    if types.is_empty() || (types.contains(&"text/plain") && types[0] != "text/plain") {
        rec.violation(format!("content types {types:?}"));
        return sendgrid_error(400, Some("content"), "If present, text/plain must be first.");
    }
    match rec.next(&recipient) {
        Some(Reply::Error { status, message, .. }) => return sendgrid_error(status, None, &message),
        Some(Reply::Raw { status, body, headers }) => return raw_reply(status, body, headers),
        Some(Reply::Hang(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let id = format!("sgid{:018}", rec.next_id());
    rec.requests.lock().unwrap()[idx]["__message_id"] = json!(id);
    raw_reply(202, String::new(), vec![("x-message-id".into(), id)])
}

/// `Some`: SendGrid's refusal.
fn sendgrid_authorized(headers: &HeaderMap) -> Option<Response> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth != format!("Bearer {SENDGRID_KEY}") {
        return Some(sendgrid_error(
            401,
            None,
            "The provided authorization grant is invalid, expired, or revoked",
        ));
    }
    None
}

/// GET /v3/scopes: what the key may do.
async fn sendgrid_scopes(State(ctx): State<Arc<SendgridCtx>>, headers: HeaderMap) -> Response {
    if let Some(r) = sendgrid_authorized(&headers) {
        return r;
    }
    let scopes = ctx
        .rec
        .account_value("scopes", json!(["mail.send", "sender_verification_eligible"]));
    raw_reply(
        200,
        json!({"scopes": scopes}).to_string(),
        vec![("content-type".into(), "application/json".into())],
    )
}

/// GET /v3/verified_senders: the single senders, verified or not.
async fn sendgrid_senders(State(ctx): State<Arc<SendgridCtx>>, headers: HeaderMap) -> Response {
    if let Some(r) = sendgrid_authorized(&headers) {
        return r;
    }
    let verified = ctx.rec.account_value("verified", json!(["loja@example.com"]));
    let results: Vec<Value> = verified
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, a)| json!({"id": i + 1, "from_email": a, "from_name": "Loja", "verified": true, "locked": false}))
        .collect();
    raw_reply(
        200,
        json!({"results": results}).to_string(),
        vec![("content-type".into(), "application/json".into())],
    )
}

impl FakeSendgrid {
    pub(crate) async fn start() -> FakeSendgrid {
        let rec = Recorded::new();
        let ctx = Arc::new(SendgridCtx {
            rec: rec.clone(),
            spec: load_spec("sendgrid_mail_v3.json"),
        });
        let router = Router::new()
            .route("/v3/mail/send", post(sendgrid_send))
            .route("/v3/scopes", axum::routing::get(sendgrid_scopes))
            .route("/v3/verified_senders", axum::routing::get(sendgrid_senders))
            .with_state(ctx);
        FakeSendgrid {
            url: serve(router).await,
            state: rec,
        }
    }
}

// ---------------------------------------------------------------- custom
