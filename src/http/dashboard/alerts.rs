//! The alerts page: each condition's state, the rules (the environment's
//! and the stored ones, which can be added and removed here) and history.

use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{error_flash, page, see_other, when, Flash, Signed};
use crate::alerts::{Rule, RuleKind};
use crate::domain::Channel;
use crate::http::AppState;

/// Kinds offered in the form: (value, label).
const KINDS: [(&str, &str); 8] = [
    ("failure_ratio", "failure ratio above"),
    ("queue_age", "oldest due message older than (min)"),
    ("credentials", "credentials refused"),
    ("timeouts", "timeouts at least"),
    ("delivery_rate", "delivery rate below"),
    ("webhook_rejections", "bad webhook signatures at least"),
    ("circuit_open", "a provider's circuit is open"),
    ("webhook_endpoint_disabled", "a status webhook endpoint was disabled"),
];

/// A rule in words.
pub(in crate::http) fn describe(kind: &RuleKind) -> String {
    match kind {
        RuleKind::FailureRatio { threshold, min_volume } => {
            format!(
                "failed sends above {:.0} % (from {min_volume} sends)",
                threshold * 100.0
            )
        }
        RuleKind::QueueAge { minutes } => format!("oldest due message older than {minutes} min"),
        RuleKind::Credentials => "a provider refuses Herald's credentials".into(),
        RuleKind::Timeouts { count } => format!("{count} or more provider timeouts"),
        RuleKind::DeliveryRate { threshold, min_volume } => {
            format!(
                "delivered below {:.0} % (from {min_volume} receipts)",
                threshold * 100.0
            )
        }
        RuleKind::WebhookRejections { count } => format!("{count} or more webhook requests with a bad signature"),
        RuleKind::CircuitOpen => "a provider's circuit is open".into(),
        RuleKind::WebhookEndpointDisabled => "a status webhook endpoint was disabled".into(),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct DoneQuery {
    done: Option<String>,
}

pub(super) async fn alerts(State(state): State<AppState>, signed: Signed, Query(q): Query<DoneQuery>) -> Response {
    let runner = state.alerts.clone();
    let rules = runner.rules().await;
    let (states, events) = tokio::join!(state.store.alert_states(), state.store.alert_events(100));
    let states: Vec<_> = states
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let summary = s
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .and_then(|v| v.get("summary").and_then(|x| x.as_str()).map(str::to_owned))
                .unwrap_or_default();
            minijinja::context! { key => s.key, firing => s.firing, since => when(s.since), summary }
        })
        .collect();
    let events: Vec<_> = events
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let sent: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&e.deliveries)
                .unwrap_or_default()
                .iter()
                .map(|d| {
                    format!(
                        "{} ({})",
                        d.get("target").and_then(|t| t.as_str()).unwrap_or(""),
                        if d.get("ok").and_then(|o| o.as_bool()) == Some(true) { "ok" } else { "not sent" }
                    )
                })
                .collect();
            minijinja::context! { at => when(e.at), rule_id => e.rule_id, kind => e.kind, summary => e.summary, deliveries => sent.join(", ") }
        })
        .collect();
    let rules: Vec<_> = rules
        .iter()
        .map(|r| {
            let scope = match (&r.channel, &r.provider) {
                (Some(c), Some(p)) => format!("{c} via {p}"),
                (Some(c), None) => c.clone(),
                (None, Some(p)) => p.clone(),
                (None, None) => match r.kind {
                    RuleKind::QueueAge { .. } | RuleKind::WebhookRejections { .. } => "all messages".into(),
                    RuleKind::Credentials | RuleKind::Timeouts { .. } | RuleKind::CircuitOpen => "each provider".into(),
                    RuleKind::WebhookEndpointDisabled => "each endpoint".into(),
                    _ => "each channel and provider".into(),
                },
            };
            minijinja::context! { id => r.id, describe => describe(&r.kind), window_minutes => r.window_minutes, scope, source => r.source }
        })
        .collect();
    let targets = state.alerts.targets_summary();
    let flash = match q.done.as_deref() {
        Some("added") => Flash::ok("Rule added."),
        Some("removed") => Flash::ok("Rule removed."),
        Some(e) if e.starts_with("error:") => Flash::error(e.trim_start_matches("error:").to_owned()),
        _ => None,
    };
    page(
        &signed,
        "alerts.html",
        "Alerts",
        "alerts",
        flash,
        minijinja::context! {
            states, events, rules, targets, kinds => KINDS,
            interval => state.alerts.interval_seconds(),
            channels => Channel::ALL.map(Channel::as_str),
        },
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct RuleForm {
    csrf: String,
    id: String,
    kind: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    min_volume: String,
    #[serde(default)]
    window_minutes: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    provider: String,
}

/// A rule from the form's fields.
fn rule_of(f: &RuleForm) -> Result<Rule, String> {
    let num = |s: &str, what: &str| {
        s.trim()
            .parse::<f64>()
            .map_err(|_| format!("{what}: {s:?} is not a number"))
    };
    let int = |s: &str, what: &str| {
        s.trim()
            .parse::<i64>()
            .map_err(|_| format!("{what}: {s:?} is not a whole number"))
    };
    let min_volume = if f.min_volume.trim().is_empty() {
        10
    } else {
        int(&f.min_volume, "min volume")?
    };
    let kind = match f.kind.as_str() {
        "failure_ratio" => RuleKind::FailureRatio {
            threshold: num(&f.value, "threshold")?,
            min_volume,
        },
        "queue_age" => RuleKind::QueueAge {
            minutes: int(&f.value, "minutes")?,
        },
        "credentials" => RuleKind::Credentials,
        "circuit_open" => RuleKind::CircuitOpen,
        "webhook_endpoint_disabled" => RuleKind::WebhookEndpointDisabled,
        "timeouts" => RuleKind::Timeouts {
            count: int(&f.value, "count")?,
        },
        "delivery_rate" => RuleKind::DeliveryRate {
            threshold: num(&f.value, "threshold")?,
            min_volume,
        },
        "webhook_rejections" => RuleKind::WebhookRejections {
            count: int(&f.value, "count")?,
        },
        other => return Err(format!("no such kind of rule: {other:?}")),
    };
    let rule = Rule {
        id: f.id.trim().to_owned(),
        kind,
        window_minutes: if f.window_minutes.trim().is_empty() {
            15
        } else {
            int(&f.window_minutes, "window")?
        },
        channel: Some(f.channel.trim().to_owned()).filter(|c| !c.is_empty()),
        provider: Some(f.provider.trim().to_owned()).filter(|p| !p.is_empty()),
        source: "stored".into(),
    };
    rule.validate().map_err(|(_, e)| e)?;
    Ok(rule)
}

fn back(e: impl std::fmt::Display) -> Response {
    error_flash("/dashboard/alerts", e)
}

pub(super) async fn add_rule(State(state): State<AppState>, signed: Signed, Form(f): Form<RuleForm>) -> Response {
    if let Err(r) = signed.check_csrf(&f.csrf) {
        return r.into_response();
    }
    let rule = match rule_of(&f) {
        Ok(r) => r,
        Err(e) => return back(e),
    };
    if state.alerts.rules().await.iter().any(|r| r.id == rule.id) {
        return back(format!("a rule named {:?} exists", rule.id));
    }
    let json = serde_json::to_string(&rule).expect("rule serializes");
    match state.store.add_alert_rule(&rule.id, &json, state.clock.now()).await {
        Ok(true) => see_other("/dashboard/alerts?done=added"),
        Ok(false) => back(format!("a rule named {:?} exists", rule.id)),
        Err(e) => back(e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RemoveForm {
    csrf: String,
    id: String,
}

pub(super) async fn remove_rule(State(state): State<AppState>, signed: Signed, Form(f): Form<RemoveForm>) -> Response {
    if let Err(r) = signed.check_csrf(&f.csrf) {
        return r.into_response();
    }
    match state.store.delete_alert_rule(&f.id).await {
        Ok(true) => see_other("/dashboard/alerts?done=removed"),
        Ok(false) => back("rules from the environment cannot be removed here"),
        Err(e) => back(e),
    }
}
