//! `ALERT_*`: the built-in rules' thresholds, where alerts go, and how
//! often rules are evaluated.

use std::time::Duration;

use super::reader::Reader;
use super::Choices;
use crate::alerts::{AlertSettings, BuiltIn, Targets};
use crate::domain::{Channel, EmailAddress, PhoneNumber};

pub(super) fn alerts(r: &mut Reader<'_>, choices: &Choices, public_url: Option<String>) -> AlertSettings {
    let d = BuiltIn::default();
    let built_in = BuiltIn {
        window_minutes: r.number("ALERT_WINDOW_MINUTES", d.window_minutes, 1, 24 * 60, "minutes"),
        failure_ratio: r.float("ALERT_FAILURE_RATIO", d.failure_ratio, 1.0, "a ratio"),
        min_volume: r.number("ALERT_MIN_VOLUME", d.min_volume, 1, 1_000_000, "messages"),
        queue_age_minutes: r.number(
            "ALERT_QUEUE_AGE_MINUTES",
            d.queue_age_minutes,
            0,
            7 * 24 * 60,
            "minutes",
        ),
        timeouts: r.number("ALERT_TIMEOUTS", d.timeouts, 0, 1_000_000, "timeouts"),
        delivery_rate: r.float("ALERT_DELIVERY_RATE", d.delivery_rate, 1.0, "a ratio"),
        webhook_rejections: r.number(
            "ALERT_WEBHOOK_REJECTIONS",
            d.webhook_rejections,
            0,
            1_000_000,
            "requests",
        ),
        credentials: r.boolean("ALERT_CREDENTIALS", d.credentials),
        circuits: r.boolean("ALERT_CIRCUITS", d.circuits),
        webhook_endpoints: r.boolean("ALERT_WEBHOOK_ENDPOINTS", d.webhook_endpoints),
    };
    let list = |name: &str| -> Vec<String> {
        r.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (emails, phones) = (list("ALERT_EMAIL_TO"), list("ALERT_SMS_TO"));
    let mut email_to = Vec::new();
    for e in emails {
        match EmailAddress::parse(&e) {
            Ok(a) => email_to.push(a),
            Err(err) => r.errors.push(format!("ALERT_EMAIL_TO: {err}")),
        }
    }
    let mut sms_to = Vec::new();
    for p in phones {
        match PhoneNumber::parse(&p) {
            Ok(n) => sms_to.push(n),
            Err(err) => r.errors.push(format!("ALERT_SMS_TO: {err}")),
        }
    }
    let targets = Targets {
        slack_url: r.url("ALERT_SLACK_WEBHOOK_URL", None),
        webhook_url: r.url("ALERT_WEBHOOK_URL", None),
        webhook_secret: r.optional_secret("ALERT_WEBHOOK_SECRET"),
        email_to,
        sms_to,
        channel_providers: Channel::ALL
            .into_iter()
            .map(|c| (c, choices.for_channel(c).as_str().to_owned()))
            .collect(),
    };
    AlertSettings {
        rules: built_in.rules(),
        targets,
        cooldown: Duration::from_secs(60 * r.number("ALERT_COOLDOWN_MINUTES", 30u64, 0, 7 * 24 * 60, "minutes")),
        interval: Duration::from_secs(r.number("ALERT_INTERVAL_SECONDS", 30u64, 1, 3600, "seconds")),
        public_url,
        max_messages_per_hour: r.number("ALERT_MESSAGES_PER_HOUR", 20usize, 0, 10_000, "messages"),
    }
}
