//! Signing status webhooks as the Standard Webhooks specification says
//! (standardwebhooks.com): the secret is `whsec_` + base64 key bytes; the
//! signature is `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
//! in the `webhook-signature` header, several separated by spaces while a
//! rotated secret's overlap lasts. Pure; tested against the
//! specification's published example.

use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// Key bytes of a secret Herald generates (the specification asks for 24
/// to 64).
const KEY_BYTES: usize = 32;

/// How far a webhook's timestamp may be from the receiver's clock
/// (the specification's default tolerance).
pub const TOLERANCE_SECONDS: i64 = 300;

/// An endpoint's signing secret.
#[derive(Clone)]
pub struct WebhookSecret {
    text: SecretString,
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

impl WebhookSecret {
    /// A new random secret.
    pub fn generate() -> WebhookSecret {
        let mut key = vec![0u8; KEY_BYTES];
        getrandom::getrandom(&mut key).expect("the operating system's random numbers");
        let text = format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(&key));
        WebhookSecret {
            text: SecretString::from(text),
            key,
        }
    }

    /// `whsec_<base64>` (the prefix may be left out, as the
    /// specification's libraries allow).
    pub fn parse(text: &str) -> Result<WebhookSecret, String> {
        let b64 = text.strip_prefix(PREFIX).unwrap_or(text);
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "a webhook secret is whsec_ followed by base64".to_owned())?;
        if key.is_empty() {
            return Err("a webhook secret needs at least one byte of key".into());
        }
        Ok(WebhookSecret {
            text: SecretString::from(format!("{PREFIX}{b64}")),
            key,
        })
    }

    /// The secret as the POS configures it (shown once, at creation).
    pub fn expose(&self) -> &str {
        self.text.expose_secret()
    }

    /// `v1,<base64 signature>` of a webhook.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        )
    }

    /// Whether any `v1` signature of a `webhook-signature` header is this
    /// secret's, and the timestamp within [`TOLERANCE_SECONDS`] of `now`
    /// (what a receiver checks; Herald's tests check with it).
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str, now: i64) -> bool {
        if (now - timestamp).abs() > TOLERANCE_SECONDS {
            return false;
        }
        let expected = self.sign(id, timestamp, body);
        header
            .split(' ')
            .filter(|s| s.starts_with("v1,"))
            .any(|s| subtle::ConstantTimeEq::ct_eq(s.as_bytes(), expected.as_bytes()).into())
    }
}

/// The `webhook-signature` header for `secrets` (the current one first,
/// then one still valid after a rotation).
pub fn signature_header(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The specification's published example (its libraries' test suites).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1614265330;
    const BODY: &str = r#"{"test": 2432232314}"#;

    #[test]
    fn signs_the_specifications_example_exactly() {
        let s = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(
            s.sign(ID, TIMESTAMP, BODY.as_bytes()),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // With or without the prefix.
        let bare = WebhookSecret::parse(SECRET.trim_start_matches("whsec_")).unwrap();
        assert_eq!(
            bare.sign(ID, TIMESTAMP, BODY.as_bytes()),
            s.sign(ID, TIMESTAMP, BODY.as_bytes())
        );
        assert_eq!(bare.expose(), SECRET);
    }

    #[test]
    fn verifies_as_a_receiver_would() {
        let s = WebhookSecret::parse(SECRET).unwrap();
        let sig = s.sign(ID, TIMESTAMP, BODY.as_bytes());
        assert!(s.verify(ID, TIMESTAMP, BODY.as_bytes(), &sig, TIMESTAMP + 10));
        // One valid signature among several (a rotation's overlap).
        let several = format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,xyz {sig}");
        assert!(s.verify(ID, TIMESTAMP, BODY.as_bytes(), &several, TIMESTAMP));
        // Tampered body, id, stale or future timestamp, partial signature.
        assert!(!s.verify(ID, TIMESTAMP, b"{\"test\": 2432232315}", &sig, TIMESTAMP));
        assert!(!s.verify("msg_other", TIMESTAMP, BODY.as_bytes(), &sig, TIMESTAMP));
        assert!(!s.verify(ID, TIMESTAMP, BODY.as_bytes(), &sig, TIMESTAMP + 301));
        assert!(!s.verify(ID, TIMESTAMP, BODY.as_bytes(), &sig, TIMESTAMP - 301));
        assert!(!s.verify(ID, TIMESTAMP, BODY.as_bytes(), &sig[..8], TIMESTAMP));
        assert!(!s.verify(ID, TIMESTAMP, BODY.as_bytes(), "v1,", TIMESTAMP));
    }

    #[test]
    fn generated_secrets_are_random_whsec_keys() {
        let (a, b) = (WebhookSecret::generate(), WebhookSecret::generate());
        assert!(a.expose().starts_with("whsec_"));
        assert_ne!(a.expose(), b.expose());
        let back = WebhookSecret::parse(a.expose()).unwrap();
        assert_eq!(back.sign("x", 1, b"y"), a.sign("x", 1, b"y"));
        assert_eq!(format!("{a:?}"), "WebhookSecret(…)", "never printed");
        let header = signature_header(&[a.clone(), b.clone()], "x", 1, b"y");
        assert!(b.verify("x", 1, b"y", &header, 1) && a.verify("x", 1, b"y", &header, 1));
        assert!(WebhookSecret::parse("whsec_!!!").is_err());
    }
}
