//! One error type for the API, mapped to a response once:
//! `{"error": {"code", "message", "field"}}`, opaque for server faults.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::ValidationError;
use crate::store::StoreError;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// Batch requests: one entry per rejected message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ItemError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code, e.g. `invalid_field`, `not_found`.
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemError {
    /// Position of the message in the batch, from 0.
    pub index: usize,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub items: Vec<ItemError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            items: Vec::new(),
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// A template reached a rendering limit (steps, output size).
    pub fn template_limit(text: String) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "template_limit", text).field("template")
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required: Authorization: Bearer <key>",
        )
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", e.message).field(e.field)
    }
}

impl From<crate::templates::PrepareError> for ApiError {
    fn from(e: crate::templates::PrepareError) -> Self {
        match e {
            crate::templates::PrepareError::Invalid(v) => v.into(),
            crate::templates::PrepareError::Limit(text) => ApiError::template_limit(text),
            crate::templates::PrepareError::Store(s) => s.into(),
        }
    }
}

impl From<crate::templates::RenderError> for ApiError {
    fn from(e: crate::templates::RenderError) -> Self {
        match e {
            crate::templates::RenderError::Invalid(v) => v.into(),
            crate::templates::RenderError::Limit(text) => ApiError::template_limit(text),
        }
    }
}

impl From<super::enqueuer::EnqueueError> for ApiError {
    fn from(e: super::enqueuer::EnqueueError) -> Self {
        match e {
            super::enqueuer::EnqueueError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            ),
            super::enqueuer::EnqueueError::Store(s) => s.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => ApiError::not_found(format!("message {id} not found")),
            e @ StoreError::WrongStatus { .. } => ApiError::new(StatusCode::CONFLICT, "invalid_status", e.to_string()),
            other => {
                // Details go to the log, never to the caller.
                tracing::error!(error = %other, "database error while serving a request");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}

/// The field serde names in its own words ("unknown field `x`", "missing
/// field `x`", "duplicate field `x`"); other backticked words in its
/// messages are values, not fields.
fn named_field(detail: &str) -> Option<String> {
    ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .find_map(|p| detail.find(p).map(|at| &detail[at + p.len()..]))
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_owned())
}

/// axum reports "Failed to deserialize …: <path>: <serde message>"; the
/// path names the field (for unknown or missing fields, serde's message
/// does). A body that is not an object at all names no field.
fn data_error_field(text: &str) -> (Option<String>, String) {
    let text = text.split_once("target type: ").map_or(text, |(_, rest)| rest);
    if let Some((path, detail)) = text.split_once(": ") {
        let is_path = !path.is_empty()
            && !path.starts_with('[')
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'))
            && path != ".";
        if is_path {
            return (Some(path.to_owned()), detail.to_owned());
        }
        return (named_field(detail), detail.to_owned());
    }
    (named_field(text), text.to_owned())
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send JSON with Content-Type: application/json",
            ),
            JsonRejection::JsonDataError(e) => {
                let (field, detail) = data_error_field(&e.body_text());
                let err = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", detail);
                match field {
                    Some(f) => err.field(f),
                    None => err,
                }
            }
            JsonRejection::JsonSyntaxError(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {}", e.body_text()),
            ),
            JsonRejection::BytesRejection(_) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is too large",
            ),
            other => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        let text = r.body_text();
        let detail = text
            .rsplit_once(": ")
            .map(|(_, d)| d.to_owned())
            .unwrap_or(text.clone());
        let err = ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", detail.clone());
        match named_field(&detail) {
            Some(f) => err.field(f),
            None => err,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
            },
            errors: self.items,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// `axum::extract::Path`, answering a bad parameter with Herald's JSON
/// error (400 `invalid_path`, naming the parameter) instead of plain text.
#[derive(Debug)]
pub(super) struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(r) => {
                let names: Vec<String> = parts
                    .extensions
                    .get::<axum::extract::MatchedPath>()
                    .map(|m| {
                        m.as_str()
                            .split('/')
                            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                let field = match &r {
                    PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                        ErrorKind::ParseErrorAtKey { key, .. }
                        | ErrorKind::InvalidUtf8InPathParam { key }
                        | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
                        ErrorKind::ParseErrorAtIndex { index, .. } => names.get(*index).cloned(),
                        _ => names.first().cloned(),
                    },
                    _ => names.first().cloned(),
                };
                let name = field.clone().unwrap_or_else(|| "path".into());
                let err = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_path",
                    format!("path parameter {name} is invalid: {}", r.body_text()),
                );
                Err(match field {
                    Some(f) => err.field(f),
                    None => err,
                })
            }
        }
    }
}
