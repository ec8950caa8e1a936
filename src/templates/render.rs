//! Rendering, bounded: every render has a fuel budget (MiniJinja counts
//! the instructions it runs), each part's output is capped while it is
//! written, template sources are capped when saved, and renders run off the
//! async worker threads, at most [`MAX_CONCURRENT_RENDERS`] at a time. A
//! template that loops forever or builds a huge string stops with an error
//! naming the limit; it never stalls the server or the processor.

use std::io;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde_json::Value;

use crate::domain::{TemplateParts, ValidationError, MAX_TEXT_CHARS};

/// Instructions one render may run (a receipt with 100 items needs a few
/// thousand).
pub const FUEL: u64 = 500_000;
/// Largest source of one template part, checked when it is saved.
pub const MAX_PART_SOURCE: usize = 64 * 1024;
/// Renders running at once (each on a blocking thread).
pub const MAX_CONCURRENT_RENDERS: usize = 2;
/// Largest rendered part, in bytes: the channel's own limits (a subject is
/// one line of at most 998 characters; SMS and WhatsApp text 1,600
/// characters; an email part 5 MiB).
fn output_cap(field: &str) -> usize {
    match field {
        "subject" => 998 * 4,
        "body" | "html_body" => crate::domain::MAX_EMAIL_PART_BYTES,
        _ => MAX_TEXT_CHARS * 4,
    }
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template or the data is wrong (a missing variable, a bad filter).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A limit was reached; the text names it.
    #[error("{0}")]
    Limit(String),
}

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
    env.set_fuel(Some(FUEL));
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

/// Check that every part compiles and is not too long; the error names the
/// part, the line and why.
pub fn check(p: &TemplateParts) -> Result<(), ValidationError> {
    if p.subject.is_none() && p.body.is_none() && p.html_body.is_none() && p.content_sid.is_none() {
        return Err(ValidationError::new(
            "body",
            "a template needs at least one of subject, body, html_body, content_sid",
        ));
    }
    let mut env = environment();
    for (field, text) in parts(p) {
        if text.len() > MAX_PART_SOURCE {
            return Err(ValidationError::new(
                leak(&field),
                format!(
                    "the {field} template is {} bytes; a part may have at most {MAX_PART_SOURCE}",
                    text.len()
                ),
            ));
        }
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

/// Collects a part's output and refuses to grow past its cap, so a template
/// cannot build more than the channel could ever send.
struct Capped {
    out: Vec<u8>,
    cap: usize,
    over: bool,
}

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() + buf.len() > self.cap {
            self.over = true;
            return Err(io::Error::other("output limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Render every part with `data` (a JSON object), within the limits. A
/// variable the data does not have is an error that names it.
pub fn render(p: &TemplateParts, data: &Value) -> Result<Rendered, RenderError> {
    if !data.is_object() {
        return Err(ValidationError::new("data", "data must be a JSON object").into());
    }
    let mut env = environment();
    let all = parts(p);
    for (field, text) in &all {
        env.add_template_owned(part_name(field), text.clone())
            .map_err(|e| compile_error(field, &e))?;
    }
    let globals: Vec<String> = env.globals().map(|(name, _)| name.to_owned()).collect();
    let mut out = Rendered {
        content_sid: p.content_sid.clone(),
        ..Rendered::default()
    };
    let mut vars = serde_json::Map::new();
    for (field, _) in &all {
        let tmpl = env
            .get_template(&part_name(field))
            .map_err(|e| compile_error(field, &e))?;
        let cap = output_cap(field);
        let mut w = Capped {
            out: Vec::new(),
            cap,
            over: false,
        };
        if let Err(e) = tmpl.render_captured_to(data, &mut w) {
            return Err(match e.kind() {
                _ if w.over => RenderError::Limit(format!(
                    "the {field} template rendered more than {cap} bytes (template_limit)"
                )),
                ErrorKind::OutOfFuel => RenderError::Limit(format!(
                    "the {field} template ran more than {FUEL} steps (template_limit: a loop too long, or endless)"
                )),
                ErrorKind::UndefinedError => {
                    // Strict mode says "undefined value" without saying which:
                    // name the data variable that is missing (builtins such as
                    // `range` and names guarded by `is defined` are not data).
                    let mut missing: Vec<String> = tmpl
                        .undeclared_variables(true)
                        .into_iter()
                        .filter(|v| !present(data, v))
                        .filter(|v| !globals.iter().any(|g| v == g || v.starts_with(&format!("{g}."))))
                        .collect();
                    missing.sort();
                    let message = match missing.first() {
                        Some(first) => format!("the template's {field} uses `{first}`, which data does not have"),
                        None => format!("{field}: {}", e.detail().unwrap_or("a value is undefined")),
                    };
                    ValidationError::new("data", message).into()
                }
                _ => ValidationError::new(
                    "data",
                    format!("{field}: {}", e.detail().unwrap_or(&e.kind().to_string())),
                )
                .into(),
            });
        }
        let text = String::from_utf8(w.out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
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

/// Renders in flight (see [`MAX_CONCURRENT_RENDERS`]).
static RENDERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_RENDERS);

/// [`render`] on a blocking thread, at most [`MAX_CONCURRENT_RENDERS`] at a
/// time: however heavy a template, the async workers (the API, health
/// checks, the processor's other sends) keep running.
pub async fn render_bounded(p: &TemplateParts, data: &Value) -> Result<Rendered, RenderError> {
    let _permit = RENDERS.acquire().await.expect("the render semaphore is never closed");
    let (p, data) = (p.clone(), data.clone());
    tokio::task::spawn_blocking(move || render(&p, &data))
        .await
        .unwrap_or_else(|e| Err(RenderError::Limit(format!("rendering failed: {e}"))))
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
        let invalid = |data| match render(&p, &data).unwrap_err() {
            RenderError::Invalid(v) => v,
            other => panic!("{other}"),
        };
        let e = invalid(json!({"order": 1, "customer": {}}));
        assert_eq!(e.field, "data");
        assert!(e.message.contains("customer.name"), "{}", e.message);
        let e = invalid(json!({"order": 1}));
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

    fn body(text: &str) -> TemplateParts {
        TemplateParts {
            body: Some(text.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_template_that_never_ends_runs_out_of_fuel() {
        let e = render(
            &body("{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}"),
            &json!({}),
        )
        .unwrap_err();
        assert!(matches!(&e, RenderError::Limit(t) if t.contains("steps")), "{e}");
    }

    #[test]
    fn output_is_capped_while_it_is_written() {
        for t in [
            "{{ 'x' * 100000000 }}",
            "{% for a in 'x' * 100 %}{{ 'y' * 100000000 }}{% endfor %}",
            "{% for a in range(20) %}{{ 'y' * 1000000 }}{% endfor %}",
        ] {
            let e = render(&body(t), &json!({})).unwrap_err();
            assert!(matches!(&e, RenderError::Limit(t) if t.contains("bytes")), "{t}: {e}");
        }
        let e = render(
            &TemplateParts {
                subject: Some("{{ 'x' * 5000 }}".into()),
                ..Default::default()
            },
            &json!({}),
        )
        .unwrap_err();
        assert!(matches!(e, RenderError::Limit(_)));
    }

    #[test]
    fn sources_are_capped_when_saved() {
        let e = check(&body(&"x".repeat(MAX_PART_SOURCE + 1))).unwrap_err();
        assert_eq!(e.field, "body");
        assert!(e.message.contains("at most"), "{}", e.message);
    }

    #[test]
    fn builtins_and_guarded_names_are_not_missing_data() {
        let p = body(
            "{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% endfor %}\
             {{ ns.n }} {{ dict(a=1).a }}{% if nickname is defined %} {{ nickname }}{% endif %}",
        );
        let r = render(&p, &json!({})).unwrap();
        assert_eq!(r.body.as_deref(), Some("3 1"));
        let r = render(&p, &json!({"nickname": "Ana"})).unwrap();
        assert_eq!(r.body.as_deref(), Some("3 1 Ana"));
    }
}
