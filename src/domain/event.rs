//! Status webhooks to the POS: the event types Herald sends, the set an
//! endpoint subscribes to, and the endpoint's URL. Pure parsers; the store
//! keeps the outbox, the `outbound` module delivers.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// What happened to a message. The words are a public contract: POS code
/// switches on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    /// Queued through the API, the CLI or the dashboard.
    #[serde(rename = "message.queued")]
    Queued,
    /// The provider accepted it (`status` became `sent`).
    #[serde(rename = "message.sent")]
    Sent,
    /// It will not be sent (`status` became `failed`).
    #[serde(rename = "message.failed")]
    Failed,
    /// A receipt: it reached the recipient's phone or mailbox.
    #[serde(rename = "message.delivered")]
    Delivered,
    /// A receipt: the carrier or WhatsApp could not deliver it.
    #[serde(rename = "message.undelivered")]
    Undelivered,
    /// A receipt: the receiving mail server refused it (or SendGrid dropped it).
    #[serde(rename = "message.bounced")]
    Bounced,
    /// A receipt: the email was opened, or the WhatsApp message read.
    #[serde(rename = "message.opened")]
    Opened,
    /// A receipt: a link in the email was clicked.
    #[serde(rename = "message.clicked")]
    Clicked,
    /// Its recipient is on the suppression list: it was not sent, or a
    /// receipt about it (spam report, unsubscribe, STOP) put them there.
    #[serde(rename = "message.suppressed")]
    Suppressed,
    /// A WhatsApp message its recipient could not get was queued again as
    /// an SMS (`fallback_message_id`).
    #[serde(rename = "message.fallback")]
    Fallback,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::Queued,
        EventType::Sent,
        EventType::Failed,
        EventType::Delivered,
        EventType::Undelivered,
        EventType::Bounced,
        EventType::Opened,
        EventType::Clicked,
        EventType::Suppressed,
        EventType::Fallback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Queued => "message.queued",
            EventType::Sent => "message.sent",
            EventType::Failed => "message.failed",
            EventType::Delivered => "message.delivered",
            EventType::Undelivered => "message.undelivered",
            EventType::Bounced => "message.bounced",
            EventType::Opened => "message.opened",
            EventType::Clicked => "message.clicked",
            EventType::Suppressed => "message.suppressed",
            EventType::Fallback => "message.fallback",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The event a new delivery status means, if any (a receipt that only
    /// says `queued` or `sent` tells the POS nothing new).
    pub fn of_delivery_status(status: &str) -> Option<EventType> {
        Some(match status {
            "delivered" | "partially_delivered" => EventType::Delivered,
            "undelivered" | "failed" | "canceled" => EventType::Undelivered,
            "bounced" | "dropped" => EventType::Bounced,
            "opened" | "read" => EventType::Opened,
            "clicked" => EventType::Clicked,
            "spam_reported" | "unsubscribed" => EventType::Suppressed,
            _ => return None,
        })
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The event types an endpoint wants: some, or all (`*`, including types
/// added in later versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Only(Vec<EventType>),
}

impl EventFilter {
    /// `["message.sent", "message.failed"]` or `["*"]`: at least one, each
    /// a known type.
    pub fn parse(words: &[String]) -> Result<EventFilter, ValidationError> {
        if words.is_empty() {
            return Err(ValidationError::new(
                "events",
                "events needs at least one event type, or \"*\" for all",
            ));
        }
        if words.iter().any(|w| w.trim() == "*") {
            return Ok(EventFilter::All);
        }
        let mut types = Vec::new();
        for w in words {
            match EventType::parse(w.trim()) {
                Some(t) if !types.contains(&t) => types.push(t),
                Some(_) => {}
                None => {
                    let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                    return Err(ValidationError::new(
                        "events",
                        format!("{w:?} is not an event type (use {} or \"*\")", known.join(", ")),
                    ));
                }
            }
        }
        types.sort();
        Ok(EventFilter::Only(types))
    }

    /// As stored: `,message.sent,message.failed,` or `,*,` (a type is
    /// matched with `LIKE '%,<type>,%'`).
    pub fn stored(&self) -> String {
        match self {
            EventFilter::All => ",*,".to_owned(),
            EventFilter::Only(types) => {
                let words: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
                format!(",{},", words.join(","))
            }
        }
    }

    /// Read the stored form back (unknown words are dropped).
    pub fn from_stored(s: &str) -> EventFilter {
        let words: Vec<&str> = s.split(',').filter(|w| !w.is_empty()).collect();
        if words.contains(&"*") {
            return EventFilter::All;
        }
        let mut types: Vec<EventType> = words.iter().filter_map(|w| EventType::parse(w)).collect();
        types.sort();
        types.dedup();
        EventFilter::Only(types)
    }

    pub fn wants(&self, t: EventType) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Only(types) => types.contains(&t),
        }
    }

    /// The words, as the API shows them.
    pub fn words(&self) -> Vec<String> {
        match self {
            EventFilter::All => vec!["*".to_owned()],
            EventFilter::Only(types) => types.iter().map(|t| t.as_str().to_owned()).collect(),
        }
    }
}

/// Where status webhooks go: an absolute `https://` URL, or `http://` to
/// this machine only (`127.0.0.1`, `[::1]`, `localhost`): a signed request
/// with customers' data never crosses a network in clear text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    pub const MAX_LEN: usize = 2000;

    pub fn parse(input: &str) -> Result<EndpointUrl, ValidationError> {
        let bad = |m: String| Err(ValidationError::new("url", m));
        let url = input.trim();
        if url.is_empty() || url.len() > Self::MAX_LEN || url.chars().any(|c| c.is_control() || c == ' ') {
            return bad(format!(
                "url must be an absolute URL of at most {} characters without spaces",
                Self::MAX_LEN
            ));
        }
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => {
                return bad(format!(
                    "{url:?} is not an absolute URL (https://pos.example.com/herald)"
                ))
            }
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return bad("url must not carry a user or password: the request is signed instead".into());
        }
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or("").to_ascii_lowercase()
        } else {
            authority
                .rsplit_once(':')
                .map_or(authority, |(h, _)| h)
                .to_ascii_lowercase()
        };
        if host.is_empty() {
            return bad(format!("{url:?} has no host"));
        }
        match scheme.as_str() {
            "https" => Ok(EndpointUrl(url.to_owned())),
            "http" if is_loopback_host(&host) => Ok(EndpointUrl(url.to_owned())),
            "http" => bad(format!(
                "url must use https:// (http:// is allowed only to this machine: 127.0.0.1, [::1], localhost); got {url:?}"
            )),
            _ => bad(format!("url must be https:// (got {scheme}://)")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip_and_serialize_as_their_words() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert_eq!(EventType::parse("message.exploded"), None);
        assert_eq!(EventType::of_delivery_status("read"), Some(EventType::Opened));
        assert_eq!(EventType::of_delivery_status("sent"), None);
    }

    #[test]
    fn filters_are_parsed_stored_and_read_back() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let f = EventFilter::parse(&words(&["message.sent", "message.failed", "message.sent"])).unwrap();
        assert_eq!(f.stored(), ",message.sent,message.failed,");
        assert_eq!(EventFilter::from_stored(&f.stored()), f);
        assert!(f.wants(EventType::Sent) && !f.wants(EventType::Queued));
        let all = EventFilter::parse(&words(&["*"])).unwrap();
        assert_eq!((all.stored().as_str(), all.wants(EventType::Fallback)), (",*,", true));
        let e = EventFilter::parse(&words(&["message.sent", "sms.sent"])).unwrap_err();
        assert_eq!(e.field, "events");
        assert!(e.message.contains("sms.sent"));
        assert!(EventFilter::parse(&[]).is_err());
    }

    #[test]
    fn urls_must_be_https_except_to_this_machine() {
        for ok in [
            "https://pos.example.com/herald",
            "https://pos.example.com:8443/hooks?x=1",
            "http://127.0.0.1:3000/herald",
            "http://localhost/herald",
            "http://[::1]:8080/",
        ] {
            assert!(EndpointUrl::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://pos.example.com/herald",
            "http://10.0.0.5/herald",
            "ftp://pos.example.com",
            "pos.example.com/herald",
            "https://user:pw@pos.example.com/",
            "https:///nohost",
            "https://pos.example.com/a b",
        ] {
            let e = EndpointUrl::parse(bad).unwrap_err();
            assert_eq!(e.field, "url", "{bad}");
        }
    }
}
