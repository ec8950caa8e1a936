//! SMTP through lettre (the guide's "nodemailer" option): pooled
//! connections, implicit TLS with `SMTP_SECURE=true`, otherwise STARTTLS when
//! the server offers it; AUTH only when `SMTP_USER` is set.

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::{BoxFuture, Provider, Receipt, SendError};
use crate::config::{EmailFrom, SmtpSettings};
use crate::domain::{Channel, OutgoingMessage};

pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// Sends at once, at most the pool's connections: a channel that fails
    /// over to SMTP (with far more calls in flight than an SMTP server
    /// takes) queues here instead of opening a connection per message.
    connections: tokio::sync::Semaphore,
    /// How long a send waits for a connection before it is handed back.
    wait: std::time::Duration,
    /// A fix to suggest with connection errors, from the settings.
    hint: Option<&'static str>,
    from: Mailbox,
    from_domain: String,
}

impl Smtp {
    pub fn new(
        settings: &SmtpSettings,
        from: &EmailFrom,
        timeout: std::time::Duration,
        pool_size: u32,
    ) -> anyhow::Result<Smtp> {
        let tls = TlsParameters::new(settings.host.clone())?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone())
            .port(settings.port)
            .tls(if settings.secure {
                Tls::Wrapper(tls)
            } else {
                Tls::Opportunistic(tls)
            })
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(pool_size.max(1)));
        if let Some(user) = &settings.user {
            let password = settings
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_owned())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let address = from
            .address
            .as_str()
            .parse()
            .map_err(|e| anyhow::anyhow!("EMAIL_FROM_ADDRESS cannot be used for SMTP: {e}"))?;
        let domain = from
            .address
            .as_str()
            .rsplit_once('@')
            .map(|(_, d)| d.to_owned())
            .unwrap_or_default();
        Ok(Smtp {
            transport: builder.build(),
            connections: tokio::sync::Semaphore::new(pool_size.max(1) as usize),
            wait: timeout / 2,
            hint: settings_hint(settings),
            from: Mailbox::new(from.name.clone(), address),
            from_domain: domain,
        })
    }

    /// Connect, greet, start TLS when configured or offered, and log in
    /// (`herald doctor`); the reason it failed, with a fix when one is known.
    pub async fn check(&self) -> Result<(), String> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the server did not answer NOOP".to_owned()),
            Err(e) => Err(match self.hint {
                Some(h) => format!("{e} ({h})"),
                None => e.to_string(),
            }),
        }
    }

    /// The message as it goes on the wire, and its Message-ID.
    pub fn build(&self, msg: &OutgoingMessage) -> Result<(Message, String), SendError> {
        let to: Mailbox = msg.recipient.to_string().parse().map_err(|e| {
            SendError::permanent("invalid_recipient", format!("SMTP cannot address this recipient: {e}"))
        })?;
        let message_id = format!(
            "<herald.{}.{}.{:08x}@{}>",
            msg.id,
            msg.attempt,
            fastrand::u32(..),
            self.from_domain
        );
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(msg.content.subject.clone().unwrap_or_default())
            .date_now()
            .message_id(Some(message_id.clone()));
        let c = &msg.content;
        let built = match (&c.body, &c.html_body) {
            (Some(text), Some(html)) => {
                builder.multipart(MultiPart::alternative_plain_html(text.clone(), html.clone()))
            }
            (None, Some(html)) => {
                builder.singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html.clone()))
            }
            (text, None) => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text.clone().unwrap_or_default()),
            ),
        };
        let message =
            built.map_err(|e| SendError::permanent("invalid_message", format!("could not build the email: {e}")))?;
        Ok((message, message_id))
    }
}

/// Reply classes decide: 4xx transient, 5xx permanent; 535 and 530 (login
/// refused or required) and a server that offers no way to log in mean the
/// credentials or settings are wrong: the provider pauses and an operator
/// is told. No reply at all: transient. `hint` (from the settings) is added
/// to connection problems.
pub(super) fn classify(e: &lettre::transport::smtp::Error, hint: Option<&str>) -> SendError {
    let text = super::error_chain(e);
    let with_hint = |t: String| match hint {
        Some(h) => format!("{t} ({h})"),
        None => t,
    };
    match e.status() {
        Some(code) => {
            let n: u16 = code.to_string().parse().unwrap_or(0);
            let err = if n == 535 || n == 530 {
                SendError::unauthorized(n.to_string(), text)
            } else if e.is_permanent() {
                SendError::permanent(n.to_string(), text)
            } else {
                SendError::retryable(n.to_string(), text)
            };
            err.with_status(n)
        }
        None if text.contains("No compatible authentication mechanism") => SendError::unauthorized(
            "no_auth",
            with_hint(
                "the SMTP server offers no way to log in on this connection (it may need TLS first); check SMTP_PORT and SMTP_SECURE, or unset SMTP_USER if it needs no login".to_owned(),
            ),
        ),
        None if e.is_timeout() => SendError::retryable("timeout", with_hint(text)).with_outcome_unknown(),
        None => SendError::retryable("connection", with_hint(text)),
    }
}

/// A one-line fix for the commonest SMTP setting mistakes.
fn settings_hint(settings: &SmtpSettings) -> Option<&'static str> {
    match (settings.port, settings.secure) {
        (587 | 25, true) => Some("port 587 uses STARTTLS: set SMTP_SECURE=false"),
        (465, false) => Some("port 465 uses implicit TLS: set SMTP_SECURE=true"),
        _ => None,
    }
}

impl Provider for Smtp {
    fn name(&self) -> &'static str {
        super::SMTP
    }

    fn sender(&self, _channel: Channel) -> String {
        self.from.email.to_string()
    }

    fn send<'a>(&'a self, msg: &'a OutgoingMessage) -> BoxFuture<'a, Result<Receipt, SendError>> {
        Box::pin(async move {
            let (message, message_id) = self.build(msg)?;
            let Ok(Ok(_connection)) = tokio::time::timeout(self.wait, self.connections.acquire()).await else {
                // Nothing was sent: the message is only handed back.
                return Err(SendError::retryable(
                    "busy",
                    format!(
                        "every SMTP connection stayed busy for {:?}; not sent (EMAIL_CONCURRENCY sets how many)",
                        self.wait
                    ),
                ));
            };
            match self.transport.send(message).await {
                Ok(_) => Ok(Receipt::new(message_id)),
                Err(e) => Err(classify(&e, self.hint)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(port: u16, secure: bool) -> SmtpSettings {
        SmtpSettings {
            host: "smtp.example.com".into(),
            port,
            user: None,
            password: None,
            secure,
        }
    }

    #[test]
    fn the_commonest_setting_mistakes_get_a_one_line_fix() {
        assert_eq!(
            settings_hint(&settings(587, true)),
            Some("port 587 uses STARTTLS: set SMTP_SECURE=false")
        );
        assert_eq!(
            settings_hint(&settings(465, false)),
            Some("port 465 uses implicit TLS: set SMTP_SECURE=true")
        );
        assert_eq!(settings_hint(&settings(587, false)), None);
        assert_eq!(settings_hint(&settings(465, true)), None);
    }
}
