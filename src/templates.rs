//! Message templates: MiniJinja parts compiled on save and rendered when a
//! message is queued. Undefined variables are errors; HTML parts are
//! auto-escaped, text parts are not. Pure: the store keeps the templates.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::Value;

use crate::domain::{Locale, NewMessage, RawMessage, TemplateParts, TemplateRef, ValidationError};
use crate::store::{Store, StoreError, TemplateVersion};

/// The parts after rendering.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    pub subject: Option<String>,
    pub body: Option<String>,
    pub html_body: Option<String>,
    pub content_sid: Option<String>,
    pub content_variables: Option<Value>,
}

/// Template name used for a part: `.html` turns on auto-escaping.
fn part_name(field: &str) -> String {
    if field == "html_body" {
        "html_body.html".to_owned()
    } else {
        field.to_owned()
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env
}

/// Every part with its field name (content variables as `content_variables.<key>`).
fn parts(p: &TemplateParts) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (field, text) in [("subject", &p.subject), ("body", &p.body), ("html_body", &p.html_body)] {
        if let Some(t) = text {
            out.push((field.to_owned(), t.clone()));
        }
    }
    if let Some(vars) = &p.content_variables {
        for (k, v) in vars {
            out.push((
                format!("content_variables.{k}"),
                v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()),
            ));
        }
    }
    out
}

fn compile_error(field: &str, e: &minijinja::Error) -> ValidationError {
    let reason = e.detail().map(str::to_owned).unwrap_or_else(|| e.kind().to_string());
    let at = e.line().map(|l| format!("line {l}: ")).unwrap_or_default();
    ValidationError::new(leak(field), format!("{at}{reason}"))
}

/// Field names are a small fixed set plus content variable keys; keep them 'static.
fn leak(field: &str) -> &'static str {
    match field {
        "subject" => "subject",
        "body" => "body",
        "html_body" => "html_body",
        _ => "content_variables",
    }
}

/// Check that every part compiles; the error names the part, the line and why.
pub fn check(p: &TemplateParts) -> Result<(), ValidationError> {
    if p.subject.is_none() && p.body.is_none() && p.html_body.is_none() && p.content_sid.is_none() {
        return Err(ValidationError::new(
            "body",
            "a template needs at least one of subject, body, html_body, content_sid",
        ));
    }
    let mut env = environment();
    for (field, text) in parts(p) {
        env.add_template_owned(part_name(&field), text)
            .map_err(|e| compile_error(&field, &e))?;
    }
    Ok(())
}

/// Whether `path` (e.g. `order.total`) is present in `data`.
fn present(data: &Value, path: &str) -> bool {
    let mut cur = data;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return false,
        }
    }
    true
}

/// Render every part with `data` (a JSON object). A variable the data does
/// not have is an error that names it.
pub fn render(p: &TemplateParts, data: &Value) -> Result<Rendered, ValidationError> {
    if !data.is_object() {
        return Err(ValidationError::new("data", "data must be a JSON object"));
    }
    let mut env = environment();
    let all = parts(p);
    for (field, text) in &all {
        env.add_template_owned(part_name(field), text.clone())
            .map_err(|e| compile_error(field, &e))?;
    }
    let mut out = Rendered {
        content_sid: p.content_sid.clone(),
        ..Rendered::default()
    };
    let mut vars = serde_json::Map::new();
    for (field, _) in &all {
        let tmpl = env
            .get_template(&part_name(field))
            .map_err(|e| compile_error(field, &e))?;
        // Name missing variables before rendering: MiniJinja's strict mode
        // says "undefined value" without saying which.
        let mut missing: Vec<String> = tmpl
            .undeclared_variables(true)
            .into_iter()
            .filter(|v| !present(data, v))
            .collect();
        missing.sort();
        if let Some(first) = missing.first() {
            return Err(ValidationError::new(
                "data",
                format!("the template's {field} uses `{first}`, which data does not have"),
            ));
        }
        let text = tmpl.render(data).map_err(|e| {
            ValidationError::new(
                "data",
                format!("{field}: {}", e.detail().unwrap_or(&e.kind().to_string())),
            )
        })?;
        match field.as_str() {
            "subject" => out.subject = Some(text),
            "body" => out.body = Some(text),
            "html_body" => out.html_body = Some(text),
            other => {
                let key = other.trim_start_matches("content_variables.");
                vars.insert(key.to_owned(), Value::String(text));
            }
        }
    }
    if p.content_variables.is_some() {
        out.content_variables = Some(Value::Object(vars));
    }
    Ok(out)
}

/// The template to use for `name` in `locale`: the locale, then its
/// language, then the template's default locale (the one saved as default,
/// else the first one saved).
pub async fn find(store: &Store, name: &str, locale: Option<&str>) -> Result<Option<TemplateVersion>, StoreError> {
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
    #[error(transparent)]
    Store(#[from] StoreError),
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
    let Some(t) = find(store, template, locale).await? else {
        return Err(ValidationError::new("template", format!("there is no template named {template:?}")).into());
    };
    if let (Some(tc), Some(c)) = (&t.channel, &raw.channel) {
        if !tc.eq_ignore_ascii_case(c.trim()) {
            return Err(ValidationError::new("template", format!("template {template:?} is for {tc}, not {c}")).into());
        }
    }
    let empty = Value::Object(Default::default());
    let r = render(&t.parts, data.unwrap_or(&empty))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts(body: &str, html: Option<&str>) -> TemplateParts {
        TemplateParts {
            body: Some(body.into()),
            html_body: html.map(Into::into),
            subject: Some("Receipt {{ order }}".into()),
            ..Default::default()
        }
    }

    #[test]
    fn renders_with_data_escaping_only_html() {
        let p = parts("Hi {{ name }}, total {{ total }}", Some("<p>Hi {{ name }}</p>"));
        let r = render(&p, &json!({"name": "Ana & <Bob>", "total": "R$ 10", "order": 7})).unwrap();
        assert_eq!(r.body.as_deref(), Some("Hi Ana & <Bob>, total R$ 10"));
        assert_eq!(r.html_body.as_deref(), Some("<p>Hi Ana &amp; &lt;Bob&gt;</p>"));
        assert_eq!(r.subject.as_deref(), Some("Receipt 7"));
    }

    #[test]
    fn a_missing_variable_is_named() {
        let p = parts("Hi {{ customer.name }}", None);
        let e = render(&p, &json!({"order": 1, "customer": {}})).unwrap_err();
        assert_eq!(e.field, "data");
        assert!(e.message.contains("customer.name"), "{}", e.message);
        let e = render(&p, &json!({"order": 1})).unwrap_err();
        assert!(e.message.contains("customer"), "{}", e.message);
    }

    #[test]
    fn compile_errors_give_line_and_reason() {
        let p = parts("line one\n{{ name ", None);
        let e = check(&p).unwrap_err();
        assert_eq!(e.field, "body");
        assert!(e.message.starts_with("line 2:"), "{}", e.message);
        assert!(check(&TemplateParts::default()).is_err());
    }

    #[test]
    fn content_variables_are_rendered() {
        let mut vars = serde_json::Map::new();
        vars.insert("1".into(), json!("{{ name }}"));
        vars.insert("2".into(), json!("{{ date }}"));
        let p = TemplateParts {
            content_sid: Some("HX1".into()),
            content_variables: Some(vars),
            ..Default::default()
        };
        let r = render(&p, &json!({"name": "Ana", "date": "12/1"})).unwrap();
        assert_eq!(r.content_variables, Some(json!({"1": "Ana", "2": "12/1"})));
        assert_eq!(r.content_sid.as_deref(), Some("HX1"));
    }
}
