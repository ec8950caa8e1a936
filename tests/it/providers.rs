//! Each provider against a loopback server that behaves like the real one:
//! one test per outcome class per provider.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herald::clock::{Clock, ManualClock};
use herald::config::{CustomSettings, EmailFrom, SendgridSettings};
use herald::domain::{Channel, Content, ContentInput, EmailAddress, OutgoingMessage, Recipient};
use herald::providers::{Custom, FailureClass, Provider, SendError, Sendgrid, Twilio};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::support::*;

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(t0()))
}

fn twilio(fake: &FakeTwilio, timeout: Duration) -> Twilio {
    Twilio::new(
        twilio_settings(fake),
        Some("https://herald.example.com"),
        timeout,
        clock(),
    )
}

fn assert_clean(rec: &Recorded) {
    assert!(
        rec.violations().is_empty(),
        "requests the real API would reject: {:?}",
        rec.violations()
    );
}

fn err(r: Result<herald::providers::Receipt, SendError>) -> SendError {
    r.expect_err("expected a failure")
}

#[tokio::test]
async fn twilio_sms_is_sent_as_twilio_expects() {
    let fake = FakeTwilio::start().await;
    let p = twilio(&fake, Duration::from_secs(5));
    let receipt = p
        .send(&out(7, Channel::Sms, "+14153234567", "Your order is ready"))
        .await
        .unwrap();
    let sid = receipt.provider_message_id.unwrap();
    assert!(sid.starts_with("SM") && sid.len() == 34, "{sid}");
    let req = &fake.state.requests()[0];
    assert_eq!(req["To"], "+14153234567");
    assert_eq!(req["From"], "+15005550006");
    assert_eq!(req["Body"], "Your order is ready");
    assert_eq!(
        req["StatusCallback"],
        "https://herald.example.com/webhooks/twilio/status"
    );
    assert!(req.get("MessagingServiceSid").is_none());
    assert_eq!(p.sender(Channel::Sms), "+15005550006");
    assert_clean(&fake.state);
}

#[tokio::test]
async fn twilio_whatsapp_carries_the_prefix_on_both_ends() {
    let fake = FakeTwilio::start().await;
    let p = twilio(&fake, Duration::from_secs(5));
    p.send(&out(8, Channel::Whatsapp, "+14153234567", "Olá!"))
        .await
        .unwrap();
    let req = &fake.state.requests()[0];
    assert_eq!(req["To"], "whatsapp:+14153234567");
    assert_eq!(req["From"], "whatsapp:+14155238886");
    assert_clean(&fake.state);
}

#[tokio::test]
async fn twilio_messaging_service_replaces_from() {
    let fake = FakeTwilio::start().await;
    let mut settings = twilio_settings(&fake);
    settings.messaging_service_sid = Some(format!("MG{}", "0a".repeat(16)));
    let p = Twilio::new(settings, None, Duration::from_secs(5), clock());
    p.send(&out(9, Channel::Sms, "+14153234567", "hi")).await.unwrap();
    let req = &fake.state.requests()[0];
    assert_eq!(req["MessagingServiceSid"], format!("MG{}", "0a".repeat(16)));
    assert!(req.get("From").is_none());
    assert!(req.get("StatusCallback").is_none(), "no PUBLIC_URL, no callback");
    assert_clean(&fake.state);
}

#[tokio::test]
async fn twilio_whatsapp_template_sends_content_sid_and_variables_without_body() {
    let fake = FakeTwilio::start().await;
    let p = twilio(&fake, Duration::from_secs(5));
    let sid = format!("HX{}", "b2".repeat(16));
    let vars = json!({"1": "Ana", "2": "12/1"});
    let input = ContentInput {
        content_sid: Some(&sid),
        content_variables: Some(&vars),
        ..Default::default()
    };
    let msg = OutgoingMessage {
        id: 10,
        attempt: 1,
        recipient: Recipient::parse(Channel::Whatsapp, "+14153234567").unwrap(),
        content: Content::parse(Channel::Whatsapp, input).unwrap(),
        metadata: None,
    };
    p.send(&msg).await.unwrap();
    let req = &fake.state.requests()[0];
    assert_eq!(req["ContentSid"], sid);
    let sent_vars: Value = serde_json::from_str(req["ContentVariables"].as_str().unwrap()).unwrap();
    assert_eq!(sent_vars, vars);
    assert!(req.get("Body").is_none());
    assert_clean(&fake.state);
}

#[tokio::test]
async fn twilio_permanent_codes_fail_with_twilios_code_and_message() {
    let fake = FakeTwilio::start().await;
    let p = twilio(&fake, Duration::from_secs(5));
    for (i, (code, status)) in [
        (21211, 400),
        (21614, 400),
        (21408, 400),
        (21610, 400),
        (63016, 400),
        (21606, 400),
    ]
    .into_iter()
    .enumerate()
    {
        let to = format!("+1415200{:04}", i);
        let message = format!("Twilio says {code}");
        fake.state.script(
            &to,
            Reply::Error {
                status,
                code,
                message: message.clone(),
            },
        );
        let e = err(p.send(&out(i as i64, Channel::Sms, &to, "hi")).await);
        assert_eq!(e.class, FailureClass::Permanent, "{code}");
        assert_eq!(
            (e.code.as_str(), e.message.as_str(), e.status),
            (code.to_string().as_str(), message.as_str(), Some(status))
        );
        assert!(!e.outcome_unknown);
    }
    assert_clean(&fake.state);
}

#[tokio::test]
async fn twilio_bad_credentials_fail_with_an_alert_and_no_secret_in_the_error() {
    let fake = FakeTwilio::start().await;
    let mut settings = twilio_settings(&fake);
    settings.auth_secret = SecretString::from("00000000000000000000000000000000".to_owned());
    let p = Twilio::new(settings, None, Duration::from_secs(5), clock());
    let e = err(p.send(&out(1, Channel::Sms, "+14153234567", "hi")).await);
    assert_eq!(
        (e.class, e.code.as_str(), e.alert),
        (FailureClass::Unauthorized, "20003", true)
    );
    assert!(!e.message.contains("0000000000"), "{e:?}");
    assert!(!format!("{e:?}").contains(TWILIO_TOKEN));
}

#[tokio::test]
async fn twilio_429_pauses_until_retry_after_or_a_default() {
    let fake = FakeTwilio::start().await;
    let p = twilio(&fake, Duration::from_secs(5));
    fake.state.script(
        "+14153230001",
        Reply::Raw {
            status: 429,
            body: json!({"code": 20429, "message": "Too Many Requests", "status": 429}).to_string(),
            headers: vec![("retry-after".into(), "17".into())],
        },
    );
    let e = err(p.send(&out(1, Channel::Sms, "+14153230001", "hi")).await);
    assert_eq!(
        e.class,
        FailureClass::RateLimited {
            until: t0() + chrono::Duration::seconds(17)
        }
    );
    assert_eq!(e.code, "20429");
    fake.state.script(
        "+14153230002",
        Reply::Error {
            status: 429,
            code: 20429,
            message: "Too Many Requests".into(),
        },
    );
    let e = err(p.send(&out(2, Channel::Sms, "+14153230002", "hi")).await);
    assert_eq!(
        e.class,
        FailureClass::RateLimited {
            until: t0() + chrono::Duration::seconds(5)
        }
    );
    fake.state.script(
        "+14153230003",
        Reply::Error {
            status: 400,
            code: 21611,
            message: "queue full".into(),
        },
    );
    assert_eq!(
        err(p.send(&out(3, Channel::Sms, "+14153230003", "hi")).await).class,
        FailureClass::Retryable
    );
}

#[tokio::test]
async fn twilio_5xx_timeout_and_malformed_answers() {
    let fake = FakeTwilio::start().await;
    let p = twilio(&fake, Duration::from_millis(500));
    fake.state.script(
        "+14153230001",
        Reply::Raw {
            status: 502,
            body: "<html>Bad Gateway</html>".into(),
            headers: vec![],
        },
    );
    let e = err(p.send(&out(1, Channel::Sms, "+14153230001", "hi")).await);
    assert_eq!(
        (e.class, e.outcome_unknown, e.status),
        (FailureClass::Retryable, true, Some(502))
    );
    assert!(e.message.contains("Bad Gateway"));
    // A 503: Twilio was unavailable and did not act on the request.
    fake.state.script(
        "+14153230001",
        Reply::Raw {
            status: 503,
            body: "<html>Service Unavailable</html>".into(),
            headers: vec![],
        },
    );
    let e = err(p.send(&out(1, Channel::Sms, "+14153230001", "hi")).await);
    assert_eq!(
        (e.class, e.outcome_unknown, e.status),
        (FailureClass::Retryable, false, Some(503))
    );
    assert!(e.not_accepted());

    fake.state.script("+14153230002", Reply::Hang(Duration::from_secs(3)));
    let e = err(p.send(&out(2, Channel::Sms, "+14153230002", "hi")).await);
    assert_eq!(
        (e.class, e.outcome_unknown, e.code.as_str()),
        (FailureClass::Retryable, true, "timeout")
    );

    // 201 with a body that is not a Message: Twilio created it; never resend.
    fake.state.script(
        "+14153230003",
        Reply::Raw {
            status: 201,
            body: "{not json".into(),
            headers: vec![],
        },
    );
    let r = p.send(&out(3, Channel::Sms, "+14153230003", "hi")).await.unwrap();
    assert_eq!(r.provider_message_id, None);

    // 400 with a body that is not Twilio's error shape: permanent, HTTP status as the code.
    fake.state.script(
        "+14153230004",
        Reply::Raw {
            status: 400,
            body: "bad".into(),
            headers: vec![],
        },
    );
    let e = err(p.send(&out(4, Channel::Sms, "+14153230004", "hi")).await);
    assert_eq!((e.class, e.code.as_str()), (FailureClass::Permanent, "http_400"));
}

#[tokio::test]
async fn unreachable_provider_is_a_retryable_connection_error() {
    // A port nobody listens on: the request never left, so the outcome is known.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let fake = FakeTwilio::start().await;
    let mut settings = twilio_settings(&fake);
    settings.api_url = format!("http://127.0.0.1:{port}");
    let p = Twilio::new(settings, None, Duration::from_secs(2), clock());
    let e = err(p.send(&out(1, Channel::Sms, "+14153234567", "hi")).await);
    assert_eq!(
        (e.class, e.outcome_unknown, e.code.as_str()),
        (FailureClass::Retryable, false, "connection")
    );
    assert!(
        !e.message.contains(TWILIO_SID),
        "the URL (with the account SID) is kept out of errors: {}",
        e.message
    );
}

fn sendgrid(fake: &FakeSendgrid, name: Option<&str>, timeout: Duration) -> Sendgrid {
    Sendgrid::new(
        SendgridSettings {
            api_url: fake.url.clone(),
            api_key: SecretString::from(SENDGRID_KEY.to_owned()),
        },
        EmailFrom {
            address: EmailAddress::parse("shop@example.com").unwrap(),
            name: name.map(str::to_owned),
        },
        timeout,
        clock(),
    )
}

#[tokio::test]
async fn sendgrid_mail_send_is_what_sendgrid_expects() {
    let fake = FakeSendgrid::start().await;
    let p = sendgrid(&fake, Some("Loja Exemplo"), Duration::from_secs(5));
    let r = p
        .send(&email(
            42,
            "ana@example.com",
            "Recibo nº 42",
            Some("Obrigado!"),
            Some("<p>Obrigado!</p>"),
        ))
        .await
        .unwrap();
    assert!(r.provider_message_id.unwrap().starts_with("sgid"));
    let body = &fake.state.requests()[0];
    assert_eq!(body["personalizations"][0]["to"][0]["email"], "ana@example.com");
    assert_eq!(
        body["personalizations"][0]["custom_args"]["herald_id"], "42",
        "a string, as SendGrid requires"
    );
    assert_eq!(
        body["from"],
        json!({"email": "shop@example.com", "name": "Loja Exemplo"})
    );
    assert_eq!(body["subject"], "Recibo nº 42");
    assert_eq!(body["content"][0], json!({"type": "text/plain", "value": "Obrigado!"}));
    assert_eq!(
        body["content"][1],
        json!({"type": "text/html", "value": "<p>Obrigado!</p>"})
    );

    // No name configured: the field is left out (a null name is a 400 at SendGrid).
    let p = sendgrid(&fake, None, Duration::from_secs(5));
    p.send(&email(43, "ana@example.com", "s", None, Some("<b>only html</b>")))
        .await
        .unwrap();
    let body = &fake.state.requests()[1];
    assert_eq!(body["from"], json!({"email": "shop@example.com"}));
    assert_eq!(
        body["content"],
        json!([{"type": "text/html", "value": "<b>only html</b>"}])
    );
    assert_clean(&fake.state);
}

#[tokio::test]
async fn sendgrid_errors_are_classified() {
    let fake = FakeSendgrid::start().await;
    let p = sendgrid(&fake, None, Duration::from_millis(500));
    for (i, status) in [400u16, 401, 403, 404, 413].into_iter().enumerate() {
        let to = format!("user{i}@example.com");
        fake.state.script(
            &to,
            Reply::Error {
                status,
                code: 0,
                message: format!("refused {status}"),
            },
        );
        let e = err(p.send(&email(i as i64, &to, "s", Some("b"), None)).await);
        let class = if status == 401 || status == 403 {
            FailureClass::Unauthorized
        } else {
            FailureClass::Permanent
        };
        assert_eq!(e.class, class, "{status}");
        assert_eq!(
            (e.code.clone(), e.alert),
            (status.to_string(), status == 401 || status == 403)
        );
        assert_eq!(e.message, format!("refused {status}"));
    }
    let reset = Utc::now().timestamp() + 30;
    fake.state.script(
        "limited@example.com",
        Reply::Raw {
            status: 429,
            body: json!({"errors": [{"field": null, "message": "too many requests"}]}).to_string(),
            headers: vec![
                ("x-ratelimit-reset".into(), reset.to_string()),
                ("x-ratelimit-remaining".into(), "0".into()),
            ],
        },
    );
    let e = err(p.send(&email(10, "limited@example.com", "s", Some("b"), None)).await);
    assert_eq!(
        e.class,
        FailureClass::RateLimited {
            until: chrono::DateTime::from_timestamp(reset, 0).unwrap()
        }
    );
    fake.state.script(
        "limited2@example.com",
        Reply::Error {
            status: 429,
            code: 0,
            message: "too many requests".into(),
        },
    );
    let e = err(p.send(&email(11, "limited2@example.com", "s", Some("b"), None)).await);
    assert_eq!(
        e.class,
        FailureClass::RateLimited {
            until: t0() + chrono::Duration::seconds(5)
        }
    );

    fake.state.script(
        "down@example.com",
        Reply::Raw {
            status: 502,
            body: "bad gateway".into(),
            headers: vec![],
        },
    );
    let e = err(p.send(&email(12, "down@example.com", "s", Some("b"), None)).await);
    assert_eq!((e.class, e.outcome_unknown), (FailureClass::Retryable, true));
    fake.state
        .script("slow@example.com", Reply::Hang(Duration::from_secs(3)));
    let e = err(p.send(&email(13, "slow@example.com", "s", Some("b"), None)).await);
    assert_eq!(
        (e.class, e.outcome_unknown, e.code.as_str()),
        (FailureClass::Retryable, true, "timeout")
    );
    // 202 without X-Message-Id: accepted, no id to keep.
    fake.state.script(
        "noid@example.com",
        Reply::Raw {
            status: 202,
            body: String::new(),
            headers: vec![],
        },
    );
    assert_eq!(
        p.send(&email(14, "noid@example.com", "s", Some("b"), None))
            .await
            .unwrap()
            .provider_message_id,
        None
    );
    assert_clean(&fake.state);
}

fn custom(fake: &FakeCustom, timeout: Duration) -> Custom {
    Custom::new(
        CustomSettings {
            sms_url: Some(fake.url.clone()),
            whatsapp_url: None,
            email_url: Some(fake.url.clone()),
            lookup_url: Some(fake.lookup_url.clone()),
            secret: SecretString::from(CUSTOM_SECRET.to_owned()),
        },
        timeout,
        clock(),
    )
}

#[tokio::test]
async fn custom_provider_posts_signed_json() {
    let fake = FakeCustom::start().await;
    let p = custom(&fake, Duration::from_millis(500));
    let mut m = out(5, Channel::Sms, "+14153234567", "hello");
    m.metadata = Some(json!({"order": 9}));
    let r = p.send(&m).await.unwrap();
    assert!(r.provider_message_id.unwrap().starts_with("custom-"));
    let got = &fake.state.requests()[0];
    assert_eq!(got["id"], 5);
    assert_eq!(got["channel"], "sms");
    assert_eq!(got["recipient"], "+14153234567");
    assert_eq!(got["body"], "hello");
    assert_eq!(got["metadata"]["order"], 9);
    assert_clean(&fake.state);

    fake.state.script(
        "+14152000001",
        Reply::Raw {
            status: 422,
            body: "no".into(),
            headers: vec![],
        },
    );
    let e = err(p.send(&out(6, Channel::Sms, "+14152000001", "x")).await);
    assert_eq!((e.class, e.code.as_str()), (FailureClass::Permanent, "http_422"));
    fake.state.script(
        "+14152000002",
        Reply::Raw {
            status: 429,
            body: "".into(),
            headers: vec![("retry-after".into(), "9".into())],
        },
    );
    let e = err(p.send(&out(7, Channel::Sms, "+14152000002", "x")).await);
    assert_eq!(
        e.class,
        FailureClass::RateLimited {
            until: t0() + chrono::Duration::seconds(9)
        }
    );
    fake.state.script(
        "+14152000003",
        Reply::Raw {
            status: 500,
            body: "".into(),
            headers: vec![],
        },
    );
    let e = err(p.send(&out(8, Channel::Sms, "+14152000003", "x")).await);
    assert_eq!((e.class, e.outcome_unknown), (FailureClass::Retryable, true));
    fake.state.script("+14152000004", Reply::Hang(Duration::from_secs(3)));
    let e = err(p.send(&out(9, Channel::Sms, "+14152000004", "x")).await);
    assert_eq!((e.class, e.code.as_str()), (FailureClass::Retryable, "timeout"));
    // 2xx without a JSON id: sent, no id.
    fake.state.script(
        "+14152000005",
        Reply::Raw {
            status: 204,
            body: "".into(),
            headers: vec![],
        },
    );
    assert_eq!(
        p.send(&out(10, Channel::Sms, "+14152000005", "x"))
            .await
            .unwrap()
            .provider_message_id,
        None
    );
}
