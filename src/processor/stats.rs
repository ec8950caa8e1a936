//! What one processor did: counters for its lifetime (also read by
//! `/metrics`) and the summary of one run.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for one processor's lifetime.
#[derive(Debug, Default)]
pub struct ProcessorStats {
    pub claimed: AtomicU64,
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub released: AtomicU64,
    pub lease_lost: AtomicU64,
    /// Outcomes that could not be written to the message table (they stay
    /// in the attempt history and are recorded from it on the next claim).
    pub unrecorded: AtomicU64,
}

/// A snapshot of [`ProcessorStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub claimed: u64,
    pub sent: u64,
    pub failed: u64,
    pub retried: u64,
    pub released: u64,
    pub lease_lost: u64,
    pub unrecorded: u64,
}

impl RunSummary {
    /// What happened between `before` and `self`.
    pub fn since(self, before: RunSummary) -> RunSummary {
        RunSummary {
            claimed: self.claimed - before.claimed,
            sent: self.sent - before.sent,
            failed: self.failed - before.failed,
            retried: self.retried - before.retried,
            released: self.released - before.released,
            lease_lost: self.lease_lost - before.lease_lost,
            unrecorded: self.unrecorded - before.unrecorded,
        }
    }

    /// `(label, value)` pairs, as `/metrics` shows them.
    pub fn labelled(&self) -> [(&'static str, u64); 7] {
        [
            ("claimed", self.claimed),
            ("sent", self.sent),
            ("failed", self.failed),
            ("retried", self.retried),
            ("released", self.released),
            ("lease_lost", self.lease_lost),
            ("unrecorded", self.unrecorded),
        ]
    }
}

impl ProcessorStats {
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            claimed: self.claimed.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            released: self.released.load(Ordering::Relaxed),
            lease_lost: self.lease_lost.load(Ordering::Relaxed),
            unrecorded: self.unrecorded.load(Ordering::Relaxed),
        }
    }

    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
