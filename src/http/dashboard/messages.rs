//! Messages: the filtered list, one message with its attempts and
//! receipts, retry and cancel (the API's rules), bulk retry of failed
//! messages, and the test send.

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::{error_flash, page, see_other, summary, when, Flash, Signed};
use crate::domain::{Channel, MessageStatus};
use crate::http::error::ApiPath;
use crate::http::queueing::MessageRequest;
use crate::http::AppState;
use crate::store::{ListFilter, Message, StoreError};

/// Messages shown per page.
const PAGE: usize = 50;
/// The filter the database cannot apply (error code) looks at most at
/// this many of the newest messages matching the others.
const SCAN_LIMIT: usize = 5000;
/// Most failed messages one bulk retry takes.
const BULK_LIMIT: usize = 10_000;

/// The list's filters, as in the query string (every field optional).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(super) struct Filters {
    #[serde(default)]
    status: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    meta_key: String,
    #[serde(default)]
    meta_value: String,
    #[serde(default, skip_serializing)]
    cursor: Option<i64>,
}

impl Filters {
    /// The query string of these filters (without the cursor).
    fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("status", &self.status),
            ("channel", &self.channel),
            ("recipient", &self.recipient),
            ("from", &self.from),
            ("to", &self.to),
            ("template", &self.template),
            ("code", &self.code),
            ("meta_key", &self.meta_key),
            ("meta_value", &self.meta_value),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.finish()
    }

    /// What the database filters; bad values are explained, not ignored.
    fn database(&self, before_id: Option<i64>, limit: u32) -> Result<ListFilter, String> {
        let date = |field: &str, v: &str, end: bool| -> Result<Option<chrono::DateTime<Utc>>, String> {
            if v.is_empty() {
                return Ok(None);
            }
            let d = NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| format!("{field}: {v:?} is not a date"))?;
            let d = if end { d.succ_opt().unwrap_or(d) } else { d };
            Ok(d.and_hms_opt(0, 0, 0).map(|t| Utc.from_utc_datetime(&t)))
        };
        Ok(ListFilter {
            status: match self.status.as_str() {
                "" => None,
                s => Some(MessageStatus::parse(s).map_err(|e| e.message)?),
            },
            channel: match self.channel.as_str() {
                "" => None,
                c => Some(Channel::parse(c).map_err(|e| e.to_string())?),
            },
            recipient: Some(self.recipient.trim().to_owned()).filter(|r| !r.is_empty()),
            created_from: date("from", &self.from, false)?,
            created_to: date("to", &self.to, true)?,
            before_id,
            limit,
            scheduled_after: None,
            template: Some(self.template.trim().to_owned()).filter(|t| !t.is_empty()),
            metadata: if self.meta_key.trim().is_empty() {
                None
            } else {
                Some(crate::store::metadata_filter(&self.meta_key, self.meta_value.trim()).map_err(|(_, e)| e)?)
            },
        })
    }

    /// The filter applied here, after the database's.
    fn matches(&self, m: &Message) -> bool {
        self.code.is_empty()
            || m.error
                .as_ref()
                .and_then(|e| e.get("code"))
                .and_then(|c| c.as_str())
                .is_some_and(|c| c == self.code.trim())
    }

    fn needs_scan(&self) -> bool {
        !self.code.is_empty()
    }
}

/// Messages matching `f`, newest first: up to `want`, looking at no more
/// than `scan` rows. Returns them, and whether the scan limit cut it short.
async fn find(state: &AppState, f: &Filters, want: usize, scan: usize) -> Result<(Vec<Message>, bool), String> {
    let mut out = Vec::new();
    let mut before = f.cursor;
    let mut seen = 0;
    let chunk = if f.needs_scan() { 500 } else { want as u32 };
    loop {
        let filter = f.database(before, chunk)?;
        let rows = state.store.list(&filter).await.map_err(|e| e.to_string())?;
        let got = rows.len();
        seen += got;
        before = rows.last().map(|m| m.id);
        out.extend(rows.into_iter().filter(|m| f.matches(m)));
        if out.len() >= want || got < chunk as usize {
            out.truncate(want);
            return Ok((out, false));
        }
        if seen >= scan {
            return Ok((out, true));
        }
    }
}

#[derive(Debug, Serialize)]
struct Row {
    id: i64,
    status: String,
    delivery_status: Option<String>,
    channel: String,
    recipient: String,
    summary: String,
    created: String,
}

pub(super) async fn list(
    State(state): State<AppState>,
    signed: Signed,
    Query(f): Query<Filters>,
    Query(done): Query<DoneQuery>,
) -> Response {
    let (messages, cut, flash) = match find(&state, &f, PAGE, SCAN_LIMIT).await {
        Ok((m, cut)) => (m, cut, flash_for(done.done.as_deref())),
        Err(e) => (Vec::new(), false, Flash::error(e)),
    };
    let next = (messages.len() == PAGE)
        .then(|| messages.last().map(|m| format!("{}&cursor={}", f.query(), m.id)))
        .flatten();
    let rows: Vec<Row> = messages
        .into_iter()
        .map(|m| Row {
            summary: summary(m.body.as_deref().or(m.subject.as_deref()).or(m.template.as_deref()), 60),
            created: when(m.created_at),
            id: m.id,
            status: m.status,
            delivery_status: m.delivery_status,
            channel: m.channel,
            recipient: m.recipient,
        })
        .collect();
    let note = cut.then(|| {
        format!("The error code filter looked at the {SCAN_LIMIT} newest messages that match the other filters; narrow the dates to look further back.")
    });
    page(
        &signed,
        "messages.html",
        "Messages",
        "messages",
        flash,
        minijinja::context! {
            f => &f, query => f.query(), messages => rows, next, note,
            statuses => MessageStatus::ALL.map(MessageStatus::as_str),
            channels => Channel::ALL.map(Channel::as_str),
        },
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct DoneQuery {
    done: Option<String>,
    watch: Option<String>,
}

fn flash_for(done: Option<&str>) -> Option<Flash> {
    match done? {
        "retried" => Flash::ok("Queued again."),
        "cancelled" => Flash::ok("Cancelled."),
        "queued" => Flash::ok("Queued. This page follows it until it is sent or fails."),
        d if d.starts_with("bulk:") => Flash::ok(format!(
            "{} failed message(s) queued again.",
            d.trim_start_matches("bulk:").parse::<usize>().unwrap_or(0)
        )),
        d if d.starts_with("error:") => Flash::error(d.trim_start_matches("error:").to_owned()),
        _ => None,
    }
}

pub(super) async fn detail(
    State(state): State<AppState>,
    signed: Signed,
    ApiPath(id): ApiPath<i64>,
    Query(q): Query<DoneQuery>,
) -> Response {
    let m = match state.store.get(id).await {
        Ok(m) => m,
        Err(StoreError::NotFound(_)) => return (StatusCode::NOT_FOUND, "no such message").into_response(),
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let (attempts, events) = tokio::join!(state.store.attempts(id), state.store.events(id));
    let attempts: Vec<_> = attempts
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            minijinja::context! {
                attempt => a.attempt, outcome => a.outcome, provider => a.provider,
                finished => when(a.finished_at),
                detail => a.error.as_ref().map(|e| format!(
                    "{} {}",
                    e.get("code").and_then(|c| c.as_str()).unwrap_or(""),
                    e.get("message").and_then(|c| c.as_str()).unwrap_or("")
                )).unwrap_or_default(),
            }
        })
        .collect();
    let events: Vec<_> = events
        .unwrap_or_default()
        .into_iter()
        .map(|e| minijinja::context! { received => when(e.received_at), provider => e.provider, event => e.event, delivery_status => e.delivery_status })
        .collect();
    let status = m.status.as_str();
    let live = matches!(status, "pending" | "processing") || q.watch.is_some() && status != "sent";
    let parked = status == "pending" && m.next_attempt_at.is_some();
    let error = m
        .error
        .as_ref()
        .map(|e| serde_json::to_string_pretty(e).unwrap_or_default());
    let metadata = m
        .metadata
        .as_ref()
        .map(|md| serde_json::to_string_pretty(md).unwrap_or_default());
    page(
        &signed,
        "message.html",
        &format!("Message {id}"),
        "messages",
        flash_for(q.done.as_deref()),
        minijinja::context! {
            can_retry => status == "failed" || parked,
            can_cancel => status == "pending",
            live, error, metadata, attempts, events,
            m => minijinja::context! {
                id => m.id, status => m.status, delivery_status => m.delivery_status, channel => m.channel,
                recipient => m.recipient, attempts => m.attempts, provider => m.provider,
                provider_message_id => m.provider_message_id, created_at => when(m.created_at),
                send_at => m.send_at.map(|t| when(Some(t))), next_attempt_at => m.next_attempt_at.map(|t| when(Some(t))),
                sent_at => m.sent_at.map(|t| when(Some(t))), template => m.template, template_version => m.template_version,
                subject => m.subject, body => m.body, html_body => m.html_body, content_sid => m.content_sid,
                fallback_of => m.fallback_of, fallback_message_id => m.fallback_message_id,
            },
        },
    )
}

/// `{"status": …}` for the live page.
pub(super) async fn status(State(state): State<AppState>, _signed: Signed, ApiPath(id): ApiPath<i64>) -> Response {
    match state.store.get(id).await {
        Ok(m) => Json(serde_json::json!({"status": m.status, "delivery_status": m.delivery_status})).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

pub(super) async fn retry(
    State(state): State<AppState>,
    signed: Signed,
    ApiPath(id): ApiPath<i64>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = signed.check_csrf(&f.csrf) {
        return r.into_response();
    }
    match state.store.retry_one(id, state.clock.now()).await {
        Ok(_) => {
            state.wake();
            see_other(&format!("/dashboard/messages/{id}?done=retried"))
        }
        Err(e) => error_flash(&format!("/dashboard/messages/{id}"), e),
    }
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    signed: Signed,
    ApiPath(id): ApiPath<i64>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = signed.check_csrf(&f.csrf) {
        return r.into_response();
    }
    match state.store.cancel(id, state.clock.now()).await {
        Ok(_) => see_other(&format!("/dashboard/messages/{id}?done=cancelled")),
        Err(e) => error_flash(&format!("/dashboard/messages/{id}"), e),
    }
}

/// The failed messages a bulk retry with these filters takes.
async fn failed_matching(state: &AppState, f: &Filters) -> Result<(Vec<i64>, bool), String> {
    let f = Filters {
        status: "failed".into(),
        cursor: None,
        ..f.clone()
    };
    let (found, cut) = find(state, &f, BULK_LIMIT, BULK_LIMIT * 5).await?;
    Ok((found.into_iter().map(|m| m.id).collect(), cut || f.cursor.is_some()))
}

pub(super) async fn bulk_retry_confirm(
    State(state): State<AppState>,
    signed: Signed,
    Query(f): Query<Filters>,
) -> Response {
    let (ids, flash) = match failed_matching(&state, &f).await {
        Ok((ids, _)) => (ids, None),
        Err(e) => (Vec::new(), Flash::error(e)),
    };
    let fields: Vec<(String, String)> = form_urlencoded::parse(f.query().as_bytes()).into_owned().collect();
    let text = match ids.len() {
        0 => "No failed message matches these filters.".to_owned(),
        n if n >= BULK_LIMIT => format!("Retry the {n} newest failed messages that match (at most {BULK_LIMIT} at a time)? Each starts a fresh round of retries."),
        n => format!("Retry {n} failed message(s)? Each starts a fresh round of retries."),
    };
    page(
        &signed,
        "confirm.html",
        "Retry failed messages",
        "messages",
        flash,
        minijinja::context! {
            heading => "Retry failed messages", text, fields, button => "Retry them",
            action => "/dashboard/messages/retry", back => format!("/dashboard/messages?{}", f.query()),
        },
    )
}

#[derive(Deserialize)]
pub(super) struct BulkForm {
    csrf: String,
    #[serde(flatten)]
    filters: Filters,
}

pub(super) async fn bulk_retry(State(state): State<AppState>, signed: Signed, Form(f): Form<BulkForm>) -> Response {
    if let Err(r) = signed.check_csrf(&f.csrf) {
        return r.into_response();
    }
    let back = format!(
        "/dashboard/messages?{}",
        Filters {
            status: "failed".into(),
            ..f.filters.clone()
        }
        .query()
    );
    let result = match failed_matching(&state, &f.filters).await {
        Ok((ids, _)) => state
            .store
            .retry(&ids, state.clock.now())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match result {
        Ok(done) => {
            state.wake();
            let pending = Filters {
                status: "pending".into(),
                ..f.filters.clone()
            };
            see_other(&format!(
                "/dashboard/messages?{}&done=bulk:{}",
                pending.query(),
                done.len()
            ))
        }
        Err(e) => error_flash(&back, e),
    }
}

/// The test-send form's fields.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(super) struct SendForm {
    #[serde(default, skip_serializing)]
    csrf: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    data: String,
}

async fn send_form(state: &AppState, signed: &Signed, form: &SendForm, flash: Option<Flash>) -> Response {
    let templates: Vec<String> = state
        .store
        .templates(None)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.name)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    page(
        signed,
        "send.html",
        "Send a test message",
        "send",
        flash,
        minijinja::context! { form, templates, channels => Channel::ALL.map(Channel::as_str) },
    )
}

pub(super) async fn send_page(State(state): State<AppState>, signed: Signed) -> Response {
    send_form(
        &state,
        &signed,
        &SendForm {
            channel: "sms".into(),
            ..SendForm::default()
        },
        None,
    )
    .await
}

pub(super) async fn send(State(state): State<AppState>, signed: Signed, Form(form): Form<SendForm>) -> Response {
    if let Err(r) = signed.check_csrf(&form.csrf) {
        return r.into_response();
    }
    let text = |s: &str| Some(s.to_owned()).filter(|s| !s.trim().is_empty());
    let data = match text(&form.data).map(|d| serde_json::from_str::<serde_json::Value>(&d)) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            return send_form(
                &state,
                &signed,
                &form,
                Flash::error(format!("data: not valid JSON ({e})")),
            )
            .await
        }
    };
    let template = text(&form.template);
    let req = MessageRequest {
        channel: text(&form.channel),
        recipient: text(&form.recipient),
        subject: if template.is_some() { None } else { text(&form.subject) },
        body: if template.is_some() { None } else { text(&form.body) },
        html_body: None,
        send_at: None,
        metadata: Some(serde_json::json!({"source": "dashboard test"})),
        content_sid: None,
        content_variables: None,
        template,
        locale: None,
        data,
    };
    let msg = match req.prepare(&state.store).await {
        Ok(m) => m,
        Err(e) => return send_form(&state, &signed, &form, Flash::error(e.to_string())).await,
    };
    match state.enqueuer.enqueue(msg).await {
        Ok(stored) => see_other(&format!("/dashboard/messages/{}?done=queued&watch=1", stored.id)),
        Err(e) => send_form(&state, &signed, &form, Flash::error(e.to_string())).await,
    }
}
