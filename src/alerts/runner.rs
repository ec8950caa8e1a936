//! The alert loop: every interval, the worker holding the `alerts` lease
//! evaluates the rules, and announces each condition that started or
//! ended (once: the state is in the database, so a restart or another
//! worker taking over does not announce it again).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::notify::{deliver, Notice};
use super::rules::{evaluate, Condition, Inputs, Rule};
use super::AlertSettings;
use crate::clock::{chrono_duration, format_ts, parse_ts, Clock};
use crate::processor::Shutdown;
use crate::store::{AlertState, StatGroups, Store};

const LEASE: &str = "alerts";

/// What one evaluation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// This worker holds the lease (others only wait).
    pub leader: bool,
    pub fired: Vec<String>,
    pub resolved: Vec<String>,
}

pub struct AlertRunner {
    store: Store,
    clock: Arc<dyn Clock>,
    settings: AlertSettings,
    owner: String,
    http: reqwest::Client,
    /// When Herald sent alert messages itself (for the hourly limit).
    sent: Mutex<VecDeque<DateTime<Utc>>>,
}

/// What the state row keeps besides firing/since.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Detail {
    summary: String,
    /// Operators were told it started (not within a cooldown).
    notified: bool,
    last_notified_at: Option<String>,
}

impl AlertRunner {
    /// `owner` names this worker in the lease (unique per process).
    pub fn new(store: Store, clock: Arc<dyn Clock>, settings: AlertSettings, owner: String) -> AlertRunner {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client");
        AlertRunner {
            store,
            clock,
            settings,
            owner,
            http,
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// Evaluate every interval until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            match self.tick().await {
                Ok(r) if !r.fired.is_empty() || !r.resolved.is_empty() => {
                    tracing::info!(fired = ?r.fired, resolved = ?r.resolved, "alerts changed");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not evaluate the alert rules"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.interval) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    /// Where alerts go, in words (no secrets: hosts and recipients' count).
    pub fn targets_summary(&self) -> String {
        let t = &self.settings.targets;
        let host = |u: &str| {
            reqwest::Url::parse(u)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let mut parts = Vec::new();
        if let Some(u) = &t.slack_url {
            parts.push(format!("Slack ({})", host(u)));
        }
        if let Some(u) = &t.webhook_url {
            parts.push(format!("a webhook ({})", host(u)));
        }
        if !t.email_to.is_empty() {
            parts.push(format!("{} email address(es)", t.email_to.len()));
        }
        if !t.sms_to.is_empty() {
            parts.push(format!("{} phone number(s)", t.sms_to.len()));
        }
        parts.join(", ")
    }

    pub fn interval_seconds(&self) -> u64 {
        self.settings.interval.as_secs()
    }

    /// Every rule: the environment's and the stored ones.
    pub async fn rules(&self) -> Vec<Rule> {
        let mut rules = self.settings.rules.clone();
        match self.store.alert_rules().await {
            Ok(stored) => {
                for (id, json) in stored {
                    match serde_json::from_str::<Rule>(&json) {
                        Ok(mut r) => {
                            r.id = id;
                            r.source = "stored".into();
                            rules.push(r);
                        }
                        Err(e) => tracing::warn!(rule = %id, error = %e, "a stored alert rule cannot be read; skipped"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the stored alert rules"),
        }
        rules
    }

    fn link(&self, path: &str) -> String {
        match &self.settings.public_url {
            Some(base) => format!("{}{path}", base.trim_end_matches('/')),
            None => path.to_owned(),
        }
    }

    fn quota(&self, now: DateTime<Utc>) -> usize {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        while sent.front().is_some_and(|t| now - *t > chrono::Duration::hours(1)) {
            sent.pop_front();
        }
        self.settings.max_messages_per_hour.saturating_sub(sent.len())
    }

    fn spend(&self, now: DateTime<Utc>, n: usize) {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.extend(std::iter::repeat_n(now, n));
    }

    async fn announce(&self, notice: &Notice) -> serde_json::Value {
        let before = self.quota(notice.at);
        let mut quota = before;
        let deliveries = deliver(&self.settings.targets, &self.http, &self.store, notice, &mut quota).await;
        self.spend(notice.at, before - quota);
        for d in deliveries.iter().filter(|d| !d.ok) {
            tracing::warn!(target = %d.target, detail = %d.detail, "an alert was not delivered");
        }
        json!(deliveries)
    }

    /// One evaluation (if this worker holds the lease).
    pub async fn tick(&self) -> anyhow::Result<TickReport> {
        let now = self.clock.now();
        let until = now + chrono_duration(self.settings.interval * 3);
        if !self.store.take_lease(LEASE, &self.owner, now, until).await? {
            return Ok(TickReport::default());
        }
        let rules = self.rules().await;
        let windows: BTreeSet<i64> = rules.iter().map(|r| r.window_minutes).collect();
        let all = StatGroups {
            channel: true,
            provider: true,
            event: true,
            code: true,
        };
        let circuits = self
            .store
            .circuits()
            .await?
            .into_iter()
            .map(|c| crate::alerts::CircuitInput {
                open: c.state != crate::breaker::CircuitState::Closed,
                reason: c.reason.clone().unwrap_or_default(),
                provider: c.provider,
            })
            .collect();
        let endpoints = self
            .store
            .endpoints()
            .await?
            .into_iter()
            .map(|e| crate::alerts::EndpointInput {
                id: e.id,
                disabled_by_herald: e.disabled_reason.filter(|_| !e.enabled),
                url: e.url,
            })
            .collect();
        let mut inputs = Inputs {
            now,
            oldest_due: self.store.oldest_due(now).await?,
            stats: BTreeMap::new(),
            circuits,
            endpoints,
        };
        for w in windows {
            let rows = self
                .store
                .stats(
                    now - chrono::Duration::minutes(w),
                    now + chrono::Duration::minutes(1),
                    None,
                    all,
                )
                .await?;
            inputs.stats.insert(w, rows);
        }
        let conditions = evaluate(&rules, &inputs);
        let states: BTreeMap<String, AlertState> = self
            .store
            .alert_states()
            .await?
            .into_iter()
            .map(|s| (s.key.clone(), s))
            .collect();
        let mut report = TickReport {
            leader: true,
            ..TickReport::default()
        };
        let mut seen = BTreeSet::new();
        for c in &conditions {
            seen.insert(c.key.clone());
            let state = states.get(&c.key);
            let was_firing = state.is_some_and(|s| s.firing);
            if c.firing && !was_firing {
                self.fire(c, state, now).await?;
                report.fired.push(c.key.clone());
            } else if !c.firing && was_firing {
                self.resolve(
                    &c.key,
                    &c.rule_id,
                    &c.summary,
                    c.channel.clone(),
                    c.provider.clone(),
                    &c.link,
                    state,
                    now,
                )
                .await?;
                report.resolved.push(c.key.clone());
            }
        }
        // Conditions that no longer exist (their rule was removed, or no
        // traffic is left to judge) end too.
        for (key, s) in states.iter().filter(|(k, s)| s.firing && !seen.contains(*k)) {
            let rule_id = key.split('/').next().unwrap_or(key).to_owned();
            let summary = detail_of(Some(s)).summary;
            self.resolve(key, &rule_id, &summary, None, None, "/dashboard", Some(s), now)
                .await?;
            report.resolved.push(key.clone());
        }
        Ok(report)
    }

    async fn fire(&self, c: &Condition, state: Option<&AlertState>, now: DateTime<Utc>) -> anyhow::Result<()> {
        let old = detail_of(state);
        let cooldown = chrono_duration(self.settings.cooldown);
        let quiet = old
            .last_notified_at
            .as_deref()
            .and_then(parse_ts)
            .is_some_and(|t| now - t < cooldown);
        let notice = Notice {
            state: "firing",
            key: c.key.clone(),
            rule: c.rule_id.clone(),
            summary: c.summary.clone(),
            count: c.count,
            since: Some(now),
            at: now,
            link: self.link(&c.link),
            channel: c.channel.clone(),
            provider: c.provider.clone(),
        };
        let deliveries = if quiet {
            json!([{"target": "all", "ok": false, "detail": "not announced: it ended less than the cooldown ago"}])
        } else {
            self.announce(&notice).await
        };
        tracing::warn!(alert = %c.key, summary = %c.summary, "alert firing");
        let detail = Detail {
            summary: c.summary.clone(),
            notified: !quiet,
            last_notified_at: if quiet {
                old.last_notified_at
            } else {
                Some(format_ts(now))
            },
        };
        self.store
            .add_alert_event(
                &c.key,
                "fired",
                now,
                &c.summary,
                &json!(c).to_string(),
                &deliveries.to_string(),
            )
            .await?;
        self.store
            .set_alert_state(
                &AlertState {
                    key: c.key.clone(),
                    firing: true,
                    since: Some(now),
                    last_change: Some(now),
                    detail: Some(json!(detail).to_string()),
                },
                now,
            )
            .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn resolve(
        &self,
        key: &str,
        rule_id: &str,
        summary: &str,
        channel: Option<String>,
        provider: Option<String>,
        link: &str,
        state: Option<&AlertState>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let old = detail_of(state);
        let notice = Notice {
            state: "resolved",
            key: key.to_owned(),
            rule: rule_id.to_owned(),
            summary: summary.to_owned(),
            count: 0,
            since: state.and_then(|s| s.since),
            at: now,
            link: self.link(link),
            channel,
            provider,
        };
        let deliveries = if old.notified {
            self.announce(&notice).await
        } else {
            json!([])
        };
        tracing::info!(alert = %key, "alert resolved");
        self.store
            .add_alert_event(
                key,
                "resolved",
                now,
                summary,
                &json!(notice).to_string(),
                &deliveries.to_string(),
            )
            .await?;
        self.store
            .set_alert_state(
                &AlertState {
                    key: key.to_owned(),
                    firing: false,
                    since: None,
                    last_change: Some(now),
                    detail: Some(
                        json!(Detail {
                            summary: summary.to_owned(),
                            notified: false,
                            last_notified_at: old.last_notified_at,
                        })
                        .to_string(),
                    ),
                },
                now,
            )
            .await?;
        Ok(())
    }
}

fn detail_of(state: Option<&AlertState>) -> Detail {
    state
        .and_then(|s| s.detail.as_deref())
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default()
}
