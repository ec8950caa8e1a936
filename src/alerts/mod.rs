//! Alerting: rules over the statistics, evaluated by one worker at a time
//! (a lease in the database), each condition announced once when it
//! starts and once when it ends, to Slack, a JSON webhook, and operators'
//! phones or mailboxes through Herald itself.
//!
//! - `rules.rs`: the rules and their (pure) evaluation
//! - `notify.rs`: the targets
//! - `runner.rs`: the loop, the lease, state changes and history

mod notify;
pub mod rules;
mod runner;

use std::time::Duration;

pub use notify::{Delivery, Targets};
pub use rules::{evaluate, CircuitInput, Condition, EndpointInput, Inputs, Rule, RuleKind};
pub use runner::{AlertRunner, TickReport};

/// Alerting's configuration.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Rules from the environment (read-only; more can be stored).
    pub rules: Vec<Rule>,
    pub targets: Targets,
    /// After a condition ends, it is not announced again for this long.
    pub cooldown: Duration,
    /// How often rules are evaluated.
    pub interval: Duration,
    /// Herald's public address, for links in alerts.
    pub public_url: Option<String>,
    /// Alerts Herald sends as messages per hour, at most (a loop guard).
    pub max_messages_per_hour: usize,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            rules: Vec::new(),
            targets: Targets::default(),
            cooldown: Duration::from_secs(30 * 60),
            interval: Duration::from_secs(30),
            public_url: None,
            max_messages_per_hour: 20,
        }
    }
}

/// The built-in rules, with the thresholds the environment sets (a 0
/// turns one off).
#[derive(Debug, Clone, Copy)]
pub struct BuiltIn {
    pub window_minutes: i64,
    pub failure_ratio: f64,
    pub min_volume: i64,
    pub queue_age_minutes: i64,
    pub timeouts: i64,
    pub delivery_rate: f64,
    pub webhook_rejections: i64,
    pub credentials: bool,
    /// A provider's circuit is open.
    pub circuits: bool,
    /// A status-webhook endpoint was disabled.
    pub webhook_endpoints: bool,
}

impl Default for BuiltIn {
    fn default() -> Self {
        BuiltIn {
            window_minutes: 15,
            failure_ratio: 0.25,
            min_volume: 10,
            queue_age_minutes: 10,
            timeouts: 5,
            delivery_rate: 0.8,
            webhook_rejections: 20,
            credentials: true,
            circuits: true,
            webhook_endpoints: true,
        }
    }
}

impl BuiltIn {
    /// The rules these settings describe.
    pub fn rules(&self) -> Vec<Rule> {
        let rule = |id: &str, kind: RuleKind| Rule {
            id: id.to_owned(),
            kind,
            window_minutes: self.window_minutes,
            channel: None,
            provider: None,
            source: "environment".into(),
        };
        let mut out = Vec::new();
        if self.failure_ratio > 0.0 {
            out.push(rule(
                "failure-ratio",
                RuleKind::FailureRatio {
                    threshold: self.failure_ratio,
                    min_volume: self.min_volume,
                },
            ));
        }
        if self.queue_age_minutes > 0 {
            out.push(rule(
                "queue-age",
                RuleKind::QueueAge {
                    minutes: self.queue_age_minutes,
                },
            ));
        }
        if self.credentials {
            out.push(rule("credentials", RuleKind::Credentials));
        }
        if self.timeouts > 0 {
            out.push(rule("timeouts", RuleKind::Timeouts { count: self.timeouts }));
        }
        if self.delivery_rate > 0.0 {
            out.push(rule(
                "delivery-rate",
                RuleKind::DeliveryRate {
                    threshold: self.delivery_rate,
                    min_volume: self.min_volume,
                },
            ));
        }
        if self.webhook_rejections > 0 {
            out.push(rule(
                "webhook-signatures",
                RuleKind::WebhookRejections {
                    count: self.webhook_rejections,
                },
            ));
        }
        if self.circuits {
            out.push(rule("circuit-open", RuleKind::CircuitOpen));
        }
        if self.webhook_endpoints {
            out.push(rule("webhook-endpoint-disabled", RuleKind::WebhookEndpointDisabled));
        }
        out
    }
}
