//! How one processor claims, leases, waits and retries.

use std::collections::HashMap;
use std::time::Duration;

use crate::domain::Channel;
use crate::ratelimit::ChannelLimits;
use crate::retry::RetryPolicy;

/// `BATCH_SIZE` when not set.
pub const DEFAULT_BATCH_SIZE: u32 = 1000;

#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Written to `lease_owner`; unique per process.
    pub worker_id: String,
    /// The most messages claimed per statement (`BATCH_SIZE`); claims
    /// grow to this with the backlog (see `claimsize.rs`).
    pub batch_size: u32,
    /// Rate and concurrency per channel; a channel not listed is unlimited
    /// with [`ChannelLimits::DEFAULT_CONCURRENCY`] calls in flight.
    pub limits: HashMap<Channel, ChannelLimits>,
    /// How long a claim is held before other workers may take the message.
    pub lease: Duration,
    /// The longest a provider call may take; a message is only sent if its
    /// lease outlasts this.
    pub send_timeout: Duration,
    /// Watch mode: how often to look for due messages when nothing wakes us.
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
    /// When providers' circuits open and for how long.
    pub breaker: crate::breaker::BreakerPolicy,
    /// WhatsApp messages their recipient cannot get are sent as SMS
    /// (`WHATSAPP_FALLBACK=sms`).
    pub whatsapp_fallback: bool,
    /// On shutdown, how long a failing outcome write is still retried.
    pub record_grace: Duration,
}

impl ProcessorConfig {
    pub fn new(worker_id: impl Into<String>) -> Self {
        ProcessorConfig {
            worker_id: worker_id.into(),
            batch_size: DEFAULT_BATCH_SIZE,
            limits: HashMap::new(),
            lease: Duration::from_secs(120),
            send_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(50),
            retry: RetryPolicy::default(),
            breaker: crate::breaker::BreakerPolicy::default(),
            whatsapp_fallback: false,
            record_grace: Duration::from_secs(5),
        }
    }

    pub fn channel_limits(&self, channel: Channel) -> ChannelLimits {
        self.limits.get(&channel).copied().unwrap_or(ChannelLimits::UNLIMITED)
    }

    /// Claimed but not yet recorded: enough for the senders to stay busy
    /// while one batch is being claimed and another recorded.
    pub(super) fn max_in_flight(&self) -> usize {
        let senders: usize = Channel::ALL.iter().map(|c| self.channel_limits(*c).concurrency).sum();
        senders + 2 * self.batch_size as usize
    }
}

/// A worker identity that is unique across processes and hosts.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herald".to_owned());
    format!("{host}:{}:{:08x}", std::process::id(), fastrand::u32(..))
}
