//! `/api/templates`: create or replace (as a new version), list, show,
//! delete and preview message templates.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiPath, ErrorBody};
use super::AppState;
use crate::domain::{check_json, TemplateDraft, TemplateParts};
use crate::store::TemplateVersion;
use crate::templates::{check, find, render_bounded};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TemplateRequest {
    /// sms, whatsapp or email; omit for every channel.
    #[schema(schema_with = super::schema::channel)]
    pub channel: Option<String>,
    /// e.g. `pt-BR`, `pt`, `en` (default `en`).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,35}$")]
    pub locale: Option<String>,
    pub subject: Option<String>,
    pub body: Option<String>,
    pub html_body: Option<String>,
    /// Twilio Content template (`HX…`) for WhatsApp messages outside the 24-hour window.
    pub content_sid: Option<String>,
    /// The Content template's variables, each a MiniJinja expression, e.g. `{"1": "{{ customer }}"}`.
    #[schema(value_type = Option<Object>)]
    pub content_variables: Option<serde_json::Map<String, serde_json::Value>>,
    /// Use this locale when a requested one (and its language) does not exist.
    pub default: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TemplateList {
    pub templates: Vec<TemplateVersion>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PreviewRequest {
    /// The locale wanted (falls back to its language, then the default).
    pub locale: Option<String>,
    /// The template's variables (default: none).
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Preview {
    pub version: i32,
    pub locale: String,
    pub subject: Option<String>,
    pub body: Option<String>,
    pub html_body: Option<String>,
    pub content_sid: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub content_variables: Option<serde_json::Value>,
}

/// Create a template, or save a new version of it. Messages already queued keep the version they were rendered with.
#[utoipa::path(put, path = "/api/templates/{name}", tag = "templates", request_body = TemplateRequest,
    params(("name" = String, Path)),
    responses((status = 200, description = "Saved; the new version", body = TemplateVersion),
              (status = 422, description = "Invalid, or a part does not compile (`message` gives line and reason)", body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn put(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    body: Result<Json<TemplateRequest>, JsonRejection>,
) -> Result<Json<TemplateVersion>, ApiError> {
    let Json(req) = body?;
    let parts = TemplateParts {
        subject: req.subject,
        body: req.body,
        html_body: req.html_body,
        content_sid: req.content_sid,
        content_variables: req.content_variables,
    };
    let draft = TemplateDraft::parse(
        &name,
        req.locale.as_deref(),
        req.channel.as_deref(),
        parts,
        req.default.unwrap_or(false),
    )?;
    check(&draft.parts)?;
    let saved = state.store.put_template(&draft, state.clock.now()).await?;
    Ok(Json(saved))
}

/// Every template: the latest version of each locale.
#[utoipa::path(get, path = "/api/templates", tag = "templates",
    responses((status = 200, body = TemplateList), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<TemplateList>, ApiError> {
    Ok(Json(TemplateList {
        templates: state.store.templates(None).await?,
    }))
}

/// One template: the latest version of each of its locales.
#[utoipa::path(get, path = "/api/templates/{name}", tag = "templates", params(("name" = String, Path)),
    responses((status = 200, body = TemplateList), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn show(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<TemplateList>, ApiError> {
    let templates = state.store.templates(Some(&name)).await?;
    if templates.is_empty() {
        return Err(ApiError::not_found(format!("no template named {name:?}")));
    }
    Ok(Json(TemplateList { templates }))
}

/// Delete a template (all versions and locales). Queued messages are not affected.
#[utoipa::path(delete, path = "/api/templates/{name}", tag = "templates", params(("name" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn delete(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    if state.store.delete_template(&name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("no template named {name:?}")))
    }
}

/// Render a template with data, without queueing anything.
#[utoipa::path(post, path = "/api/templates/{name}/preview", tag = "templates", request_body = PreviewRequest,
    params(("name" = String, Path)),
    responses((status = 200, body = Preview), (status = 404, body = ErrorBody),
              (status = 422, description = "A variable is missing from data", body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn preview(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    body: Result<Json<PreviewRequest>, JsonRejection>,
) -> Result<Json<Preview>, ApiError> {
    let Json(req) = body?;
    if let Some(d) = &req.data {
        check_json("data", d)?;
    }
    let Some(t) = find(&state.store, &name, req.locale.as_deref()).await? else {
        return Err(ApiError::not_found(format!("no template named {name:?}")));
    };
    let data = req.data.unwrap_or_else(|| serde_json::json!({}));
    let r = render_bounded(&t.parts, &data).await?;
    Ok(Json(Preview {
        version: t.version,
        locale: t.locale,
        subject: r.subject,
        body: r.body,
        html_body: r.html_body,
        content_sid: r.content_sid,
        content_variables: r.content_variables,
    }))
}
