//! Where alerts go: a Slack-compatible incoming webhook (`{"text": …}`),
//! a JSON webhook (signed when a secret is set), and operators' phones and
//! mailboxes through Herald itself, never on the channel (or provider)
//! the alert is about.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;

use crate::domain::{Channel, EmailAddress, NewMessage, PhoneNumber, RawMessage};
use crate::store::Store;

/// The targets configured.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// `ALERT_SLACK_WEBHOOK_URL`.
    pub slack_url: Option<String>,
    /// `ALERT_WEBHOOK_URL`.
    pub webhook_url: Option<String>,
    /// `ALERT_WEBHOOK_SECRET`: signs the JSON webhook like the custom provider.
    pub webhook_secret: Option<SecretString>,
    /// `ALERT_EMAIL_TO`.
    pub email_to: Vec<EmailAddress>,
    /// `ALERT_SMS_TO`.
    pub sms_to: Vec<PhoneNumber>,
    /// The provider of each channel (an alert about a provider avoids it).
    pub channel_providers: Vec<(Channel, String)>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.slack_url.is_none() && self.webhook_url.is_none() && self.email_to.is_empty() && self.sms_to.is_empty()
    }
}

/// What is announced.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Notice {
    /// `firing` or `resolved`.
    pub state: &'static str,
    pub key: String,
    pub rule: String,
    pub summary: String,
    pub count: i64,
    pub since: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
    pub link: String,
    pub channel: Option<String>,
    pub provider: Option<String>,
}

impl Notice {
    fn text(&self) -> String {
        match self.state {
            "firing" => format!("[Herald] ALERT: {} — {}", self.summary, self.link),
            _ => {
                let lasted = self
                    .since
                    .map(|s| format!(" after {} min", (self.at - s).num_minutes().max(0)))
                    .unwrap_or_default();
                format!("[Herald] RESOLVED{lasted}: {} — {}", self.summary, self.link)
            }
        }
    }
}

/// How one delivery went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub target: String,
    pub ok: bool,
    pub detail: String,
}

async fn post(
    http: &reqwest::Client,
    target: &str,
    url: &str,
    body: Vec<u8>,
    headers: Vec<(&str, String)>,
) -> Delivery {
    let mut req = http.post(url).header("content-type", "application/json").body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Delivery {
            target: target.into(),
            ok: true,
            detail: format!("HTTP {}", r.status().as_u16()),
        },
        Ok(r) => Delivery {
            target: target.into(),
            ok: false,
            detail: format!("HTTP {}", r.status().as_u16()),
        },
        Err(e) => Delivery {
            target: target.into(),
            ok: false,
            detail: if e.is_timeout() {
                "timed out".into()
            } else {
                "could not connect".into()
            },
        },
    }
}

/// Send `notice` everywhere it should go. `quota` is how many alert
/// messages Herald may still send itself this hour (spent here).
pub(super) async fn deliver(
    targets: &Targets,
    http: &reqwest::Client,
    store: &Store,
    notice: &Notice,
    quota: &mut usize,
) -> Vec<Delivery> {
    let mut out = Vec::new();
    let text = notice.text();
    if let Some(url) = &targets.slack_url {
        let body = serde_json::to_vec(&serde_json::json!({ "text": text })).expect("JSON");
        out.push(post(http, "slack", url, body, Vec::new()).await);
    }
    if let Some(url) = &targets.webhook_url {
        let body = serde_json::to_vec(notice).expect("JSON");
        let mut headers = Vec::new();
        if let Some(secret) = &targets.webhook_secret {
            let ts = notice.at.timestamp();
            headers.push((crate::providers::TIMESTAMP_HEADER, ts.to_string()));
            headers.push((
                crate::providers::SIGNATURE_HEADER,
                crate::providers::custom_signature(secret, ts, &body),
            ));
        }
        out.push(post(http, "webhook", url, body, headers).await);
    }
    let avoid = |channel: Channel| {
        notice.channel.as_deref() == Some(channel.as_str())
            || targets
                .channel_providers
                .iter()
                .any(|(c, p)| *c == channel && notice.provider.as_deref() == Some(p.as_str()))
    };
    let recipients: Vec<(Channel, String)> = targets
        .sms_to
        .iter()
        .map(|p| (Channel::Sms, p.to_string()))
        .chain(targets.email_to.iter().map(|e| (Channel::Email, e.to_string())))
        .collect();
    for (channel, to) in recipients {
        let target = format!("{channel}:{to}");
        if avoid(channel) {
            out.push(Delivery {
                target,
                ok: false,
                detail: "skipped: the alert is about this channel or its provider".into(),
            });
            continue;
        }
        if *quota == 0 {
            out.push(Delivery {
                target,
                ok: false,
                detail: "skipped: the hourly limit of alert messages is reached".into(),
            });
            continue;
        }
        let raw = RawMessage {
            channel: Some(channel.as_str().into()),
            recipient: Some(to.clone()),
            subject: (channel == Channel::Email).then(|| format!("[Herald] {} {}", notice.state, notice.rule)),
            body: Some(text.clone()),
            metadata: Some(serde_json::json!({ "herald_alert": notice.key })),
            ..RawMessage::default()
        };
        let result = match NewMessage::parse(&raw) {
            Ok(msg) => store.enqueue(&msg, notice.at).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        *quota = quota.saturating_sub(1);
        out.push(match result {
            Ok(m) => Delivery {
                target,
                ok: true,
                detail: format!("queued as message {}", m.id),
            },
            Err(e) => Delivery {
                target,
                ok: false,
                detail: e,
            },
        });
    }
    out
}
