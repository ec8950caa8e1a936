//! A loopback Twilio Messages API.

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

pub(crate) struct FakeTwilio {
    pub url: String,
    pub state: Arc<Recorded>,
    pub account_sid: String,
    pub auth_token: String,
}

struct TwilioCtx {
    rec: Arc<Recorded>,
    account_sid: String,
    auth_token: String,
    props: serde_json::Map<String, Value>,
    required: Vec<String>,
}

pub(crate) const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub(crate) const TWILIO_TOKEN: &str = "fedcba9876543210fedcba9876543210";

fn e164(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| (7..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()))
}

fn twilio_error(status: u16, code: i64, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    });
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The account's Basic auth and path, as Twilio checks them: `Some` is
/// Twilio's refusal.
fn twilio_authorized(ctx: &TwilioCtx, account: &str, headers: &HeaderMap) -> Option<Response> {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", ctx.account_sid, ctx.auth_token))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return Some(twilio_error(401, 20003, "Authenticate"));
    }
    if account != ctx.account_sid {
        return Some(twilio_error(404, 20404, "The requested resource was not found"));
    }
    None
}

/// GET /2010-04-01/Accounts/{AccountSid}.json
async fn twilio_account(State(ctx): State<Arc<TwilioCtx>>, Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(account) = file.strip_suffix(".json") else {
        return twilio_error(404, 20404, "The requested resource was not found");
    };
    if let Some(r) = twilio_authorized(&ctx, account, &headers) {
        return r;
    }
    let status = ctx.rec.account_value("account_status", json!("active"));
    let kind = ctx.rec.account_value("account_type", json!("Full"));
    let body = json!({
        "sid": account, "friendly_name": "Loja Exemplo", "status": status, "type": kind,
        "owner_account_sid": account, "date_created": "Thu, 01 Jan 2026 00:00:00 +0000",
        "uri": format!("/2010-04-01/Accounts/{account}.json"),
    });
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

/// GET /2010-04-01/Accounts/{AccountSid}/Balance.json
async fn twilio_balance(
    State(ctx): State<Arc<TwilioCtx>>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = twilio_authorized(&ctx, &account, &headers) {
        return r;
    }
    let balance = ctx.rec.account_value("balance", json!("20.50"));
    let body = json!({"account_sid": account, "balance": balance, "currency": "USD"});
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

/// GET /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json?PhoneNumber=…
async fn twilio_numbers(
    State(ctx): State<Arc<TwilioCtx>>,
    Path(account): Path<String>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = twilio_authorized(&ctx, &account, &headers) {
        return r;
    }
    let numbers = ctx
        .rec
        .account_value("numbers", json!({"+15005550006": true, "+14155238886": true}));
    let wanted = q.get("PhoneNumber").cloned();
    let list: Vec<Value> = numbers
        .as_object()
        .unwrap()
        .iter()
        .filter(|(n, _)| wanted.as_deref().is_none_or(|w| w == n.as_str()))
        .map(|(n, sms)| {
            json!({
                "sid": "PN0123456789abcdef0123456789abcdef", "account_sid": account, "phone_number": n,
                "friendly_name": n, "capabilities": {"sms": sms, "mms": sms, "voice": true, "fax": false},
            })
        })
        .collect();
    let body = json!({"incoming_phone_numbers": list, "page": 0, "page_size": 50});
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

async fn twilio_messages(
    State(ctx): State<Arc<TwilioCtx>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rec = &ctx.rec;
    // The path must be /2010-04-01/Accounts/{AccountSid}/Messages.json.
    if account != ctx.account_sid {
        rec.violation(format!("wrong account in path: {account}"));
        return twilio_error(404, 20404, "The requested resource was not found");
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", ctx.account_sid, ctx.auth_token))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        rec.violation("bad or missing Basic auth".into());
        return twilio_error(401, 20003, "Authenticate");
    }
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        rec.violation(format!("content type {ct:?}"));
        return twilio_error(415, 415, "Unsupported Media Type");
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let mut form: HashMap<String, String> = HashMap::new();
    for (k, v) in &pairs {
        if form.insert(k.clone(), v.clone()).is_some() && k != "MediaUrl" {
            rec.violation(format!("{k} sent twice"));
        }
    }
    let idx = {
        let mut reqs = rec.requests.lock().unwrap();
        reqs.push(json!(form));
        reqs.len() - 1
    };
    // The OpenAPI description: known fields only, each well-formed.
    for (k, v) in &form {
        match ctx.props.get(k) {
            None => rec.violation(format!("unknown field {k}")),
            Some(prop) => {
                if let Err(e) = check_property(k, prop, v) {
                    rec.violation(e.clone());
                    return twilio_error(400, 21604, &e);
                }
            }
        }
    }
    for r in &ctx.required {
        if !form.contains_key(r) {
            rec.violation(format!("missing required {r}"));
            return twilio_error(400, 21604, &format!("A '{r}' parameter is required."));
        }
    }
    // Rules the real API enforces beyond the file.
    let to = form.get("To").cloned().unwrap_or_default();
    let whatsapp = to.starts_with("whatsapp:");
    if !e164(to.strip_prefix("whatsapp:").unwrap_or(&to)) {
        rec.violation(format!("To {to:?} is not E.164"));
        return twilio_error(
            400,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    match (form.get("From"), form.get("MessagingServiceSid")) {
        (Some(_), Some(_)) | (None, None) => {
            rec.violation("exactly one of From and MessagingServiceSid is required".into());
            return twilio_error(
                400,
                21603,
                "A 'From' or 'MessagingServiceSid' parameter is required to send a message",
            );
        }
        (Some(from), None) => {
            let bare = from.strip_prefix("whatsapp:").unwrap_or(from);
            if !e164(bare) || whatsapp != from.starts_with("whatsapp:") {
                rec.violation(format!("From {from:?} does not match To {to:?}"));
                return twilio_error(400, 21212, "The 'From' number is not a valid phone number");
            }
        }
        _ => {}
    }
    match (form.get("Body"), form.get("ContentSid")) {
        (Some(_), Some(_)) => rec.violation("Body sent together with ContentSid".into()),
        (None, None) => {
            rec.violation("neither Body nor ContentSid".into());
            return twilio_error(400, 21602, "Message body is required.");
        }
        (Some(b), None) if b.chars().count() > 1600 => {
            rec.violation("Body over 1600 characters".into());
            return twilio_error(
                400,
                21617,
                "The concatenated message body exceeds the 1600 character limit.",
            );
        }
        _ => {}
    }
    if let Some(vars) = form.get("ContentVariables") {
        if !matches!(serde_json::from_str::<Value>(vars), Ok(Value::Object(_))) {
            rec.violation(format!("ContentVariables {vars:?} is not a JSON object string"));
        }
    }
    let reply = rec.next(&to);
    match &reply {
        Some(Reply::Error { status, code, message }) => return twilio_error(*status, *code, message),
        Some(Reply::Raw { status, body, headers }) => return raw_reply(*status, body.clone(), headers.clone()),
        _ => {}
    }
    let sid = format!("SM{:032x}", rec.next_id());
    rec.requests.lock().unwrap()[idx]["__sid"] = json!(sid);
    let created = json!({
        "account_sid": ctx.account_sid,
        "api_version": "2010-04-01",
        "body": form.get("Body"),
        "date_created": chrono::Utc::now().to_rfc2822(),
        "date_sent": null,
        "date_updated": chrono::Utc::now().to_rfc2822(),
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"),
        "num_media": "0",
        "num_segments": "1",
        "price": null,
        "price_unit": null,
        "sid": sid,
        "status": if form.contains_key("MessagingServiceSid") { "accepted" } else { "queued" },
        "subresource_uris": {"media": format!("/2010-04-01/Accounts/{}/Messages/{sid}/Media.json", ctx.account_sid)},
        "to": to,
        "uri": format!("/2010-04-01/Accounts/{}/Messages/{sid}.json", ctx.account_sid),
    });
    // The message exists from here on, even if the answer never arrives.
    rec.created.lock().unwrap().push(created.clone());
    if let Some(Reply::Hang(d)) = reply {
        tokio::time::sleep(d).await;
    }
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        created.to_string(),
    )
        .into_response()
}

/// `GET …/Messages.json?To=&From=`: the account's messages, newest first.
async fn twilio_list(
    State(ctx): State<Arc<TwilioCtx>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", ctx.account_sid, ctx.auth_token))
    );
    if account != ctx.account_sid
        || headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str())
    {
        return twilio_error(401, 20003, "Authenticate");
    }
    for k in q.keys() {
        if ![
            "To",
            "From",
            "PageSize",
            "DateSent",
            "DateSent<",
            "DateSent>",
            "Page",
            "PageToken",
        ]
        .contains(&k.as_str())
        {
            ctx.rec.violation(format!("unknown list filter {k}"));
        }
    }
    let mut list: Vec<Value> = ctx
        .rec
        .created
        .lock()
        .unwrap()
        .iter()
        .filter(|m| q.get("To").is_none_or(|t| m["to"] == t.as_str()))
        .filter(|m| q.get("From").is_none_or(|f| m["from"] == f.as_str()))
        .cloned()
        .collect();
    list.reverse();
    let body = json!({"messages": list, "page": 0, "page_size": 50, "first_page_uri": "", "next_page_uri": null, "previous_page_uri": null, "uri": ""});
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

impl FakeTwilio {
    pub(crate) async fn start() -> FakeTwilio {
        let spec = load_spec("twilio_api_v2010_messages.json");
        let schema = &spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"]["post"]["requestBody"]
            ["content"]["application/x-www-form-urlencoded"]["schema"];
        let rec = Recorded::new();
        let ctx = Arc::new(TwilioCtx {
            rec: rec.clone(),
            account_sid: TWILIO_SID.to_owned(),
            auth_token: TWILIO_TOKEN.to_owned(),
            props: schema["properties"].as_object().cloned().expect("spec properties"),
            required: schema["required"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
        });
        let router = Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Messages.json",
                post(twilio_messages).get(twilio_list),
            )
            .route("/2010-04-01/Accounts/{account}", axum::routing::get(twilio_account))
            .route(
                "/2010-04-01/Accounts/{account}/Balance.json",
                axum::routing::get(twilio_balance),
            )
            .route(
                "/2010-04-01/Accounts/{account}/IncomingPhoneNumbers.json",
                axum::routing::get(twilio_numbers),
            )
            .with_state(ctx);
        FakeTwilio {
            url: serve(router).await,
            state: rec,
            account_sid: TWILIO_SID.into(),
            auth_token: TWILIO_TOKEN.into(),
        }
    }
}

// ---------------------------------------------------------------- SendGrid
