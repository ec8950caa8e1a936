//! Delivery receipts: stored once each, moving a message's delivery status
//! forward only.

use chrono::{DateTime, Utc};

use super::rows::{Event, MessageRow};
use super::webhooks::OutboxEvent;
use super::{Result, Store};
use crate::clock::format_ts;
use crate::domain::{scrub_json_nul, scrub_nul, EventType};

/// A receipt to apply to a message.
#[derive(Debug, Clone)]
pub struct ReceiptUpdate {
    pub provider: &'static str,
    /// Herald's id when the receipt carries it, else the provider's id.
    pub message_id: Option<i64>,
    pub provider_message_id: Option<String>,
    /// For email receipts: the address the event is about. Only an email
    /// message sent through `provider` to this address (compared
    /// case-insensitively) matches, so a receipt can never touch an SMS
    /// message or another customer's email.
    pub email: Option<String>,
    pub event: String,
    /// What it means for `delivery_status`, and where that status ranks
    /// (a receipt only moves the status to a higher rank).
    pub delivery_status: Option<(&'static str, i32)>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub error_code: Option<String>,
    /// Receipts with the same key are stored once.
    pub dedupe_key: String,
    pub detail: serde_json::Value,
    /// A WhatsApp message this receipt says did not reach its recipient
    /// falls back to SMS if it was sent within this long of the receipt
    /// (`WHATSAPP_FALLBACK=sms`).
    pub fallback_within: Option<std::time::Duration>,
}

/// What became of a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptResult {
    /// Stored, for this message (its delivery status moved only if the receipt ranks higher).
    Applied(i64),
    /// Seen before: nothing changed.
    Duplicate(i64),
    /// No message matches.
    Unmatched,
}

impl Store {
    /// Record a delivery receipt and move the message's delivery status
    /// forward (never backwards), in one transaction.
    pub async fn apply_receipt(&self, r: &ReceiptUpdate, now: DateTime<Utc>) -> Result<ReceiptResult> {
        // What a provider sends is stored whatever it holds: NUL (which no
        // backend stores) becomes U+FFFD.
        let scrubbed;
        let r = if receipt_has_nul(r) {
            scrubbed = scrub_receipt(r);
            &scrubbed
        } else {
            r
        };
        let sql = &self.sql;
        let wanted = self.wanted_events().await?;
        let told = r
            .delivery_status
            .and_then(|(s, _)| EventType::of_delivery_status(s))
            .filter(|t| wanted.wants(*t));
        let mut wrote_events = false;
        let _turn = self.write_turn().await;
        let result = with_pool_retrying!(self, |pool| {
            let mut tx = pool.begin_with(self.sql.begin_write).await?;
            let id: Option<i64> = match (r.message_id, &r.provider_message_id, &r.email) {
                (Some(id), _, Some(email)) => {
                    bound!(
                        sqlx::query_scalar(&sql.find_email_by_id.sql),
                        sql.find_email_by_id,
                        [id, r.provider, email]
                    )
                    .fetch_optional(&mut *tx)
                    .await?
                }
                (None, Some(pid), Some(email)) => {
                    bound!(
                        sqlx::query_scalar(&sql.find_email_by_provider_id.sql),
                        sql.find_email_by_provider_id,
                        [pid, r.provider, email]
                    )
                    .fetch_optional(&mut *tx)
                    .await?
                }
                // Herald's id alone is not enough: it must be an email to that address.
                (Some(_), _, None) => None,
                (None, Some(pid), None) => {
                    bound!(
                        sqlx::query_scalar(&sql.find_by_provider_id.sql),
                        sql.find_by_provider_id,
                        [pid, r.provider]
                    )
                    .fetch_optional(&mut *tx)
                    .await?
                }
                (None, None, _) => None,
            };
            let result = match id {
                None => ReceiptResult::Unmatched,
                Some(id) => {
                    let inserted = bound!(
                        sqlx::query(&sql.insert_event.sql),
                        sql.insert_event,
                        [
                            id,
                            r.provider,
                            &r.event,
                            r.delivery_status.map(|(s, _)| s),
                            r.occurred_at.map(format_ts),
                            format_ts(now),
                            &r.dedupe_key,
                            r.detail.to_string(),
                        ]
                    )
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if inserted == 0 {
                        ReceiptResult::Duplicate(id)
                    } else {
                        if let Some((status, _)) = r.delivery_status {
                            for (s, at) in [
                                (&sql.stats_receipt, super::stats::minute_of(now)),
                                (&sql.stats_receipt_hourly, super::stats::hour_of(now)),
                            ] {
                                bound!(
                                    sqlx::query(&s.sql),
                                    s,
                                    [id, format_ts(at), format!("delivery:{status}"), r.error_code.as_deref()]
                                )
                                .execute(&mut *tx)
                                .await?;
                            }
                        }
                        let mut moved = false;
                        if let Some((status, rank)) = r.delivery_status {
                            moved = bound!(
                                sqlx::query(&sql.apply_delivery.sql),
                                sql.apply_delivery,
                                [
                                    id,
                                    status,
                                    rank,
                                    format_ts(r.occurred_at.unwrap_or(now)),
                                    r.error_code.as_deref(),
                                ]
                            )
                            .execute(&mut *tx)
                            .await?
                            .rows_affected()
                                == 1;
                        }
                        let mut fell_back = false;
                        if let Some(window) = r.fallback_within {
                            let row = bound!(sqlx::query(&sql.get.sql), sql.get, [id])
                                .fetch_optional(&mut *tx)
                                .await?;
                            let msg = match row {
                                Some(row) => Some(super::rows::MessageRow::message(&row)?),
                                None => None,
                            };
                            let at = r.occurred_at.unwrap_or(now);
                            let fallback = msg.as_ref().and_then(|m| receipt_fallback(m, window, at));
                            if let Some(f) = fallback {
                                let suppressed = {
                                    let s = &sql.suppressed_among;
                                    let list =
                                        serde_json::json!([f.recipient.as_str(), format!("whatsapp:{}", f.recipient)]);
                                    let found: Vec<(String, String, String)> =
                                        bound!(sqlx::query_as(&s.sql), s, [list.to_string()])
                                            .fetch_all(&mut *tx)
                                            .await?;
                                    found.iter().any(|(c, _, _)| c == "sms" || c == "whatsapp")
                                };
                                if suppressed {
                                    tracing::info!(
                                        message_id = id,
                                        "undelivered WhatsApp message not sent as SMS: the recipient is suppressed"
                                    );
                                } else if let Some(new_id) = queue_fallback!(sql, tx, f, now) {
                                    fell_back = true;
                                    tracing::info!(
                                        message_id = id,
                                        sms_id = new_id,
                                        "WhatsApp did not deliver the message: queued as an SMS"
                                    );
                                }
                            }
                        }
                        // Status webhooks, in this transaction: the new
                        // delivery status, and the fallback.
                        let mut types: Vec<EventType> = Vec::new();
                        if moved {
                            types.extend(told);
                        }
                        if fell_back && wanted.wants(EventType::Fallback) {
                            types.push(EventType::Fallback);
                        }
                        if !types.is_empty() {
                            let events: Vec<OutboxEvent> =
                                types.into_iter().map(|t| OutboxEvent::about(t, id)).collect();
                            fan_out!(sql, tx, events, now);
                            wrote_events = true;
                        }
                        ReceiptResult::Applied(id)
                    }
                }
            };
            tx.commit().await?;
            result
        });
        if wrote_events {
            self.outbound_wake.notify_one();
        }
        Ok(result)
    }

    /// Every receipt for a message, oldest first.
    pub async fn events(&self, id: i64) -> Result<Vec<Event>> {
        let s = &self.sql.events;
        let rows = with_pool!(self, |pool| bound!(sqlx::query(&s.sql), s, [id])
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.event())
            .collect::<std::result::Result<Vec<_>, _>>()?);
        Ok(rows)
    }
}

/// The SMS to queue for `m` after a receipt at `at` said it did not reach
/// its recipient: a sent WhatsApp message that has not fallen back, sent
/// within `window` of the receipt.
fn receipt_fallback(
    m: &super::Message,
    window: std::time::Duration,
    at: DateTime<Utc>,
) -> Option<crate::domain::SmsFallback> {
    let recent = m
        .sent_at
        .is_some_and(|s| at - s <= crate::clock::chrono_duration(window));
    if m.channel != "whatsapp" || m.status != "sent" || m.fallback_message_id.is_some() || !recent {
        return None;
    }
    match crate::domain::SmsFallback::of(m.id, &m.recipient, m.body.as_deref(), m.template.as_deref()) {
        Ok(f) => Some(f),
        Err(why) => {
            tracing::warn!(message_id = m.id, "undelivered WhatsApp message not sent as SMS: {why}");
            None
        }
    }
}

fn receipt_has_nul(r: &ReceiptUpdate) -> bool {
    let text = [
        r.provider_message_id.as_deref(),
        r.email.as_deref(),
        Some(r.event.as_str()),
        r.error_code.as_deref(),
        Some(r.dedupe_key.as_str()),
    ];
    text.into_iter().flatten().any(|t| t.contains('\0')) || r.detail.to_string().contains("\\u0000")
}

fn scrub_receipt(r: &ReceiptUpdate) -> ReceiptUpdate {
    let scrub = |s: &str| scrub_nul(s).into_owned();
    let mut detail = r.detail.clone();
    scrub_json_nul(&mut detail);
    ReceiptUpdate {
        provider_message_id: r.provider_message_id.as_deref().map(scrub),
        email: r.email.as_deref().map(scrub),
        event: scrub(&r.event),
        error_code: r.error_code.as_deref().map(scrub),
        dedupe_key: scrub(&r.dedupe_key),
        detail,
        ..r.clone()
    }
}
