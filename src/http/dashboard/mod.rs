//! The operator dashboard, served by `herald serve` at `/dashboard`:
//! server-rendered HTML (MiniJinja), one small script for live updates,
//! all embedded in the binary (works offline, no build step).
//!
//! - `session.rs`: sign-in (API key or `DASHBOARD_PASSWORD`), the session
//!   cookie, CSRF
//! - `overview.rs`: figures from the statistics rollup, and the chart
//! - `messages.rs`: list, detail, retry, cancel, bulk retry, test send
//! - `manage.rs`: templates and suppressions
//! - `alerts.rs`: rules, state and history
//! - `webhooks.rs`: status webhook endpoints, their log, replays; circuits

mod alerts;
mod chart;
mod manage;
mod messages;
mod overview;
mod session;
mod webhooks;

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::Environment;
use serde::Serialize;

use super::AppState;
pub(super) use session::{DashboardAuth, Signed};

/// Every page's templates, compiled once.
fn pages() -> &'static Environment<'static> {
    static PAGES: OnceLock<Environment<'static>> = OnceLock::new();
    PAGES.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("pages/base.html")),
            ("login.html", include_str!("pages/login.html")),
            ("overview.html", include_str!("pages/overview.html")),
            ("messages.html", include_str!("pages/messages.html")),
            ("message.html", include_str!("pages/message.html")),
            ("confirm.html", include_str!("pages/confirm.html")),
            ("send.html", include_str!("pages/send.html")),
            ("templates.html", include_str!("pages/templates.html")),
            ("template.html", include_str!("pages/template.html")),
            ("suppressions.html", include_str!("pages/suppressions.html")),
            ("alerts.html", include_str!("pages/alerts.html")),
            ("webhooks.html", include_str!("pages/webhooks.html")),
            ("webhook.html", include_str!("pages/webhook.html")),
        ] {
            env.add_template(name, source).expect("dashboard pages compile");
        }
        env
    })
}

/// The page-wide values every template gets.
#[derive(Debug, Serialize)]
struct Frame<'a> {
    title: &'a str,
    page: &'a str,
    csrf: &'a str,
    signed_in: bool,
    flash: Option<String>,
    flash_error: bool,
}

/// Headers every dashboard answer carries: a strict Content-Security-Policy
/// (scripts and styles from this server only, no inline code, no framing),
/// and no caching of pages that show customers' data.
fn secure_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// Render page `name` with `frame` and the page's own values.
fn render(name: &str, frame: Frame<'_>, values: impl Serialize) -> Response {
    let ctx =
        minijinja::context! { ..minijinja::Value::from_serialize(&frame), ..minijinja::Value::from_serialize(&values) };
    let mut resp = match pages().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, page = name, "dashboard page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be shown").into_response()
        }
    };
    secure_headers(&mut resp);
    resp
}

/// A page for a signed-in operator.
fn page(signed: &Signed, name: &str, title: &str, key: &str, flash: Option<Flash>, values: impl Serialize) -> Response {
    let (flash, flash_error) = match flash {
        Some(f) => (Some(f.text), f.error),
        None => (None, false),
    };
    render(
        name,
        Frame {
            title,
            page: key,
            csrf: &signed.csrf,
            signed_in: true,
            flash,
            flash_error,
        },
        values,
    )
}

/// A one-line notice at the top of a page.
#[derive(Debug, Clone)]
struct Flash {
    text: String,
    error: bool,
}

impl Flash {
    fn ok(text: impl Into<String>) -> Option<Flash> {
        Some(Flash {
            text: text.into(),
            error: false,
        })
    }

    fn error(text: impl Into<String>) -> Option<Flash> {
        Some(Flash {
            text: text.into(),
            error: true,
        })
    }
}

/// After a form post: go to `to` (303, so a reload does not post again).
fn see_other(to: &str) -> Response {
    let mut r = Redirect::to(to).into_response();
    secure_headers(&mut r);
    r
}

/// After a form post that failed: back to `path` (which may already have a
/// query) with the error as a one-line notice.
fn error_flash(path: &str, e: impl std::fmt::Display) -> Response {
    let text: String = form_urlencoded::byte_serialize(format!("error:{e}").as_bytes()).collect();
    let sep = if path.contains('?') { '&' } else { '?' };
    see_other(&format!("{path}{sep}done={text}"))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        body,
    )
        .into_response();
    secure_headers(&mut r);
    r
}

/// The dashboard's routes (every one behind sign-in except the sign-in
/// page itself and the static assets).
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { see_other("/dashboard") }))
        .route(
            "/dashboard/static/app.css",
            get(|| asset("text/css; charset=utf-8", include_str!("assets/app.css"))),
        )
        .route(
            "/dashboard/static/app.js",
            get(|| asset("text/javascript; charset=utf-8", include_str!("assets/app.js"))),
        )
        .route("/dashboard/login", get(session::login_page).post(session::login))
        .route("/dashboard/logout", post(session::logout))
        .route("/dashboard", get(overview::overview))
        .route("/dashboard/messages", get(messages::list))
        .route(
            "/dashboard/messages/retry",
            get(messages::bulk_retry_confirm).post(messages::bulk_retry),
        )
        .route("/dashboard/messages/{id}", get(messages::detail))
        .route("/dashboard/messages/{id}/status", get(messages::status))
        .route("/dashboard/messages/{id}/retry", post(messages::retry))
        .route("/dashboard/messages/{id}/cancel", post(messages::cancel))
        .route("/dashboard/send", get(messages::send_page).post(messages::send))
        .route("/dashboard/templates", get(manage::templates))
        .route("/dashboard/templates/new", get(manage::new_template))
        .route(
            "/dashboard/templates/{name}",
            get(manage::template).post(manage::save_template),
        )
        .route("/dashboard/templates/{name}/preview", post(manage::preview))
        .route(
            "/dashboard/suppressions",
            get(manage::suppressions).post(manage::add_suppression),
        )
        .route("/dashboard/suppressions/remove", post(manage::remove_suppression))
        .route("/dashboard/alerts", get(alerts::alerts).post(alerts::add_rule))
        .route("/dashboard/alerts/remove", post(alerts::remove_rule))
        .route("/dashboard/webhooks", get(webhooks::list).post(webhooks::add))
        .route("/dashboard/webhooks/{id}", get(webhooks::detail).post(webhooks::act))
}

/// A time as the dashboard shows it.
fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// A short, one-line extract of a text.
fn summary(text: Option<&str>, max: usize) -> String {
    let one_line: String = text.unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > max {
        one_line.chars().take(max).collect::<String>() + "…"
    } else {
        one_line
    }
}
