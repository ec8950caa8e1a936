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
use serde_json::{json, Value};

/// A scripted answer for one request to one recipient.
#[derive(Clone, Debug)]
pub enum Reply {
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

pub struct Recorded {
    pub requests: Mutex<Vec<Value>>,
    /// Twilio: messages created (as the list API returns them).
    pub created: Mutex<Vec<Value>>,
    pub violations: Mutex<Vec<String>>,
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    counter: AtomicU64,
}

impl Recorded {
    fn new() -> Arc<Recorded> {
        Arc::new(Recorded {
            requests: Mutex::default(),
            created: Mutex::default(),
            violations: Mutex::default(),
            script: Mutex::default(),
            counter: AtomicU64::new(0),
        })
    }

    /// Answer the next request for `recipient` with `reply` (queued in order).
    pub fn script(&self, recipient: &str, reply: Reply) {
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

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }

    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }
}

async fn serve(router: Router) -> String {
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

pub struct FakeTwilio {
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

pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TWILIO_TOKEN: &str = "fedcba9876543210fedcba9876543210";

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
    pub async fn start() -> FakeTwilio {
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

pub const SENDGRID_KEY: &str = "SG.test-key.0123456789";

pub struct FakeSendgrid {
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

impl FakeSendgrid {
    pub async fn start() -> FakeSendgrid {
        let rec = Recorded::new();
        let ctx = Arc::new(SendgridCtx {
            rec: rec.clone(),
            spec: load_spec("sendgrid_mail_v3.json"),
        });
        let router = Router::new()
            .route("/v3/mail/send", post(sendgrid_send))
            .with_state(ctx);
        FakeSendgrid {
            url: serve(router).await,
            state: rec,
        }
    }
}

// ---------------------------------------------------------------- custom

pub const CUSTOM_SECRET: &str = "custom-provider-secret-0123";

pub struct FakeCustom {
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
    pub async fn start() -> FakeCustom {
        let rec = Recorded::new();
        let router = Router::new().route("/hook", post(custom_hook)).with_state(rec.clone());
        FakeCustom {
            url: format!("{}/hook", serve(router).await),
            state: rec,
        }
    }
}
