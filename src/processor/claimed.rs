//! A claimed row → a message a provider may send. The row is whatever the
//! table holds (another program may have written it), so everything is
//! parsed here; rows inserted with `template` + `template_data` are
//! rendered first.

use super::Processor;
use crate::domain::{parse_metadata_text, Channel, Content, ContentInput, OutgoingMessage, Recipient, ValidationError};
use crate::store::{Message, PastAttempt, RenderedFields};
use crate::templates::RenderError;

/// Whether a claimed message may go to its provider.
pub(super) enum Verdict {
    /// Send it; `unrecorded` when earlier claims in this round recorded
    /// nothing (the provider is asked first, about this window).
    Send {
        unrecorded: Option<crate::providers::Window>,
    },
    Suppressed(String),
    /// An earlier claim sent it; only its outcome is missing.
    AlreadyAccepted(PastAttempt),
    /// Claimed more often than its retries allow without any outcome being
    /// recorded (its worker stopped each time): fail it, so a message that
    /// kills its worker still ends.
    Abandoned(i32),
    /// The suppression list or the attempt history could not be read.
    HandBack,
}

/// The recipient as suppression entries are stored (normalised), when the
/// row has a valid one.
pub(super) fn suppression_key(msg: &Message) -> Option<Recipient> {
    let channel = Channel::parse(&msg.channel).ok()?;
    Recipient::parse(channel, &msg.recipient).ok()
}

/// The content to send: the row's own, or what its template rendered.
struct Texts<'a> {
    subject: Option<&'a str>,
    body: Option<&'a str>,
    html_body: Option<&'a str>,
    content_sid: Option<&'a str>,
    content_variables: Option<&'a str>,
}

impl Processor {
    /// Parse a claimed row into an outgoing message, rendering its template
    /// when it names one that was not rendered at enqueue time. The rendered
    /// fields come back too: they are stored with the outcome, so the row
    /// shows what was sent.
    pub(super) async fn prepare(
        &self,
        msg: &Message,
        recipient: Option<Recipient>,
    ) -> Result<(OutgoingMessage, Option<RenderedFields>), RenderError> {
        let rendered = self.render_stored_template(msg).await?;
        let texts = match &rendered {
            Some(r) => Texts {
                subject: r.subject.as_deref(),
                body: r.body.as_deref(),
                html_body: r.html_body.as_deref(),
                content_sid: r.content_sid.as_deref(),
                content_variables: r.content_variables.as_deref(),
            },
            None => Texts {
                subject: msg.subject.as_deref(),
                body: msg.body.as_deref(),
                html_body: msg.html_body.as_deref(),
                content_sid: msg.content_sid.as_deref(),
                content_variables: msg.content_variables_raw.as_deref(),
            },
        };
        Ok((parse_claimed(msg, &texts, recipient)?, rendered))
    }

    /// Render a row's template when it names one and was not rendered at
    /// enqueue time (`template_version` is still empty).
    async fn render_stored_template(&self, msg: &Message) -> Result<Option<RenderedFields>, RenderError> {
        let Some(name) = msg.template.as_deref() else {
            return Ok(None);
        };
        if msg.template_version.is_some() {
            return Ok(None);
        }
        let data = match msg.template_data.as_deref().filter(|d| !d.trim().is_empty()) {
            None => serde_json::json!({}),
            Some(text) => serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| ValidationError::new("template_data", format!("template_data is not valid JSON: {e}")))?,
        };
        let template = match crate::templates::find(&self.store, name, msg.locale.as_deref()).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                return Err(ValidationError::new("template", format!("there is no template named {name:?}")).into())
            }
            Err(e) => {
                return Err(ValidationError::new("template", format!("could not read template {name:?}: {e}")).into())
            }
        };
        let r = crate::templates::render_bounded(&template.parts, &data).await?;
        Ok(Some(RenderedFields {
            subject: r.subject,
            body: r.body,
            html_body: r.html_body,
            content_sid: r.content_sid,
            content_variables: r.content_variables.as_ref().map(|v| v.to_string()),
            template_version: template.version,
            locale: template.locale,
        }))
    }
}

/// Parse a stored row (with `texts` as its content) into something a
/// provider may send. `recipient` is the row's, when already parsed.
fn parse_claimed(
    msg: &Message,
    texts: &Texts<'_>,
    recipient: Option<Recipient>,
) -> Result<OutgoingMessage, ValidationError> {
    let channel = Channel::parse(&msg.channel).map_err(|e| ValidationError::new("channel", e.to_string()))?;
    let recipient = match recipient {
        Some(r) if r.channel() == channel => r,
        _ => Recipient::parse(channel, &msg.recipient)?,
    };
    let content_variables = match texts.content_variables.filter(|t| !t.trim().is_empty()) {
        None => None,
        Some(text) => Some(serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
            ValidationError::new("content_variables", format!("content_variables is not valid JSON: {e}"))
        })?),
    };
    let content = Content::parse(
        channel,
        ContentInput {
            subject: texts.subject,
            body: texts.body,
            html_body: texts.html_body,
            content_sid: texts.content_sid,
            content_variables: content_variables.as_ref(),
        },
    )?;
    let metadata = parse_metadata_text(msg.metadata_raw.as_deref())?;
    if msg.send_at_invalid {
        return Err(ValidationError::new(
            "send_at",
            "send_at is not a date and time (use RFC 3339, e.g. 2026-11-25T14:30:00Z)",
        ));
    }
    Ok(OutgoingMessage {
        id: msg.id,
        attempt: u32::try_from(msg.attempts).unwrap_or(1),
        recipient,
        content,
        metadata,
    })
}
