//! `DASHBOARD_*` and prices: who may sign in to the dashboard, for how
//! long, and what a message costs (for the overview's estimate).

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use secrecy::{ExposeSecret, SecretString};

use super::reader::Reader;

/// What the dashboard needs from the configuration.
#[derive(Debug, Clone)]
pub struct DashboardSettings {
    /// `DASHBOARD_PASSWORD`, as an argon2 hash (PHC string); API keys
    /// also sign in.
    pub password_hash: Option<SecretString>,
    /// `DASHBOARD_SESSION_HOURS`.
    pub session_ttl: Duration,
    pub prices: Prices,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        DashboardSettings {
            password_hash: None,
            session_ttl: Duration::from_secs(12 * 3600),
            prices: Prices::default(),
        }
    }
}

/// Prices for the cost estimate (unset: no estimate).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices {
    pub sms_per_segment: Option<f64>,
    pub whatsapp_per_message: Option<f64>,
    pub email_per_message: Option<f64>,
    pub currency: String,
}

/// An argon2id hash of `password` (PHC string), with a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub(super) fn dashboard(r: &mut Reader<'_>) -> DashboardSettings {
    let password_hash = r.optional_secret("DASHBOARD_PASSWORD").and_then(|p| {
        let p = p.expose_secret();
        if p.starts_with("$argon2") {
            match PasswordHash::new(p) {
                Ok(_) => Some(SecretString::from(p.to_owned())),
                Err(e) => {
                    r.errors.push(format!(
                        "DASHBOARD_PASSWORD looks like an argon2 hash but is not one: {e}"
                    ));
                    None
                }
            }
        } else if p.chars().count() < 12 {
            r.errors.push(
                "DASHBOARD_PASSWORD must be at least 12 characters (or an argon2 hash from `herald hash-password`)"
                    .into(),
            );
            None
        } else {
            match hash_password(p) {
                Ok(h) => Some(SecretString::from(h)),
                Err(e) => {
                    r.errors.push(format!("DASHBOARD_PASSWORD could not be hashed: {e}"));
                    None
                }
            }
        }
    });
    let hours = r.number("DASHBOARD_SESSION_HOURS", 12u64, 1, 24 * 30, "hours");
    let mut price = |name: &str| -> Option<f64> {
        let v = r.get(name)?.trim().to_owned();
        match v.parse::<f64>() {
            Ok(p) if p.is_finite() && p >= 0.0 => Some(p),
            _ => {
                r.errors
                    .push(format!("{name} must be a price such as 0.0079 (got {v:?})"));
                None
            }
        }
    };
    let prices = Prices {
        sms_per_segment: price("SMS_PRICE_PER_SEGMENT"),
        whatsapp_per_message: price("WHATSAPP_PRICE_PER_MESSAGE"),
        email_per_message: price("EMAIL_PRICE_PER_MESSAGE"),
        currency: r.string("PRICE_CURRENCY", "USD"),
    };
    DashboardSettings {
        password_hash,
        session_ttl: Duration::from_secs(hours * 3600),
        prices,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier;

    #[test]
    fn passwords_are_hashed_with_a_salt() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "a new salt each time");
        let parsed = PasswordHash::new(&a).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse battery", &parsed)
            .is_ok());
        assert!(Argon2::default().verify_password(b"wrong", &parsed).is_err());
    }
}
