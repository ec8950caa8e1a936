//! The SMTP provider against a real SMTP server (Python's aiosmtpd, see
//! `tests/support/smtp_server.py`; `scripts/test` installs it). Each message
//! is checked as the server received and parsed it.

use std::time::Duration;

use herald::config::{EmailFrom, SmtpSettings};
use herald::domain::EmailAddress;
use herald::providers::{FailureClass, Provider, Smtp};

use crate::support::*;

fn from() -> EmailFrom {
    EmailFrom {
        address: EmailAddress::parse("loja@example.com").unwrap(),
        name: Some("Loja Exemplo".into()),
    }
}

fn provider(server: &SmtpServer, user: Option<(&str, &str)>) -> Smtp {
    Smtp::new(&server.settings(user), &from(), Duration::from_secs(5), 2).unwrap()
}

#[tokio::test]
async fn a_well_formed_multipart_message_arrives() {
    let server = SmtpServer::start();
    let p = provider(&server, None);
    let r = p
        .send(&email(
            42,
            "ana@example.com",
            "Recibo nº 42 — obrigado",
            Some("Total: R$ 10"),
            Some("<p>Total: <b>R$ 10</b></p>"),
        ))
        .await
        .unwrap();
    let message_id = r.provider_message_id.unwrap();
    let got = &server.wait_for(1).await[0];
    assert_eq!(got["rcpt_tos"][0], "ana@example.com");
    assert_eq!(got["mail_from"], "loja@example.com");
    assert_eq!(got["from_name"], "Loja Exemplo");
    assert_eq!(got["from_address"], "loja@example.com");
    assert_eq!(got["subject"], "Recibo nº 42 — obrigado");
    // On the wire the header is ASCII: the UTF-8 subject is RFC 2047 encoded.
    let headers = got["header_block"].as_str().unwrap();
    assert!(headers.is_ascii());
    let subject_line = headers.lines().find(|l| l.starts_with("Subject:")).unwrap();
    assert!(subject_line.to_ascii_lowercase().contains("=?utf-8?"), "{headers}");
    assert!(got["date"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(got["message_id"], message_id);
    assert!(message_id.starts_with("<herald.42.1.") && message_id.ends_with("@example.com>"));
    assert_eq!(got["content_type"], "multipart/alternative");
    let parts = got["parts"].as_array().unwrap();
    assert_eq!(parts[0]["type"], "text/plain");
    assert_eq!(parts[0]["content"].as_str().unwrap().trim_end(), "Total: R$ 10");
    assert_eq!(parts[1]["type"], "text/html");
    assert_eq!(
        parts[1]["content"].as_str().unwrap().trim_end(),
        "<p>Total: <b>R$ 10</b></p>"
    );

    p.send(&email(43, "ana@example.com", "Plain", Some("just text"), None))
        .await
        .unwrap();
    let got = &server.wait_for(2).await[1];
    assert_eq!(got["content_type"], "text/plain");
    assert_eq!(got["parts"][0]["content"].as_str().unwrap().trim_end(), "just text");
}

#[tokio::test]
async fn reply_codes_decide_the_class() {
    let server = SmtpServer::start();
    let p = provider(&server, None);
    let e = p
        .send(&email(1, "unknown@example.com", "s", Some("b"), None))
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str(), e.status),
        (FailureClass::Permanent, "550", Some(550))
    );
    assert!(e.message.contains("User unknown"), "{}", e.message);
    let e = p
        .send(&email(2, "busy@example.com", "s", Some("b"), None))
        .await
        .unwrap_err();
    assert_eq!((e.class, e.code.as_str()), (FailureClass::Retryable, "451"));
    // The pool recovers after refusals.
    p.send(&email(3, "ana@example.com", "s", Some("b"), None))
        .await
        .unwrap();
    assert_eq!(server.wait_for(1).await.len(), 1);
}

#[tokio::test]
async fn credentials_are_used_and_bad_ones_fail_with_535() {
    let server = SmtpServer::start();
    provider(&server, Some(("herald", "secret")))
        .send(&email(1, "ana@example.com", "s", Some("b"), None))
        .await
        .unwrap();
    assert_eq!(server.wait_for(1).await[0]["authenticated"], true);
    let e = provider(&server, Some(("herald", "wrong-password")))
        .send(&email(2, "ana@example.com", "s", Some("b"), None))
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str(), e.alert),
        (FailureClass::Unauthorized, "535", true)
    );
    assert!(!e.message.contains("wrong-password"));
}

#[tokio::test]
async fn an_unreachable_server_is_retryable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let settings = SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        user: None,
        password: None,
        secure: false,
    };
    let p = Smtp::new(&settings, &from(), Duration::from_secs(2), 1).unwrap();
    let e = p
        .send(&email(1, "ana@example.com", "s", Some("b"), None))
        .await
        .unwrap_err();
    assert_eq!(e.class, FailureClass::Retryable);
}
