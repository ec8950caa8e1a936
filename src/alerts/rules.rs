//! Alert rules, and evaluating them against the statistics (pure: every
//! input is given, so rules are tested without a clock or a database).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::StatRow;

/// What a rule watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleKind {
    /// Failed provider calls / all calls, per channel or provider, above
    /// `threshold` (0–1) once at least `min_volume` calls were made.
    FailureRatio { threshold: f64, min_volume: i64 },
    /// The oldest due message has waited longer than `minutes` (the
    /// processor is stuck or down).
    QueueAge { minutes: i64 },
    /// Any provider refused Herald's credentials (or the account).
    Credentials,
    /// A provider timed out (or answered 5xx after sending) `count` times.
    Timeouts { count: i64 },
    /// Delivered / final receipts below `threshold`, once `min_volume`
    /// receipts came in.
    DeliveryRate { threshold: f64, min_volume: i64 },
    /// `count` webhook requests with a missing or wrong signature.
    WebhookRejections { count: i64 },
    /// A provider's circuit is open: nothing goes through it (its messages
    /// use the channel's next provider, or wait).
    CircuitOpen,
    /// Herald disabled a status-webhook endpoint that kept failing: the
    /// POS hears of nothing until it is enabled again.
    WebhookEndpointDisabled,
}

/// A rule: what it watches, over which window, for which channel or
/// provider (`None`: each one, separately).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rule {
    pub id: String,
    #[serde(flatten)]
    pub kind: RuleKind,
    /// Minutes of history the rule looks at.
    pub window_minutes: i64,
    /// Only this channel (`sms`, `whatsapp`, `email`).
    pub channel: Option<String>,
    /// Only this provider.
    pub provider: Option<String>,
    /// `environment` (read-only) or `stored` (added in the dashboard or API).
    #[serde(default)]
    pub source: String,
}

impl Rule {
    /// Check a rule: the field at fault and what is wrong with it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let ratio = |t: f64| (0.0..=1.0).contains(&t);
        let bad = |field: &'static str, what: &str| Err((field, what.to_owned()));
        match &self.kind {
            RuleKind::FailureRatio { threshold, min_volume } | RuleKind::DeliveryRate { threshold, min_volume } => {
                if !ratio(*threshold) {
                    return bad("threshold", "threshold is a ratio from 0 to 1 (0.25 = 25 %)");
                }
                if *min_volume < 1 {
                    return bad("min_volume", "min_volume must be at least 1");
                }
            }
            RuleKind::QueueAge { minutes } if *minutes < 1 => return bad("minutes", "minutes must be at least 1"),
            RuleKind::Timeouts { count } | RuleKind::WebhookRejections { count } if *count < 1 => {
                return bad("count", "count must be at least 1")
            }
            _ => {}
        }
        if !(1..=7 * 24 * 60).contains(&self.window_minutes) {
            return bad("window_minutes", "window_minutes must be 1 to 10080");
        }
        if self.id.is_empty()
            || self.id.len() > 64
            || !self.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return bad("id", "id: letters, digits, - _ . (at most 64)");
        }
        if let Some(c) = &self.channel {
            crate::domain::Channel::parse(c).map_err(|e| ("channel", e.to_string()))?;
        }
        Ok(())
    }
}

/// One thing a rule is about, and whether it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    /// `rule id` + `/channel=sms` or `/provider=twilio`: one state each.
    pub key: String,
    pub rule_id: String,
    pub firing: bool,
    /// What, in one line.
    pub summary: String,
    /// Messages or requests involved.
    pub count: i64,
    /// The channel it is about (an alert about it never goes by it).
    pub channel: Option<String>,
    /// The provider it is about.
    pub provider: Option<String>,
    /// The dashboard view that shows it.
    pub link: String,
}

/// A provider's circuit, for the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitInput {
    pub provider: String,
    pub open: bool,
    pub reason: String,
}

/// A status-webhook endpoint, for the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInput {
    pub id: i64,
    pub url: String,
    /// Why Herald disabled it, if it did (and it is still disabled).
    pub disabled_by_herald: Option<String>,
}

/// What rules are evaluated against.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Every provider's circuit that was ever opened.
    pub circuits: Vec<CircuitInput>,
    /// Every status-webhook endpoint.
    pub endpoints: Vec<EndpointInput>,
    /// Statistics per window length (minutes), grouped by channel,
    /// provider, event and code.
    pub stats: BTreeMap<i64, Vec<StatRow>>,
    /// When the oldest due message became due.
    pub oldest_due: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

fn is_call(event: &str) -> bool {
    matches!(
        event,
        "sent" | "reconciled" | "permanent" | "retryable" | "unknown" | "unauthorized"
    )
}

fn is_failed_call(event: &str) -> bool {
    matches!(event, "permanent" | "retryable" | "unknown" | "unauthorized")
}

/// Final delivery states, and which of them count as delivered.
fn delivery(event: &str) -> Option<bool> {
    match event.strip_prefix("delivery:")? {
        "delivered" | "read" | "opened" | "clicked" => Some(true),
        "undelivered" | "failed" | "bounced" | "dropped" | "spam" => Some(false),
        _ => None,
    }
}

/// Subjects a rule splits into: its own channel/provider, or else each
/// (channel, provider) pair seen, so one failing provider on one channel
/// is one alert (credentials and timeouts are a provider's matter: each
/// provider, whatever the channel).
fn subjects(rule: &Rule, rows: &[StatRow]) -> Vec<(Option<String>, Option<String>)> {
    if rule.channel.is_some() || rule.provider.is_some() {
        return vec![(rule.channel.clone(), rule.provider.clone())];
    }
    let by_channel = !matches!(rule.kind, RuleKind::Credentials | RuleKind::Timeouts { .. });
    let mut out: Vec<(Option<String>, Option<String>)> = Vec::new();
    for r in rows {
        let s = (
            r.channel.clone().filter(|c| by_channel && !c.is_empty()),
            r.provider.clone().filter(|p| !p.is_empty()),
        );
        if (s.0.is_some() || s.1.is_some()) && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

fn key_of(rule: &Rule, channel: &Option<String>, provider: &Option<String>) -> String {
    match (channel, provider) {
        (Some(c), Some(p)) => format!("{}/channel={c},provider={p}", rule.id),
        (Some(c), None) => format!("{}/channel={c}", rule.id),
        (None, Some(p)) => format!("{}/provider={p}", rule.id),
        (None, None) => rule.id.clone(),
    }
}

fn about(channel: &Option<String>, provider: &Option<String>) -> String {
    match (channel, provider) {
        (Some(c), Some(p)) => format!("{c} through {p}"),
        (Some(c), None) => c.clone(),
        (None, Some(p)) => p.clone(),
        (None, None) => "all messages".into(),
    }
}

fn link(status: &str, channel: &Option<String>) -> String {
    let mut l = format!("/dashboard/messages?status={status}");
    if let Some(c) = channel {
        l.push_str(&format!("&channel={c}"));
    }
    l
}

/// Evaluate every rule; one condition per rule and subject.
pub fn evaluate(rules: &[Rule], inputs: &Inputs) -> Vec<Condition> {
    let mut out = Vec::new();
    for rule in rules {
        let empty = Vec::new();
        let rows = inputs.stats.get(&rule.window_minutes).unwrap_or(&empty);
        let window = rule.window_minutes;
        if let RuleKind::QueueAge { minutes } = rule.kind {
            let waited = inputs.oldest_due.map(|t| (inputs.now - t).num_minutes()).unwrap_or(0);
            out.push(Condition {
                key: rule.id.clone(),
                rule_id: rule.id.clone(),
                firing: waited >= minutes,
                summary: format!(
                    "the oldest due message has waited {waited} min (the limit is {minutes} min): is the processor running?"
                ),
                count: waited,
                channel: None,
                provider: None,
                link: "/dashboard/messages?status=pending".into(),
            });
            continue;
        }
        if rule.kind == RuleKind::CircuitOpen {
            for c in &inputs.circuits {
                out.push(Condition {
                    key: format!("{}/provider={}", rule.id, c.provider),
                    rule_id: rule.id.clone(),
                    firing: c.open,
                    summary: format!(
                        "{}'s circuit is open ({}): its messages go to the channel's next provider, or wait",
                        c.provider, c.reason
                    ),
                    count: i64::from(c.open),
                    channel: None,
                    provider: Some(c.provider.clone()),
                    link: "/dashboard".into(),
                });
            }
            continue;
        }
        if rule.kind == RuleKind::WebhookEndpointDisabled {
            for e in &inputs.endpoints {
                out.push(Condition {
                    key: format!("{}/endpoint={}", rule.id, e.id),
                    rule_id: rule.id.clone(),
                    firing: e.disabled_by_herald.is_some(),
                    summary: format!(
                        "status webhook endpoint {} ({}) was disabled: {}; the POS hears of nothing until it is enabled again",
                        e.id,
                        e.url,
                        e.disabled_by_herald.as_deref().unwrap_or("it works again")
                    ),
                    count: i64::from(e.disabled_by_herald.is_some()),
                    channel: None,
                    provider: None,
                    link: "/dashboard/webhooks".into(),
                });
            }
            continue;
        }
        if let RuleKind::WebhookRejections { count } = rule.kind {
            let n: i64 = rows
                .iter()
                .filter(|r| r.event.as_deref() == Some("webhook_rejected"))
                .map(|r| r.count)
                .sum();
            out.push(Condition {
                key: rule.id.clone(),
                rule_id: rule.id.clone(),
                firing: n >= count,
                summary: format!(
                    "{n} webhook request(s) with a missing or wrong signature in {window} min: check who is calling the webhooks"
                ),
                count: n,
                channel: None,
                provider: None,
                link: "/dashboard".into(),
            });
            continue;
        }
        for (channel, provider) in subjects(rule, rows) {
            let mine: Vec<&StatRow> = rows
                .iter()
                .filter(|r| channel.as_ref().is_none_or(|c| r.channel.as_ref() == Some(c)))
                .filter(|r| provider.as_ref().is_none_or(|p| r.provider.as_ref() == Some(p)))
                .collect();
            let sum = |f: &dyn Fn(&StatRow) -> bool| -> i64 { mine.iter().filter(|r| f(r)).map(|r| r.count).sum() };
            let ev = |r: &StatRow| r.event.clone().unwrap_or_default();
            let who = about(&channel, &provider);
            let (firing, summary, count, status) = match &rule.kind {
                RuleKind::FailureRatio { threshold, min_volume } => {
                    let calls = sum(&|r| is_call(&ev(r)));
                    let failed = sum(&|r| is_failed_call(&ev(r)));
                    let ratio = if calls == 0 { 0.0 } else { failed as f64 / calls as f64 };
                    (
                        calls >= *min_volume && ratio > *threshold,
                        format!(
                            "{failed} of {calls} sends of {who} failed in {window} min ({:.0} %, the limit is {:.0} %)",
                            ratio * 100.0,
                            threshold * 100.0
                        ),
                        failed,
                        "failed",
                    )
                }
                RuleKind::Credentials => {
                    let n = sum(&|r| ev(r) == "unauthorized");
                    (
                        n > 0,
                        format!("{who} refused Herald's credentials {n} time(s) in {window} min: fix them (or the account's balance); its messages wait"),
                        n,
                        "pending",
                    )
                }
                RuleKind::Timeouts { count } => {
                    let n = sum(&|r| ev(r) == "unknown" || r.code.as_deref() == Some("timeout"));
                    (
                        n >= *count,
                        format!("{who} timed out {n} time(s) in {window} min (the limit is {count})"),
                        n,
                        "pending",
                    )
                }
                RuleKind::DeliveryRate { threshold, min_volume } => {
                    let final_: i64 = sum(&|r| delivery(&ev(r)).is_some());
                    let delivered = sum(&|r| delivery(&ev(r)) == Some(true));
                    let rate = if final_ == 0 {
                        1.0
                    } else {
                        delivered as f64 / final_ as f64
                    };
                    (
                        final_ >= *min_volume && rate < *threshold,
                        format!(
                            "only {delivered} of {final_} receipts for {who} say delivered in {window} min ({:.0} %, the floor is {:.0} %)",
                            rate * 100.0,
                            threshold * 100.0
                        ),
                        final_ - delivered,
                        "sent",
                    )
                }
                RuleKind::QueueAge { .. }
                | RuleKind::WebhookRejections { .. }
                | RuleKind::CircuitOpen
                | RuleKind::WebhookEndpointDisabled => unreachable!("handled above"),
            };
            out.push(Condition {
                key: key_of(rule, &channel, &provider),
                rule_id: rule.id.clone(),
                firing,
                summary,
                count,
                link: link(status, &channel),
                channel,
                provider,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(channel: &str, provider: &str, event: &str, code: &str, count: i64) -> StatRow {
        StatRow {
            bucket: None,
            channel: Some(channel.into()),
            provider: Some(provider.into()),
            event: Some(event.into()),
            code: Some(code.into()),
            count,
            segments: 0,
            latency_ms: 0,
            latency_histogram: vec![],
        }
    }

    fn rule(id: &str, kind: RuleKind) -> Rule {
        Rule {
            id: id.into(),
            kind,
            window_minutes: 15,
            channel: None,
            provider: None,
            source: "environment".into(),
        }
    }

    fn inputs(rows: Vec<StatRow>) -> Inputs {
        let now = chrono::Utc::now();
        Inputs {
            stats: BTreeMap::from([(15, rows)]),
            oldest_due: None,
            now,
            ..Inputs::default()
        }
    }

    #[test]
    fn failure_ratio_needs_volume_and_splits_by_channel_and_provider() {
        let r = rule(
            "failures",
            RuleKind::FailureRatio {
                threshold: 0.2,
                min_volume: 10,
            },
        );
        let rows = vec![
            row("sms", "twilio", "sent", "", 6),
            row("sms", "twilio", "permanent", "21211", 4),
            row("email", "smtp", "sent", "", 3),
            row("email", "smtp", "retryable", "421", 2),
        ];
        let c = evaluate(&[r], &inputs(rows));
        let get = |k: &str| c.iter().find(|c| c.key == k).unwrap();
        assert_eq!(c.len(), 2, "one condition per channel and provider: {c:?}");
        assert!(get("failures/channel=sms,provider=twilio").firing, "{c:?}");
        assert!(
            !get("failures/channel=email,provider=smtp").firing,
            "5 calls is under the volume"
        );
        assert!(get("failures/channel=sms,provider=twilio")
            .summary
            .contains("4 of 10 sends of sms through twilio"));
        assert_eq!(
            get("failures/channel=sms,provider=twilio").link,
            "/dashboard/messages?status=failed&channel=sms"
        );
        // Twilio failing on SMS but not on WhatsApp: only SMS is reported.
        let rows = vec![
            row("sms", "twilio", "permanent", "21211", 10),
            row("whatsapp", "twilio", "sent", "", 10),
        ];
        let c = evaluate(
            &[rule(
                "f",
                RuleKind::FailureRatio {
                    threshold: 0.2,
                    min_volume: 10,
                },
            )],
            &inputs(rows),
        );
        let firing: Vec<&str> = c.iter().filter(|c| c.firing).map(|c| c.key.as_str()).collect();
        assert_eq!(firing, vec!["f/channel=sms,provider=twilio"]);
    }

    #[test]
    fn credentials_timeouts_delivery_queue_and_webhooks() {
        let rows = vec![
            row("sms", "twilio", "unauthorized", "20003", 1),
            row("email", "sendgrid", "unknown", "timeout", 5),
            row("email", "sendgrid", "delivery:delivered", "", 5),
            row("email", "sendgrid", "delivery:bounced", "", 15),
            row("", "twilio", "webhook_rejected", "", 30),
        ];
        let mut i = inputs(rows);
        i.oldest_due = Some(i.now - chrono::Duration::minutes(12));
        let rules = [
            rule("creds", RuleKind::Credentials),
            rule("slow", RuleKind::Timeouts { count: 5 }),
            rule(
                "delivery",
                RuleKind::DeliveryRate {
                    threshold: 0.8,
                    min_volume: 10,
                },
            ),
            rule("stuck", RuleKind::QueueAge { minutes: 10 }),
            rule("sigs", RuleKind::WebhookRejections { count: 20 }),
        ];
        let c = evaluate(&rules, &i);
        let firing: Vec<&str> = c.iter().filter(|c| c.firing).map(|c| c.key.as_str()).collect();
        for k in [
            "creds/provider=twilio",
            "slow/provider=sendgrid",
            "delivery/channel=email,provider=sendgrid",
            "stuck",
            "sigs",
        ] {
            assert!(firing.contains(&k), "{k} not in {firing:?}");
        }
        assert!(!firing.contains(&"creds/provider=sendgrid"));
        i.oldest_due = None;
        assert!(!evaluate(&rules[3..4], &i)[0].firing, "an empty queue is not stuck");
    }

    #[test]
    fn rules_are_checked() {
        assert!(rule("ok", RuleKind::QueueAge { minutes: 5 }).validate().is_ok());
        assert!(rule("bad id!", RuleKind::Credentials).validate().is_err());
        assert!(rule(
            "r",
            RuleKind::FailureRatio {
                threshold: 1.5,
                min_volume: 1
            }
        )
        .validate()
        .is_err());
        let mut r = rule("r", RuleKind::Credentials);
        r.channel = Some("fax".into());
        assert!(r.validate().is_err());
    }

    #[test]
    fn open_circuits_and_disabled_endpoints_fire_one_condition_each() {
        let rules = vec![
            rule("circuits", RuleKind::CircuitOpen),
            rule("endpoints", RuleKind::WebhookEndpointDisabled),
        ];
        let inputs = Inputs {
            circuits: vec![
                CircuitInput {
                    provider: "sendgrid".into(),
                    open: true,
                    reason: "5 failures in a row".into(),
                },
                CircuitInput {
                    provider: "twilio".into(),
                    open: false,
                    reason: String::new(),
                },
            ],
            endpoints: vec![EndpointInput {
                id: 3,
                url: "https://pos.example.com/herald".into(),
                disabled_by_herald: Some("it answered 410 Gone".into()),
            }],
            ..Inputs::default()
        };
        let c = evaluate(&rules, &inputs);
        let firing: Vec<&str> = c.iter().filter(|c| c.firing).map(|c| c.key.as_str()).collect();
        assert_eq!(firing, ["circuits/provider=sendgrid", "endpoints/endpoint=3"]);
        assert!(c.iter().any(|c| c.key == "circuits/provider=twilio" && !c.firing));
        assert!(c[0].summary.contains("5 failures in a row"));
        assert!(c[2].summary.contains("410 Gone"));
    }
}
