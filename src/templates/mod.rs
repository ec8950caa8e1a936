//! Message templates: MiniJinja parts compiled on save and rendered when a
//! message is queued. Undefined variables are errors; HTML parts are
//! auto-escaped, text parts are not. Pure: the store keeps the templates.

mod render;

use serde_json::Value;

pub use render::{check, render, render_bounded, RenderError, Rendered, FUEL, MAX_CONCURRENT_RENDERS, MAX_PART_SOURCE};

use crate::domain::{check_json, Locale, NewMessage, RawMessage, TemplateName, TemplateRef, ValidationError};
use crate::store::{Store, StoreError, TemplateVersion};

/// The template to use for `name` in `locale`: the locale, then its
/// language, then the template's default locale (the one saved as default,
/// else the first one saved).
pub async fn find(store: &Store, name: &str, locale: Option<&str>) -> Result<Option<TemplateVersion>, StoreError> {
    if TemplateName::parse(name).is_err() {
        // No template can have this name (and it is not sent to the database).
        return Ok(None);
    }
    let all = store.templates(Some(name)).await?;
    let default = all
        .iter()
        .find(|t| t.is_default)
        .or_else(|| all.iter().min_by_key(|t| t.version))
        .map(|t| t.locale.clone())
        .unwrap_or_default();
    for l in Locale::chain(locale, &default) {
        if let Some(t) = all.iter().find(|t| t.locale.eq_ignore_ascii_case(&l)) {
            return Ok(Some(t.clone()));
        }
    }
    Ok(None)
}

/// Why a templated message could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A rendering limit was reached (the text names it).
    #[error("{0}")]
    Limit(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RenderError> for PrepareError {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::Invalid(v) => PrepareError::Invalid(v),
            RenderError::Limit(text) => PrepareError::Limit(text),
        }
    }
}

/// Build a message from a template: find it (with locale fallback), render
/// it with `data`, and parse the result like any other message. `raw` holds
/// the channel, recipient, `send_at` and metadata; its content must be empty.
pub async fn prepare(
    store: &Store,
    mut raw: RawMessage,
    template: &str,
    locale: Option<&str>,
    data: Option<&Value>,
) -> Result<NewMessage, PrepareError> {
    let literal = [
        raw.subject.is_some(),
        raw.body.is_some(),
        raw.html_body.is_some(),
        raw.content_sid.is_some(),
        raw.content_variables.is_some(),
    ];
    if literal.iter().any(|x| *x) {
        return Err(ValidationError::new(
            "template",
            "give either a template or subject/body/html_body/content_sid, not both",
        )
        .into());
    }
    if let Some(d) = data {
        check_json("data", d)?;
    }
    let Some(t) = find(store, template, locale).await? else {
        return Err(ValidationError::new("template", format!("there is no template named {template:?}")).into());
    };
    if let (Some(tc), Some(c)) = (&t.channel, &raw.channel) {
        if !tc.eq_ignore_ascii_case(c.trim()) {
            return Err(ValidationError::new("template", format!("template {template:?} is for {tc}, not {c}")).into());
        }
    }
    let empty = Value::Object(Default::default());
    let r = render_bounded(&t.parts, data.unwrap_or(&empty)).await?;
    raw.subject = r.subject;
    raw.body = r.body;
    raw.html_body = r.html_body;
    raw.content_sid = r.content_sid;
    raw.content_variables = r.content_variables;
    let mut msg = NewMessage::parse(&raw)?;
    msg.template = Some(TemplateRef {
        name: t.name,
        version: t.version,
        locale: t.locale,
    });
    Ok(msg)
}
