//! Templates (list, edit with a live preview and compile errors,
//! versions) and the suppression list.

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{error_flash, page, see_other, when, Flash, Signed};
use crate::domain::{parse_channel_and_recipient, Channel, TemplateDraft, TemplateName, TemplateParts};
use crate::http::error::ApiPath;
use crate::http::AppState;
use crate::templates::{check, render_bounded};

#[derive(Debug, Deserialize)]
pub(super) struct DoneQuery {
    done: Option<String>,
}

pub(super) async fn templates(State(state): State<AppState>, signed: Signed, Query(q): Query<DoneQuery>) -> Response {
    let list = state.store.templates(None).await;
    let (templates, flash) = match list {
        Ok(t) => (
            t,
            q.done
                .as_deref()
                .and_then(|d| (d == "deleted").then(|| Flash::ok("Deleted.")).flatten()),
        ),
        Err(e) => (Vec::new(), Flash::error(e.to_string())),
    };
    let rows: Vec<_> = templates
        .into_iter()
        .map(|t| minijinja::context! { name => t.name, locale => t.locale, channel => t.channel, version => t.version, is_default => t.is_default, created_at => when(t.created_at) })
        .collect();
    page(
        &signed,
        "templates.html",
        "Templates",
        "templates",
        flash,
        minijinja::context! { templates => rows },
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct NewQuery {
    name: String,
}

pub(super) async fn new_template(_signed: Signed, Query(q): Query<NewQuery>) -> Response {
    match TemplateName::parse(q.name.trim()) {
        Ok(n) => see_other(&format!("/dashboard/templates/{n}")),
        Err(_) => see_other("/dashboard/templates"),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct TemplateQuery {
    locale: Option<String>,
    done: Option<String>,
}

/// The editor's fields.
#[derive(Debug, Default, Deserialize)]
pub(super) struct TemplateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    locale: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    html_body: String,
    #[serde(default)]
    data: String,
}

impl TemplateForm {
    fn parts(&self) -> TemplateParts {
        let text = |s: &str| Some(s.to_owned()).filter(|s| !s.trim().is_empty());
        TemplateParts {
            subject: text(&self.subject),
            body: text(&self.body),
            html_body: text(&self.html_body),
            content_sid: None,
            content_variables: None,
        }
    }

    fn data(&self) -> Result<serde_json::Value, String> {
        if self.data.trim().is_empty() {
            return Ok(serde_json::json!({}));
        }
        serde_json::from_str(&self.data).map_err(|e| format!("data: not valid JSON ({e})"))
    }
}

/// Render the editor for `name`, with the form's values and a preview.
async fn editor(state: &AppState, signed: &Signed, name: &str, form: &TemplateForm, flash: Option<Flash>) -> Response {
    let versions = state.store.templates(Some(name)).await.unwrap_or_default();
    let (preview, preview_error) = match preview_of(form).await {
        Ok(p) => (p, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    page(
        signed,
        "template.html",
        &format!("Template {name}"),
        "templates",
        flash,
        minijinja::context! {
            name,
            t => minijinja::context! {
                locale => if form.locale.is_empty() { "en" } else { form.locale.as_str() },
                channel => form.channel, subject => form.subject, body => form.body, html_body => form.html_body,
            },
            data => if form.data.is_empty() { "{}" } else { form.data.as_str() },
            preview, preview_error,
            versions => versions.into_iter().map(|v| minijinja::context! { locale => v.locale, version => v.version, is_default => v.is_default, created_at => when(v.created_at) }).collect::<Vec<_>>(),
            channels => Channel::ALL.map(Channel::as_str),
        },
    )
}

/// The rendered parts, or the compile/render error in words.
async fn preview_of(form: &TemplateForm) -> Result<Vec<(String, String)>, String> {
    let parts = form.parts();
    if parts.subject.is_none() && parts.body.is_none() && parts.html_body.is_none() {
        return Ok(Vec::new());
    }
    check(&parts).map_err(|e| e.to_string())?;
    let data = form.data()?;
    let r = render_bounded(&parts, &data).await.map_err(|e| e.to_string())?;
    Ok([("subject", r.subject), ("body", r.body), ("html_body", r.html_body)]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect())
}

pub(super) async fn template(
    State(state): State<AppState>,
    signed: Signed,
    ApiPath(name): ApiPath<String>,
    Query(q): Query<TemplateQuery>,
) -> Response {
    if TemplateName::parse(&name).is_err() {
        return (StatusCode::NOT_FOUND, "no such template").into_response();
    }
    let found = crate::templates::find(&state.store, &name, q.locale.as_deref())
        .await
        .ok()
        .flatten();
    let form = match found {
        Some(t) => TemplateForm {
            locale: t.locale,
            channel: t.channel.unwrap_or_default(),
            subject: t.parts.subject.unwrap_or_default(),
            body: t.parts.body.unwrap_or_default(),
            html_body: t.parts.html_body.unwrap_or_default(),
            ..TemplateForm::default()
        },
        None => TemplateForm {
            locale: q.locale.unwrap_or_else(|| "en".into()),
            ..TemplateForm::default()
        },
    };
    let flash = (q.done.as_deref() == Some("saved"))
        .then(|| Flash::ok("Saved as a new version."))
        .flatten();
    editor(&state, &signed, &name, &form, flash).await
}

pub(super) async fn save_template(
    State(state): State<AppState>,
    signed: Signed,
    ApiPath(name): ApiPath<String>,
    Form(form): Form<TemplateForm>,
) -> Response {
    if let Err(r) = signed.check_csrf(&form.csrf) {
        return r.into_response();
    }
    let channel = Some(form.channel.as_str()).filter(|c| !c.is_empty());
    let locale = Some(form.locale.trim()).filter(|l| !l.is_empty());
    let draft = match TemplateDraft::parse(&name, locale, channel, form.parts(), false) {
        Ok(d) => d,
        Err(e) => return editor(&state, &signed, &name, &form, Flash::error(e.to_string())).await,
    };
    if let Err(e) = check(&draft.parts) {
        return editor(&state, &signed, &name, &form, Flash::error(e.to_string())).await;
    }
    match state.store.put_template(&draft, state.clock.now()).await {
        Ok(saved) => see_other(&format!(
            "/dashboard/templates/{name}?locale={}&done=saved",
            saved.locale
        )),
        Err(e) => editor(&state, &signed, &name, &form, Flash::error(e.to_string())).await,
    }
}

/// The live preview (JSON for the editor's script; the whole page for a
/// browser without it).
pub(super) async fn preview(
    State(state): State<AppState>,
    signed: Signed,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    Form(form): Form<TemplateForm>,
) -> Response {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let csrf = if wants_json {
        headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    } else {
        form.csrf.clone()
    };
    if let Err(r) = signed.check_csrf(&csrf) {
        return r.into_response();
    }
    if !wants_json {
        return editor(&state, &signed, &name, &form, None).await;
    }
    match preview_of(&form).await {
        Ok(parts) => {
            let map: serde_json::Map<String, serde_json::Value> = parts
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            Json(map).into_response()
        }
        Err(e) => Json(serde_json::json!({"error": e})).into_response(),
    }
}

pub(super) async fn suppressions(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<DoneQuery>,
) -> Response {
    let (list, mut flash) = match state.store.suppressions(None, 500).await {
        Ok(l) => (l, None),
        Err(e) => (Vec::new(), Flash::error(e.to_string())),
    };
    if flash.is_none() {
        flash = match q.done.as_deref() {
            Some("added") => Flash::ok("Added."),
            Some("removed") => Flash::ok("Removed."),
            Some(e) if e.starts_with("error:") => Flash::error(e.trim_start_matches("error:").to_owned()),
            _ => None,
        };
    }
    page(
        &signed,
        "suppressions.html",
        "Suppressions",
        "suppressions",
        flash,
        minijinja::context! { suppressions => list, channels => Channel::ALL.map(Channel::as_str) },
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct SuppressionForm {
    csrf: String,
    channel: String,
    recipient: String,
    reason: Option<String>,
}

pub(super) async fn add_suppression(
    State(state): State<AppState>,
    signed: Signed,
    Form(f): Form<SuppressionForm>,
) -> Response {
    if let Err(r) = signed.check_csrf(&f.csrf) {
        return r.into_response();
    }
    let recipient = match parse_channel_and_recipient(Some(&f.channel), Some(&f.recipient)) {
        Ok(r) => r,
        Err(e) => return error_flash("/dashboard/suppressions", e),
    };
    let reason = f
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or("added in the dashboard");
    if let Err(e) = crate::domain::check_text("reason", reason, crate::domain::TextKind::SingleLine) {
        return error_flash("/dashboard/suppressions", e);
    }
    match state
        .store
        .suppress(&recipient, reason, "dashboard", state.clock.now())
        .await
    {
        Ok(_) => see_other("/dashboard/suppressions?done=added"),
        Err(e) => error_flash("/dashboard/suppressions", e),
    }
}

pub(super) async fn remove_suppression(
    State(state): State<AppState>,
    signed: Signed,
    Form(f): Form<SuppressionForm>,
) -> Response {
    if let Err(r) = signed.check_csrf(&f.csrf) {
        return r.into_response();
    }
    let recipient = match parse_channel_and_recipient(Some(&f.channel), Some(&f.recipient)) {
        Ok(r) => r,
        Err(e) => return error_flash("/dashboard/suppressions", e),
    };
    match state.store.unsuppress(&recipient).await {
        Ok(_) => see_other("/dashboard/suppressions?done=removed"),
        Err(e) => error_flash("/dashboard/suppressions", e),
    }
}
