//! Delivery receipts: what providers report after accepting a message, how
//! their words map to Herald's `delivery_status`, and how their signatures
//! are checked. Pure functions; the webhooks and the store do the I/O.

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Where a delivery state sits in a message's life. A receipt only changes
/// `delivery_status` when it ranks higher than the current one, so late and
/// repeated receipts never move a message backwards. Failures are final.
pub fn rank(delivery_status: &str) -> i32 {
    match delivery_status {
        "queued" | "accepted" | "scheduled" | "processed" => 1,
        "sending" | "deferred" => 2,
        "sent" => 3,
        "delivered" | "partially_delivered" => 4,
        "read" | "opened" => 5,
        "clicked" => 6,
        "undelivered" | "failed" | "bounced" | "dropped" | "canceled" => 10,
        "spam_reported" | "unsubscribed" => 11,
        _ => 0,
    }
}

/// Twilio's `MessageStatus` → Herald's delivery status (the same words).
pub fn twilio_delivery_status(message_status: &str) -> Option<&'static str> {
    Some(match message_status {
        "queued" => "queued",
        "accepted" => "accepted",
        "scheduled" => "scheduled",
        "sending" => "sending",
        "sent" => "sent",
        "delivered" => "delivered",
        "partially_delivered" => "partially_delivered",
        "read" => "read",
        "undelivered" => "undelivered",
        "failed" => "failed",
        "canceled" => "canceled",
        _ => return None,
    })
}

/// A SendGrid event → delivery status, and whether the recipient must be
/// suppressed (hard bounce, spam report, unsubscribe).
pub fn sendgrid_delivery_status(
    event: &str,
    bounce_type: Option<&str>,
) -> (Option<&'static str>, Option<&'static str>) {
    match event {
        "processed" => (Some("processed"), None),
        "deferred" => (Some("deferred"), None),
        "delivered" => (Some("delivered"), None),
        "open" => (Some("opened"), None),
        "click" => (Some("clicked"), None),
        // `blocked` is a temporary refusal by the receiving server; `bounce` is hard.
        "bounce" if bounce_type == Some("blocked") => (Some("bounced"), None),
        "bounce" => (Some("bounced"), Some("hard bounce")),
        "dropped" => (Some("dropped"), None),
        "spamreport" => (Some("spam_reported"), Some("spam report")),
        "unsubscribe" | "group_unsubscribe" => (Some("unsubscribed"), Some("unsubscribed")),
        _ => (None, None),
    }
}

/// Twilio's request signature: base64(HMAC-SHA1(auth token, URL followed by
/// each POST parameter name and value, sorted by name, then value)).
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The URL as Twilio may have signed it: as configured, and with the
/// default port added or removed.
pub fn twilio_url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let default = if url.starts_with("https://") {
        "443"
    } else if url.starts_with("http://") {
        "80"
    } else {
        return out;
    };
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find(['/', '?']).map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    let other = match authority.rsplit_once(':') {
        Some((host, port)) if port == default => format!("{}{host}{}", &url[..start], &url[end..]),
        Some(_) => return out, // another port: signed as is
        None => format!("{}{authority}:{default}{}", &url[..start], &url[end..]),
    };
    out.push(other);
    out
}

/// Check `X-Twilio-Signature` in constant time against every URL variant.
pub fn verify_twilio(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    use subtle::ConstantTimeEq;
    let mut ok = subtle::Choice::from(0u8);
    for candidate in twilio_url_variants(url) {
        let expected = twilio_signature(auth_token, &candidate, params);
        if expected.len() == signature.len() {
            ok |= expected.as_bytes().ct_eq(signature.as_bytes());
        }
    }
    bool::from(ok)
}

/// A SendGrid Event Webhook verification key (base64 DER SubjectPublicKeyInfo).
#[derive(Clone, Debug)]
pub struct SendgridKey(p256::ecdsa::VerifyingKey);

impl SendgridKey {
    pub fn parse(base64_der: &str) -> Result<SendgridKey, String> {
        use p256::pkcs8::DecodePublicKey;
        let der = base64::engine::general_purpose::STANDARD
            .decode(base64_der.trim())
            .map_err(|e| format!("not base64: {e}"))?;
        p256::ecdsa::VerifyingKey::from_public_key_der(&der)
            .map(SendgridKey)
            .map_err(|e| format!("not a P-256 public key (base64 DER, no PEM armour): {e}"))
    }

    /// ECDSA P-256/SHA-256 over `timestamp ++ raw body`.
    pub fn verify(&self, timestamp: &str, body: &[u8], signature_b64: &str) -> bool {
        use p256::ecdsa::signature::Verifier;
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim()) else {
            return false;
        };
        let Ok(sig) = p256::ecdsa::Signature::from_der(&sig) else {
            return false;
        };
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        self.0.verify(&signed, &sig).is_ok()
    }
}

/// A unix timestamp header, if it is within `tolerance` of `now`.
pub fn fresh_timestamp(ts: &str, now: DateTime<Utc>, tolerance: chrono::Duration) -> Option<DateTime<Utc>> {
    let t = Utc.timestamp_opt(ts.trim().parse::<i64>().ok()?, 0).single()?;
    ((t - now).abs() <= tolerance).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn twilio_official_test_vectors() {
        assert_eq!(
            twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &params()),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert_eq!(
            twilio_signature("12345", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", &params()),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
        );
        assert!(verify_twilio(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!verify_twilio(
            "12346",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        let mut tampered = params();
        tampered[2].1 = "1235".into();
        assert!(!verify_twilio(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            &tampered,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!verify_twilio(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn url_variants() {
        assert_eq!(
            twilio_url_variants("https://a.example.com/x?y=1"),
            ["https://a.example.com/x?y=1", "https://a.example.com:443/x?y=1"]
        );
        assert_eq!(
            twilio_url_variants("https://a.example.com:443/x"),
            ["https://a.example.com:443/x", "https://a.example.com/x"]
        );
        assert_eq!(
            twilio_url_variants("http://a.example.com:1234/x"),
            ["http://a.example.com:1234/x"]
        );
        assert_eq!(
            twilio_url_variants("http://a.example.com"),
            ["http://a.example.com", "http://a.example.com:80"]
        );
    }

    #[test]
    fn default_ports_are_accepted_both_ways() {
        let sig = twilio_signature("12345", "https://mycompany.com:443/myapp.php?foo=1", &params());
        assert!(verify_twilio(
            "12345",
            "https://mycompany.com/myapp.php?foo=1",
            &params(),
            &sig
        ));
        let sig = twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1", &params());
        assert!(verify_twilio(
            "12345",
            "https://mycompany.com:443/myapp.php?foo=1",
            &params(),
            &sig
        ));
    }

    const SG_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
    const SG_SIG: &str =
        "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
    const SG_BODY: &str = r#"[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address","sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA","sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0","smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]"#;

    #[test]
    fn sendgrid_official_test_vector() {
        let key = SendgridKey::parse(SG_KEY).unwrap();
        let body = format!("{SG_BODY}\r\n");
        assert!(key.verify("1600112502", body.as_bytes(), SG_SIG));
        assert!(
            !key.verify("1600112502", SG_BODY.as_bytes(), SG_SIG),
            "without the trailing CR LF"
        );
        assert!(!key.verify("1600112503", body.as_bytes(), SG_SIG));
        assert!(!key.verify("1600112502", body.as_bytes(), "bm90IGEgc2lnbmF0dXJl"));
        assert!(SendgridKey::parse("not base64!").is_err());
        assert!(SendgridKey::parse("aGVsbG8=").is_err());
    }

    #[test]
    fn ranks_never_go_backwards() {
        assert!(rank("delivered") > rank("sent"));
        assert!(rank("read") > rank("delivered"));
        assert!(rank("failed") > rank("read"));
        assert!(rank("undelivered") == rank("failed"));
        assert_eq!(twilio_delivery_status("read"), Some("read"));
        assert_eq!(twilio_delivery_status("bogus"), None);
        assert_eq!(
            sendgrid_delivery_status("bounce", Some("bounce")),
            (Some("bounced"), Some("hard bounce"))
        );
        assert_eq!(
            sendgrid_delivery_status("bounce", Some("blocked")),
            (Some("bounced"), None)
        );
        assert_eq!(sendgrid_delivery_status("spamreport", None).1, Some("spam report"));
    }

    #[test]
    fn timestamps_must_be_fresh() {
        let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let tol = chrono::Duration::minutes(5);
        assert!(fresh_timestamp("1700000100", now, tol).is_some());
        assert!(fresh_timestamp("1699999000", now, tol).is_none());
        assert!(fresh_timestamp("soon", now, tol).is_none());
    }
}
