//! How many messages to claim at once.
//!
//! A claim costs about the same for 50 rows as for 1,000, so a big backlog
//! drains fastest with big claims; but every claimed message waits in
//! memory under a lease until a send slot takes it, so claims must not run
//! far ahead of the senders. The claim loop keeps about one claim's worth
//! of messages waiting for the senders: it claims again when fewer wait,
//! and the claim size doubles (up to `BATCH_SIZE`) each time a full claim
//! finds the senders nearly out of work. A slow provider therefore never
//! gets more than a small claim ahead of it; a fast one reaches
//! `BATCH_SIZE` within a few claims. A claim that comes back short means the
//! backlog is gone: the size falls back to where it started.

/// The first claim's size (or `BATCH_SIZE`, when smaller).
pub(super) const INITIAL_CLAIM: u32 = 64;

#[derive(Debug, Clone)]
pub(super) struct ClaimSize {
    size: u32,
    initial: u32,
    max: u32,
}

impl ClaimSize {
    /// `max`: `BATCH_SIZE`.
    pub(super) fn new(max: u32) -> ClaimSize {
        let max = max.max(1);
        let initial = INITIAL_CLAIM.min(max);
        ClaimSize {
            size: initial,
            initial,
            max,
        }
    }

    pub(super) fn get(&self) -> u32 {
        self.size
    }

    /// Whether to claim now, with `waiting` claimed messages not yet taken
    /// by a sender.
    pub(super) fn should_claim(&self, waiting: usize) -> bool {
        waiting < self.size as usize
    }

    /// A claim of [`Self::get`] messages (or fewer, when less room was
    /// free) came back `full` or not, when `waiting` messages were already
    /// waiting for a sender.
    pub(super) fn after_claim(&mut self, full: bool, waiting: usize) {
        if !full {
            self.size = self.initial;
        } else if waiting < (self.size / 2) as usize {
            self.size = self.size.saturating_mul(2).min(self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_while_the_senders_keep_up_and_stops_at_batch_size() {
        let mut c = ClaimSize::new(1000);
        let mut sizes = vec![c.get()];
        for _ in 0..6 {
            c.after_claim(true, 0);
            sizes.push(c.get());
        }
        assert_eq!(sizes, [64, 128, 256, 512, 1000, 1000, 1000]);
        // The backlog ran out: back to the start.
        c.after_claim(false, 0);
        assert_eq!(c.get(), 64);
        assert_eq!(ClaimSize::new(10).get(), 10, "BATCH_SIZE below the start");
    }

    #[test]
    fn a_slow_provider_keeps_claims_small() {
        let mut c = ClaimSize::new(1000);
        // The senders are still busy with the last claim when this one comes
        // back full: no growth, and no claim while a claim's worth waits.
        c.after_claim(true, 60);
        assert_eq!(c.get(), 64);
        assert!(!c.should_claim(64));
        assert!(c.should_claim(63));
    }
}
